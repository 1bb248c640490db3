"""The OpenAPI 3.1 description of every HTTP route the pool serves, as data.

Served at /api/openapi.json. tests/web/test_openapi.py checks that it is a valid OpenAPI
document, that its paths are exactly the routes of the running app, and that every answer
the tests receive validates against its schema.
"""

from __future__ import annotations

import copy
from typing import Any

from pool.ledger.store import BLOCK_STATUSES
from pool.web.stats import CHART_STEPS_S, WINDOWS_S

VERSION = "1.0.0"
SECURITY_ACCOUNT = [{"accountToken": []}, {"adminToken": []}]
SECURITY_ADMIN = [{"adminToken": []}]

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_TIME = {"type": "number", "description": "unix seconds"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(props: dict[str, Any], *, required: list[str] | None = None,
         extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required,
            "additionalProperties": extra}


def _per_window(item: dict[str, Any], what: str) -> dict[str, Any]:
    schema = _obj({w: item for w in WINDOWS_S})
    schema["description"] = f"{what} per window (whole minutes, see docs/api.md)"
    return schema


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": {**_STR, "description": "machine-readable code"},
                   "message": _STR, "field": _nullable(_STR), "status": _INT}),
    "Hashrates": _per_window({**_NUM, "minimum": 0}, "hashes per second"),
    "ShareCounts": _per_window({**_INT, "minimum": 0}, "accepted shares"),
    "WorkerCounts": _obj({"online": _INT, "offline": _INT}),
    "BestShare": _obj({"difficulty": _NUM, "time": _TIME, "account": _STR, "worker": _STR},
                      required=["difficulty", "time"]),
    "Block": _obj({
        "hash": _STR, "height": _INT,
        "status": {"type": "string", "enum": list(BLOCK_STATUSES)},
        "confirmations": _INT, "reward_sats": _INT, "fees_sats": _INT, "pool_fee_sats": _INT,
        "found_time": _TIME, "updated_time": _TIME, "site": _STR,
        "simulated": {"type": "boolean",
                      "description": "found under [network] simulated_difficulty (regtest demo)"},
        "submit_results": {"type": "object", "additionalProperties": _STR,
                           "description": "node -> 'accepted' or bitcoind's reason"},
        "account": _STR, "worker": _STR, "share_id": _STR, "job_id": _STR,
    }, required=["hash", "height", "status", "confirmations", "reward_sats", "fees_sats",
                 "pool_fee_sats", "found_time", "updated_time", "site", "simulated",
                 "submit_results"]),
    "Network": _obj({"height": _nullable(_INT), "difficulty": _nullable(_NUM),
                     "simulated_difficulty": _nullable(_NUM),
                     "blocks_are_simulated": {"type": "boolean"}}),
    "Summary": _obj({
        "time": _TIME, "chain": _STR, "payout_mode": _STR,
        "hashrate_hs": _ref("Hashrates"), "shares": _ref("ShareCounts"),
        "workers": _ref("WorkerCounts"), "accounts_active": _INT,
        "sessions": _nullable(_INT), "network": _ref("Network"),
        "best_share": _nullable(_ref("BestShare")),
        "blocks": {"type": "array", "items": _ref("Block")},
    }),
    "Site": _obj({"site": _nullable(_STR), "hashrate_hs": _ref("Hashrates"),
                  "shares": _ref("ShareCounts"), "last_share_time": _nullable(_TIME),
                  "workers": _ref("WorkerCounts"), "best_share": _nullable(_ref("BestShare"))}),
    "Chart": _obj({
        "window": {"type": "string", "enum": list(WINDOWS_S)},
        "step_s": {"type": "integer", "enum": list(CHART_STEPS_S)}, "time": _TIME,
        "account": _STR,
        "points": {"type": "array", "items": _obj({"time": _INT, "hashrate_hs": _NUM,
                                                   "shares": _INT})},
    }, required=["window", "step_s", "time", "points"]),
    "TokenInfo": _obj({"issued": {"type": "boolean"}, "issued_time": _nullable(_TIME),
                       "configured": {"type": "boolean",
                                      "description": "a hash in [api.account_tokens]"}}),
    "Account": _obj({
        "account": _STR, "payout_address": _nullable(_STR), "balance_sats": _INT,
        "hashrate_hs": _ref("Hashrates"), "shares": _ref("ShareCounts"),
        "last_share_time": _nullable(_TIME), "workers": _ref("WorkerCounts"),
        "best_share": _nullable(_ref("BestShare")), "token": _ref("TokenInfo"),
    }),
    "Worker": _obj({
        "worker": _STR, "site": _nullable(_STR), "online": {"type": "boolean"},
        "connected": _nullable({"type": "boolean"}), "hashrate_hs": _ref("Hashrates"),
        "shares": _ref("ShareCounts"), "last_share_time": _nullable(_TIME),
        "best_share": _nullable(_ref("BestShare")),
    }),
    "Payout": _obj({"block_hash": _STR, "height": _INT,
                    "status": {"type": "string", "enum": list(BLOCK_STATUSES)},
                    "found_time": _TIME, "credited_sats": _INT, "paid_sats": _INT,
                    "address": _nullable(_STR), "simulated": {"type": "boolean"}}),
    "BlockPayout": _obj({"account": _STR, "credited_sats": _INT, "paid_sats": _INT,
                         "address": _nullable(_STR)}),
    "AccountRow": _obj({"account": _nullable(_STR), "hashrate_hs": _ref("Hashrates"),
                        "shares": _ref("ShareCounts"), "last_share_time": _nullable(_TIME),
                        "workers": _ref("WorkerCounts"), "balance_sats": _INT}),
    "Health": _obj({"healthy": {"type": "boolean"}, "time": _TIME,
                    "pool": {"type": "object", "description": "nodes and jobs (pool health)"},
                    "ledger": _obj({"ok": {"type": "boolean"}, "error": _nullable(_STR),
                                    "latency_ms": _NUM})}),
    "Issued": _obj({"account": _STR, "token": {**_STR, "description": "shown once; only "
                                                "its SHA-256 is stored"},
                    "issued": {"type": "boolean"}, "issued_time": _nullable(_TIME),
                    "configured": {"type": "boolean"}}),
    "WorkGateState": _obj({"worker": _STR, "starved": {"type": "boolean"},
                           "reason": _nullable(_STR), "since": _nullable(_TIME)}),
    "Revoked": _obj({"account": _STR, "revoked": {"type": "boolean"},
                     "issued": {"type": "boolean"}, "issued_time": _nullable(_TIME),
                     "configured": {"type": "boolean"}}),
}


