"""Stratum V1 wire format (pure): error codes, message encoding, and the header a miner hashes.

Byte orders on the wire, as every Stratum V1 miner expects them:
- prevhash: the 32 internal-order bytes of the previous block hash with each 4-byte word
  byte-swapped (so the hex reads like the display hash with the words in reverse order);
- coinb1/coinb2/branch: hex of bytes as serialized (branch entries are internal-order txids);
- version, nbits, ntime, nonce and version bits: big-endian hex of the 32-bit number;
- extranonce1/extranonce2: hex of the bytes placed in the coinbase.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

_HEADER = struct.Struct("<I32s32sIII")


class ErrorCode(enum.IntEnum):
    """Stratum V1 error codes, sent as `[code, message, null]`."""

    OTHER = 20  # malformed params, bad ntime, version bits outside the mask, ...
    JOB_NOT_FOUND = 21  # unknown or stale job
    DUPLICATE = 22  # the same header was already submitted
    LOW_DIFFICULTY = 23  # the hash does not meet the session's target
    UNAUTHORIZED = 24  # unknown worker or bad username
    NOT_SUBSCRIBED = 25  # mining.subscribe has not been called


class StratumError(Exception):
    """A request failed with a Stratum error code; the session answers `[code, message, null]`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{int(code)} {message}")
        self.code = code
        self.message = message


def encode(message: dict[str, Any]) -> bytes:
    """One JSON line (compact separators: a notify to 10k sessions is built once, sent as is)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def result_line(msg_id: Any, result: Any) -> bytes:
    if result is True and type(msg_id) is int:  # the accepted share: skip the encoder
        return b'{"id":%d,"result":true,"error":null}\n' % msg_id
    return encode({"id": msg_id, "result": result, "error": None})


def error_line(msg_id: Any, code: ErrorCode, message: str) -> bytes:
    return encode({"id": msg_id, "result": None, "error": [int(code), message, None]})


def notification_line(method: str, params: list[Any]) -> bytes:
    return encode({"id": None, "method": method, "params": params})


def request_line(msg_id: int, method: str, params: list[Any]) -> bytes:
    return encode({"id": msg_id, "method": method, "params": params})


def swap_words(data: bytes) -> bytes:
    """Byte-swap each 4-byte word (its own inverse)."""
    if len(data) % 4:
        raise ValueError(f"length {len(data)} is not a multiple of 4")
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def prevhash_to_stratum(prev_hash_le: bytes) -> str:
    """The mining.notify prevhash field for a previous block hash in internal byte order."""
    return swap_words(prev_hash_le).hex()


def prevhash_from_stratum(prevhash_hex: str) -> bytes:
    """Internal-order previous block hash from the mining.notify prevhash field."""
    return swap_words(bytes.fromhex(prevhash_hex))


def u32_hex(value: int) -> str:
    """A 32-bit field (version, nbits, ntime, nonce) as Stratum sends it: big-endian hex."""
    return f"{value:08x}"


def parse_hex_field(text: object, size: int) -> bytes:
    """Exactly `size` bytes of hex (no prefix, sign or spaces); ValueError otherwise."""
    if not isinstance(text, str) or len(text) != 2 * size:
        raise ValueError(f"expected {2 * size} hex digits")
    raw = bytes.fromhex(text)  # ValueError on non-hex
    if len(raw) != size:  # bytes.fromhex skips spaces
        raise ValueError(f"expected {2 * size} hex digits")
    return raw


def parse_u32_hex(text: object) -> int:
    """A 32-bit field as Stratum sends it (8 hex digits, big-endian); ValueError otherwise."""
    return int.from_bytes(parse_hex_field(text, 4), "big")


def build_header(
    *, version: int, prev_hash_le: bytes, merkle_root_le: bytes, ntime: int, bits: int, nonce: int
) -> bytes:
    """The 80-byte block header, exactly as a miner's hashing engine sees it."""
    return _HEADER.pack(version, prev_hash_le, merkle_root_le, ntime, bits, nonce)
