from pool.stratum.framing import OVERSIZED, LineFramer


def test_lines_split_across_reads_and_crlf():
    framer = LineFramer(64)
    assert framer.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert framer.feed(b':2}\r\n\n  \n{"c":3}\n') == [b'{"b":2}', b'{"c":3}']
    assert framer.buffered_bytes == 0


def test_oversized_line_is_dropped_unbuffered_and_reported_once():
    framer = LineFramer(16)
    out = framer.feed(b"x" * 10)
    assert out == []
    out = framer.feed(b"y" * 1000)  # past the limit: dropped, not buffered
    assert out == [OVERSIZED]
    assert framer.buffered_bytes == 0
    assert framer.feed(b"z" * 5000) == []  # still the same line: nothing new
    assert framer.feed(b'zz\n{"ok":1}\n') == [b'{"ok":1}']


def test_oversized_complete_line_in_one_read():
    framer = LineFramer(16)
    assert framer.feed(b"a" * 17 + b"\nshort\n") == [OVERSIZED, b"short"]
    assert framer.feed(b"a" * 16 + b"\n") == [b"a" * 16]
