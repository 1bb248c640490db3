"""`gridpool fleet`: run the fleet controller alone on a site LAN, and talk to it.

    gridpool fleet run --config fleet.toml          # controller + admin API + /metrics
                                                    # (+ the grid interface if [grid] is set)
    gridpool fleet budget --site A --kw 500         # set a site budget through the admin API
    gridpool fleet status [--site A]                # sites (or one site's miners) as JSON
    gridpool fleet scan --subnet 10.0.1.0/24        # find miners; prints [[fleet.site.miner]]

The admin token comes from ``[fleet.admin] token_env``/``token_file`` for `run`, and from
``--token-env`` (default ``GRIDPOOL_ADMIN_TOKEN``) or ``--token-file`` for the clients.
A controller pointed at a central pool (``[fleet.pool] api_url``) asks it to starve the
workers of miners that ignore commands (miners.workgate). See docs/fleet.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import structlog

from pool.errors import ConfigError

log = structlog.get_logger(__name__)

DEFAULT_API = "http://127.0.0.1:8081"
API_PREFIX = "/api/fleet"  # where the admin sub-app is mounted (here and in the pool)
TOKEN_ENV = "GRIDPOOL_ADMIN_TOKEN"
CLIENT_TIMEOUT_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fleet", help="the fleet controller (power budgets per site)")
    sub = p.add_subparsers(dest="fleet_command", required=True)

    run = sub.add_parser("run", help="run the controller for the sites of a config file")
    run.add_argument("--config", type=Path, required=True, help="TOML file with a [fleet] table")
    run.add_argument("--log-level", default="info")
    run.set_defaults(func=_guard(cmd_run))

    budget = sub.add_parser("budget", help="set a site's power budget")
    budget.add_argument("--site", required=True)
    amount = budget.add_mutually_exclusive_group(required=True)
    amount.add_argument("--kw", type=float)
    amount.add_argument("--watts", type=float)
    _client_args(budget)
    budget.set_defaults(func=_guard(cmd_budget))

    status = sub.add_parser("status", help="show sites, or one site's miners")
    status.add_argument("--site")
    _client_args(status)
    status.set_defaults(func=_guard(cmd_status))

    scan = sub.add_parser("scan", help="find miners by their API answers")
    scan.add_argument("--subnet", required=True, action="append")
    scan.add_argument("--site", default="site")
    scan.add_argument("--tcp-port", type=int, action="append", help="default 4028")
    scan.add_argument("--http-port", type=int, action="append", help="default 80")
    scan.add_argument("--timeout", type=float, default=1.0, help="seconds per probe")
    scan.set_defaults(func=_guard(cmd_scan))


def _guard(fn):
    """MinerError (e.g. a scan range too large) becomes one ConfigError line, like the rest."""

    def run(args: argparse.Namespace) -> int:
        from miners.errors import MinerError

        try:
            return fn(args)
        except MinerError as err:
            raise ConfigError("fleet", str(err)) from err

    return run


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", default=DEFAULT_API, help=f"controller URL (default {DEFAULT_API})")
    p.add_argument("--token-env", default=TOKEN_ENV)
    p.add_argument("--token-file", type=Path)


# -- clients ----------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        try:
            return args.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError("--token-file", f"cannot read: {err.strerror}") from None
    token = os.environ.get(args.token_env, "")
    if not token:
        raise ConfigError("--token-env", f"environment variable {args.token_env} is not set")
    return token


async def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    import aiohttp

    url = args.api.rstrip("/") + API_PREFIX + path
    headers = {"Authorization": f"Bearer {_token(args)}"}
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.request(method, url, json=body, headers=headers) as resp:
                reply = await resp.json(content_type=None)
                if resp.status >= 400:
                    reason = reply.get("error") if isinstance(reply, dict) else reply
                    raise ConfigError(url, f"HTTP {resp.status}: {reason}")
                return reply
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise ConfigError(url, f"controller not reachable: {err!r}") from None


def cmd_budget(args: argparse.Namespace) -> int:
    body = {"kw": args.kw} if args.kw is not None else {"watts": args.watts}
    reply = asyncio.run(_call(args, "PUT", f"/sites/{args.site}/budget", body))
    print(json.dumps(reply))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    path = f"/sites/{args.site}/miners" if args.site else "/sites"
    print(json.dumps(asyncio.run(_call(args, "GET", path)), indent=2))
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from miners.inventory import ScanRange, scan

    ranges = [ScanRange(s, tuple(args.tcp_port or [4028]), tuple(args.http_port or [80]))
              for s in args.subnet]
    result = asyncio.run(scan(args.site, ranges, worker_prefix=f"{args.site}.",
                              timeout_s=args.timeout))
    for m in result.found:
        print("[[fleet.site.miner]]")
        for key, value in (("id", m.miner_id), ("model", m.model.key), ("driver", m.driver),
                           ("host", m.host), ("port", m.port), ("worker", m.worker)):
            print(f"{key} = {json.dumps(value)}")
        print()
    for line in result.unidentified:
        print(f"# unidentified: {line}", file=sys.stderr)
    return 0


# -- the controller ---------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from miners.inventory import load_fleet_config

    config = load_fleet_config(args.config)
    grid = load_grid_config(args.config)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(config, grid))
    return 0


def load_grid_config(path: Path) -> tuple[Any, str] | None:
    """The optional ``[grid]`` table of the same file, and the database its timeline persists
    in: ``[ledger] url`` when given, else ``sqlite:///<config dir>/grid.db``."""
    import tomllib

    from miners.grid.settings import GridSettings

    doc = tomllib.loads(path.read_text(encoding="utf-8"))  # already validated as TOML
    if "grid" not in doc:
        return None
    if not isinstance(doc["grid"], dict):
        raise ConfigError("grid", "must be a table")
    settings = GridSettings.from_mapping(doc["grid"], base_dir=path.parent)
    ledger = doc.get("ledger", {})
    url = ledger.get("url") if isinstance(ledger, dict) else None
    if url is None:
        url = f"sqlite:///{(path.parent / 'grid.db').resolve()}"
    elif not isinstance(url, str) or not url.startswith(("sqlite:///", "postgresql://")):
        raise ConfigError("ledger.url", "must be sqlite:///PATH or postgresql://...")
    return settings, url


