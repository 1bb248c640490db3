"""The audit hash chain: canonical bytes of a row, its hash, and verification. Pure.

Each site is its own chain. Row `seq` (1, 2, 3 …) carries `prev_hash`, the `row_hash` of
row seq-1 (GENESIS_HASH for row 1), and `row_hash` = SHA-256 of the row's canonical bytes,
which cover every field including `prev_hash`. Changing any field of a stored row breaks
its own hash; rewriting it consistently breaks the next row's `prev_hash`; deleting rows
leaves a gap in `seq`; cutting the tail leaves the chain short of the recorded head.
docs/audit.md spells out the canonical form so an auditor can re-implement it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from miners.audit.errors import AuditError

GENESIS_HASH = "0" * 64
KINDS = ("interval", "event", "compliance")
MAX_BODY_BYTES = 65_536  # canonical JSON of one body; a row is a summary, not a dump
MAX_BODY_DEPTH = 16  # nesting of lists and dicts inside a body
MAX_SITE_CHARS = 128
_HASH_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of a site's chain, as stored and as exported."""

    site: str
    seq: int  # 1, 2, 3 … per site
    kind: str  # one of KINDS
    time: float  # unix seconds (interval rows: the interval start)
    body: Mapping[str, Any]  # JSON-able; stored as its canonical JSON text
    prev_hash: str  # hex row_hash of row seq-1 of this site, GENESIS_HASH for row 1
    row_hash: str  # hex SHA-256 of canonical_bytes(site, seq, kind, time, body, prev_hash)


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The verdict on one site's chain. `head_seq`/`head_hash` are the last row that
    verified (0 and GENESIS_HASH when none did); `rows` counts the rows read, which stops
    at the first broken one."""

    site: str
    rows: int
    ok: bool
    head_seq: int
    head_hash: str
    first_bad_seq: int | None
    reason: str  # "" when ok, else "row 7: …"
    first_seq: int = 1  # > 1: a partial chain, anchored on its first row's prev_hash
    gaps: int = 0  # seq jumps accepted (only when verifying a kind-filtered export)


def _json_dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def _check_json(value: Any, path: str, depth: int) -> None:
    """AuditError naming `path` unless `value` is plain JSON (finite floats, str keys)."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditError(f"{path}: {value!r} is not a finite number")
        return
    if depth >= MAX_BODY_DEPTH:
        raise AuditError(f"{path}: nested deeper than {MAX_BODY_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditError(f"{path}: key {key!r} is not a string")
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth + 1)
        return
    raise AuditError(f"{path}: {type(value).__name__} is not JSON "
                     "(str, int, float, bool, None, list, dict)")


def canonical_body(body: Mapping[str, Any]) -> str:
    """The body's canonical JSON text (what the store keeps); AuditError if it is not JSON."""
    if not isinstance(body, Mapping):
        raise AuditError(f"body: must be a JSON object, got {type(body).__name__}")
    _check_json(body, "body", 0)
    try:
        text = _json_dumps(dict(body))
    except (ValueError, TypeError) as err:  # e.g. an int past the 4300-digit limit
        raise AuditError(f"body: {err}") from None
    if len(text) > MAX_BODY_BYTES:
        raise AuditError(f"body: {len(text)} bytes of JSON, over {MAX_BODY_BYTES}")
    return text


def canonical_bytes(site: str, seq: int, kind: str, time: float, body: Mapping[str, Any],
                    prev_hash: str) -> bytes:
    """The bytes `row_hash` is the SHA-256 of: one JSON object of the six fields with
    sorted keys, no whitespace, ASCII only (\\uXXXX escapes), `time` as a float, floats in
    Python's shortest round-trip repr. docs/audit.md has the exact rules."""
    doc = {"site": site, "seq": seq, "kind": kind, "time": float(time), "body": body,
           "prev_hash": prev_hash}
    try:
        return _json_dumps(doc).encode("ascii")
    except (ValueError, TypeError) as err:
        raise AuditError(f"row {seq}: not canonical JSON: {err}") from None


def row_hash_hex(site: str, seq: int, kind: str, time: float, body: Mapping[str, Any],
                 prev_hash: str) -> str:
    return hashlib.sha256(canonical_bytes(site, seq, kind, time, body, prev_hash)).hexdigest()


def check_site(site: Any) -> str:
    if not isinstance(site, str) or not site or len(site) > MAX_SITE_CHARS:
        raise AuditError(f"site: must be a string of 1 to {MAX_SITE_CHARS} characters")
    if not site.isprintable():
        raise AuditError(f"site: {site!r} has control characters")
    return site


def check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise AuditError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def check_time(time: Any) -> float:
    if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
        raise AuditError(f"time: {time!r} is not a finite number of unix seconds")
    return float(time)


def make_record(site: str, seq: int, kind: str, time: float, body: Mapping[str, Any],
                prev_hash: str) -> AuditRecord:
    """A validated row with its hash; the body is normalized to what JSON gives back
    (tuples become lists), so the record equals the one read from the store."""
    check_site(site)
    check_kind(kind)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise AuditError(f"seq: {seq!r} is not a positive integer")
    if not isinstance(prev_hash, str) or not _HASH_RE.fullmatch(prev_hash):
        raise AuditError("prev_hash: must be 64 lowercase hex digits")
    when = check_time(time)
    plain = json.loads(canonical_body(body))
    return AuditRecord(site, seq, kind, when, plain, prev_hash,
                       row_hash_hex(site, seq, kind, when, plain, prev_hash))


