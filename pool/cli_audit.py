"""`gridpool audit`: check and export the energy audit chain (docs/audit.md).

    gridpool audit verify                          # every site of the demo's ledger
    gridpool audit verify --config pool.toml --head A:96:<hash>
    gridpool audit verify --file export.json       # an export, on its own
    gridpool audit report --site A --from 2025-01-01 --to 2025-02-01 --format csv

The rows come from the ledger of ``--config`` ([ledger] url), from ``--ledger URL``, from
a JSON export (``--file``), or by default from the zero-config demo's ledger. verify exits
0 when every chain holds, 1 when one is broken, 2 on a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from miners.audit.chain import KINDS, AuditRecord, ChainCheck
from miners.audit.errors import AuditError, AuditFileError
from miners.audit.export import Export, read_json, to_csv, to_json, verify_export
from miners.audit.store import MAX_ROWS, AuditStore, open_audit_store
from pool.config import load_config
from pool.errors import ConfigError
from pool.ledger.settings import check_url

T = TypeVar("T")
EXIT_BROKEN = 1
EXIT_USAGE = 2
_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="verify and export the energy audit chain")
    sub = parser.add_subparsers(dest="audit_command", required=True)

    p = sub.add_parser("verify", help="check every site's hash chain (exit 1 if broken)")
    _source_args(p)
    p.add_argument("--site", help="only this site")
    p.add_argument("--head", action="append", default=[], metavar="SITE:SEQ:HASH",
                   help="a head recorded earlier (as printed by verify); the chain must "
                   "still hold that row with that hash (repeatable)")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("report", help="export one site's rows as CSV or JSON")
    _source_args(p)
    p.add_argument("--site", required=True)
    p.add_argument("--from", dest="since", metavar="TIME",
                   help="RFC 3339 / ISO 8601 time (UTC if no offset) or unix seconds")
    p.add_argument("--to", dest="until", metavar="TIME", help="end, exclusive (same forms)")
    p.add_argument("--kind", help=f"only rows of this kind ({', '.join(KINDS)})")
    p.add_argument("--format", required=True, help="csv or json")
    p.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=run_report)


def _source_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--config", metavar="FILE", help="pool config; its [ledger] url")
    group.add_argument("--ledger", metavar="URL", help="sqlite:///path or postgresql://…")
    group.add_argument("--file", metavar="EXPORT", type=Path, help="a JSON export")


# -- arguments ----------------------------------------------------------------------------


def parse_time(text: str, option: str) -> float:
    """Unix seconds, or an ISO 8601 date/time (UTC when it has no offset)."""
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(option, f"{text!r} is not an ISO 8601 time or unix "
                              "seconds") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        value = stamp.timestamp()
    if not math.isfinite(value):
        raise ConfigError(option, f"{text!r} is not a finite time")
    return value


def parse_head(text: str) -> tuple[str, tuple[int, str]]:
    """SITE:SEQ:HASH (the site may itself hold colons)."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise ConfigError("--head", f"{text!r} is not SITE:SEQ:HASH")
    site, seq_text, digest = parts
    if not seq_text.isdigit() or int(seq_text) < 1:
        raise ConfigError("--head", f"{text!r}: SEQ must be a positive integer")
    if not _HASH_RE.fullmatch(digest):
        raise ConfigError("--head", f"{text!r}: HASH must be 64 hex digits")
    return site, (int(seq_text), digest.lower())


def _report_filters(args: argparse.Namespace) -> dict[str, Any]:
    since = parse_time(args.since, "--from") if args.since is not None else None
    until = parse_time(args.until, "--to") if args.until is not None else None
    if since is not None and until is not None and since > until:
        raise ConfigError("--from", "is after --to")
    if args.kind is not None and args.kind not in KINDS:
        raise ConfigError("--kind", f"{args.kind!r} is not one of {', '.join(KINDS)}")
    if args.format not in ("csv", "json"):
        raise ConfigError("--format", f"{args.format!r} is not csv or json")
    return {"site": args.site, "since": since, "until": until, "kind": args.kind}


def ledger_url(args: argparse.Namespace) -> str:
    """--ledger, the [ledger] url of --config, or the zero-config demo's ledger (the
    default data dir, as `gridpool run` without --config uses)."""
    if args.ledger:
        try:
            check_url(args.ledger)
        except ConfigError as err:
            raise ConfigError("--ledger", err.reason) from None
        url, option = args.ledger, "--ledger"
    else:
        url = load_config(Path(args.config) if args.config else None).ledger.dsn()
        option = "--config" if args.config else "--ledger"
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and not Path(parts.path).exists():
        raise ConfigError(option, f"no ledger at {parts.path} (run `gridpool run` first, or "
                          "pass --config or --ledger)")
    return url


