"""What the API answers, assembled from the ledger and the live pool (no HTTP here).

Every aggregate is cached for `cache_ttl_s` (and computed once however many requests ask
at the same moment), so the ledger sees a bounded query rate whatever the number of
dashboards open. Per-window figures cost one grouped query per window over the ledger's
per-minute table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pool.ledger.store import BlockInfo, Ledger, ShareStats
from pool.web import stats
from pool.web.stats import WINDOWS_S, BestShares

T = TypeVar("T")
CACHE_MAX_ENTRIES = 4096  # cached answers kept (account pages are keyed by account)
DAY_S = WINDOWS_S["24h"]


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    height: int | None = None  # of the block being mined
    difficulty: float | None = None  # the chain's, from the current job's nBits


@dataclass(frozen=True, slots=True)
class LiveInfo:
    sessions: int = 0  # open Stratum connections
    workers: frozenset[tuple[str, str]] = frozenset()  # (account, worker) authorized now


@dataclass(slots=True)
class PoolSources:
    """Everything the API reads. Only `ledger` is required; the callables are cheap,
    synchronous views of the running pool."""

    ledger: Ledger
    chain: str = "regtest"
    payout_mode: str = "solo"
    simulated_difficulty: float | None = None  # set: blocks are simulated (regtest demo)
    network: Callable[[], NetworkInfo] = NetworkInfo
    live: Callable[[], LiveInfo] | None = None
    health: Callable[[], dict[str, Any]] | None = None
    best: BestShares = field(default_factory=BestShares)


class TtlCache:
    """Answers kept `ttl_s`; concurrent askers of one key share one computation."""

    def __init__(self, ttl_s: float, max_entries: int = CACHE_MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Any, make: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry[0] < now:
            future = asyncio.ensure_future(make())
            self._entries.pop(key, None)
            self._entries[key] = (now + self.ttl_s, future)
            future.add_done_callback(lambda f: self._forget_failed(key, f))
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]
            entry = self._entries[key]
        return await asyncio.shield(entry[1])  # one asker going away cancels nothing

    def forget(self, key: Any) -> None:
        self._entries.pop(key, None)

    def _forget_failed(self, key: Any, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            entry = self._entries.get(key)
            if entry is not None and entry[1] is future:
                del self._entries[key]


@dataclass(slots=True)
class Windowed:
    """One group's figures: H/s per window, and its 24 h shares and last share time."""

    hashrate_hs: dict[str, float] = field(default_factory=dict)
    shares: dict[str, int] = field(default_factory=dict)
    last_share_time: float | None = None

    @classmethod
    def empty(cls) -> Windowed:
        return cls({n: 0.0 for n in WINDOWS_S}, {n: 0 for n in WINDOWS_S})


def block_json(block: BlockInfo, *, simulated: bool, finder: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hash": block.hash_hex, "height": block.height, "status": block.status,
        "confirmations": block.confirmations, "reward_sats": block.reward_sats,
        "fees_sats": block.fees_sats, "pool_fee_sats": block.pool_fee_sats,
        "found_time": block.found_time, "updated_time": block.updated_time,
        "site": block.site, "simulated": simulated,
        "submit_results": {n: r or "accepted" for n, r in sorted(block.submit_results.items())},
    }
    if finder:
        out.update(account=block.account, worker=block.worker, share_id=block.share_id,
                   job_id=block.job_id)
    return out


def best_json(best: stats.Best | None, *, names: bool = False) -> dict[str, Any] | None:
    if best is None:
        return None
    out: dict[str, Any] = {"difficulty": best.difficulty, "time": best.time}
    if names:
        out.update(account=best.account, worker=best.worker)
    return out


