"""The recorder-level crash proof of "acknowledged ⇒ durable", on both backends: a child
process records shares and prints each acknowledged id; it is killed with SIGKILL
mid-stream; after a restart (which replays the journal) every printed id is in the store.
Run once with the database up all along, and once with it going away mid-stream (so
acknowledgements come from the journal when the kill lands)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from ledger_helpers import Outage

from pool.ledger.recorder import ShareRecorder

CHILD = Path(__file__).with_name("crash_child.py")
ACKS_BEFORE_OUTAGE = 1500
ACKS_BEFORE_KILL = 3000
CHILD_TIMEOUT_S = 60.0


async def read_acks(stdout: asyncio.StreamReader, acked: list[str], until: int) -> None:
    while len(acked) < until:
        line = await stdout.readline()
        if not line.endswith(b"\n"):
            raise AssertionError("child exited early")
        acked.append(line.decode().strip())


@pytest.mark.parametrize("scenario", ["database", "outage_midstream"])
async def test_sigkill_loses_no_acknowledged_share(
    outage: Outage, tmp_path: Path, scenario: str
) -> None:
    journal = tmp_path / "shares.journal"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), outage.url, str(journal), json.dumps(outage.options),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    acked: list[str] = []
    try:
        async with asyncio.timeout(CHILD_TIMEOUT_S):
            if scenario == "outage_midstream":
                await read_acks(proc.stdout, acked, ACKS_BEFORE_OUTAGE)
                await outage.down()
            await read_acks(proc.stdout, acked, ACKS_BEFORE_KILL)
    except (AssertionError, TimeoutError):
        proc.kill()
        stderr = await proc.stderr.read()
        raise AssertionError(f"child failed: {stderr.decode()[-2000:]}") from None
    proc.send_signal(signal.SIGKILL)
    rest = await proc.stdout.read()  # lines already written before the kill were acked too
    acked += [line for line in rest.decode().split("\n")[:-1] if line]
    assert await proc.wait() == -signal.SIGKILL

    await outage.up()
    ledger = outage.open()
    recorder = ShareRecorder(ledger, journal_path=journal)
    await recorder.start()  # the restart: replays whatever the journal holds
    await recorder.stop()
    missing = set(acked) - await ledger.known_share_ids(acked)
    assert not missing, f"{len(missing)} acknowledged shares lost, e.g. {sorted(missing)[:3]}"
    if scenario == "outage_midstream":
        assert recorder.replayed > 0  # the journal really carried acknowledged shares
    await ledger.close()
