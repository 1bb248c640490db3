"""Request validation for the JSON API: every bad value is an ApiError naming its field.

Query strings are strict: a parameter a route does not take is a 400, so a typo
(`?widnow=1h`) is not silently ignored.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import structlog
from aiohttp import web

from pool.errors import ApiError, LedgerError, LedgerUnavailableError
from pool.ledger.store import BLOCK_STATUSES
from pool.web.settings import ACCOUNT_RE, SOLO_ACCOUNT_RE
from pool.web.stats import CHART_STEPS_S, WINDOWS_S

log = structlog.get_logger(__name__)

HASH_RE = re.compile(r"[0-9a-f]{64}")
NAME_RE = re.compile(r"[A-Za-z0-9_.:@+-]{1,128}")  # site and worker filters
MAX_CHART_POINTS = 1441  # buckets in one chart answer
MAX_QUERY_CHARS = 2048  # a longer query string is refused before it is parsed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, *, status: int = 200, private: bool = False) -> web.Response:
    headers = {"Cache-Control": "no-store" if private else "no-cache",
               "X-Content-Type-Options": "nosniff"}
    return web.json_response(body, status=status, headers=headers)


def error_response(err: ApiError) -> web.Response:
    body = {"error": err.code, "message": err.message, "field": err.field, "status": err.status}
    response = json_response(body, status=err.status, private=True)
    if err.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="gridpool"'
    return response


def api_handler(handler: Handler) -> Handler:
    """Turn ApiError and ledger failures into JSON error answers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if len(request.query_string) > MAX_QUERY_CHARS:
                raise ApiError(414, "query_too_long", f"query over {MAX_QUERY_CHARS} characters")
            return await handler(request)
        except ApiError as err:
            return error_response(err)
        except LedgerUnavailableError as err:
            log.warning("api_ledger_unavailable", path=request.path, error=str(err))
            return error_response(ApiError(503, "ledger_unavailable",
                                           "the ledger database is unavailable; retry later"))
        except LedgerError as err:
            log.error("api_ledger_error", path=request.path, error=str(err))
            return error_response(ApiError(500, "ledger_error", "the ledger failed the query"))

    return wrapped


def check_query(request: web.Request, allowed: Collection[str]) -> None:
    for name in request.query:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ApiError(400, "unknown_parameter",
                           f"unknown query parameter {name!r} (this route takes: {known})",
                           field=name)
    for name in set(request.query):
        if len(request.query.getall(name)) > 1:
            raise ApiError(400, "repeated_parameter", f"{name!r} given more than once",
                           field=name)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer", field=name)
    value = int(text)
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}",
                       field=name)
    return value


def query_name(request: web.Request, name: str) -> str | None:
    text = request.query.get(name)
    if text is not None and not NAME_RE.fullmatch(text):
        raise ApiError(400, "invalid_parameter",
                       f"{name} must be 1-128 of A-Z a-z 0-9 _ . : @ + -", field=name)
    return text


def query_window(request: web.Request) -> tuple[str, int]:
    """(window, step_s) of a chart request; the step defaults to 1/288 of the window,
    rounded up to an allowed bucket."""
    window = request.query.get("window", "24h")
    if window not in WINDOWS_S:
        raise ApiError(400, "invalid_parameter",
                       f"window must be one of {', '.join(WINDOWS_S)}", field="window")
    default_step = next(s for s in CHART_STEPS_S if s * 288 >= WINDOWS_S[window])
    step = query_int(request, "step", default_step, CHART_STEPS_S[0], CHART_STEPS_S[-1])
    if step not in CHART_STEPS_S:
        raise ApiError(400, "invalid_parameter",
                       f"step must be one of {', '.join(map(str, CHART_STEPS_S))} (seconds)",
                       field="step")
    if WINDOWS_S[window] // step + 2 > MAX_CHART_POINTS:
        raise ApiError(400, "invalid_parameter",
                       f"step too small for window {window} (at most {MAX_CHART_POINTS} points)",
                       field="step")
    return window, step


def query_statuses(request: web.Request) -> list[str] | None:
    text = request.query.get("status")
    if text is None:
        return None
    statuses = [s for s in text.split(",") if s]
    bad = [s for s in statuses if s not in BLOCK_STATUSES]
    if bad or not statuses:
        raise ApiError(400, "invalid_parameter",
                       f"status must be a comma-separated list of {', '.join(BLOCK_STATUSES)}",
                       field="status")
    return statuses


def path_account(request: web.Request) -> str:
    account = request.match_info["account"]
    if not (ACCOUNT_RE.fullmatch(account) or SOLO_ACCOUNT_RE.fullmatch(account)):
        raise ApiError(400, "invalid_parameter",
                       "account must be an account name (1-64 of A-Z a-z 0-9 _ -) or an address",
                       field="account")
    return account


def path_hash(request: web.Request) -> str:
    hash_hex = request.match_info["hash"].lower()
    if not HASH_RE.fullmatch(hash_hex):
        raise ApiError(400, "invalid_parameter", "hash must be 64 hex digits (display order)",
                       field="hash")
    return hash_hex


async def json_body(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, read only up to `max_bytes`."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "body_too_large", f"body over {max_bytes} bytes", field="body")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, "body_too_large", f"body over {max_bytes} bytes", field="body")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, "invalid_json", f"body is not JSON: {err}", field="body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object", field="body")
    return body
