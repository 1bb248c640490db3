"""Script pushes, BIP34 height pushes, witness commitment, output templates."""

import pytest

from pool.bitcoin.hashes import hash160, sha256, sha256d, tagged_hash
from pool.bitcoin.script import (
    WITNESS_RESERVED_VALUE,
    bip34_height_push,
    find_witness_commitment,
    op_return_script,
    p2pkh_script,
    p2sh_script,
    p2tr_script,
    p2wpkh_script,
    p2wsh_script,
    parse_witness_script,
    push_data,
    script_num,
    witness_commitment,
    witness_commitment_script,
    witness_script,
)
from pool.bitcoin.tx import Transaction, TxIn, TxOut

# height → `CScript() << height` bytes, from Core's CScriptNum rules: OP_0, OP_1..OP_16, then a
# push of the minimal little-endian number with a 0x00 sign byte when the top bit is set.
BIP34_VECTORS = [
    (0, "00"),
    (1, "51"),
    (16, "60"),
    (17, "0111"),
    (127, "017f"),
    (128, "028000"),
    (255, "02ff00"),
    (256, "020001"),
    (32767, "02ff7f"),
    (32768, "03008000"),
    (8388607, "03ffff7f"),
    (8388608, "0400008000"),
    (227_836, "03fc7903"),  # the first mainnet block under BIP34 rules
    (840_000, "0340d10c"),
]


@pytest.mark.parametrize(("height", "script_hex"), BIP34_VECTORS)
def test_bip34_height_push(height: int, script_hex: str) -> None:
    assert bip34_height_push(height).hex() == script_hex


def test_bip34_rejects_negative() -> None:
    with pytest.raises(ValueError):
        bip34_height_push(-1)


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, ""), (1, "01"), (-1, "81"), (127, "7f"), (128, "8000"), (-128, "8080"), (-255, "ff80")],
)
def test_script_num(n: int, encoded: str) -> None:
    assert script_num(n).hex() == encoded


@pytest.mark.parametrize(
    ("size", "prefix"),
    [
        (0, "00"),
        (1, "01"),
        (75, "4b"),
        (76, "4c4c"),
        (255, "4cff"),
        (256, "4d0001"),
        (65535, "4dffff"),
        (65536, "4e00000100"),
    ],
)
def test_push_data_uses_shortest_opcode(size: int, prefix: str) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert push_data(data) == bytes.fromhex(prefix) + data


def test_op_return_script() -> None:
    assert op_return_script(b"hi").hex() == "6a026869"


def test_witness_commitment_script_bytes() -> None:
    commitment = bytes(range(32))
    script = witness_commitment_script(commitment)
    assert script.hex() == "6a24aa21a9ed" + commitment.hex()
    assert len(script) == 38
    with pytest.raises(ValueError):
        witness_commitment_script(bytes(31))


def test_witness_commitment_single_coinbase() -> None:
    # With only the coinbase the witness root is 32 zero bytes (BIP141).
    expected = sha256d(bytes(32) + WITNESS_RESERVED_VALUE)
    assert witness_commitment([b"\xaa" * 32]) == expected
    assert witness_commitment([bytes(32)], reserved=b"\x01" * 32) == sha256d(
        bytes(32) + b"\x01" * 32
    )


def test_witness_commitment_ignores_coinbase_entry() -> None:
    wtxids = [b"\x11" * 32, b"\x22" * 32]
    root = sha256d(bytes(32) + b"\x22" * 32)
    assert witness_commitment(wtxids) == sha256d(root + WITNESS_RESERVED_VALUE)
    with pytest.raises(ValueError):
        witness_commitment([])
    with pytest.raises(ValueError):
        witness_commitment(wtxids, reserved=b"\x00")


def _coinbase_with_outputs(scripts: list[bytes]) -> Transaction:
    txin = TxIn(bytes(32), 0xFFFFFFFF, b"\x51\x00")
    return Transaction(2, [txin], [TxOut(0, spk) for spk in scripts])


def test_find_witness_commitment_takes_last_match() -> None:
    first, second = b"\x01" * 32, b"\x02" * 32
    tx = _coinbase_with_outputs(
        [witness_commitment_script(first), witness_commitment_script(second) + b"\xff", b"\x51"]
    )
    assert find_witness_commitment(tx) == second
    assert find_witness_commitment(_coinbase_with_outputs([b"\x6a\x24\xaa\x21\xa9\xed"])) is None
    assert find_witness_commitment(_coinbase_with_outputs([p2wpkh_script(bytes(20))])) is None


def test_output_templates() -> None:
    h20, h32 = bytes(range(20)), bytes(range(32))
    assert p2pkh_script(h20).hex() == "76a914" + h20.hex() + "88ac"
    assert p2sh_script(h20).hex() == "a914" + h20.hex() + "87"
    assert p2wpkh_script(h20).hex() == "0014" + h20.hex()
    assert p2wsh_script(h32).hex() == "0020" + h32.hex()
    assert p2tr_script(h32).hex() == "5120" + h32.hex()
    assert witness_script(16, b"\x00\x01").hex() == "60020001"
    for build, size in ((p2pkh_script, 20), (p2wsh_script, 32), (p2tr_script, 32)):
        with pytest.raises(ValueError):
            build(bytes(size + 1))


def test_parse_witness_script() -> None:
    assert parse_witness_script(bytes.fromhex("0014") + bytes(20)) == (0, bytes(20))
    assert parse_witness_script(bytes.fromhex("5120") + bytes(32)) == (1, bytes(32))
    assert parse_witness_script(bytes.fromhex("6002beef")) == (16, b"\xbe\xef")
    assert parse_witness_script(bytes.fromhex("0001ff")) is None  # 1-byte program
    assert parse_witness_script(bytes.fromhex("6a02beef")) is None  # OP_RETURN, not OP_n
    assert parse_witness_script(bytes.fromhex("0014") + bytes(19)) is None  # length mismatch


def test_hash_vectors() -> None:
    assert sha256(b"").hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256d(b"").hex() == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
    assert hash160(b"").hex() == "b472a266d0bd89c13706a4132ccfb16f7c3b9fcb"
    # BIP340 test: tagged_hash is sha256(sha256(tag) * 2 + msg).
    tag = sha256(b"TapLeaf")
    assert tagged_hash("TapLeaf", b"x") == sha256(tag + tag + b"x")
