"""A small pool history written through the ledger's own API, and the figures the API
must derive from it."""

from __future__ import annotations

from dataclasses import dataclass

from pool.ledger import FoundBlock, PayoutRow, ShareRecord
from pool.ledger.store import CONFIRMED, ORPHANED, SUBMITTED, Ledger

ADMIN_TOKEN = "admin-token-for-tests-0123456789"  # GRIDPOOL_ADMIN_TOKEN of the tests
SOLO = "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9"  # a solo miner's account is its address
PAYOUT_ADDRESS = "bcrt1p39a4s4vdcw9kqa8w2t0rp7aj8kfxyw7mce5sk5d70x6wnnmpvt7skf2kxy"
BLOCK_A = "00" * 8 + "aa" * 24  # oldest
BLOCK_B = "00" * 8 + "bb" * 24
BLOCK_C = "00" * 8 + "cc" * 24  # newest

# (account, worker, site, difficulty, count, age in seconds)
SHARES = [
    ("alice", "rig1", "site-a", 2.0, 10, 5),  # online, every window
    ("alice", "rig1", "site-a", 4.0, 3, 1800),  # 30 min ago: 1h and 24h only
    ("alice", "rig2", "site-b", 1.0, 4, 7200),  # 2 h ago: offline, 24h only
    ("bob", "w1", "site-a", 8.0, 2, 20),  # online
    (SOLO, "bitaxe", "site-b", 0.5, 6, 200),  # online (under 300 s), 5m window
]


@dataclass(frozen=True)
class Filled:
    now: float


def shares_at(now: float) -> list[ShareRecord]:
    out = []
    for account, worker, site, difficulty, count, age in SHARES:
        for i in range(count):
            n = len(out)
            out.append(ShareRecord(
                share_id=f"job{n}:{n:064x}", account=account, worker=worker, site=site,
                difficulty=difficulty, network_difficulty=1e6, time=now - age - i * 0.01,
                job_id=f"job{n}", hash_hex=f"{n:064x}", is_block=False,
                solo=account == SOLO))
    return out


def expected_work(now: float, since: float, **match: str) -> int:
    """Work units (= hashes) of the SHARES at or after minute `since` matching `match`."""
    total = 0
    for account, worker, site, difficulty, count, age in SHARES:
        row = {"account": account, "worker": worker, "site": site}
        if any(row[k] != v for k, v in match.items()):
            continue
        for i in range(count):
            t = now - age - i * 0.01
            if int(t // 60) * 60 >= since:
                total += int(difficulty * 2**32)
    return total


def found(hash_hex: str, height: int, at: float, account: str = "alice") -> FoundBlock:
    return FoundBlock(hash_hex=hash_hex, height=height, account=account, worker="rig1",
                      site="site-a", reward_sats=5_000_000_000, fees_sats=12_345,
                      pool_fee_sats=50_000_000, found_time=at, share_id=f"s-{height}",
                      job_id=f"j-{height}")


async def fill(ledger: Ledger, now: float) -> Filled:
    await ledger.record_shares(shares_at(now))
    await ledger.set_payout_address("alice", PAYOUT_ADDRESS)
    await ledger.record_block_found(found(BLOCK_A, 101, now - 3000), [
        PayoutRow("alice", 3_000_000_000, 3_000_000_000, PAYOUT_ADDRESS),
        PayoutRow("bob", 1_950_000_000, 0, "")])
    await ledger.record_block_found(found(BLOCK_B, 102, now - 2000, "bob"), [
        PayoutRow("alice", 2_000_000_000, 2_000_000_000, PAYOUT_ADDRESS),
        PayoutRow("bob", 2_950_000_000, 0, "")])
    await ledger.record_block_found(found(BLOCK_C, 103, now - 1000), [
        PayoutRow("alice", 4_000_000_000, 4_000_000_000, PAYOUT_ADDRESS),
        PayoutRow("bob", 950_000_000, 0, "")])
    await ledger.set_block_submit_result(BLOCK_C, "node0", None)
    await ledger.set_block_submit_result(BLOCK_C, "node1", "duplicate")
    await ledger.set_block_status(BLOCK_A, CONFIRMED, 100)
    await ledger.set_block_status(BLOCK_B, ORPHANED, 0)
    await ledger.set_block_status(BLOCK_C, SUBMITTED, 1)
    return Filled(now)
