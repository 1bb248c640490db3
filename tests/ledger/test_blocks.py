"""Block status tracking: the pure rule, then BlockTracker against the devnet over real
RPC, through a real reorg (a competing block, then its branch overtaking), with the
balance effects of orphaning and un-orphaning, and maturity at 100 confirmations."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from pool.bitcoin.block import BlockHeader, serialize_block
from pool.bitcoin.script import bip34_height_push, p2wpkh_script, push_data
from pool.bitcoin.tx import NULL_INDEX, NULL_TXID_LE, Transaction, TxIn, TxOut
from pool.devnet import Devnet
from pool.devnet.miner import grind
from pool.errors import NodeError
from pool.ledger import FoundBlock, PayoutRow
from pool.ledger.blocks import COINBASE_MATURITY, BlockTracker, block_state
from pool.ledger.store import CONFIRMED, FOUND, ORPHANED, SUBMITTED, Ledger
from pool.node.rpc import RPCClient

H = "ab" * 32
OTHER = "cd" * 32


@pytest.mark.parametrize(
    ("status", "tip", "hash_at", "expected"),
    [
        (FOUND, 99, None, (FOUND, 0)),  # the chain has not reached height 100 yet
        (SUBMITTED, 100, H, (SUBMITTED, 1)),
        (FOUND, 100, H, (SUBMITTED, 1)),  # in the chain though no submit result was stored
        (SUBMITTED, 198, H, (SUBMITTED, 99)),
        (SUBMITTED, 199, H, (CONFIRMED, 100)),
        (SUBMITTED, 120, OTHER, (ORPHANED, 0)),
        (ORPHANED, 130, H, (SUBMITTED, 31)),  # back after a reorg
        (CONFIRMED, 400, OTHER, (ORPHANED, 0)),  # a reorg deeper than maturity
    ],
)
def test_block_state(status: str, tip: int, hash_at: str | None, expected: tuple) -> None:
    assert block_state(height=100, hash_hex=H, status=status, tip_height=tip,
                       hash_at_height=hash_at) == expected


@pytest.fixture
async def rpc(devnet: Devnet) -> AsyncIterator[RPCClient]:
    client = RPCClient(devnet.rpc_url, cookie_path=devnet.cookie_path, name="devnet")
    yield client
    await client.close()


def coinbase_only_block(prev_hash_hex: str, height: int, block_time: int, template: dict) -> tuple[
    str, str
]:
    """(raw hex, hash hex) of a valid block holding only a coinbase, on any parent."""
    script_sig = bip34_height_push(height) + push_data(b"/ledger-test/")
    coinbase = Transaction(2, [TxIn(NULL_TXID_LE, NULL_INDEX, script_sig)],
                           [TxOut(1000, p2wpkh_script(bytes(20)))])
    header = BlockHeader(version=0x20000000, prev_hash_le=bytes.fromhex(prev_hash_hex)[::-1],
                         merkle_root_le=coinbase.txid_le(), time=block_time,
                         bits=int(template["bits"], 16), nonce=0)
    header = grind(header, int(template["target"], 16))
    return serialize_block(header.serialize(), [coinbase.serialize()]).hex(), header.hash_hex()


async def extend(rpc: RPCClient, tip: str, height: int, count: int, template: dict) -> str:
    """Mine `count` coinbase-only blocks on `tip` (at `height` - 1); the new tip's hash."""
    for i in range(count):
        block_time = template["curtime"] + (height + i - template["height"])  # one s apart
        raw, tip = coinbase_only_block(tip, height + i, block_time, template)
        assert await rpc.call("submitblock", raw) is None
    return tip


def found(hash_hex: str, height: int) -> FoundBlock:
    return FoundBlock(hash_hex=hash_hex, height=height, account="alice", worker="w", site="s",
                      reward_sats=5_000_000_000, fees_sats=0, pool_fee_sats=0,
                      found_time=time.time())


async def balance(ledger: Ledger, account: str) -> int:
    found_account = await ledger.get_account(account)
    return found_account.balance_sats if found_account else 0


async def test_tracker_follows_reorgs_and_maturity(
    ledger: Ledger, devnet: Devnet, rpc: RPCClient
) -> None:
    template = devnet.block_template()
    height = template["height"]
    [hash_a] = await devnet.generate(1)
    raw_b, hash_b = coinbase_only_block(template["previousblockhash"], height,
                                        template["curtime"], template)
    assert await rpc.call("submitblock", raw_b) == "inconclusive"  # valid, not the best chain
    await ledger.record_block_found(found(hash_a, height), [PayoutRow("alice", 1000, 0)])
    await ledger.record_block_found(found(hash_b, height), [PayoutRow("bob", 2000, 0)])
    await ledger.set_block_submit_result(hash_b, "devnet", "inconclusive")
    tracker = BlockTracker(ledger, rpc.call)

    await tracker.update()
    assert ((await ledger.get_block(hash_a)).status, (await ledger.get_block(hash_a)).confirmations
            ) == (SUBMITTED, 1)
    assert (await ledger.get_block(hash_b)).status == ORPHANED
    assert (await balance(ledger, "alice"), await balance(ledger, "bob")) == (1000, 0)

    raw_c, hash_c = coinbase_only_block(hash_b, height + 1, template["curtime"] + 1, template)
    assert await rpc.call("submitblock", raw_c) is None  # B's branch is now the best chain
    changes = {c.hash_hex: (c.old_status, c.status) for c in await tracker.update()}
    assert changes == {hash_a: (SUBMITTED, ORPHANED), hash_b: (ORPHANED, SUBMITTED)}
    assert (await balance(ledger, "alice"), await balance(ledger, "bob")) == (0, 2000)
    assert (await ledger.get_block(hash_b)).confirmations == 2

    # (The devnet's mempool still holds spends of A's coins, so extend the chain by hand.)
    tip = await extend(rpc, hash_c, height + 2, COINBASE_MATURITY - 3, template)
    await tracker.update()
    assert ((await ledger.get_block(hash_b)).status,
            (await ledger.get_block(hash_b)).confirmations) == (SUBMITTED, COINBASE_MATURITY - 1)
    tip = await extend(rpc, tip, height + COINBASE_MATURITY - 1, 1, template)
    await tracker.on_new_tip(tip)
    block_b = await ledger.get_block(hash_b)
    assert (block_b.status, block_b.confirmations) == (CONFIRMED, COINBASE_MATURITY)
    assert (await ledger.get_block(hash_a)).status == ORPHANED
    assert await tracker.update() == []  # settled: confirmed and orphaned blocks stay put


async def test_tracker_with_an_unreachable_node(ledger: Ledger) -> None:
    await ledger.record_block_found(found(H, 5), [])
    client = RPCClient("http://127.0.0.1:9/", auth=("u", "p"), timeout_s=2.0)
    tracker = BlockTracker(ledger, client.call)
    with pytest.raises(NodeError):
        await tracker.update()
    await tracker.on_new_tip(H)  # logged, not raised: the next tip retries
    assert (await ledger.get_block(H)).status == FOUND
    await client.close()
