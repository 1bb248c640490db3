"""Wire format vectors: prevhash word swap, 32-bit fields, message encoding, and the header
a miner hashes, checked against published notify/share pairs with known results."""

import json
from pathlib import Path

import pytest

from miners.sim.stratum_client import MiningJob
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import fold_coinbase_branch
from pool.bitcoin.target import DIFF1_TARGET
from pool.stratum.protocol import (
    ErrorCode,
    build_header,
    error_line,
    notification_line,
    parse_u32_hex,
    prevhash_from_stratum,
    prevhash_to_stratum,
    result_line,
    swap_words,
    u32_hex,
)

# Real slush-pool work from May 2023 (mainnet height 791433) as captured in ESP-Miner's
# firmware unit tests: coinbase, branch, the merkle root the firmware computes, and nonces
# whose share difficulties the firmware asserts (683 and 18). See vectors/esp_miner_shares.json.
VECTORS = json.loads((Path(__file__).parent / "vectors" / "esp_miner_shares.json").read_text())
V2, V1 = VECTORS["shares"]
VECTOR_PREVHASH = V2["prevhash"]
VECTOR_COINBASE = bytes.fromhex(V2["coinbase"])
VECTOR_BRANCH = [bytes.fromhex(h) for h in V2["branch"]]
VECTOR_MERKLE_ROOT = V2["merkle_root"]
VECTOR_VERSION, VECTOR_BITS = int(V2["version"], 16), int(V2["nbits"], 16)
VECTOR_NTIME, VECTOR_NONCE = int(V2["ntime"], 16), int(V2["nonce"], 16)
VECTOR_SHARE_DIFFICULTY = V2["difficulty_int"]


def share_difficulty(header: bytes) -> float:
    return DIFF1_TARGET / int.from_bytes(sha256d(header), "little")


def test_prevhash_is_word_swapped_internal_order():
    prev_hash_le = prevhash_from_stratum(VECTOR_PREVHASH)
    # Display order (as bitcoind prints it) ends the way a mainnet hash starts: zeros.
    assert prev_hash_le[::-1].hex().startswith("0000000000000000")
    assert prev_hash_le[:4] == bytes.fromhex("4595850c")  # first word, bytes reversed
    assert prevhash_to_stratum(prev_hash_le) == VECTOR_PREVHASH
    assert swap_words(swap_words(bytes(range(32)))) == bytes(range(32))
    with pytest.raises(ValueError):
        swap_words(bytes(31))


def test_known_vector_merkle_root_and_share_difficulty():
    root = fold_coinbase_branch(sha256d(VECTOR_COINBASE), VECTOR_BRANCH)
    assert root.hex() == VECTOR_MERKLE_ROOT
    header = build_header(
        version=VECTOR_VERSION,
        prev_hash_le=prevhash_from_stratum(VECTOR_PREVHASH),
        merkle_root_le=root,
        ntime=VECTOR_NTIME,
        bits=VECTOR_BITS,
        nonce=VECTOR_NONCE,
    )
    assert len(header) == 80
    assert int(share_difficulty(header)) == VECTOR_SHARE_DIFFICULTY


def test_known_vector_1_share_difficulty():
    header = build_header(
        version=int(V1["version"], 16),
        prev_hash_le=prevhash_from_stratum(V1["prevhash"]),
        merkle_root_le=bytes.fromhex(V1["merkle_root"]),
        ntime=int(V1["ntime"], 16),
        bits=int(V1["nbits"], 16),
        nonce=int(V1["nonce"], 16),
    )
    assert int(share_difficulty(header)) == V1["difficulty_int"]


def test_simulator_client_builds_the_same_header_from_notify_params():
    # Split the real coinbase around 12 bytes inside its scriptSig, as a pool's notify would.
    cut = 60
    extranonce1, extranonce2 = VECTOR_COINBASE[cut : cut + 4], VECTOR_COINBASE[cut + 4 : cut + 12]
    params = [
        "j1",
        VECTOR_PREVHASH,
        VECTOR_COINBASE[:cut].hex(),
        VECTOR_COINBASE[cut + 12 :].hex(),
        [b.hex() for b in VECTOR_BRANCH],
        u32_hex(VECTOR_VERSION),
        u32_hex(VECTOR_BITS),
        u32_hex(VECTOR_NTIME),
        True,
    ]
    job = MiningJob.from_params(params)
    root = job.merkle_root_le(extranonce1, extranonce2)
    assert root.hex() == VECTOR_MERKLE_ROOT
    header = job.header(root, ntime=VECTOR_NTIME, nonce=VECTOR_NONCE, version=VECTOR_VERSION)
    assert int(share_difficulty(header)) == VECTOR_SHARE_DIFFICULTY


def test_u32_fields():
    assert u32_hex(0x20000004) == "20000004"
    assert parse_u32_hex("1705ae3a") == 0x1705AE3A
    for bad in ("1705ae3", "0x1705ae", "1705ae3g", 12345678, "+1705ae3", "1705 ae3", None):
        with pytest.raises((ValueError, TypeError)):
            parse_u32_hex(bad)


def test_message_lines():
    assert json.loads(result_line(7, True)) == {"id": 7, "result": True, "error": None}
    assert json.loads(error_line(3, ErrorCode.DUPLICATE, "duplicate share")) == {
        "id": 3,
        "result": None,
        "error": [22, "duplicate share", None],
    }
    line = notification_line("mining.set_difficulty", [0.5])
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line) == {"id": None, "method": "mining.set_difficulty", "params": [0.5]}
    assert [int(c) for c in ErrorCode] == [20, 21, 22, 23, 24, 25]
