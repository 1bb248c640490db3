"""The JSON API's handlers. Routes and their auth (docs/api.md, /api/openapi.json):

public, read-only: summary, sites, hash rate chart, blocks, health, the spec;
account token (or admin): one account's figures, workers, chart, payouts, payout address;
admin token: the account list, a block's payouts, issuing and revoking account tokens.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from pool.bitcoin.address import address_to_script_pubkey
from pool.errors import AddressError, ApiError, LedgerError
from pool.shares import site_of_worker
from pool.web import params
from pool.web.auth import Authenticator, TokenStore
from pool.web.openapi import build_spec
from pool.web.params import api_handler, json_response
from pool.web.queries import PoolData, PoolSources
from pool.web.settings import ApiSettings

if TYPE_CHECKING:
    from pool.shares import Share

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT_S = 2.0  # the ledger probe of /api/health (s)
TOKENS_FILE_NAME = "api_tokens.json"  # in the data dir unless [api] tokens_file is set


class WebApi:
    """Owns the API's state (token store, cache) and hands out its routes."""

    def __init__(self, sources: PoolSources, settings: ApiSettings, *, data_dir: Path) -> None:
        self.sources = sources
        self.settings = settings
        tokens_file = settings.tokens_file or data_dir / TOKENS_FILE_NAME
        self.tokens = TokenStore(tokens_file, settings.account_tokens)
        self.auth = Authenticator(settings.admin_token_sha256, self.tokens)
        self.data = PoolData(sources, cache_ttl_s=settings.cache_ttl_s,
                             worker_online_s=settings.worker_online_s,
                             summary_blocks=settings.summary_blocks,
                             payout_blocks=settings.payout_blocks)
        self.spec = build_spec()

    def load(self) -> None:
        """Read the tokens file (ConfigError if it is unusable) and log the settings."""
        self.tokens.load()
        s = self.settings
        log.info("api_settings", admin_api=s.admin_token_sha256 is not None,
                 tokens_file=str(self.tokens.path), configured_tokens=len(s.account_tokens),
                 cache_ttl_s=s.cache_ttl_s, worker_online_s=s.worker_online_s,
                 max_rows=s.max_rows, max_blocks=s.max_blocks, refresh_s=s.refresh_s)

    def observe_share(self, share: Share) -> None:
        """An accepted share (PoolApp's on_share hook): keeps the best-share figures."""
        who = share.identity
        if who is not None:
            self.sources.best.observe(who.account, who.worker, site_of_worker(who.worker),
                                      share.hash_difficulty, share.received_s)

    def routes(self) -> list[web.RouteDef]:
        h = api_handler
        return [
            web.get("/api/openapi.json", h(self.openapi)),
            web.get("/api/health", h(self.health)),
            web.get("/api/summary", h(self.summary)),
            web.get("/api/sites", h(self.sites)),
            web.get("/api/hashrate", h(self.hashrate)),
            web.get("/api/blocks", h(self.blocks)),
            web.get("/api/blocks/{hash}", h(self.block)),
            web.get("/api/blocks/{hash}/payouts", h(self.block_payouts)),
            web.get("/api/accounts", h(self.accounts)),
            web.get("/api/accounts/{account}", h(self.account)),
            web.get("/api/accounts/{account}/workers", h(self.workers)),
            web.get("/api/accounts/{account}/hashrate", h(self.account_hashrate)),
            web.get("/api/accounts/{account}/payouts", h(self.payouts)),
            web.put("/api/accounts/{account}/payout-address", h(self.set_payout_address)),
            web.post("/api/admin/accounts/{account}/token", h(self.issue_token)),
            web.delete("/api/admin/accounts/{account}/token", h(self.revoke_token)),
        ]

    # ---- public -----------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        return json_response(self.spec)

    async def health(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        pool = self.sources.health() if self.sources.health is not None else {"healthy": True}
        started = time.monotonic()
        ledger: dict[str, Any] = {"ok": True, "error": None}
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await self.sources.ledger.blocks(limit=1)
        except (LedgerError, TimeoutError) as err:
            ledger = {"ok": False, "error": str(err) or f"no answer in {HEALTH_TIMEOUT_S:g} s"}
        ledger["latency_ms"] = round((time.monotonic() - started) * 1000, 3)
        healthy = bool(pool.get("healthy")) and ledger["ok"]
        body = {"healthy": healthy, "time": time.time(), "pool": pool, "ledger": ledger}
        return json_response(body, status=200 if healthy else 503)

    async def summary(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        return json_response(await self.data.summary())

    async def sites(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        return json_response({"sites": await self.data.sites()})

    async def hashrate(self, request: web.Request) -> web.Response:
        params.check_query(request, ("window", "step", "site"))
        window, step = params.query_window(request)
        site = params.query_name(request, "site")
        return json_response(await self.data.chart(window, step, site=site))

    async def blocks(self, request: web.Request) -> web.Response:
        params.check_query(request, ("limit", "status"))
        limit = params.query_int(request, "limit", 50, 1, self.settings.max_blocks)
        statuses = params.query_statuses(request)
        return json_response({"blocks": await self.data.blocks(limit, statuses),
                              "simulated": self.data.simulated})

    async def block(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        hash_hex = params.path_hash(request)
        found = await self.data.block(hash_hex)
        if found is None:
            raise ApiError(404, "unknown_block", f"no block {hash_hex} in the ledger",
                           field="hash")
        return json_response(found)

    # ---- admin ------------------------------------------------------------------------

    async def block_payouts(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        hash_hex = params.path_hash(request)
        self.auth.require_admin(request)
        found = await self.data.block(hash_hex, finder=True)
        if found is None:
            raise ApiError(404, "unknown_block", f"no block {hash_hex} in the ledger",
                           field="hash")
        rows = await self.sources.ledger.block_payouts(hash_hex)
        payouts = [{"account": r.account, "credited_sats": r.credited_sats,
                    "paid_sats": r.paid_sats, "address": r.address or None} for r in rows]
        return json_response({"block": found, "payouts": payouts}, private=True)

    async def accounts(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        self.auth.require_admin(request)
        rows = await self.data.accounts()
        limit = self.settings.max_rows
        return json_response({"accounts": rows[:limit], "truncated": len(rows) > limit},
                             private=True)

    async def issue_token(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        account = params.path_account(request)
        self.auth.require_admin(request)
        token = await self.tokens.issue(account)
        return json_response({"account": account, "token": token, **self.tokens.info(account)},
                             status=201, private=True)

    async def revoke_token(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        account = params.path_account(request)
        self.auth.require_admin(request)
        if not await self.tokens.revoke(account):
            raise ApiError(404, "no_token", f"account {account!r} has no issued token",
                           field="account")
        return json_response({"account": account, "revoked": True, **self.tokens.info(account)},
                             private=True)

    # ---- one account --------------------------------------------------------------------

    async def _account(self, request: web.Request) -> str:
        """The path's account, once the request's token may read it."""
        account = params.path_account(request)
        await self.auth.require_account(request, account, self.data.account_exists)
        return account

    async def account(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        account = await self._account(request)
        body = await self.data.account(account)
        return json_response({**body, "token": self.tokens.info(account)}, private=True)

    async def workers(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        account = await self._account(request)
        rows = await self.data.workers(account)
        limit = self.settings.max_rows
        return json_response({"account": account, "workers": rows[:limit],
                              "truncated": len(rows) > limit}, private=True)

    async def account_hashrate(self, request: web.Request) -> web.Response:
        params.check_query(request, ("window", "step", "worker"))
        window, step = params.query_window(request)
        worker = params.query_name(request, "worker")
        account = await self._account(request)
        chart = await self.data.chart(window, step, account=account, worker=worker)
        return json_response({"account": account, **chart}, private=True)

    async def payouts(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        account = await self._account(request)
        return json_response({"account": account, "payouts": await self.data.payouts(account),
                              "blocks_scanned": self.settings.payout_blocks}, private=True)

    async def set_payout_address(self, request: web.Request) -> web.Response:
        params.check_query(request, ())
        account = await self._account(request)
        body = await params.json_body(request, self.settings.max_body_bytes)
        extra = sorted(set(body) - {"address"})
        if extra:
            raise ApiError(422, "unknown_field", f"unknown field {extra[0]!r}", field=extra[0])
        if "address" not in body:
            raise ApiError(422, "missing_field", "address is required (null clears it)",
                           field="address")
        address = body["address"]
        if address is not None:
            if not isinstance(address, str):
                raise ApiError(422, "invalid_field", "address must be a string or null",
                               field="address")
            try:
                address_to_script_pubkey(address, self.sources.chain)
            except AddressError as err:
                raise ApiError(422, "invalid_field",
                               f"not a valid {self.sources.chain} address: {err}",
                               field="address") from None
        await self.sources.ledger.set_payout_address(account, address)
        self.data.cache.forget(("account", account))
        self.data.cache.forget(("exists", account))
        log.info("payout_address_set", account=account, address=address)
        return json_response({"account": account, "payout_address": address}, private=True)
