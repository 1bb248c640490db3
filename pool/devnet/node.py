"""`Devnet`: an embedded regtest node. Bitcoin Core's consensus (py-bitcoinkernel), a
self-made mempool, bitcoind's JSON-RPC on 127.0.0.1 and ZMQ hashblock/rawblock.

    async with Devnet(None, rpc_port=0, zmq_port=0) as devnet:
        print(devnet.rpc_url, devnet.cookie_path, devnet.zmq_endpoint)
        await devnet.generate(1)
"""

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from pool.bitcoin.address import address_to_script_pubkey
from pool.devnet.auth import COOKIE_FILE_NAME, RpcAuth
from pool.devnet.chain import Chain, SubmitOutcome
from pool.devnet.mempool import COINBASE_MATURITY, MAX_MEMPOOL_TARGET, Mempool, MempoolEntry
from pool.devnet.methods import rpc_methods
from pool.devnet.miner import block_from_template
from pool.devnet.rpc import JsonRpcServer, RawJson
from pool.devnet.template import (
    TipInfo,
    build_template,
    default_witness_commitment,
    select_transactions,
    transactions_json,
    transactions_json_text,
)
from pool.devnet.versionbits import template_fields
from pool.devnet.wallet import CoinKind, Wallet
from pool.devnet.zmq_pub import ZmqPublisher
from pool.errors import DevnetError

log = structlog.get_logger(__name__)

DEFAULT_RPC_PORT = 18443  # bitcoind's regtest RPC port
DEFAULT_ZMQ_PORT = 28332  # the port bitcoind examples use for zmqpubhashblock
INITIAL_MATURE_COINBASES = 10  # coinbases the devnet can spend right after start
REFILL_BATCH = 200  # transactions made per refill tick before yielding to RPC
REFILL_IDLE = 0.5  # s; refill wake-up period when the mempool is full
TEMPLATE_REFRESH = 5.0  # s; bitcoind reuses a template this long unless the tip changes
MAX_SCRIPT_THREADS = 15  # the kernel's own clamp
MEMPOOL_WAIT = 30.0  # s; wait_for_mempool's deadline
STOP_GRACE = 0.05  # s; lets the `stop` RPC answer before the server shuts down


@dataclass(slots=True)
class _Selection:
    """One choice of template transactions and what is derived from it."""

    tip_hash_le: bytes
    mempool_updates: int
    made_at: float  # time.monotonic() s
    txs: list[MempoolEntry]
    tx_dicts: list[dict]
    commitment_hex: str
    tx_text: str | None = None  # JSON of tx_dicts, made on first RPC use