class PoolData:
    """The API's answers as JSON-able dicts."""

    def __init__(self, sources: PoolSources, *, cache_ttl_s: float, worker_online_s: float,
                 summary_blocks: int, payout_blocks: int) -> None:
        self.sources = sources
        self.ledger = sources.ledger
        self.worker_online_s = worker_online_s
        self.summary_blocks = summary_blocks
        self.payout_blocks = payout_blocks
        self.cache = TtlCache(cache_ttl_s)

    @property
    def simulated(self) -> bool:
        return self.sources.simulated_difficulty is not None

    def _live(self) -> LiveInfo | None:
        return self.sources.live() if self.sources.live is not None else None

    # ---- building blocks ------------------------------------------------------------

    async def windowed(
        self, group_by: Sequence[str], now: float, **filters: str | None
    ) -> dict[tuple[str | None, ...], Windowed]:
        """Per group: H/s in every window and shares per window (one query per window)."""
        out: dict[tuple[str | None, ...], Windowed] = {}
        for name, window_s in WINDOWS_S.items():
            rows = await self.ledger.share_stats(
                since=stats.window_since(now, window_s), group_by=group_by, **filters)
            for row in rows:
                entry = out.setdefault(_key(row, group_by), Windowed())
                entry.hashrate_hs[name] = stats.hashrate_hs(row.work, now, window_s)
                entry.shares[name] = row.shares
                if name == "24h":
                    entry.last_share_time = row.last_time
        for entry in out.values():
            for name in WINDOWS_S:
                entry.hashrate_hs.setdefault(name, 0.0)
                entry.shares.setdefault(name, 0)
        return out

    async def workers_seen(self, now: float) -> list[ShareStats]:
        """Every (account, worker, site) with shares in the last 24 h, cached."""
        return await self.cache.get(("workers_seen",), lambda: self.ledger.share_stats(
            since=stats.window_since(now, DAY_S), group_by=("account", "worker", "site")))

    def online(self, account: str, worker: str, last_time: float | None, now: float,
               live: LiveInfo | None) -> bool:
        if live is not None and (account, worker) in live.workers:
            return True
        return last_time is not None and last_time >= now - self.worker_online_s

    async def worker_counts(
        self, now: float, key: Callable[[ShareStats], str | None]
    ) -> dict[str | None, dict[str, int]]:
        """{key(row): {"online": n, "offline": n}} over the workers seen in 24 h."""
        live = self._live()
        counts: dict[str | None, dict[str, int]] = {}
        for row in await self.workers_seen(now):
            state = "online" if self.online(row.account or "", row.worker or "", row.last_time,
                                            now, live) else "offline"
            bucket = counts.setdefault(key(row), {"online": 0, "offline": 0})
            bucket[state] += 1
        return counts

    # ---- public answers -------------------------------------------------------------

    async def summary(self) -> dict[str, Any]:
        return await self.cache.get(("summary",), self._summary)

    async def _summary(self) -> dict[str, Any]:
        now = time.time()
        minutes = await self.ledger.minute_series(since=stats.window_since(now, DAY_S))
        series = [(m.minute, m.work) for m in minutes]
        shares = {name: sum(m.shares for m in minutes
                            if m.minute >= stats.window_since(now, s))
                  for name, s in WINDOWS_S.items()}
        live = self._live()
        seen = await self.workers_seen(now)
        online = {(r.account, r.worker) for r in seen
                  if self.online(r.account or "", r.worker or "", r.last_time, now, live)}
        online |= set(live.workers) if live is not None else set()
        everyone = {(r.account, r.worker) for r in seen} | online
        blocks = await self.ledger.blocks(limit=self.summary_blocks)
        network = self.sources.network()
        return {
            "time": now, "chain": self.sources.chain, "payout_mode": self.sources.payout_mode,
            "hashrate_hs": stats.window_hashrates(series, now), "shares": shares,
            "workers": {"online": len(online), "offline": len(everyone) - len(online)},
            "accounts_active": len({r.account for r in seen}),
            "sessions": live.sessions if live is not None else None,
            "network": {
                "height": network.height, "difficulty": network.difficulty,
                "simulated_difficulty": self.sources.simulated_difficulty,
                "blocks_are_simulated": self.simulated,
            },
            "best_share": best_json(self.sources.best.pool),
            "blocks": [block_json(b, simulated=self.simulated) for b in blocks],
        }

    async def sites(self) -> list[dict[str, Any]]:
        return await self.cache.get(("sites",), self._sites)

    async def _sites(self) -> list[dict[str, Any]]:
        now = time.time()
        groups = await self.windowed(("site",), now)
        counts = await self.worker_counts(now, lambda r: r.site)
        out = []
        for (site,), w in sorted(groups.items(), key=lambda kv: str(kv[0])):
            out.append({
                "site": site, "hashrate_hs": w.hashrate_hs, "shares": w.shares,
                "last_share_time": w.last_share_time,
                "workers": counts.get(site, {"online": 0, "offline": 0}),
                "best_share": best_json(self.sources.best.sites.get(site or "")),
            })
        return out

    async def chart(self, window: str, step_s: int, **filters: str | None) -> dict[str, Any]:
        key = ("chart", window, step_s, tuple(sorted(filters.items())))
        return await self.cache.get(key, lambda: self._chart(window, step_s, filters))

    async def _chart(self, window: str, step_s: int, filters: dict[str, str | None]
                     ) -> dict[str, Any]:
        now = time.time()
        window_s = WINDOWS_S[window]
        minutes = await self.ledger.minute_series(
            since=stats.window_since(now, window_s), **filters)
        points = stats.chart_points(((m.minute, m.shares, m.work) for m in minutes), now,
                                    window_s, step_s)
        return {"window": window, "step_s": step_s, "time": now,
                "points": [{"time": p.time, "hashrate_hs": p.hashrate_hs, "shares": p.shares}
                           for p in points]}

    async def blocks(self, limit: int, status: Sequence[str] | None) -> list[dict[str, Any]]:
        rows = await self.ledger.blocks(limit=limit, status=status)
        return [block_json(b, simulated=self.simulated) for b in rows]

    async def block(self, hash_hex: str, *, finder: bool = False) -> dict[str, Any] | None:
        found = await self.ledger.get_block(hash_hex)
        return None if found is None else block_json(found, simulated=self.simulated,
                                                      finder=finder)

    # ---- account answers --------------------------------------------------------------

    async def account_exists(self, account: str) -> bool:
        async def look() -> bool:
            if await self.ledger.get_account(account) is not None:
                return True
            return bool(await self.ledger.share_stats(since=0, group_by=(), account=account))

        return await self.cache.get(("exists", account), look)

    async def account(self, account: str) -> dict[str, Any]:
        return await self.cache.get(("account", account), lambda: self._account(account))

    async def _account(self, account: str) -> dict[str, Any]:
        now = time.time()
        row = await self.ledger.get_account(account)
        totals = (await self.windowed((), now, account=account)).get((), Windowed.empty())
        workers = await self.workers(account)
        return {
            "account": account,
            "payout_address": row.payout_address if row else None,
            "balance_sats": row.balance_sats if row else 0,
            "hashrate_hs": totals.hashrate_hs, "shares": totals.shares,
            "last_share_time": totals.last_share_time,
            "workers": {"online": sum(w["online"] for w in workers),
                        "offline": sum(not w["online"] for w in workers)},
            "best_share": best_json(self.sources.best.accounts.get(account), names=True),
        }

    async def workers(self, account: str) -> list[dict[str, Any]]:
        return await self.cache.get(("workers", account), lambda: self._workers(account))

    async def _workers(self, account: str) -> list[dict[str, Any]]:
        now = time.time()
        live = self._live()
        groups = await self.windowed(("worker", "site"), now, account=account)
        rows = []
        for (worker, site), w in sorted(groups.items(), key=lambda kv: str(kv[0])):
            worker = worker or ""
            rows.append({
                "worker": worker, "site": site,
                "online": self.online(account, worker, w.last_share_time, now, live),
                "connected": None if live is None else (account, worker) in live.workers,
                "hashrate_hs": w.hashrate_hs, "shares": w.shares,
                "last_share_time": w.last_share_time,
                "best_share": best_json(self.sources.best.workers.get((account, worker))),
            })
        known = {r["worker"] for r in rows}
        for acct, worker in sorted(live.workers if live is not None else ()):
            if acct == account and worker not in known:  # connected, no share yet
                idle = Windowed.empty()
                rows.append({"worker": worker, "site": None, "online": True, "connected": True,
                             "hashrate_hs": idle.hashrate_hs, "shares": idle.shares,
                             "last_share_time": None, "best_share": None})
        return rows

    async def payouts(self, account: str) -> list[dict[str, Any]]:
        return await self.cache.get(("payouts", account), lambda: self._payouts(account))

    async def _payouts(self, account: str) -> list[dict[str, Any]]:
        out = []
        for block in await self.ledger.blocks(limit=self.payout_blocks):
            for row in await self.ledger.block_payouts(block.hash_hex):
                if row.account == account:
                    out.append({"block_hash": block.hash_hex, "height": block.height,
                                "status": block.status, "found_time": block.found_time,
                                "credited_sats": row.credited_sats, "paid_sats": row.paid_sats,
                                "address": row.address or None, "simulated": self.simulated})
        return out

    async def accounts(self) -> list[dict[str, Any]]:
        return await self.cache.get(("accounts",), self._accounts)

    async def _accounts(self) -> list[dict[str, Any]]:
        now = time.time()
        groups = await self.windowed(("account",), now)
        counts = await self.worker_counts(now, lambda r: r.account)
        balances = await self.ledger.accounts_for_payout([a for (a,) in groups if a])
        for name in balances:  # owed a balance, no recent shares
            groups.setdefault((name,), Windowed.empty())
        out = []
        for (account,), w in sorted(groups.items(), key=lambda kv: str(kv[0])):
            found = balances.get(account or "")
            out.append({
                "account": account, "hashrate_hs": w.hashrate_hs, "shares": w.shares,
                "last_share_time": w.last_share_time,
                "workers": counts.get(account, {"online": 0, "offline": 0}),
                "balance_sats": found.balance_sats if found else 0,
            })
        return out


def _key(row: ShareStats, group_by: Collection[str]) -> tuple[str | None, ...]:
    return tuple(getattr(row, col) for col in group_by)
