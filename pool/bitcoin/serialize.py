"""Bitcoin's wire serialization: CompactSize integers, length-prefixed bytes, and a bounded
reader that raises only DeserializationError on bad input."""

import struct

from pool.errors import DeserializationError

MAX_SIZE = 0x02000000  # bytes; Bitcoin Core's serialize.h MAX_SIZE, the largest CompactSize read
MAX_COMPACT_SIZE = 0xFFFFFFFFFFFFFFFF  # largest value a CompactSize can encode (uint64)

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


def ser_compact_size(n: int) -> bytes:
    """Encode n as a CompactSize: 1, 3, 5 or 9 bytes, always the shortest form."""
    if n < 0 or n > MAX_COMPACT_SIZE:
        raise ValueError(f"CompactSize out of range: {n}")
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + _U16.pack(n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + _U32.pack(n)
    return b"\xff" + _U64.pack(n)


def ser_var_bytes(data: bytes) -> bytes:
    """CompactSize length followed by the bytes (scripts, witness items)."""
    return ser_compact_size(len(data)) + data


class ByteReader:
    """Reads Bitcoin serializations from a buffer; every failure is a DeserializationError.

    `offset` is the position of the next unread byte.
    """

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes, offset: int = 0) -> None:
        if not 0 <= offset <= len(data):
            raise DeserializationError(f"offset {offset} outside buffer of {len(data)} bytes")
        self.data = bytes(data)
        self.offset = offset

    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self.data) - self.offset

    def at_end(self) -> bool:
        """True when every byte has been read."""
        return self.offset == len(self.data)

    def read(self, n: int) -> bytes:
        """The next n bytes; truncation raises."""
        if n < 0:
            raise DeserializationError(f"negative read length {n}")
        end = self.offset + n
        if end > len(self.data):
            raise DeserializationError(
                f"truncated: need {n} bytes at offset {self.offset}, have {self.remaining()}"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def read_u8(self) -> int:
        return self.read(1)[0]

    def read_u16(self) -> int:
        return _U16.unpack(self.read(2))[0]

    def read_u32(self) -> int:
        return _U32.unpack(self.read(4))[0]

    def read_i32(self) -> int:
        return _I32.unpack(self.read(4))[0]

    def read_u64(self) -> int:
        return _U64.unpack(self.read(8))[0]

    def read_compact_size(self, *, max_value: int = MAX_SIZE) -> int:
        """Read a CompactSize, rejecting non-canonical encodings and values above max_value
        (Bitcoin Core's ReadCompactSize with range_check: "non-canonical ReadCompactSize()",
        "ReadCompactSize(): size too large")."""
        first = self.read_u8()
        if first < 0xFD:
            n, smallest = first, 0
        elif first == 0xFD:
            n, smallest = self.read_u16(), 0xFD
        elif first == 0xFE:
            n, smallest = self.read_u32(), 0x10000
        else:
            n, smallest = self.read_u64(), 0x100000000
        if n < smallest:
            raise DeserializationError(f"non-canonical CompactSize {n} with prefix {first:#x}")
        if n > max_value:
            raise DeserializationError(f"CompactSize {n} exceeds limit {max_value}")
        return n

    def read_var_bytes(self) -> bytes:
        """CompactSize length, then that many bytes."""
        return self.read(self.read_compact_size())

    def read_count(self, *, min_item_size: int) -> int:
        """Read an element count, rejecting counts the remaining bytes cannot hold, so
        hostile input cannot make the parser loop or allocate beyond the buffer size."""
        count = self.read_compact_size()
        if count * min_item_size > self.remaining():
            raise DeserializationError(
                f"count {count} of items >= {min_item_size} bytes exceeds the "
                f"{self.remaining()} bytes left"
            )
        return count
