"""Stratum V1 coinbase parts: the coinbase transaction split around the extranonce.

    coinb1 | extranonce1 | extranonce2 | coinb2   (non-witness serialization)

The scriptSig is `height push | tag push | OP_PUSHBYTES_n | extranonce1 | extranonce2`, so a
miner only writes bytes into the middle of one push and the txid changes with them.
"""

import struct
from collections.abc import Sequence

from pool.bitcoin.script import WITNESS_RESERVED_VALUE, bip34_height_push, push_data
from pool.bitcoin.serialize import ser_compact_size
from pool.bitcoin.tx import NULL_INDEX, NULL_TXID_LE, Transaction, TxOut
from pool.errors import DeserializationError

MIN_COINBASE_SCRIPTSIG_SIZE = 2  # bytes; consensus (CheckTransaction "bad-cb-length")
MAX_COINBASE_SCRIPTSIG_SIZE = 100  # bytes; consensus (CheckTransaction "bad-cb-length")
MIN_EXTRANONCE_SIZE = 1  # bytes, each of extranonce1 and extranonce2
MAX_EXTRANONCE_SIZE = 16  # bytes, each; Stratum miners use 2..8
COINBASE_SEQUENCE = 0xFFFFFFFF  # final: the coinbase never uses relative locktime
COINBASE_LOCKTIME = 0


def build_coinbase_parts(
    *,
    height: int,
    tag: bytes,
    extranonce1_size: int,
    extranonce2_size: int,
    outputs: Sequence[TxOut],
    version: int = 2,
) -> tuple[bytes, bytes]:
    """(coinb1, coinb2) of a coinbase paying outputs at height.

    BIP34 puts the height push first in the scriptSig; consensus limits the scriptSig to
    2..100 bytes. outputs already include the BIP141 commitment output if the block needs
    one. An empty tag is left out.
    """
    _check_extranonce_size("extranonce1", extranonce1_size)
    _check_extranonce_size("extranonce2", extranonce2_size)
    if not outputs:
        raise ValueError("a coinbase needs at least one output (bad-txns-vout-empty)")
    extranonce_size = extranonce1_size + extranonce2_size
    prefix = bip34_height_push(height) + (push_data(tag) if tag else b"")
    prefix += bytes((extranonce_size,))  # direct push: the size is below OP_PUSHDATA1
    script_size = len(prefix) + extranonce_size
    if script_size > MAX_COINBASE_SCRIPTSIG_SIZE:
        raise ValueError(
            f"coinbase scriptSig would be {script_size} bytes (height push + {len(tag)}-byte "
            f"tag + extranonce {extranonce1_size}+{extranonce2_size}), "
            f"limit {MAX_COINBASE_SCRIPTSIG_SIZE}"
        )
    coinb1 = (
        struct.pack("<I", version)
        + ser_compact_size(1)
        + NULL_TXID_LE
        + struct.pack("<I", NULL_INDEX)
        + ser_compact_size(script_size)
        + prefix
    )
    coinb2 = (
        struct.pack("<I", COINBASE_SEQUENCE)
        + ser_compact_size(len(outputs))
        + b"".join(txout.serialize() for txout in outputs)
        + struct.pack("<I", COINBASE_LOCKTIME)
    )
    return coinb1, coinb2


def _check_extranonce_size(name: str, size: int) -> None:
    if not MIN_EXTRANONCE_SIZE <= size <= MAX_EXTRANONCE_SIZE:
        raise ValueError(
            f"{name} size {size} outside {MIN_EXTRANONCE_SIZE}..{MAX_EXTRANONCE_SIZE} bytes"
        )


def assemble_coinbase(
    coinb1: bytes, extranonce1: bytes, extranonce2: bytes, coinb2: bytes
) -> bytes:
    """The coinbase's non-witness serialization; its sha256d is the coinbase txid."""
    return coinb1 + extranonce1 + extranonce2 + coinb2


def coinbase_with_witness(coinbase_nowit: bytes) -> bytes:
    """The same coinbase serialized with the BIP141 witness reserved value (32 zero bytes)
    as its only witness item, as a block with a witness commitment must carry it."""
    tx = Transaction.parse(coinbase_nowit)
    if not tx.is_coinbase():
        raise DeserializationError("not a coinbase transaction")
    tx.inputs[0].witness = [WITNESS_RESERVED_VALUE]
    return tx.serialize(with_witness=True)
