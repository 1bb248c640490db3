"""Issue items 1 and 2: blocks built from getblocktemplate with pool/bitcoin, submitted
over real HTTP; the kernel accepts the good one (tip, ZMQ, next template) and rejects
each broken variant with bitcoind's reason, leaving the tip where it was."""

import asyncio
import struct
from dataclasses import dataclass

import pytest
import zmq
import zmq.asyncio
from pbk import BlockValidationResult, ValidationMode

from pool.bitcoin.address import address_to_script_pubkey
from pool.bitcoin.block import BlockHeader, serialize_block
from pool.bitcoin.coinbase import assemble_coinbase, build_coinbase_parts, coinbase_with_witness
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import coinbase_merkle_branch, fold_coinbase_branch
from pool.bitcoin.script import witness_commitment_script
from pool.bitcoin.target import hash_le_to_int
from pool.bitcoin.tx import TxOut
from pool.devnet.chain import classify

PAYOUT_ADDRESS = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"  # any regtest address
EXTRANONCE1 = bytes.fromhex("0a0b0c0d")
EXTRANONCE2 = bytes.fromhex("0000000000000001")
ZMQ_WAIT = 10.0  # s
COIN = 100_000_000  # satoshis


@dataclass
class BlockSpec:
    """What to put in a block; the defaults follow the template exactly."""

    template: dict
    height: int | None = None
    coinbase_value: int | None = None
    commitment_hex: str | None = "template"
    prev_hash_hex: str | None = None
    time: int | None = None
    merkle_xor: int = 0
    want_valid_pow: bool = True
    tx_indexes: list[int] | None = None


def build_block(spec: BlockSpec) -> tuple[bytes, bytes]:
    """(raw block, hash_le) built the way the pool builds one: Stratum coinbase parts,
    the template's witness commitment, the merkle branch, then a ground nonce."""
    tmpl = spec.template
    txs = tmpl["transactions"]
    if spec.tx_indexes is not None:
        txs = [txs[i] for i in spec.tx_indexes]
    outputs = [
        TxOut(
            tmpl["coinbasevalue"] if spec.coinbase_value is None else spec.coinbase_value,
            address_to_script_pubkey(PAYOUT_ADDRESS, "regtest"),
        )
    ]
    commitment = (
        tmpl["default_witness_commitment"]
        if spec.commitment_hex == "template"
        else spec.commitment_hex
    )
    if commitment is not None:
        outputs.append(TxOut(0, bytes.fromhex(commitment)))
    coinb1, coinb2 = build_coinbase_parts(
        height=tmpl["height"] if spec.height is None else spec.height,
        tag=b"/gridpool-test/",
        extranonce1_size=len(EXTRANONCE1),
        extranonce2_size=len(EXTRANONCE2),
        outputs=outputs,
    )
    coinbase = assemble_coinbase(coinb1, EXTRANONCE1, EXTRANONCE2, coinb2)
    branch = coinbase_merkle_branch([bytes.fromhex(t["txid"])[::-1] for t in txs])
    merkle_le = fold_coinbase_branch(sha256d(coinbase), branch)
    if spec.merkle_xor:
        merkle_le = bytes([merkle_le[0] ^ spec.merkle_xor]) + merkle_le[1:]
    header = BlockHeader(
        version=tmpl["version"],
        prev_hash_le=bytes.fromhex(spec.prev_hash_hex or tmpl["previousblockhash"])[::-1],
        merkle_root_le=merkle_le,
        time=tmpl["curtime"] if spec.time is None else spec.time,
        bits=int(tmpl["bits"], 16),
        nonce=0,
    )
    target = int(tmpl["target"], 16)
    while (hash_le_to_int(header.hash_le()) <= target) != spec.want_valid_pow:
        header.nonce += 1
    coinbase_tx = coinbase_with_witness(coinbase) if commitment is not None else coinbase
    raw = serialize_block(
        header.serialize(), [coinbase_tx] + [bytes.fromhex(t["data"]) for t in txs]
    )
    return raw, header.hash_le()


async def _zmq_subscriber(endpoint: str) -> zmq.asyncio.Socket:
    socket = zmq.asyncio.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    for topic in (b"hashblock", b"rawblock"):
        socket.setsockopt(zmq.SUBSCRIBE, topic)
    socket.connect(endpoint)
    return socket


async def _warm_up_zmq(devnet, socket: zmq.asyncio.Socket) -> dict[bytes, int]:
    """Mine until a notification arrives (ZMQ's slow joiner), then drain; returns the
    last sequence number seen per topic."""
    last: dict[bytes, int] = {}
    for _ in range(20):
        await devnet.generate(1)
        if await socket.poll(200):
            break
    else:
        pytest.fail("no ZMQ notification after mining 20 blocks")
    while await socket.poll(200):
        topic, _, seq = await socket.recv_multipart()
        last[topic] = struct.unpack("<I", seq)[0]
    return last


async def test_template_block_is_accepted_and_announced(devnet, rpc) -> None:
    socket = await _zmq_subscriber(devnet.zmq_endpoint)
    try:
        last_seq = await _warm_up_zmq(devnet, socket)
        await devnet.wait_for_mempool(200)
        tmpl = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
        assert len(tmpl["transactions"]) == 200
        assert any(t["depends"] for t in tmpl["transactions"])
        raw, hash_le = build_block(BlockSpec(tmpl))

        assert await rpc.call("submitblock", raw.hex()) is None

        assert await rpc.call("getbestblockhash") == hash_le[::-1].hex()
        assert await rpc.call("getblockcount") == tmpl["height"]
        received = {}
        async with asyncio.timeout(ZMQ_WAIT):
            while len(received) < 2:
                topic, body, seq = await socket.recv_multipart()
                received[topic] = (body, struct.unpack("<I", seq)[0])
        assert received[b"hashblock"] == (hash_le[::-1], last_seq[b"hashblock"] + 1)
        assert received[b"rawblock"] == (raw, last_seq[b"rawblock"] + 1)
    finally:
        socket.close()

    following = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
    assert following["previousblockhash"] == hash_le[::-1].hex()
    assert following["height"] == tmpl["height"] + 1
    included = {t["txid"] for t in tmpl["transactions"]}
    assert not included & {t["txid"] for t in following["transactions"]}
    assert not included & set(await rpc.call("getrawmempool"))
    assert await rpc.call("getblock", hash_le[::-1].hex(), 0) == raw.hex()


