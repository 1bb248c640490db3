"""What a Stratum V1 miner works on, decoded as firmware decodes it: the job from a
mining.notify (coinbase parts, merkle branch, the word-swapped prevhash swapped back), the
header it builds, and a solution ready for mining.submit. Pure: no I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pool.bitcoin.hashes import sha256d
from pool.bitcoin.target import hash_le_to_int, target_to_difficulty


def _unswap_words(data: bytes) -> bytes:
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def spread_bits(counter: int, mask: int) -> int:
    """Place the low bits of `counter` into the set bits of `mask` (the rolled version bits)."""
    out, bit = 0, 0
    for position in range(32):
        if mask >> position & 1:
            out |= ((counter >> bit) & 1) << position
            bit += 1
    return out


@dataclass(frozen=True, slots=True)
class MiningJob:
    """One mining.notify, decoded as firmware decodes it."""

    job_id: str
    prev_hash_le: bytes
    coinb1: bytes
    coinb2: bytes
    branch: tuple[bytes, ...]
    version: int
    bits: int
    ntime: int
    clean: bool

    @classmethod
    def from_params(cls, params: list[Any]) -> MiningJob:
        job_id, prevhash, coinb1, coinb2, branch, version, bits, ntime, clean = params[:9]
        return cls(
            job_id,
            _unswap_words(bytes.fromhex(prevhash)),
            bytes.fromhex(coinb1),
            bytes.fromhex(coinb2),
            tuple(bytes.fromhex(h) for h in branch),
            int(version, 16),
            int(bits, 16),
            int(ntime, 16),
            bool(clean),
        )

    def coinbase(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        return self.coinb1 + extranonce1 + extranonce2 + self.coinb2

    def merkle_root_le(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        root = sha256d(self.coinbase(extranonce1, extranonce2))
        for sibling in self.branch:
            root = sha256d(root + sibling)
        return root

    def header(self, merkle_root_le: bytes, *, ntime: int, nonce: int, version: int) -> bytes:
        return (
            struct.pack("<I", version)
            + self.prev_hash_le
            + merkle_root_le
            + struct.pack("<III", ntime, self.bits, nonce)
        )


@dataclass(slots=True)
class Solution:
    """A header that meets the difficulty the client was mining at."""

    job: MiningJob
    extranonce2: bytes
    ntime: int
    nonce: int
    version: int
    version_bits: int | None  # sent as the 6th submit param when version rolling is on
    difficulty: float
    hash_le: bytes

    @property
    def hash_difficulty(self) -> float:
        """The difficulty this hash actually reached (at least `difficulty`)."""
        return target_to_difficulty(max(hash_le_to_int(self.hash_le), 1))

    def submit_params(self, worker: str) -> list[Any]:
        params: list[Any] = [
            worker,
            self.job.job_id,
            self.extranonce2.hex(),
            f"{self.ntime:08x}",
            f"{self.nonce:08x}",
        ]
        if self.version_bits is not None:
            params.append(f"{self.version_bits:08x}")
        return params
