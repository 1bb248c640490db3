"""Coinbase payouts (pure, exact integer satoshis; docs/ledger.md has the worked rules).

- solo: the finder's address gets `coinbasevalue - fee`; the pool fee output gets
  `fee = floor(coinbasevalue * fee_bps / 10_000)` (folded into the miner's output when it
  would be below `dust_sats`).
- pplns (non-custodial coinbase payouts): the same fee, then the rest `D` is credited to
  the accounts in the PPLNS window by their work: `floor(D * work / total_work)` each, and
  the few satoshis this rounding leaves (fewer than the number of accounts) to the account
  with the most work (ties: the smallest account name). An account is paid its credit plus
  its carried balance in its own output when it has a payout address, the sum reaches
  `dust_sats`, and the output still fits the coinbase size bound (largest sums first). All
  else is carried as balances, and the value behind them sits in the pool's output until a
  later coinbase pays it: the pool output is `coinbasevalue - sum(miner outputs)` exactly.

Invariants (tests/test_payouts.py checks them on random inputs): outputs sum to
`coinbasevalue`; no output is zero or negative; no miner output is below dust; the coinbase
stays within `max_coinbase_bytes`; for every account `balance_after = balance_before +
credited - paid`; and the pool output = fee + unallocated + the net increase of balances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pool.bitcoin.serialize import ser_compact_size
from pool.bitcoin.tx import TxOut

BPS = 10_000  # fee_bps is in basis points: 100 bps = 1 %
DEFAULT_MAX_COINBASE_BYTES = 700  # stock Antminer firmware rejects larger coinbases
MAX_SCRIPT_SIG_BYTES = 100  # consensus maximum of a coinbase scriptSig
WITNESS_COMMITMENT_OUTPUT_BYTES = 8 + 1 + 38  # value, script length, OP_RETURN aa21a9ed…
DEFAULT_DUST_SATS = 10_000  # smallest miner output; below it the amount is carried


@dataclass(frozen=True, slots=True)
class AccountPayout:
    """One account's part of a coinbase (field names match pool.ledger.PayoutRow)."""

    account: str
    credited_sats: int  # earned from this coinbase's reward
    paid_sats: int  # its output in this coinbase (0 when carried)
    balance_before: int
    balance_after: int  # balance_before + credited_sats - paid_sats


@dataclass(frozen=True, slots=True)
class CoinbasePlan:
    """The payout outputs of one coinbase (the caller appends the witness commitment)."""

    outputs: tuple[TxOut, ...]  # miner outputs (largest first), then the pool output if > 0
    pool_fee_sats: int
    pool_output_sats: int  # fee + unallocated + net carried balances (may be 0: omitted)
    unallocated_sats: int  # reward with no work in the window to credit it to
    accounts: tuple[AccountPayout, ...] = ()  # sorted by account

    @property
    def paid(self) -> dict[str, int]:
        return {a.account: a.paid_sats for a in self.accounts if a.paid_sats}

    @property
    def carried(self) -> dict[str, int]:
        """Balances left after this coinbase (nonzero only)."""
        return {a.account: a.balance_after for a in self.accounts if a.balance_after}


@dataclass(frozen=True, slots=True)
class CoinbasePolicy:
    """How a coinbase pays a session's payout script, apart from PPLNS plans (which need
    the ledger): a solo miner's address gets the reward minus the pool fee (solo_split);
    the pool's own script (`pool_script`, account usernames without PPLNS) gets all of it.
    """

    pool_script: bytes | None = None
    fee_bps: int = 0
    fee_script: bytes | None = None  # the fee output of solo coinbases
    dust_sats: int = 0  # a solo fee below this is folded into the miner's output

    def plan_for(self, coinbasevalue: int, payout_script: bytes) -> CoinbasePlan:
        if payout_script == self.pool_script:
            return CoinbasePlan((TxOut(coinbasevalue, payout_script),), 0, coinbasevalue, 0)
        if not self.fee_bps:
            return CoinbasePlan((TxOut(coinbasevalue, payout_script),), 0, 0, 0)
        return solo_split(coinbasevalue, self.fee_bps, payout_script, self.fee_script,
                          dust_sats=self.dust_sats)


