"""The pool's HTTP endpoints (aiohttp): `/metrics` (Prometheus text), `/healthz` and `/readyz`.

`health()` returns a JSON-able dict with a boolean "healthy" member (NodeSet.status() has
that shape). `/readyz` (readiness: send miners here) answers 200 when it is true, else 503.
`/healthz` (liveness) answers 200 whenever the process can answer at all, because restarting
the pool does not bring a dead bitcoind back; its body carries "ready" so an operator still
sees which node is down and why. The JSON API and dashboard routes come through `extra_routes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)

HealthFn = Callable[[], dict[str, Any]]


def create_app(
    *,
    health: HealthFn,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    registry: CollectorRegistry = REGISTRY,
) -> web.Application:
    """An aiohttp application serving /metrics, /healthz and any `extra_routes`."""
    app = web.Application()

    async def metrics_handler(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def current_status() -> dict[str, Any]:
        try:
            return health()
        except Exception as err:
            # The health source itself failing is unhealthy, not a 500 with no body.
            log.exception("health_check_failed")
            return {"healthy": False, "error": f"health check failed: {type(err).__name__}"}

    async def readyz_handler(_request: web.Request) -> web.Response:
        status = current_status()
        return web.json_response(status, status=200 if status.get("healthy") else 503)

    async def healthz_handler(_request: web.Request) -> web.Response:
        status = current_status()
        return web.json_response({**status, "alive": True, "ready": bool(status.get("healthy"))})

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/readyz", readyz_handler)
    app.router.add_routes(list(extra_routes))
    return app


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 = ephemeral); returns the runner (call `cleanup()` to
    stop) and the bound port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1]) if runner.addresses else port
    log.info("http_listening", host=host, port=bound_port)
    return runner, bound_port
