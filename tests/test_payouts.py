"""Coinbase payouts: worked examples, then properties on random windows (hypothesis):
every satoshi accounted for, nothing negative, no dust output, the coinbase within its size
bound (checked on the real serialized transaction), balances carried and later paid."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pool.bitcoin.script import (
    p2pkh_script,
    p2sh_script,
    p2tr_script,
    p2wpkh_script,
    p2wsh_script,
    witness_commitment_script,
)
from pool.bitcoin.tx import NULL_INDEX, NULL_TXID_LE, Transaction, TxIn, TxOut
from pool.payouts import (
    DEFAULT_MAX_COINBASE_BYTES,
    CoinbasePlan,
    coinbase_bytes,
    credit_work,
    pplns_split,
    pplns_window_difficulty,
    solo_split,
)

POOL = p2wpkh_script(b"\x01" * 20)
MINER = p2tr_script(b"\x02" * 32)
COIN = 100_000_000
SCRIPT_KINDS = [
    p2pkh_script(b"\x03" * 20),
    p2sh_script(b"\x04" * 20),
    p2wpkh_script(b"\x05" * 20),
    p2wsh_script(b"\x06" * 32),
    p2tr_script(b"\x07" * 32),
]


def real_coinbase_size(plan: CoinbasePlan, script_sig_bytes: int, commitment: bool) -> int:
    """Serialize the coinbase a miner would receive and measure it."""
    outputs = list(plan.outputs)
    if commitment:
        outputs.append(TxOut(0, witness_commitment_script(bytes(32))))
    tx = Transaction(2, [TxIn(NULL_TXID_LE, NULL_INDEX, b"\x51" * script_sig_bytes)], outputs)
    return len(tx.serialize(with_witness=False))


def test_solo_split() -> None:
    plan = solo_split(312_500_000 + 12_345, 150, MINER, POOL)  # 1.5 % fee
    fee = (312_512_345 * 150) // 10_000
    assert [(o.value_sats, o.script_pubkey) for o in plan.outputs] == [
        (312_512_345 - fee, MINER), (fee, POOL)]
    assert plan.pool_fee_sats == fee
    assert solo_split(312_500_000, 0, MINER).outputs == (TxOut(312_500_000, MINER),)
    folded = solo_split(1000, 100, MINER, POOL, dust_sats=546)  # 10 sat fee: below dust
    assert folded.outputs == (TxOut(1000, MINER),)
    with pytest.raises(ValueError):
        solo_split(1000, 100, MINER)  # a fee but nowhere to pay it
    with pytest.raises(ValueError):
        solo_split(1000, 10_001, MINER, POOL)


def test_pplns_worked_example() -> None:
    """docs/ledger.md's example, to the satoshi."""
    plan = pplns_split(
        625_000_000, fee_bps=100,
        window=[("alice", 3), ("bob", 2), ("carol", 2), ("dave", 1)],
        scripts={"alice": SCRIPT_KINDS[2], "bob": SCRIPT_KINDS[4], "dave": SCRIPT_KINDS[0]},
        balances={"erin": 40_000, "dave": -5_000}, pool_script=POOL, dust_sats=100_000_000,
    )
    # fee 6,250,000; D = 618,750,000 split 3:2:2:1 over 8
    by = {a.account: a for a in plan.accounts}
    assert (by["alice"].credited_sats, by["bob"].credited_sats, by["carol"].credited_sats,
            by["dave"].credited_sats) == (232_031_250, 154_687_500, 154_687_500, 77_343_750)
    assert plan.paid == {"alice": 232_031_250, "bob": 154_687_500}
    assert plan.carried == {"carol": 154_687_500, "dave": 77_338_750, "erin": 40_000}
    assert plan.outputs == (TxOut(232_031_250, SCRIPT_KINDS[2]), TxOut(154_687_500,
                            SCRIPT_KINDS[4]), TxOut(238_281_250, POOL))
    assert plan.pool_output_sats == 6_250_000 + 154_687_500 + 77_343_750 == 238_281_250


def test_rounding_remainder_goes_to_the_most_work() -> None:
    assert credit_work(100, [("a", 1), ("b", 1), ("c", 1)]) == {"a": 34, "b": 33, "c": 33}
    assert credit_work(11, [("b", 2), ("a", 1), ("c", 2)]) == {"a": 2, "b": 5, "c": 4}
    assert credit_work(10, [("x", 0)]) == {}
    assert credit_work(0, [("x", 5)]) == {}


def test_empty_window_leaves_the_reward_to_the_pool() -> None:
    plan = pplns_split(5 * COIN, fee_bps=0, window=[], scripts={}, balances={},
                       pool_script=POOL)
    assert plan.outputs == (TxOut(5 * COIN, POOL),)
    assert plan.unallocated_sats == 5 * COIN
    zero = pplns_split(0, fee_bps=0, window=[("a", 1)], scripts={"a": MINER}, balances={},
                       pool_script=POOL)
    assert zero.outputs == (TxOut(0, POOL),)  # a transaction needs one output


def test_default_size_bound_limits_outputs_and_carries_the_rest() -> None:
    window = [(f"acct{i:03}", 1000 + i) for i in range(100)]
    scripts = {a: SCRIPT_KINDS[2] for a, _ in window}  # P2WPKH, 31-byte outputs
    plan = pplns_split(3 * COIN, fee_bps=100, window=window, scripts=scripts, balances={},
                       pool_script=POOL, dust_sats=1000, script_sig_bytes=40)
    assert real_coinbase_size(plan, 40, True) <= DEFAULT_MAX_COINBASE_BYTES
    assert 15 <= len(plan.paid) < 100
    smallest_paid = min(plan.paid.values())
    assert all(v <= smallest_paid for v in plan.carried.values())  # largest paid first


