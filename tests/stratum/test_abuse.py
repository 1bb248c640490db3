"""Hostile and broken clients: garbage never crashes the server or hurts other sessions;
limits (line length, timeouts, per-IP, cost, send buffer) are enforced; drain works."""

from __future__ import annotations

import asyncio
import json

import pytest

from pool import metrics


class RawClient:
    """A bare TCP connection for sending what no real miner would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, app) -> RawClient:
        host, port = app.stratum.addresses[0]
        return cls(*await asyncio.open_connection(host, port, limit=1 << 20))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def call(self, payload) -> dict:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.send(data + b"\n")
        return await self.read()

    async def read(self, timeout_s: float = 5.0) -> dict:
        async with asyncio.timeout(timeout_s):
            return json.loads(await self.reader.readline())

    async def closed_by_server(self, timeout_s: float = 5.0) -> bool:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    if not await self.reader.read(65536):
                        return True
                except ConnectionError:
                    return True

    def close(self) -> None:
        self.writer.close()


def disconnects(reason: str) -> float:
    return metrics.SESSIONS_DISCONNECTED.labels(reason=reason)._value.get()


async def assert_still_served(client) -> None:
    """A well-behaved miner keeps getting shares accepted."""
    assert await client.submit(client.find_solution())


async def test_garbage_gets_errors_and_never_hurts_others(devnet, pool_factory, client_factory):
    # The garbage below costs ~540: past the soft limit the sender is slowed (its reading
    # paused until the cost decays), never cut off, and nobody else notices.
    app = await pool_factory(
        [devnet], network={"simulated_difficulty": 1e9}, stratum={"cost_decay_per_s": 100.0}
    )
    good = await client_factory(app)
    raw = await RawClient.connect(app)
    answers = [
        await raw.call(b"{not json"),
        await raw.call(b"[1, 2, 3]"),
        await raw.call(b'"just a string"'),
        await raw.call({"id": 1, "method": "mining.nonsense", "params": []}),
        await raw.call({"id": 2, "method": 42, "params": []}),
        await raw.call({"id": 3, "method": "mining.subscribe", "params": "notalist"}),
        await raw.call({"id": 4, "method": "mining.configure", "params": [5, 6]}),
        await raw.call({"id": 5, "method": "mining.suggest_difficulty", "params": [{"a": 1}]}),
        await raw.call({"id": 6, "method": "mining.authorize", "params": [[1], None]}),
        await raw.call({"id": 7, "method": "mining.submit", "params": [1, 2, 3, 4, 5]}),
        await raw.call(
            b'{"id": 8, "method": "mining.subscribe", "params": ['
            + b"[" * 5000
            + b"]" * 5000
            + b"]}"
        ),
    ]
    codes = [a["error"][0] for a in answers]
    assert codes == [20, 20, 20, 20, 20, 20, 20, 20, 24, 25, 20]
    assert all(a["result"] is None and a["error"][2] is None for a in answers)
    await assert_still_served(good)
    subscribed = await raw.call({"id": 9, "method": "mining.subscribe", "params": []})
    assert subscribed["error"] is None  # the garbage sender itself is still served
    raw.close()


async def test_a_one_mib_line_is_dropped_unparsed(devnet, pool_factory, client_factory):
    # Soft limit = hard limit: no slowed-down phase, so the third line is read at once.
    app = await pool_factory(
        [devnet], network={"simulated_difficulty": 1e9}, stratum={"cost_soft_limit": 1000.0}
    )
    good = await client_factory(app)
    raw = await RawClient.connect(app)
    answer = await raw.call(b'{"id": 1, "method": "' + b"a" * (1 << 20) + b'"}')
    assert answer["error"][:2] == [20, "line too long"]
    assert (await raw.call({"id": 2, "method": "mining.subscribe", "params": []}))["result"]
    await assert_still_served(good)
    # Over the cost limit (400 a line, hard limit 1000): disconnected, and the IP is banned.
    for _ in range(2):
        await raw.send(b"x" * (1 << 20) + b"\n")
    assert await raw.closed_by_server()
    late = await RawClient.connect(app)
    assert await late.closed_by_server()  # refused while banned
    assert disconnects("banned") >= 1


async def test_a_client_that_never_reads_is_dropped(devnet, pool_factory, client_factory):
    app = await pool_factory(
        [devnet],
        network={"simulated_difficulty": 1e9},
        stratum={
            "send_buffer_high_bytes": 4096,
            "send_buffer_max_bytes": 65536,
            "max_messages_per_s": 1e6,
            "ban_s": 0.0,
        },
    )
    good = await client_factory(app)
    raw = await RawClient.connect(app)
    before = disconnects("send_buffer_full") + disconnects("send_stall")
    request = json.dumps({"id": 1, "method": "mining.subscribe", "params": ["x" * 100]})
    # Ask for ~20 MB of answers and never read one.
    with pytest.raises(ConnectionError):
        for _ in range(200):
            await raw.send((request + "\n").encode() * 1000)
            await assert_still_served(good)
    assert disconnects("send_buffer_full") + disconnects("send_stall") == before + 1
    await assert_still_served(good)


async def test_pre_authorize_and_idle_timeouts(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], stratum={"pre_auth_timeout_s": 0.5, "idle_timeout_s": 2.5})
    silent = await RawClient.connect(app)
    authorized = await client_factory(app)
    assert await silent.closed_by_server(timeout_s=3.0)
    assert authorized.connected  # authorized in time: only the idle timeout applies
    await authorized.wait_for(lambda: not authorized.connected, timeout_s=5.0)
    assert disconnects("pre_auth_timeout") >= 1 and disconnects("idle_timeout") >= 1


async def test_connections_per_ip_and_total_sessions(devnet, pool_factory):
    app = await pool_factory([devnet], stratum={"max_connections_per_ip": 2})
    first, second = await RawClient.connect(app), await RawClient.connect(app)
    third = await RawClient.connect(app)
    assert await third.closed_by_server()
    assert (await first.call({"id": 1, "method": "mining.subscribe", "params": []}))["result"]
    first.close()
    await asyncio.sleep(0.1)
    fourth = await RawClient.connect(app)  # a slot is free again
    assert (await fourth.call({"id": 1, "method": "mining.subscribe", "params": []}))["result"]
    second.close()
    fourth.close()

    small = await pool_factory([devnet], stratum={"max_sessions": 1})
    only = await RawClient.connect(small)
    assert (await only.call({"id": 1, "method": "mining.subscribe", "params": []}))["result"]
    assert await (await RawClient.connect(small)).closed_by_server()
    only.close()


async def test_drain_sends_client_reconnect(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], stratum={"drain_grace_s": 1.0})
    clients = [await client_factory(app) for _ in range(3)]
    drain = asyncio.create_task(app.stratum.drain())
    for client in clients:
        await client.wait_for(lambda c=client: "client.reconnect" in c.methods_received())
        assert client.methods_received()[-2:] == ["client.show_message", "client.reconnect"]
    await drain
    assert not app.stratum.sessions
    with pytest.raises(OSError):  # the listener is closed
        await asyncio.open_connection(clients[0].host, clients[0].port)
