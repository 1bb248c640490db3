"""The pool process: nodes (or the embedded devnet) → jobs → Stratum server, plus HTTP.

`PoolApp(config)` starts everything in order and stops it in reverse; `stop(drain=True)`
first asks every miner to reconnect (client.reconnect) so a restart loses no work.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any

import structlog
from aiohttp import web

from pool import api, hashing, metrics
from pool.config import GridpoolConfig, NodeConfig
from pool.jobs import JobManager
from pool.node.nodeset import NodeSet
from pool.shares import Share
from pool.stratum.server import StratumServer
from pool.stratum.usernames import PayoutPolicy

log = structlog.get_logger(__name__)

RECENT_BLOCKS = 50  # found blocks kept for the status API


class PoolApp:
    """Owns the devnet (when no node is configured), NodeSet, JobManager, StratumServer and
    the HTTP server."""

    def __init__(self, config: GridpoolConfig, *, http: bool = True) -> None:
        self.config = config
        self.http = http
        self.devnet: Any = None  # pool.devnet.Devnet when embedded
        self.nodes: NodeSet | None = None
        self.jobs: JobManager | None = None
        self.stratum: StratumServer | None = None
        self.http_port: int | None = None
        self._http_runner: web.AppRunner | None = None
        self.shares_accepted = 0
        self.blocks: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_BLOCKS)

    async def start(self) -> None:
        config = self.config
        backend = hashing.get_backend()
        metrics.HASH_BACKEND_INFO.labels(backend=backend.name).set(1)
        log.info("pool_starting", config=config.summary(), hash_backend=backend.name,
                 simulated_difficulty=config.network.simulated_difficulty)
        try:
            nodes = config.nodes or (await self._start_devnet(),)
            self.nodes = NodeSet(nodes, chain=config.network.chain)
            await self.nodes.start()
            self.jobs = JobManager(
                self.nodes, config.jobs, chain=config.network.chain,
                extranonce2_size=config.stratum.extranonce2_size,
                simulated_difficulty=config.network.simulated_difficulty,
            )
            self.stratum = StratumServer(
                config.stratum, self.jobs, payout=self._payout_policy(),
                submit=self.nodes.submit_block, validator=None,
                simulated=config.network.simulated_difficulty is not None,
                on_share=self._on_share, on_block=self._on_block,
            )
            await self.stratum.start()  # before the first job, so it reaches everyone
            await self.jobs.start()
            if self.http:
                await self._start_http()
        except BaseException:
            await self.stop(drain=False)
            raise

    def _payout_policy(self) -> PayoutPolicy:
        script = self.config.payout.script_pubkey
        if script is None and self.devnet is not None and self.config.payout.address is None:
            script = self.devnet_payout_script()  # demo: account.worker pays the devnet
        return PayoutPolicy(self.config.network.chain, script)

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
        http = self.config.http
        self._http_runner, self.http_port = await api.start_http(app, http.host, http.port)

    async def _status_handler(self, _request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def stop(self, *, drain: bool = True) -> None:
        """Reverse order: drain and close Stratum, jobs, HTTP, nodes, devnet."""
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
        if self.nodes is not None:
            await self.nodes.stop()
        if self.devnet is not None:
            await self.devnet.stop()
        log.info("pool_stopped")

    # ---- shares and blocks -------------------------------------------------------------

    def _on_share(self, share: Share) -> None:
        self.shares_accepted += 1  # the ledger takes over recording shares

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
            "blocks": list(self.blocks),
            "stratum_settings": dataclasses.asdict(self.config.stratum),
        }
