"""Audit exports: a JSON document an auditor can verify on its own, and CSV for
spreadsheets. docs/audit.md describes both.

The JSON export keeps every hashed field exactly (bodies as JSON objects, `time` as the
stored float), so `gridpool audit verify --file` recomputes the chain from the file alone.
It also says how it was filtered: an export starting after row 1 is verified from its first
row's prev_hash, one filtered by kind only row by row across the gaps, and the recorded
heads are compared only when the export runs up to them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from miners.audit.chain import AuditRecord, ChainCheck, verify_chain
from miners.audit.errors import AuditFileError

FORMAT = "gridpool-audit/1"
MAX_EXPORT_BYTES = 256 * 1024 * 1024  # an export file read back for verification
FIXED_COLUMNS = ("site", "seq", "kind", "time", "time_iso")
HASH_COLUMNS = ("prev_hash", "row_hash")
FILTER_KEYS = ("site", "since", "until", "kind")
_ROW_KEYS = ("site", "seq", "kind", "time", "body", "prev_hash", "row_hash")


@dataclass(frozen=True, slots=True)
class Export:
    """A JSON export read back: its rows in file order, the heads and the filters."""

    rows: list[AuditRecord]
    heads: dict[str, tuple[int, str]]
    filters: dict[str, Any] = field(default_factory=dict)


def time_iso(unix_s: float) -> str:
    """RFC 3339 in UTC, e.g. 2025-01-31T12:15:00Z (fractions only when there are some)."""
    if not isinstance(unix_s, int | float) or not math.isfinite(unix_s):
        return ""
    stamp = datetime.fromtimestamp(unix_s, UTC)
    spec = "seconds" if stamp.microsecond == 0 else "milliseconds"
    return stamp.isoformat(timespec=spec).replace("+00:00", "Z")


def _last_heads(rows: Iterable[AuditRecord]) -> dict[str, tuple[int, str]]:
    heads: dict[str, tuple[int, str]] = {}
    for row in rows:
        heads[row.site] = (row.seq, row.row_hash)
    return heads


def to_json(rows: Sequence[AuditRecord], *, heads: Mapping[str, tuple[int, str]] | None = None,
            filters: Mapping[str, Any] | None = None) -> str:
    """The export document. `heads` are the store's recorded heads (default: each site's
    last row here); `filters` how the rows were chosen (site, since, until, kind)."""
    heads = _last_heads(rows) if heads is None else heads
    sites = {row.site for row in rows}
    doc = {
        "format": FORMAT,
        "exported_at": time_iso(datetime.now(UTC).timestamp()),
        "filters": {key: (filters or {}).get(key) for key in FILTER_KEYS},
        "heads": {site: {"seq": seq, "row_hash": digest}
                  for site, (seq, digest) in sorted(heads.items()) if site in sites},
        "rows": [{"site": r.site, "seq": r.seq, "kind": r.kind, "time": r.time,
                  "time_iso": time_iso(r.time), "body": r.body, "prev_hash": r.prev_hash,
                  "row_hash": r.row_hash} for r in rows],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _body(row: AuditRecord) -> Mapping[str, Any]:
    return row.body if isinstance(row.body, Mapping) else {"body": row.body}


def to_csv(rows: Sequence[AuditRecord]) -> str:
    """One line per row: site, seq, kind, time, time_iso, the body's keys (the union over
    the rows, in order of appearance; a key named like a fixed column gets a "body."
    prefix; nested values as compact JSON), prev_hash, row_hash."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(_body(row)))
    reserved = set(FIXED_COLUMNS) | set(HASH_COLUMNS)
    names = [f"body.{k}" if k in reserved else k for k in keys]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*FIXED_COLUMNS, *names, *HASH_COLUMNS])
    for r in rows:
        body = _body(r)
        writer.writerow([r.site, r.seq, r.kind, _cell(r.time), time_iso(r.time),
                         *(_cell(body.get(k)) for k in keys), r.prev_hash, r.row_hash])
    return out.getvalue()


# -- reading an export back ---------------------------------------------------------------


def read_json(path: Path) -> Export:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_EXPORT_BYTES + 1)
    except OSError as err:
        raise AuditFileError(f"{path}: cannot read: {err.strerror}") from None
    if len(data) > MAX_EXPORT_BYTES:
        raise AuditFileError(f"{path}: larger than {MAX_EXPORT_BYTES} bytes")
    try:
        return parse_json(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise AuditFileError(f"{path}: not UTF-8") from None
    except AuditFileError as err:
        raise AuditFileError(f"{path}: {err}") from None


def parse_json(text: str) -> Export:
    """An export document; AuditFileError naming what is wrong. Field values are taken as
    they are (verification reports a bad one as a broken row)."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise AuditFileError(f"not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AuditFileError(f'not a {FORMAT} export (no "format": "{FORMAT}")')
    if not isinstance(doc.get("rows"), list):
        raise AuditFileError('"rows" must be a list')
    rows = []
    for i, item in enumerate(doc["rows"]):
        if not isinstance(item, dict) or any(k not in item for k in _ROW_KEYS):
            raise AuditFileError(f"rows[{i}]: needs the keys {', '.join(_ROW_KEYS)}")
        rows.append(AuditRecord(*(item[k] for k in _ROW_KEYS)))
    return Export(rows, _parse_heads(doc.get("heads", {})), _parse_filters(doc.get("filters")))


def _parse_heads(raw: Any) -> dict[str, tuple[int, str]]:
    if not isinstance(raw, dict):
        raise AuditFileError('"heads" must be an object')
    heads = {}
    for site, head in raw.items():
        if not (isinstance(head, dict) and isinstance(head.get("seq"), int)
                and isinstance(head.get("row_hash"), str)):
            raise AuditFileError(f'heads.{site}: must be {{"seq": int, "row_hash": str}}')
        heads[site] = (head["seq"], head["row_hash"])
    return heads


def _parse_filters(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AuditFileError('"filters" must be an object')
    return {k: raw.get(k) for k in FILTER_KEYS}


def verify_export(export: Export, *, site: str | None = None,
                  checkpoints: Mapping[str, tuple[int, str]] | None = None
                  ) -> list[ChainCheck]:
    """Each site's chain in the file (file order), as far as the filters allow: `since`
    anchors it on its first row's prev_hash, `kind` checks rows individually across seq
    gaps, and the heads are compared only when neither `until` nor `kind` cut the tail."""
    by_site: dict[str, list[AuditRecord]] = {}
    for row in export.rows:
        by_site.setdefault(row.site if isinstance(row.site, str) else "", []).append(row)
    if site is not None:
        by_site = {site: by_site.get(site, [])}
    else:
        for name in checkpoints or {}:  # all of a checkpointed site's rows may be gone
            by_site.setdefault(name, [])
    filters = export.filters
    full_tail = filters.get("until") is None and filters.get("kind") is None
    checks = []
    for name, rows in sorted(by_site.items()):
        checks.append(verify_chain(
            rows, site=name, partial=filters.get("since") is not None,
            allow_gaps=filters.get("kind") is not None,
            expected_head=export.heads.get(name) if full_tail else None,
            checkpoint=(checkpoints or {}).get(name)))
    return checks
