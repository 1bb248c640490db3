"""`gridpool audit verify|report`, run as the real CLI in a subprocess against a ledger
on SQLite and PostgreSQL, against the zero-config demo's ledger, and on export files."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest
from audit.audit_helpers import T0, fill, raw_sql

from miners.audit.chain import AuditRecord
from miners.audit.store import open_audit_store
from pool.cli_audit import parse_head, parse_time
from pool.errors import ConfigError
from pool.ledger.settings import SQLITE_FILE_NAME


async def gridpool(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the real CLI in a subprocess (it runs its own event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pool.cli", "audit", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def filled(url: str) -> dict[str, list[AuditRecord]]:
    store = open_audit_store(url)
    await store.migrate()
    try:
        return {"A": await fill(store, "A", 12), "B": await fill(store, "B", 3)}
    finally:
        await store.close()


async def test_verify_ok_then_broken(ledger_url: str) -> None:
    rows = await filled(ledger_url)
    code, out, err = await gridpool("verify", "--ledger", ledger_url)
    assert code == 0, err
    head_a = f"A:12:{rows['A'][-1].row_hash}"
    assert out.splitlines() == [f"A: ok, 12 rows, head {head_a}",
                                f"B: ok, 3 rows, head B:3:{rows['B'][-1].row_hash}"]
    code, out, _ = await gridpool("verify", "--ledger", ledger_url, "--site", "B")
    assert code == 0 and out.startswith("B: ok, 3 rows")
    await raw_sql(ledger_url, "UPDATE audit_rows SET time = 0 WHERE site = 'A' AND seq = 7")
    code, out, _ = await gridpool("verify", "--ledger", ledger_url, "--head", head_a)
    assert code == 1
    assert out.splitlines()[0] == ("A: BROKEN: row 7: row_hash does not match its contents "
                                   "(rows up to 6 hold)")
    assert out.splitlines()[1].startswith("B: ok")


async def test_checkpoint_catches_a_consistent_cut(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/ledger.db"
    rows = (await filled(url))["A"]
    await raw_sql(url, "DELETE FROM audit_rows WHERE site = 'A' AND seq > 10")
    await raw_sql(url, "UPDATE audit_heads SET seq = 10, row_hash = ? WHERE site = 'A'",
                  rows[9].row_hash)
    code, _, _ = await gridpool("verify", "--ledger", url)
    assert code == 0
    code, out, _ = await gridpool("verify", "--ledger", url, "--head",
                                  f"A:12:{rows[11].row_hash}")
    assert code == 1
    assert "A: BROKEN: chain ends at row 10 but the given head is row 12" in out


async def test_default_source_is_the_demo_ledger_and_config(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    code, _, err = await gridpool("verify", env=env)
    assert code == 2 and "no ledger at" in err and "gridpool run" in err
    demo_url = f"sqlite://{tmp_path}/xdg/gridpool/{SQLITE_FILE_NAME}"
    await filled(demo_url)
    code, out, err = await gridpool("verify", env=env)
    assert code == 0, err
    assert out.startswith("A: ok, 12 rows")
    config = tmp_path / "pool.toml"
    config.write_text(f'data_dir = "{tmp_path / "other"}"\n[ledger]\nurl = "{demo_url}"\n')
    code, out, err = await gridpool("verify", "--config", str(config))
    assert code == 0 and out.startswith("A: ok, 12 rows"), err


async def test_report_csv_json_and_verify_the_file(ledger_url: str, tmp_path: Path) -> None:
    rows = (await filled(ledger_url))["A"]
    src = ("--ledger", ledger_url)
    code, out, err = await gridpool("report", *src, "--site", "A", "--format", "csv",
                                    "--from", "2025-01-01T00:30:00Z", "--to", str(T0 + 3600))
    assert code == 0, err
    table = list(csv.reader(io.StringIO(out)))
    assert table[0][:5] == ["site", "seq", "kind", "time", "time_iso"]
    assert table[0][-2:] == ["prev_hash", "row_hash"] and "kwh" in table[0]
    assert [r[1] for r in table[1:]] == ["3", "4"]
    export = tmp_path / "a.json"
    code, _, err = await gridpool("report", *src, "--site", "A", "--format", "json",
                                  "--output", str(export))
    assert code == 0 and "wrote 12 rows" in err
    assert len(json.loads(export.read_text())["rows"]) == 12
    code, out, _ = await gridpool("verify", "--file", str(export))
    assert (code, out) == (0, f"A: ok, 12 rows, head A:12:{rows[-1].row_hash}\n")
    doc = json.loads(export.read_text())
    doc["rows"][8]["body"]["kwh"] = 0.0
    export.write_text(json.dumps(doc))
    code, out, _ = await gridpool("verify", "--file", str(export))
    assert code == 1 and "A: BROKEN: row 9: row_hash does not match its contents" in out


async def test_filtered_json_reports_verify(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/ledger.db"
    await filled(url)
    since, kind = tmp_path / "since.json", tmp_path / "kind.json"
    code, _, err = await gridpool("report", "--ledger", url, "--site", "A", "--format", "json",
                                  "--from", str(T0 + 900 * 4), "--output", str(since))
    assert code == 0, err
    code, out, _ = await gridpool("verify", "--file", str(since))
    assert code == 0 and "A: ok, 8 rows" in out and "starts at row 5" in out
    code, out, err = await gridpool("report", "--ledger", url, "--site", "A", "--format",
                                    "json", "--kind", "compliance")
    assert code == 0, err
    kind.write_text(out)
    code, out, _ = await gridpool("verify", "--file", str(kind))
    assert code == 0 and "A: ok, 3 rows" in out and "kind-filtered" in out


@pytest.mark.parametrize(("argv", "message"), [
    (("verify", "--head", "A:x:00"), "--head: 'A:x:00': SEQ must be"),
    (("verify", "--head", "nonsense"), "--head: 'nonsense' is not SITE:SEQ:HASH"),
    (("verify", "--site", "Z"), "--site: no audit rows for site 'Z'"),
    (("report", "--site", "A", "--format", "csv", "--from", "yesterday"), "--from: 'yesterday'"),
    (("report", "--site", "A", "--format", "csv", "--kind", "bill"), "--kind: 'bill'"),
    (("report", "--site", "A", "--format", "xml"), "--format: 'xml'"),
    (("report", "--site", "A", "--format", "csv", "--from", "2025-02-01", "--to",
      "2025-01-01"), "--from: is after --to"),
    (("report", "--site", "A", "--format", "csv", "--output", "/nonexistent/dir/x.csv"),
     "--output: cannot write"),
])
async def test_bad_arguments_exit_2(tmp_path: Path, argv: tuple[str, ...], message: str) -> None:
    url = f"sqlite://{tmp_path}/ledger.db"
    await filled(url)
    code, _, err = await gridpool(*argv, "--ledger", url)
    assert code == 2 and message in err, err


async def test_bad_sources_exit_2(tmp_path: Path) -> None:
    code, _, err = await gridpool("verify", "--ledger", "mysql://x")
    assert code == 2 and "--ledger: must start with" in err
    bogus = tmp_path / "x.json"
    bogus.write_text("{}")
    code, _, err = await gridpool("verify", "--file", str(bogus))
    assert code == 2 and "--file:" in err and "gridpool-audit/1" in err
    code, _, err = await gridpool("verify", "--file", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
    code, _, err = await gridpool("verify", "--ledger", "sqlite:///x.db", "--file", str(bogus))
    assert code == 2 and "not allowed with" in err  # argparse: one source at a time


def test_parse_time_and_head() -> None:
    assert parse_time("2025-01-01", "--from") == T0
    assert parse_time("2025-01-01T01:00:00+01:00", "--from") == T0
    assert parse_time("2025-01-01T00:00:00Z", "--from") == T0
    assert parse_time(str(T0), "--to") == T0
    for bad in ("", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match="--to"):
            parse_time(bad, "--to")
    assert parse_head("site:a:7:" + "AB" * 32) == ("site:a", (7, "ab" * 32))
    for bad in (":1:" + "a" * 64, "A:0:" + "a" * 64, "A:1:abc"):
        with pytest.raises(ConfigError, match="--head"):
            parse_head(bad)
