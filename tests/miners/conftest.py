"""Simulated miners for the fleet-controller tests: the simulator's management APIs and power
model on 127.0.0.1 ephemeral ports, without the Stratum side (no pool), with model timings
shortened so a sleep or a wake takes a fraction of a second."""

import asyncio
import dataclasses
import json

import pytest

from miners.inventory import KNOWN_MODELS, MinerSpec, SiteSpec
from miners.sim import models as sim_models
from miners.sim.faults import Faults
from miners.sim.miner import SimulatedMiner

FAST_RAMP_S = 0.6  # wake ramp of the shortened models (the real ones take 40-45 s)
FAST_SHUTDOWN_S = 0.3  # sleep command -> hashboards off (real: 1-5 s)


def fast_model(key: str, **overrides) -> sim_models.MinerModel:
    values = {"wake_ramp_s": FAST_RAMP_S, "shutdown_s": FAST_SHUTDOWN_S, **overrides}
    return dataclasses.replace(sim_models.get_model(key), **values)


def spec_for(miner: SimulatedMiner, site: str = "site1") -> MinerSpec:
    """The controller's view of a simulated miner (same numbers as the simulator's model)."""
    model = miner.model
    known = KNOWN_MODELS[model.key]
    spec_model = dataclasses.replace(
        known, min_w=model.min_w, wake_ramp_s=model.wake_ramp_s, shutdown_s=model.shutdown_s)
    host, port = miner.api_address
    return MinerSpec(miner.miner_id, site, spec_model, model.api, host, port, miner.worker)


@pytest.fixture
async def sim():
    """sim(key, miner_id=..., faults=..., **model_overrides) -> a started SimulatedMiner."""
    started: list[SimulatedMiner] = []

    async def start(key: str, miner_id: str | None = None, *, faults: dict | None = None,
                    api_host: str = "127.0.0.1", api_port: int = 0, seed: int | None = None,
                    **overrides) -> SimulatedMiner:
        miner = SimulatedMiner(
            miner_id or f"{key}-{len(started)}",
            fast_model(key, **overrides),
            pool=None,
            api_host=api_host,
            api_port=api_port,
            faults=Faults.from_mapping(faults or {}),
            seed=seed if seed is not None else len(started),
        )
        await miner.start()
        started.append(miner)
        return miner

    yield start
    await asyncio.gather(*(m.stop() for m in started), return_exceptions=True)


@pytest.fixture
async def sim_site(sim):
    """sim_site(site_id, model keys, min_fraction=None) -> (SiteSpec, {id: SimulatedMiner})."""

    async def build(site_id: str, keys: list[str], *, min_fraction: float | None = None):
        miners = {}
        for i, key in enumerate(keys):
            overrides = {}
            if min_fraction is not None:  # firmware whose presets stop at this share of nominal
                overrides["min_w"] = round(min_fraction * sim_models.get_model(key).nominal_w, 1)
            m = await sim(key, f"{site_id}.m{i + 1:03d}", seed=i, **overrides)
            m.worker = m.miner_id
            miners[m.miner_id] = m
        spec = SiteSpec(site_id, tuple(spec_for(m, site_id) for m in miners.values()),
                        worker_prefix=f"{site_id}.")
        return spec, miners

    return build


async def raw_cgminer(address, command: str, parameter: str | None = None) -> dict:
    """One request as an operator's tool would send it (for session games in tests)."""
    payload = {"command": command} | ({"parameter": parameter} if parameter else {})
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(json.dumps(payload).encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
    return json.loads(raw.rstrip(b"\x00"))


class GateRecorder:
    """A real WorkGate that records calls in order (what the pool side will implement)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.starved: set[str] = set()

    def starve(self, worker_name: str, reason: str) -> None:
        self.calls.append(("starve", worker_name, reason))
        self.starved.add(worker_name)

    def release(self, worker_name: str) -> None:
        self.calls.append(("release", worker_name, ""))
        self.starved.discard(worker_name)


async def wait_for(predicate, timeout_s: float, step_s: float = 0.02) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(step_s)


@pytest.fixture
def gate() -> GateRecorder:
    return GateRecorder()


@pytest.fixture
def raw():
    return raw_cgminer


@pytest.fixture
def until():
    return wait_for


@pytest.fixture
def to_spec():
    return spec_for
