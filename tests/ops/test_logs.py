"""Structured logs of `gridpool run` as an operator's log shipper sees them.

A real `gridpool run` process with `[log] json = true` against a devnet: every stderr line
is a JSON object with level, timestamp and event; a Stratum connection's lines carry its
session and worker, node lines their node; accepting shares writes nothing at info level;
and no RPC password (from an environment variable, a file or a cookie) ever appears, even
when a node refuses it. Without a JSON setting, a terminal gets the console renderer and
a pipe gets JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from miners.sim.stratum_client import StratumClient, StratumClientError

GRIDPOOL = Path(sys.executable).parent / "gridpool"
RPC_USER = "gridpool"
RPC_PASSWORD = "env-secret-3f9a1c77e2"  # the devnet's real password, given through the env
WRONG_PASSWORD = "file-secret-b81d04aa59"  # a wrong one, from a file: that node is refused
SHARES = 24
DIFFICULTY = 1e-4

CONFIG = """
data_dir = "{data_dir}"
[network]
chain = "regtest"
simulated_difficulty = 1e9   # shares are not blocks: the share path only
[[node]]
name = "main"
rpc_url = "{rpc_url}"
rpc_user = "{user}"
rpc_password_env = "GRIDPOOL_OPS_TEST_RPC_PASSWORD"
zmq_hashblock = "{zmq}"
[[node]]
name = "cookie"
rpc_url = "{rpc_url}"
rpc_cookie = "{cookie}"
[[node]]
name = "backup"
rpc_url = "{rpc_url}"
rpc_user = "{user}"
rpc_password_file = "{password_file}"
[stratum]
listen = ["127.0.0.1:0"]
min_difficulty = 1e-9
start_difficulty = {difficulty}
vardiff_retarget_interval_s = 3600.0
vardiff_retarget_shares = 1000000
[payout]
address = "bcrt1p39a4s4vdcw9kqa8w2t0rp7aj8kfxyw7mce5sk5d70x6wnnmpvt7skf2kxy"
[http]
listen = "127.0.0.1:0"
[log]
level = "info"
json = true
"""


def parse_lines(stderr: bytes) -> list[dict[str, Any]]:
    """Every line must be one JSON object with level, timestamp and event."""
    records = []
    for line in stderr.decode().splitlines():
        record = json.loads(line)  # a non-JSON line fails here, naming it
        assert {"event", "level", "timestamp"} <= set(record), line
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}, line
        datetime.fromisoformat(record["timestamp"])
        records.append(record)
    return records


async def read_banner(stdout: asyncio.StreamReader) -> str:
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = await stdout.readline()
            assert line, "gridpool run exited before printing its banner"
            lines.append(line.decode().rstrip())
    return "\n".join(lines)


async def mine(host: str, port: int) -> None:
    """A miner that authorizes, submits SHARES accepted shares and one duplicate."""
    client = StratumClient(host, port, "acct.rig7", suggest_difficulty=DIFFICULTY)
    await client.connect()
    try:
        await client.handshake()
        await client.wait_for(lambda: client.job is not None and client.difficulty)
        solution = None
        for _ in range(SHARES):
            solution = client.find_solution()
            assert await client.submit(solution)
        try:
            await client.submit(solution)
        except StratumClientError as err:
            assert err.code == 22  # duplicate
    finally:
        await client.close()


async def run_pool(tmp_path: Path, devnet: Any) -> tuple[bytes, bytes]:
    password_file = tmp_path / "backup-password"
    password_file.write_text(WRONG_PASSWORD + "\n")
    config = tmp_path / "gridpool.toml"
    config.write_text(CONFIG.format(
        data_dir=tmp_path / "data", rpc_url=devnet.rpc_url, user=RPC_USER, zmq=devnet.zmq_endpoint,
        cookie=devnet.cookie_path, password_file=password_file, difficulty=DIFFICULTY))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRIDPOOL_OPS_TEST_RPC_PASSWORD": RPC_PASSWORD}
    process = await asyncio.create_subprocess_exec(
        str(GRIDPOOL), "run", "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stderr_task = asyncio.create_task(process.stderr.read())
    try:
        banner = await read_banner(process.stdout)
        host, port = re.search(r"stratum\+tcp://([\d.]+):(\d+)", banner).groups()
        await mine(host, int(port))
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            stdout_rest = await process.stdout.read()
            assert await process.wait() == 0
        return banner.encode() + stdout_rest, await stderr_task
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_json_logs_with_context_no_share_spam_and_no_secrets(tmp_path: Path, make_devnet):
    devnet = await make_devnet(rpc_user=RPC_USER, rpc_password=RPC_PASSWORD, mempool_target=20)
    cookie = devnet.cookie_path.read_text().strip()
    stdout, stderr = await run_pool(tmp_path, devnet)

    for secret in (RPC_PASSWORD, WRONG_PASSWORD, cookie, cookie.partition(":")[2]):
        assert secret.encode() not in stdout + stderr, "a secret reached the output"

    records = parse_lines(stderr)
    events = [r["event"] for r in records]
    assert "pool_starting" in events and "pool_stopped" in events
    authorized = [r for r in records if r["event"] == "authorized"]
    assert len(authorized) == 1
    assert authorized[0]["worker"] == "acct.rig7" and authorized[0]["session"] is not None
    node_lines = [r for r in records if r["event"].startswith("node_")]
    assert {r["node"] for r in node_lines} >= {"main", "backup"}
    backup_down = [r for r in node_lines if r["node"] == "backup" and r["level"] != "info"]
    assert backup_down, "the node with the wrong password must be reported down"

    # SHARES accepted shares and a duplicate: no line repeats per share at info level.
    per_event: dict[str, int] = {}
    for record in records:
        if record["level"] != "debug":
            per_event[record["event"]] = per_event.get(record["event"], 0) + 1
    assert max(per_event.values()) < SHARES // 2, f"per-share logging at info: {per_event}"
    assert not [e for e in per_event if "share" in e], per_event


def test_config_error_does_not_echo_a_password_in_the_rpc_url(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text('[[node]]\nrpc_url = "http://gridpool:url-secret-77d1@127.0.0.1:8332"\n')
    result = subprocess.run([str(GRIDPOOL), "run", "--config", str(config)],
                            capture_output=True, timeout=30)
    assert result.returncode == 2
    assert b"node[0].rpc_url" in result.stderr
    assert b"url-secret-77d1" not in result.stdout + result.stderr


LOG_ONE_LINE = (
    "import structlog\n"
    "from pool.logs import configure_logging\n"
    "configure_logging(level='info')\n"
    "structlog.get_logger('t').bind(session='s1', worker='a.w').info('authorized', site='north')\n"
    "structlog.get_logger('t').debug('share_accepted')\n"
)


def test_console_in_a_terminal_json_in_a_pipe():
    piped = subprocess.run([sys.executable, "-c", LOG_ONE_LINE], capture_output=True,
                           timeout=30, check=True)
    (line,) = piped.stderr.decode().splitlines()  # the debug line is filtered out
    record = json.loads(line)
    assert record["event"] == "authorized"
    assert (record["session"], record["worker"], record["site"]) == ("s1", "a.w", "north")

    controller, terminal = pty.openpty()
    try:
        subprocess.run([sys.executable, "-c", LOG_ONE_LINE], stderr=terminal,
                       stdout=subprocess.DEVNULL, timeout=30, check=True)
        os.set_blocking(controller, False)
        text = os.read(controller, 65536).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)  # the console renderer colours a terminal
    assert "authorized" in plain and "worker=a.w" in plain and "site=north" in plain
    assert not plain.lstrip().startswith("{")
    assert "share_accepted" not in plain
