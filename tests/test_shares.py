"""Share validation on real data: a template made from a real mainnet segwit block, the
published slush-pool share vector, and every rejection code in its DESIGN §7 order."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from shared_data import TESTDATA

from miners.sim.stratum_client import MiningJob, spread_bits
from pool.bitcoin.block import Block
from pool.bitcoin.script import WITNESS_RESERVED_VALUE, find_witness_commitment, witness_commitment
from pool.bitcoin.target import bits_to_target
from pool.hashing import get_backend
from pool.jobs import CoinbaseLayout, CoinbaseParts, Job, JobManager, JobSettings, Template
from pool.shares import ShareValidator, share_target
from pool.stratum.protocol import ErrorCode, StratumError, prevhash_from_stratum

MAINNET_BLOCK = TESTDATA / (
    "mainnet_block_000000000000000000000c835b2adcaedc20fdf6ee440009c249452c726dafae.raw"
)
VECTORS = Path(__file__).parent / "stratum" / "vectors" / "esp_miner_shares.json"
PAYOUT = bytes.fromhex("0014" + "ab" * 20)
EXTRANONCE1 = bytes.fromhex("0a0b0c0d")
MASK = 0x1FFFE000
EASY_BITS = "207fffff"  # regtest's: every share is a block
DIFFICULTY = 1e-4


class StaticTemplates:
    """Stands in for bitcoind: serves one getblocktemplate answer."""

    def __init__(self, gbt: dict[str, Any]) -> None:
        self.gbt = gbt

    async def get_block_template(self) -> dict[str, Any]:
        return self.gbt

    def on_new_tip(self, callback: Any) -> None:
        pass


def gbt_from_block(path: Path, **overrides: Any) -> dict[str, Any]:
    """A getblocktemplate answer with exactly the transactions of a real block."""
    block = Block.parse(path.read_bytes())
    coinbase = block.txs[0]
    height_push = coinbase.inputs[0].script_sig
    commitment = find_witness_commitment(coinbase)
    assert commitment is not None
    return {
        "version": block.header.version,
        "previousblockhash": block.header.prev_hash_le[::-1].hex(),
        "transactions": [
            {"data": tx.serialize().hex(), "txid": tx.txid_hex(), "hash": tx.wtxid_hex()}
            for tx in block.txs[1:]
        ],
        "coinbasevalue": sum(out.value_sats for out in coinbase.outputs),
        "bits": f"{block.header.bits:08x}",
        "curtime": block.header.time,
        "mintime": block.header.time - 3600,
        "height": int.from_bytes(height_push[1 : 1 + height_push[0]], "little"),
        "default_witness_commitment": (bytes.fromhex("6a24aa21a9ed") + commitment).hex(),
        **overrides,
    }


@pytest.fixture(scope="module")
def mainnet_gbt() -> dict[str, Any]:
    return gbt_from_block(MAINNET_BLOCK)


async def published_job(gbt: dict[str, Any], **kwargs: Any) -> tuple[Job, ShareValidator]:
    jobs = JobManager(
        StaticTemplates(gbt), JobSettings(), chain="main", extranonce2_size=8, **kwargs
    )
    job = await jobs.refresh()
    return job, ShareValidator(jobs, extranonce2_size=8)


def mine(job: Job, difficulty: float, *, version_counter: int = 0, extranonce2: int = 0):
    """Grind a share as a miner would, from the job's own notify params."""
    mining_job = MiningJob.from_params(job.notify_params(PAYOUT))
    en2 = extranonce2.to_bytes(8, "little")
    root = mining_job.merkle_root_le(EXTRANONCE1, en2)
    bits = spread_bits(version_counter, MASK)
    version = (mining_job.version & ~MASK) | bits
    header = mining_job.header(root, ntime=mining_job.ntime, nonce=0, version=version)
    nonce = get_backend().scan(header, 0, 1 << 32, share_target(difficulty)[1])
    assert nonce is not None
    return {
        "extranonce2_hex": en2.hex(),
        "ntime_hex": f"{mining_job.ntime:08x}",
        "nonce_hex": f"{nonce:08x}",
        "version_bits_hex": f"{bits:08x}",
    }


