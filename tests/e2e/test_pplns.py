"""PPLNS coinbase payouts on the devnet, end to end: accounts mine real shares over real
Stratum, the pool finds blocks, and each block's coinbase (read back with getblock) pays
every account exactly what the documented rule gives, recomputed here from the ledger's raw
shares (not with pool.payouts); a dust-level account is carried and paid by a later block,
an account without an address is carried; the devnet accepts both blocks."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from stratum.harness import POOL_ADDRESS

from miners.sim.stratum_client import Solution, StratumClient
from pool.bitcoin.address import address_to_script_pubkey, script_pubkey_to_address
from pool.bitcoin.block import Block
from pool.bitcoin.hashes import hash160, sha256
from pool.bitcoin.script import p2pkh_script, p2sh_script, p2wsh_script
from pool.bitcoin.target import difficulty_to_target, hash_le_to_int
from pool.node.rpc import RPCClient

SIM = 1e-3  # simulated network difficulty: a block is ~4.3 M hashes
MULTIPLE = 0.5  # N = 0.5 x SIM = 5e-4 difficulty
FEE_BPS = 1000  # 10 %: the fee leaves room in the next coinbase for carol's carried balance
DUST_SATS = 300_000_000  # 3 BTC: carol's ~1.8 BTC credit is carried once, then paid
ADDRESSES = {
    "alice": script_pubkey_to_address(p2pkh_script(hash160(b"alice")), "regtest"),
    "bob": script_pubkey_to_address(p2sh_script(hash160(b"bob")), "regtest"),
    "carol": script_pubkey_to_address(p2wsh_script(sha256(b"carol")), "regtest"),
}  # dave mines too, without a payout address
# (username, share difficulty, shares), oldest first: alice's oldest shares fall out of N.
MINERS = [("alice.siteA.rig1", 1e-5, 30), ("carol.siteA.rig2", 1e-6, 20),
          ("dave.rig1", 1e-6, 5), ("bob.siteB.rig1", 2e-5, 20)]
BLOCK_TARGET = difficulty_to_target(SIM)


def units(difficulty: float) -> int:
    """docs/ledger.md: a share's credit in work units of 2**-32 difficulty."""
    return max(1, round(difficulty * 2**32))


