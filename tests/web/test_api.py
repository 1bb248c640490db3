"""The JSON API over a real socket on a real ledger (SQLite and PostgreSQL), filled through
the ledger's own API: the figures it derives, auth on every account and admin route, and
errors that name the field. Every answer is validated against the served OpenAPI
document (spec_check)."""

from __future__ import annotations

import itertools
import json
import math
import os
import time

import pytest
from spec_check import SPEC
from web_data import (
    ADMIN_TOKEN,
    BLOCK_A,
    BLOCK_B,
    BLOCK_C,
    PAYOUT_ADDRESS,
    SOLO,
    expected_work,
    fill,
)

from pool.ledger.store import Ledger
from pool.web import LiveInfo, NetworkInfo, PoolSources
from pool.web.settings import sha256_hex
from pool.web.stats import WINDOWS_S, window_since

ACCOUNT_ROUTES = [
    ("GET", "/api/accounts/{account}"),
    ("GET", "/api/accounts/{account}/workers"),
    ("GET", "/api/accounts/{account}/hashrate"),
    ("GET", "/api/accounts/{account}/payouts"),
    ("PUT", "/api/accounts/{account}/payout-address"),
]
ADMIN_ROUTES = [
    ("GET", "/api/accounts", {}),
    ("GET", "/api/blocks/{hash}/payouts", {"hash": BLOCK_C}),
    ("POST", "/api/admin/accounts/{account}/token", {"account": "alice"}),
    ("DELETE", "/api/admin/accounts/{account}/token", {"account": "alice"}),
]


def rate(work: int, now: float, window: str) -> float:
    return work / (now - window_since(now, WINDOWS_S[window]))


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


async def served(ledger: Ledger, make_api, **sources_kw):
    now = time.time()
    await fill(ledger, now)
    sources = PoolSources(ledger, chain="regtest", payout_mode="pplns",
                          network=lambda: NetworkInfo(height=104, difficulty=4.6e-10),
                          **sources_kw)
    client, web_api = await make_api(sources)
    return client, web_api, now


async def test_summary_and_sites_follow_the_ledger(ledger: Ledger, make_api) -> None:
    client, _, _ = await served(ledger, make_api)
    summary = (await client.call("GET", "/api/summary")).body
    t = summary["time"]
    for window, seconds in WINDOWS_S.items():
        work = expected_work(t, window_since(t, seconds))
        assert close(summary["hashrate_hs"][window], rate(work, t, window)), window
    assert summary["hashrate_hs"]["1m"] > 0
    assert summary["shares"] == {"1m": 12, "5m": 18, "1h": 21, "24h": 25}
    assert summary["workers"] == {"online": 3, "offline": 1}  # alice.rig2 is 2 h quiet
    assert summary["accounts_active"] == 3
    assert summary["sessions"] is None  # no live source given
    assert summary["network"] == {"height": 104, "difficulty": 4.6e-10,
                                  "simulated_difficulty": None, "blocks_are_simulated": False}
    assert [b["hash"] for b in summary["blocks"]] == [BLOCK_C, BLOCK_B, BLOCK_A]
    assert [b["status"] for b in summary["blocks"]] == ["submitted", "orphaned", "confirmed"]
    assert summary["blocks"][0]["submit_results"] == {"node0": "accepted", "node1": "duplicate"}
    assert "account" not in summary["blocks"][0]  # the finder is account data

    sites = {s["site"]: s for s in (await client.call("GET", "/api/sites")).body["sites"]}
    assert sites["site-a"]["workers"] == {"online": 2, "offline": 0}
    assert sites["site-b"]["workers"] == {"online": 1, "offline": 1}
    for site, s in sites.items():
        work = expected_work(t, window_since(t, 3600), site=site)
        assert math.isclose(s["hashrate_hs"]["1h"], rate(work, t, "1h"), rel_tol=1e-3)


