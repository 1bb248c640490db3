"""Child process for test_store.py: accept one command, print its acknowledgement, then
hang until killed (argv: store URL, scratch dir)."""

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, for grid.grid_helpers

from grid.grid_helpers import RecordingSink, grid_settings

from miners.grid.service import GridService
from miners.grid.store import open_grid_store
from miners.grid.timeline import GridEvent


async def main(url: str) -> None:
    store = open_grid_store(url)
    await store.migrate()
    service = GridService(grid_settings(), store, RecordingSink())
    await service.start()
    now = time.time()
    ack = await service.submit(GridEvent("killed", "A", 100_000.0, now, now + 600, created=now),
                               channel="http", actor="tso")
    reply = {"event_id": ack.event.event_id, "under_limit_by": ack.under_limit_by}
    print("ACK " + json.dumps(reply), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
