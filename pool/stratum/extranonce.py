"""extranonce1 allocation: unique per live connection, handed out in order, never random.

Two live sessions with the same extranonce1 would search the same coinbase space (wasted
work and duplicate headers), so every value in use is tracked. Values are allocated from a
rotating counter, so a value just released is the last to be reused, and an optional fixed
prefix lets several stratum processes share one job source without overlap (DESIGN §14).
"""

from __future__ import annotations

from pool.errors import PoolError


class ExtranonceExhausted(PoolError):
    """Every extranonce1 value is in use."""


class ExtranonceAllocator:
    """Allocate `size`-byte extranonce1 values, the first bytes fixed to `prefix`."""

    __slots__ = ("_in_use", "_next", "_space", "prefix", "size")

    def __init__(self, size: int = 4, *, prefix: bytes = b"", start: int = 0) -> None:
        if not 1 <= size <= 8 or len(prefix) >= size:
            raise ValueError(f"extranonce1 size {size} with a {len(prefix)}-byte prefix")
        self.size = size
        self.prefix = prefix
        self._space = 1 << (8 * (size - len(prefix)))
        self._next = start % self._space
        self._in_use: set[int] = set()

    def allocate(self) -> bytes:
        """The next free value; ExtranonceExhausted if all are taken."""
        if len(self._in_use) >= self._space:
            raise ExtranonceExhausted(f"all {self._space} extranonce1 values are in use")
        value = self._next
        while value in self._in_use:
            value = (value + 1) % self._space
        self._in_use.add(value)
        self._next = (value + 1) % self._space
        return self.prefix + value.to_bytes(self.size - len(self.prefix), "big")

    def release(self, extranonce1: bytes) -> None:
        """Return a value to the pool (unknown values are ignored)."""
        self._in_use.discard(int.from_bytes(extranonce1[len(self.prefix) :], "big"))

    def __len__(self) -> int:
        return len(self._in_use)
