"""The pool's JSON API (with its OpenAPI document) and web dashboard; docs/api.md.

In the pool: `mount(http_app, pool_app)` (pool.web.mount). Elsewhere (tests, tools):
`web_api = WebApi(PoolSources(ledger, ...), ApiSettings.from_mapping(...), data_dir=...)`,
`web_api.load()`, then serve `web_routes(web_api)` (e.g. as `extra_routes` of
`pool.api.create_app`).
"""

from aiohttp import web

from pool.web.api import WebApi
from pool.web.dashboard import dashboard_routes
from pool.web.mount import mount
from pool.web.queries import LiveInfo, NetworkInfo, PoolSources
from pool.web.settings import ApiSettings
from pool.web.stats import BestShares


def web_routes(api: WebApi) -> list[web.AbstractRouteDef]:
    """Every route of the API and the dashboard."""
    return [*api.routes(), *dashboard_routes(api.settings)]


__all__ = [
    "ApiSettings",
    "BestShares",
    "LiveInfo",
    "NetworkInfo",
    "PoolSources",
    "WebApi",
    "mount",
    "web_routes",
]
