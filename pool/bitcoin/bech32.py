"""Bech32 (BIP173) and Bech32m (BIP350) encoding of segwit addresses."""

from enum import Enum

from pool.errors import AddressError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_INDEX = {char: i for i, char in enumerate(CHARSET)}
MAX_LENGTH = 90  # chars; BIP173 limit for a whole address
CHECKSUM_LENGTH = 6  # chars
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Encoding(Enum):
    """The checksum constant tells the variants apart."""

    BECH32 = 1  # BIP173, witness version 0
    BECH32M = 0x2BC830A3  # BIP350, witness versions 1..16


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            chk ^= gen if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _checksum(hrp: str, data: list[int], encoding: Encoding) -> list[int]:
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ encoding.value
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(CHECKSUM_LENGTH)]


def encode(hrp: str, data: list[int], encoding: Encoding) -> str:
    """Encode 5-bit values under a human-readable part."""
    combined = data + _checksum(hrp, data, encoding)
    return hrp + "1" + "".join(CHARSET[d] for d in combined)


def decode(text: str) -> tuple[str, list[int], Encoding]:
    """Decode to (hrp, 5-bit data without checksum, encoding); raise AddressError naming
    the first rule broken."""
    if len(text) > MAX_LENGTH:
        raise AddressError(f"Bech32 string longer than {MAX_LENGTH} characters")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise AddressError("Bech32 string has a character outside US-ASCII 33..126")
    if text.lower() != text and text.upper() != text:
        raise AddressError("Bech32 string mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1:
        raise AddressError("Bech32 string has no human-readable part before the separator")
    if pos + 1 + CHECKSUM_LENGTH > len(text):
        raise AddressError("Bech32 data part is too short for a checksum")
    hrp, data_part = text[:pos], text[pos + 1 :]
    bad = [c for c in data_part if c not in _INDEX]
    if bad:
        raise AddressError(f"invalid Bech32 character {bad[0]!r}")
    data = [_INDEX[c] for c in data_part]
    const = _polymod(_hrp_expand(hrp) + data)
    for encoding in Encoding:
        if const == encoding.value:
            return hrp, data[:-CHECKSUM_LENGTH], encoding
    raise AddressError("invalid Bech32/Bech32m checksum")


def convert_bits(data: list[int], from_bits: int, to_bits: int, *, pad: bool) -> list[int]:
    """Regroup bits; without pad, leftover bits must be fewer than from_bits and zero
    (BIP173 "invalid padding")."""
    acc = bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        if value < 0 or value >> from_bits:
            raise AddressError(f"value {value} does not fit in {from_bits} bits")
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        raise AddressError("invalid padding in Bech32 data")
    return out
