"""Script building blocks: pushes, BIP34 heights, the BIP141 witness commitment and the
standard output templates."""

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import merkle_root

if TYPE_CHECKING:
    from pool.bitcoin.tx import Transaction

OP_0 = 0x00
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1 = 0x51
OP_16 = 0x60
OP_RETURN = 0x6A
OP_DUP = 0x76
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_HASH160 = 0xA9
OP_CHECKSIG = 0xAC

WITNESS_RESERVED_VALUE = bytes(32)  # BIP141: the coinbase's witness[0], 32 bytes
WITNESS_COMMITMENT_HEADER = bytes.fromhex("aa21a9ed")  # BIP141 commitment tag
WITNESS_COMMITMENT_PREFIX = bytes((OP_RETURN, 0x24)) + WITNESS_COMMITMENT_HEADER
MIN_WITNESS_COMMITMENT_SIZE = 38  # bytes; BIP141 (Core's MINIMUM_WITNESS_COMMITMENT)
MIN_WITNESS_PROGRAM_SIZE = 2  # bytes; BIP141
MAX_WITNESS_PROGRAM_SIZE = 40  # bytes; BIP141


def push_data(data: bytes) -> bytes:
    """The shortest push opcode for len(data) followed by the data (Core's CScript << vch;
    empty data is OP_0)."""
    n = len(data)
    if n < OP_PUSHDATA1:
        return bytes((n,)) + data
    if n <= 0xFF:
        return bytes((OP_PUSHDATA1, n)) + data
    if n <= 0xFFFF:
        return bytes((OP_PUSHDATA2,)) + struct.pack("<H", n) + data
    return bytes((OP_PUSHDATA4,)) + struct.pack("<I", n) + data


def script_num(n: int) -> bytes:
    """Minimal CScriptNum encoding: little-endian magnitude, sign in the top bit of the
    last byte (an extra 0x00/0x80 byte when the magnitude's top bit is set)."""
    if n == 0:
        return b""
    magnitude = abs(n)
    out = bytearray()
    while magnitude:
        out.append(magnitude & 0xFF)
        magnitude >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if n < 0 else 0x00)
    elif n < 0:
        out[-1] |= 0x80
    return bytes(out)


def bip34_height_push(height: int) -> bytes:
    """BIP34: the coinbase scriptSig starts with the height as `CScript() << height`:
    0 is OP_0, 1..16 are OP_1..OP_16, larger heights a push of the minimal CScriptNum."""
    if height < 0:
        raise ValueError(f"block height must be >= 0, got {height}")
    if height == 0:
        return bytes((OP_0,))
    if height <= 16:
        return bytes((OP_1 - 1 + height,))
    return push_data(script_num(height))


def op_return_script(data: bytes) -> bytes:
    """An unspendable OP_RETURN output script carrying data."""
    return bytes((OP_RETURN,)) + push_data(data)


def witness_commitment(
    wtxids_le: Sequence[bytes], reserved: bytes = WITNESS_RESERVED_VALUE
) -> bytes:
    """BIP141 commitment: sha256d(witness merkle root || witness reserved value).

    wtxids_le lists every transaction in block order; the coinbase's entry counts as 32
    zero bytes whatever is passed at index 0.
    """
    if not wtxids_le:
        raise ValueError("a block has at least the coinbase")
    if len(reserved) != 32:
        raise ValueError(f"witness reserved value must be 32 bytes, got {len(reserved)}")
    root = merkle_root([bytes(32), *wtxids_le[1:]])
    return sha256d(root + reserved)


def witness_commitment_script(commitment32: bytes) -> bytes:
    """The BIP141 commitment output script: OP_RETURN 0x24 aa21a9ed <32 bytes>."""
    if len(commitment32) != 32:
        raise ValueError(f"witness commitment must be 32 bytes, got {len(commitment32)}")
    return WITNESS_COMMITMENT_PREFIX + commitment32


def find_witness_commitment(tx: "Transaction") -> bytes | None:
    """The 32-byte commitment of a coinbase: BIP141 says the output with the highest index
    whose script is at least 38 bytes and starts with 6a24aa21a9ed. None if absent."""
    for txout in reversed(tx.outputs):
        spk = txout.script_pubkey
        if len(spk) >= MIN_WITNESS_COMMITMENT_SIZE and spk.startswith(WITNESS_COMMITMENT_PREFIX):
            return spk[6:38]
    return None


def _check_len(name: str, data: bytes, size: int) -> None:
    if len(data) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(data)}")


def p2pkh_script(h160: bytes) -> bytes:
    """OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG."""
    _check_len("pubkey hash", h160, 20)
    return bytes((OP_DUP, OP_HASH160, 20)) + h160 + bytes((OP_EQUALVERIFY, OP_CHECKSIG))


def p2sh_script(h160: bytes) -> bytes:
    """BIP16: OP_HASH160 <20> OP_EQUAL."""
    _check_len("script hash", h160, 20)
    return bytes((OP_HASH160, 20)) + h160 + bytes((OP_EQUAL,))


def witness_script(version: int, program: bytes) -> bytes:
    """BIP141 witness output: OP_n then a direct push of a 2..40-byte program."""
    if not 0 <= version <= 16:
        raise ValueError(f"witness version must be 0..16, got {version}")
    if not MIN_WITNESS_PROGRAM_SIZE <= len(program) <= MAX_WITNESS_PROGRAM_SIZE:
        raise ValueError(f"witness program must be 2..40 bytes, got {len(program)}")
    opcode = OP_0 if version == 0 else OP_1 - 1 + version
    return bytes((opcode, len(program))) + program


def parse_witness_script(spk: bytes) -> tuple[int, bytes] | None:
    """(version, program) if spk is a witness output (Core's IsWitnessProgram), else None."""
    if not 4 <= len(spk) <= 2 + MAX_WITNESS_PROGRAM_SIZE or spk[1] != len(spk) - 2:
        return None
    if spk[0] == OP_0:
        return 0, spk[2:]
    if OP_1 <= spk[0] <= OP_16:
        return spk[0] - OP_1 + 1, spk[2:]
    return None


def p2wpkh_script(h160: bytes) -> bytes:
    """BIP141 v0 key hash: OP_0 <20>."""
    _check_len("witness pubkey hash", h160, 20)
    return witness_script(0, h160)


def p2wsh_script(sha256_32: bytes) -> bytes:
    """BIP141 v0 script hash: OP_0 <32>."""
    _check_len("witness script hash", sha256_32, 32)
    return witness_script(0, sha256_32)


def p2tr_script(xonly32: bytes) -> bytes:
    """BIP341 taproot: OP_1 <32-byte x-only key>."""
    _check_len("taproot output key", xonly32, 32)
    return witness_script(1, xonly32)