async def _run(config, grid: tuple[Any, str] | None = None) -> None:
    from miners.admin_api import create_admin_app
    from miners.controller import FleetController
    from pool.api import create_app, start_http
    from pool.config import parse_host_port

    token = _admin_token(config)
    sites = await _with_scans(config.sites)
    gate = _work_gate(config)
    fleet = FleetController(list(sites), poll=config.poll, control=config.control,
                            allocation=config.allocation, gate=gate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    app = create_app(health=lambda: _health(fleet))
    app.add_subapp(API_PREFIX, create_admin_app(fleet, token=token))
    host, port = parse_host_port("fleet.admin.listen", config.admin_listen)
    runner = None
    grid_runtime = None
    try:
        if gate is not None:
            await gate.start()
        await fleet.start()
        if grid is not None:
            from miners.grid.fleet_sink import FleetSink
            from miners.grid.runtime import GridRuntime

            # Started before the HTTP server: aiohttp freezes the routes at start.
            grid_runtime = GridRuntime(grid[0], grid[1], FleetSink(fleet), http_root=app)
            await grid_runtime.start()
        runner, bound = await start_http(app, host, port)
        log.info("fleet_admin_api", url=f"http://{host}:{bound}{API_PREFIX}")
        task = asyncio.create_task(fleet.run())
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    finally:
        if runner is not None:
            await runner.cleanup()
        if grid_runtime is not None:
            await grid_runtime.stop()
        await fleet.close()
        if gate is not None:
            await gate.close()


def _admin_token(config) -> str:
    from miners.errors import InventoryError
    from miners.inventory import SecretRef

    ref = config.admin_token or SecretRef(env=TOKEN_ENV)
    try:
        token = ref.resolve()
    except InventoryError as err:
        raise ConfigError("fleet.admin", f"admin token: {err} (set token_env or "
                          f"token_file, or {TOKEN_ENV})") from None
    if len(token) < 16:
        raise ConfigError("fleet.admin", "the admin token must have at least 16 characters")
    return token


def _work_gate(config):
    if config.pool_api is None:
        log.warning("fleet_no_work_gate", hint="set [fleet.pool] api_url to starve workers")
        return None
    from miners.workgate import HttpWorkGate

    if config.pool_token is None:
        raise ConfigError("fleet.pool", "api_url needs token_env or token_file")
    return HttpWorkGate(config.pool_api, token=config.pool_token.resolve())


async def _with_scans(sites):
    """Add the miners found by each site's [[fleet.site.scan]] (configured ones win)."""
    import dataclasses

    from miners.inventory import scan

    out = []
    for site in sites:
        if site.scan:
            found = await scan(site.site_id, site.scan, worker_prefix=site.worker_prefix)
            known = {(m.host, m.port) for m in site.miners}
            ids = {m.miner_id for m in site.miners}
            extra = tuple(m for m in found.found
                          if (m.host, m.port) not in known and m.miner_id not in ids)
            site = dataclasses.replace(site, miners=site.miners + extra)
        out.append(site)
    return out


def _health(fleet) -> dict[str, Any]:
    sites = fleet.status()
    healthy = bool(sites) and all(s["sweep_s"] is not None for s in sites.values())
    return {"healthy": healthy, "sites": sites}
