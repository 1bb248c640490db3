"""The closed loop against simulated miners over real TCP/HTTP: budget cuts and restores
on a 3 x 50 mixed fleet, a miner that ignores sleep, and dead, slow or hijacked APIs.

The simulated models here have their tuning range narrowed to 70-100 % of nominal (firmware
whose presets stop there), so a 50 % cut cannot be met by turning down alone and the
least efficient miners must sleep; ramp and shutdown take a fraction of a second.
"""

import asyncio
import contextlib
import itertools
import time

import pytest

from miners.allocate import AllocationSettings
from miners.compliance import ControlSettings
from miners.controller import FleetController
from miners.errors import BudgetError, UnknownSiteError
from miners.fleet import MinerState, PollSettings
from miners.sim.fleet import FleetSpec, plan

INTERVAL_S = 0.25
SHUTDOWN_S = 0.3  # conftest.FAST_SHUTDOWN_S
POLL = PollSettings(interval_s=INTERVAL_S, request_timeout_s=0.4, unreachable_after=1)
CONTROL = ControlSettings(command_timeout_s=1.0, comply_grace_s=0.3, retry_backoff_s=0.1,
                          retry_backoff_max_s=0.4, max_attempts=3, readback_margin_s=0.05,
                          plan_interval_s=0.1)
ALLOCATION = AllocationSettings(min_on_s=0.0, min_off_s=0.5, wake_step_miners=8,
                                wake_step_interval_s=0.3)
SLACK_S = 0.5  # scheduling slack on a shared 2-core machine


@pytest.fixture
async def controlled(sim_site):
    """controlled({site: [model keys]}, gate=...) -> a running FleetController."""
    made = []

    async def build(layout: dict[str, list[str]], *, gate=None, control=CONTROL,
                    allocation=ALLOCATION, narrow_range=True):
        sites, sims = [], {}
        for site_id, keys in layout.items():
            spec, miners = await sim_site(site_id, keys,
                                          min_fraction=0.7 if narrow_range else None)
            sites.append(spec)
            sims.update(miners)
        fleet = FleetController(sites, poll=POLL, control=control, allocation=allocation,
                                gate=gate)
        await fleet.start()
        task = asyncio.create_task(fleet.run())
        made.append((fleet, task))
        await _until(lambda: all(r.state is MinerState.MINING for c in fleet.sites.values()
                                 for r in c.fleet.records.values()), 5)
        return fleet, sims

    yield build
    for fleet, task in made:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fleet.close()


