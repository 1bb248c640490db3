"""Admin HTTP API of the fleet controller: site budgets, status, miners, audit events.

`create_admin_app(fleet, token=...)` returns an aiohttp sub-application; the pool's HTTP
server mounts it (``app.add_subapp("/api/fleet", ...)``) and `gridpool fleet run` serves it
alone. Every request needs ``Authorization: Bearer <token>`` (compared in constant time).
Errors are JSON ``{"error": reason}`` with a 4xx status:

- ``GET  /sites``                          every site's status
- ``GET  /sites/{site}``                   one site's status
- ``GET  /sites/{site}/miners``            per-miner state, power, target, flags
- ``GET  /sites/{site}/events?limit=N&since=UNIX``   the audit events kept in memory
- ``PUT  /sites/{site}/budget``  ``{"kw": 500}`` or ``{"watts": 500000}`` → the new budget
  and ``under_budget_by`` (unix time by which the site should comply)
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from miners.controller import FleetController, SiteController
from miners.errors import BudgetError, UnknownSiteError

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 4096  # a budget request is a few dozen bytes
MAX_EVENTS = 1000  # events per response
MIN_TOKEN_CHARS = 16  # shorter admin tokens are refused at start

FLEET_KEY = web.AppKey("fleet", FleetController)
TOKEN_KEY = web.AppKey("token", bytes)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_admin_app(fleet: FleetController, *, token: str) -> web.Application:
    """The admin sub-application for `fleet`, guarded by `token`."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the admin token must have at least {MIN_TOKEN_CHARS} characters")
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors, _auth])
    app[FLEET_KEY] = fleet
    app[TOKEN_KEY] = token.encode()
    app.router.add_get("/sites", _sites)
    app.router.add_get("/sites/{site}", _site)
    app.router.add_get("/sites/{site}/miners", _miners)
    app.router.add_get("/sites/{site}/events", _events)
    app.router.add_put("/sites/{site}/budget", _set_budget)
    return app


def _fail(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UnknownSiteError as err:
        return _fail(404, str(err))
    except BudgetError as err:
        return _fail(400, str(err))
    except web.HTTPRequestEntityTooLarge:
        return _fail(413, f"body larger than {MAX_BODY_BYTES} bytes")
    except web.HTTPException as err:
        if err.status >= 400:
            return _fail(err.status, err.reason)
        raise


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return _fail(401, "missing Authorization: Bearer <admin token>")
    if not hmac.compare_digest(given.strip().encode(), request.app[TOKEN_KEY]):
        log.warning("fleet_admin_bad_token", peer=request.remote)
        return _fail(401, "invalid admin token")
    return await handler(request)


def _controller(request: web.Request) -> SiteController:
    return request.app[FLEET_KEY].site(request.match_info["site"])


async def _sites(request: web.Request) -> web.Response:
    return web.json_response(request.app[FLEET_KEY].status())


async def _site(request: web.Request) -> web.Response:
    return web.json_response(_controller(request).status())


async def _miners(request: web.Request) -> web.Response:
    site = _controller(request)
    rows = []
    for miner_id, record in site.fleet.records.items():
        ctl, t = site.controls[miner_id], record.telemetry
        intent = ctl.intent
        rows.append({
            "id": miner_id,
            "worker": record.spec.worker,
            "model": record.spec.model.key,
            "state": record.state.value,
            "since": record.since,
            "power_w": record.power_w,
            "hashrate_hs": t.hashrate_hs if t else None,
            "target_w": t.power_target_w if t else None,
            "intent": None if intent is None else {
                "action": intent.action.value, "target_w": intent.target_w,
                "attempts": intent.attempts, "complied": intent.complied},
            "flagged": ctl.flagged,
            "starved": ctl.starved,
            "last_error": record.last_error or None,
        })
    return web.json_response(rows)


async def _events(request: web.Request) -> web.Response:
    site = _controller(request)
    try:
        limit = int(request.query.get("limit", "100"))
        since = float(request.query.get("since", "0"))
    except ValueError:
        return _fail(400, "limit must be an integer and since a unix time")
    if not 1 <= limit <= MAX_EVENTS:
        return _fail(400, f"limit must be between 1 and {MAX_EVENTS}")
    events = [e for e in site.events if e.at > since][-limit:]
    return web.json_response([
        {"at": e.at, "site": e.site, "kind": e.kind, "miner": e.miner, "detail": dict(e.detail)}
        for e in events
    ])


async def _set_budget(request: web.Request) -> web.Response:
    site = _controller(request)
    body = await _json_object(request)
    watts = _watts(body)
    ack = site.set_budget(watts, source=f"admin:{request.remote}")
    return web.json_response(
        {"site": ack.site, "budget_w": ack.budget_w, "under_budget_by": ack.under_budget_by})


async def _json_object(request: web.Request) -> dict[str, Any]:
    # The limit is ours: a mounted sub-app's client_max_size does not apply, the root's does.
    too_large = web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, request.content_length or 0)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        raise web.HTTPBadRequest(reason="body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason='expected a JSON object like {"kw": 500}')
    return body


def _watts(body: dict[str, Any]) -> float:
    keys = set(body) & {"kw", "watts"}
    if len(keys) != 1 or set(body) - keys:
        raise web.HTTPBadRequest(reason='give exactly one of "kw" or "watts"')
    (key,) = keys
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise web.HTTPBadRequest(reason=f'"{key}" must be a number')
    try:
        return float(value) * (1000.0 if key == "kw" else 1.0)
    except OverflowError:
        raise web.HTTPBadRequest(reason=f'"{key}" is too large') from None
