"""Transactions (BIP141/BIP144 serialization with and without witness)."""

import struct
from dataclasses import dataclass, field

from pool.bitcoin.hashes import sha256d
from pool.bitcoin.serialize import ByteReader, ser_compact_size, ser_var_bytes
from pool.errors import DeserializationError

NULL_TXID_LE = bytes(32)  # prevout hash of a coinbase input
NULL_INDEX = 0xFFFFFFFF  # prevout index of a coinbase input
WITNESS_SCALE_FACTOR = 4  # BIP141: weight = base size * 3 + total size
SEGWIT_MARKER = 0x00  # BIP144 marker byte (reads as an empty input vector)
SEGWIT_FLAG = 0x01  # BIP144 flag byte: witness data follows the outputs

_TXIN_MIN_SIZE = 41  # bytes: 36 prevout + 1 script length + 4 sequence
_TXOUT_MIN_SIZE = 9  # bytes: 8 value + 1 script length
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(slots=True)
class TxIn:
    """A transaction input: the spent outpoint, scriptSig, sequence and witness stack."""

    prev_txid_le: bytes
    prev_index: int
    script_sig: bytes = b""
    sequence: int = 0xFFFFFFFF
    witness: list[bytes] = field(default_factory=list)

    def serialize(self) -> bytes:
        """Non-witness serialization (the witness is written after all outputs)."""
        return (
            self.prev_txid_le
            + _U32.pack(self.prev_index)
            + ser_var_bytes(self.script_sig)
            + _U32.pack(self.sequence)
        )

    @classmethod
    def read(cls, reader: ByteReader) -> "TxIn":
        prev_txid_le = reader.read(32)
        prev_index = reader.read_u32()
        script_sig = reader.read_var_bytes()
        return cls(prev_txid_le, prev_index, script_sig, reader.read_u32())


@dataclass(slots=True)
class TxOut:
    """A transaction output: value in satoshis and the locking script."""

    value_sats: int
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return _U64.pack(self.value_sats) + ser_var_bytes(self.script_pubkey)

    @classmethod
    def read(cls, reader: ByteReader) -> "TxOut":
        return cls(reader.read_u64(), reader.read_var_bytes())


@dataclass(slots=True)
class Transaction:
    """A Bitcoin transaction. Hashes are computed on demand (never cached, never stale)."""

    version: int
    inputs: list[TxIn]
    outputs: list[TxOut]
    locktime: int = 0

    def has_witness(self) -> bool:
        """True if any input carries a non-empty witness stack."""
        return any(txin.witness for txin in self.inputs)

    def serialize(self, *, with_witness: bool = True) -> bytes:
        """BIP144 serialization; the marker and flag appear only when there is a witness."""
        segwit = with_witness and self.has_witness()
        parts = [_U32.pack(self.version)]
        if segwit:
            parts.append(bytes((SEGWIT_MARKER, SEGWIT_FLAG)))
        parts.append(ser_compact_size(len(self.inputs)))
        parts.extend(txin.serialize() for txin in self.inputs)
        parts.append(ser_compact_size(len(self.outputs)))
        parts.extend(txout.serialize() for txout in self.outputs)
        if segwit:
            for txin in self.inputs:
                parts.append(ser_compact_size(len(txin.witness)))
                parts.extend(ser_var_bytes(item) for item in txin.witness)
        parts.append(_U32.pack(self.locktime))
        return b"".join(parts)

    def txid_le(self) -> bytes:
        """sha256d of the non-witness serialization (internal byte order)."""
        return sha256d(self.serialize(with_witness=False))

    def wtxid_le(self) -> bytes:
        """BIP141 wtxid: sha256d of the witness serialization (equals txid without witness)."""
        return sha256d(self.serialize(with_witness=True))

    def txid_hex(self) -> str:
        return self.txid_le()[::-1].hex()

    def wtxid_hex(self) -> str:
        return self.wtxid_le()[::-1].hex()

    def weight(self) -> int:
        """BIP141 weight: base size * 3 + total size."""
        base = len(self.serialize(with_witness=False))
        total = len(self.serialize(with_witness=True))
        return base * (WITNESS_SCALE_FACTOR - 1) + total

    def vsize(self) -> int:
        """BIP141 virtual size: weight / 4, rounded up."""
        return -(-self.weight() // WITNESS_SCALE_FACTOR)

    def is_coinbase(self) -> bool:
        """One input spending the null outpoint (Core's CTransaction::IsCoinBase)."""
        return (
            len(self.inputs) == 1
            and self.inputs[0].prev_txid_le == NULL_TXID_LE
            and self.inputs[0].prev_index == NULL_INDEX
        )

    @classmethod
    def parse(cls, data: bytes) -> "Transaction":
        """Parse exactly one transaction filling the whole buffer; trailing bytes raise."""
        reader = ByteReader(data)
        tx = cls.read(reader)
        if not reader.at_end():
            raise DeserializationError(f"{reader.remaining()} trailing bytes after transaction")
        return tx

    @classmethod
    def read(cls, reader: ByteReader) -> "Transaction":
        """Read one transaction, following Core's UnserializeTransaction: an empty input
        vector followed by flag 0x01 announces witness data (BIP144)."""
        version = reader.read_u32()
        inputs = _read_inputs(reader)
        flag = 0
        if not inputs:
            flag = reader.read_u8()
            if flag != 0:
                inputs = _read_inputs(reader)
                outputs = _read_outputs(reader)
            else:  # the byte was an empty output vector: no inputs, no outputs
                outputs = []
        else:
            outputs = _read_outputs(reader)
        if flag & SEGWIT_FLAG:
            flag ^= SEGWIT_FLAG
            _read_witnesses(reader, inputs)
        if flag:
            raise DeserializationError(f"unknown transaction optional data (flag {flag:#x})")
        return cls(version, inputs, outputs, reader.read_u32())


def _read_inputs(reader: ByteReader) -> list[TxIn]:
    count = reader.read_count(min_item_size=_TXIN_MIN_SIZE)
    return [TxIn.read(reader) for _ in range(count)]


def _read_outputs(reader: ByteReader) -> list[TxOut]:
    count = reader.read_count(min_item_size=_TXOUT_MIN_SIZE)
    return [TxOut.read(reader) for _ in range(count)]


def _read_witnesses(reader: ByteReader, inputs: list[TxIn]) -> None:
    """Read one witness stack per input; all-empty stacks are a "superfluous witness
    record" (BIP144: the flag must not be set without witness data)."""
    for txin in inputs:
        count = reader.read_count(min_item_size=1)
        txin.witness = [reader.read_var_bytes() for _ in range(count)]
    if not any(txin.witness for txin in inputs):
        raise DeserializationError("superfluous witness record")