async def _until(predicate, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


def mix(n: int, site: int) -> list[str]:
    """The simulator's seeded model mix for one site."""
    slots = plan(FleetSpec(pool_url="x", sites=3, miners_per_site=n))
    return [s.model.key for s in slots if s.site == f"site{site}"]


def samples_after(controller, t0: float):
    return [s for s in controller.history if s.at > t0]


async def test_cut_and_restore_one_site_of_three(controlled):
    fleet, sims = await controlled({f"site{i}": mix(50, i) for i in (1, 2, 3)})
    site = fleet.site("site2")
    await asyncio.sleep(2 * INTERVAL_S)
    full_power = site.history[-1].power_w
    full_hashrate = sum(s.hashrate_hs for s in list(site.history)[-3:]) / 3
    before = {sid: len([e for e in c.events if e.kind == "command"])
              for sid, c in fleet.sites.items()}
    full_budget = site.budget_w

    # -- cut by 50 %: under budget within the shutdown time plus one poll interval
    t_cut = time.time()
    ack = fleet.set_budget("site2", full_budget / 2, source="test")
    budget = ack.budget_w
    assert ack.under_budget_by > t_cut
    await _until(lambda: any(s.power_w <= budget for s in samples_after(site, t_cut)), 5)
    first_ok = next(s for s in samples_after(site, t_cut) if s.power_w <= budget)
    assert first_ok.at - t_cut <= SHUTDOWN_S + INTERVAL_S + SLACK_S, first_ok.at - t_cut
    t_ok = time.time()
    await asyncio.sleep(6 * INTERVAL_S)
    assert all(s.power_w <= budget for s in samples_after(site, t_ok))
    assert full_power > budget * 1.5

    plan_now = site.plan
    order = [m for m in plan_now.efficiency_order]
    running = [order.index(m) for m, d in plan_now.decisions.items() if d.running]
    asleep = [order.index(m) for m, d in plan_now.decisions.items() if not d.running]
    assert asleep and running and max(running) < min(asleep), "the most efficient keep running"
    for miner_id, d in plan_now.decisions.items():
        assert (sims[miner_id].power.state.value == "sleeping") == (not d.running)
    for at, p in site.plans:  # no step of any plan since the cut exceeds the budget
        if at >= t_cut:
            assert p.feasible and all(s.power_w <= p.limit_w + 1e-6 for s in p.steps)
    for sid in ("site1", "site3"):
        assert len([e for e in fleet.sites[sid].events if e.kind == "command"]) == before[sid]

    # -- restore: staggered wake-ups, never over the budget, hash rate back
    t_restore = time.time()
    fleet.set_budget("site2", full_budget, source="test")
    await _until(lambda: all(sims[m].power.state.value == "mining"
                             for m in plan_now.decisions), 10)
    await _until(lambda: site.history[-1].hashrate_hs >= 0.95 * full_hashrate, 5)
    assert all(s.power_w <= full_budget for s in samples_after(site, t_restore))
    # When each wake command was sent (its event is stamped at the miner's ack): the stagger is
    # about when commands go out, and acks of one step spread out on a loaded machine.
    wakes = sorted(e.at - e.detail["seconds"] for e in site.events
                   if e.kind == "command" and e.at > t_restore and e.detail["action"] == "wake")
    assert len(wakes) == len(asleep)
    batches = _batches(wakes, gap_s=0.15)
    assert len(batches) >= 2 and all(len(b) <= ALLOCATION.wake_step_miners for b in batches)
    starts = [b[0] for b in batches]
    assert all(b - a >= ALLOCATION.wake_step_interval_s - 0.05
               for a, b in itertools.pairwise(starts))


def _batches(times: list[float], gap_s: float) -> list[list[float]]:
    out: list[list[float]] = []
    for t in times:
        if out and t - out[-1][-1] < gap_s:
            out[-1].append(t)
        else:
            out.append([t])
    return out


async def test_a_miner_that_ignores_sleep_is_retried_flagged_starved_and_released(
        controlled, gate):
    fleet, sims = await controlled({"A": ["s19jpro", "s21", "s21", "m50s", "bitaxe-gamma"]},
                                   gate=gate)
    site = fleet.site("A")
    liar = "A.m001"  # the S19j Pro: least efficient, first to be slept
    sims[liar].update_faults({"ignore_sleep": True})
    budget = site.budget_w * 0.6
    fleet.set_budget("A", budget)
    await _until(lambda: gate.calls, 8)
    kinds = [(e.kind, e.detail.get("attempt")) for e in site.events if e.miner == liar]
    assert [k for k in kinds if k[0] == "command"] == [("command", 1), ("command", 2),
                                                       ("command", 3)]
    assert [k for k, _ in kinds if k in ("overdue", "flagged")] == [
        "overdue", "overdue", "overdue", "flagged"]
    assert gate.calls[0][:2] == ("starve", liar) and "ignores sleep" in gate.calls[0][2]
    assert site.controls[liar].flagged and site.controls[liar].starved
    # the rest of the site makes up for it
    t_flag = time.time()
    await _until(lambda: any(s.power_w <= budget for s in samples_after(site, t_flag)), 5)
    assert sims[liar].power.state.value == "mining"  # still drawing full power
    assert site.status()["starved"] == [liar]
    # it starts obeying: the next resend puts it to sleep, the pool feeds it again
    sims[liar].update_faults({"ignore_sleep": False})
    await _until(lambda: gate.calls[-1][0] == "release", 5)
    assert gate.calls[-1] == ("release", liar, "") and not site.controls[liar].flagged
    assert [e.kind for e in site.events if e.miner == liar][-3:] == [
        "complied", "unflagged", "released"]


async def test_dead_slow_and_hijacked_apis_do_not_stall_the_site(controlled, raw):
    keys = ["s21", "s19jpro", "m50s"] * 8 + ["bitaxe-gamma"] * 6
    fleet, sims = await controlled({"B": keys})
    site = fleet.site("B")
    fleet.set_budget("B", site.budget_w * 0.9)  # every miner gets a command: sessions open
    await _until(lambda: any(e.kind == "complied" for e in site.events)
                 and site.plan.settled and not site.status()["commands_in_flight"], 5)
    hung, slow, crashed = ["B.m001", "B.m004"], ["B.m007"], ["B.m010", "B.m013"]
    for m in hung:
        sims[m].update_faults({"api_unresponsive": True})
    sims[slow[0]].update_faults({"api_delay_s": 1.0})
    for m in crashed:
        sims[m].crash()
    commanded = {e.miner for e in site.events if e.kind == "command"}
    hijacked = [m for m in ("B.m002", "B.m005", "B.m008", "B.m011") if m in commanded][:3]
    assert hijacked  # S19j Pros, turned down first: they hold a session now
    for m in hijacked:  # an operator's tool kills our session and opens its own
        sid = (await raw(sims[m].api_address, "session"))["SESSION"][0]["SessionID"]
        await raw(sims[m].api_address, "logoff", sid)
        await raw(sims[m].api_address, "logon")
    await _until(lambda: all(site.fleet.records[m].state is MinerState.UNREACHABLE
                             for m in hung + slow + crashed), 3)
    budget = site.budget_w * 0.45
    t_cut = time.time()
    fleet.set_budget("B", budget)
    await _until(lambda: any(s.power_w <= budget for s in samples_after(site, t_cut)), 5)
    first_ok = next(s for s in samples_after(site, t_cut) if s.power_w <= budget)
    assert first_ok.at - t_cut <= SHUTDOWN_S + INTERVAL_S + 0.4 + SLACK_S  # + one deadline
    assert site.fleet.last_sweep.seconds < 2 * POLL.request_timeout_s + 0.3
    for m in hijacked:
        driver = site.fleet.records[m].driver
        assert driver.logons == 2  # lost, logged on again, adopted the tool's session
    for m in hijacked:  # and the command went through on the recovered session
        assert sims[m].sleep_requested or sims[m].power.target_w < sims[m].model.nominal_w
    dead = site.fleet.records[crashed[0]]
    assert dead.transitions[-1].new is MinerState.UNREACHABLE and dead.transitions[-1].at > 0
    assert site.status()["miners"]["unreachable"] == 5


async def test_a_miner_woken_behind_our_back_is_put_back_to_sleep(controlled):
    fleet, sims = await controlled({"C": ["s19jpro", "s21", "s21"]})
    site = fleet.site("C")
    fleet.set_budget("C", site.budget_w * 0.5)

    def slept_and_confirmed() -> str | None:
        for e in site.events:
            if e.kind == "complied" and e.detail["action"] == "sleep":
                return e.miner
        return None

    await _until(slept_and_confirmed, 5)
    victim = slept_and_confirmed()
    sims[victim].wake()  # someone else wakes it
    await _until(lambda: any(e.kind == "drift" and e.miner == victim for e in site.events), 5)
    await _until(lambda: sims[victim].power.state.value == "sleeping", 5)


async def test_budget_input_is_checked(controlled):
    fleet, _ = await controlled({"D": ["s21"]})
    with pytest.raises(UnknownSiteError):
        fleet.set_budget("nowhere", 1000)
    for bad in (-1.0, float("nan"), float("inf"), 1e12, True):
        with pytest.raises(BudgetError):
            fleet.set_budget("D", bad)
    assert fleet.site("D").set_budget(0).budget_w == 0.0
