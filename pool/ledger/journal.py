"""The share recorder's local append-only journal (synchronous file I/O; call it from a
thread). It holds the shares acknowledged while the database could not take them.

Format: one line per share, `<crc32 of the JSON, 8 hex digits> <JSON array>\\n`, the array
holding the ShareRecord fields in declaration order (floats round-trip exactly through
JSON). `append` returns only after `fsync`, and the recorder acknowledges a share only
after that. A crash during an append leaves at most a torn last line, which was never
acknowledged: `recover()` cuts it off before anything new is appended. A damaged line in
the middle (a disk error) is skipped with an error log, never silently.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import astuple
from pathlib import Path

import structlog

from pool.errors import LedgerBusyError
from pool.ledger.store import ShareRecord

log = structlog.get_logger(__name__)

READ_CHUNK = 1 << 20  # bytes read per os.pread


def encode(share: ShareRecord) -> bytes:
    body = json.dumps(astuple(share), separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode(line: bytes) -> ShareRecord | None:
    """The share of one line (without its newline), or None if the line is damaged."""
    crc_hex, sep, body = line.partition(b" ")
    try:
        if not sep or int(crc_hex, 16) != zlib.crc32(body):
            return None
        return ShareRecord(*json.loads(body))
    except (ValueError, TypeError):
        return None


class ShareJournal:
    """One journal file; `max_bytes` bounds it (appends past it raise LedgerBusyError)."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self.size = 0

    def open(self) -> None:
        """Open (creating it durably) and cut off a torn tail left by a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if not existed:
            _fsync_dir(self.path.parent)
        self.size = os.fstat(self._fd).st_size
        good = self._valid_prefix()
        if good < self.size:
            log.warning("ledger_journal_torn_tail", path=str(self.path), cut_bytes=self.size - good)
            os.ftruncate(self._fd, good)
            os.fsync(self._fd)
            self.size = good

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def append(self, shares: Sequence[ShareRecord]) -> None:
        """Write and fsync; only then may the shares be acknowledged."""
        data = b"".join(encode(s) for s in shares)
        if self.size + len(data) > self.max_bytes:
            raise LedgerBusyError(
                f"share journal {self.path} would exceed {self.max_bytes} bytes; "
                "the database has been unreachable too long"
            )
        assert self._fd is not None, "journal not open"
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self.size += len(data)

    def read(self, offset: int, max_shares: int) -> tuple[list[ShareRecord], int]:
        """Up to `max_shares` shares from byte `offset`; returns them and the next offset."""
        assert self._fd is not None, "journal not open"
        shares: list[ShareRecord] = []
        buffer = b""
        pos = offset
        while len(shares) < max_shares and pos < self.size:
            chunk = os.pread(self._fd, min(READ_CHUNK, self.size - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            buffer += chunk
            while len(shares) < max_shares:
                end = buffer.find(b"\n")
                if end < 0:
                    break
                line, buffer = buffer[:end], buffer[end + 1 :]
                offset += end + 1
                share = decode(line)
                if share is None:
                    log.error("ledger_journal_bad_line", path=str(self.path), offset=offset)
                else:
                    shares.append(share)
        return shares, offset

    def clear(self) -> None:
        """Empty the journal once everything in it is committed to the database."""
        assert self._fd is not None, "journal not open"
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.size = 0

    def _valid_prefix(self) -> int:
        """Bytes up to the end of the last intact line."""
        assert self._fd is not None
        good = pos = 0
        tail = b""
        while pos < self.size:
            chunk = os.pread(self._fd, min(READ_CHUNK, self.size - pos), pos)
            if not chunk:
                break
            start = pos - len(tail)
            tail += chunk
            pos += len(chunk)
            cut = 0
            while (end := tail.find(b"\n", cut)) >= 0:
                if decode(tail[cut:end]) is not None:
                    good = start + end + 1
                cut = end + 1
            tail = tail[cut:]
        return good


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
