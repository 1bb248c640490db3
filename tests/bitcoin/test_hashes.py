"""The pure-Python RIPEMD-160 fallback (used when OpenSSL lacks ripemd160)."""

import hashlib

import pytest

from pool.bitcoin._ripemd160 import ripemd160

# The RIPEMD-160 paper's test vectors.
VECTORS = [
    (b"", "9c1185a5c5e9fc54612808977ee8f548b2258d31"),
    (b"a", "0bdc9d2d256b3ee9daae347be6f4dc835a467ffe"),
    (b"abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
    (b"message digest", "5d0689ef49d2fae572b881b123a85ffa21595f36"),
    (b"abcdefghijklmnopqrstuvwxyz", "f71c27109c692c1b56bbdceb5b9d2865b3708dbc"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "12a053384a9c0c88e405a06c27dcf49ada62eb2b",
    ),
    (b"1234567890" * 8, "9b752e45573d4b39f4dbd3323cab82bf63326bfb"),
]


@pytest.mark.parametrize(("msg", "digest"), VECTORS)
def test_ripemd160_vectors(msg: bytes, digest: str) -> None:
    assert ripemd160(msg).hex() == digest


@pytest.mark.parametrize("size", [55, 56, 63, 64, 65, 119, 120, 200])
def test_ripemd160_padding_boundaries_match_hashlib(size: int) -> None:
    msg = bytes(range(size))
    try:
        expected = hashlib.new("ripemd160", msg).digest()
    except ValueError:
        pytest.skip("this OpenSSL has no ripemd160 to compare against")
    assert ripemd160(msg) == expected
