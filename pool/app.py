"""The pool process: nodes (or the embedded devnet) → jobs → Stratum server → ledger, plus
HTTP.

`PoolApp(config)` starts everything in order and stops it in reverse; `stop(drain=True)`
first asks every miner to reconnect (client.reconnect) so a restart loses no work. The
ledger opens first and closes last: no share is answered `true` before it is durable
(docs/ledger.md), and queued shares become durable before the process exits.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any

import structlog
from aiohttp import web

from pool import api, hashing, metrics
from pool import web as pool_web
from pool.config import GridpoolConfig, NodeConfig
from pool.jobs import JobManager
from pool.ledger.planner import PayoutPlanner
from pool.ledger.recorder import ShareRecorder
from pool.ledger.service import LedgerService
from pool.ledger.store import Ledger
from pool.node.nodeset import NodeSet
from pool.payouts import CoinbasePolicy
from pool.shares import Share
from pool.stratum.server import StratumServer
from pool.stratum.usernames import PayoutPolicy
from pool.web.workgate_api import WorkGateApi
from pool.workgate import PoolWorkGate

log = structlog.get_logger(__name__)

RECENT_BLOCKS = 50  # found blocks kept for the status API


class PoolApp:
    """Owns the devnet (when no node is configured), the ledger service, NodeSet,
    JobManager, StratumServer and the HTTP server. For the HTTP API: `ledger` (the store),
    `ledger_service` (recorder, planner, status), `nodes`, `jobs`, `stratum`, `config`,
    `status()`, `health()`; `workgate` (pool.workgate): the fleet controller's WorkGate."""

    def __init__(self, config: GridpoolConfig, *, http: bool = True) -> None:
        self.config = config
        self.http = http
        self.devnet: Any = None  # pool.devnet.Devnet when embedded
        self.ledger_service: LedgerService | None = None
        self.nodes: NodeSet | None = None
        self.jobs: JobManager | None = None
        self.stratum: StratumServer | None = None
        self.http_port: int | None = None
        self.web_app: web.Application | None = None  # the HTTP app, once started
        self.web: pool_web.WebApi | None = None  # the JSON API and dashboard (pool.web)
        self._http_runner: web.AppRunner | None = None
        self.workgate = PoolWorkGate()  # starved workers get no jobs (docs/fleet.md)
        self.shares_accepted = 0
        self.blocks: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_BLOCKS)

    @property
    def ledger(self) -> Ledger | None:
        return self.ledger_service.ledger if self.ledger_service else None

    @property
    def recorder(self) -> ShareRecorder | None:
        return self.ledger_service.recorder if self.ledger_service else None

    @property
    def planner(self) -> PayoutPlanner | None:
        return self.ledger_service.planner if self.ledger_service else None

    async def start(self) -> None:
        config = self.config
        backend = hashing.get_backend()
        metrics.HASH_BACKEND_INFO.labels(backend=backend.name).set(1)
        log.info("pool_starting", config=config.summary(), hash_backend=backend.name,
                 simulated_difficulty=config.network.simulated_difficulty)
        try:
            nodes = config.nodes or (await self._start_devnet(),)
            pool_script = self._pool_script()
            self.ledger_service = LedgerService(config, pool_script=pool_script)
            await self.ledger_service.start()  # a journal left by a crash is replayed here
            self.nodes = NodeSet(nodes, chain=config.network.chain)
            await self.nodes.start()
            self.jobs = self._job_manager(pool_script)
            self.stratum = StratumServer(
                config.stratum, self.jobs, payout=PayoutPolicy(config.network.chain, pool_script),
                submit=self.nodes.submit_block, validator=None,
                simulated=config.network.simulated_difficulty is not None,
                on_share=self._on_share, on_block=self._on_block, ledger=self.ledger_service,
                workgate=self.workgate,
            )
            await self.stratum.start()  # before the first job, so it reaches everyone
            await self.jobs.start()  # (registers its tip callback first: jobs before blocks)
            self.nodes.on_new_tip(self.ledger_service.on_new_tip)
            self.ledger_service.follow_chain(nodes, lambda: self.nodes and self.nodes.template_node,
                                             self._network_difficulty)
            if self.http:
                await self._start_http()
        except BaseException:
            await self.stop(drain=False)
            raise

    def _pool_script(self) -> bytes | None:
        """The script account usernames are paid by (the pplns pool output)."""
        script = self.config.payout.script_pubkey
        if script is None and self.devnet is not None and self.config.payout.address is None:
            script = self.devnet_payout_script()  # demo: account.worker pays the devnet
        return script

    def _job_manager(self, pool_script: bytes | None) -> JobManager:
        config, payout = self.config, self.config.payout
        assert self.nodes is not None and self.ledger_service is not None
        policy = CoinbasePolicy(pool_script=pool_script, fee_bps=payout.fee_bps,
                                fee_script=payout.fee_script, dust_sats=payout.dust_sats)
        return JobManager(
            self.nodes, config.jobs, chain=config.network.chain,
            extranonce2_size=config.stratum.extranonce2_size,
            simulated_difficulty=config.network.simulated_difficulty,
            policy=policy, planner=self.ledger_service.planner,
            window_read_timeout_s=config.ledger.window_read_timeout_s,
        )

    def _network_difficulty(self) -> float | None:
        job = self.jobs.current if self.jobs else None
        return self.jobs.network_difficulty(job.template) if self.jobs and job else None

    async def _start_devnet(self) -> NodeConfig:
        from pool.devnet import Devnet  # the embedded chain loads py-bitcoinkernel

        self.devnet = Devnet(self.config.data_dir / "devnet", rpc_port=0, zmq_port=0)
        await self.devnet.start()
        return NodeConfig(rpc_url=self.devnet.rpc_url, name="devnet",
                          rpc_cookie=self.devnet.cookie_path,
                          zmq_hashblock=self.devnet.zmq_endpoint or None)

    def devnet_payout_script(self) -> bytes:
        from pool.devnet.wallet import CoinKind

        return bytes(self.devnet.wallet.scripts[CoinKind.P2WPKH])

    async def _start_http(self) -> None:
        app = api.create_app(health=self.health, extra_routes=[
            web.get("/api/pool", self._status_handler),
        ])
        self.web_app = app
        # The JSON API and dashboard (pool.web) mount here, on `app`, before it starts.
        self.web = pool_web.mount(app, self, self.config.api)
        gate_api = WorkGateApi(self.workgate, self.web.auth,
                               max_body_bytes=self.web.settings.max_body_bytes)
        app.router.add_routes(gate_api.routes())
        http = self.config.http
        self._http_runner, self.http_port = await api.start_http(app, http.host, http.port)

    async def _status_handler(self, _request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def stop(self, *, drain: bool = True) -> None:
        """Reverse order: drain and close Stratum, jobs, HTTP, the ledger (queued shares
        become durable first), nodes, devnet."""
        if self.stratum is not None:
            if drain:
                await self.stratum.drain()
            else:
                await self.stratum.stop()
        if self.jobs is not None:
            await self.jobs.stop()
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        if self.ledger_service is not None:
            await self.ledger_service.stop()
        if self.nodes is not None:
            await self.nodes.stop()
        if self.devnet is not None:
            await self.devnet.stop()
        log.info("pool_stopped")

    # ---- shares and blocks -------------------------------------------------------------

    def _on_share(self, share: Share) -> None:
        self.shares_accepted += 1  # the ledger takes over recording shares
        if self.web is not None:
            self.web.observe_share(share)  # best-share figures of the API

    def _on_block(self, share: Share, results: dict[str, str | None]) -> None:
        self.blocks.appendleft({
            "hash": share.hash_hex,
            "height": share.job.template.height,
            "worker": share.worker,
            "time": int(time.time()),
            "results": {node: result or "accepted" for node, result in results.items()},
            "simulated": self.config.network.simulated_difficulty is not None,
        })

    # ---- status ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        nodes = self.nodes.status() if self.nodes else {"healthy": False}
        has_job = self.jobs is not None and self.jobs.current is not None
        return {**nodes, "healthy": bool(nodes.get("healthy")) and has_job, "has_job": has_job}

    def status(self) -> dict[str, Any]:
        simulated = self.config.network.simulated_difficulty
        return {
            "chain": self.config.network.chain,
            "simulated_difficulty": simulated,
            "blocks_are_simulated": simulated is not None,
            "hash_backend": hashing.get_backend().name,
            "nodes": self.nodes.status() if self.nodes else None,
            "jobs": self.jobs.status() if self.jobs else None,
            "stratum": self.stratum.status() if self.stratum else None,
            "shares_accepted": self.shares_accepted,
            "workgate": self.workgate.status(),
            "blocks": list(self.blocks),
            "ledger": self.ledger_service.status() if self.ledger_service else None,
            "stratum_settings": dataclasses.asdict(self.config.stratum),
        }
