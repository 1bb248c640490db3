"""nBits ↔ target ↔ difficulty (Core's arith_uint256 SetCompact/GetCompact)."""

import pytest

from pool.bitcoin.target import (
    DIFF1_TARGET,
    MAX_TARGET,
    bits_to_difficulty,
    bits_to_target,
    difficulty_to_target,
    hash_le_to_int,
    target_to_bits,
    target_to_difficulty,
    target_to_le32,
)

GENESIS_BITS = 0x1D00FFFF
REGTEST_BITS = 0x207FFFFF
# nBits of real mainnet headers and the difficulty bitcoind reports for them.
MAINNET_BITS = [
    (0x1B04864C, 14484.1623612254),  # height 100,000
    (0x18058436, 199312067531.243),  # height 413,567 (tests/bitcoin testdata)
    (0x170ED0EB, 18997641161758.95),  # the segwit block in testdata
]


def test_genesis_bits_is_difficulty_one() -> None:
    assert bits_to_target(GENESIS_BITS) == DIFF1_TARGET == 0xFFFF << 208
    assert bits_to_difficulty(GENESIS_BITS) == 1.0


def test_regtest_bits() -> None:
    assert bits_to_target(REGTEST_BITS) == 0x7FFFFF << 232
    assert bits_to_difficulty(REGTEST_BITS) == pytest.approx(4.656542373906925e-10, rel=1e-12)


@pytest.mark.parametrize(("bits", "difficulty"), MAINNET_BITS)
def test_mainnet_difficulty(bits: int, difficulty: float) -> None:
    assert bits_to_difficulty(bits) == pytest.approx(difficulty, rel=1e-12)


@pytest.mark.parametrize(
    "bits", [GENESIS_BITS, REGTEST_BITS, 0x1A06D450, *(b for b, _ in MAINNET_BITS)]
)
def test_bits_round_trip(bits: int) -> None:
    assert target_to_bits(bits_to_target(bits)) == bits


@pytest.mark.parametrize(
    ("bits", "target"),
    [  # Core's arith_uint256_tests SetCompact vectors
        (0x00123456, 0),
        (0x01003456, 0),
        (0x02000056, 0),
        (0x00923456, 0),  # sign bit set but the word shifts out: zero, not negative
        (0x01803456, 0),
        (0x02800056, 0),
        (0x03800000, 0),
        (0x04800000, 0),
        (0x01123456, 0x12),
        (0x02008000, 0x80),
        (0x05009234, 0x92340000),
        (0x04123456, 0x12345600),
        (0x20123456, 0x123456 << 232),
    ],
)
def test_set_compact_vectors(bits: int, target: int) -> None:
    assert bits_to_target(bits) == target


def test_get_compact_normalizes() -> None:
    assert target_to_bits(0x80) == 0x02008000  # sign bit moved into a longer size
    assert target_to_bits(0x12) == 0x01120000
    assert target_to_bits(0x92340000) == 0x05009234
    assert target_to_bits(0x12345600) == 0x04123456
    assert target_to_bits(0) == 0
    assert target_to_bits(DIFF1_TARGET + 1) == GENESIS_BITS  # rounds down to 3 bytes


@pytest.mark.parametrize("bits", [0x04923456, 0x01FEDCBA, 0x23000001, 0x22000100, 0x21010000])
def test_negative_or_overflowing_bits_rejected(bits: int) -> None:
    with pytest.raises(ValueError):
        bits_to_target(bits)


def test_difficulty_to_target() -> None:
    assert difficulty_to_target(1) == DIFF1_TARGET
    assert difficulty_to_target(2) == DIFF1_TARGET // 2
    assert difficulty_to_target(0.5) == DIFF1_TARGET * 2
    assert difficulty_to_target(0.0001) == pytest.approx(DIFF1_TARGET * 10_000, rel=1e-15)
    assert difficulty_to_target(1e-80) == MAX_TARGET
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            difficulty_to_target(bad)


def test_target_to_difficulty_inverts() -> None:
    for diff in (1.0, 0.001, 512.0, 1e12):
        assert target_to_difficulty(difficulty_to_target(diff)) == pytest.approx(diff, rel=1e-12)
    with pytest.raises(ValueError):
        target_to_difficulty(0)


def test_le32_and_hash_int_share_byte_order() -> None:
    le32 = target_to_le32(DIFF1_TARGET)
    assert le32 == bytes(26) + b"\xff\xff" + bytes(4)
    assert hash_le_to_int(le32) == DIFF1_TARGET
    assert hash_le_to_int(b"\x01" + bytes(31)) == 1
