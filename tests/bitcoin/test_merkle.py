"""Merkle roots and the Stratum coinbase branch."""

import pytest

from pool.bitcoin.hashes import sha256, sha256d
from pool.bitcoin.merkle import coinbase_merkle_branch, fold_coinbase_branch, merkle_root


def _hashes(n: int) -> list[bytes]:
    return [sha256(i.to_bytes(4, "little")) for i in range(n)]


def test_one_transaction() -> None:
    (txid,) = _hashes(1)
    assert merkle_root([txid]) == txid
    assert coinbase_merkle_branch([]) == []
    assert fold_coinbase_branch(txid, []) == txid


def test_two_transactions() -> None:
    a, b = _hashes(2)
    assert merkle_root([a, b]) == sha256d(a + b)
    assert coinbase_merkle_branch([b]) == [b]


def test_three_transactions_duplicate_the_last() -> None:
    a, b, c = _hashes(3)
    expected = sha256d(sha256d(a + b) + sha256d(c + c))
    assert merkle_root([a, b, c]) == expected
    assert coinbase_merkle_branch([b, c]) == [b, sha256d(c + c)]


def test_empty_list_is_zero_root() -> None:
    assert merkle_root([]) == bytes(32)


@pytest.mark.parametrize("count", range(1, 18))
def test_branch_fold_equals_root(count: int) -> None:
    txids = _hashes(count)
    branch = coinbase_merkle_branch(txids[1:])
    assert len(branch) == (count - 1).bit_length()
    assert fold_coinbase_branch(txids[0], branch) == merkle_root(txids)
    # The branch does not depend on the coinbase: a new extranonce needs no new branch.
    other = sha256(b"another coinbase")
    assert fold_coinbase_branch(other, branch) == merkle_root([other, *txids[1:]])
