"""Merkle trees over txids/wtxids (Core's consensus/merkle.cpp) and the Stratum branch."""

from collections.abc import Sequence

from pool.bitcoin.hashes import sha256d


def merkle_root(hashes_le: Sequence[bytes]) -> bytes:
    """Bitcoin's merkle root: pair up each level, duplicating the last hash of an odd level.
    An empty list gives 32 zero bytes, as ComputeMerkleRoot does."""
    if not hashes_le:
        return bytes(32)
    level = list(hashes_le)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def coinbase_merkle_branch(txids_le: Sequence[bytes]) -> list[bytes]:
    """The Stratum V1 merkle branch for the coinbase (index 0).

    txids_le are the NON-coinbase txids in block order. At each level the branch takes the
    sibling of the coinbase path (index 1); the rest of the level is hashed upward.
    """
    branch: list[bytes] = []
    rest = list(txids_le)  # the level without its first (coinbase-path) entry
    while rest:
        branch.append(rest[0])
        tail = rest[1:]
        if len(tail) % 2:
            tail.append(tail[-1])
        rest = [sha256d(tail[i] + tail[i + 1]) for i in range(0, len(tail), 2)]
    return branch


def fold_coinbase_branch(coinbase_txid_le: bytes, branch: Sequence[bytes]) -> bytes:
    """Merkle root from the coinbase txid and its Stratum branch (what a miner computes)."""
    node = coinbase_txid_le
    for sibling in branch:
        node = sha256d(node + sibling)
    return node
