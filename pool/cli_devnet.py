"""`gridpool devnet`: run the embedded regtest node standalone, for bitcoind clients."""

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from pool.devnet.mempool import MAX_MEMPOOL_TARGET
from pool.devnet.node import DEFAULT_RPC_PORT, DEFAULT_ZMQ_PORT, Devnet
from pool.logs import configure_logging


async def _serve(args: argparse.Namespace) -> int:
    devnet = Devnet(
        args.datadir,
        rpc_port=args.rpc_port,
        zmq_port=None if args.no_zmq else args.zmq_port,
        mempool_target=args.txs,
        rpc_user=args.rpc_user,
        rpc_password=args.rpc_password,
    )
    await devnet.start()
    print(f"rpc_url: {devnet.rpc_url}", flush=True)
    print(f"cookie: {devnet.cookie_path}", flush=True)
    print(f"zmq: {devnet.zmq_endpoint or 'disabled'}", flush=True)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, devnet.request_stop)
    await devnet.stopped.wait()  # the `stop` RPC or a signal
    return 0


def _txs(value: str) -> int:
    count = int(value)
    if not 0 <= count <= MAX_MEMPOOL_TARGET:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_MEMPOOL_TARGET}")
    return count


def run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level)
    return asyncio.run(_serve(args))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "devnet", help="run the embedded regtest node (bitcoind RPC + ZMQ) standalone"
    )
    parser.add_argument(
        "--datadir",
        type=Path,
        default=None,
        help="chain data directory (default: a temporary one, deleted at exit)",
    )
    parser.add_argument(
        "--rpc-port",
        type=int,
        default=DEFAULT_RPC_PORT,
        help=f"JSON-RPC port on 127.0.0.1 (default {DEFAULT_RPC_PORT}; 0 = any)",
    )
    parser.add_argument(
        "--zmq-port",
        type=int,
        default=DEFAULT_ZMQ_PORT,
        help=f"ZMQ PUB port on 127.0.0.1 (default {DEFAULT_ZMQ_PORT}; 0 = any)",
    )
    parser.add_argument("--no-zmq", action="store_true", help="do not publish ZMQ notifications")
    parser.add_argument(
        "--txs",
        type=_txs,
        default=200,
        help=f"transactions kept in the mempool (default 200, max {MAX_MEMPOOL_TARGET})",
    )
    parser.add_argument("--rpc-user", default=None, help="accept this user (with --rpc-password)")
    parser.add_argument("--rpc-password", default=None, help="password for --rpc-user")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.set_defaults(func=run)