def pool_fee(coinbasevalue: int, fee_bps: int) -> int:
    _check_amounts(coinbasevalue, fee_bps)
    return coinbasevalue * fee_bps // BPS


def pplns_window_difficulty(network_difficulty: float, multiple: float) -> float:
    """N of "the last N share-difficulty": a multiple of the network difficulty."""
    if not (network_difficulty > 0 and multiple > 0):
        raise ValueError("network difficulty and PPLNS multiple must be positive")
    return network_difficulty * multiple


def output_bytes(script_pubkey: bytes) -> int:
    return 8 + len(ser_compact_size(len(script_pubkey))) + len(script_pubkey)


def coinbase_bytes(
    output_scripts: Iterable[bytes], *, script_sig_bytes: int, witness_commitment: bool
) -> int:
    """Size of the coinbase as miners receive it (non-witness serialization)."""
    scripts = list(output_scripts)
    n_outputs = len(scripts) + (1 if witness_commitment else 0)
    return (
        4 + 1 + 36 + len(ser_compact_size(script_sig_bytes)) + script_sig_bytes + 4  # input
        + len(ser_compact_size(n_outputs)) + sum(output_bytes(s) for s in scripts)
        + (WITNESS_COMMITMENT_OUTPUT_BYTES if witness_commitment else 0)
        + 4  # version + locktime
    )


def solo_split(
    coinbasevalue: int,
    fee_bps: int,
    miner_script: bytes,
    fee_script: bytes | None = None,
    *,
    dust_sats: int = 0,
) -> CoinbasePlan:
    """The finder takes all but the pool fee (which needs `fee_script` when nonzero)."""
    fee = pool_fee(coinbasevalue, fee_bps)
    if fee < dust_sats:
        fee = 0  # a sub-dust fee output would cost the pool more than it is worth
    if fee and fee_script is None:
        raise ValueError("a pool fee needs the pool's fee script")
    outputs = [TxOut(coinbasevalue - fee, miner_script)]
    if fee:
        outputs.append(TxOut(fee, fee_script))  # type: ignore[arg-type]
    return CoinbasePlan(tuple(outputs), fee, fee, 0)


def pplns_split(
    coinbasevalue: int,
    *,
    fee_bps: int,
    window: Iterable[tuple[str, int]],
    scripts: Mapping[str, bytes],
    balances: Mapping[str, int],
    pool_script: bytes,
    dust_sats: int = DEFAULT_DUST_SATS,
    max_coinbase_bytes: int = DEFAULT_MAX_COINBASE_BYTES,
    script_sig_bytes: int = MAX_SCRIPT_SIG_BYTES,
    witness_commitment: bool = True,
    max_outputs: int | None = None,
) -> CoinbasePlan:
    """Split one coinbase among the PPLNS window's accounts (see the module docstring).

    `window`: (account, work) pairs, work in any integer unit (pool.ledger work units);
    `scripts`: payout scriptPubKey of each account with a registered address;
    `balances`: carried balances (negative ones are debts from reverted orphan blocks);
    `script_sig_bytes`: the job's real coinbase scriptSig length, for the size bound.
    """
    fee = pool_fee(coinbasevalue, fee_bps)
    if dust_sats < 1:
        raise ValueError("dust_sats must be at least 1 satoshi (no zero-value outputs)")
    credits = credit_work(coinbasevalue - fee, window)
    unallocated = coinbasevalue - fee - sum(credits.values())
    names = sorted(set(credits) | {a for a, b in balances.items() if b})
    totals = {a: credits.get(a, 0) + balances.get(a, 0) for a in names}
    eligible = sorted(
        (a for a in names if a in scripts and totals[a] >= dust_sats),
        key=lambda a: (-totals[a], a),
    )
    chosen = _fit_outputs(eligible, totals, scripts, coinbasevalue, pool_script,
                          max_coinbase_bytes, script_sig_bytes, witness_commitment, max_outputs)
    paid_sum = sum(totals[a] for a in chosen)
    outputs = [TxOut(totals[a], scripts[a]) for a in chosen]
    pool_output = coinbasevalue - paid_sum
    if pool_output or not outputs:  # a transaction needs at least one output
        outputs.append(TxOut(pool_output, pool_script))
    paid = set(chosen)
    accounts = tuple(
        AccountPayout(a, credits.get(a, 0), totals[a] if a in paid else 0, balances.get(a, 0),
                      0 if a in paid else totals[a])
        for a in names
    )
    return CoinbasePlan(tuple(outputs), fee, pool_output, unallocated, accounts)


