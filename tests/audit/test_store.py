"""The audit store on SQLite and PostgreSQL (fresh schema per test): appends build a
linear chain, and every kind of tampering done with raw SQL on the real database is
reported at its first broken row."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from audit.audit_helpers import T0, body, fill, raw_sql
from hypothesis import given, settings
from hypothesis import strategies as st

import miners.audit.store as store_module
from miners.audit.chain import GENESIS_HASH, canonical_body, make_record, row_hash_hex
from miners.audit.errors import AuditError, AuditStoreError
from miners.audit.store import AuditStore, open_audit_store
from miners.grid.store import open_grid_store
from pool.ledger import open_ledger


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[AuditStore]:
    s = open_audit_store(ledger_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def test_appends_build_a_chain(store: AuditStore) -> None:
    a = await fill(store, "A", 12)
    b = await fill(store, "B", 5)
    assert [r.seq for r in a] == list(range(1, 13))
    assert a[0].prev_hash == GENESIS_HASH
    assert all(r.prev_hash == p.row_hash for p, r in itertools.pairwise(a))
    assert b[0].prev_hash == GENESIS_HASH  # each site is its own chain
    assert await store.heads() == {"A": (12, a[-1].row_hash), "B": (5, b[-1].row_hash)}
    assert await store.sites() == ["A", "B"]
    assert await store.rows() == a + b  # ordered by site, seq; bodies parsed back
    assert a[3].body == body(4)
    checks = await store.verify()
    assert [(c.site, c.ok, c.rows, c.head_seq, c.head_hash) for c in checks] == [
        ("A", True, 12, 12, a[-1].row_hash), ("B", True, 5, 5, b[-1].row_hash)]
    assert [c.site for c in await store.verify("B")] == ["B"]


async def test_row_queries(store: AuditStore) -> None:
    a = await fill(store, "A", 12)
    await fill(store, "B", 3)
    assert await store.rows(site="A", since=T0 + 900 * 2, until=T0 + 900 * 5) == a[2:5]
    assert await store.rows(site="A", kind="compliance") == [a[3], a[7], a[11]]
    assert await store.rows(site="A", after_seq=10) == a[10:]
    assert await store.rows(site="A", limit=2) == a[:2]
    assert await store.rows(site="nowhere") == []
    with pytest.raises(AuditError, match="kind"):
        await store.rows(kind="bogus")


async def test_append_many_and_bad_rows(store: AuditStore) -> None:
    records = await store.append_many([("A", "event", 1.0, {"x": 1}), ("B", "event", 2.0, {}),
                                       ("A", "interval", 3.0, {"x": (2, 3)})])
    assert [(r.site, r.seq) for r in records] == [("A", 1), ("B", 1), ("A", 2)]
    assert records[2].body == {"x": [2, 3]} and records[2].prev_hash == records[0].row_hash
    assert await store.append_many([]) == []
    for bad in [("A", "bogus", 4.0, {}), ("A", "event", float("nan"), {}),
                ("A", "event", 4.0, {"w": float("inf")}), ("", "event", 4.0, {})]:
        with pytest.raises(AuditError):
            await store.append_many([("A", "event", 4.0, {"fine": 1}), bad])
    assert (await store.heads())["A"][0] == 2  # the good row of a refused batch is not kept
    assert all(c.ok for c in await store.verify())


async def test_migrate_is_idempotent_beside_the_ledger_and_grid(ledger_url: str) -> None:
    ledger = open_ledger(ledger_url)
    grid = open_grid_store(ledger_url)
    audit = open_audit_store(ledger_url)
    try:
        for s in (ledger, grid, audit, audit):
            await s.migrate()
        await fill(audit, "A", 2)
        assert (await raw_sql(ledger_url, "SELECT max(version) FROM audit_schema_migrations")
                ) == [(1,)]
    finally:
        for s in (ledger, grid, audit):
            await s.close()


# -- tampering with the database -----------------------------------------------------------

ROW_7 = "WHERE site = 'A' AND seq = 7"


def _forged_row_7(a: list) -> tuple:
    forged = make_record("A", 7, "interval", a[6].time, {"kwh": 0.0}, a[5].row_hash)
    return (forged.site, forged.seq, forged.kind, forged.time, canonical_body(forged.body),
            forged.prev_hash, forged.row_hash)


TAMPERING: dict[str, tuple[Callable[[list], list[tuple[str, tuple]]], int, str]] = {
    "body value": (lambda a: [(f"UPDATE audit_rows SET body = ? {ROW_7}",
                               (canonical_body({**a[6].body, "kwh": 0.5}),))],
                   7, "row 7: row_hash does not match its contents"),
    "time": (lambda a: [(f"UPDATE audit_rows SET time = time + 1 {ROW_7}", ())],
             7, "row 7: row_hash does not match its contents"),
    "kind": (lambda a: [(f"UPDATE audit_rows SET kind = 'compliance' {ROW_7}", ())],
             7, "row 7: row_hash does not match its contents"),
    "prev_hash": (lambda a: [(f"UPDATE audit_rows SET prev_hash = ? {ROW_7}", ("1" * 64,))],
                  7, "row 7: row_hash does not match its contents"),
    "row_hash": (lambda a: [(f"UPDATE audit_rows SET row_hash = ? {ROW_7}", ("2" * 64,))],
                 7, "row 7: row_hash does not match its contents"),
    "body not json": (lambda a: [(f"UPDATE audit_rows SET body = '{{oops' {ROW_7}", ())],
                      7, "row 7: body is not a JSON object"),
    "middle row deleted": (lambda a: [(f"DELETE FROM audit_rows {ROW_7}", ())],
                           7, "row 7 missing (seq jumps 6→8)"),
    "last row deleted": (lambda a: [("DELETE FROM audit_rows WHERE site = 'A' AND seq = 12",
                                     ())],
                         12, "chain ends at row 11 but the recorded head is row 12"),
    "rows swapped": (lambda a: [
        ("UPDATE audit_rows SET seq = 1000 WHERE site = 'A' AND seq = 4", ()),
        ("UPDATE audit_rows SET seq = 4 WHERE site = 'A' AND seq = 5", ()),
        ("UPDATE audit_rows SET seq = 5 WHERE site = 'A' AND seq = 1000", ())],
        4, "row 4: row_hash does not match its contents"),
    "forged row": (lambda a: [(f"DELETE FROM audit_rows {ROW_7}", ()),
                              ("INSERT INTO audit_rows VALUES (?, ?, ?, ?, ?, ?, ?)",
                               _forged_row_7(a))],
                   8, "row 8: prev_hash is not row 7's hash"),
    "forged tail row": (lambda a: [("INSERT INTO audit_rows VALUES (?, ?, ?, ?, ?, ?, ?)", (
        "A", 13, "event", 1.0, "{}", a[11].row_hash,
        row_hash_hex("A", 13, "event", 1.0, {}, a[11].row_hash)))],
        13, "row 13: past the recorded head (row 12)"),
    "head deleted": (lambda a: [("DELETE FROM audit_heads WHERE site = 'A'", ())],
                     1, "row 1: past the recorded head (no head recorded)"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_is_reported_at_the_first_broken_row(
        store: AuditStore, ledger_url: str, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "VERIFY_PAGE_ROWS", 5)  # several pages per chain
    a = await fill(store, "A", 12)
    b = await fill(store, "B", 5)
    statements, bad_seq, reason = TAMPERING[case]
    for sql, args in statements(a):
        await raw_sql(ledger_url, sql, *args)
    check_a, check_b = await store.verify()
    assert (check_a.site, check_a.ok, check_a.first_bad_seq, check_a.reason) == (
        "A", False, bad_seq, reason)
    assert check_a.head_seq == bad_seq - 1  # the rows before it still hold
    assert check_b.ok and check_b.head_hash == b[-1].row_hash  # B is its own chain
    assert (await store.verify("A"))[0].reason == reason


async def test_a_consistent_rewrite_is_caught_by_a_checkpoint(
        store: AuditStore, ledger_url: str) -> None:
    a = await fill(store, "A", 12)
    # the tamperer cuts the last row and moves the recorded head back too
    await raw_sql(ledger_url, "DELETE FROM audit_rows WHERE site = 'A' AND seq = 12")
    await raw_sql(ledger_url, "UPDATE audit_heads SET seq = 11, row_hash = ? WHERE site = 'A'",
                  a[10].row_hash)
    assert (await store.verify())[0].ok  # consistent with itself
    check = (await store.verify(checkpoints={"A": (12, a[11].row_hash)}))[0]
    assert check.reason == "chain ends at row 11 but the given head is row 12"
    assert (await store.verify(checkpoints={"A": (10, a[9].row_hash)}))[0].ok
    # every row of a checkpointed site gone
    await raw_sql(ledger_url, "DELETE FROM audit_rows WHERE site = 'A'")
    await raw_sql(ledger_url, "DELETE FROM audit_heads WHERE site = 'A'")
    check = (await store.verify(checkpoints={"A": (3, a[2].row_hash)}))[0]
    assert check.site == "A" and check.reason == ("chain ends with no rows but the given "
                                                  "head is row 3")


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_appends_keep_one_linear_chain(store: AuditStore) -> None:
    async def writer(n: int) -> None:
        for i in range(5):
            await store.append("A", "event", T0 + n, {"writer": n, "i": i})

    async with asyncio.TaskGroup() as tg:
        for n in range(20):
            tg.create_task(writer(n))
    check = (await store.verify())[0]
    assert check.ok and check.rows == 100 and check.head_seq == 100


async def test_two_stores_on_one_database_never_fork(ledger_url: str) -> None:
    stores = [open_audit_store(ledger_url) for _ in range(2)]  # two connections / pools
    for s in stores:
        await s.migrate()
    try:
        async def writer(s: AuditStore, n: int) -> None:
            for i in range(10):
                await s.append_many([("A", "event", T0, {"w": n, "i": i}),
                                     ("B", "interval", T0, {"w": n, "i": i})])

        await asyncio.gather(*(writer(s, n) for n in range(4) for s in stores))
        checks = await stores[0].verify()
        assert [(c.site, c.ok, c.head_seq) for c in checks] == [("A", True, 80),
                                                                 ("B", True, 80)]
        rows = await stores[1].rows(site="A")
        assert len({r.prev_hash for r in rows}) == 80  # no two rows share a parent
    finally:
        for s in stores:
            await s.close()


async def test_closed_store_and_bad_urls(ledger_url: str) -> None:
    s = open_audit_store(ledger_url)
    await s.migrate()
    await s.close()
    with pytest.raises(AuditStoreError, match="closed"):
        await s.append("A", "event", 0.0, {})
    for url in ("mysql://x", "sqlite://host/x.db", "sqlite:///"):
        with pytest.raises(AuditStoreError):
            open_audit_store(url)


# -- property: what the store gives back re-hashes to the stored hash ----------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12)


async def test_random_bodies_round_trip_through_the_store(store: AuditStore) -> None:
    loop = asyncio.get_running_loop()

    def on_loop(coro: Awaitable) -> object:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    @settings(max_examples=60, deadline=None)
    @given(st.dictionaries(st.text(), json_values, max_size=5),
           st.floats(min_value=0, max_value=4e9))
    def check(body: dict, when: float) -> None:
        record = on_loop(store.append("P", "event", when, body))
        (back,) = on_loop(store.rows(site="P", after_seq=record.seq - 1, limit=1))
        assert back == record
        assert json.dumps(back.body, sort_keys=True) == json.dumps(
            json.loads(canonical_body(body)), sort_keys=True)
        assert row_hash_hex(back.site, back.seq, back.kind, back.time, back.body,
                            back.prev_hash) == record.row_hash

    await asyncio.to_thread(check)
    assert (await store.verify("P"))[0].ok
