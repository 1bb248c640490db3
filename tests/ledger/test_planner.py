"""PayoutPlanner on both backends: it plans from the ledger's window and balances, caches
plans per snapshot, prepares the next empty job's plan in the background, and settles a
found block's balance moves in memory exactly once (before and after the ledger has them)."""

from __future__ import annotations

import asyncio
import time

from ledger_helpers import make_share

from pool.bitcoin.address import address_to_script_pubkey
from pool.ledger import FoundBlock, work_units
from pool.ledger.planner import PayoutPlanner
from pool.ledger.store import Ledger
from pool.payouts import pplns_split

ALICE = "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9"
POOL = "bcrt1p39a4s4vdcw9kqa8w2t0rp7aj8kfxyw7mce5sk5d70x6wnnmpvt7skf2kxy"
POOL_SCRIPT = address_to_script_pubkey(POOL, "regtest")
VALUE = 5_000_000_000
NETDIFF = 1024.0  # x multiple 1.0: the window is 1024 difficulty = the last 4 shares of 256


def planner(ledger: Ledger, dust_sats: int = 1_000_000) -> PayoutPlanner:
    return PayoutPlanner(ledger, chain="regtest", pool_script=POOL_SCRIPT, fee_bps=200,
                         window_multiple=1.0, dust_sats=dust_sats, max_coinbase_bytes=700)


def found(hash_hex: str) -> FoundBlock:
    return FoundBlock(hash_hex=hash_hex, height=200, account="alice", worker="w", site="s",
                      reward_sats=VALUE, fees_sats=0, pool_fee_sats=0, found_time=time.time())


async def test_plans_follow_the_window_and_balances(ledger: Ledger) -> None:
    await ledger.set_payout_address("alice", ALICE)
    await ledger.set_payout_address("bob", "not-an-address")  # unusable: carried
    await ledger.record_shares([make_share(i, account=a, difficulty=256.0)
                                for i, a in enumerate(["carol", "alice", "bob", "alice", "bob"])])
    planner_ = planner(ledger)
    snapshot = await planner_.refresh(NETDIFF)
    unit = work_units(256.0)
    assert snapshot.window == (("alice", 2 * unit), ("bob", 2 * unit))  # carol fell out
    assert snapshot.scripts == {"alice": address_to_script_pubkey(ALICE, "regtest")}
    planned = planner_.plan(VALUE, script_sig_bytes=30, witness_commitment=True)
    assert planned.plan == pplns_split(VALUE, fee_bps=200, window=snapshot.window,
                                       scripts=snapshot.scripts, balances={},
                                       pool_script=POOL_SCRIPT, dust_sats=1_000_000,
                                       script_sig_bytes=30)
    assert planner_.plan(VALUE, script_sig_bytes=30, witness_commitment=True) is planned
    rows = {r.account: r for r in planned.payout_rows()}
    assert rows["alice"].address == ALICE and rows["alice"].paid_sats == rows[
        "alice"].credited_sats
    assert rows["bob"].paid_sats == 0 and rows["bob"].address == ""

    # The block pays alice and credits bob: the next plan carries bob's balance at once,
    # and still exactly once after the ledger has the block and the window is read again.
    planner_.settle("aa" * 32, planned)
    bob = rows["bob"].credited_sats
    assert planner_.snapshot.balances == {"bob": bob}
    assert (await planner_.refresh(NETDIFF)).balances == {"bob": bob}  # ledger: not yet
    async with planner_.recording("aa" * 32):
        read = planner_.refresh_task(NETDIFF)  # waits until the settlement is committed
        await asyncio.sleep(0.05)
        assert not read.done()
        await ledger.record_block_found(found("aa" * 32), planned.payout_rows())
    assert (await read).balances == {"bob": bob}  # from the ledger now, counted once
    assert planner_.status()["pending_settlements"] == 0
    assert (await ledger.get_account("bob")).balance_sats == bob
    again = planner_.plan(VALUE, script_sig_bytes=30, witness_commitment=True)
    bob_again = next(a for a in again.plan.accounts if a.account == "bob")
    assert (bob_again.balance_before, bob_again.balance_after) == (
        bob, bob + bob_again.credited_sats)
    await planner_.close()


async def test_prepare_computes_in_the_background(ledger: Ledger) -> None:
    await ledger.record_shares([make_share(i, account=f"a{i}") for i in range(3)])
    planner_ = planner(ledger)
    await planner_.refresh(NETDIFF)
    planner_.prepare(VALUE, script_sig_bytes=12, witness_commitment=False)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if planner_.status()["window_accounts"] and planner_._cache.plans:
            break
    prepared = planner_.plan(VALUE, script_sig_bytes=12, witness_commitment=False)
    assert planner_.plan(VALUE, script_sig_bytes=12, witness_commitment=False) is prepared
    await planner_.refresh(NETDIFF)  # a new snapshot: prepared again for it
    await asyncio.sleep(0.05)
    fresh = planner_.plan(VALUE, script_sig_bytes=12, witness_commitment=False)
    assert fresh.snapshot is planner_.snapshot and fresh is not prepared
    await planner_.close()


async def test_a_failed_read_keeps_the_last_snapshot(ledger: Ledger) -> None:
    await ledger.record_shares([make_share(1)])
    planner_ = planner(ledger)
    snapshot = await planner_.refresh(NETDIFF)
    await ledger.close()  # every later read fails
    assert await planner_.refresh_task(NETDIFF) is snapshot
    assert planner_.snapshot is snapshot
    await planner_.close()