def test_carried_balances_are_paid_by_later_blocks() -> None:
    """Many blocks, a tight size bound: every credited satoshi is paid in the end."""
    accounts = [f"m{i}" for i in range(40)]
    scripts = {a: SCRIPT_KINDS[i % 5] for i, a in enumerate(accounts)}
    balances: dict[str, int] = {}
    credited = paid = 0
    for block in range(30):
        window = [(a, (i * 7919 + block * 104729) % 1000 + 1) for i, a in enumerate(accounts)]
        plan = pplns_split(COIN, fee_bps=200, window=window, scripts=scripts, balances=balances,
                           pool_script=POOL, dust_sats=200_000, max_coinbase_bytes=500)
        credited += sum(a.credited_sats for a in plan.accounts)
        paid += sum(plan.paid.values())
        balances = plan.carried
    window = []
    for _ in range(20):  # blocks with no new work drain the balances
        plan = pplns_split(COIN, fee_bps=200, window=window, scripts=scripts,
                           balances=balances, pool_script=POOL, dust_sats=1)
        paid += sum(plan.paid.values())
        balances = plan.carried
    assert balances == {}
    assert paid == credited


scripts_st = st.sampled_from(SCRIPT_KINDS)
accounts_st = st.sampled_from([f"acct{i}" for i in range(12)])


@settings(max_examples=400, deadline=None)
@given(
    coinbasevalue=st.integers(0, 21_000_000 * COIN),
    fee_bps=st.integers(0, 10_000),
    window=st.lists(st.tuples(accounts_st, st.integers(0, 2**80)), max_size=30),
    scripts=st.dictionaries(accounts_st, scripts_st),
    balances=st.dictionaries(accounts_st, st.integers(-10**7, 10**9)),
    dust=st.integers(1, 10**6),
    max_bytes=st.integers(150, 1500),
    script_sig_bytes=st.integers(2, 100),
    commitment=st.booleans(),
    max_outputs=st.one_of(st.none(), st.integers(0, 20)),
)
def test_pplns_properties(
    coinbasevalue: int, fee_bps: int, window: list, scripts: dict, balances: dict, dust: int,
    max_bytes: int, script_sig_bytes: int, commitment: bool, max_outputs: int | None,
) -> None:
    plan = pplns_split(coinbasevalue, fee_bps=fee_bps, window=window, scripts=scripts,
                       balances=balances, pool_script=POOL, dust_sats=dust,
                       max_coinbase_bytes=max_bytes, script_sig_bytes=script_sig_bytes,
                       witness_commitment=commitment, max_outputs=max_outputs)
    values = [o.value_sats for o in plan.outputs]
    assert sum(values) == coinbasevalue  # every satoshi of the reward, exactly
    assert all(v > 0 for v in values) or values == [0]
    miners = plan.outputs[: len(plan.paid)]
    assert all(o.value_sats >= dust for o in miners)  # no dust output
    assert max_outputs is None or len(plan.paid) <= max_outputs
    fixed = coinbase_bytes([POOL], script_sig_bytes=script_sig_bytes,
                           witness_commitment=commitment)
    if fixed <= max_bytes:
        assert real_coinbase_size(plan, script_sig_bytes, commitment) <= max_bytes
    else:
        assert plan.paid == {}
    assert plan.pool_fee_sats == coinbasevalue * fee_bps // 10_000
    credited = sum(a.credited_sats for a in plan.accounts)
    assert credited + plan.unallocated_sats + plan.pool_fee_sats == coinbasevalue
    assert plan.unallocated_sats in (0, coinbasevalue - plan.pool_fee_sats)
    for a in plan.accounts:
        assert a.credited_sats >= 0 and a.paid_sats >= 0
        assert a.balance_after == a.balance_before + a.credited_sats - a.paid_sats
        assert a.balance_before == balances.get(a.account, 0)
        if a.paid_sats:
            assert a.account in scripts and a.balance_after == 0
    delta = sum(a.balance_after - a.balance_before for a in plan.accounts)
    assert plan.pool_output_sats == plan.pool_fee_sats + plan.unallocated_sats + delta
    assert {a for a, b in balances.items() if b} <= {a.account for a in plan.accounts}


@settings(max_examples=300, deadline=None)
@given(amount=st.integers(0, 10**16),
       window=st.lists(st.tuples(accounts_st, st.integers(1, 2**90)), min_size=1, max_size=40))
def test_credit_work_is_proportional_and_exact(amount: int, window: list) -> None:
    credits = credit_work(amount, window)
    assert sum(credits.values()) == amount
    work: dict[str, int] = {}
    for a, w in window:
        work[a] = work.get(a, 0) + w
    total = sum(work.values())
    top = min(work, key=lambda a: (-work[a], a))
    for a, w in work.items():
        exact_floor = amount * w // total
        extra = credits.get(a, 0) - exact_floor
        assert extra == 0 or (a == top and 0 <= extra < len(work))


def test_window_difficulty() -> None:
    assert pplns_window_difficulty(1e14, 2.0) == 2e14
    with pytest.raises(ValueError):
        pplns_window_difficulty(0, 2.0)
