"""CompactSize and ByteReader edges (Bitcoin Core serialize.h rules)."""

import pytest

from pool.bitcoin.serialize import (
    MAX_COMPACT_SIZE,
    MAX_SIZE,
    ByteReader,
    ser_compact_size,
    ser_var_bytes,
)
from pool.errors import DeserializationError

COMPACT_VECTORS = [
    (0, "00"),
    (0xFC, "fc"),
    (0xFD, "fdfd00"),
    (0xFFFF, "fdffff"),
    (0x10000, "fe00000100"),
    (MAX_SIZE, "fe00000002"),
    (0xFFFFFFFF, "feffffffff"),
    (2**32, "ff0000000001000000"),
    (MAX_COMPACT_SIZE, "ffffffffffffffffff"),
]


@pytest.mark.parametrize(("n", "encoded"), COMPACT_VECTORS)
def test_compact_size_round_trip(n: int, encoded: str) -> None:
    assert ser_compact_size(n).hex() == encoded
    reader = ByteReader(bytes.fromhex(encoded))
    assert reader.read_compact_size(max_value=MAX_COMPACT_SIZE) == n
    assert reader.at_end()


@pytest.mark.parametrize("n", [MAX_SIZE + 1, 0xFFFFFFFF, 2**32])
def test_compact_size_above_max_size_rejected_by_default(n: int) -> None:
    with pytest.raises(DeserializationError, match="exceeds"):
        ByteReader(ser_compact_size(n)).read_compact_size()


def test_compact_size_max_size_accepted_by_default() -> None:
    assert ByteReader(ser_compact_size(MAX_SIZE)).read_compact_size() == MAX_SIZE


@pytest.mark.parametrize(
    "encoded",
    ["fd0000", "fdfc00", "fe00000000", "feffff0000", "ff0000000000000000", "ffffffffff00000000"],
)
def test_non_canonical_compact_size_rejected(encoded: str) -> None:
    with pytest.raises(DeserializationError, match="non-canonical"):
        ByteReader(bytes.fromhex(encoded)).read_compact_size(max_value=MAX_COMPACT_SIZE)


@pytest.mark.parametrize("encoded", ["", "fd", "fdff", "fe000001", "ff00000000000001"])
def test_truncated_compact_size_rejected(encoded: str) -> None:
    with pytest.raises(DeserializationError, match="truncated"):
        ByteReader(bytes.fromhex(encoded)).read_compact_size()


@pytest.mark.parametrize("n", [-1, MAX_COMPACT_SIZE + 1])
def test_ser_compact_size_out_of_range(n: int) -> None:
    with pytest.raises(ValueError):
        ser_compact_size(n)


def test_reader_integers_are_little_endian() -> None:
    reader = ByteReader(bytes.fromhex("01" + "0201" + "04030201" + "ffffffff" + "0807060504030201"))
    assert reader.read_u8() == 1
    assert reader.read_u16() == 0x0102
    assert reader.read_u32() == 0x01020304
    assert reader.read_i32() == -1
    assert reader.read_u64() == 0x0102030405060708
    assert reader.at_end() and reader.remaining() == 0


def test_reader_var_bytes_and_offset() -> None:
    data = ser_var_bytes(b"abc") + ser_var_bytes(b"")
    reader = ByteReader(b"\xee" + data, offset=1)
    assert reader.read_var_bytes() == b"abc"
    assert reader.offset == 5
    assert reader.read_var_bytes() == b""
    assert reader.at_end()


def test_reader_truncated_var_bytes() -> None:
    with pytest.raises(DeserializationError, match="need 3 bytes"):
        ByteReader(b"\x03ab").read_var_bytes()


def test_reader_rejects_bad_offset_and_negative_read() -> None:
    with pytest.raises(DeserializationError):
        ByteReader(b"ab", offset=3)
    with pytest.raises(DeserializationError):
        ByteReader(b"ab").read(-1)


def test_read_count_bounded_by_remaining_bytes() -> None:
    reader = ByteReader(bytes.fromhex("03") + bytes(122))  # 3 items of >= 41 bytes need 123
    with pytest.raises(DeserializationError, match="exceeds"):
        reader.read_count(min_item_size=41)
    assert ByteReader(bytes.fromhex("03") + bytes(123)).read_count(min_item_size=41) == 3
