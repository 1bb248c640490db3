"""ZMQ `hashblock` subscriber (bitcoind -zmqpubhashblock=tcp://...).

libzmq reconnects a SUB socket by itself (RECONNECT_IVL doubling up to RECONNECT_IVL_MAX);
on top of that a socket error rebuilds the socket after a back-off. Messages are
[b"hashblock", 32-byte hash in display order, 4-byte little-endian sequence]. ZMQ can lose
messages (slow joiner, publisher restart), so NodeSet also polls getbestblockhash slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

log = structlog.get_logger(__name__)

TOPIC = b"hashblock"
RECONNECT_IVL_MS = 100  # ms, first libzmq reconnect delay
RECONNECT_IVL_MAX_MS = 10_000  # ms, cap of libzmq's doubling reconnect delay
MAX_MESSAGE_BYTES = 1024  # bytes; hashblock frames are 32 bytes, anything big is dropped
RCVHWM = 64  # messages queued before libzmq drops; only the newest tip matters anyway
REBUILD_BACKOFF_MAX_S = 10.0  # seconds between socket rebuilds after a ZMQ error
# ZMTP heartbeats find a half-open TCP session (publisher host gone, NAT dropped the
# flow) that would otherwise stay "connected" and silent for hours; libzmq then reconnects.
HEARTBEAT_IVL_MS = 10_000  # ms between pings
HEARTBEAT_TIMEOUT_MS = 30_000  # ms without any traffic before the session is dropped


def _log_task_death(task: asyncio.Task[None]) -> None:
    # The receive loop runs until cancelled; any other end is a bug that must be seen.
    if not task.cancelled() and task.exception() is not None:
        log.error("zmq_task_died", task=task.get_name(), exc_info=task.exception())


class HashblockSubscriber:
    """Calls `on_hash(hash_hex)` for every hashblock message from `endpoint`.

    Owns one task; `start()` creates it and `stop()` cancels it and closes the socket.
    `connected` follows libzmq's monitor events (True once the TCP session is up).
    """

    def __init__(self, endpoint: str, on_hash: Callable[[str], None], *, name: str = "") -> None:
        self.endpoint = endpoint
        self.name = name or endpoint
        self.connected = False
        self._on_hash = on_hash
        self._task: asyncio.Task[None] | None = None
        self._last_seq: int | None = None
        self._ctx = zmq.asyncio.Context()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"zmq-hashblock-{self.name}")
            self._task.add_done_callback(_log_task_death)

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ctx.destroy(linger=0)

    async def _run(self) -> None:
        backoff_s = 0.1
        while True:
            try:
                await self._receive_until_error()
            except zmq.ZMQError as err:
                log.warning("zmq_socket_error", node=self.name, endpoint=self.endpoint,
                            error=str(err), retry_in_s=backoff_s)
                self.connected = False
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, REBUILD_BACKOFF_MAX_S)

    async def _receive_until_error(self) -> None:
        sock = self._ctx.socket(zmq.SUB)
        monitor = sock.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED
        )
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            sock.setsockopt(zmq.RCVHWM, RCVHWM)
            sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
            sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
            sock.setsockopt(zmq.SUBSCRIBE, TOPIC)
            sock.connect(self.endpoint)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_monitor(monitor))
                tg.create_task(self._receive(sock))
        except* zmq.ZMQError as group:
            raise group.exceptions[0] from None
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) != 3 or frames[0] != TOPIC or len(frames[1]) != 32 or len(frames[2]) != 4:
            log.debug("zmq_unexpected_message", node=self.name, frames=len(frames))
            return
        (seq,) = struct.unpack("<I", frames[2])
        if self._last_seq is not None and seq != (self._last_seq + 1) & 0xFFFFFFFF:
            log.info("zmq_hashblock_gap", node=self.name, expected=self._last_seq + 1, got=seq)
        self._last_seq = seq
        self._on_hash(frames[1].hex())

    async def _watch_monitor(self, monitor: zmq.asyncio.Socket) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())["event"]
            connected = event == zmq.EVENT_CONNECTED
            if event == zmq.EVENT_CONNECT_RETRIED and not self.connected:
                continue
            if connected != self.connected:
                self.connected = connected
                log.info("zmq_connected" if connected else "zmq_disconnected",
                         node=self.name, endpoint=self.endpoint)
