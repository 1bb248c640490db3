"""Fleet controller benchmark: one site of N simulated miners over real loopback sockets.

    .venv/bin/python bench/fleet.py --miners 1000 10000

For each N: a child process serves N simulated miners' management APIs (the simulator's
LuxOS-style TCP 4028 and ESP-Miner HTTP servers, the simulator's model mix, no Stratum
side, shutdown 1 s, ramp 2 s, tuning range narrowed to --min-fraction of nominal so a cut
needs sleeps as well as turn-downs); this process runs the controller for the site and
prints:

- sweep_s: one telemetry sweep of every miner (first sweep also probes profiles/menus);
- commands_sent_s: budget cut -> every command acknowledged by its miner;
- *_cpu_s: CPU time of the controller process for that phase (the rest of the wall time is
  the simulated miners, which share the machine's cores; real miners answer in parallel);
- under_budget_s: budget cut -> a reading of the site under the new budget;
- restore_s: budget restored -> every miner seen ramping or mining again (staggered
  wake-ups; full hash rate follows one ramp time later).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHUTDOWN_S = 1.0
RAMP_S = 2.0


# -- the simulated site (child process) ----------------------------------------------------


async def serve(count: int, inventory: Path, min_fraction: float) -> None:
    from miners.sim.fleet import FleetSpec, plan
    from miners.sim.miner import SimulatedMiner
    from pool.logs import configure_logging

    configure_logging(level="warning")
    slots = plan(FleetSpec(pool_url="x", sites=1, miners_per_site=count))
    miners = []
    for i, slot in enumerate(slots):
        model = dataclasses.replace(
            slot.model, wake_ramp_s=RAMP_S, shutdown_s=SHUTDOWN_S,
            min_w=round(max(slot.model.min_w, min_fraction * slot.model.nominal_w), 1))
        miners.append(SimulatedMiner(f"s.{slot.miner_id}", model, pool=None, seed=i))
    gate = asyncio.Semaphore(64)

    async def start(m):
        async with gate:
            await m.start()

    await asyncio.gather(*(start(m) for m in miners))
    rows = [_row(m) for m in miners]
    tmp = inventory.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "sites": [{"id": "s", "miners": rows}]}))
    os.replace(tmp, inventory)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed


def _row(m) -> dict:
    model = m.model
    host, port = m.api_address
    return {"id": m.miner_id, "worker": m.miner_id, "model": model.key, "driver": model.api,
            "host": host, "port": port, "nominal_ths": model.nominal_ths,
            "nominal_w": model.nominal_w, "min_w": model.min_w, "max_w": model.max_w,
            "sleep_w": model.sleep_w, "wake_ramp_s": model.wake_ramp_s,
            "shutdown_s": model.shutdown_s}


# -- the controller (this process) ---------------------------------------------------------


async def measure(count: int, args: argparse.Namespace) -> dict[str, float]:
    from miners.allocate import AllocationSettings
    from miners.compliance import ControlSettings
    from miners.controller import FleetController
    from miners.fleet import PollSettings
    from miners.inventory import load_inventory_json

    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inv.json"
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", str(count), "--inventory", str(inventory),
            "--min-fraction", str(args.min_fraction), stdin=asyncio.subprocess.PIPE)
        try:
            started = time.monotonic()
            while not inventory.exists():
                if child.returncode is not None or time.monotonic() - started > 300:
                    raise RuntimeError("the simulated site did not start")
                await asyncio.sleep(0.2)
            (site,) = load_inventory_json(inventory)
            poll = PollSettings(interval_s=args.interval, request_timeout_s=3.0,
                                max_concurrency=args.max_concurrency)
            fleet = FleetController(
                [site], poll=poll,
                control=ControlSettings(readback_margin_s=0.2, comply_grace_s=3.0),
                allocation=AllocationSettings(min_on_s=0, min_off_s=0, wake_step_miners=count
                                              // 10 or 1, wake_step_interval_s=0.5))
            await fleet.start()
            controller = fleet.site("s")
            out = {"miners": count, "concurrency": poll.concurrency(count)}
            t = time.monotonic()
            await controller.sweep()
            out["first_sweep_s"] = time.monotonic() - t
            t, cpu = time.monotonic(), time.process_time()
            stats = await controller.sweep()
            out["sweep_s"] = time.monotonic() - t
            out["sweep_cpu_s"] = time.process_time() - cpu
            out["read_failures"] = stats.failed
            full = controller.budget_w
            run = asyncio.create_task(fleet.run())
            await asyncio.sleep(0.5)
            out |= await _cut(controller, full * args.cut)
            t = time.monotonic()
            controller.set_budget(full, source="bench")
            await _until(lambda: all(c.intent is None or (c.intent.running and c.intent.complied)
                                     for c in controller.controls.values()), 600)
            out["restore_s"] = time.monotonic() - t  # every miner confirmed ramping or mining
            complied = controller.history[out.pop("_first_ok")].at
            out["over_budget_after_compliance"] = sum(
                s.power_w > s.budget_w for s in controller.history if s.at >= complied)
            run.cancel()
            await fleet.close()
            return out
        finally:
            child.stdin.close()  # type: ignore[union-attr]
            await asyncio.wait_for(child.wait(), 120)


async def _cut(controller, budget: float) -> dict[str, float]:
    t0_wall, t0, cpu0 = time.time(), time.monotonic(), time.process_time()
    controller.set_budget(budget, source="bench")
    await _until(lambda: controller.status()["commands_in_flight"] > 0, 60)
    await controller.commands_idle()
    sent, cpu = time.monotonic() - t0, time.process_time() - cpu0
    await _until(lambda: any(s.at > t0_wall and s.power_w <= budget
                             for s in controller.history), 600)
    index, first = next((i, s) for i, s in enumerate(controller.history)
                        if s.at > t0_wall and s.power_w <= budget)
    commands = sum(1 for e in controller.events if e.kind == "command" and e.at > t0_wall)
    return {"commands": commands, "commands_sent_s": sent, "commands_cpu_s": cpu,
            "under_budget_s": first.at - t0_wall, "_first_ok": index}


async def _until(predicate, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--miners", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--cut", type=float, default=0.5, help="new budget as a share of the old")
    p.add_argument("--min-fraction", type=float, default=0.7)
    p.add_argument("--interval", type=float, default=10.0, help="poll interval, s")
    p.add_argument("--max-concurrency", type=int, default=4096,
                   help="cap on reads in flight (the simulator is one process: see docs)")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--inventory", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.inventory, args.min_fraction))
        return
    from pool.logs import configure_logging

    configure_logging(level="warning")
    print(f"cpu: {platform.processor() or platform.machine()}, python {platform.python_version()}"
          f", shutdown {SHUTDOWN_S} s, ramp {RAMP_S} s, cut to {args.cut:.0%}, "
          f"poll interval {args.interval} s, max concurrency {args.max_concurrency}")
    for count in args.miners:
        result = asyncio.run(measure(count, args))
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
