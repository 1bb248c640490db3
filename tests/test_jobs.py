"""JobManager against the devnet over real RPC/ZMQ: first job, empty-block-first on a new
tip, refresh jobs, job retention, job ids, coinbase parts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pool.bitcoin.merkle import coinbase_merkle_branch
from pool.bitcoin.script import bip34_height_push, push_data
from pool.bitcoin.tx import Transaction
from pool.config import NodeConfig
from pool.errors import ConfigError
from pool.jobs import JobIdSource, JobManager, JobSettings, block_subsidy_sats
from pool.ledger import ShareRecord, open_ledger
from pool.ledger.planner import PayoutPlanner, PlanKey
from pool.node.nodeset import NodeSet
from pool.payouts import CoinbasePolicy
from pool.stratum.protocol import prevhash_to_stratum

SCRIPT_A = bytes.fromhex("0014" + "aa" * 20)
SCRIPT_B = bytes.fromhex("5120" + "bb" * 32)
SOLO_ADDRESS = "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9"


class JobLog:
    def __init__(self) -> None:
        self.jobs: list[Any] = []
        self.changed = asyncio.Event()

    def __call__(self, job: Any) -> None:
        self.jobs.append(job)
        self.changed.set()

    async def wait(self, count: int, timeout_s: float = 10.0) -> list[Any]:
        async with asyncio.timeout(timeout_s):
            while len(self.jobs) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.jobs


@pytest.fixture
async def manager_factory(devnet):
    made: list[tuple[NodeSet, JobManager]] = []

    async def make(manager_kwargs: dict | None = None,
                   **settings: Any) -> tuple[JobManager, JobLog]:
        node = NodeConfig(
            rpc_url=devnet.rpc_url,
            name="devnet",
            rpc_cookie=devnet.cookie_path,
            zmq_hashblock=devnet.zmq_endpoint,
        )
        nodes = NodeSet([node], chain="regtest")
        await nodes.start()
        manager = JobManager(nodes, JobSettings(**settings), chain="regtest", extranonce2_size=8,
                             **(manager_kwargs or {}))
        log = JobLog()
        manager.on_job(log)
        await manager.start()
        made.append((nodes, manager))
        return manager, log

    yield make
    for nodes, manager in made:
        await manager.stop()
        await nodes.stop()


async def test_first_job_matches_the_template(devnet, manager_factory):
    manager, log = await manager_factory(coinbase_tag="/test-tag/")
    (job,) = await log.wait(1)
    template = devnet.block_template()
    assert job.clean and job.kind == "full"
    assert job.template.height == devnet.chain.height + 1 == template["height"]
    assert job.template.tx_count == len(template["transactions"]) > 0
    txids_le = [bytes.fromhex(t["txid"])[::-1] for t in template["transactions"]]
    assert list(job.template.branch) == coinbase_merkle_branch(txids_le)
    params = job.notify_params(SCRIPT_A)
    tip_le = bytes.fromhex(devnet.chain.tip.hash_hex)[::-1]
    assert params[0] == job.job_id
    assert params[1] == prevhash_to_stratum(tip_le)
    assert params[4] == [h.hex() for h in job.template.branch]
    assert params[5] == f"{template['version']:08x}" and params[6] == template["bits"]
    assert int(params[7], 16) == job.ntime and params[8] is True
    coinb1 = bytes.fromhex(params[2])
    script_prefix = bip34_height_push(job.template.height) + push_data(b"/test-tag/") + b"\x0c"
    assert coinb1.endswith(script_prefix)  # then 4 + 8 extranonce bytes
    assert manager.get(job.job_id) is job and manager.current is job


async def test_new_tip_sends_empty_job_first_then_full(devnet, manager_factory):
    manager, log = await manager_factory()
    (first,) = await log.wait(1)
    await devnet.generate(1)
    _, empty, full = await log.wait(3)
    assert empty.kind == "empty" and empty.clean
    assert empty.template.branch == () and empty.template.tx_count == 0
    assert empty.template.height == first.template.height + 1
    assert empty.template.coinbase_value_sats == block_subsidy_sats(
        empty.template.height, "regtest"
    )
    assert empty.template.witness_commitment_script is None
    assert empty.template.prev_hash_hex == devnet.chain.tip.hash_hex
    assert full.kind == "full" and not full.clean and full.template.branch
    assert full.template.prev_hash_le == empty.template.prev_hash_le
    # One grace job after the new tip: the old tip's job is gone once the full job is out.
    assert manager.get(first.job_id) is None
    assert manager.get(empty.job_id) is empty and manager.get(full.job_id) is full
    assert empty.seen_hashes is full.seen_hashes is not first.seen_hashes
    assert empty.tip_seen_s is not None and full.tip_seen_s is None


async def test_without_empty_first_the_new_tip_job_is_full_and_clean(devnet, manager_factory):
    _, log = await manager_factory(empty_block_first=False)
    await log.wait(1)
    await devnet.generate(1)
    _, job = await log.wait(2)
    assert job.kind == "full" and job.clean and job.template.branch


async def test_periodic_refresh_is_not_clean(manager_factory):
    manager, log = await manager_factory(refresh_interval_s=0.2, max_jobs_per_tip=2)
    jobs = await log.wait(4)
    assert jobs[0].clean and all(not j.clean and j.kind == "refresh" for j in jobs[1:])
    assert len({j.template.prev_hash_le for j in jobs}) == 1
    assert len({j.job_id for j in jobs}) == 4
    assert manager.get(jobs[0].job_id) is None  # max_jobs_per_tip keeps the newest two
    assert manager.get(jobs[3].job_id) is jobs[3]


def test_job_ids_never_repeat_across_restarts():
    now = [1_700_000_000.0]
    first_run = JobIdSource(lambda: now[0])
    ids = [first_run.next() for _ in range(500)]  # 500 jobs in the same millisecond
    assert len(set(ids)) == 500
    now[0] += 1.0  # restart one second later
    second_run = JobIdSource(lambda: now[0])
    assert int(second_run.next(), 16) > max(int(i, 16) for i in ids)


async def test_coinbase_parts_per_payout_script(manager_factory):
    _, log = await manager_factory()
    (job,) = await log.wait(1)
    a, b = job.parts_for(SCRIPT_A), job.parts_for(SCRIPT_B)
    assert job.parts_for(SCRIPT_A) is a  # cached per script
    assert a.coinb1 == b.coinb1 and a.coinb2 != b.coinb2
    assert SCRIPT_A in a.coinb2 and SCRIPT_B in b.coinb2
    assert a.coinb1 is b.coinb1  # kept once per job
    line = job.notify_line(SCRIPT_A)
    assert job.notify_line(SCRIPT_A) is line is a.notify_line  # encoded once per script
    assert job.notify_line(SCRIPT_A, clean=False).endswith(b",false]}\n")
    job.retire()
    assert a.notify_line is None and job.parts_for(SCRIPT_A) is a  # coinb2 stays


def test_coinbase_tag_limit():
    with pytest.raises(ConfigError, match="coinbase_tag"):
        JobSettings(coinbase_tag="x" * 65)
    # 64 bytes (the most allowed) still fit a 100-byte scriptSig with the largest height
    # push and the largest extranonce; JobManager checks this at construction.
    manager = JobManager(
        None,
        JobSettings(coinbase_tag="x" * 64),
        chain="regtest",  # type: ignore[arg-type]
        extranonce2_size=8,
    )
    assert manager.layout.tag == b"x" * 64


def test_subsidy_halvings():
    assert block_subsidy_sats(149, "regtest") == 50 * 10**8
    assert block_subsidy_sats(150, "regtest") == 25 * 10**8
    assert block_subsidy_sats(840_000, "main") == 312_500_000
    assert block_subsidy_sats(64 * 210_000, "main") == 0


class ScriptedNode:
    """Stands in for NodeSet: serves queued templates and fires tips on demand."""

    def __init__(self) -> None:
        self.templates: list[dict[str, Any]] = []
        self.tip_callbacks: list[Any] = []

    async def get_block_template(self) -> dict[str, Any]:
        return self.templates.pop(0)

    def on_new_tip(self, callback: Any) -> None:
        self.tip_callbacks.append(callback)

    async def new_tip(self, tip_hex: str) -> None:
        for callback in self.tip_callbacks:
            await callback(tip_hex)


def gbt(prev_hex: str, height: int) -> dict[str, Any]:
    return {
        "version": 0x20000000,
        "previousblockhash": prev_hex,
        "transactions": [],
        "coinbasevalue": 50 * 10**8,
        "bits": "207fffff",
        "curtime": 1_700_000_000,
        "mintime": 1_699_999_000,
        "height": height,
    }


async def test_late_template_of_a_left_tip_is_ignored_and_a_reorg_back_works():
    tip_a, tip_b = "aa" * 32, "bb" * 32
    node = ScriptedNode()
    manager = JobManager(node, JobSettings(), chain="regtest", extranonce2_size=8)
    log = JobLog()
    manager.on_job(log)
    node.on_new_tip(manager._on_tip)  # what start() registers, without the refresh loop
    node.templates = [gbt(tip_a, 11)]
    await manager.refresh()
    # Tip B arrives, but the next template bitcoind hands out is still on A (fetched late).
    node.templates = [gbt(tip_a, 11), gbt(tip_b, 12)]
    await node.new_tip(tip_b)
    assert [j.kind for j in log.jobs] == ["full", "empty"]  # the late A template: no job
    await manager.refresh()
    assert log.jobs[-1].kind == "full" and log.jobs[-1].template.prev_hash_hex == tip_b
    # B is orphaned and A comes back: A's templates count again.
    node.templates = [gbt(tip_a, 11)]
    await node.new_tip(tip_a)
    empty, full = log.jobs[-2:]
    assert (empty.kind, empty.clean, full.kind) == ("empty", True, "full")
    assert full.template.prev_hash_hex == tip_a and full.template.height == 11
    assert empty.template.height == 11  # remembered for a tip the pool had left


async def test_solo_coinbase_pays_the_pool_fee(manager_factory):
    fee_script = SCRIPT_B
    policy = CoinbasePolicy(pool_script=None, fee_bps=150, fee_script=fee_script, dust_sats=1)
    _, log = await manager_factory({"policy": policy})
    (job,) = await log.wait(1)
    value = job.template.coinbase_value_sats
    parts = job.parts_for(SCRIPT_A)
    coinbase = Transaction.parse(parts.coinb1 + bytes(4 + 8) + parts.coinb2)
    fee = value * 150 // 10_000
    assert [(o.value_sats, o.script_pubkey) for o in coinbase.outputs[:2]] == [
        (value - fee, SCRIPT_A), (fee, fee_script)]
    assert coinbase.outputs[2].value_sats == 0  # the witness commitment
    assert job.payout_plan(SCRIPT_A).pool_fee_sats == fee
    # the scriptSig length the PPLNS size bound assumes is the real one
    script_sig = coinbase.inputs[0].script_sig
    assert len(script_sig) == JobManager(None, JobSettings(), chain="regtest",
                                         extranonce2_size=8).layout.script_sig_bytes(
        job.template.height)


async def test_pplns_jobs_take_their_plan_from_the_planner(devnet, manager_factory, tmp_path):
    """Every job's pool coinbase is the planner's split of that job's coinbasevalue, within
    max_coinbase_bytes (what does not fit is carried); the empty job of a new tip finds its
    plan prepared (no ledger read on that path)."""
    ledger = open_ledger(f"sqlite://{tmp_path}/ledger.db")
    await ledger.migrate()
    await ledger.record_shares([ShareRecord(
        share_id=f"s{i}", account=f"acct{i}", worker="w", site="", difficulty=1e-9 * (i + 1),
        network_difficulty=1.0, time=time.time(), job_id="j", hash_hex="00", is_block=False)
        for i in range(3)])
    for i in range(3):
        await ledger.set_payout_address(f"acct{i}", SOLO_ADDRESS)
    planner = PayoutPlanner(ledger, chain="regtest", pool_script=SCRIPT_B, fee_bps=100,
                            window_multiple=100.0, dust_sats=1, max_coinbase_bytes=250)
    manager, log = await manager_factory(
        {"policy": CoinbasePolicy(pool_script=SCRIPT_B), "planner": planner})
    (full,) = await log.wait(1)
    value = full.template.coinbase_value_sats
    assert sum(o.value_sats for o in full.planned.plan.outputs) == value
    # 250 bytes hold two account outputs: the smallest credit (acct0) is carried
    assert set(full.planned.plan.paid) == {"acct1", "acct2"}
    assert set(full.planned.plan.carried) == {"acct0"}
    parts = full.parts_for(SCRIPT_B)
    coinbase = Transaction.parse(parts.coinb1 + bytes(12) + parts.coinb2)
    assert coinbase.outputs[:-1] == list(full.planned.plan.outputs)  # + the commitment
    assert 220 < len(coinbase.serialize(with_witness=False)) <= 250
    assert full.parts_for(SCRIPT_A).coinb2 != parts.coinb2  # a solo script: no split
    height = full.template.height + 1  # the next tip's empty plan, prepared in background
    key = PlanKey(block_subsidy_sats(height, "regtest"), manager.layout.script_sig_bytes(height),
                  False)
    for _ in range(500):
        if key in planner._cache.plans:
            break
        await asyncio.sleep(0.01)
    prepared = planner._cache.plans[key]
    await devnet.generate(1)
    _, empty, _ = await log.wait(3)
    assert empty.kind == "empty" and empty.planned is prepared
    assert sum(o.value_sats for o in empty.planned.plan.outputs) == key.coinbasevalue
    await manager.stop()
    await planner.close()
    await ledger.close()
