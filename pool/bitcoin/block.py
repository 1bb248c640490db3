"""Block headers and blocks."""

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import merkle_root
from pool.bitcoin.serialize import ByteReader, ser_compact_size
from pool.bitcoin.tx import Transaction
from pool.errors import DeserializationError

HEADER_SIZE = 80  # bytes
_HEADER = struct.Struct("<i32s32sIII")
_MIN_TX_SIZE = 10  # bytes: version, 2 empty counts, locktime


@dataclass(slots=True)
class BlockHeader:
    """The 80-byte header; the block hash is sha256d of its serialization."""

    version: int
    prev_hash_le: bytes
    merkle_root_le: bytes
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return _HEADER.pack(
            self.version, self.prev_hash_le, self.merkle_root_le, self.time, self.bits, self.nonce
        )

    @classmethod
    def parse(cls, b80: bytes) -> "BlockHeader":
        if len(b80) != HEADER_SIZE:
            raise DeserializationError(f"block header must be 80 bytes, got {len(b80)}")
        return cls(*_HEADER.unpack(b80))

    @classmethod
    def read(cls, reader: ByteReader) -> "BlockHeader":
        return cls.parse(reader.read(HEADER_SIZE))

    def hash_le(self) -> bytes:
        return sha256d(self.serialize())

    def hash_hex(self) -> str:
        return self.hash_le()[::-1].hex()


@dataclass(slots=True)
class Block:
    """A header and its transactions, the coinbase first."""

    header: BlockHeader
    txs: list[Transaction]

    def serialize(self, *, with_witness: bool = True) -> bytes:
        return serialize_block(
            self.header.serialize(), [tx.serialize(with_witness=with_witness) for tx in self.txs]
        )

    @classmethod
    def parse(cls, data: bytes) -> "Block":
        """Parse a whole serialized block; trailing bytes raise."""
        reader = ByteReader(data)
        header = BlockHeader.read(reader)
        count = reader.read_count(min_item_size=_MIN_TX_SIZE)
        txs = [Transaction.read(reader) for _ in range(count)]
        if not reader.at_end():
            raise DeserializationError(f"{reader.remaining()} trailing bytes after block")
        return cls(header, txs)

    def compute_merkle_root_le(self) -> bytes:
        """Merkle root of the txids (BIP141 keeps witnesses out of it)."""
        return merkle_root([tx.txid_le() for tx in self.txs])


def serialize_block(header80: bytes, tx_datas: Sequence[bytes]) -> bytes:
    """Header, transaction count, then the already-serialized transactions (submitblock)."""
    if len(header80) != HEADER_SIZE:
        raise ValueError(f"block header must be 80 bytes, got {len(header80)}")
    return header80 + ser_compact_size(len(tx_datas)) + b"".join(tx_datas)
