"""Orphan detection through the whole pool: a block the pool found is replaced by a longer
competing branch on the devnet; on the new tip the pool's block tracker marks it orphaned,
the ledger reverts the balances it moved, the metric counts it, and the pool goes on to
find a valid block on the new branch."""

from __future__ import annotations

import asyncio

from stratum.harness import POOL_ADDRESS, SOLO_ADDRESS

from miners.sim.stratum_client import StratumClient
from pool import metrics
from pool.bitcoin.block import BlockHeader, serialize_block
from pool.bitcoin.script import bip34_height_push, p2wpkh_script, push_data
from pool.bitcoin.target import difficulty_to_target, hash_le_to_int
from pool.bitcoin.tx import NULL_INDEX, NULL_TXID_LE, Transaction, TxIn, TxOut
from pool.devnet.miner import grind
from pool.ledger.store import ORPHANED, SUBMITTED

SIM = 1e-3


def competing_block(prev_hash_hex: str, height: int, block_time: int, template: dict) -> bytes:
    """A valid coinbase-only block on any parent (not mined through the pool)."""
    script_sig = bip34_height_push(height) + push_data(b"/elsewhere/")
    coinbase = Transaction(2, [TxIn(NULL_TXID_LE, NULL_INDEX, script_sig)],
                           [TxOut(1000, p2wpkh_script(bytes(20)))])
    header = grind(BlockHeader(
        version=0x20000000, prev_hash_le=bytes.fromhex(prev_hash_hex)[::-1],
        merkle_root_le=coinbase.txid_le(), time=block_time, bits=int(template["bits"], 16),
        nonce=0), int(template["target"], 16))
    return serialize_block(header.serialize(), [coinbase.serialize()])


async def mine_block(app, client: StratumClient) -> str:
    job = await app.jobs.refresh()
    await client.wait_for(lambda: client.job is not None and client.job.job_id == job.job_id)
    solution = client.find_solution(difficulty=SIM)
    assert await client.submit(solution)
    return solution.hash_le[::-1].hex()


async def wait_status(app, hash_hex: str, status: str) -> None:
    for _ in range(300):  # the tracker runs on the pool's next tip
        if (await app.ledger.get_block(hash_hex)).status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"block {hash_hex} never became {status}")


async def test_orphaned_block_is_detected_and_its_balances_reverted(
    devnet, pool_factory, client_factory
):
    app = await pool_factory([devnet], network={"simulated_difficulty": SIM}, payout={
        "mode": "pplns", "address": POOL_ADDRESS, "account": [
            {"name": "alice", "address": SOLO_ADDRESS}]})  # carol: no address, carried
    alice = await client_factory(app, "alice.rig", suggest_difficulty=1e-5)
    carol = await client_factory(app, "carol.rig", suggest_difficulty=1e-5)
    await carol.wait_for(lambda: carol.difficulty == 1e-5)
    for _ in range(5):
        solution = carol.find_solution()
        if hash_le_to_int(solution.hash_le) > difficulty_to_target(SIM):  # not a block
            assert await carol.submit(solution)
    template = devnet.block_template()  # the height the pool's block will take
    orphaned_before = metrics.BLOCKS_ORPHANED._value.get()
    hash_a = await mine_block(app, alice)
    credit = (await app.ledger.get_account("carol")).balance_sats
    assert credit > 0  # carried: carol has no payout address
    await wait_status(app, hash_a, SUBMITTED)  # the tracker saw it in the chain

    # Another miner's branch, one block longer, replaces the pool's block.
    raw_b = competing_block(template["previousblockhash"], template["height"],
                            template["curtime"], template)
    assert (await devnet.submit_block(raw_b)).reason == "inconclusive"
    raw_c = competing_block(BlockHeader.parse(raw_b[:80]).hash_hex(), template["height"] + 1,
                            template["curtime"] + 1, template)
    assert (await devnet.submit_block(raw_c)).accepted  # a reorg: ZMQ tells the pool
    await wait_status(app, hash_a, ORPHANED)
    assert (await app.ledger.get_account("carol")).balance_sats == 0  # reverted
    assert metrics.BLOCKS_ORPHANED._value.get() == orphaned_before + 1

    # The pool mines on: its next block is valid on the new branch.
    hash_d = await mine_block(app, alice)
    assert devnet.chain.tip.hash_hex == hash_d
    assert devnet.chain.height == template["height"] + 2
    assert (await app.ledger.get_block(hash_d)).status in ("found", SUBMITTED)
