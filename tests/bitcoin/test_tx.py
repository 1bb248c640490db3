"""Transaction serialization rules (BIP141/BIP144) on hand-built transactions."""

import pytest

from pool.bitcoin.serialize import ser_compact_size
from pool.bitcoin.tx import Transaction, TxIn, TxOut
from pool.errors import DeserializationError


def _segwit_tx() -> Transaction:
    txin = TxIn(b"\x11" * 32, 1, b"", 0xFFFFFFFD, [b"\x01" * 72, b"\x02" * 33])
    return Transaction(2, [txin], [TxOut(50_000, bytes.fromhex("0014") + bytes(20))])


def test_weight_and_vsize_by_hand() -> None:
    tx = _segwit_tx()
    # base: version 4 + count 1 + input 41 + count 1 + output 31 + locktime 4 = 82
    assert len(tx.serialize(with_witness=False)) == 82
    # witness adds marker+flag 2, item count 1, items 1+72 and 1+33 = 110
    assert len(tx.serialize()) == 192
    assert tx.weight() == 82 * 3 + 192 == 438
    assert tx.vsize() == 110  # 109.5 rounded up
    legacy = Transaction(1, [TxIn(b"\x11" * 32, 0, b"\x51")], [TxOut(1, b"\x51")])
    assert legacy.weight() == 4 * len(legacy.serialize())


def test_marker_flag_layout_and_round_trip() -> None:
    tx = _segwit_tx()
    raw = tx.serialize()
    assert raw[4:6] == b"\x00\x01"
    assert Transaction.parse(raw) == tx
    assert Transaction.parse(tx.serialize(with_witness=False)).has_witness() is False
    assert tx.txid_le() != tx.wtxid_le()


def test_superfluous_witness_rejected() -> None:
    tx = _segwit_tx()
    nowit = tx.serialize(with_witness=False)
    # marker + flag, then one empty witness stack: the flag promised witness data.
    raw = nowit[:4] + b"\x00\x01" + nowit[4:-4] + b"\x00" + nowit[-4:]
    with pytest.raises(DeserializationError, match="superfluous witness"):
        Transaction.parse(raw)


def test_unknown_flag_rejected() -> None:
    raw = _segwit_tx().serialize()
    with pytest.raises(DeserializationError, match="unknown transaction optional data"):
        Transaction.parse(raw[:5] + b"\x03" + raw[6:])


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(DeserializationError, match="trailing"):
        Transaction.parse(_segwit_tx().serialize() + b"\x00")


def test_empty_tx_parses_like_core() -> None:
    # An empty input vector followed by a zero byte is read as "no inputs, no outputs".
    raw = bytes.fromhex("02000000" + "00" + "00" + "00000000")
    tx = Transaction.parse(raw)
    assert tx.inputs == [] and tx.outputs == []
    assert tx.serialize() == raw


def test_version_is_unsigned() -> None:
    tx = Transaction(0xFFFFFFFF, [TxIn(bytes(32), 0)], [TxOut(0, b"")])
    assert Transaction.parse(tx.serialize()).version == 0xFFFFFFFF


def test_absurd_input_count_rejected_before_reading() -> None:
    raw = bytes.fromhex("01000000") + ser_compact_size(1_000_000) + bytes(100)
    with pytest.raises(DeserializationError, match="exceeds"):
        Transaction.parse(raw)


def test_coinbase_detection() -> None:
    coinbase = Transaction(1, [TxIn(bytes(32), 0xFFFFFFFF, b"\x51\x00")], [TxOut(0, b"\x51")])
    assert coinbase.is_coinbase()
    assert not _segwit_tx().is_coinbase()
    two_inputs = Transaction(1, [*coinbase.inputs, *coinbase.inputs], coinbase.outputs)
    assert not two_inputs.is_coinbase()
