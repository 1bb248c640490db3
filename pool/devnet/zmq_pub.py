"""ZMQ notifications with bitcoind's framing: multipart [topic, body, sequence], the
sequence a 4-byte little-endian counter kept per topic (starting at 0).

hashblock: the 32-byte block hash in display order (as bitcoind sends it);
rawblock: the serialized block, with witness.
"""

import struct

import structlog
import zmq
import zmq.asyncio

from pool.errors import DevnetError

log = structlog.get_logger(__name__)

TOPICS = ("hashblock", "rawblock")
SEND_HIGH_WATER_MARK = 1000  # messages queued per subscriber before ZMQ drops (bitcoind's default)
LINGER_MS = 0  # drop unsent messages on close; a devnet has nothing to flush
_SEQ = struct.Struct("<I")


class ZmqPublisher:
    """One PUB socket on 127.0.0.1 for all topics."""

    def __init__(self, port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port  # 0 picks a free port
        self.endpoint = ""
        self._context: zmq.asyncio.Context | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._sequence = dict.fromkeys(TOPICS, 0)

    def start(self) -> str:
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, SEND_HIGH_WATER_MARK)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        try:
            self._socket.bind(f"tcp://{self.host}:{self.port or '*'}")
        except zmq.ZMQError as err:
            self.close()
            raise DevnetError(f"cannot bind ZMQ on {self.host}:{self.port}: {err}") from err
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("devnet_zmq_listening", endpoint=self.endpoint, topics=list(TOPICS))
        return self.endpoint

    async def publish_block(self, hash_le: bytes, raw: bytes) -> None:
        await self._send("hashblock", hash_le[::-1])
        await self._send("rawblock", raw)

    async def _send(self, topic: str, body: bytes) -> None:
        if self._socket is None:
            return
        sequence = self._sequence[topic]
        self._sequence[topic] = (sequence + 1) & 0xFFFFFFFF
        # PUB never blocks: past the high-water mark ZMQ drops, as it does for bitcoind.
        await self._socket.send_multipart([topic.encode(), body, _SEQ.pack(sequence)])

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=LINGER_MS)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None
