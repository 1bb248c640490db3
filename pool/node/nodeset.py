"""A set of bitcoind nodes with health tracking, failover and new-tip notification.

- Templates come from the first healthy node in configuration order (the "template node").
- A found block goes to every node at once, once, with a short deadline.
- Each node has a watcher task: while down it re-probes with exponential back-off
  (getblockchaininfo, which also checks the chain); while up it polls getbestblockhash,
  every `poll_interval_s` without ZMQ, every `zmq_poll_interval_s` as a safety net with ZMQ.
- Tip callbacks fire when the template node's best block changes (from ZMQ or a poll) or
  when the template node itself changes to one on another tip; they run one at a time in
  a dispatcher task, so a slow callback never stalls health checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from pool import metrics
from pool.errors import NodeAuthError, NodeError, NodeTimeoutError, NodeUnreachableError, RPCError
from pool.node.rpc import RPCClient, redact_url
from pool.node.zmq_sub import HashblockSubscriber

if TYPE_CHECKING:
    from pool.config import NodeConfig

log = structlog.get_logger(__name__)

TipCallback = Callable[[str], Awaitable[None]]

POLL_INTERVAL_S = 0.5  # seconds between getbestblockhash polls when a node has no ZMQ
ZMQ_POLL_INTERVAL_S = 5.0  # seconds between safety-net polls when ZMQ is configured
MIN_BACKOFF_S = 0.25  # seconds before the first re-probe of a node that went down
MAX_BACKOFF_S = 10.0  # seconds, cap of the doubling re-probe delay
SUBMIT_TIMEOUT_S = 5.0  # seconds for submitblock on each node (all nodes in parallel)
TIP_CALLBACK_TIMEOUT_S = 30.0  # seconds one tip callback may run before it is abandoned
TIP_QUEUE_MAX = 8  # pending tip notifications; the oldest is dropped when full

# bitcoind error codes (rpc/protocol.h) that mean "cannot serve templates right now".
RPC_IN_WARMUP = -28
RPC_CLIENT_NOT_CONNECTED = -9
RPC_CLIENT_IN_INITIAL_DOWNLOAD = -10
RPC_MISC_ERROR = -1  # e.g. "Bitcoin Core is shutting down"
_NODE_RPC_ERRORS = frozenset(
    {RPC_IN_WARMUP, RPC_CLIENT_NOT_CONNECTED, RPC_CLIENT_IN_INITIAL_DOWNLOAD, RPC_MISC_ERROR}
)


class NodeState(enum.StrEnum):
    CONNECTING = "connecting"  # not probed yet
    UP = "up"
    UNREACHABLE = "unreachable"  # connection refused or dropped
    TIMEOUT = "timeout"  # no answer within the deadline
    BAD_AUTH = "bad_auth"  # HTTP 401/403
    WARMING_UP = "warming_up"  # RPC error -28 while bitcoind loads
    WRONG_CHAIN = "wrong_chain"  # getblockchaininfo.chain differs from [network] chain
    ERROR = "error"  # any other failure (initial download, not connected, bad answer)


@dataclass(slots=True, eq=False)
class _Node:
    config: NodeConfig
    client: RPCClient
    name: str
    zmq: HashblockSubscriber | None = None
    state: NodeState = NodeState.CONNECTING
    last_error: str | None = None
    chain: str | None = None
    height: int | None = None
    best_hash_hex: str | None = None
    initial_block_download: bool | None = None
    info_stale: bool = False
    state_since: float = field(default_factory=time.monotonic)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def block_hash_hex(block_hex: str) -> str:
    """Display-order hash of a serialized block's header, or "unknown" if not hex."""
    try:
        header = bytes.fromhex(block_hex[:160])
    except ValueError:
        return "unknown"
    return hashlib.sha256(hashlib.sha256(header).digest()).digest()[::-1].hex()


def _classify(err: NodeError) -> NodeState:
    if isinstance(err, RPCError):
        return NodeState.WARMING_UP if err.code == RPC_IN_WARMUP else NodeState.ERROR
    if isinstance(err, NodeAuthError):
        return NodeState.BAD_AUTH
    if isinstance(err, NodeUnreachableError):
        return NodeState.UNREACHABLE
    if isinstance(err, NodeTimeoutError):
        return NodeState.TIMEOUT
    return NodeState.ERROR


