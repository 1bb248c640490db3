"""The `gridpool` command. Each sub-command lives in its own module with
`register(subparsers)`, so adding one is a one-line change to COMMANDS."""

import argparse
import importlib
import sys

from pool.errors import PoolError
from pool.logs import configure_logging

# each module defines register(subparsers) -> None
COMMANDS: list[str] = [
    "pool.cli_info",
    "pool.cli_devnet",
    "pool.cli_check_config",
    "pool.cli_run",
    "pool.cli_sim",
    "pool.cli_fleet",
    "pool.cli_grid",
    "pool.cli_audit",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridpool", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; a PoolError becomes one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    configure_logging(level=getattr(args, "log_level", "info"))
    try:
        return int(args.func(args) or 0)
    except PoolError as err:
        print(f"gridpool {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