def _malformed(row: AuditRecord) -> str:
    """Why a row read back cannot be a stored row ("" if its fields are well-formed)."""
    if isinstance(row.seq, bool) or not isinstance(row.seq, int):
        return f"seq {row.seq!r} is not an integer"
    if not isinstance(row.body, Mapping):
        return "body is not a JSON object"
    if row.kind not in KINDS:
        return f"kind {row.kind!r} is not one of {', '.join(KINDS)}"
    if isinstance(row.time, bool) or not isinstance(row.time, int | float) \
            or not math.isfinite(row.time):
        return f"time {row.time!r} is not a finite number"
    for name in ("prev_hash", "row_hash"):
        if not isinstance(getattr(row, name), str) or not _HASH_RE.fullmatch(getattr(row, name)):
            return f"{name} is not 64 lowercase hex digits"
    try:
        canonical_body(row.body)
    except AuditError as err:
        return str(err)
    return ""


def _missing(last_seq: int, seq: int) -> str:
    if seq == last_seq + 2:
        return f"row {last_seq + 1} missing (seq jumps {last_seq}→{seq})"
    return f"rows {last_seq + 1}-{seq - 1} missing (seq jumps {last_seq}→{seq})"


class ChainVerifier:
    """Checks one site's rows fed in seq order, keeping O(1) state, and stops at the first
    broken row. `expected_head` is the recorded head (rows past it, or a chain short of it,
    are broken); `checkpoint` a head recorded elsewhere earlier (the chain must still hold
    that row with that hash, and may have grown since). `partial` anchors the chain on the
    first row's prev_hash instead of genesis (an export that starts at row N);
    `allow_gaps` accepts seq jumps without checking the link across them (an export
    filtered by kind)."""

    def __init__(self, site: str | None = None, *, expected_head: tuple[int, str] | None = None,
                 checkpoint: tuple[int, str] | None = None, partial: bool = False,
                 allow_gaps: bool = False) -> None:
        self.site = site
        self.expected_head = expected_head
        self.checkpoint = checkpoint
        self.partial = partial
        self.allow_gaps = allow_gaps
        self.rows = 0
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self.first_seq = 1
        self.gaps = 0
        self.bad: tuple[int, str] | None = None  # (first_bad_seq, reason)

    def _fail(self, seq: int, reason: str) -> bool:
        self.bad = (seq, reason)
        return False

    def feed(self, row: AuditRecord) -> bool:
        """Check the next row; False once the chain is broken (stop feeding then)."""
        if self.bad is not None:
            return False
        self.rows += 1
        if self.site is None:
            self.site = row.site
        problem = _malformed(row)
        seq = row.seq if isinstance(row.seq, int) else self.last_seq + 1
        if problem:
            return self._fail(seq, f"row {seq}: {problem}")
        if row.site != self.site:
            return self._fail(seq, f"row {seq}: belongs to site {row.site!r}")
        if self.rows == 1 and self.partial and seq > 1:
            self.first_seq, self.last_seq, self.last_hash = seq, seq - 1, row.prev_hash
        return self._check_row(row, seq)

    def _check_row(self, row: AuditRecord, seq: int) -> bool:
        linked = True
        if seq > self.last_seq + 1:
            if not self.allow_gaps:
                return self._fail(self.last_seq + 1, _missing(self.last_seq, seq))
            self.gaps += 1
            linked = False
        elif seq <= self.last_seq:
            return self._fail(seq, f"row {seq}: out of order or repeated (after row "
                                   f"{self.last_seq})")
        if self.expected_head is not None and seq > self.expected_head[0]:
            return self._fail(seq, f"row {seq}: past the recorded head "
                                   f"({_head_text(self.expected_head[0])})")
        actual = row_hash_hex(row.site, seq, row.kind, row.time, row.body, row.prev_hash)
        if actual != row.row_hash:
            return self._fail(seq, f"row {seq}: row_hash does not match its contents")
        if linked and row.prev_hash != self.last_hash:
            before = "the genesis hash" if seq == 1 else f"row {seq - 1}'s hash"
            return self._fail(seq, f"row {seq}: prev_hash is not {before}")
        for pinned, what in ((self.expected_head, "recorded head"),
                             (self.checkpoint, "given head")):
            if pinned is not None and seq == pinned[0] and row.row_hash != pinned[1]:
                return self._fail(seq, f"row {seq}: hash differs from the {what} "
                                       f"{pinned[1][:16]}… (the chain was rewritten)")
        self.last_seq, self.last_hash = seq, row.row_hash
        return True

    def finish(self) -> ChainCheck:
        if self.bad is None:
            for pinned, what in ((self.expected_head, "recorded head"),
                                 (self.checkpoint, "given head")):
                if pinned is not None and pinned[0] > self.last_seq:
                    end = f"at row {self.last_seq}" if self.rows else "with no rows"
                    self._fail(self.last_seq + 1,
                               f"chain ends {end} but the {what} is row {pinned[0]}")
                    break
        bad_seq, reason = self.bad if self.bad is not None else (None, "")
        return ChainCheck(self.site or "", self.rows, self.bad is None, self.last_seq,
                          self.last_hash, bad_seq, reason, self.first_seq, self.gaps)


def _head_text(seq: int) -> str:
    return f"row {seq}" if seq else "no head recorded"


def verify_chain(rows: Iterable[AuditRecord], *, expected_head: tuple[int, str] | None = None,
                 site: str | None = None, checkpoint: tuple[int, str] | None = None,
                 partial: bool = False, allow_gaps: bool = False) -> ChainCheck:
    """Check one site's rows, in the order given (seq order as stored). The first broken
    row is reported: an edited field, a missing row, rows out of order, a row past or a
    chain short of `expected_head`. See ChainVerifier for the options."""
    verifier = ChainVerifier(site, expected_head=expected_head, checkpoint=checkpoint,
                             partial=partial, allow_gaps=allow_gaps)
    for row in rows:
        if not verifier.feed(row):
            break
    return verifier.finish()