def _variants(tmpl: dict, mtp: int, grandparent_hex: str) -> dict[str, tuple[BlockSpec, str]]:
    wrong_commitment = witness_commitment_script(bytes(32)).hex()
    return {
        "wrong merkle root": (BlockSpec(tmpl, merkle_xor=1), "bad-txnmrklroot"),
        "missing witness commitment": (BlockSpec(tmpl, commitment_hex=None), "unexpected-witness"),
        "wrong witness commitment": (
            BlockSpec(tmpl, commitment_hex=wrong_commitment),
            "bad-witness-merkle-match",
        ),
        "coinbase pays too much": (
            BlockSpec(tmpl, coinbase_value=tmpl["coinbasevalue"] + 1),
            "bad-cb-amount",
        ),
        "wrong BIP34 height": (BlockSpec(tmpl, height=tmpl["height"] + 1), "bad-cb-height"),
        "hash above target": (BlockSpec(tmpl, want_valid_pow=False), "high-hash"),
        "time before median-time-past": (BlockSpec(tmpl, time=mtp), "time-too-old"),
        # A valid block on the tip's parent: stored as a side branch, never the tip.
        "stale previous block": (
            BlockSpec(
                tmpl,
                prev_hash_hex=grandparent_hex,
                height=tmpl["height"] - 1,
                tx_indexes=[],
                commitment_hex=None,
                coinbase_value=COIN,
            ),
            "inconclusive",
        ),
    }


async def test_broken_blocks_are_rejected_with_reasons(devnet, rpc) -> None:
    tmpl = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
    tip_hex = tmpl["previousblockhash"]
    header = await rpc.call("getblockheader", tip_hex)
    assert tmpl["mintime"] == header["mediantime"] + 1
    for name, (spec, reason) in _variants(
        tmpl, header["mediantime"], header["previousblockhash"]
    ).items():
        raw, _ = build_block(spec)
        assert await rpc.call("submitblock", raw.hex()) == reason, name
        assert await rpc.call("getbestblockhash") == tip_hex, name

    good, hash_le = build_block(BlockSpec(tmpl))
    assert await rpc.call("submitblock", good.hex()) is None
    assert await rpc.call("submitblock", good.hex()) == "duplicate"
    assert await rpc.call("getbestblockhash") == hash_le[::-1].hex()


async def test_block_with_bad_kernel_reason_repeats_as_duplicate_invalid(devnet, rpc) -> None:
    tmpl = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
    raw, _ = build_block(BlockSpec(tmpl, coinbase_value=tmpl["coinbasevalue"] + 1))
    assert await rpc.call("submitblock", raw.hex()) == "bad-cb-amount"
    assert await rpc.call("submitblock", raw.hex()) == "duplicate-invalid"


async def test_proposal_checks_without_adding(devnet, rpc) -> None:
    tmpl = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
    for spec, expected in (
        (BlockSpec(tmpl, want_valid_pow=False), None),  # proposals skip proof of work
        (BlockSpec(tmpl, merkle_xor=1, want_valid_pow=False), "bad-txnmrklroot"),
        (BlockSpec(tmpl, coinbase_value=tmpl["coinbasevalue"] + 1), "bad-cb-amount"),
        (BlockSpec(tmpl, commitment_hex=None), "unexpected-witness"),
        (BlockSpec(tmpl, height=tmpl["height"] + 1), "bad-cb-height"),
    ):
        raw, _ = build_block(spec)
        proposal = {"mode": "proposal", "data": raw.hex(), "rules": ["segwit"]}
        assert await rpc.call("getblocktemplate", proposal) == expected
    assert await rpc.call("getbestblockhash") == tmpl["previousblockhash"]


async def test_submitblock_decode_failure(devnet, rpc) -> None:
    tmpl = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
    raw, _ = build_block(BlockSpec(tmpl))
    status, error = await rpc.error("submitblock", (raw[:-15].hex(),))
    assert (status, error["code"], error["message"]) == (500, -22, "Block decode failed")
    status, error = await rpc.error("submitblock", ("zz",))
    assert error["code"] == -22


def test_reason_without_kernel_log_line_comes_from_the_result_code() -> None:
    """The fallback when the kernel's log gives no reason (the log is the usual source)."""
    invalid, result = ValidationMode.INVALID, BlockValidationResult
    h = bytes(32)
    assert (
        classify(h, False, True, (invalid, result.MISSING_PREV), None).reason
        == "prev-blk-not-found"
    )
    assert (
        classify(h, False, True, (invalid, result.CACHED_INVALID), None).reason
        == "duplicate-invalid"
    )
    assert classify(h, False, True, (invalid, result.CONSENSUS), None).reason == "rejected"
    logged = "bad-cb-amount, coinbase pays too much (actual=2 vs limit=1)"
    assert classify(h, True, True, (invalid, result.CONSENSUS), logged).reason == "bad-cb-amount"
    assert classify(h, True, False, None, None).reason == "duplicate"
    assert classify(h, True, True, None, None).reason == "inconclusive"
    assert classify(h, True, True, (ValidationMode.VALID, result.UNSET), "Valid").accepted
