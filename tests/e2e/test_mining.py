"""Whole-pool runs on the devnet: real Stratum clients mine real shares with the native
scanner (rolling version bits), and the blocks they find are accepted by Bitcoin Core's
consensus; new tips reach every session; simulated difficulty decides block candidates."""

from __future__ import annotations

import asyncio

from stratum.harness import POOL_SCRIPT_HEX, SOLO_ADDRESS, SOLO_SCRIPT_HEX

from pool import metrics
from pool.bitcoin.block import Block
from pool.bitcoin.script import WITNESS_RESERVED_VALUE
from pool.node.rpc import RPCClient

MASK = 0x1FFFE000


async def fetch_block(devnet, block_hash_hex: str) -> Block:
    rpc = RPCClient(devnet.rpc_url, cookie_path=devnet.cookie_path)
    try:
        return Block.parse(bytes.fromhex(await rpc.call("getblock", block_hash_hex, 0)))
    finally:
        await rpc.close()


async def mine_blocks(app, client, devnet, count: int) -> list[tuple[Block, object]]:
    """Mine `count` shares (each a block on regtest) and check each one's block."""
    found = []
    for _ in range(count):
        height = devnet.chain.height
        job = app.jobs.get(client.job.job_id)
        solution = client.find_solution()
        assert await client.submit(solution)
        block_hash = solution.hash_le[::-1].hex()
        assert devnet.chain.height == height + 1
        assert devnet.chain.tip.hash_hex == block_hash
        found.append((await fetch_block(devnet, block_hash), job, solution))
        await client.wait_for(lambda h=height: app.jobs.current.template.height > h + 1)
        client.roll_version()  # the next share on other version bits
    return found


async def test_client_mines_blocks_the_devnet_accepts(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(app)
    assert client.version_mask == MASK
    blocks_before = metrics.BLOCKS_FOUND._value.get()
    found = await mine_blocks(app, client, devnet, 3)
    rolled = set()
    for block, job, solution in found:
        template = job.template
        coinbase = block.txs[0]
        assert coinbase.outputs[0].script_pubkey.hex() == POOL_SCRIPT_HEX
        assert sum(o.value_sats for o in coinbase.outputs) == template.coinbase_value_sats
        assert coinbase.outputs[0].value_sats == template.coinbase_value_sats
        assert tuple(tx.txid_le() for tx in block.txs[1:]) == template.txids_le
        if template.witness_commitment_script is not None:
            assert coinbase.inputs[0].witness == [WITNESS_RESERVED_VALUE]
        assert block.header.version & MASK == solution.version_bits
        rolled.add(solution.version_bits)
    assert any(job.template.tx_count > 0 for _, job, _ in found)  # real transactions
    assert len(rolled) >= 2  # version rolling really happened
    assert metrics.BLOCKS_FOUND._value.get() == blocks_before + 3
    submitted = metrics.BLOCKS_SUBMITTED.labels(node="devnet0", result="accepted")._value.get()
    assert submitted >= 3


async def test_solo_miner_block_pays_its_address(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], payout={})
    client = await client_factory(app, f"{SOLO_ADDRESS}.bitaxe")
    ((block, job, _),) = await mine_blocks(app, client, devnet, 1)
    coinbase = block.txs[0]
    assert coinbase.outputs[0].script_pubkey.hex() == SOLO_SCRIPT_HEX
    assert coinbase.outputs[0].value_sats == job.template.coinbase_value_sats
    assert app.blocks[0]["worker"] == f"{SOLO_ADDRESS}.bitaxe"
    assert app.blocks[0]["results"] == {"devnet0": "accepted"}


async def test_new_block_reaches_every_session_empty_job_first(
    devnet, pool_factory, client_factory
):
    app = await pool_factory([devnet], network={"simulated_difficulty": 1e9})
    clients = [await client_factory(app, f"acct.rig{i}") for i in range(8)]
    marks = [len(c.messages) for c in clients]
    observed = metrics.JOB_BROADCAST_SECONDS._sum.get()
    await devnet.generate(1)
    tip = devnet.chain.tip.hash_hex
    for client, mark in zip(clients, marks, strict=True):
        await client.wait_for(
            lambda c=client, m=mark: (
                sum(1 for x in list(c.messages)[m:] if x["method"] == "mining.notify") >= 2
            )
        )
        empty, full = [
            x["params"] for x in list(client.messages)[mark:] if x["method"] == "mining.notify"
        ][:2]
        assert empty[4] == [] and empty[8] is True  # coinbase only, clean
        assert full[4] and full[8] is False  # the full template follows
        assert empty[1] == full[1]
        assert bytes.fromhex(empty[1]) != bytes.fromhex(tip)  # word-swapped on the wire
    assert metrics.JOB_BROADCAST_SECONDS._sum.get() > observed


async def test_a_share_on_the_empty_job_is_a_valid_block(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(app)
    mark = len(client.messages)
    await devnet.generate(1)
    await client.wait_for(
        lambda: any(
            m["method"] == "mining.notify" and m["params"][4] == []
            for m in list(client.messages)[mark:]
        )
    )
    empty = next(
        m["params"][0]
        for m in list(client.messages)[mark:]
        if m["method"] == "mining.notify" and m["params"][4] == []
    )
    job = client.jobs[empty]
    height = devnet.chain.height
    solution = client.find_solution(job=job)
    assert await client.submit(solution)
    assert devnet.chain.height == height + 1
    block = await fetch_block(devnet, solution.hash_le[::-1].hex())
    assert len(block.txs) == 1  # coinbase only, paying the subsidy (regtest halves every 150)
    assert block.txs[0].outputs[0].value_sats == (50 * 10**8) >> ((height + 1) // 150)


async def test_simulated_difficulty_labels_and_decides_blocks(devnet, pool_factory, client_factory):
    simulated = 3e-4  # shares at 1e-4: about one in three is a (simulated) block
    app = await pool_factory([devnet], network={"simulated_difficulty": simulated})
    assert app.status()["blocks_are_simulated"] is True
    client = await client_factory(app)
    blocks = shares = 0
    while blocks < 1 or shares - blocks < 1:
        height = devnet.chain.height
        solution = client.find_solution()
        assert await client.submit(solution)
        shares += 1
        is_block = solution.hash_difficulty >= simulated
        await asyncio.sleep(0.05 if is_block else 0)
        assert devnet.chain.height == height + int(is_block)
        if is_block:
            blocks += 1
            await client.wait_for(lambda h=height: app.jobs.current.template.height > h + 1)
    assert app.blocks[0]["simulated"] is True
    assert app.status()["jobs"]["simulated_difficulty"] == simulated
