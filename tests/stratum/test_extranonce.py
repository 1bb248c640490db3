import pytest

from pool.stratum.extranonce import ExtranonceAllocator, ExtranonceExhausted


def test_unique_while_live_and_reused_last():
    alloc = ExtranonceAllocator(4)
    values = [alloc.allocate() for _ in range(1000)]
    assert len(set(values)) == 1000 and all(len(v) == 4 for v in values)
    assert values[:2] == [bytes(4), b"\x00\x00\x00\x01"]  # allocated in order, not random
    alloc.release(values[5])
    assert alloc.allocate() == (1000).to_bytes(4, "big")  # a freed value is the last reused
    assert len(alloc) == 1000


def test_prefix_and_exhaustion():
    alloc = ExtranonceAllocator(2, prefix=b"\x07")
    values = {alloc.allocate() for _ in range(256)}
    assert all(v[:1] == b"\x07" for v in values) and len(values) == 256
    with pytest.raises(ExtranonceExhausted):
        alloc.allocate()
    alloc.release(b"\x07\x10")
    assert alloc.allocate() == b"\x07\x10"
