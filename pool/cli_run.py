"""`gridpool run [--config FILE]`: run the pool until SIGINT/SIGTERM.

Without a config file it is a local demo: the embedded regtest devnet, the pool on
127.0.0.1 (stratum 3333, http 8080; `--stratum-port/--http-port`, 0 = ephemeral) with its
data under `--data-dir`, and a fleet of simulated miners in three sites mining on it
(`--no-fleet` leaves the pool to real miners). Blocks are simulated at a difficulty the
demo fleet meets about once a minute (`--block-interval`). It prints where to point a
miner, where the fleet's management APIs and inventory are, and a status line every
`STATUS_EVERY_S`. On SIGINT/SIGTERM the fleet stops, then the pool drains: every remaining
miner gets client.reconnect, then everything stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import REGISTRY

from pool import api
from pool.app import PoolApp
from pool.config import GridpoolConfig, load_config, parse_config
from pool.errors import ConfigError, PoolError
from pool.logs import configure_logging

log = structlog.get_logger(__name__)

EXIT_CONFIG_ERROR = 2
EXIT_START_FAILED = 1
DIFF1_HASHES = 2**32  # expected hashes per share at difficulty 1
# The zero-config demo: the simulated fleet grinds this many real hashes per second in all
# (three sites of 50 miners, one scale factor; well under one core with the native scanner)
# and finds a simulated block every DEMO_BLOCK_INTERVAL_S on average.
DEMO_FLEET_HASHRATE_HS = 2_000_000.0
DEMO_BLOCK_INTERVAL_S = 60.0
DEMO_STRATUM_PORT = 3333
DEMO_HTTP_PORT = 8080
# The fleet's smallest miner, a Bitaxe, grinds ~125 H/s real at the demo's scale: one share
# per 10 s is difficulty ~3e-7, so the minimum must sit well below that (vardiff and the
# miners' suggest_difficulty do the rest); a real miner starts at start_difficulty.
DEMO_STRATUM = {
    "min_difficulty": 1e-8,
    "start_difficulty": 0.0005,
}
DEMO_INVENTORY = "sim-inventory.json"  # in the data dir
STATUS_EVERY_S = 10.0  # the demo's status line


def demo_simulated_difficulty(block_interval_s: float = DEMO_BLOCK_INTERVAL_S) -> float:
    """The share difficulty treated as the network's, so the demo fleet finds one block per
    `block_interval_s` on average."""
    return DEMO_FLEET_HASHRATE_HS * block_interval_s / DIFF1_HASHES


DEMO_SIMULATED_DIFFICULTY = demo_simulated_difficulty()


def demo_config(
    *,
    stratum_port: int = DEMO_STRATUM_PORT,
    http_port: int = DEMO_HTTP_PORT,
    data_dir: Path | None = None,
    block_interval_s: float = DEMO_BLOCK_INTERVAL_S,
) -> GridpoolConfig:
    """The zero-config setup: devnet, regtest, simulated block difficulty, low shares."""
    raw: dict[str, Any] = {
        "network": {
            "chain": "regtest",
            "simulated_difficulty": demo_simulated_difficulty(block_interval_s),
        },
        "stratum": {**DEMO_STRATUM, "listen": [f"127.0.0.1:{stratum_port}"]},
        "http": {"listen": f"127.0.0.1:{http_port}"},
    }
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    return parse_config(raw)


# ---- the demo fleet ----------------------------------------------------------------------


@dataclass(slots=True)
class DemoFleet:
    """The simulated fleet of the zero-config run, with its admin API and inventory file."""

    fleet: Any  # miners.sim.fleet.Fleet
    inventory_path: Path
    admin_runner: Any  # aiohttp AppRunner
    admin_url: str

    async def stop(self) -> None:
        await self.admin_runner.cleanup()
        await self.fleet.stop()


async def start_demo_fleet(app: PoolApp) -> DemoFleet:
    """Three sites of simulated miners on the pool's first listener, their inventory in the
    data dir, and the simulator's admin API (faults on demand) on an ephemeral port."""
    from miners.sim.fleet import admin_app, start_fleet

    assert app.stratum is not None
    host, port = app.stratum.addresses[0]
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    inventory = app.config.data_dir / DEMO_INVENTORY
    fleet = await start_fleet(f"stratum+tcp://{host}:{port}", inventory_path=inventory,
                              fleet_rate_hs=DEMO_FLEET_HASHRATE_HS)
    try:
        runner, admin_port = await api.start_http(admin_app(fleet), "127.0.0.1", 0)
    except BaseException:
        await fleet.stop()
        raise
    return DemoFleet(fleet, inventory, runner, f"http://127.0.0.1:{admin_port}")