def window_from_ledger(db: Path) -> dict[str, int]:
    """The newest shares back until their work reaches N, the oldest counted partially."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT account, difficulty FROM shares WHERE solo = 0"
                        " ORDER BY seq DESC").fetchall()
    conn.close()
    remaining, work = units(MULTIPLE * SIM), {}
    for account, difficulty in rows:
        take = min(units(difficulty), remaining)
        work[account] = work.get(account, 0) + take
        remaining -= take
        if remaining == 0:
            break
    return work


def expected_coinbase(value: int, window: dict[str, int], balances: dict[str, int]) -> dict:
    """docs/ledger.md "Coinbase payouts": fee, floor credits, remainder to the most work,
    then credit + balance paid when the account has an address and reaches dust."""
    fee = value * FEE_BPS // 10_000
    d, total = value - fee, sum(window.values())
    credits = {a: d * w // total for a, w in window.items()}
    top = min(window, key=lambda a: (-window[a], a))
    credits[top] += d - sum(credits.values())
    owed = {a: credits.get(a, 0) + balances.get(a, 0) for a in set(credits) | set(balances)}
    paid: dict[str, int] = {}  # largest first, as long as the outputs fit coinbasevalue
    for account in sorted(owed, key=lambda a: (-owed[a], a)):
        amount = owed[account]
        if account in ADDRESSES and amount >= DUST_SATS and sum(paid.values()) + amount <= value:
            paid[account] = amount
    carried = {a: v for a, v in owed.items() if a not in paid and v}
    return {"credits": credits, "paid": paid, "carried": carried,
            "pool": value - sum(paid.values())}


async def share(client: StratumClient) -> Solution:
    """A share that is not also a block (the test decides when blocks happen)."""
    while True:
        solution = client.find_solution()
        if hash_le_to_int(solution.hash_le) > BLOCK_TARGET:
            return solution


async def getblock(devnet: Any, hash_hex: str) -> Block:
    rpc = RPCClient(devnet.rpc_url, cookie_path=devnet.cookie_path)
    try:
        return Block.parse(bytes.fromhex(await rpc.call("getblock", hash_hex, 0)))
    finally:
        await rpc.close()


async def find_block(app: Any, client: StratumClient, devnet: Any) -> tuple[str, int, dict]:
    """Refresh the job (its plan reads the window now), wait for it, and mine a block on it:
    (block hash, coinbasevalue, window the plan saw)."""
    job = await app.jobs.refresh()
    await client.wait_for(lambda: client.job is not None and client.job.job_id == job.job_id)
    window = window_from_ledger(ledger_db(app))
    solution = client.find_solution(difficulty=SIM)
    assert await client.submit(solution)
    hash_hex = solution.hash_le[::-1].hex()
    assert devnet.chain.tip.hash_hex == hash_hex  # accepted by Bitcoin Core's consensus
    return hash_hex, job.template.coinbase_value_sats, window


def ledger_db(app: Any) -> Path:
    return Path(app.config.ledger.url.removeprefix("sqlite://"))


def check_coinbase(block: Block, value: int, expected: dict) -> None:
    assert len(block.txs[0].serialize(with_witness=False)) <= 700  # max_coinbase_bytes
    outputs = [o for o in block.txs[0].outputs if o.value_sats]  # minus the commitment
    assert sum(o.value_sats for o in block.txs[0].outputs) == value
    paid = {o.script_pubkey: o.value_sats for o in outputs}
    for account, amount in expected["paid"].items():
        assert paid.pop(address_to_script_pubkey(ADDRESSES[account], "regtest")) == amount
    assert paid == {address_to_script_pubkey(POOL_ADDRESS, "regtest"): expected["pool"]}


async def test_pplns_blocks_pay_the_window_and_carry_dust(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network={"simulated_difficulty": SIM}, payout={
        "mode": "pplns", "address": POOL_ADDRESS, "fee_bps": FEE_BPS,
        "window_multiple": MULTIPLE, "dust_sats": DUST_SATS,
        "account": [{"name": n, "address": a} for n, a in ADDRESSES.items()],
    })
    clients = {}
    for username, difficulty, count in MINERS:
        client = await client_factory(app, username, suggest_difficulty=difficulty)
        await client.wait_for(lambda c=client, d=difficulty: c.difficulty == d)
        for _ in range(count):
            assert await client.submit(await share(client))
        clients[username.split(".")[0]] = client

    hash1, value1, window1 = await find_block(app, clients["alice"], devnet)
    first = expected_coinbase(value1, window1, {})
    assert set(window1) == {"alice", "bob", "carol", "dave"}
    assert set(first["paid"]) == {"alice", "bob"} and set(first["carried"]) == {"carol", "dave"}
    check_coinbase(await getblock(devnet, hash1), value1, first)
    rows = {r.account: r for r in await app.ledger.block_payouts(hash1)}
    assert {a: (r.credited_sats, r.paid_sats) for a, r in rows.items()} == {
        a: (first["credits"][a], first["paid"].get(a, 0)) for a in first["credits"]}
    for account in ("carol", "dave"):
        assert (await app.ledger.get_account(account)).balance_sats == first["credits"][account]
    block = await app.ledger.get_block(hash1)
    assert (block.account, block.site, block.reward_sats) == ("alice", "siteA", value1)
    assert block.pool_fee_sats == value1 * FEE_BPS // 10_000
    assert block.submit_results == {"devnet0": None}

    # The next block pays carol her carried balance with her new credit; dave still waits.
    hash2, value2, window2 = await find_block(app, clients["bob"], devnet)
    second = expected_coinbase(value2, window2, first["carried"])
    assert second["paid"]["carol"] == second["credits"]["carol"] + first["credits"]["carol"]
    assert "dave" in second["carried"]
    check_coinbase(await getblock(devnet, hash2), value2, second)
    assert (await app.ledger.get_account("carol")).balance_sats == 0
    assert (await app.ledger.get_account("dave")).balance_sats == second["carried"]["dave"]
    stats = {s.site: s.shares for s in await app.ledger.share_stats(since=0, group_by=["site"])}
    assert stats == {"siteA": 51, "siteB": 21, "": 5}  # 30 + 20 + 1 block, 20 + 1 block, 5
