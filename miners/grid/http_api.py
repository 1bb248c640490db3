"""The grid operator's HTTP command API (an aiohttp sub-application, mounted at /grid).

Every route but the OpenAPI document needs a signed request (miners.grid.hmac_auth). The
body is read with a size bound and a deadline *before* the signature is checked (the
signature covers it), and nothing reaches the timeline unless the signature, timestamp
and nonce are good and the key's role may command. Refusals are JSON
``{"error": <status text>, "reason": ..., "field": ...}``: 401 bad or missing signature or
stale timestamp, 403 role or site not allowed, 404 unknown site or event, 409 replayed
nonce or reused event id, 413 body too large, 422 bad body (the field named), 503 store
or nonce store unavailable. docs/grid-api.md is the operator's guide; `openapi.py` the spec.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from miners.grid.errors import GridError, GridForbiddenError, GridRequestError
from miners.grid.hmac_auth import HEADER_KEY, Credential, Verifier
from miners.grid.openapi import openapi_spec
from miners.grid.service import Ack, GridService
from miners.grid.settings import HttpApiSettings
from miners.grid.store import AuditRow
from miners.grid.timeline import GridEvent

log = structlog.get_logger(__name__)

MOUNT = "/grid"  # where `mount` puts the sub-app on the main HTTP app
BODY_TIMEOUT_S = 10.0  # deadline for reading a request body
MAX_HORIZON_S = 366 * 86400.0  # events may not start or end further ahead than this
_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_POST_FIELDS = ("id", "limit_kw", "start", "end", "duration_s", "ramp_down_kw_per_min",
                "ramp_up_kw_per_min")
SERVICE: web.AppKey[GridService] = web.AppKey("grid_service", GridService)
VERIFIER: web.AppKey[Verifier] = web.AppKey("grid_verifier", Verifier)
SETTINGS: web.AppKey[HttpApiSettings] = web.AppKey("grid_http_settings", HttpApiSettings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("grid_clock")
REJECTS: web.AppKey[dict[str, float]] = web.AppKey("grid_rejects", dict)
KEY: web.RequestKey[Credential] = web.RequestKey("grid_key", Credential)
BODY: web.RequestKey[bytes] = web.RequestKey("grid_body", bytes)


def grid_api_app(service: GridService, verifier: Verifier, settings: HttpApiSettings, *,
                 clock: Callable[[], float] = time.time) -> web.Application:
    """The sub-app; mount it with `app.add_subapp(MOUNT, grid_api_app(...))`."""
    app = web.Application(middlewares=[_auth_middleware])
    app[SERVICE], app[VERIFIER], app[SETTINGS], app[CLOCK] = service, verifier, settings, clock
    app[REJECTS] = {"window": 0.0, "count": 0.0, "dropped": 0.0}
    app.router.add_get("/v1/openapi.json", _openapi)
    app.router.add_get("/v1/sites", _list_sites)
    app.router.add_post("/v1/heartbeat", _heartbeat)
    app.router.add_get("/v1/sites/{site}/timeline", _get_timeline)
    app.router.add_post("/v1/sites/{site}/curtailments", _post_curtailment)
    app.router.add_get("/v1/sites/{site}/curtailments/{event_id}", _get_curtailment)
    app.router.add_delete("/v1/sites/{site}/curtailments/{event_id}", _delete_curtailment)
    log.info("grid_http_api", skew_s=verifier.skew_s, max_nonces=verifier.nonces.max_nonces,
             max_body_bytes=settings.max_body_bytes, keys=len(verifier.keys))
    return app


def mount(root: web.Application, sub: web.Application) -> None:
    root.add_subapp(MOUNT, sub)


async def start_listener(sub: web.Application, settings: HttpApiSettings,
                         host: str, port: int) -> web.AppRunner:
    """The API on its own listener (TLS, and mTLS when ``client_ca`` is set)."""
    root = web.Application()
    mount(root, sub)
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.client_ca is not None:
            context.load_verify_locations(settings.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    return runner


# -- authentication ----------------------------------------------------------------------


@web.middleware
async def _auth_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                           ) -> web.StreamResponse:
    app = request.app
    service, clock = app[SERVICE], app[CLOCK]
    if request.match_info.http_exception is not None or request.path.endswith("/openapi.json"):
        return await handler(request)  # 404/405 from the router, or the public spec
    try:
        body = await _read_body(request, app[SETTINGS].max_body_bytes)
        credential = app[VERIFIER].verify(request.headers, request.method, request.raw_path,
                                          body, now=clock(), peer_cert_sha256=_peer_cert(request))
    except GridError as err:
        _audit_reject(request, err)
        return _error(err)
    except _BodyTooLarge as err:
        _audit_reject(request, err)
        return _error(err)
    request[KEY], request[BODY] = credential, body
    if credential.can_command:
        service.touch(s for s in service.sites if credential.covers(s))
    try:
        return await handler(request)
    except GridError as err:
        _audit_reject(request, err)
        return _error(err)


class _BodyTooLarge(GridError):
    status = 413


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused unread past `limit` bytes, within BODY_TIMEOUT_S."""
    too_large = _BodyTooLarge(f"body larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.content.iter_chunked(16 * 1024):
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise GridRequestError("body", f"not received within {BODY_TIMEOUT_S:g} s") from None
    return bytes(body)


def _peer_cert(request: web.Request) -> str | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return hashlib.sha256(der).hexdigest() if der else None


def _audit_reject(request: web.Request, err: GridError) -> None:
    """Audit a refusal, at most ``rejects_audited_per_min`` a minute (the rest counted)."""
    app = request.app
    now, counter = app[CLOCK](), app[REJECTS]
    if now - counter["window"] >= 60:
        if counter["dropped"]:
            log.warning("grid_rejects_not_audited", count=int(counter["dropped"]))
        counter.update(window=now, count=0, dropped=0)
    if counter["count"] >= app[SETTINGS].rejects_audited_per_min:
        counter["dropped"] += 1
        return
    counter["count"] += 1
    site = request.match_info.get("site", "")
    detail = {"status": err.status, "reason": str(err), "method": request.method,
              "path": request.raw_path[:512], "remote": request.remote or ""}
    app[SERVICE].audit_nowait(AuditRow(now, site[:64], "rejected", "http",
                                       request.headers.get(HEADER_KEY, "")[:64], detail=detail))


def _error(err: GridError) -> web.Response:
    body: dict[str, Any] = {"error": _STATUS_TEXT.get(err.status, "error"), "reason": str(err)}
    if isinstance(err, GridRequestError):
        body["field"] = err.field
    return web.json_response(body, status=err.status)


_STATUS_TEXT = {401: "unauthorized", 403: "forbidden", 404: "not found", 409: "conflict",
                413: "too large", 422: "unprocessable", 503: "unavailable", 500: "error"}


def _site(request: web.Request, *, command: bool) -> str:
    """The path's site, checked against the service and the key."""
    service, key = request.app[SERVICE], _key(request)
    site = request.match_info["site"]
    service.state(site)  # GridSiteError (404) for an unknown site
    if not key.covers(site):
        raise GridForbiddenError(f"key {key.key_id} does not cover site {site}")
    if command and not key.can_command:
        raise GridForbiddenError(f"key {key.key_id} ({key.role.value}) cannot change budgets")
    return site


def _key(request: web.Request) -> Credential:
    return request[KEY]


def _received(request: web.Request) -> dict[str, Any]:
    return {"method": request.method, "path": request.raw_path[:512],
            "body_sha256": hashlib.sha256(request[BODY]).hexdigest(),
            "remote": request.remote or ""}


# -- handlers ----------------------------------------------------------------------------


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())


