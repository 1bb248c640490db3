"""Child process of test_crash.py: records shares forever through a ShareRecorder and
prints each share id once `record()` has returned (i.e. acknowledged), one per line,
flushed, until it is killed.

usage: crash_child.py LEDGER_URL JOURNAL_PATH OPTIONS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from pool.ledger import ShareRecord, open_ledger
from pool.ledger.recorder import ShareRecorder
from pool.logs import configure_logging

WORKERS = 32  # concurrent "sessions", so acks come from many batches at once


async def main(url: str, journal: Path, options: dict) -> None:
    recorder = ShareRecorder(open_ledger(url, **options), journal_path=journal,
                             retry_min_s=0.05, retry_max_s=0.2)
    await recorder.start()

    async def session(worker: int) -> None:
        for n in range(10**9):
            share = ShareRecord(
                share_id=f"crash:{worker}:{n}", account=f"acct{worker % 4}",
                worker=f"w{worker}", site="site", difficulty=65536.0,
                network_difficulty=1e12, time=time.time(), job_id="crash",
                hash_hex=f"{worker:032x}{n:032x}", is_block=False,
            )
            await recorder.record(share)
            sys.stdout.write(share.share_id + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(session(w) for w in range(WORKERS)))


if __name__ == "__main__":
    configure_logging(level="warning", json=True)  # stderr; stdout carries only share ids
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])))