def fleet_banner(demo: DemoFleet) -> list[str]:
    fleet = demo.fleet
    miners = list(fleet.miners.values())
    by_api: dict[str, int] = {}
    for miner in miners:
        by_api[miner.model.api] = by_api.get(miner.model.api, 0) + 1
    apis = ", ".join(f"{n} {_API_NAMES.get(kind, kind)}" for kind, n in sorted(by_api.items()))
    first = miners[0]
    host, port = first.api_address
    return [
        f"  Fleet     {len(miners)} simulated miners in {len(fleet.sites)} sites "
        f"({', '.join(fleet.sites)}), {fleet.real_rate_hs() / 1e6:.1f} MH/s of real sha256d "
        f"({fleet.hash_scale:.1f} H/s per model TH/s)",
        f"            management APIs: {apis}, e.g. {first.miner_id} ({first.model.name}) "
        f"at {host}:{port}",
        f"            inventory (every miner's API address) {demo.inventory_path}",
        f"            simulator admin API (faults on demand) {demo.admin_url}/miners",
        "            gridpool run --no-fleet leaves the pool to real miners",
    ]


_API_NAMES = {"luxos": "LuxOS-style TCP (cgminer JSON)", "bitaxe": "Bitaxe ESP-Miner HTTP"}


# ---- banner and status -------------------------------------------------------------------


def banner(app: PoolApp, demo: DemoFleet | None = None) -> str:
    """What an operator needs to point a miner at the pool."""
    assert app.stratum is not None
    config = app.config
    urls = [f"stratum+tcp://{host}:{port}" for host, port in app.stratum.addresses]
    simulated = config.network.simulated_difficulty
    chain = f"{config.network.chain}" + (" (embedded devnet)" if app.devnet else "")
    lines = [
        f"gridpool is running on {chain}",
        *(f"  Stratum   {url}" for url in urls),
    ]
    if app.http_port is not None:
        base = f"http://{config.http.host}:{app.http_port}"
        lines.append(f"  HTTP      {base}/ (dashboard)  /api/summary  /metrics  /readyz  /healthz")
    if simulated is not None:
        lines.append(f"  Blocks    SIMULATED: a share is a block at difficulty {simulated:g}")
    if demo is not None:
        lines += fleet_banner(demo)
    account_line = ("any account.worker (pays the pool's payout address)"
                    if config.payout.script_pubkey or app.devnet else None)
    lines += [
        "Point a miner at it:",
        f"  URL       {urls[0]}",
        f"  Username  a {config.network.chain} address, optionally .worker (solo: the block "
        "reward pays that address)",
    ]
    if account_line:
        lines.append(f"            or {account_line}")
    lines += [
        "  Password  anything; d=<difficulty> sets the start difficulty",
        "Ctrl-C drains (miners are asked to reconnect) and stops.",
    ]
    return "\n".join(lines)


class StatusLine:
    """One line every STATUS_EVERY_S from the pool's own counters: accepted shares, the hash
    rate their difficulty proves, blocks found."""

    def __init__(self, app: PoolApp, demo: DemoFleet | None) -> None:
        self.app, self.demo = app, demo
        self.last = (time.monotonic(), _accepted_difficulty())

    def line(self) -> str:
        now, work = time.monotonic(), _accepted_difficulty()
        then, before = self.last
        self.last = (now, work)
        rate_hs = (work - before) * DIFF1_HASHES / max(now - then, 1e-9)
        text = (f"[{time.strftime('%H:%M:%S')}] shares accepted {self.app.shares_accepted}"
                f"  pool hash rate {rate_hs / 1e6:.2f} MH/s")
        if self.demo is not None:
            text += f" (model {rate_hs / self.demo.fleet.hash_scale / 1e3:.1f} PH/s)"
        blocks = list(self.app.blocks)
        text += f"  blocks found {len(blocks)}"
        if blocks:
            text += f" (last: height {blocks[0]['height']} by {blocks[0]['worker']})"
        return text

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            print(self.line(), flush=True)