def submit(validator: ShareValidator, job: Job, difficulty: float = DIFFICULTY, **fields: Any):
    args = {
        "worker": "w",
        "job_id": job.job_id,
        "extranonce1": EXTRANONCE1,
        "version_mask": MASK,
        "payout_script": PAYOUT,
        "difficulty": difficulty,
        "version_bits_hex": None,
        **fields,
    }
    return validator.validate(**args)


def code_of(validator: ShareValidator, job: Job, **fields: Any) -> int:
    with pytest.raises(StratumError) as info:
        submit(validator, job, **fields)
    return int(info.value.code)


def test_published_share_vector_through_the_validator():
    """ESP-Miner's slush-pool share, validated by the pool's own path (coinbase split where
    a pool would split it): accepted at difficulty 683, too low at 684, then a duplicate."""
    vector = json.loads(VECTORS.read_text())["shares"][0]
    coinbase = bytes.fromhex(vector["coinbase"])
    ntime = int(vector["ntime"], 16)
    template = Template(
        height=791433,
        prev_hash_le=prevhash_from_stratum(vector["prevhash"]),
        version=int(vector["version"], 16),
        bits=int(vector["nbits"], 16),
        curtime=ntime,
        mintime=ntime - 600,
        coinbase_value_sats=0,
        witness_commitment_script=None,
        tx_count=0,
        tx_blob=b"",
        txids_le=(),
        branch=tuple(bytes.fromhex(b) for b in vector["branch"]),
        fetched_s=time.monotonic(),
    )
    job = Job(
        job_id="v",
        template=template,
        layout=CoinbaseLayout(b"", 4, 8, 1),
        clean=True,
        kind="full",
        ntime=ntime,
        block_target=bits_to_target(template.bits),
        seen_hashes=set(),
        tip_seen_s=None,
    )
    cut = 60  # inside the scriptSig: 4 bytes extranonce1, 8 bytes extranonce2
    job._parts[PAYOUT] = CoinbaseParts(coinbase[:cut], coinbase[cut + 12 :])
    jobs = JobManager(StaticTemplates({}), JobSettings(), chain="main", extranonce2_size=8)
    jobs._jobs["v"] = job  # serve this hand-made job as JobManager.get does
    validator = ShareValidator(jobs, extranonce2_size=8)
    fields = {
        "extranonce1": coinbase[cut : cut + 4],
        "extranonce2_hex": coinbase[cut + 4 : cut + 12].hex(),
        "ntime_hex": vector["ntime"],
        "nonce_hex": vector["nonce"],
        "version_mask": 0,
    }
    assert code_of(validator, job, difficulty=684.0, **fields) == ErrorCode.LOW_DIFFICULTY
    share = submit(validator, job, 683.0, **fields)
    assert int(share.hash_difficulty) == vector["difficulty_int"]
    assert not share.is_block
    assert code_of(validator, job, difficulty=683.0, **fields) == ErrorCode.DUPLICATE


