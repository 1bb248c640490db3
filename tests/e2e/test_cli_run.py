"""`gridpool run` as a real process: it prints where to point a miner, a miner mines a
block through it, and SIGTERM drains (client.reconnect) and exits cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from miners.sim.stratum_client import StratumClient
from pool.cli_run import DEMO_SIMULATED_DIFFICULTY, demo_config

CONFIG = """
data_dir = "{data_dir}"
[network]
chain = "regtest"
[stratum]
listen = ["127.0.0.1:0"]
min_difficulty = 1e-9
start_difficulty = 1e-4
[http]
listen = "127.0.0.1:0"
[log]
level = "warning"
"""


async def read_banner(stream: asyncio.StreamReader) -> str:
    lines = []
    async with asyncio.timeout(30):
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = await stream.readline()
            assert line, "gridpool run exited before printing its banner"
            lines.append(line.decode().rstrip())
    return "\n".join(lines)


async def test_run_mines_and_drains_on_sigterm(tmp_path: Path):
    config = tmp_path / "gridpool.toml"
    config.write_text(CONFIG.format(data_dir=tmp_path / "data"))
    gridpool = Path(sys.executable).parent / "gridpool"
    process = await asyncio.create_subprocess_exec(
        str(gridpool),
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = await read_banner(process.stdout)
        assert "embedded devnet" in banner and "Username" in banner
        host, port = re.search(r"stratum\+tcp://([\d.]+):(\d+)", banner).groups()
        client = StratumClient(host, int(port), "acct.rig1", suggest_difficulty=1e-4)
        await client.connect()
        await client.handshake()
        await client.wait_for(lambda: client.job is not None and client.difficulty)
        assert await client.submit(client.find_solution())
        process.send_signal(signal.SIGTERM)
        await client.wait_for(lambda: "client.reconnect" in client.methods_received())
        async with asyncio.timeout(20):
            assert await process.wait() == 0
        await client.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_run_reports_config_errors_with_the_key(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("[stratum]\nextranonce2_size = 12\n")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "gridpool"),
        "run",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"stratum.extranonce2_size" in stderr


def test_zero_config_is_a_regtest_demo_with_simulated_blocks():
    config = demo_config()
    assert config.network.chain == "regtest" and not config.nodes  # the embedded devnet
    assert config.stratum.listen == ("127.0.0.1:3333",) and config.http.listen.endswith(":8080")
    assert config.network.simulated_difficulty == DEMO_SIMULATED_DIFFICULTY
    # About one block a minute for a 2 MH/s demo fleet.
    assert 50 < DEMO_SIMULATED_DIFFICULTY * 2**32 / 2e6 < 70
    assert config.stratum.min_difficulty < config.stratum.start_difficulty < 0.01
