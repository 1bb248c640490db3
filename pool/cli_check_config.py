"""`gridpool check-config FILE`: validate a configuration without starting anything.

Exit 0 with one `OK: ...` line, or exit 2 with the error naming the key on stderr."""

import argparse
import sys
from pathlib import Path

from pool.config import load_config
from pool.errors import ConfigError

EXIT_CONFIG_ERROR = 2


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.file))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(f"OK: {config.summary()}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check-config", help="validate a config file and exit")
    parser.add_argument("file", help="path to the TOML config file")
    parser.set_defaults(func=run)