def _accepted_difficulty() -> float:
    return REGISTRY.get_sample_value("gridpool_share_difficulty_total") or 0.0


# ---- the command ------------------------------------------------------------------------


async def serve(config: GridpoolConfig, *, demo: bool = False, fleet: bool = False) -> int:
    """Run until SIGINT/SIGTERM. `demo`: print the status line; `fleet`: also run the demo
    fleet on the pool."""
    app = PoolApp(config)
    try:
        await app.start()  # stops what it started when it fails
    except (PoolError, OSError) as err:
        print(f"gridpool: could not start: {err}", file=sys.stderr)
        return EXIT_START_FAILED
    demo_fleet: DemoFleet | None = None
    if fleet:
        try:
            demo_fleet = await start_demo_fleet(app)
        except (PoolError, OSError) as err:
            print(f"gridpool: could not start the simulated fleet: {err}", file=sys.stderr)
            await app.stop(drain=False)
            return EXIT_START_FAILED
    print(banner(app, demo_fleet), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    status = asyncio.create_task(StatusLine(app, demo_fleet).run()) if demo else None
    try:
        await stop.wait()
        log.info("stopping", reason="signal")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if status is not None:
            status.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status
        if demo_fleet is not None:  # first, so the in-process miners do not reconnect
            await demo_fleet.stop()
        await app.stop(drain=True)
    return 0


def run(args: argparse.Namespace) -> int:
    demo_options = {"--stratum-port": args.stratum_port, "--http-port": args.http_port,
                    "--data-dir": args.data_dir, "--block-interval": args.block_interval}
    try:
        if args.config:
            given = [name for name, value in demo_options.items() if value is not None]
            if given:
                raise ConfigError(given[0], "only for the zero-config demo; with --config "
                                  "set it in the config file")
            config = load_config(Path(args.config))
        else:
            config = demo_config(**_demo_kwargs(args))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    configure_logging(level=config.log.level, json=config.log.json)
    demo = not args.config
    return asyncio.run(serve(config, demo=demo, fleet=demo and not args.no_fleet))


def _demo_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, flag in (("stratum_port", "--stratum-port"), ("http_port", "--http-port")):
        port = getattr(args, name)
        if port is not None:
            if not 0 <= port <= 65535:
                raise ConfigError(flag, "must be a TCP port between 0 and 65535 (0 = any)")
            kwargs[name] = port
    if args.data_dir is not None:
        kwargs["data_dir"] = Path(args.data_dir)
    if args.block_interval is not None:
        if not args.block_interval > 0:
            raise ConfigError("--block-interval", "must be > 0 seconds")
        kwargs["block_interval_s"] = args.block_interval
    return kwargs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the pool (no --config: a local demo on the embedded devnet with a "
        "simulated fleet)")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    demo = parser.add_argument_group("zero-config demo (without --config)")
    demo.add_argument("--no-fleet", action="store_true",
                      help="do not start the simulated fleet (point real miners at the pool)")
    demo.add_argument("--stratum-port", type=int, metavar="PORT",
                      help=f"Stratum port on 127.0.0.1 (default {DEMO_STRATUM_PORT}, 0 = any)")
    demo.add_argument("--http-port", type=int, metavar="PORT",
                      help=f"HTTP port on 127.0.0.1 (default {DEMO_HTTP_PORT}, 0 = any)")
    demo.add_argument("--data-dir", metavar="DIR",
                      help="devnet chain, ledger and fleet inventory (default: the user's "
                      "data dir, see docs/configuration.md)")
    demo.add_argument("--block-interval", type=float, metavar="S",
                      help=f"average seconds between simulated blocks for the demo fleet "
                      f"(default {DEMO_BLOCK_INTERVAL_S:g})")
    parser.set_defaults(func=run)
