"""A share is answered `true` only once the ledger holds it. When the ledger cannot make
it durable (database locked, no journal), the miner gets error 20 "temporarily unable to
record share, retry" — and resubmitting the same share later is accepted, not a duplicate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from miners.sim.stratum_client import StratumClientError
from pool import metrics


async def test_unrecordable_share_is_refused_then_accepted_on_retry(
    devnet, pool_factory, client_factory
):
    app = await pool_factory([devnet], network={"simulated_difficulty": 1e9},
                             ledger={"journal": False, "commit_timeout_s": 0.3})
    client = await client_factory(app, "acct.siteA.rig1")
    first = client.find_solution()
    assert await client.submit(first)
    db = Path(app.config.ledger.url.removeprefix("sqlite://"))
    lock = sqlite3.connect(db, timeout=10, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    refused = metrics.SHARES_NOT_RECORDED._value.get()
    solution = client.find_solution()
    with pytest.raises(StratumClientError) as info:
        await client.submit(solution)
    assert (info.value.code, info.value.message) == (
        20, "temporarily unable to record share, retry")
    assert metrics.SHARES_NOT_RECORDED._value.get() == refused + 1
    lock.close()
    assert await client.submit(solution)  # the same share again: now durable, accepted
    share_id = f"{solution.job.job_id}:{solution.hash_le[::-1].hex()}"
    stored = await app.ledger.known_share_ids([share_id])
    assert stored == {share_id}
    stats = await app.ledger.share_stats(since=0, group_by=["account", "worker", "site"])
    assert [(s.account, s.worker, s.site, s.shares) for s in stats] == [
        ("acct", "siteA.rig1", "siteA", 2)]
