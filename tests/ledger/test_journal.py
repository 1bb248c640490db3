"""The recorder's append-only journal: exact round trip, torn tails cut at open, damaged
lines skipped, the size bound, and chunked reads that resume at an offset."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_helpers import make_share

from pool.errors import LedgerBusyError
from pool.ledger import ShareRecord
from pool.ledger.journal import ShareJournal, decode, encode


def opened(path: Path, max_bytes: int = 1 << 20) -> ShareJournal:
    journal = ShareJournal(path, max_bytes=max_bytes)
    journal.open()
    return journal


def test_round_trip_is_exact() -> None:
    for share in (
        make_share(1, difficulty=0.1),
        make_share(2, difficulty=1e-12, account="ünïcode", solo=True),
        ShareRecord("j:x", "a", "w", "s", 2.0**40, 1.2345678901234567e14, 1.7e9 + 0.123456,
                    "j", "00" * 32, True),
    ):
        line = encode(share)
        assert line.endswith(b"\n")
        assert decode(line[:-1]) == share
    assert decode(b"00000000 []") is None
    assert decode(b"garbage") is None


def test_torn_tail_is_cut_at_open(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = opened(path)
    journal.append([make_share(i) for i in range(3)])
    journal.close()
    with path.open("ab") as f:
        f.write(encode(make_share(99))[:40])  # a crash in the middle of an append
    journal = opened(path)
    assert journal.size == path.stat().st_size
    journal.append([make_share(3)])
    shares, offset = journal.read(0, 100)
    assert [s.share_id for s in shares] == [make_share(i).share_id for i in range(4)]
    assert offset == journal.size


def test_damaged_middle_line_is_skipped_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = opened(path)
    journal.append([make_share(i) for i in range(3)])
    journal.close()
    data = bytearray(path.read_bytes())
    second = data.index(b"\n") + 20
    data[second] ^= 0x01  # flip a bit inside the second line's JSON
    path.write_bytes(bytes(data))
    journal = opened(path)
    assert journal.size == len(data)  # the intact third line is kept
    shares, _ = journal.read(0, 100)
    assert [s.share_id for s in shares] == [make_share(0).share_id, make_share(2).share_id]


def test_size_bound(tmp_path: Path) -> None:
    shares = [make_share(i, at=1.7e9) for i in range(3)]
    journal = opened(tmp_path / "j", max_bytes=len(encode(shares[0])) * 2)
    journal.append(shares[:2])
    with pytest.raises(LedgerBusyError):
        journal.append(shares[2:])
    assert journal.read(0, 10)[0] == shares[:2]


def test_chunked_reads_resume_and_clear(tmp_path: Path) -> None:
    journal = opened(tmp_path / "j")
    shares = [make_share(i) for i in range(25)]
    journal.append(shares)
    got: list[ShareRecord] = []
    offset = 0
    while offset < journal.size:
        chunk, offset = journal.read(offset, 7)
        assert len(chunk) <= 7
        got += chunk
    assert got == shares
    journal.clear()
    assert journal.size == 0 and (tmp_path / "j").stat().st_size == 0
    assert journal.read(0, 10) == ([], 0)
