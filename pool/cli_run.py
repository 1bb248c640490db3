"""`gridpool run [--config FILE]`: run the pool until SIGINT/SIGTERM.

Without a config file it starts the embedded regtest devnet and the pool on 127.0.0.1
(stratum 3333, http 8080) with blocks simulated at a difficulty a small demo fleet meets
about once a minute, and prints how to point a miner at it. On SIGINT/SIGTERM it drains:
every miner gets client.reconnect, then everything stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import structlog

from pool.app import PoolApp
from pool.config import GridpoolConfig, load_config, parse_config
from pool.errors import ConfigError, PoolError
from pool.logs import configure_logging

log = structlog.get_logger(__name__)

EXIT_CONFIG_ERROR = 2
EXIT_START_FAILED = 1
DIFF1_HASHES = 2**32  # expected hashes per share at difficulty 1
# The zero-config demo: a fleet grinding about this many real hashes per second (the
# simulator's scale) finds a simulated block about once a minute.
DEMO_FLEET_HASHRATE_HS = 2_000_000.0
DEMO_BLOCK_INTERVAL_S = 60.0
DEMO_SIMULATED_DIFFICULTY = DEMO_FLEET_HASHRATE_HS * DEMO_BLOCK_INTERVAL_S / DIFF1_HASHES
DEMO_STRATUM = {
    "listen": ["127.0.0.1:3333"],
    "min_difficulty": 1e-6,  # simulated miners grind kH/s to MH/s
    "start_difficulty": 0.0005,
}


def demo_config() -> GridpoolConfig:
    """The zero-config setup: devnet, regtest, simulated block difficulty, low shares."""
    return parse_config({
        "network": {"chain": "regtest", "simulated_difficulty": DEMO_SIMULATED_DIFFICULTY},
        "stratum": DEMO_STRATUM,
        "http": {"listen": "127.0.0.1:8080"},
    })


def banner(app: PoolApp) -> str:
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
        lines.append(f"  HTTP      {base}/metrics  /healthz  /api/pool")
    if simulated is not None:
        lines.append(f"  Blocks    SIMULATED: a share is a block at difficulty {simulated:g}")
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


async def serve(config: GridpoolConfig) -> int:
    app = PoolApp(config)
    try:
        await app.start()
    except (PoolError, OSError) as err:
        print(f"gridpool: could not start: {err}", file=sys.stderr)
        return EXIT_START_FAILED
    print(banner(app), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("stopping", reason="signal")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await app.stop(drain=True)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config)) if args.config else demo_config()
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    configure_logging(level=config.log.level, json=config.log.json)
    return asyncio.run(serve(config))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the pool (no --config: a local demo on the embedded devnet)")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.set_defaults(func=run)
