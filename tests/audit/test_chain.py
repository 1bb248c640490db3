"""The pure chain: canonical bytes (a pinned vector, as docs/audit.md shows it), body
validation, and verification reporting the first broken row for each kind of tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miners.audit.chain import (
    GENESIS_HASH,
    AuditRecord,
    canonical_bytes,
    make_record,
    verify_chain,
)
from miners.audit.errors import AuditError

VECTOR_BODY = {"kwh": 12.5, "note": "Zürich ☃", "peak_w": 900, "ok": True, "x": None,
               "n": [1, 2.0e20]}
VECTOR_TEXT = ('{"body":{"kwh":12.5,"n":[1,2e+20],"note":"Z\\u00fcrich \\u2603","ok":true,'
               '"peak_w":900,"x":null},"kind":"interval","prev_hash":"' + "0" * 64
               + '","seq":1,"site":"site-a","time":1735689600.0}')
VECTOR_HASH = "2f101a6be568f15a15084f74c09625a2b94a235b0fd6095b948e9a8ce1789681"


def chain(n: int, site: str = "A") -> list[AuditRecord]:
    rows, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        kind = ("interval", "event", "compliance")[seq % 3]
        row = make_record(site, seq, kind, 1_700_000_000 + 900.0 * seq,
                          {"kwh": seq * 1.25, "seq_note": f"r{seq}", "nested": {"a": [seq]}},
                          prev)
        rows.append(row)
        prev = row.row_hash
    return rows


def test_canonical_vector_matches_the_documented_form() -> None:
    raw = canonical_bytes("site-a", 1, "interval", 1735689600, VECTOR_BODY, GENESIS_HASH)
    assert raw.decode("ascii") == VECTOR_TEXT
    assert hashlib.sha256(raw).hexdigest() == VECTOR_HASH
    record = make_record("site-a", 1, "interval", 1735689600, VECTOR_BODY, GENESIS_HASH)
    assert record.row_hash == VECTOR_HASH and record.time == 1735689600.0
    # an auditor's re-implementation, as docs/audit.md gives it
    doc = {"site": "site-a", "seq": 1, "kind": "interval", "time": 1735689600.0,
           "body": VECTOR_BODY, "prev_hash": GENESIS_HASH}
    again = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert hashlib.sha256(again.encode()).hexdigest() == VECTOR_HASH


def test_int_and_float_are_different_values() -> None:
    a = make_record("A", 1, "event", 0, {"w": 1}, GENESIS_HASH)
    b = make_record("A", 1, "event", 0, {"w": 1.0}, GENESIS_HASH)
    assert a.row_hash != b.row_hash


@pytest.mark.parametrize(("body", "message"), [
    ({"w": math.nan}, "body.w: nan is not a finite number"),
    ({"w": [1, math.inf]}, "body.w[1]: inf is not a finite number"),
    ({1: "x"}, "body: key 1 is not a string"),
    ({"s": {1, 2}}, "body.s: set is not JSON"),
    ({"b": b"x"}, "body.b: bytes is not JSON"),
    ({"big": 10 ** 5000}, "body: "),
    ({"long": "x" * 70_000}, "bytes of JSON, over"),
    ([1, 2], "body: must be a JSON object"),
])
def test_body_must_be_plain_json(body: object, message: str) -> None:
    with pytest.raises(AuditError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_record("A", 1, "event", 0.0, body, GENESIS_HASH)  # type: ignore[arg-type]


def test_too_deep_body_is_refused() -> None:
    deep: dict = {}
    inner = deep
    for _ in range(20):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(AuditError, match="nested deeper"):
        make_record("A", 1, "event", 0.0, deep, GENESIS_HASH)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("kind", "invoice", "kind: 'invoice' is not one of"),
    ("site", "", "site: must be"),
    ("site", "a\nb", "control characters"),
    ("seq", 0, "seq: 0 is not a positive integer"),
    ("seq", True, "seq: True"),
    ("time", math.inf, "time: inf"),
    ("time", "now", "time: 'now'"),
    ("prev_hash", "00", "prev_hash: must be 64"),
])
def test_fields_are_validated(field: str, value: object, message: str) -> None:
    args = {"site": "A", "seq": 1, "kind": "event", "time": 0.0, "body": {},
            "prev_hash": GENESIS_HASH, field: value}
    with pytest.raises(AuditError, match=message):
        make_record(**args)  # type: ignore[arg-type]


def test_a_valid_chain_verifies() -> None:
    rows = chain(12)
    check = verify_chain(rows, expected_head=(12, rows[-1].row_hash))
    assert check.ok and check.rows == 12 and check.reason == ""
    assert (check.head_seq, check.head_hash, check.first_bad_seq) == (12, rows[-1].row_hash,
                                                                      None)
    empty = verify_chain([], site="A")
    assert empty.ok and empty.head_seq == 0 and empty.head_hash == GENESIS_HASH


@pytest.mark.parametrize(("field", "value"), [
    ("body", {"kwh": 9.0, "seq_note": "r7", "nested": {"a": [7]}}),
    ("time", 1_700_000_001.0), ("kind", "interval"), ("prev_hash", "1" * 64),
    ("row_hash", "2" * 64)])
def test_an_edited_field_breaks_its_own_row(field: str, value: object) -> None:
    rows = chain(12)
    head = (12, rows[-1].row_hash)
    assert getattr(rows[6], field) != value
    rows[6] = dataclasses.replace(rows[6], **{field: value})
    check = verify_chain(rows, expected_head=head)
    assert not check.ok and check.first_bad_seq == 7, check
    assert check.reason == "row 7: row_hash does not match its contents"
    assert check.head_seq == 6 and check.rows == 7


def test_deleted_rows_leave_a_gap() -> None:
    rows = chain(12)
    check = verify_chain(rows[:6] + rows[7:])
    assert (check.first_bad_seq, check.reason) == (7, "row 7 missing (seq jumps 6→8)")
    check = verify_chain(rows[:3] + rows[6:])
    assert check.reason == "rows 4-6 missing (seq jumps 3→7)"
    check = verify_chain(rows[1:])
    assert check.reason == "row 1 missing (seq jumps 0→2)"


def test_a_truncated_tail_is_short_of_the_head() -> None:
    rows = chain(12)
    head = (12, rows[-1].row_hash)
    check = verify_chain(rows[:11], expected_head=head)
    assert (check.first_bad_seq, check.reason) == (
        12, "chain ends at row 11 but the recorded head is row 12")
    check = verify_chain([], site="A", expected_head=head)
    assert check.reason == "chain ends with no rows but the recorded head is row 12"
    assert verify_chain(rows[:11]).ok  # without a head a cut tail cannot be seen


def test_reordered_and_repeated_rows() -> None:
    rows = chain(6)
    swapped = [rows[0], rows[2], rows[1], *rows[3:]]
    check = verify_chain(swapped)
    assert (check.first_bad_seq, check.reason) == (2, "row 2 missing (seq jumps 1→3)")
    check = verify_chain([*rows[:3], rows[2], *rows[3:]])
    assert check.reason == "row 3: out of order or repeated (after row 3)"
    # seq numbers swapped between two rows: each now claims the other's place
    renumbered = [*rows[:3], dataclasses.replace(rows[4], seq=4),
                  dataclasses.replace(rows[3], seq=5), rows[5]]
    check = verify_chain(renumbered)
    assert (check.first_bad_seq, check.reason) == (4, "row 4: row_hash does not match its "
                                                      "contents")


def test_a_consistently_forged_row_breaks_the_next_link() -> None:
    rows = chain(12)
    forged = make_record("A", 7, "interval", rows[6].time, {"kwh": 0.0}, rows[5].row_hash)
    rows[6] = forged
    check = verify_chain(rows)
    assert (check.first_bad_seq, check.reason) == (8, "row 8: prev_hash is not row 7's hash")
    # forging the whole tail too is caught by the recorded head
    head = (12, chain(12)[-1].row_hash)
    tail, prev = rows[:7], forged.row_hash
    for old in chain(12)[7:]:
        tail.append(make_record("A", old.seq, old.kind, old.time, {"x": 1}, prev))
        prev = tail[-1].row_hash
    check = verify_chain(tail, expected_head=head)
    assert check.first_bad_seq == 12
    assert check.reason.startswith("row 12: hash differs from the recorded head")


def test_rows_past_the_head_and_foreign_rows() -> None:
    rows = chain(5)
    extra = make_record("A", 6, "event", 0.0, {}, rows[-1].row_hash)
    check = verify_chain([*rows, extra], expected_head=(5, rows[-1].row_hash))
    assert check.reason == "row 6: past the recorded head (row 5)"
    other = chain(3, site="B")
    check = verify_chain([*rows[:2], other[2]])
    assert check.reason == "row 3: belongs to site 'B'"
    bad = dataclasses.replace(rows[0], body="{not json")
    assert verify_chain([bad]).reason == "row 1: body is not a JSON object"
    bad = dataclasses.replace(rows[0], seq="1")
    assert verify_chain([bad]).reason == "row 1: seq '1' is not an integer"


def test_partial_chains_and_checkpoints() -> None:
    rows = chain(10)
    check = verify_chain(rows[4:], partial=True)
    assert check.ok and check.first_seq == 5 and check.head_seq == 10
    assert not verify_chain(rows[4:]).ok
    check = verify_chain([rows[4], *rows[6:]], partial=True)
    assert check.reason == "row 6 missing (seq jumps 5→7)"
    check = verify_chain(rows[::2], allow_gaps=True)
    assert check.ok and check.gaps == 4
    tampered = [*rows[:4], dataclasses.replace(rows[4], time=0.0)]
    assert not verify_chain(tampered[::2], allow_gaps=True).ok
    # a head recorded elsewhere: the chain may have grown past it, but must still hold it
    assert verify_chain(rows, checkpoint=(6, rows[5].row_hash)).ok
    check = verify_chain(rows, checkpoint=(6, "f" * 64))
    assert check.first_bad_seq == 6 and "given head" in check.reason
    check = verify_chain(rows[:5], checkpoint=(6, rows[5].row_hash))
    assert check.reason == "chain ends at row 5 but the given head is row 6"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 40), max_value=10 ** 40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
bodies = st.dictionaries(st.text(), json_values, max_size=6)


@settings(max_examples=200, deadline=None)
@given(body=bodies, time=st.floats(min_value=0, max_value=4e9), site=st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=20))
def test_canonical_bytes_survive_json(body: dict, time: float, site: str) -> None:
    if not site.isprintable():
        return
    record = make_record(site, 3, "event", time, body, GENESIS_HASH)
    raw = canonical_bytes(record.site, record.seq, record.kind, record.time, record.body,
                          record.prev_hash)
    parsed = json.loads(raw)
    again = canonical_bytes(parsed["site"], parsed["seq"], parsed["kind"], parsed["time"],
                            parsed["body"], parsed["prev_hash"])
    assert again == raw
    assert hashlib.sha256(again).hexdigest() == record.row_hash
    assert verify_chain([record], partial=True).ok
