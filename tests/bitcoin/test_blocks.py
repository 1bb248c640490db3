"""Real blocks (mainnet, testnet3): parse, re-serialize, merkle root, witness commitment,
proof of work, and the Stratum reconstruction share validation performs."""

import pytest

from pool import hashing
from pool.bitcoin.block import HEADER_SIZE, Block, BlockHeader
from pool.bitcoin.coinbase import assemble_coinbase
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import coinbase_merkle_branch, fold_coinbase_branch
from pool.bitcoin.script import find_witness_commitment, witness_commitment
from pool.bitcoin.serialize import ByteReader, ser_compact_size
from pool.bitcoin.target import bits_to_target, hash_le_to_int, target_to_le32
from pool.bitcoin.tx import Transaction
from pool.errors import DeserializationError

MAX_BLOCK_WEIGHT = 4_000_000  # BIP141
WITH_COMMITMENT = {"mainnet_segwit", "testnet3_segwit", "testnet3_926485", "testnet3_1263442"}
# Where the coinbase scriptSig starts: version, input count, 36-byte outpoint, script length.
SCRIPT_SIG_OFFSET = 4 + 1 + 36 + 1
EXTRANONCE1_SIZE = 4  # bytes, the pool's per-connection prefix


def test_parse_consumes_whole_buffer_and_reserializes(real_block, parsed_block) -> None:
    reader = ByteReader(real_block.raw)
    BlockHeader.read(reader)
    txs = [Transaction.read(reader) for _ in range(reader.read_compact_size())]
    assert reader.at_end()
    assert len(txs) == len(parsed_block.txs)
    assert parsed_block.serialize() == real_block.raw
    assert parsed_block.txs[0].is_coinbase()
    assert not any(tx.is_coinbase() for tx in parsed_block.txs[1:])


def test_parse_rejects_trailing_and_truncated_bytes(real_block) -> None:
    with pytest.raises(DeserializationError, match="trailing"):
        Block.parse(real_block.raw + b"\x00")
    with pytest.raises(DeserializationError):
        Block.parse(real_block.raw[:-1])


def test_merkle_root_matches_header(parsed_block) -> None:
    assert parsed_block.compute_merkle_root_le() == parsed_block.header.merkle_root_le


def test_witness_commitment(real_block, parsed_block) -> None:
    """BIP141: a block with witness data commits to the wtxids in its coinbase; a block
    without a commitment carries no witness at all ("unexpected-witness")."""
    coinbase = parsed_block.txs[0]
    commitment = find_witness_commitment(coinbase)
    assert (commitment is not None) == (real_block.name in WITH_COMMITMENT)
    if commitment is None:
        assert not any(tx.has_witness() for tx in parsed_block.txs)
        return
    (reserved,) = coinbase.inputs[0].witness
    wtxids = [tx.wtxid_le() for tx in parsed_block.txs]
    assert witness_commitment(wtxids, reserved=reserved) == commitment
    assert witness_commitment(wtxids, reserved=bytes(31) + b"\x01") != commitment


def test_block_weight(parsed_block, real_block) -> None:
    base = len(parsed_block.serialize(with_witness=False))
    weight = base * 3 + len(real_block.raw)
    assert weight <= MAX_BLOCK_WEIGHT
    count_size = len(ser_compact_size(len(parsed_block.txs)))
    assert sum(tx.weight() for tx in parsed_block.txs) + 4 * (HEADER_SIZE + count_size) == weight


def test_header_hash_and_proof_of_work(real_block, parsed_block) -> None:
    header = parsed_block.header
    assert header.hash_hex() == real_block.hash_hex
    assert BlockHeader.parse(real_block.raw[:HEADER_SIZE]).serialize() == real_block.raw[:80]
    assert hash_le_to_int(header.hash_le()) <= bits_to_target(header.bits)


@pytest.mark.parametrize("backend_name", hashing.available_backends())
def test_header_check_on_every_hash_backend(real_block, parsed_block, backend_name) -> None:
    header80 = parsed_block.header.serialize()
    target = bits_to_target(parsed_block.header.bits)
    backend = hashing.get_backend(backend_name)
    hash_le, ok = backend.check_header(header80, target_to_le32(target))
    assert ok and hash_le[::-1].hex() == real_block.hash_hex
    _, ok = backend.check_header(header80, target_to_le32(hash_le_to_int(hash_le) - 1))
    assert not ok


def _split_coinbase(coinbase: Transaction) -> tuple[bytes, bytes, bytes, bytes]:
    """coinb1 | extranonce1 | extranonce2 | coinb2 cut out of a real coinbase's scriptSig:
    after its first push (the BIP34 height), 4 bytes further when there is room."""
    nowit = coinbase.serialize(with_witness=False)
    script_sig = coinbase.inputs[0].script_sig
    assert nowit[SCRIPT_SIG_OFFSET : SCRIPT_SIG_OFFSET + len(script_sig)] == script_sig
    first_push_end = 1 + script_sig[0] if 0 < script_sig[0] < 0x4C else 1
    room = len(script_sig) - first_push_end
    skip = 4 if room >= 3 * EXTRANONCE1_SIZE else 0
    extranonce2_size = min(8, room - skip - EXTRANONCE1_SIZE)
    assert extranonce2_size >= 4, "scriptSig too short for a 4+4-byte extranonce"
    start = SCRIPT_SIG_OFFSET + first_push_end + skip
    mid = start + EXTRANONCE1_SIZE
    end = mid + extranonce2_size
    return nowit[:start], nowit[start:mid], nowit[mid:end], nowit[end:]


def test_stratum_reconstruction(real_block, parsed_block) -> None:
    """What share validation does: coinbase from parts → txid → fold the branch → header."""
    coinb1, extranonce1, extranonce2, coinb2 = _split_coinbase(parsed_block.txs[0])
    coinbase_nowit = assemble_coinbase(coinb1, extranonce1, extranonce2, coinb2)
    branch = coinbase_merkle_branch([tx.txid_le() for tx in parsed_block.txs[1:]])
    root_le = fold_coinbase_branch(sha256d(coinbase_nowit), branch)
    header = parsed_block.header
    assert root_le == header.merkle_root_le
    rebuilt = BlockHeader(
        header.version, header.prev_hash_le, root_le, header.time, header.bits, header.nonce
    )
    assert sha256d(rebuilt.serialize())[::-1].hex() == real_block.hash_hex
    # A miner that changes one extranonce2 byte gets a different root.
    other = bytes([extranonce2[0] ^ 1]) + extranonce2[1:]
    wrong = assemble_coinbase(coinb1, extranonce1, other, coinb2)
    assert fold_coinbase_branch(sha256d(wrong), branch) != header.merkle_root_le


@pytest.mark.parametrize("real_block", ["testnet3_0"], indirect=True)
def test_genesis_coinbase_txid(parsed_block) -> None:
    # The genesis coinbase (same on every chain) is the merkle root of the genesis block.
    assert parsed_block.txs[0].txid_hex() == (
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    )


def test_txid_and_wtxid(parsed_block) -> None:
    for tx in parsed_block.txs:
        assert (tx.wtxid_le() == tx.txid_le()) == (not tx.has_witness())
        assert tx.txid_hex() == tx.txid_le()[::-1].hex()
        assert tx.wtxid_hex() == tx.wtxid_le()[::-1].hex()
