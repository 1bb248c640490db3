"""The signed HTTP command API: acceptance, every rejection, and that nothing refused ever
changes a budget. A recording sink stands in for the fleet (the fleet itself is driven in
test_e2e_http.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from grid.grid_helpers import GridHarness

from miners.grid.errors import GridBusyError, GridReplayError
from miners.grid.hmac_auth import (
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    NonceStore,
    Verifier,
    canonical_request,
    load_keys,
    sign,
)
from miners.grid.settings import HttpApiSettings
from pool.errors import ConfigError

CURTAIL = {"limit_kw": 500, "duration_s": 600}


async def events_stored(h: GridHarness) -> int:
    return len(await h.store.load_events(0))


async def assert_unchanged(h: GridHarness) -> None:
    """Only the two start-up budgets (sites A and B) were ever sent; nothing stored."""
    assert len(h.sink.calls) == 2, "a refused request changed a budget"
    assert await events_stored(h) == 0
    assert h.service.budget("A").watts == 1_000_000


async def test_accepted_curtailment_says_when_the_site_will_be_under(
        harness: GridHarness) -> None:
    h = harness
    before = time.time()
    status, body = await h.request("POST", "/v1/sites/A/curtailments",
                                   {**CURTAIL, "id": "cmd-1"})
    assert status == 201, body
    assert body["accepted"] and not body["duplicate"]
    assert body["budget_kw"] == 500
    assert h.sink.budget("A") == 500_000
    # no ramp: under the limit one fleet compliance time (the sink says 2 s) from now
    assert before + 2 <= body["under_limit_by"] <= time.time() + 2
    assert body["event"]["id"] == "cmd-1" and body["event"]["limit_kw"] == 500
    # resending the same command is acknowledged again, with the same promise
    status, again = await h.request("POST", "/v1/sites/A/curtailments", {**CURTAIL, "id": "cmd-1"})
    assert status == 200 and again["duplicate"]
    assert again["under_limit_by"] == body["under_limit_by"]
    await h.service.flush()
    kinds = [r.kind for r in await h.store.audit(site="A") if r.event_id == "cmd-1"]
    assert kinds[:3] == ["received", "applied", "ack"]


async def test_ramp_down_moves_the_promise(harness: GridHarness) -> None:
    status, body = await harness.request("POST", "/v1/sites/A/curtailments",
                                         {"limit_kw": 400, "ramp_down_kw_per_min": 1200})
    assert status == 201
    # 600 kW at 1,200 kW/min = 30 s of ramp, then 2 s for the fleet
    assert body["under_limit_in_s"] == pytest.approx(32, abs=0.5)
    assert body["budget_kw"] > 990


async def test_cancel_restores_the_base(harness: GridHarness) -> None:
    h = harness
    await h.request("POST", "/v1/sites/A/curtailments", {"limit_kw": 100, "id": "c"})
    status, cancelled = await h.request("DELETE", "/v1/sites/A/curtailments/c")
    assert status == 200, cancelled
    assert cancelled["event"]["cancelled"] is not None
    assert cancelled["budget_kw"] == 1000 and h.sink.budget("A") == 1_000_000
    assert "under_limit_by" in cancelled
    status, _ = await h.request("DELETE", "/v1/sites/A/curtailments/nope")
    assert status == 404


async def test_get_timeline_and_compliance(harness: GridHarness) -> None:
    h = harness
    now = time.time()
    await h.request("POST", "/v1/sites/A/curtailments",
                    {"limit_kw": 600, "id": "e", "start": now + 100, "end": now + 200})
    status, tl = await h.request("GET", "/v1/sites/A/timeline", key="siteop")
    assert status == 200
    assert tl["budget_kw"] == 1000 and tl["base_kw"] == 1000 and tl["safe_kw"] == 400
    assert [e["id"] for e in tl["events"]] == ["e"]
    assert tl["events"][0]["compliance"]["status"] == "scheduled"
    assert [s["budget_kw"] for s in tl["schedule"]] == [1000, 600, 1000]
    status, one = await h.request("GET", "/v1/sites/A/curtailments/e", key="admin")
    assert status == 200 and one["compliance"]["status"] == "scheduled"
    status, sites = await h.request("GET", "/v1/sites", key="tso-a")
    assert [s["site"] for s in sites["sites"]] == ["A"]


async def test_openapi_is_public(harness: GridHarness) -> None:
    status, spec = await harness.request("GET", "/v1/openapi.json", sign=False)
    assert status == 200 and spec["openapi"].startswith("3.")
    assert "/grid/v1/sites/{site}/curtailments" in spec["paths"]


def test_openapi_lists_every_route() -> None:
    from aiohttp import web

    from miners.grid.http_api import grid_api_app
    from miners.grid.openapi import openapi_spec

    spec = openapi_spec()["paths"]
    app = grid_api_app(None, Verifier({}, NonceStore(1), 30, 0), HttpApiSettings())  # type: ignore[arg-type]
    routes = {(r.method.lower(), "/grid" + r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD"}
    assert routes == {(m, p) for p, ops in spec.items() for m in ops if m != "parameters"}
    assert isinstance(app, web.Application) and len(routes) == 7


# -- rejections ------------------------------------------------------------------------------


async def test_missing_signature_is_401(harness: GridHarness) -> None:
    status, body = await harness.request("POST", "/v1/sites/A/curtailments", CURTAIL,
                                         sign=False)
    assert status == 401 and body["reason"] == "missing signature headers"
    await assert_unchanged(harness)


async def test_bad_signature_is_401(harness: GridHarness) -> None:
    bad = {HEADER_SIGNATURE: "0" * 64}
    status, body = await harness.request("POST", "/v1/sites/A/curtailments", CURTAIL,
                                         headers=bad)
    assert status == 401 and body["reason"] == "bad signature"
    await assert_unchanged(harness)


async def test_body_changed_after_signing_is_401(harness: GridHarness) -> None:
    h = harness
    from miners.grid.hmac_auth import signed_headers

    headers = signed_headers("tso", h.secrets["tso"], "POST", "/grid/v1/sites/A/curtailments",
                             b'{"limit_kw": 900}', now=time.time())
    status, body = await h.request("POST", "/v1/sites/A/curtailments", {"limit_kw": 0},
                                   sign=False, headers=headers)
    assert status == 401 and body["reason"] == "bad signature"
    await assert_unchanged(h)


async def test_unknown_key_and_malformed_headers_are_401(harness: GridHarness) -> None:
    h = harness
    h.secrets["intruder"] = b"x" * 32
    status, body = await h.request("POST", "/v1/sites/A/curtailments", CURTAIL, key="intruder")
    assert status == 401 and body["reason"] == "unknown key"
    status, body = await h.request("POST", "/v1/sites/A/curtailments", CURTAIL,
                                   headers={HEADER_TIMESTAMP: "yesterday"})
    assert status == 401 and body["reason"] == "malformed signature headers"
    await assert_unchanged(h)


@pytest.mark.parametrize("offset_s", [-31, 31, -3600])
async def test_stale_timestamp_is_401(harness: GridHarness, offset_s: float) -> None:
    status, body = await harness.request("POST", "/v1/sites/A/curtailments", CURTAIL,
                                         now=time.time() + offset_s)
    assert status == 401 and body["reason"].startswith("stale timestamp")
    await assert_unchanged(harness)


async def test_signed_before_the_server_started_is_401(harness: GridHarness) -> None:
    # inside the skew window, but before start: it may be a replay from before a restart
    status, body = await harness.request("POST", "/v1/sites/A/curtailments", CURTAIL,
                                         now=harness.service.started_at - 1)
    assert status == 401 and body["reason"].startswith("stale timestamp")
    await assert_unchanged(harness)


async def test_replayed_nonce_is_409_and_changes_nothing(harness: GridHarness) -> None:
    h = harness
    now = time.time()
    status, first = await h.request("POST", "/v1/sites/A/curtailments", {"limit_kw": 700},
                                    now=now, nonce="n" * 20)
    assert status == 201
    calls = len(h.sink.calls)
    status, body = await h.request("POST", "/v1/sites/A/curtailments", {"limit_kw": 700},
                                   now=now, nonce="n" * 20)
    assert status == 409 and "nonce" in body["reason"]
    assert len(h.sink.calls) == calls and await events_stored(h) == 1
    # a cancel replayed after the event was re-posted must not cancel it either
    event_id = first["event"]["id"]
    status, _ = await h.request("DELETE", f"/v1/sites/A/curtailments/{event_id}",
                                now=now, nonce="d" * 20)
    assert status == 200
    status, _ = await h.request("DELETE", f"/v1/sites/A/curtailments/{event_id}",
                                now=now, nonce="d" * 20)
    assert status == 409


async def test_unknown_site_is_404(harness: GridHarness) -> None:
    status, body = await harness.request("POST", "/v1/sites/Z/curtailments", CURTAIL)
    assert status == 404 and "Z" in body["reason"]
    await assert_unchanged(harness)


@pytest.mark.parametrize(("body", "field"), [
    ({}, "limit_kw"),
    ({"limit_kw": -1}, "limit_kw"),
    ({"limit_kw": "500"}, "limit_kw"),
    ({"limit_kw": True}, "limit_kw"),
    ({"limit_kw": 500, "kw": 1}, "kw"),
    ({"limit_kw": 500, "start": "tomorrow"}, "start"),
    ({"limit_kw": 500, "start": "2026-01-01T00:00:00"}, "start"),  # no offset
    ({"limit_kw": 500, "start": 1.0}, "start"),  # in the past
    ({"limit_kw": 500, "end": 1.0}, "end"),
    ({"limit_kw": 500, "end": 1e12, "duration_s": 60}, "duration_s"),
    ({"limit_kw": 500, "duration_s": 0}, "duration_s"),
    ({"limit_kw": 500, "ramp_down_kw_per_min": 0}, "ramp_down_kw_per_min"),
    ({"limit_kw": 500, "ramp_up_kw_per_min": "fast"}, "ramp_up_kw_per_min"),
    ({"limit_kw": 500, "id": "has space"}, "id"),
    ([500], "body"),
])
async def test_bad_body_is_422_naming_the_field(harness: GridHarness, body: object,
                                                field: str) -> None:
    status, reply = await harness.request("POST", "/v1/sites/A/curtailments", body)
    assert status == 422 and reply["field"] == field, reply
    await assert_unchanged(harness)


async def test_not_json_is_422(harness: GridHarness) -> None:
    status, reply = await harness.request("POST", "/v1/sites/A/curtailments", raw=b"\xff{")
    assert status == 422 and reply["field"] == "body"


async def test_body_too_large_is_413(harness: GridHarness) -> None:
    status, _ = await harness.request("POST", "/v1/sites/A/curtailments", raw=b" " * 5000)
    assert status == 413
    await assert_unchanged(harness)


async def test_site_operator_and_admin_can_never_change_a_budget(harness: GridHarness) -> None:
    h = harness
    for key in ("siteop", "admin"):
        status, body = await h.request("POST", "/v1/sites/A/curtailments", CURTAIL, key=key)
        assert status == 403 and "cannot change budgets" in body["reason"]
        status, _ = await h.request("POST", "/v1/heartbeat", key=key)
        assert status == 403
    await assert_unchanged(h)
    status, _ = await h.request("POST", "/v1/sites/A/curtailments", {"limit_kw": 1, "id": "x"})
    assert status == 201
    status, _ = await h.request("DELETE", "/v1/sites/A/curtailments/x", key="siteop")
    assert status == 403
    assert h.service.budget("A").watts == 1000


async def test_key_limited_to_other_sites_is_403(harness: GridHarness) -> None:
    status, body = await harness.request("POST", "/v1/sites/B/curtailments", CURTAIL,
                                         key="tso-a")
    assert status == 403 and "does not cover" in body["reason"]
    status, _ = await harness.request("GET", "/v1/sites/B/timeline", key="siteop")
    assert status == 403
    assert len(harness.sink.calls) == 2  # the two start-up budgets only


async def test_event_id_reused_with_other_terms_is_409(harness: GridHarness) -> None:
    h = harness
    await h.request("POST", "/v1/sites/A/curtailments", {"limit_kw": 500, "id": "same"})
    status, body = await h.request("POST", "/v1/sites/A/curtailments",
                                   {"limit_kw": 100, "id": "same"})
    assert status == 409 and "other terms" in body["reason"]
    assert h.service.budget("A").watts == 500_000


async def test_refusals_are_audited(harness: GridHarness) -> None:
    h = harness
    await h.request("POST", "/v1/sites/A/curtailments", CURTAIL, sign=False)
    await h.request("POST", "/v1/sites/Z/curtailments", CURTAIL)
    await h.service.flush()
    rejected = [r for r in await h.store.audit() if r.kind == "rejected"]
    assert [r.detail["status"] for r in rejected] == [401, 404]
    assert rejected[1].actor == "tso"


# -- the pieces ------------------------------------------------------------------------------


def test_canonical_request_is_what_the_docs_say() -> None:
    text = canonical_request("post", "/grid/v1/sites/A/curtailments?x=1", "1767225600.250",
                             "abcdefghijklmnop", b"{}").decode()
    assert text == ("GRIDPOOL-HMAC-SHA256\nPOST\n/grid/v1/sites/A/curtailments?x=1\n"
                    "1767225600.250\nabcdefghijklmnop\n"
                    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    # RFC 4231 test case 2 checks the HMAC itself
    import hashlib
    import hmac
    assert hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert sign(b"k" * 16, "GET", "/", "1", "n" * 16, b"") == hmac.new(
        b"k" * 16, canonical_request("GET", "/", "1", "n" * 16, b""), hashlib.sha256).hexdigest()


def test_nonce_store_is_bounded_and_forgets_only_expired_nonces() -> None:
    store = NonceStore(max_nonces=2)
    store.remember("k", "a" * 16, expires=100, now=0)
    store.remember("k", "b" * 16, expires=50, now=0)
    with pytest.raises(GridReplayError):
        store.remember("k", "a" * 16, expires=100, now=10)
    with pytest.raises(GridBusyError):
        store.remember("k", "c" * 16, expires=100, now=10)
    store.remember("k", "c" * 16, expires=120, now=60)  # "b" expired at 50
    assert len(store) == 2
    store.remember("other", "a" * 16, expires=200, now=100)  # "a" expired; nonces are per key
    with pytest.raises(GridReplayError):
        store.remember("k", "c" * 16, expires=200, now=100)


def test_keys_file_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('[[key]]\nid = "x"\nrole = "god"\nsecret_env = "X"\n')
    with pytest.raises(ConfigError, match=r"key\[0\]\.role"):
        load_keys(path)
    path.write_text('[[key]]\nid = "x"\nrole = "grid"\nsecret_env = "X"\n')
    with pytest.raises(ConfigError, match="secret_env"):
        load_keys(path, environ={})
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        load_keys(path, environ={"X": "abcd"})
    keys = load_keys(path, environ={"X": "ab" * 32})
    assert keys["x"].role.value == "grid" and keys["x"].sites is None
    assert "secret" not in repr(keys["x"])
