"""The Ledger interface, run against both backends (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from ledger_helpers import make_share, reference_window

from pool.errors import LedgerError
from pool.ledger import FoundBlock, PayoutRow, ShareRecord, WindowEntry, open_ledger, work_units
from pool.ledger.store import CONFIRMED, FOUND, ORPHANED, SUBMITTED, Ledger, units_to_difficulty


async def test_migrate_is_idempotent_and_reopenable(ledger_url: str) -> None:
    first = open_ledger(ledger_url)
    await first.migrate()
    await first.record_shares([make_share(1)])
    await first.close()
    again = open_ledger(ledger_url)
    await again.migrate()  # applied already: no error, data kept
    assert await again.known_share_ids(["job:" + f"{1:064x}"]) == {f"job:{1:064x}"}
    await again.close()


async def test_record_skips_known_ids_and_counts_aggregates_once(ledger: Ledger) -> None:
    now = time.time()
    batch = [make_share(i, at=now) for i in range(5)]
    assert await ledger.record_shares(batch + batch[:2]) == 5  # duplicates inside the batch
    assert await ledger.record_shares(batch) == 0  # a replay of the same shares
    assert await ledger.record_shares([*batch, make_share(9, at=now)]) == 1
    [stats] = await ledger.share_stats(since=now - 60)
    assert (stats.account, stats.shares, stats.work) == ("alice", 6, 6 * work_units(1024.0))
    totals = await ledger.totals()
    assert (totals.shares_retained, totals.last_seq) == (6, 6)
    assert totals.cum_work == 6 * work_units(1024.0)


async def test_difficulty_sums_are_exact(ledger: Ledger) -> None:
    now = time.time()
    # 0.001 is not a binary fraction; 2**40 overflows 64-bit units per share.
    shares = [make_share(i, difficulty=0.001, at=now) for i in range(1000)]
    shares += [make_share(1000 + i, difficulty=2.0**40, account="whale", at=now)
               for i in range(300)]
    await ledger.record_shares(shares)
    stats = {s.account: s for s in await ledger.share_stats(since=now - 60)}
    assert stats["alice"].work == 1000 * work_units(0.001)
    assert stats["whale"].work == 300 * 2**72
    assert stats["whale"].difficulty == 300 * 2.0**40
    window = await ledger.pplns_window(1e30)
    assert window == [WindowEntry("alice", 1000 * work_units(0.001)),
                      WindowEntry("whale", 300 * 2**72)]


async def test_pplns_window_counts_the_oldest_share_partially(ledger: Ledger) -> None:
    now = time.time()
    await ledger.record_shares([
        make_share(1, account="carol", difficulty=8.0, at=now),
        make_share(2, account="alice", difficulty=4.0, at=now),
        make_share(3, account="bob", difficulty=2.0, at=now),
    ])
    unit = work_units(1.0)
    assert await ledger.pplns_window(2.0) == [WindowEntry("bob", 2 * unit)]
    assert await ledger.pplns_window(3.0) == [WindowEntry("alice", unit),
                                              WindowEntry("bob", 2 * unit)]
    assert await ledger.pplns_window(7.5) == [
        WindowEntry("alice", 4 * unit), WindowEntry("bob", 2 * unit),
        WindowEntry("carol", unit * 3 // 2),
    ]
    everything = await ledger.pplns_window(1000.0)  # more than recorded: all of it, whole
    assert [e.work for e in everything] == [4 * unit, 2 * unit, 8 * unit]


async def test_pplns_window_matches_a_reference_walk(ledger: Ledger) -> None:
    rng = random.Random(7)
    now = time.time()
    shares = [
        make_share(i, account=rng.choice("abcdefg"), difficulty=rng.choice([0.5, 3.0, 1e3, 7.7]),
                   solo=rng.random() < 0.1, at=now)
        for i in range(600)
    ]
    for start in range(0, len(shares), 97):  # several batches
        await ledger.record_shares(shares[start : start + 97])
    for window in (0.25, 1.0, 999.0, 12345.6, 1e5, 1e9):
        expected = reference_window(shares, work_units(window))
        assert await ledger.pplns_window(window) == expected, window
        assert sum(e.work for e in expected) <= work_units(window)


async def test_solo_shares_count_in_stats_but_not_in_pplns(ledger: Ledger) -> None:
    now = time.time()
    await ledger.record_shares([make_share(1, account="bcrt1qsolo", solo=True, at=now),
                                make_share(2, account="alice", at=now)])
    assert await ledger.pplns_window(1e9) == [WindowEntry("alice", work_units(1024.0))]
    accounts = {s.account for s in await ledger.share_stats(since=now - 60)}
    assert accounts == {"alice", "bcrt1qsolo"}


async def test_prune_keeps_what_the_window_needs(ledger: Ledger) -> None:
    now = time.time()
    await ledger.record_shares([make_share(i, account=f"a{i % 3}", difficulty=1.0, at=now)
                                for i in range(100)])
    before = await ledger.pplns_window(10.0)
    assert await ledger.prune_shares(20.0) == 80
    assert await ledger.pplns_window(10.0) == before
    assert (await ledger.totals()).shares_retained == 20
    assert await ledger.prune_shares(20.0) == 0
    assert sum(e.work for e in await ledger.pplns_window(50.0)) == work_units(20.0)
    [stats] = await ledger.share_stats(since=now - 60, group_by=())
    assert stats.shares == 100  # aggregates are kept


async def test_prune_by_age(ledger: Ledger) -> None:
    now = time.time()
    old = [make_share(i, at=now - 7200, difficulty=1.0) for i in range(10)]
    new = [make_share(10 + i, at=now, difficulty=1.0) for i in range(5)]
    await ledger.record_shares(old + new)
    assert await ledger.prune_shares(1e9, max_age_s=3600, now=now) == 10
    assert (await ledger.totals()).shares_retained == 5


async def test_share_stats_groups_and_filters(ledger: Ledger) -> None:
    t0 = 1_800_000_000.0  # on a minute boundary
    shares = [
        make_share(1, account="alice", worker="w1", site="north", at=t0 + 1, difficulty=2.0),
        make_share(2, account="alice", worker="w2", site="north", at=t0 + 2, difficulty=2.0),
        make_share(3, account="alice", worker="w2", site="south", at=t0 + 61, difficulty=4.0),
        make_share(4, account="bob", worker="w1", site="south", at=t0 + 125, difficulty=8.0),
    ]
    await ledger.record_shares(shares)
    by_site = await ledger.share_stats(since=t0, group_by=("site",))
    assert [(s.site, s.shares, s.difficulty) for s in by_site] == [("north", 2, 4.0),
                                                                   ("south", 2, 12.0)]
    workers = await ledger.share_stats(since=t0, group_by=("account", "worker"), account="alice")
    assert [(s.worker, s.shares, s.last_time) for s in workers] == [("w1", 1, t0 + 1),
                                                                    ("w2", 2, t0 + 61)]
    [first_minute] = await ledger.share_stats(since=t0, until=t0 + 60, group_by=())
    assert (first_minute.shares, first_minute.account) == (2, None)
    assert await ledger.share_stats(since=t0 + 180) == []
    series = await ledger.minute_series(since=t0, site="south")
    assert [(m.minute - t0, m.shares, units_to_difficulty(m.work)) for m in series] == [
        (60, 1, 4.0), (120, 1, 8.0)]


async def test_accounts_and_payout_addresses(ledger: Ledger) -> None:
    assert await ledger.get_account("alice") is None
    await ledger.set_payout_address("alice", "bcrt1qalice")
    await ledger.set_payout_address("alice", "bcrt1qalice2")
    account = await ledger.get_account("alice")
    assert account is not None
    assert (account.payout_address, account.balance_sats) == ("bcrt1qalice2", 0)
    assert set(await ledger.accounts_for_payout(["alice", "nobody"])) == {"alice"}


def found(hash_hex: str, height: int = 200, **kw: object) -> FoundBlock:
    fields: dict = dict(hash_hex=hash_hex, height=height, account="alice", worker="w1",
                        site="north", reward_sats=5_000_000_000, fees_sats=12_345,
                        pool_fee_sats=50_000_000, found_time=time.time(), share_id="j:1",
                        job_id="j")
    fields.update(kw)
    return FoundBlock(**fields)


async def balances(ledger: Ledger, *names: str) -> dict[str, int]:
    found_accounts = await ledger.accounts_for_payout(names)
    return {n: found_accounts[n].balance_sats if n in found_accounts else 0 for n in names}


async def test_block_found_moves_balances_once(ledger: Ledger) -> None:
    payouts = [PayoutRow("alice", 3_000, 3_000, "bcrt1qa"),  # paid in full
               PayoutRow("bob", 700, 0, ""),  # dust: carried
               PayoutRow("carol", 100, 5_100, "bcrt1qc")]  # paid with her 5,000 balance
    assert await ledger.record_block_found(found("aa" * 32), payouts)
    assert not await ledger.record_block_found(found("aa" * 32), payouts)  # no double apply
    assert await balances(ledger, "alice", "bob", "carol") == {"alice": 0, "bob": 700,
                                                              "carol": -5_000}
    assert await ledger.block_payouts("aa" * 32) == sorted(payouts, key=lambda p: p.account)
    assert set(await ledger.accounts_for_payout([])) == {"bob", "carol"}  # nonzero balances


async def test_block_lifecycle_and_orphan_revert(ledger: Ledger) -> None:
    h = "bb" * 32
    await ledger.record_block_found(found(h), [PayoutRow("bob", 900, 0)])
    assert (await ledger.get_block(h)).status == FOUND
    await ledger.set_block_submit_result(h, "node-a", None)
    await ledger.set_block_submit_result(h, "node-b", "duplicate")
    block = await ledger.get_block(h)
    assert block.status == SUBMITTED
    assert block.submit_results == {"node-a": None, "node-b": "duplicate"}
    assert (block.reward_sats, block.fees_sats, block.pool_fee_sats) == (5_000_000_000, 12_345,
                                                                         50_000_000)
    await ledger.set_block_status(h, SUBMITTED, 3)
    assert (await ledger.get_block(h)).confirmations == 3
    await ledger.set_block_status(h, ORPHANED, 0)
    assert await balances(ledger, "bob") == {"bob": 0}  # reverted
    await ledger.set_block_status(h, ORPHANED, 0)
    assert await balances(ledger, "bob") == {"bob": 0}  # not twice
    await ledger.set_block_status(h, CONFIRMED, 100)  # back in the chain (reorg)
    assert await balances(ledger, "bob") == {"bob": 900}
    assert (await ledger.get_block(h)).confirmations == 100


async def test_blocks_listing(ledger: Ledger) -> None:
    now = time.time()
    for i in range(4):
        await ledger.record_block_found(found(f"{i:064x}", height=300 + i, found_time=now + i), [])
    await ledger.set_block_status(f"{1:064x}", ORPHANED, 0)
    assert [b.height for b in await ledger.blocks(limit=3)] == [303, 302, 301]
    assert [b.height for b in await ledger.blocks(status=ORPHANED)] == [301]
    assert [b.height for b in await ledger.blocks(status=[FOUND, ORPHANED])] == [303, 302, 301,
                                                                                300]
    assert await ledger.get_block("ff" * 32) is None
    with pytest.raises(LedgerError):
        await ledger.set_block_status("ff" * 32, CONFIRMED, 100)
    with pytest.raises(LedgerError):
        await ledger.set_block_submit_result("ff" * 32, "node-a", None)
    with pytest.raises(LedgerError):
        await ledger.blocks(status="lost")


async def test_bad_records_are_refused(ledger: Ledger) -> None:
    good = make_share(1)
    for bad in (
        ShareRecord(**{**_fields(good), "difficulty": float("nan")}),
        ShareRecord(**{**_fields(good), "difficulty": 0.0}),
        ShareRecord(**{**_fields(good), "share_id": ""}),
        ShareRecord(**{**_fields(good), "time": float("inf")}),
    ):
        with pytest.raises(LedgerError):
            await ledger.record_shares([good, bad])
    assert (await ledger.totals()).shares_retained == 0  # the whole batch was refused
    with pytest.raises(LedgerError):
        await ledger.share_stats(since=0, group_by=("account; DROP TABLE shares",))
    with pytest.raises(LedgerError):
        await ledger.pplns_window(0.0)


def _fields(share: ShareRecord) -> dict:
    return {name: getattr(share, name) for name in ShareRecord.__dataclass_fields__}


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://host/x.db", "sqlite:///",
                                 "postgresql://u@h/db?schema=Bad-Name"])
def test_open_ledger_rejects_bad_urls(url: str) -> None:
    with pytest.raises(LedgerError):
        open_ledger(url)


async def test_concurrent_writers_keep_one_order(ledger_url: str, ledger: Ledger) -> None:
    """Two ledger objects on one database (two pool processes): sequence numbers and
    running totals stay consistent, so every window sums to exactly its size."""
    other = open_ledger(ledger_url)
    rng = random.Random(3)

    async def writer(store: Ledger, name: str) -> None:
        for b in range(15):
            await store.record_shares([
                make_share(b * 100 + i, prefix=name, account=rng.choice("xyz"),
                           difficulty=rng.choice([1.0, 2.5, 64.0]))
                for i in range(40)
            ])

    await asyncio.gather(writer(ledger, "p1"), writer(other, "p2"))
    await other.close()
    totals = await ledger.totals()
    assert (totals.shares_retained, totals.last_seq) == (1200, 1200)
    for window in (1.0, 77.7, 5000.0, 1e6):
        entries = await ledger.pplns_window(window)
        assert sum(e.work for e in entries) == min(work_units(window), totals.cum_work)
