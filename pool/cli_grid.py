"""`gridpool grid`: the grid operator's side of the command API (docs/grid-api.md).

    gridpool grid keygen --id tso-1 --sites A          # a key file + the server's [[key]]
    gridpool grid curtail --site A --kw 500 --for 30m  # signed POST; prints the ack
    gridpool grid cancel --site A --id <event id>
    gridpool grid status [--site A]

The API URL comes from ``--url`` or ``GRIDPOOL_GRID_URL`` (default
http://127.0.0.1:8080/grid), the key file from ``--key-file`` or ``GRIDPOOL_GRID_KEY``.
A refused request prints its status and reason on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from miners.grid.hmac_auth import new_key_file, read_key_file, signed_headers
from pool.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8080/grid"
TIMEOUT_S = 10.0  # whole request deadline
_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """'30m', '1h30m', '90s', or plain seconds."""
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION_RE.fullmatch(text.strip())
        if not match or not any(match.groups()):
            raise ConfigError("--for", f"{text!r} is not a duration like 30m, 1h30m") from None
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ConfigError("--for", "must be > 0")
    return seconds


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("grid", help="grid operator commands (curtail, status, keys)")
    sub = parser.add_subparsers(dest="grid_command", required=True)

    def client_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=os.environ.get("GRIDPOOL_GRID_URL", DEFAULT_URL),
                       help="the grid API base URL (…/grid)")
        p.add_argument("--key-file", type=Path, default=_env_path("GRIDPOOL_GRID_KEY"),
                       help="key file written by `gridpool grid keygen`")
        p.add_argument("--ca-file", type=Path, help="CA of the server certificate (https)")
        p.add_argument("--cert", type=Path, help="TLS client certificate (mTLS)")
        p.add_argument("--cert-key", type=Path, help="its private key")

    p = sub.add_parser("curtail", help="limit a site's power (signed POST)")
    client_args(p)
    p.add_argument("--site", required=True)
    p.add_argument("--kw", type=float, required=True, help="limit in kW")
    p.add_argument("--for", dest="duration", help="how long, e.g. 30m (default: until cancel)")
    p.add_argument("--start", help="RFC 3339 time or unix seconds (default: now)")
    p.add_argument("--ramp-down", type=float, help="kW/min going down")
    p.add_argument("--ramp-up", type=float, help="kW/min coming back up")
    p.add_argument("--id", help="your event id (resending the same id is a no-op)")
    p.set_defaults(func=run_curtail)

    p = sub.add_parser("cancel", help="cancel an event (signed DELETE)")
    client_args(p)
    p.add_argument("--site", required=True)
    p.add_argument("--id", required=True)
    p.set_defaults(func=run_cancel)

    p = sub.add_parser("status", help="the sites, or one site's timeline and compliance")
    client_args(p)
    p.add_argument("--site")
    p.set_defaults(func=run_status)

    p = sub.add_parser("keygen", help="write a new operator key file")
    p.add_argument("--id", required=True, help="key id, e.g. tso-1")
    p.add_argument("--out", type=Path, help="key file (default: <id>.json)")
    p.add_argument("--role", choices=("grid", "site", "admin"), default="grid")
    p.add_argument("--sites", default="*", help="comma-separated site ids, or *")
    p.set_defaults(func=run_keygen)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def run_curtail(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"limit_kw": args.kw}
    if args.duration:
        body["duration_s"] = parse_duration(args.duration)
    if args.start:
        body["start"] = float(args.start) if _is_number(args.start) else args.start
    if args.ramp_down is not None:
        body["ramp_down_kw_per_min"] = args.ramp_down
    if args.ramp_up is not None:
        body["ramp_up_kw_per_min"] = args.ramp_up
    if args.id:
        body["id"] = args.id
    return _call(args, "POST", f"/v1/sites/{args.site}/curtailments", body)


def run_cancel(args: argparse.Namespace) -> int:
    return _call(args, "DELETE", f"/v1/sites/{args.site}/curtailments/{args.id}", None)


def run_status(args: argparse.Namespace) -> int:
    path = f"/v1/sites/{args.site}/timeline" if args.site else "/v1/sites"
    return _call(args, "GET", path, None)


def run_keygen(args: argparse.Namespace) -> int:
    out = args.out or Path(f"{args.id}.json")
    try:
        new_key_file(out, args.id)
    except FileExistsError:
        raise ConfigError("--out", f"{out} exists; keys are never overwritten") from None
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    print(f"# wrote {out} (keep it secret); add this to the server's grid keys file:")
    print(f'[[key]]\nfile = "{out.name}"\nrole = "{args.role}"\nsites = {json.dumps(sites)}')
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _call(args: argparse.Namespace, method: str, path: str, body: Any) -> int:
    if args.key_file is None:
        raise ConfigError("--key-file", "required (or set GRIDPOOL_GRID_KEY)")
    key_id, secret = read_key_file(args.key_file)
    status, reply = asyncio.run(_request(args, method, path, body, key_id, secret))
    if 200 <= status < 300:
        print(json.dumps(reply, indent=2))
        return 0
    reason = reply.get("reason", reply) if isinstance(reply, dict) else reply
    field = f" (field {reply['field']})" if isinstance(reply, dict) and "field" in reply else ""
    print(f"gridpool grid: HTTP {status}: {reason}{field}", file=sys.stderr)
    return 1


async def _request(args: argparse.Namespace, method: str, path: str, body: Any, key_id: str,
                   secret: bytes) -> tuple[int, Any]:
    base = args.url.rstrip("/")
    target = urlsplit(base).path + path
    data = b"" if body is None else json.dumps(body).encode()
    headers = signed_headers(key_id, secret, method, target, data, now=time.time())
    if data:
        headers["Content-Type"] = "application/json"
    ssl_context = _ssl(args) if base.startswith("https") else None
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                method, base + path, data=data, headers=headers, ssl=ssl_context) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ConfigError("--url", f"cannot reach {base}: {err!r}") from None
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def _ssl(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(args.ca_file) if args.ca_file else None)
    if args.cert is not None:
        context.load_cert_chain(args.cert, args.cert_key)
    return context