async def _list_sites(request: web.Request) -> web.Response:
    service, key = request.app[SERVICE], _key(request)
    now = request.app[CLOCK]()
    sites = [{"site": s, "budget_kw": service.budget(s, now).watts / 1000}
             for s in service.sites if key.covers(s)]
    return web.json_response({"now": now, "sites": sites})


async def _heartbeat(request: web.Request) -> web.Response:
    key = _key(request)
    if not key.can_command:
        raise GridForbiddenError(f"key {key.key_id} ({key.role.value}) is not the grid's")
    service = request.app[SERVICE]
    sites = [s for s in service.sites if key.covers(s)]
    service.audit_nowait(AuditRow(request.app[CLOCK](), "", "received", "http", key.key_id,
                                  detail={**_received(request), "sites": sites}))
    return web.json_response({"now": request.app[CLOCK](), "sites": sites})


async def _get_timeline(request: web.Request) -> web.Response:
    site = _site(request, command=False)
    return web.json_response(timeline_view(request.app[SERVICE], site, request.app[CLOCK]()))


async def _get_curtailment(request: web.Request) -> web.Response:
    site = _site(request, command=False)
    service = request.app[SERVICE]
    compliance = service.compliance(site, request.match_info["event_id"])
    event = service.timeline(site).get(compliance.event_id)
    assert event is not None
    return web.json_response({**event_view(event), "compliance": compliance.as_dict()})