class Devnet:
    """Owns the chain, mempool, RPC server, ZMQ publisher and the refill task."""

    def __init__(
        self,
        datadir: Path | None = None,
        *,
        rpc_port: int = DEFAULT_RPC_PORT,
        zmq_port: int | None = DEFAULT_ZMQ_PORT,
        mempool_target: int = 200,
        rpc_user: str | None = None,
        rpc_password: str | None = None,
        initial_mature_coinbases: int = INITIAL_MATURE_COINBASES,
        refill_batch: int = REFILL_BATCH,
        template_refresh: float = TEMPLATE_REFRESH,
        script_threads: int | None = None,
        seed: int | None = None,
    ) -> None:
        if not 0 <= mempool_target <= MAX_MEMPOOL_TARGET:
            raise DevnetError(
                f"mempool_target must be 0..{MAX_MEMPOOL_TARGET}, got {mempool_target}"
            )
        if refill_batch < 1 or template_refresh < 0 or initial_mature_coinbases < 1:
            raise DevnetError("refill_batch and initial_mature_coinbases must be >= 1")
        self._given_datadir = datadir
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.datadir = datadir or Path()
        self.rpc_port = rpc_port
        self.zmq_port = zmq_port  # None: no ZMQ
        self.mempool_target = mempool_target
        self.initial_mature_coinbases = initial_mature_coinbases
        self.refill_batch = refill_batch  # transactions per refill tick
        self.template_refresh = template_refresh  # s
        self._rpc_user, self._rpc_password = rpc_user, rpc_password
        self._seed = seed
        if script_threads is None:  # bitcoind's -par=0: one verification thread per core
            script_threads = min(os.cpu_count() or 1, MAX_SCRIPT_THREADS)
        self.chain = Chain(self.datadir, script_threads=script_threads)
        self.wallet: Wallet | None = None
        self.mempool: Mempool | None = None
        self._rpc: JsonRpcServer | None = None
        self._zmq: ZmqPublisher | None = None
        self._auth: RpcAuth | None = None
        self._submit_lock = asyncio.Lock()
        self._tip_changed = asyncio.Event()
        self._refill_wake = asyncio.Event()
        self._mempool_grew = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._template_cache: _Selection | None = None
        self._started_at = 0.0
        self.stopped = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        started = time.monotonic()
        if self._given_datadir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="gridpool-devnet-")
            self.datadir = Path(self._tmpdir.name)
            self.chain.datadir = self.datadir
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.wallet = Wallet.load_or_create(self.datadir)
        self.mempool = Mempool(self.wallet, target=self.mempool_target, seed=self._seed)
        try:
            await self.chain.open()
            await self._rescan()
            await self._mine_initial_coins()
            self.mempool.fill(self.mempool_target)
            await self._start_network()
        except BaseException:
            await self.stop()
            raise
        self._spawn(self._refill_loop())
        self._started_at = time.monotonic()
        log.info(
            "devnet_started",
            rpc_url=self.rpc_url,
            cookie=str(self.cookie_path),
            zmq=self.zmq_endpoint or None,
            height=self.chain.height,
            mempool=len(self.mempool),
            mempool_target=self.mempool_target,
            refill_batch=self.refill_batch,
            startup_s=round(time.monotonic() - started, 3),
        )

    async def _start_network(self) -> None:
        if self.zmq_port is not None:
            self._zmq = ZmqPublisher(self.zmq_port)
            self._zmq.start()
        self._auth = RpcAuth(self.cookie_path, user=self._rpc_user, password=self._rpc_password)
        self._auth.write_cookie()
        self._rpc = JsonRpcServer(rpc_methods(self), self._auth, port=self.rpc_port)
        await self._rpc.start()

    async def stop(self) -> None:
        """Stop serving, cancel the refill, flush and close the chain; idempotent."""
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._rpc is not None:
            await self._rpc.stop()
            self._rpc = None
        if self._auth is not None:
            self._auth.remove_cookie()
        if self._zmq is not None:
            self._zmq.close()
            self._zmq = None
        await self.chain.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self.stopped.set()

    async def __aenter__(self) -> "Devnet":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Stop soon, from inside an RPC handler (the reply goes out first)."""

        async def _stop_later() -> None:
            await asyncio.sleep(STOP_GRACE)
            await self.stop()

        self._spawn(_stop_later())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("devnet_task_failed", exc_info=task.exception())

    # -- addresses -------------------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        return self._rpc.url if self._rpc is not None else ""

    @property
    def cookie_path(self) -> Path:
        return self.datadir / COOKIE_FILE_NAME

    @property
    def zmq_endpoint(self) -> str:
        return self._zmq.endpoint if self._zmq is not None else ""

    @property
    def uptime(self) -> int:
        return int(time.monotonic() - self._started_at) if self._started_at else 0

    # -- chain -----------------------------------------------------------------------

    async def _rescan(self) -> None:
        """Rebuild the wallet's coins from the stored chain (the mempool is not kept)."""
        assert self.mempool is not None
        for height in range(1, self.chain.height + 1):
            entry = self.chain.at_height(height)
            assert entry is not None
            raw = await self.chain.read_block(entry.hash_le)
            assert raw is not None
            self.mempool.block_connected(height, raw, None)
        self.mempool.tip_height = self.chain.height

    async def _mine_initial_coins(self) -> None:
        """Mine to the devnet's own key until `initial_mature_coinbases` are spendable."""
        assert self.wallet is not None
        missing = COINBASE_MATURITY + self.initial_mature_coinbases - self.chain.height
        if missing <= 0:
            return
        spk = self.wallet.scripts[CoinKind.P2WPKH]
        now = int(time.time())
        for i in range(missing):
            await self.generate_to_script(1, spk, time_hint=now - (missing - i))

    async def submit_block(self, raw: bytes, *, mined_here: bool = False) -> SubmitOutcome:
        """Process one block; on acceptance update the mempool, wake longpolls, notify ZMQ.
        Submitted blocks are logged; the devnet's own (`mined_here`) are not, one by one."""
        assert self.mempool is not None
        async with self._submit_lock:
            old_tip = self.chain.tip.hash_le
            outcome = await self.chain.submit(raw)
            if not outcome.accepted:
                log.info(
                    "devnet_block_rejected",
                    hash=outcome.hash_le[::-1].hex(),
                    reason=outcome.reason or outcome.error,
                )
                return outcome
            if outcome.raw[4:36] == old_tip:  # the header's prev hash: the chain grew
                self.mempool.block_connected(self.chain.height, outcome.raw, outcome.txids_le)
            else:
                await self._rebuild_mempool(old_tip)
            self._template_cache = None
            self._tip_changed.set()
            self._tip_changed = asyncio.Event()
            self._refill_wake.set()
            if self._zmq is not None:
                await self._zmq.publish_block(outcome.hash_le, outcome.raw)
        if not mined_here:
            log.info(
                "devnet_block_accepted",
                height=self.chain.height,
                hash=outcome.hash_le[::-1].hex(),
                txs=len(outcome.txids_le),
            )
        return outcome

    async def _rebuild_mempool(self, old_tip_le: bytes) -> None:
        """A reorg: the mempool's transactions and coins were built on blocks that left the
        active chain (spends of their outputs would be bad-txns-inputs-missingorspent), so
        rebuild it from the new chain as at start-up. bitcoind would put the disconnected
        blocks' transactions back; the devnet makes new ones (the refill follows)."""
        assert self.wallet is not None
        fresh = Mempool(self.wallet, target=self.mempool_target, seed=self._seed)
        for height in range(1, self.chain.height + 1):
            entry = self.chain.at_height(height)
            assert entry is not None
            raw = await self.chain.read_block(entry.hash_le)
            assert raw is not None
            fresh.block_connected(height, raw, None)
        fresh.tip_height = self.chain.height
        self.mempool = fresh
        log.warning("devnet_reorg_mempool_rebuilt", old_tip=old_tip_le[::-1].hex(),
                    new_tip=self.chain.tip.hash_hex, height=self.chain.height)

    async def generate(self, n: int, address: str | None = None) -> list[str]:
        """Mine n blocks carrying the mempool (like generatetoaddress); returns their
        hashes (display hex). Without an address, pay the devnet's own P2WPKH key."""
        assert self.wallet is not None
        spk = (
            address_to_script_pubkey(address, "regtest")
            if address is not None
            else self.wallet.scripts[CoinKind.P2WPKH]
        )
        return await self.generate_to_script(n, spk)

    async def generate_to_script(
        self, n: int, script_pubkey: bytes, *, time_hint: int | None = None
    ) -> list[str]:
        hashes = []
        for _ in range(n):
            template = self.block_template()
            block_time = max(template["mintime"], time_hint) if time_hint else None
            raw = block_from_template(template, script_pubkey, time=block_time)
            outcome = await self.submit_block(raw, mined_here=True)
            if not outcome.accepted:
                raise DevnetError(f"own block rejected: {outcome.reason or outcome.error}")
            hashes.append(outcome.hash_le[::-1].hex())
        log.debug("devnet_generated", blocks=n, height=self.chain.height)
        return hashes

    def next_tip_change(self) -> asyncio.Event:
        """An event set when the tip next changes (for longpoll)."""
        return self._tip_changed

    # -- templates -------------------------------------------------------------------

    def _selection(self) -> "_Selection":
        """Template transactions, reused like bitcoind does: rebuilt on a new tip, or when
        the mempool changed and the last build is older than `template_refresh`."""
        assert self.mempool is not None
        tip_hash = self.chain.tip.hash_le
        cache = self._template_cache
        if cache is not None and cache.tip_hash_le == tip_hash:
            if cache.mempool_updates == self.mempool.updates:
                return cache
            if time.monotonic() - cache.made_at <= self.template_refresh:
                return cache
        selected = select_transactions(self.mempool.entries.values())
        cache = _Selection(
            tip_hash_le=tip_hash,
            mempool_updates=self.mempool.updates,
            made_at=time.monotonic(),
            txs=selected,
            tx_dicts=transactions_json(selected),
            commitment_hex=default_witness_commitment(selected),
        )
        self._template_cache = cache
        return cache

    def _template(self, selection: "_Selection", transactions: list[dict]) -> dict:
        tip = self.chain.tip
        version, vbavailable, extra_rules = template_fields(self.chain.versions(), tip.height + 1)
        return build_template(
            tip=TipInfo(tip.hash_hex, tip.height, tip.median_time_past, tip.header.bits),
            selected=selection.txs,
            transactions=transactions,
            commitment_hex=selection.commitment_hex,
            now=int(time.time()),
            version=version,
            vbavailable=vbavailable,
            extra_rules=extra_rules,
            longpollid=f"{tip.hash_hex}{selection.mempool_updates}",
        )

    def block_template(self) -> dict:
        """getblocktemplate's result for the current tip (the caller checked the rules)."""
        selection = self._selection()
        return self._template(selection, selection.tx_dicts)

    def block_template_json(self) -> RawJson:
        """The same result as JSON text; the transactions array is encoded once per
        selection, so repeated calls with 3,000 transactions stay cheap."""
        selection = self._selection()
        if selection.tx_text is None:
            selection.tx_text = transactions_json_text(selection.txs)
        head = json.dumps(self._template(selection, []))
        return RawJson(
            head.replace('"transactions": []', f'"transactions": {selection.tx_text}', 1)
        )

    # -- mempool refill --------------------------------------------------------------

    async def _refill_loop(self) -> None:
        """Keep the mempool at its target, a bounded batch per tick so RPC stays live."""
        assert self.mempool is not None
        while True:
            made = self.mempool.fill(self.refill_batch)
            if made:
                self._mempool_grew.set()
                await asyncio.sleep(0)
                continue
            self._refill_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFILL_IDLE):
                    await self._refill_wake.wait()

    async def wait_for_mempool(self, count: int) -> None:
        """Wait (at most MEMPOOL_WAIT) until the mempool holds `count` transactions."""
        assert self.mempool is not None
        async with asyncio.timeout(MEMPOOL_WAIT):
            while len(self.mempool) < count:
                self._mempool_grew.clear()
                await self._mempool_grew.wait()
