"""Newline-delimited framing with a hard line-length bound (pure).

Stratum V1 is one JSON object per line. A line longer than `max_line_bytes` is dropped before
anyone parses it: the framer stops buffering and skips to the next newline, reporting one
`OVERSIZED` marker so the session can charge for it. Memory per connection therefore never
exceeds about `max_line_bytes` plus one read.
"""

from __future__ import annotations

from typing import Final

OVERSIZED: Final = None  # marker yielded in place of a dropped over-long line


class LineFramer:
    """Split a byte stream into lines (without the newline). `\\r\\n` endings are accepted."""

    __slots__ = ("_buffer", "_discarding", "max_line_bytes")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | None]:
        """Return the complete lines in data (OVERSIZED for each dropped one); keep the rest."""
        lines: list[bytes | None] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep_partial(data[start:], lines)
                return lines
            if self._discarding:
                self._discarding = False
            else:
                if self._buffer:  # the line began in an earlier read
                    self._buffer += data[start:end]
                    line = _without_cr(bytes(self._buffer))
                    self._buffer.clear()
                else:
                    line = _without_cr(data[start:end])
                if len(line) > self.max_line_bytes:
                    lines.append(OVERSIZED)
                elif line.strip():
                    lines.append(line)
            start = end + 1

    def _keep_partial(self, tail: bytes, lines: list[bytes | None]) -> None:
        if self._discarding or not tail:
            return
        self._buffer += tail
        # +1: the CR of a CRLF ending may arrive in this read and its LF in the next.
        if len(self._buffer) > self.max_line_bytes + 1:
            self._buffer.clear()
            self._discarding = True
            lines.append(OVERSIZED)

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)


def _without_cr(line: bytes) -> bytes:
    """The line without the CR of a CRLF ending (one only: the bound check above counts one)."""
    return line[:-1] if line.endswith(b"\r") else line