async def _post_curtailment(request: web.Request) -> web.Response:
    site = _site(request, command=True)
    now, key = request.app[CLOCK](), _key(request)
    service = request.app[SERVICE]
    event = parse_curtailment(request[BODY], site=site, now=now, issued_by=key.key_id,
                              skew_s=request.app[VERIFIER].skew_s,
                              known=service.timeline(site).get)
    ack = await service.submit(event, channel="http", actor=key.key_id,
                               received=_received(request))
    return web.json_response(ack_view(ack, now), status=200 if ack.duplicate else 201)


async def _delete_curtailment(request: web.Request) -> web.Response:
    site = _site(request, command=True)
    now, key = request.app[CLOCK](), _key(request)
    ack = await request.app[SERVICE].cancel(site, request.match_info["event_id"],
                                            channel="http", actor=key.key_id,
                                            received=_received(request))
    return web.json_response(ack_view(ack, now))


# -- bodies ------------------------------------------------------------------------------


def parse_curtailment(body: bytes, *, site: str, now: float, issued_by: str, skew_s: float,
                      known: Callable[[str], GridEvent | None] = lambda _: None) -> GridEvent:
    """A POSTed curtailment as a GridEvent (GridRequestError naming the bad field). A
    command resent with a known id and no start keeps the original start, so resending
    "500 kW for 30 min from now" is recognised as the same command."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise GridRequestError("body", "not a JSON object") from None
    if not isinstance(raw, dict):
        raise GridRequestError("body", "not a JSON object")
    for name in raw:
        if name not in _POST_FIELDS:
            raise GridRequestError(name, "unknown field")
    event_id = raw.get("id", str(uuid.uuid4()))
    if not isinstance(event_id, str) or not _ID_RE.fullmatch(event_id):
        raise GridRequestError("id", f"must match {_ID_RE.pattern}")
    limit_kw = _number(raw, "limit_kw", required=True, minimum=0)
    previous = known(event_id)
    if raw.get("start") is not None:
        start = _time(raw["start"], "start")
    else:
        start = now if previous is None else previous.start
    if start < now - skew_s and (previous is None or start != previous.start):
        raise GridRequestError("start", "is in the past")
    if start > now + MAX_HORIZON_S:
        raise GridRequestError("start", "is too far ahead")
    end = _end(raw, start, now)
    down = _number(raw, "ramp_down_kw_per_min", minimum=0, exclusive=True)
    up = _number(raw, "ramp_up_kw_per_min", minimum=0, exclusive=True)
    return GridEvent(event_id, site, limit_kw * 1000, start, end,
                     None if down is None else down * 1000 / 60,
                     None if up is None else up * 1000 / 60,
                     source="http", issued_by=issued_by, created=now)


def _end(raw: dict[str, Any], start: float, now: float) -> float | None:
    if raw.get("end") is not None and raw.get("duration_s") is not None:
        raise GridRequestError("duration_s", "give end or duration_s, not both")
    if raw.get("duration_s") is not None:
        duration = _number(raw, "duration_s", minimum=0, exclusive=True)
        assert duration is not None
        if duration > MAX_HORIZON_S:
            raise GridRequestError("duration_s", "is too long")
        return start + duration
    if raw.get("end") is None:
        return None
    end = _time(raw["end"], "end")
    if end <= start or end <= now:
        raise GridRequestError("end", "must be after start and in the future")
    if end > now + 2 * MAX_HORIZON_S:
        raise GridRequestError("end", "is too far ahead")
    return end


def _number(raw: dict[str, Any], name: str, *, required: bool = False, minimum: float,
            exclusive: bool = False) -> float | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise GridRequestError(name, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise GridRequestError(name, "must be a finite number")
    if value < minimum or (exclusive and value == minimum):
        raise GridRequestError(name, f"must be {'>' if exclusive else '>='} {minimum:g}")
    return float(value)


def _finite(value: int | float) -> bool:
    """A JSON number that is a finite float (math.isfinite raises on ints past 1e308)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _time(value: Any, name: str) -> float:
    """Unix seconds, or an RFC 3339 time with a UTC offset."""
    if isinstance(value, int | float) and not isinstance(value, bool) and _finite(value):
        return float(value)
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise GridRequestError(name, "must be unix seconds or an RFC 3339 time with an offset")