def _check_hash(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64 or not _is_hex(value):
        raise NodeError(f"expected a 64-hex block hash, got {str(value)[:80]!r}")
    return value


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _log_task_death(task: asyncio.Task[None]) -> None:
    # These tasks loop forever; ending any other way than cancellation is a bug to see.
    if not task.cancelled() and task.exception() is not None:
        log.error("node_task_died", task=task.get_name(), exc_info=task.exception())


class NodeSet:
    """The pool's view of its bitcoind nodes. Use `async with NodeSet(...)` or start/stop."""

    def __init__(
        self,
        nodes: Sequence[NodeConfig],
        *,
        chain: str,
        poll_interval_s: float = POLL_INTERVAL_S,
        zmq_poll_interval_s: float = ZMQ_POLL_INTERVAL_S,
        min_backoff_s: float = MIN_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        submit_timeout_s: float = SUBMIT_TIMEOUT_S,
    ) -> None:
        if not nodes:
            raise ValueError("NodeSet needs at least one node")
        self.chain = chain
        self.poll_interval_s = poll_interval_s
        self.zmq_poll_interval_s = zmq_poll_interval_s
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.submit_timeout_s = submit_timeout_s
        self._nodes = [self._make_node(cfg, i) for i, cfg in enumerate(nodes)]
        if len({node.name for node in self._nodes}) != len(self._nodes):
            raise ValueError("node names must be unique (they label metrics and /healthz)")
        self._callbacks: list[TipCallback] = []
        self._tips: asyncio.Queue[str] = asyncio.Queue(maxsize=TIP_QUEUE_MAX)
        self._last_fired_hex: str | None = None
        self._template_node: _Node | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    @staticmethod
    def _make_node(cfg: NodeConfig, index: int) -> _Node:
        name = cfg.name or f"node{index}"
        auth = (cfg.rpc_user, cfg.rpc_password or "") if cfg.rpc_user is not None else None
        client = RPCClient(cfg.rpc_url, auth=auth, cookie_path=cfg.rpc_cookie,
                           timeout_s=cfg.timeout_s, max_concurrency=cfg.max_concurrency,
                           name=name)
        metrics.NODE_UP.labels(node=name).set(0)
        return _Node(config=cfg, client=client, name=name)

    # ---- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> NodeSet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Probe every node once (so `healthy` is meaningful on return), then start the
        watchers, ZMQ subscribers and the tip dispatcher. Down nodes do not fail start.
        The tip known at that point is not announced: the caller fetches its first
        template itself; every later change of the template node's tip is."""
        await asyncio.gather(*(self._probe_safely(node) for node in self._nodes))
        self._running = True
        for node in self._nodes:
            if node.config.zmq_hashblock:
                node.zmq = HashblockSubscriber(
                    node.config.zmq_hashblock, lambda h, n=node: self._on_zmq_hash(n, h),
                    name=node.name,
                )
                node.zmq.start()
            self._tasks.append(asyncio.create_task(self._watch(node), name=f"node-{node.name}"))
        self._tasks.append(asyncio.create_task(self._dispatch_tips(), name="node-tips"))
        for task in self._tasks:
            task.add_done_callback(_log_task_death)

    async def stop(self) -> None:
        self._running = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for node in self._nodes:
            if node.zmq is not None:
                await node.zmq.stop()
                node.zmq = None
            await node.client.close()

    # ---- public API ------------------------------------------------------------------

    def on_new_tip(self, callback: TipCallback) -> None:
        """Register `callback(best_hash_hex)`, awaited once per new template-node tip."""
        self._callbacks.append(callback)

    @property
    def healthy(self) -> bool:
        return any(node.state is NodeState.UP for node in self._nodes)

    @property
    def template_node(self) -> str | None:
        """Name of the node templates currently come from (first healthy), if any."""
        return self._template_node.name if self._template_node else None

    def status(self) -> dict[str, Any]:
        """Health summary for /healthz: {"healthy", "template_node", "nodes": {name: ...}}."""
        now = time.monotonic()
        return {
            "healthy": self.healthy,
            "template_node": self.template_node,
            "nodes": {node.name: self._node_status(node, now) for node in self._nodes},
        }

    @staticmethod
    def _node_status(node: _Node, now: float) -> dict[str, Any]:
        return {
            "up": node.state is NodeState.UP,
            "state": str(node.state),
            "last_error": node.last_error,
            "chain": node.chain,
            "height": node.height,
            "best_hash": node.best_hash_hex,
            "warming_up": node.state is NodeState.WARMING_UP,
            "initial_block_download": node.initial_block_download,
            "url": redact_url(node.config.rpc_url),
            "zmq_connected": node.zmq.connected if node.zmq else None,
            "state_for_s": round(now - node.state_since, 1),
        }

    async def get_block_template(self) -> dict[str, Any]:
        """getblocktemplate {"rules": ["segwit"]} from the first healthy node, failing over
        to the next healthy one; NodeError naming every node's problem if none can."""
        return await self._call_with_failover("getblocktemplate", {"rules": ["segwit"]})

    async def get_block_header(self, hash_hex: str) -> dict[str, Any]:
        """getblockheader <hash> true (height, bits, time, mediantime, ...) with the same
        failover as templates."""
        return await self._call_with_failover("getblockheader", hash_hex, True)

    async def _call_with_failover(self, method: str, *params: Any) -> dict[str, Any]:
        problems: list[str] = []
        for node in self._nodes:
            if node.state is not NodeState.UP:
                problems.append(f"{node.name}: {node.state} ({node.last_error})")
                continue
            try:
                answer = await node.client.call(method, *params)
                if not isinstance(answer, dict):
                    raise NodeError(f"{node.name}: {method} answer is not an object")
            except RPCError as err:
                if err.code not in _NODE_RPC_ERRORS:
                    raise  # a bad request (unknown block hash, ...) fails the same everywhere
                self._mark_down(node, err)  # the node cannot serve right now: fail over
                problems.append(f"{node.name}: {err}")
                continue
            except NodeError as err:
                self._mark_down(node, err)
                problems.append(f"{node.name}: {err}")
                continue
            return answer
        raise NodeError(f"no healthy node for {method}: " + "; ".join(problems))

    async def submit_block(self, block_hex: str) -> dict[str, str | None]:
        """Submit to every node concurrently, once. Returns node name -> None (accepted),
        bitcoind's reason string, or "error: <transport problem>"."""
        hash_hex = block_hash_hex(block_hex)
        results = await asyncio.gather(
            *(self._submit_one(node, block_hex, hash_hex) for node in self._nodes)
        )
        return {node.name: result for node, result in zip(self._nodes, results, strict=True)}

    async def _submit_one(self, node: _Node, block_hex: str, hash_hex: str) -> str | None:
        result: str | None
        try:
            answer = await node.client.call("submitblock", block_hex,
                                            timeout_s=self.submit_timeout_s)
            result = None if answer is None else str(answer)
        except RPCError as err:
            result = err.message or f"rpc error {err.code}"
        except NodeError as err:
            result = f"error: {err}"
        label = metrics.submit_result_label(result)
        metrics.BLOCKS_SUBMITTED.labels(node=node.name, result=label).inc()
        if result is None:
            log.info("block_accepted", node=node.name, block_hash=hash_hex)
        else:
            log.warning("block_rejected", node=node.name, block_hash=hash_hex, reason=result)
        return result

    # ---- health and tips -------------------------------------------------------------

    async def _watch(self, node: _Node) -> None:
        backoff_s = self.min_backoff_s
        while True:
            try:
                if node.state is not NodeState.UP:
                    await self._probe(node)
                else:
                    await self._poll_tip(node)
            except NodeError as err:
                self._mark_down(node, err)
            if node.state is NodeState.UP:
                backoff_s = self.min_backoff_s
                delay_s = self.poll_interval_s if node.zmq is None else self.zmq_poll_interval_s
            else:
                delay_s = backoff_s
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
            await self._sleep_or_wake(node, delay_s)

    @staticmethod
    async def _sleep_or_wake(node: _Node, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await node.wake.wait()
        node.wake.clear()

    async def _probe_safely(self, node: _Node) -> None:
        try:
            await self._probe(node)
        except NodeError as err:
            self._mark_down(node, err)

    async def _probe(self, node: _Node) -> None:
        """getblockchaininfo: reachability, auth, warm-up and chain in one call."""
        info = await node.client.call("getblockchaininfo")
        if not isinstance(info, dict):
            raise NodeError(f"{node.name}: getblockchaininfo answer is not an object")
        self._apply_info(node, info)
        if node.chain != self.chain:
            reason = f"node is on chain {node.chain!r} but [network] chain is {self.chain!r}"
            self._set_state(node, NodeState.WRONG_CHAIN, reason)
            return
        if self.chain == "main" and node.initial_block_download:
            # bitcoind refuses templates (-10) during IBD on main; test chains are exempt.
            raise NodeError(f"{node.name}: in initial block download at height {node.height}")
        best = _check_hash(info.get("bestblockhash"))
        node.best_hash_hex = best  # before UP, so a failover announces the current tip
        self._set_state(node, NodeState.UP, None)
        self._tip_seen(node, best)

    @staticmethod
    def _apply_info(node: _Node, info: dict[str, Any]) -> None:
        node.chain = str(info.get("chain"))
        blocks = info.get("blocks")
        node.height = blocks if isinstance(blocks, int) else None
        ibd = info.get("initialblockdownload")
        node.initial_block_download = ibd if isinstance(ibd, bool) else None
        node.info_stale = False

    async def _poll_tip(self, node: _Node) -> None:
        best = _check_hash(await node.client.call("getbestblockhash"))
        if best != node.best_hash_hex or node.info_stale:
            await self._probe(node)  # refreshes height, re-checks chain, fires if new
        else:
            self._tip_seen(node, best)

    def _on_zmq_hash(self, node: _Node, hash_hex: str) -> None:
        if node.state is not NodeState.UP:
            node.wake.set()  # a publishing node is probably back: re-probe now
            return
        node.info_stale = True
        node.wake.set()  # the watcher refreshes height and chain soon
        self._tip_seen(node, hash_hex)

    def _tip_seen(self, node: _Node, hash_hex: str) -> None:
        node.best_hash_hex = hash_hex
        if node is self._template_node and hash_hex != self._last_fired_hex:
            self._fire(hash_hex)

    def _fire(self, hash_hex: str) -> None:
        self._last_fired_hex = hash_hex
        if not self._running:
            return  # the tip known when start() returns is not announced
        if self._tips.full():
            self._tips.get_nowait()  # only the newest tips matter
        self._tips.put_nowait(hash_hex)

    async def _dispatch_tips(self) -> None:
        while True:
            hash_hex = await self._tips.get()
            log.info("new_tip", block_hash=hash_hex, template_node=self.template_node)
            for callback in list(self._callbacks):
                try:
                    async with asyncio.timeout(TIP_CALLBACK_TIMEOUT_S):
                        await callback(hash_hex)
                except Exception:
                    # A failing consumer must not stop tip delivery to the others.
                    log.exception("tip_callback_failed", block_hash=hash_hex)

    def _mark_down(self, node: _Node, err: NodeError) -> None:
        self._set_state(node, _classify(err), str(err))

    def _set_state(self, node: _Node, state: NodeState, error: str | None) -> None:
        node.last_error = error if state is not NodeState.UP else None
        if state is node.state:
            return
        previous, node.state = node.state, state
        node.state_since = time.monotonic()
        metrics.NODE_UP.labels(node=node.name).set(1 if state is NodeState.UP else 0)
        if state is NodeState.UP:
            log.info("node_up", node=node.name, chain=node.chain, height=node.height,
                     previous=str(previous))
        else:
            log.warning("node_down", node=node.name, state=str(state), error=error,
                        previous=str(previous), max_backoff_s=self.max_backoff_s)
        self._update_template_node()

    def _update_template_node(self) -> None:
        new = next((n for n in self._nodes if n.state is NodeState.UP), None)
        if new is self._template_node:
            return
        self._template_node = new
        log.info("template_node_changed", node=new.name if new else None)
        if new is not None and new.best_hash_hex and new.best_hash_hex != self._last_fired_hex:
            self._fire(new.best_hash_hex)
