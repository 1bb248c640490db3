"""JSON and CSV exports: a JSON export verifies on its own, an edited one does not, and
the CSV has one column per body key."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from miners.audit.chain import GENESIS_HASH, AuditRecord, make_record
from miners.audit.errors import AuditFileError
from miners.audit.export import parse_json, time_iso, to_csv, to_json, verify_export

T0 = 1_735_689_600.0


def chain(site: str, bodies: list[tuple[str, dict]]) -> list[AuditRecord]:
    rows, prev = [], GENESIS_HASH
    for seq, (kind, body) in enumerate(bodies, start=1):
        rows.append(make_record(site, seq, kind, T0 + 900 * (seq - 1), body, prev))
        prev = rows[-1].row_hash
    return rows


ROWS = chain("A", [("interval", {"kwh": 1.5, "budget_w": 500_000}),
                   ("event", {"event_id": "e1", "limit_w": 0, "ack": True, "site": "x"}),
                   ("interval", {"kwh": 2.0, "budget_w": None, "peaks": [1, 2.5]}),
                   ("compliance", {"event_id": "e1", "detail": {"late_s": 3.25}})]) + chain(
    "B", [("interval", {"kwh": 0.5})])


def test_json_export_verifies_from_the_file_alone() -> None:
    text = to_json(ROWS)
    doc = json.loads(text)
    assert doc["format"] == "gridpool-audit/1"
    assert doc["rows"][0]["time_iso"] == "2025-01-01T00:00:00Z"
    assert doc["heads"] == {"A": {"seq": 4, "row_hash": ROWS[3].row_hash},
                            "B": {"seq": 1, "row_hash": ROWS[4].row_hash}}
    export = parse_json(text)
    assert export.rows == ROWS
    assert [(c.site, c.ok, c.head_seq) for c in verify_export(export)] == [
        ("A", True, 4), ("B", True, 1)]


@pytest.mark.parametrize(("path", "value", "bad_seq"), [
    (("rows", 2, "body", "kwh"), 2.5, 3),
    (("rows", 1, "time"), T0, 2),
    (("rows", 3, "kind"), "event", 4),
    (("rows", 0, "body", "budget_w"), 500_000.0, 1),  # int → float is an edit too
])
def test_an_edited_export_is_detected(path: tuple, value: object, bad_seq: int) -> None:
    doc = json.loads(to_json(ROWS))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    checks = verify_export(parse_json(json.dumps(doc)))
    assert checks[0].first_bad_seq == bad_seq
    assert checks[0].reason == f"row {bad_seq}: row_hash does not match its contents"
    assert checks[1].ok


def test_removed_rows_and_heads_in_an_export() -> None:
    doc = json.loads(to_json(ROWS))
    del doc["rows"][3]  # A's last row
    check = verify_export(parse_json(json.dumps(doc)))[0]
    assert check.reason == "chain ends at row 3 but the recorded head is row 4"
    doc = json.loads(to_json(ROWS[1:]))  # starts at row 2 but claims to be whole
    assert verify_export(parse_json(json.dumps(doc)))[0].reason == (
        "row 1 missing (seq jumps 0→2)")


def test_filtered_exports_say_what_they_can_check() -> None:
    since = json.loads(to_json(ROWS[1:4], heads={"A": (4, ROWS[3].row_hash)},
                               filters={"site": "A", "since": T0 + 900}))
    check = verify_export(parse_json(json.dumps(since)))[0]
    assert check.ok and check.first_seq == 2 and check.head_seq == 4
    kind = to_json([ROWS[0], ROWS[2]], heads={"A": (4, ROWS[3].row_hash)},
                   filters={"site": "A", "kind": "interval"})
    check = verify_export(parse_json(kind))[0]
    assert check.ok and check.gaps == 1
    # a checkpoint site with no rows in the file is reported, not skipped
    checks = verify_export(parse_json(to_json(ROWS[4:])), checkpoints={"A": (4, "a" * 64)})
    assert [(c.site, c.ok) for c in checks] == [("A", False), ("B", True)]


@pytest.mark.parametrize(("text", "message"), [
    ("nope", "not JSON"), ("[]", "not a gridpool-audit/1 export"),
    ('{"format": "gridpool-audit/1"}', '"rows" must be a list'),
    ('{"format": "gridpool-audit/1", "rows": [{"site": "A"}]}', "rows\\[0\\]: needs"),
    ('{"format": "gridpool-audit/1", "rows": [], "heads": {"A": 3}}', "heads.A"),
])
def test_bad_export_files(text: str, message: str) -> None:
    with pytest.raises(AuditFileError, match=message):
        parse_json(text)


def test_csv_columns() -> None:
    table = list(csv.reader(io.StringIO(to_csv(ROWS))))
    # bodies come back with sorted keys; the union keeps the order of first appearance
    assert table[0] == ["site", "seq", "kind", "time", "time_iso", "budget_w", "kwh",
                        "ack", "event_id", "limit_w", "body.site", "peaks", "detail",
                        "prev_hash", "row_hash"]
    assert len(table) == 1 + len(ROWS)
    row = dict(zip(table[0], table[2], strict=True))
    assert row["seq"] == "2" and row["kind"] == "event" and row["ack"] == "true"
    assert row["body.site"] == "x" and row["kwh"] == "" and row["limit_w"] == "0"
    assert row["time"] == repr(T0 + 900) and row["time_iso"] == "2025-01-01T00:15:00Z"
    assert row["row_hash"] == ROWS[1].row_hash and row["prev_hash"] == ROWS[0].row_hash
    third = dict(zip(table[0], table[3], strict=True))
    assert third["peaks"] == "[1,2.5]" and third["budget_w"] == ""
    assert dict(zip(table[0], table[4], strict=True))["detail"] == '{"late_s":3.25}'
    assert to_csv([]) == "site,seq,kind,time,time_iso,prev_hash,row_hash\n"


def test_time_iso() -> None:
    assert time_iso(T0 + 0.25) == "2025-01-01T00:00:00.250Z"


def test_the_documented_verifier_checks_an_export() -> None:
    """The Python block of docs/audit.md, run on an export: what an auditor would do."""
    doc_text = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    code = doc_text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(code, scope)
    doc = json.loads(to_json(ROWS))
    a_rows = [r for r in doc["rows"] if r["site"] == "A"]
    assert scope["verify"](a_rows) == (4, ROWS[3].row_hash)
    assert scope["row_hash"](doc["rows"][4]) == ROWS[4].row_hash
    a_rows[1]["body"]["limit_w"] = 1
    with pytest.raises(AssertionError, match="row 2: edited"):
        scope["verify"](a_rows)
