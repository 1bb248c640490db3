"""Everything ``[grid]`` configures, started and stopped together (what `gridpool run`
wires in): the store in the ledger's database, the GridService on the fleet controller,
the command API (on the main HTTP app or its own TLS listener) and one VEN per
``[[grid.openadr]]``.

Call `start` before the main HTTP app starts: aiohttp freezes an app's routes when it
starts, so the API is mounted at /grid only before that.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from aiohttp import web

from miners.grid.hmac_auth import NonceStore, Verifier, load_keys
from miners.grid.http_api import grid_api_app, mount, start_listener
from miners.grid.openadr_ven import GridVen
from miners.grid.service import BudgetSink, GridService
from miners.grid.settings import GridSettings
from miners.grid.store import GridStore, open_grid_store
from pool.errors import ConfigError

log = structlog.get_logger(__name__)


class GridRuntime:
    def __init__(self, settings: GridSettings, ledger_url: str, sink: BudgetSink, *,
                 http_root: web.Application | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.ledger_url = ledger_url
        self.sink = sink
        self.http_root = http_root
        self.clock = clock
        self.store: GridStore | None = None
        self.service: GridService | None = None
        self.vens: list[GridVen] = []
        self.runner: web.AppRunner | None = None

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) of the API's own listener, when it has one."""
        if self.runner is None or not self.runner.addresses:
            return None
        host, port = self.runner.addresses[0][:2]
        return host, port

    async def start(self) -> None:
        self.store = open_grid_store(self.ledger_url)
        await self.store.migrate()
        self.service = GridService(self.settings, self.store, self.sink, clock=self.clock)
        await self.service.start()
        await self._start_http(self.service)
        for ven_settings in self.settings.openadr:
            ven = GridVen(ven_settings, self.service, clock=self.clock)
            await ven.start()
            self.vens.append(ven)

    async def _start_http(self, service: GridService) -> None:
        http = self.settings.http
        if http.keys_file is None:
            log.info("grid_http_api_disabled", reason="no grid.http.keys_file")
            return
        verifier = Verifier(load_keys(http.keys_file), NonceStore(http.max_nonces),
                            http.skew_s, not_before=service.started_at)
        sub = grid_api_app(service, verifier, http, clock=self.clock)
        if http.listen is not None:
            host, _, port = http.listen.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("grid.http.listen", "must be HOST:PORT")
            self.runner = await start_listener(sub, http, host.strip("[]"), int(port))
        elif self.http_root is not None:
            mount(self.http_root, sub)
        else:
            raise ConfigError("grid.http.listen", "no main HTTP app to mount on: set listen")

    async def stop(self) -> None:
        for ven in self.vens:
            await ven.stop()
        self.vens = []
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.service is not None:
            await self.service.stop()
        if self.store is not None:
            await self.store.close()
