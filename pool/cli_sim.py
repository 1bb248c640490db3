"""`gridpool sim`: run a fleet of simulated miners against a pool, with a live summary;
`gridpool sim loadgen`: the Stratum load generator (miners/sim/loadgen.py).

    gridpool sim --sites 3 --miners-per-site 50 --pool stratum+tcp://127.0.0.1:3333
    gridpool sim loadgen --pool stratum+tcp://127.0.0.1:3333 --connections 10000 --rate 1

Writes the fleet inventory for the fleet controller (``--inventory``), serves the
simulator's admin API (``--admin-listen``) for faults on demand, and shows a per-site table
in the terminal (with `rich` when it is installed, plain text otherwise; one log line every
`LOG_EVERY_S` when stdout is not a terminal).  See docs/simulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import structlog
from aiohttp import web

from pool.errors import ConfigError
from pool.logs import configure_logging

log = structlog.get_logger(__name__)

REFRESH_S = 1.0  # live view refresh period
LOG_EVERY_S = 10.0  # summary log period when stdout is not a terminal


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sim", help="run a fleet of simulated ASICs against a pool")
    # Not required=True: `gridpool sim loadgen --pool ...` takes its own (checked in run).
    p.add_argument("--pool", help="stratum+tcp://HOST:PORT of the pool (required)")
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--miners-per-site", type=int, default=50)
    p.add_argument(
        "--models",
        default="s19jpro=0.4,s21=0.3,m50s=0.2,bitaxe-gamma=0.1",
        help="model mix as key=weight,... (keys: s19jpro, s21, m50s, bitaxe-gamma)",
    )
    p.add_argument(
        "--hash-scale",
        type=float,
        default=None,
        help="real H/s per model TH/s (default: auto, so the fleet grinds --fleet-rate)",
    )
    p.add_argument("--fleet-rate", type=float, default=3e6, help="auto-scale target, H/s")
    p.add_argument("--username-template", default="sim.{site}.{miner}",
                   help="Stratum user: account.worker, the worker's first part is the site")
    p.add_argument("--password", default="x")
    p.add_argument("--address-mode", choices=("ports", "addresses"), default="ports")
    p.add_argument("--api-host", default="127.0.0.1")
    p.add_argument("--base-port", type=int, default=0, help="first API port (0 = ephemeral)")
    p.add_argument("--bitaxe-port", type=int, default=80, help="Bitaxe port in addresses mode")
    p.add_argument("--inventory", type=Path, default=Path("sim-inventory.json"))
    p.add_argument("--admin-listen", default="127.0.0.1:0", help="HOST:PORT of the admin API")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fault for every miner, e.g. --fault stale_share_rate=0.05 (repeatable)",
    )
    p.add_argument("--meters", action="store_true",
                   help="one simulated Modbus TCP site meter per site on --api-host "
                        "(ephemeral ports, listed in the inventory; docs/meter.md)")
    p.add_argument("--meter-overhead-w", type=float, default=0.0,
                   help="constant site load (W) each meter adds to its miners' power")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0 = never)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-live", action="store_true", help="log lines instead of the live table")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="sim_command", metavar="loadgen")
    loadgen = sub.add_parser(
        "loadgen", help="many Stratum connections submitting shares at a set rate",
        description="Stratum load generator: see miners/sim/loadgen.py and docs/simulator.md.")
    from miners.sim.loadgen import add_arguments, run_cli

    add_arguments(loadgen)
    loadgen.add_argument("--log-level", default="warning")
    loadgen.set_defaults(func=run_cli)


def run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level)
    if not args.pool:
        print("gridpool sim: --pool stratum+tcp://HOST:PORT is required", file=sys.stderr)
        return 2
    try:
        spec = spec_from_args(args)
    except ConfigError as err:
        print(f"gridpool sim: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_main(spec, args))
    except KeyboardInterrupt:
        pass
    return 0


def spec_from_args(args: argparse.Namespace):
    from miners.sim.fleet import FleetSpec

    if getattr(args, "meter_overhead_w", 0.0) < 0:
        raise ConfigError("sim.meter_overhead_w", "must be >= 0 watts")
    return FleetSpec(
        pool_url=args.pool,
        sites=args.sites,
        miners_per_site=args.miners_per_site,
        model_mix=_parse_mix(args.models),
        hash_scale=args.hash_scale,
        fleet_rate_hs=args.fleet_rate,
        password=args.password,
        username_template=args.username_template,
        address_mode=args.address_mode,
        api_host=args.api_host,
        base_port=args.base_port,
        bitaxe_port=args.bitaxe_port,
        seed=args.seed,
        faults=_parse_faults(args.fault),
    )


def _parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    mix = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, weight = part.partition("=")
        try:
            mix.append((key.strip(), float(weight) if sep else 1.0))
        except ValueError:
            raise ConfigError("sim.model_mix", f"bad weight in {part!r}") from None
    return tuple(mix)


def _parse_faults(items: list[str]) -> dict[str, object]:
    faults: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"sim.faults.{name}", "expected NAME=VALUE")
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            faults[name.strip()] = lowered == "true"
            continue
        try:
            faults[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"sim.faults.{name}", "value must be a number or true/false"
            ) from None
    return faults


async def _main(spec, args: argparse.Namespace) -> None:
    from miners.sim.fleet import Fleet, admin_app

    fleet = Fleet(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(admin_app(fleet), access_log=None)
    meters: dict = {}
    try:
        await fleet.start()
        if args.meters:
            from miners.sim.meter import start_site_meters

            meters = await start_site_meters(
                fleet, overhead_w=args.meter_overhead_w, host=args.api_host
            )
        fleet.write_inventory(args.inventory, {s: m.spec() for s, m in meters.items()})
        await runner.setup()
        host, _, port = args.admin_listen.rpartition(":")
        site = web.TCPSite(runner, host or "127.0.0.1", int(port))
        await site.start()
        log.info("sim_admin_api", address=list(runner.addresses[0][:2]))
        live = not args.no_live and sys.stdout.isatty()
        await _show(fleet, stop, duration_s=args.duration, live=live)
    finally:
        await runner.cleanup()
        for meter in meters.values():
            await meter.stop()
        await fleet.stop()


async def _show(fleet, stop: asyncio.Event, *, duration_s: float, live: bool) -> None:
    deadline = time.monotonic() + duration_s if duration_s > 0 else None
    view = _LiveView(fleet) if live else None
    last_log = 0.0
    try:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if view is not None:
                view.update()
            elif time.monotonic() - last_log >= LOG_EVERY_S:
                last_log = time.monotonic()
                for row in fleet.site_summary():
                    log.info("sim_site", **_rounded(row))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_S):
                    await stop.wait()
    finally:
        if view is not None:
            view.close()


def _rounded(row: dict) -> dict:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}


class _LiveView:
    """Per-site table refreshed in place: rich.live when available, ANSI text otherwise."""

    COLUMNS = ("site", "miners", "mining", "ramping", "sleeping", "off", "kW", "TH/s", "ok", "rej")

    def __init__(self, fleet) -> None:
        self.fleet = fleet
        try:
            from rich.live import Live
        except ImportError:
            self._live = None
        else:
            self._live = Live(self._rich_table(), refresh_per_second=2, screen=False)
            self._live.start()

    def rows(self) -> list[tuple[str, ...]]:
        rows, totals = [], [0.0] * (len(self.COLUMNS) - 1)
        for r in self.fleet.site_summary():
            s = r["states"]
            values = [
                r["miners"],
                s.get("mining", 0),
                s.get("ramping", 0),
                s.get("sleeping", 0) + s.get("stopping", 0),
                s.get("off", 0),
                r["power_kw"],
                r["hashrate_ths"],
                r["accepted"],
                r["rejected"],
            ]
            totals = [a + b for a, b in zip(totals, values, strict=True)]
            rows.append((r["site"], *map(_fmt, values)))
        rows.append(("total", *map(_fmt, totals)))
        return rows

    def _rich_table(self):
        from rich.table import Table

        table = Table(title=f"gridpool sim - {len(self.fleet.miners)} miners")
        for name in self.COLUMNS:
            table.add_column(name, justify="left" if name == "site" else "right")
        for row in self.rows():
            table.add_row(*row)
        return table

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self._rich_table())
            return
        widths = [max(len(c), 9) for c in self.COLUMNS]
        lines = [" ".join(c.rjust(w) for c, w in zip(self.COLUMNS, widths, strict=True))]
        lines += [
            " ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in self.rows()
        ]
        sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


def _fmt(value: float) -> str:
    return (
        f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{value:,.0f}"
    )