async def test_rejection_codes_in_order(mainnet_gbt):
    job, validator = await published_job(mainnet_gbt)
    good = mine(job, DIFFICULTY)
    assert code_of(validator, job, job_id="nope", **good) == ErrorCode.JOB_NOT_FOUND
    assert code_of(validator, job, job_id=123, **good) == ErrorCode.JOB_NOT_FOUND
    for bad_en2 in ("00" * 7, "00" * 9, "zz" * 8, 42):
        assert code_of(validator, job, **{**good, "extranonce2_hex": bad_en2}) == ErrorCode.OTHER
    for ntime in (job.mintime - 1, job.ntime + 7201):
        fields = {**good, "ntime_hex": f"{ntime:08x}"}
        assert code_of(validator, job, **fields) == ErrorCode.OTHER
    assert code_of(validator, job, **{**good, "nonce_hex": "xyz"}) == ErrorCode.OTHER
    outside = {**good, "version_bits_hex": f"{0x00001000:08x}"}  # bit 12: not in the mask
    assert code_of(validator, job, **outside) == ErrorCode.OTHER
    # The data is fixed, so this header's hash is too; it is not among the 1 in ~430,000
    # hashes that meet difficulty 1e-4.
    low = {**good, "nonce_hex": "00000000"}
    assert code_of(validator, job, **low) == ErrorCode.LOW_DIFFICULTY
    share = submit(validator, job, **good)
    assert share.difficulty == DIFFICULTY and not share.is_block
    assert code_of(validator, job, **good) == ErrorCode.DUPLICATE


async def test_ntime_bounds_are_inclusive(mainnet_gbt):
    job, validator = await published_job(mainnet_gbt)
    good = mine(job, 1e-12)  # every hash is a share at this difficulty
    for ntime in (job.mintime, job.ntime + 7200):
        share = submit(validator, job, 1e-12, **{**good, "ntime_hex": f"{ntime:08x}"})
        assert share.header[68:72] == ntime.to_bytes(4, "little")


async def test_version_rolled_resubmission_is_not_a_duplicate(mainnet_gbt):
    job, validator = await published_job(mainnet_gbt)
    first = mine(job, DIFFICULTY, version_counter=0)
    rolled = mine(job, DIFFICULTY, version_counter=5)
    # Same extranonce2, ntime; only the version bits differ (and the nonce they need).
    assert first["extranonce2_hex"] == rolled["extranonce2_hex"]
    a = submit(validator, job, **first)
    b = submit(validator, job, **rolled)
    assert a.hash_le != b.hash_le
    assert int.from_bytes(b.header[:4], "little") & MASK == spread_bits(5, MASK)
    # The same header under another job id of the same tip is still a duplicate.
    assert b.hash_le in job.seen_hashes


async def test_block_candidate_assembles_a_valid_segwit_block(mainnet_gbt):
    job, validator = await published_job({**mainnet_gbt, "bits": EASY_BITS})
    share = submit(validator, job, **mine(job, DIFFICULTY))
    assert share.is_block
    block = Block.parse(job.block_bytes(share.header, share.coinbase))
    assert len(block.txs) == len(mainnet_gbt["transactions"]) + 1
    assert block.header.serialize() == share.header
    assert block.compute_merkle_root_le() == share.header[36:68]
    coinbase = block.txs[0]
    assert coinbase.inputs[0].witness == [WITNESS_RESERVED_VALUE]
    assert coinbase.serialize(with_witness=False) == share.coinbase
    assert [o.value_sats for o in coinbase.outputs] == [mainnet_gbt["coinbasevalue"], 0]
    assert coinbase.outputs[0].script_pubkey == PAYOUT
    wtxids = [tx.wtxid_le() for tx in block.txs]
    assert find_witness_commitment(coinbase) == witness_commitment(wtxids)
    assert [tx.txid_hex() for tx in block.txs[1:]] == [
        t["txid"] for t in mainnet_gbt["transactions"]
    ]


async def test_simulated_difficulty_decides_block_candidates(mainnet_gbt):
    job, validator = await published_job(
        {**mainnet_gbt, "bits": EASY_BITS}, simulated_difficulty=1.0
    )
    share = submit(validator, job, **mine(job, DIFFICULTY))
    assert not share.is_block  # meets regtest's target, not the simulated difficulty 1
    assert job.block_target == bits_to_target(0x1D00FFFF)


def test_share_target_is_cached_and_exact():
    target, target_le = share_target(1.0)
    assert target == 0xFFFF << 208 and target_le == target.to_bytes(32, "little")
    assert share_target(1.0) is share_target(1.0)
