"""Property tests: serialization round trips, and parsers that fail only with
DeserializationError on arbitrary bytes."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pool.bitcoin.block import Block
from pool.bitcoin.serialize import ByteReader
from pool.bitcoin.tx import Transaction, TxIn, TxOut
from pool.errors import DeserializationError

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
u32 = st.integers(0, 2**32 - 1)
scripts = st.binary(max_size=300)
witness_stacks = st.lists(st.binary(max_size=80), max_size=4)


@st.composite
def transactions(draw, *, with_witness: bool) -> Transaction:
    n_inputs = draw(st.integers(1, 4))  # no inputs would read as a segwit marker
    inputs = [
        TxIn(
            prev_txid_le=draw(st.binary(min_size=32, max_size=32)),
            prev_index=draw(u32),
            script_sig=draw(scripts),
            sequence=draw(u32),
            witness=draw(witness_stacks) if with_witness else [],
        )
        for _ in range(n_inputs)
    ]
    outputs = draw(st.lists(st.builds(TxOut, st.integers(0, 2**64 - 1), scripts), max_size=4))
    return Transaction(draw(u32), inputs, outputs, draw(u32))


@PROPERTY_SETTINGS
@given(transactions(with_witness=False))
def test_legacy_tx_round_trip(tx: Transaction) -> None:
    raw = tx.serialize()
    assert Transaction.parse(raw) == tx
    assert raw == tx.serialize(with_witness=False)
    assert tx.weight() == 4 * len(raw)


@PROPERTY_SETTINGS
@given(transactions(with_witness=True))
def test_witness_tx_round_trip(tx: Transaction) -> None:
    parsed = Transaction.parse(tx.serialize())
    assert parsed == tx
    assert parsed.txid_le() == tx.txid_le() and parsed.wtxid_le() == tx.wtxid_le()
    stripped = Transaction.parse(tx.serialize(with_witness=False))
    assert stripped.txid_le() == tx.txid_le()
    assert not stripped.has_witness()


def _parse_or_reject(parse, data: bytes) -> None:
    try:
        parse(data)
    except DeserializationError as err:
        assert str(err)


@PROPERTY_SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_deserialization_error(data: bytes) -> None:
    _parse_or_reject(Transaction.parse, data)
    _parse_or_reject(Block.parse, data)
    reader = ByteReader(data)
    _parse_or_reject(lambda _: reader.read_compact_size(), data)


@PROPERTY_SETTINGS
@given(transactions(with_witness=True), st.data())
def test_mutated_tx_only_raises_deserialization_error(tx: Transaction, data) -> None:
    """Random edits of a valid serialization reach deeper parser states than pure noise."""
    raw = bytearray(tx.serialize())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _parse_or_reject(Transaction.parse, bytes(raw[:cut]))
    header = bytes(80) + b"\x01"
    _parse_or_reject(Block.parse, header + bytes(raw[:cut]))