async def test_hashrate_chart_buckets_every_share(ledger: Ledger, make_api) -> None:
    client, _, _ = await served(ledger, make_api)
    day = (await client.call("GET", "/api/hashrate")).body
    assert (day["window"], day["step_s"]) == ("24h", 300)
    assert sum(p["shares"] for p in day["points"]) == 25
    times = [p["time"] for p in day["points"]]
    assert times == sorted(times) and all(b - a == 300 for a, b in itertools.pairwise(times))
    assert day["points"][-1]["time"] <= day["time"] < day["points"][-1]["time"] + 300
    hour = (await client.call("GET", "/api/hashrate", query={"window": "1h", "step": "60",
                                                            "site": "site-a"})).body
    assert sum(p["shares"] for p in hour["points"]) == 10 + 3 + 2
    last = hour["points"][-1]
    elapsed = hour["time"] - last["time"]
    expected = expected_work(hour["time"], last["time"], site="site-a") / max(elapsed, 1)
    assert last["hashrate_hs"] == pytest.approx(expected, rel=1e-6)


async def test_blocks_list_filter_and_detail(ledger: Ledger, make_api) -> None:
    client, _, _ = await served(ledger, make_api)
    listed = (await client.call("GET", "/api/blocks", query={"limit": "2"})).body
    assert [b["hash"] for b in listed["blocks"]] == [BLOCK_C, BLOCK_B]
    assert listed["simulated"] is False
    live = (await client.call("GET", "/api/blocks",
                              query={"status": "confirmed,submitted"})).body["blocks"]
    assert {b["hash"] for b in live} == {BLOCK_A, BLOCK_C}
    one = (await client.call("GET", "/api/blocks/{hash}", hash=BLOCK_A.upper())).body
    assert (one["hash"], one["height"], one["confirmations"]) == (BLOCK_A, 101, 100)
    assert (one["reward_sats"], one["fees_sats"], one["pool_fee_sats"]) == (
        5_000_000_000, 12_345, 50_000_000)
    missing = await client.call("GET", "/api/blocks/{hash}", hash="ab" * 32)
    assert (missing.status, missing.body["error"], missing.body["field"]) == (
        404, "unknown_block", "hash")


async def test_account_routes_need_that_accounts_token(ledger: Ledger, make_api) -> None:
    client, web_api, _ = await served(ledger, make_api)
    alice = (await client.call("POST", "/api/admin/accounts/{account}/token",
                               token=ADMIN_TOKEN, account="alice")).body["token"]
    bob = (await client.call("POST", "/api/admin/accounts/{account}/token",
                             token=ADMIN_TOKEN, account="bob")).body["token"]
    for method, route in ACCOUNT_ROUTES:
        body = {"address": None} if method == "PUT" else None
        none = await client.call(method, route, account="alice", json=body)
        assert none.status == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
        basic = await client.call(method, route, account="alice", json=body,
                                  headers={"Authorization": "Basic YWxpY2U6eA=="})
        assert (basic.status, basic.body["field"]) == (401, "Authorization")
        other = await client.call(method, route, account="alice", token=bob, json=body)
        assert other.status == 403 and "alice" in other.body["message"]
        wrong = await client.call(method, route, account="alice", token="gpa_not-a-token",
                                  json=body)
        assert wrong.status == 403
        unknown = await client.call(method, route, account="nobody", token=alice, json=body)
        assert (unknown.status, unknown.body["error"]) == (404, "unknown_account")
        bad = await client.call(method, route, account="no%20such", token=alice, json=body)
        assert (bad.status, bad.body["field"]) == (400, "account")
        if method == "GET":
            assert (await client.call(method, route, account="alice", token=alice)).status == 200
            assert (await client.call(method, route, account="alice",
                                      token=ADMIN_TOKEN)).status == 200
    assert web_api.tokens.check("alice", alice) and not web_api.tokens.check("bob", alice)


