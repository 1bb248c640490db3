"""The work gate's admin routes, called by a site controller's `miners.workgate.HttpWorkGate`:

    POST /api/workers/{worker}/starve   {"reason": "..."}   (admin token)
    POST /api/workers/{worker}/release  {} or {"reason": ""} (admin token)

`{worker}` is the full Stratum username (``account.site.miner``), URL-encoded. Both calls
are idempotent and answer the worker's gate state.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from pool.errors import ApiError, WorkGateError
from pool.web import params
from pool.web.auth import Authenticator
from pool.web.params import api_handler, json_response
from pool.workgate import PoolWorkGate, check_worker_name

log = structlog.get_logger(__name__)


class WorkGateApi:
    def __init__(self, gate: PoolWorkGate, auth: Authenticator, *, max_body_bytes: int) -> None:
        self.gate = gate
        self.auth = auth
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/workers/{worker}/starve", api_handler(self.starve)),
            web.post("/api/workers/{worker}/release", api_handler(self.release)),
        ]

    async def _request(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        """(worker, body) of an admin request; ApiError naming what is wrong."""
        params.check_query(request, ())
        self.auth.require_admin(request)
        try:
            worker = check_worker_name(request.match_info["worker"])
        except WorkGateError as err:
            raise ApiError(400, "invalid_parameter", str(err), field="worker") from None
        body: dict[str, Any] = {}
        if request.can_read_body:
            body = await params.json_body(request, self.max_body_bytes)
        extra = sorted(set(body) - {"reason"})
        if extra:
            raise ApiError(422, "unknown_field", f"unknown field {extra[0]!r}", field=extra[0])
        if not isinstance(body.get("reason", ""), str):
            raise ApiError(422, "invalid_field", "reason must be a string", field="reason")
        return worker, body

    async def starve(self, request: web.Request) -> web.Response:
        worker, body = await self._request(request)
        try:
            self.gate.starve(worker, body.get("reason", ""))
        except WorkGateError as err:
            raise ApiError(409, "gate_full", str(err), field="worker") from None
        return self._state(worker)

    async def release(self, request: web.Request) -> web.Response:
        worker, _ = await self._request(request)
        self.gate.release(worker)
        return self._state(worker)

    def _state(self, worker: str) -> web.Response:
        starved = self.gate.get(worker)
        return json_response({"worker": worker, "starved": starved is not None,
                              "reason": starved.reason if starved else None,
                              "since": starved.since if starved else None}, private=True)
