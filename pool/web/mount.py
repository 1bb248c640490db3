"""Mounting the API and dashboard on a running pool (`pool.app.PoolApp`).

`mount(app, pool)` adds the routes to the pool's HTTP app before it starts serving and
returns the WebApi; the pool feeds accepted shares to `WebApi.observe_share` (best share).
The views below read the pool's live objects without changing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from pool.bitcoin.target import bits_to_difficulty
from pool.web.api import WebApi
from pool.web.dashboard import dashboard_routes
from pool.web.queries import LiveInfo, NetworkInfo, PoolSources
from pool.web.settings import ApiSettings

if TYPE_CHECKING:
    from pool.app import PoolApp


def network_view(pool: PoolApp) -> Callable[[], NetworkInfo]:
    """Height being mined and the chain's difficulty, from the current job's template."""

    def read() -> NetworkInfo:
        job = pool.jobs.current if pool.jobs is not None else None
        if job is None:
            return NetworkInfo()
        return NetworkInfo(job.template.height, bits_to_difficulty(job.template.bits))

    return read


def live_view(pool: PoolApp) -> Callable[[], LiveInfo]:
    """Open Stratum connections and the (account, worker) pairs authorized on them."""

    def read() -> LiveInfo:
        if pool.stratum is None:
            return LiveInfo()
        sessions = list(pool.stratum.sessions)
        workers = frozenset((i.account, i.worker) for s in sessions for i in s.workers.values())
        return LiveInfo(len(sessions), workers)

    return read


def mount(app: web.Application, pool: PoolApp,
          settings: ApiSettings | None = None) -> WebApi:
    """Add the API and dashboard routes to `app` (not yet started). `settings`: the
    config's `[api]` table (default: all defaults, admin token from GRIDPOOL_ADMIN_TOKEN)."""
    if pool.ledger is None:
        raise RuntimeError("pool.web.mount needs the pool's ledger: mount after it started")
    config = pool.config
    settings = settings or ApiSettings.from_mapping({})
    sources = PoolSources(
        ledger=pool.ledger, chain=config.network.chain, payout_mode=config.payout.mode,
        simulated_difficulty=config.network.simulated_difficulty,
        network=network_view(pool), live=live_view(pool), health=pool.health,
    )
    web_api = WebApi(sources, settings, data_dir=config.data_dir)
    web_api.load()
    app.router.add_routes([*web_api.routes(), *dashboard_routes(settings)])
    return web_api
