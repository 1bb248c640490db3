"""Proof-of-work targets: compact nBits, 256-bit targets and pool difficulty.

Targets are plain ints (`target_int`); hashes are compared after `hash_le_to_int`, i.e. the
32 hash bytes read as a little-endian number, as Core's UintToArith256 does.
"""

import math
from fractions import Fraction

DIFF1_TARGET = 0xFFFF << 208  # difficulty-1 target, the genesis block's nBits 0x1d00ffff
MAX_TARGET = 2**256 - 1  # largest 256-bit value; a difficulty this easy accepts every hash


def bits_to_target(bits: int) -> int:
    """Expand compact nBits to a target (Core's arith_uint256::SetCompact).

    Negative or overflowing encodings raise ValueError; consensus rejects them
    (CheckProofOfWork's fNegative / fOverflow).
    """
    if not 0 <= bits <= 0xFFFFFFFF:
        raise ValueError(f"nBits out of range: {bits:#x}")
    size = bits >> 24
    word = bits & 0x007FFFFF
    if size <= 3:
        word >>= 8 * (3 - size)  # Core tests the sign and overflow on the shifted word
        target = word
    else:
        target = word << (8 * (size - 3))
    if word and bits & 0x00800000:
        raise ValueError(f"nBits {bits:#010x} encodes a negative target")
    if word and (size > 34 or (word > 0xFF and size > 33) or (word > 0xFFFF and size > 32)):
        raise ValueError(f"nBits {bits:#010x} overflows 256 bits")
    return target


def target_to_bits(target: int) -> int:
    """Compress a target to nBits (Core's arith_uint256::GetCompact), rounding down."""
    if not 0 <= target <= MAX_TARGET:
        raise ValueError("target must be in [0, 2**256)")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        compact = target << (8 * (3 - size))
    else:
        compact = target >> (8 * (size - 3))
    if compact & 0x00800000:  # the mantissa's sign bit must stay clear
        compact >>= 8
        size += 1
    return compact | (size << 24)


def difficulty_to_target(diff: float) -> int:
    """Share target for a pool difficulty: DIFF1_TARGET / diff, exact for fractional
    difficulties (0.0001 works), capped at 2**256 - 1."""
    if not (diff > 0 and math.isfinite(diff)):
        raise ValueError(f"difficulty must be positive and finite, got {diff}")
    ratio = Fraction(diff)
    return min(DIFF1_TARGET * ratio.denominator // ratio.numerator, MAX_TARGET)


def target_to_difficulty(target: int) -> float:
    """Difficulty of a target: DIFF1_TARGET / target (1.0 for the genesis target)."""
    if target <= 0:
        raise ValueError("target must be positive")
    return DIFF1_TARGET / target


def bits_to_difficulty(bits: int) -> float:
    """Network difficulty for nBits, as getblockchaininfo reports it."""
    return target_to_difficulty(bits_to_target(bits))


def target_to_le32(target: int) -> bytes:
    """32-byte little-endian target, the form the native header check takes."""
    return target.to_bytes(32, "little")


def hash_le_to_int(hash_le: bytes) -> int:
    """A 32-byte hash in internal order as the number compared against a target."""
    return int.from_bytes(hash_le, "little")