async def test_account_figures(ledger: Ledger, make_api) -> None:
    client, web_api, _ = await served(
        ledger, make_api, live=lambda: LiveInfo(sessions=4, workers=frozenset(
            {("alice", "rig1"), ("alice", "spare")})))
    web_api.sources.best.observe("alice", "rig1", "site-a", 1234.5, 1.0)
    acct = (await client.call("GET", "/api/accounts/{account}", token=ADMIN_TOKEN,
                              account="alice")).body
    t = time.time()
    assert acct["payout_address"] == PAYOUT_ADDRESS
    assert acct["balance_sats"] == 0  # every credit was paid in its coinbase
    assert acct["shares"]["24h"] == 17 and acct["shares"]["5m"] == 10
    assert acct["hashrate_hs"]["24h"] == pytest.approx(
        expected_work(t, window_since(t, 86400), account="alice") / 86400, rel=1e-3)
    assert acct["best_share"] == {"difficulty": 1234.5, "time": 1.0, "account": "alice",
                                  "worker": "rig1"}
    assert acct["workers"] == {"online": 2, "offline": 1}  # spare: connected, no share yet
    workers = {w["worker"]: w for w in (await client.call(
        "GET", "/api/accounts/{account}/workers", token=ADMIN_TOKEN,
        account="alice")).body["workers"]}
    assert workers.keys() == {"rig1", "rig2", "spare"}
    assert (workers["rig1"]["online"], workers["rig1"]["connected"]) == (True, True)
    assert (workers["rig2"]["online"], workers["rig2"]["site"]) == (False, "site-b")
    assert workers["spare"]["shares"]["24h"] == 0 and workers["spare"]["online"]
    bob = (await client.call("GET", "/api/accounts/{account}", token=ADMIN_TOKEN,
                             account="bob")).body
    assert bob["balance_sats"] == 1_950_000_000 + 950_000_000  # block B's credit reverted
    payouts = (await client.call("GET", "/api/accounts/{account}/payouts", token=ADMIN_TOKEN,
                                 account="bob")).body["payouts"]
    assert [(p["block_hash"], p["credited_sats"], p["paid_sats"], p["status"])
            for p in payouts] == [(BLOCK_C, 950_000_000, 0, "submitted"),
                                  (BLOCK_B, 2_950_000_000, 0, "orphaned"),
                                  (BLOCK_A, 1_950_000_000, 0, "confirmed")]
    chart = (await client.call("GET", "/api/accounts/{account}/hashrate", token=ADMIN_TOKEN,
                               account="alice", query={"worker": "rig2"})).body
    assert sum(p["shares"] for p in chart["points"]) == 4
    solo = (await client.call("GET", "/api/accounts/{account}", token=ADMIN_TOKEN,
                              account=SOLO)).body
    assert solo["shares"]["24h"] == 6
    summary = (await client.call("GET", "/api/summary")).body
    assert summary["sessions"] == 4 and summary["workers"] == {"online": 4, "offline": 1}


