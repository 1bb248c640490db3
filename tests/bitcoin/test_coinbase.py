"""Stratum coinbase parts: built with real blocks' heights and outputs, reassembled into the
block the pool would submit."""

import pytest

from pool.bitcoin.block import Block, BlockHeader, serialize_block
from pool.bitcoin.coinbase import (
    MAX_COINBASE_SCRIPTSIG_SIZE,
    assemble_coinbase,
    build_coinbase_parts,
    coinbase_with_witness,
)
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import coinbase_merkle_branch, fold_coinbase_branch
from pool.bitcoin.script import (
    WITNESS_RESERVED_VALUE,
    bip34_height_push,
    find_witness_commitment,
    p2wpkh_script,
    push_data,
    witness_commitment,
)
from pool.bitcoin.tx import Transaction, TxOut
from pool.errors import DeserializationError

# Heights of the real blocks whose coinbases follow BIP34.
HEIGHTS = {
    "mainnet_segwit": 702_861,
    "mainnet_413567": 413_567,
    "testnet3_segwit": 924_634,
    "testnet3_926485": 926_485,
    "testnet3_1263442": 1_263_442,
    "testnet3_1414221": 1_414_221,
}
TAG = b"/gridpool/"
EXTRANONCE1 = bytes.fromhex("deadbeef")
EXTRANONCE2 = bytes.fromhex("0001020304050607")
PAYOUT = [TxOut(625_000_000, p2wpkh_script(bytes(range(20))))]


def _parts(**overrides) -> tuple[bytes, bytes]:
    options = {
        "height": 840_000,
        "tag": TAG,
        "extranonce1_size": 4,
        "extranonce2_size": 8,
        "outputs": PAYOUT,
    } | overrides
    return build_coinbase_parts(**options)


@pytest.mark.parametrize("real_block", list(HEIGHTS), indirect=True)
def test_parts_rebuild_a_submittable_block(real_block, parsed_block) -> None:
    height = HEIGHTS[real_block.name]
    real_coinbase = parsed_block.txs[0]
    # Our BIP34 encoding is the one the block's miner used (and consensus checked).
    assert real_coinbase.inputs[0].script_sig.startswith(bip34_height_push(height))
    coinb1, coinb2 = _parts(height=height, outputs=real_coinbase.outputs)
    coinbase_nowit = assemble_coinbase(coinb1, EXTRANONCE1, EXTRANONCE2, coinb2)
    tx = Transaction.parse(coinbase_nowit)
    assert tx.is_coinbase() and tx.version == 2 and tx.locktime == 0
    assert tx.inputs[0].sequence == 0xFFFFFFFF
    assert tx.outputs == real_coinbase.outputs
    script_sig = tx.inputs[0].script_sig
    assert (
        script_sig
        == bip34_height_push(height) + push_data(TAG) + b"\x0c" + EXTRANONCE1 + EXTRANONCE2
    )
    assert 2 <= len(script_sig) <= MAX_COINBASE_SCRIPTSIG_SIZE

    commitment = find_witness_commitment(tx)
    coinbase_data = coinbase_with_witness(coinbase_nowit) if commitment else coinbase_nowit
    branch = coinbase_merkle_branch([t.txid_le() for t in parsed_block.txs[1:]])
    root_le = fold_coinbase_branch(sha256d(coinbase_nowit), branch)
    h = parsed_block.header
    header80 = BlockHeader(h.version, h.prev_hash_le, root_le, h.time, h.bits, h.nonce).serialize()
    raw = serialize_block(header80, [coinbase_data, *(t.serialize() for t in parsed_block.txs[1:])])

    block = Block.parse(raw)
    assert block.compute_merkle_root_le() == block.header.merkle_root_le == root_le
    if commitment is not None:
        wtxids = [t.wtxid_le() for t in block.txs]
        (reserved,) = block.txs[0].inputs[0].witness
        assert witness_commitment(wtxids, reserved=reserved) == commitment


def test_coinb1_ends_before_extranonce1() -> None:
    coinb1, coinb2 = _parts()
    raw = assemble_coinbase(coinb1, EXTRANONCE1, EXTRANONCE2, coinb2)
    assert raw[len(coinb1) : len(coinb1) + 4] == EXTRANONCE1
    assert raw[len(coinb1) + 4 : len(coinb1) + 12] == EXTRANONCE2
    assert coinb2.startswith(b"\xff\xff\xff\xff")  # sequence follows the scriptSig


@pytest.mark.parametrize("height", [0, 1, 16, 17])
def test_low_heights_still_meet_minimum_script_size(height: int) -> None:
    coinb1, coinb2 = _parts(height=height, tag=b"", extranonce1_size=1, extranonce2_size=1)
    tx = Transaction.parse(assemble_coinbase(coinb1, b"\x01", b"\x02", coinb2))
    assert tx.inputs[0].script_sig == bip34_height_push(height) + b"\x02\x01\x02"


def test_script_sig_limit() -> None:
    # 840000 needs a 4-byte push; a tag over 75 bytes needs OP_PUSHDATA1 n (2 bytes) + n;
    # the extranonce push is 1 + 12.
    fits = 100 - 4 - 2 - 13
    coinb1, coinb2 = _parts(tag=b"t" * fits)
    script_sig = Transaction.parse(assemble_coinbase(coinb1, EXTRANONCE1, EXTRANONCE2, coinb2))
    assert len(script_sig.inputs[0].script_sig) == 100
    with pytest.raises(ValueError, match=r"101 bytes .*82-byte tag .*extranonce 4\+8"):
        _parts(tag=b"t" * (fits + 1))


@pytest.mark.parametrize(
    "overrides",
    [{"extranonce1_size": 0}, {"extranonce2_size": 17}, {"outputs": []}, {"height": -1}],
)
def test_invalid_options(overrides: dict) -> None:
    with pytest.raises(ValueError):
        _parts(**overrides)


def test_coinbase_with_witness() -> None:
    coinb1, coinb2 = _parts()
    nowit = assemble_coinbase(coinb1, EXTRANONCE1, EXTRANONCE2, coinb2)
    withwit = coinbase_with_witness(nowit)
    tx = Transaction.parse(withwit)
    assert tx.inputs[0].witness == [WITNESS_RESERVED_VALUE]
    assert tx.serialize(with_witness=False) == nowit
    assert tx.txid_le() == sha256d(nowit)
    assert len(withwit) == len(nowit) + 2 + 1 + 1 + 32  # marker/flag, count, item length, item


def test_coinbase_with_witness_rejects_non_coinbase() -> None:
    coinb1, coinb2 = _parts()
    tx = Transaction.parse(assemble_coinbase(coinb1, EXTRANONCE1, EXTRANONCE2, coinb2))
    tx.inputs[0].prev_index = 0
    with pytest.raises(DeserializationError, match="not a coinbase"):
        coinbase_with_witness(tx.serialize())