def _param(name: str, where: str, schema: dict[str, Any], text: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": text}


ACCOUNT = _param("account", "path", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,90}$"},
                 "pool account name, or the address of a solo miner")
HASH = _param("hash", "path", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
              "block hash, display (RPC) byte order")
WINDOW = _param("window", "query", {"type": "string", "enum": list(WINDOWS_S),
                                    "default": "24h"}, "chart length")
STEP = _param("step", "query", {"type": "integer", "enum": list(CHART_STEPS_S)},
              "bucket size in seconds (default: window/288 rounded up to an allowed step)")
NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.:@+-]{1,128}$"}
GATED = _param("worker", "path", {"type": "string", "maxLength": 128},
               "full Stratum username account.site.miner (URL-encoded)")


def _json(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "a parameter is invalid (the body names the field)",
            401: "no or malformed Authorization header",
            403: "the token does not grant this", 404: "not found",
            409: "conflict", 413: "request body too large", 414: "query string too long",
            422: "a body field is invalid (the body names the field)",
            500: "the ledger failed", 503: "the ledger is unavailable"}
    return {str(c): _json(_ref("Error"), text[c]) for c in (*codes, 414, 500, 503)}


def _op(summary: str, ok: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        security: list[dict[str, list[str]]] | None = None, errors: tuple[int, ...] = (400,),
        status: int = 200, tag: str = "public", body: dict[str, Any] | None = None,
        plain: bool = False, more: dict[str, Any] | None = None) -> dict[str, Any]:
    """One operation; `plain`: not a JSON API route (no JSON error answers); `more`:
    responses that replace the defaults."""
    responses = {str(status): ok, **({} if plain else _errors(*errors)), **(more or {})}
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "parameters": params or [],
                          "responses": responses}
    if security is not None:
        op["security"] = security
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    return op