# -- views -------------------------------------------------------------------------------


def event_view(event: GridEvent) -> dict[str, Any]:
    def per_min(rate: float | None) -> float | None:
        return None if rate is None else round(rate * 60 / 1000, 9)

    return {
        "id": event.event_id, "site": event.site, "limit_kw": event.limit_w / 1000,
        "start": event.start, "end": event.end, "cancelled": event.cancelled,
        "ramp_down_kw_per_min": per_min(event.ramp_down_w_per_s),
        "ramp_up_kw_per_min": per_min(event.ramp_up_w_per_s),
        "source": event.source, "issued_by": event.issued_by, "received": event.created,
        "under_limit_by": event.promised,
    }


def ack_view(ack: Ack, now: float) -> dict[str, Any]:
    return {
        "event": event_view(ack.event),
        "accepted": True,
        "duplicate": ack.duplicate,
        "budget_kw": ack.budget.watts / 1000,
        "under_limit_by": ack.under_limit_by,
        "under_limit_in_s": round(max(0.0, ack.under_limit_by - now), 3),
    }


def timeline_view(service: GridService, site: str, now: float) -> dict[str, Any]:
    state = service.state(site)
    timeline, limits = state.timeline, state.timeline.limits
    budget = service.budget(site, now)
    power = service.power(site)
    schedule = [{"at": t, "budget_kw": timeline.planned_at(t) / 1000}
                for t in [now, *timeline.breakpoints(now)][:64]]
    events = []
    samples = list(state.samples)
    for event in timeline.events:
        compliance = service.compliance(site, event.event_id, samples).as_dict()
        events.append({**event_view(event), "compliance": compliance})
    return {
        "site": site, "now": now, "budget_kw": budget.watts / 1000,
        "binding": list(budget.binding), "silent": budget.silent,
        "base_kw": limits.base_w / 1000, "safe_kw": limits.safe_w / 1000,
        "silence_s": limits.silence_s, "last_contact": state.last_contact,
        "power_kw": None if power is None else power[1] / 1000,
        "power_at": None if power is None else power[0],
        "schedule": schedule, "events": events,
    }
