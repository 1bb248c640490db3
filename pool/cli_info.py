"""`gridpool info`: one JSON object describing this installation."""

import argparse
import json
import platform

from pool import __version__, hashing


def run(args: argparse.Namespace) -> int:
    info = {
        "version": __version__,
        "hash_backend": hashing.get_backend().name,
        "hash_backends_available": hashing.available_backends(),
        "python": platform.python_version(),
        "platform": platform.machine(),
    }
    print(json.dumps(info))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="print version and hash backends as JSON")
    parser.set_defaults(func=run)