def _account_op(summary: str, ok: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return _op(summary, ok, params=[ACCOUNT, *kw.pop("params", [])], security=SECURITY_ACCOUNT,
               errors=(400, 401, 403, 404, *kw.pop("errors", ())), tag="account", **kw)


def _admin_op(summary: str, ok: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return _op(summary, ok, security=SECURITY_ADMIN,
               errors=(400, 401, 403, *kw.pop("errors", ())), tag="admin", **kw)


def _list(key: str, item: str, **more: Any) -> dict[str, Any]:
    return _obj({key: {"type": "array", "items": _ref(item)}, **more})


def _public_paths() -> dict[str, Any]:
    text = {"description": "text", "content": {"text/plain": {"schema": _STR}}}
    return {
        "/": {"get": _op("The web dashboard (HTML; assets under /static/)",
                         {"description": "HTML page", "content": {"text/html": {"schema": _STR}}},
                         plain=True, tag="dashboard")},
        "/metrics": {"get": _op("Prometheus metrics (text exposition format)", text,
                                plain=True, tag="operations")},
        "/healthz": {"get": _op("Liveness: 200 while the process answers; body has 'ready'",
                                _json({"type": "object"}, "pool status"), plain=True,
                                tag="operations")},
        "/readyz": {"get": _op("Readiness: 200 when a node is up and a job exists",
                               _json({"type": "object"}, "ready"), plain=True,
                               tag="operations", more={"503": _json(
                                   {"type": "object"}, "not ready: no node up, or no job")})},
        "/api/pool": {"get": _op("The pool process's status: nodes, current job, sessions, "
                                 "ledger, recent finds of this process",
                                 _json({"type": "object"}, "status"), plain=True,
                                 tag="operations")},
        "/api/openapi.json": {"get": _op("This document", _json({"type": "object"}, "OpenAPI"),
                                         tag="operations")},
        "/api/health": {"get": _op("Pool and ledger health (503 when either is down)",
                                   _json(_ref("Health"), "healthy"), tag="operations",
                                   more={"503": _json(_ref("Health"), "pool or ledger down")})},
        "/api/summary": {"get": _op(
            "Pool hash rate (1m/5m/1h/24h), workers, network difficulty, last blocks",
            _json(_ref("Summary"), "summary"))},
        "/api/sites": {"get": _op("Hash rate, shares, workers and best share per site",
                                  _json(_list("sites", "Site"), "sites"))},
        "/api/hashrate": {"get": _op(
            "Pool (or one site's) hash rate over time, for charts",
            _json(_ref("Chart"), "chart"),
            params=[WINDOW, STEP, _param("site", "query", NAME, "only this site")])},
        "/api/blocks": {"get": _op("Blocks found, newest first", _json(_list(
            "blocks", "Block", simulated={"type": "boolean"}), "blocks"), params=[
            _param("limit", "query", {"type": "integer", "minimum": 1, "default": 50},
                   "at most this many (up to [api] max_blocks)"),
            _param("status", "query", {"type": "string"},
                   f"comma-separated subset of {', '.join(BLOCK_STATUSES)}")])},
        "/api/blocks/{hash}": {"get": _op("One block", _json(_ref("Block"), "block"),
                                          params=[HASH], errors=(400, 404))},
    }


def _private_paths() -> dict[str, Any]:
    """Routes that need an account token or the admin token."""
    return {
        "/api/blocks/{hash}/payouts": {"get": _admin_op(
            "A block's finder and coinbase payouts per account", _json(_obj({
                "block": _ref("Block"),
                "payouts": {"type": "array", "items": _ref("BlockPayout")}}), "payouts"),
            params=[HASH], errors=(404,))},
        "/api/accounts": {"get": _admin_op("Every account with shares in 24 h or a balance",
                                           _json(_list("accounts", "AccountRow",
                                                       truncated={"type": "boolean"}),
                                                 "accounts"))},
        "/api/accounts/{account}": {"get": _account_op(
            "One account: hash rate, shares, workers, balance, best share",
            _json(_ref("Account"), "account"))},
        "/api/accounts/{account}/workers": {"get": _account_op(
            "The account's workers, online and offline",
            _json(_list("workers", "Worker", account=_STR, truncated={"type": "boolean"}),
                  "workers"))},
        "/api/accounts/{account}/hashrate": {"get": _account_op(
            "The account's (or one worker's) hash rate over time",
            _json(_ref("Chart"), "chart"),
            params=[WINDOW, STEP, _param("worker", "query", NAME, "only this worker")])},
        "/api/accounts/{account}/payouts": {"get": _account_op(
            "What the newest blocks paid or credited the account",
            _json(_list("payouts", "Payout", account=_STR, blocks_scanned=_INT), "payouts"))},
        "/api/accounts/{account}/payout-address": {"put": _account_op(
            "Set (or clear with null) the account's payout address (pplns outputs)",
            _json(_obj({"account": _STR, "payout_address": _nullable(_STR)}), "stored"),
            body=_obj({"address": _nullable(_STR)}), errors=(413, 422))},
        "/api/admin/accounts/{account}/token": {
            "post": _admin_op("Issue (or replace) the account's token; shown once",
                              _json(_ref("Issued"), "issued"), params=[ACCOUNT], status=201,
                              errors=(409,)),
            "delete": _admin_op("Revoke the account's issued token",
                                _json(_ref("Revoked"), "revoked"), params=[ACCOUNT],
                                errors=(404,)),
        },
        "/api/workers/{worker}/starve": {"post": _admin_op(
            "Work gate: send this worker no new jobs (fleet controller; docs/fleet.md)",
            _json(_ref("WorkGateState"), "gate state"), params=[GATED],
            body=_obj({"reason": _STR}, required=[]), errors=(409, 413, 422))},
        "/api/workers/{worker}/release": {"post": _admin_op(
            "Work gate: feed this worker again (a clean job at once)",
            _json(_ref("WorkGateState"), "gate state"), params=[GATED],
            body=_obj({"reason": _STR}, required=[]), errors=(413, 422))},
    }


def _paths() -> dict[str, Any]:
    return {**_public_paths(), **_private_paths()}


def build_spec() -> dict[str, Any]:
    """A fresh copy of the document (callers may not share mutable state)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "gridpool API", "version": VERSION,
            "description": "Pool statistics, blocks, accounts and payouts. Public routes "
                           "are read-only; account routes need that account's token or the "
                           "admin token (Authorization: Bearer). See docs/api.md.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "accountToken": {"type": "http", "scheme": "bearer",
                                 "description": "an account's token (issued by the admin)"},
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "the admin token (GRIDPOOL_ADMIN_TOKEN)"},
            },
        },
        "security": [],
    })
