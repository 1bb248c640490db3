"""Base58 and Base58Check (the P2PKH/P2SH address encoding)."""

from pool.bitcoin.hashes import sha256d
from pool.errors import AddressError

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: i for i, char in enumerate(ALPHABET)}
MAX_BASE58_LEN = 100  # chars; Core decodes addresses with at most this many (key_io.cpp)
CHECKSUM_SIZE = 4  # bytes: first 4 of sha256d(payload)


def b58encode(data: bytes) -> str:
    """Base58 with one leading '1' per leading zero byte."""
    n = int.from_bytes(data, "big")
    chars = []
    while n:
        n, rem = divmod(n, 58)
        chars.append(ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(chars))


def b58decode(text: str) -> bytes:
    """Decode Base58; any character outside the alphabet raises AddressError."""
    if len(text) > MAX_BASE58_LEN:
        raise AddressError(f"Base58 string longer than {MAX_BASE58_LEN} characters")
    n = 0
    for pos, char in enumerate(text):
        digit = _INDEX.get(char)
        if digit is None:
            raise AddressError(f"invalid Base58 character {char!r} at position {pos}")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes(zeros) + body


def b58encode_check(payload: bytes) -> str:
    """Base58Check: payload followed by the first 4 bytes of its sha256d."""
    return b58encode(payload + sha256d(payload)[:CHECKSUM_SIZE])


def b58decode_check(text: str) -> bytes:
    """Decode Base58Check and verify the checksum; returns the payload."""
    raw = b58decode(text)
    if len(raw) < CHECKSUM_SIZE:
        raise AddressError("Base58 data too short to hold a checksum")
    payload, checksum = raw[:-CHECKSUM_SIZE], raw[-CHECKSUM_SIZE:]
    if sha256d(payload)[:CHECKSUM_SIZE] != checksum:
        raise AddressError("invalid Base58Check checksum")
    return payload