async def _with_store(url: str, fn: Callable[[AuditStore], Any]) -> Any:
    store = open_audit_store(url)
    try:
        await store.migrate()  # creates the (empty) audit tables of an older ledger
        return await fn(store)
    finally:
        await store.close()


def _guard(fn: Callable[[], T]) -> T:
    """Store and file errors become the CLI's usage/config exit status."""
    try:
        return fn()
    except AuditFileError as err:
        raise ConfigError("--file", str(err)) from None
    except AuditError as err:
        raise ConfigError("ledger", str(err)) from None


# -- verify -------------------------------------------------------------------------------


def format_check(check: ChainCheck) -> str:
    if not check.ok:
        done = f" (rows up to {check.head_seq} hold)" if check.head_seq else ""
        return f"{check.site}: BROKEN: {check.reason}{done}"
    line = f"{check.site}: ok, {check.rows} rows, head {check.site}:{check.head_seq}:" \
           f"{check.head_hash}"
    if check.first_seq > 1:
        line += (f" (starts at row {check.first_seq}: checked from its prev_hash, rows "
                 "before it are not in the file)")
    if check.gaps:
        line += f" ({check.gaps} seq gaps of a kind-filtered export: rows checked one by one)"
    return line


def run_verify(args: argparse.Namespace) -> int:
    checkpoints = dict(parse_head(text) for text in args.head)
    if args.file is not None:
        export = _guard(lambda: read_json(args.file))
        _check_site(args.site, {row.site for row in export.rows} | set(checkpoints))
        checks = verify_export(export, site=args.site, checkpoints=checkpoints)
    else:
        url = ledger_url(args)

        async def verify(store: AuditStore) -> list[ChainCheck]:
            _check_site(args.site, set(await store.sites()) | set(checkpoints))
            return await store.verify(args.site, checkpoints=checkpoints)

        checks = _guard(lambda: asyncio.run(_with_store(url, verify)))
    if not checks:
        print("no audit rows", file=sys.stderr)
    for check in checks:
        print(format_check(check))
    return 0 if all(c.ok for c in checks) else EXIT_BROKEN


def _check_site(site: str | None, known: set[str]) -> None:
    if site is not None and site not in known:
        raise ConfigError("--site", f"no audit rows for site {site!r}")


# -- report -------------------------------------------------------------------------------


async def _store_rows(store: AuditStore, filters: dict[str, Any]
                      ) -> tuple[list[AuditRecord], dict[str, tuple[int, str]]]:
    site = filters["site"]
    heads = {k: v for k, v in (await store.heads()).items() if k == site}
    head_seq = heads.get(site, (0, ""))[0]  # rows appended after this read are left out
    rows: list[AuditRecord] = []
    after = 0
    while True:
        page = await store.rows(site=site, since=filters["since"], until=filters["until"],
                                kind=filters["kind"], after_seq=after, limit=MAX_ROWS)
        rows += [r for r in page if r.seq <= head_seq]
        if len(page) < MAX_ROWS or page[-1].seq >= head_seq:
            return rows, heads
        after = page[-1].seq


def _file_rows(export: Export, filters: dict[str, Any]) -> list[AuditRecord]:
    since, until, kind = filters["since"], filters["until"], filters["kind"]
    return [r for r in export.rows if r.site == filters["site"]
            and (since is None or r.time >= since) and (until is None or r.time < until)
            and (kind is None or r.kind == kind)]


def run_report(args: argparse.Namespace) -> int:
    filters = _report_filters(args)
    if args.file is not None:
        export = _guard(lambda: read_json(args.file))
        rows, heads = _file_rows(export, filters), export.heads
        # filters the file was already cut with still hold for the rows taken from it
        filters = {k: v if v is not None else export.filters.get(k) for k, v in filters.items()}
    else:
        url = ledger_url(args)
        rows, heads = _guard(lambda: asyncio.run(_with_store(
            url, lambda store: _store_rows(store, filters))))
    text = (to_csv(rows) if args.format == "csv"
            else to_json(rows, heads=heads, filters=filters))
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as err:
            raise ConfigError("--output", f"cannot write {args.output}: {err.strerror}") from None
        print(f"wrote {len(rows)} rows to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