async def test_admin_routes_and_token_lifecycle(ledger: Ledger, make_api, tmp_path) -> None:
    client, web_api, _ = await served(ledger, make_api)
    issued = await client.call("POST", "/api/admin/accounts/{account}/token",
                               token=ADMIN_TOKEN, account="alice")
    assert issued.status == 201 and issued.body["token"].startswith("gpa_")
    assert issued.headers["Cache-Control"] == "no-store"
    first = issued.body["token"]
    stored = web_api.tokens.path.read_text()
    assert first not in stored and sha256_hex(first) in stored  # only the hash is kept
    assert os.stat(web_api.tokens.path).st_mode & 0o777 == 0o600
    for method, route, path in ADMIN_ROUTES:
        assert (await client.call(method, route, **path)).status == 401
        assert (await client.call(method, route, token=first, **path)).status == 403
    again = (await client.call("POST", "/api/admin/accounts/{account}/token", token=ADMIN_TOKEN,
                               account="alice")).body["token"]
    assert (await client.call("GET", "/api/accounts/{account}", token=first,
                              account="alice")).status == 403  # replaced
    assert (await client.call("GET", "/api/accounts/{account}", token=again,
                              account="alice")).status == 200
    accounts = (await client.call("GET", "/api/accounts", token=ADMIN_TOKEN)).body
    assert [a["account"] for a in accounts["accounts"]] == sorted(["alice", "bob", SOLO])
    payouts = (await client.call("GET", "/api/blocks/{hash}/payouts", token=ADMIN_TOKEN,
                                 hash=BLOCK_A)).body
    assert payouts["block"]["account"] == "alice"
    assert {p["account"]: p["paid_sats"] for p in payouts["payouts"]} == {
        "alice": 3_000_000_000, "bob": 0}
    gone = await client.call("DELETE", "/api/admin/accounts/{account}/token", token=ADMIN_TOKEN,
                             account="alice")
    assert gone.body["revoked"] and not gone.body["issued"]
    assert (await client.call("GET", "/api/accounts/{account}", token=again,
                              account="alice")).status == 403
    twice = await client.call("DELETE", "/api/admin/accounts/{account}/token",
                              token=ADMIN_TOKEN, account="alice")
    assert (twice.status, twice.body["error"]) == (404, "no_token")
    # A new account (no shares yet) exists once the admin gives it a token.
    carol = (await client.call("POST", "/api/admin/accounts/{account}/token",
                               token=ADMIN_TOKEN, account="carol")).body["token"]
    fresh = await client.call("GET", "/api/accounts/{account}", token=carol, account="carol")
    assert fresh.status == 200 and fresh.body["shares"]["24h"] == 0


async def test_tokens_survive_a_restart_and_config_tokens_work(
    ledger: Ledger, make_api, tmp_path
) -> None:
    client, web_api, _ = await served(ledger, make_api)
    token = (await client.call("POST", "/api/admin/accounts/{account}/token", token=ADMIN_TOKEN,
                               account="bob")).body["token"]
    configured = "bob-config-token-0123456789"
    again, _ = await make_api(web_api.sources, tokens_file=web_api.tokens.path,
                              account_tokens={"alice": sha256_hex(configured)})
    assert (await again.call("GET", "/api/accounts/{account}", token=token,
                             account="bob")).status == 200
    acct = await again.call("GET", "/api/accounts/{account}", token=configured, account="alice")
    assert acct.status == 200 and acct.body["token"]["configured"]


async def test_admin_api_off_without_an_admin_token(ledger: Ledger, make_api) -> None:
    await fill(ledger, time.time())
    client, _ = await make_api(PoolSources(ledger), admin_token_sha256=None)
    answer = await client.call("POST", "/api/admin/accounts/{account}/token",
                               token=ADMIN_TOKEN, account="alice")
    assert (answer.status, answer.body["error"]) == (403, "admin_disabled")


async def test_payout_address_is_validated_and_stored(ledger: Ledger, make_api) -> None:
    client, _, _ = await served(ledger, make_api)
    token = (await client.call("POST", "/api/admin/accounts/{account}/token", token=ADMIN_TOKEN,
                               account="bob")).body["token"]
    route = "/api/accounts/{account}/payout-address"
    ok = await client.call("PUT", route, token=token, account="bob",
                           json={"address": PAYOUT_ADDRESS})
    assert ok.body == {"account": "bob", "payout_address": PAYOUT_ADDRESS}
    assert (await ledger.get_account("bob")).payout_address == PAYOUT_ADDRESS
    view = await client.call("GET", "/api/accounts/{account}", token=token, account="bob")
    assert view.body["payout_address"] == PAYOUT_ADDRESS
    cases = [
        ({"json": {"address": "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"}}, 422, "address"),  # main
        ({"json": {"address": 5}}, 422, "address"),
        ({"json": {}}, 422, "address"),
        ({"json": {"address": None, "label": "x"}}, 422, "label"),
        ({"json": ["address"]}, 400, "body"),
        ({"data": b"{not json"}, 400, "body"),
        ({"data": json.dumps({"address": "x" * 5000}).encode()}, 413, "body"),
    ]
    for kwargs, status, field in cases:
        answer = await client.call("PUT", route, token=token, account="bob", **kwargs)
        assert (answer.status, answer.body["field"]) == (status, field), kwargs
    cleared = await client.call("PUT", route, token=token, account="bob", json={"address": None})
    assert cleared.body["payout_address"] is None
    assert (await ledger.get_account("bob")).payout_address is None