def credit_work(amount: int, window: Iterable[tuple[str, int]]) -> dict[str, int]:
    """`amount` split by work: floor of each exact share, the remainder to the account with
    the most work (ties: smallest name). Empty when there is no work (nothing credited)."""
    work: dict[str, int] = {}
    for account, units in window:
        if not isinstance(units, int) or units < 0:
            raise ValueError(f"work of {account!r} must be a non-negative integer")
        if units:
            work[account] = work.get(account, 0) + units
    total = sum(work.values())
    if total == 0 or amount == 0:
        return {}
    credits = {a: amount * w // total for a, w in work.items()}
    top = min(work, key=lambda a: (-work[a], a))
    credits[top] += amount - sum(credits.values())
    return {a: c for a, c in credits.items() if c}


def _fit_outputs(
    eligible: list[str],
    totals: Mapping[str, int],
    scripts: Mapping[str, bytes],
    coinbasevalue: int,
    pool_script: bytes,
    max_coinbase_bytes: int,
    script_sig_bytes: int,
    witness_commitment: bool,
    max_outputs: int | None,
) -> list[str]:
    """Accounts that get an output, largest first, while the coinbase (with the pool
    output always counted) stays within the size bound and the reward."""
    chosen: list[str] = []
    base = coinbase_bytes([pool_script], script_sig_bytes=script_sig_bytes,
                          witness_commitment=witness_commitment)
    n_outputs = 1 + (1 if witness_commitment else 0)
    outputs_size = 0  # bytes of the chosen miner outputs
    paid = 0
    # Once not even the smallest eligible output fits, nothing further can: stop there
    # (the same choice as walking on, without walking thousands of carried accounts).
    shortest = min((scripts[a] for a in eligible), key=len, default=b"")
    smallest = output_bytes(shortest)
    for account in eligible:
        if max_outputs is not None and len(chosen) >= max_outputs:
            break
        if base + outputs_size + smallest > max_coinbase_bytes:
            break
        if paid + totals[account] > coinbasevalue:
            continue  # balances larger than this reward wait for a later block
        extra = output_bytes(scripts[account])
        count_growth = (len(ser_compact_size(n_outputs + len(chosen) + 1))
                        - len(ser_compact_size(n_outputs)))
        if base + outputs_size + extra + count_growth > max_coinbase_bytes:
            continue  # a shorter script further down may still fit
        chosen.append(account)
        outputs_size += extra
        paid += totals[account]
    return chosen


def _check_amounts(coinbasevalue: int, fee_bps: int) -> None:
    if not isinstance(coinbasevalue, int) or coinbasevalue < 0:
        raise ValueError(f"coinbasevalue must be a non-negative integer, got {coinbasevalue!r}")
    if not isinstance(fee_bps, int) or not 0 <= fee_bps <= BPS:
        raise ValueError(f"fee_bps must be an integer in [0, {BPS}], got {fee_bps!r}")