@pytest.mark.parametrize(("route", "query", "field"), [
    ("/api/blocks", {"limit": "0"}, "limit"),
    ("/api/blocks", {"limit": "ten"}, "limit"),
    ("/api/blocks", {"limit": "501"}, "limit"),
    ("/api/blocks", {"status": "lost"}, "status"),
    ("/api/blocks", {"sort": "height"}, "sort"),
    ("/api/summary", {"verbose": "1"}, "verbose"),
    ("/api/hashrate", {"window": "7d"}, "window"),
    ("/api/hashrate", {"step": "61"}, "step"),
    ("/api/hashrate", {"window": "24h", "step": "60"}, "step"),
    ("/api/hashrate", {"site": "bad site"}, "site"),
    ("/api/health", {"x": "1"}, "x"),
])
async def test_bad_query_parameters_name_the_field(
    ledger: Ledger, make_api, route: str, query: dict[str, str], field: str
) -> None:
    client, _, _ = await served(ledger, make_api)
    answer = await client.call("GET", route, query=query)
    assert (answer.status, answer.body["error"][:7], answer.body["field"]) == (
        400, "unknown" if field in ("sort", "verbose", "x") else "invalid", field)


async def test_bad_block_hash_is_a_400(ledger: Ledger, make_api) -> None:
    client, _, _ = await served(ledger, make_api)
    answer = await client.call("GET", "/api/blocks/{hash}", hash="not-a-hash")
    assert (answer.status, answer.body["field"]) == (400, "hash")


async def test_simulated_blocks_are_labelled(ledger: Ledger, make_api) -> None:
    client, _, _ = await served(ledger, make_api, simulated_difficulty=0.25)
    summary = (await client.call("GET", "/api/summary")).body
    assert summary["network"]["blocks_are_simulated"] is True
    assert summary["network"]["simulated_difficulty"] == 0.25
    assert all(b["simulated"] for b in summary["blocks"])
    blocks = (await client.call("GET", "/api/blocks")).body
    assert blocks["simulated"] and all(b["simulated"] for b in blocks["blocks"])
    one = (await client.call("GET", "/api/blocks/{hash}", hash=BLOCK_C)).body
    assert one["simulated"] is True


async def test_health_reports_the_ledger(ledger: Ledger, make_api) -> None:
    state = {"healthy": True}
    client, _, _ = await served(ledger, make_api, health=lambda: dict(state))
    ok = await client.call("GET", "/api/health")
    assert ok.status == 200 and ok.body["ledger"]["ok"] and ok.body["healthy"]
    state["healthy"] = False
    assert (await client.call("GET", "/api/health")).status == 503
    state["healthy"] = True
    await ledger.close()
    down = await client.call("GET", "/api/health")
    assert down.status == 503 and not down.body["ledger"]["ok"] and down.body["ledger"]["error"]
    failed = await client.call("GET", "/api/summary")
    assert (failed.status, failed.body["error"]) == (500, "ledger_error")


async def test_openapi_document_is_served(ledger: Ledger, make_api) -> None:
    client, _, _ = await served(ledger, make_api)
    answer = await client.call("GET", "/api/openapi.json")
    assert answer.body == SPEC
