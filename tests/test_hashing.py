"""pool.hashing: every available backend on the same vectors (FIPS 180-4, real block headers,
nonce scans), backend selection, and the C code itself under sanitizers."""

import functools
import hashlib
import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import REPO, TESTDATA

from pool import hashing
from pool.errors import HashBackendError

MAX_NONCE = 0xFFFF_FFFF
EASY_1_IN_16 = bytes([0xFF] * 31 + [0x0F])  # about one hash in 16 is below it
ZERO_TARGET = bytes(32)  # nothing hashes below it (a zero hash aside)


def _cpu_has_sha_ni() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "sha_ni" in line.split() for line in text.splitlines())


CPU_HAS_SHA_NI = _cpu_has_sha_ni()


@pytest.fixture(params=hashing.available_backends())
def backend(request: pytest.FixtureRequest) -> hashing.HashBackend:
    return hashing.get_backend(request.param)


# ---- helpers: an independent reference (plain hashlib, no midstate) and nbits ----


def ref_sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def le_int(data: bytes) -> int:
    return int.from_bytes(data, "little")


def le32(value: int) -> bytes:
    return value.to_bytes(32, "little")


def with_nonce(header80: bytes, nonce: int) -> bytes:
    return header80[:76] + struct.pack("<I", nonce)


def bits_target_le(header80: bytes) -> bytes:
    """The target encoded by the header's nBits (compact form: 1-byte exponent, 3-byte
    mantissa), as 32 little-endian bytes."""
    bits = struct.unpack_from("<I", header80, 72)[0]
    exponent, mantissa = bits >> 24, bits & 0x007F_FFFF
    assert exponent >= 3 and not bits & 0x0080_0000  # true of every real header here
    return le32(mantissa << (8 * (exponent - 3)))


def ref_scan(header80: bytes, start: int, count: int, target32_le: bytes) -> int | None:
    target = le_int(target32_le)
    for nonce in range(start, min(start + count, MAX_NONCE + 1)):
        if le_int(ref_sha256d(with_nonce(header80, nonce))) <= target:
            return nonce
    return None


# ---- vectors ----

# FIPS 180-4 / NIST example messages and their published SHA-256 digests.
FIPS_VECTORS = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
        b"klmnopqrlmnopqrsmnopqrstnopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]

GENESIS_HEADER = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12"
    "b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)
GENESIS_HASH_HEX = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"


def _real_headers() -> list[tuple[str, bytes, str]]:
    """(name, header80, block hash as display hex) for every block in the shared test data."""
    found = [("mainnet_genesis", GENESIS_HEADER, GENESIS_HASH_HEX)]
    files = {
        "block413567.raw": "0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069",
    }
    for path in sorted(TESTDATA.glob("*_block_*.raw")):
        files[path.name] = path.stem.rsplit("_", 1)[1]
    for file_name, hash_hex in sorted(files.items()):
        with (TESTDATA / file_name).open("rb") as raw:
            found.append((file_name, raw.read(80), hash_hex))
    rows = json.loads((TESTDATA / "blockfilters.json").read_text())[1:]  # row 0: column names
    found += [(f"testnet3_{row[0]}", bytes.fromhex(row[2][:160]), row[1]) for row in rows]
    return found


REAL_HEADERS = _real_headers()
REAL_HEADER_IDS = [name for name, _, _ in REAL_HEADERS]


def test_real_header_set_is_complete() -> None:
    # genesis + 3 .raw files + 10 blockfilters rows: a missing file must not shrink the test
    assert len(REAL_HEADERS) == 14
    assert len({name for name, _, _ in REAL_HEADERS}) == 14


# ---- backend availability and selection ----


def test_available_backends_match_this_cpu() -> None:
    names = hashing.available_backends()
    # The install builds the extension or fails, so portable must always be there.
    assert names[-2:] == ["portable", "python"], names
    if CPU_HAS_SHA_NI:
        assert names == ["shani", "portable", "python"], "CPU has sha_ni but shani is missing"
    else:
        assert "shani" not in names
    assert [n for n in hashing.BACKEND_NAMES if n in names] == names  # preference order
    for name in hashing.BACKEND_NAMES:
        if name in names:
            assert hashing.get_backend(name).name == name
        else:
            with pytest.raises(HashBackendError, match=name):
                hashing.get_backend(name)


def test_default_is_the_fastest_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hashing.ENV_VAR, raising=False)
    best = hashing.available_backends()[0]
    assert hashing.get_backend().name == best
    assert hashing.active_backend_name() == best
    assert hashing.get_backend() is hashing.get_backend(best)
    monkeypatch.setenv(hashing.ENV_VAR, "")  # set but empty counts as unset
    assert hashing.get_backend().name == best


@pytest.mark.parametrize("name", hashing.available_backends())
def test_env_var_selects_backend(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(hashing.ENV_VAR, name)
    assert hashing.get_backend().name == name
    assert hashing.active_backend_name() == name


def test_env_var_unknown_backend_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hashing.ENV_VAR, "bogus")
    with pytest.raises(HashBackendError) as excinfo:
        hashing.get_backend()
    message = str(excinfo.value)
    assert "'bogus'" in message and hashing.ENV_VAR in message
    for name in hashing.available_backends():
        assert name in message


@pytest.mark.parametrize("name", ["bogus", "SHANI", "", "sha-ni"])
def test_unknown_backend_argument_raises(name: str) -> None:
    with pytest.raises(HashBackendError, match="unknown hash backend"):
        hashing.get_backend(name)


# ---- sha256d ----


@pytest.mark.parametrize(
    ("message", "sha256_hex"), FIPS_VECTORS, ids=["empty", "abc", "448bit", "896bit", "million_a"]
)
def test_fips_vectors(backend: hashing.HashBackend, message: bytes, sha256_hex: str) -> None:
    digest = bytes.fromhex(sha256_hex)
    assert hashlib.sha256(message).digest() == digest  # the vector itself
    assert backend.sha256d(message) == hashlib.sha256(digest).digest()


def test_all_lengths_around_padding(backend: hashing.HashBackend) -> None:
    rng = random.Random(180_4)
    for length in [*range(0, 201), 1000, 4096 + 55, 4096 + 56, 4096 + 64]:
        data = rng.randbytes(length)
        assert backend.sha256d(data) == ref_sha256d(data), length


def test_accepts_any_contiguous_buffer(backend: hashing.HashBackend) -> None:
    data = bytes(range(100))
    want = ref_sha256d(data)
    assert backend.sha256d(bytearray(data)) == want
    assert backend.sha256d(memoryview(data)) == want
    assert backend.sha256d(memoryview(data[:96]).cast("I")) == ref_sha256d(data[:96])
    header = GENESIS_HEADER
    target = bits_target_le(header)
    want_check = backend.check_header(header, target)
    assert backend.check_header(bytearray(header), memoryview(target)) == want_check
    assert backend.scan(memoryview(header), 2083236893, 1, bytearray(target)) == 2083236893


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_sha256d_matches_hashlib(data: bytes) -> None:
    for name in hashing.available_backends():
        assert hashing.get_backend(name).sha256d(data) == ref_sha256d(data), name


# ---- check_header / check_headers ----


@pytest.mark.parametrize(("name", "header80", "hash_hex"), REAL_HEADERS, ids=REAL_HEADER_IDS)
def test_real_headers(
    backend: hashing.HashBackend, name: str, header80: bytes, hash_hex: str
) -> None:
    hash_le = bytes.fromhex(hash_hex)[::-1]
    target = bits_target_le(header80)
    assert backend.check_header(header80, target) == (hash_le, True)
    assert backend.check_header(header80, hash_le) == (hash_le, True)  # equal passes
    assert backend.check_header(header80, le32(le_int(hash_le) - 1)) == (hash_le, False)
    assert backend.sha256d(header80) == hash_le
    assert backend.check_headers([header80, header80], hash_le) == [(hash_le, True)] * 2
    assert backend.check_headers([header80], le32(le_int(hash_le) - 1)) == [(hash_le, False)]


@settings(max_examples=150, deadline=None)
@given(header=st.binary(min_size=80, max_size=80), target=st.binary(min_size=32, max_size=32))
def test_check_header_compares_little_endian(header: bytes, target: bytes) -> None:
    hash_le = ref_sha256d(header)
    for candidate in (target, hash_le, le32(max(le_int(hash_le) - 1, 0))):
        want = (hash_le, le_int(hash_le) <= le_int(candidate))
        for name in hashing.available_backends():
            assert hashing.get_backend(name).check_header(header, candidate) == want, name


def test_check_headers_batch_equals_one_by_one(backend: hashing.HashBackend) -> None:
    rng = random.Random(7)
    headers = [h for _, h, _ in REAL_HEADERS] + [rng.randbytes(80) for _ in range(50)]
    target = EASY_1_IN_16
    batch = backend.check_headers(headers, target)
    assert batch == [backend.check_header(h, target) for h in headers]
    assert any(ok for _, ok in batch) and not all(ok for _, ok in batch)
    assert backend.check_headers([], target) == []
    assert backend.check_headers(tuple(headers[:3]), target) == batch[:3]


# ---- scan ----


@pytest.mark.parametrize(("name", "header80", "hash_hex"), REAL_HEADERS, ids=REAL_HEADER_IDS)
def test_scan_finds_the_real_nonce(
    backend: hashing.HashBackend, name: str, header80: bytes, hash_hex: str
) -> None:
    nonce = struct.unpack_from("<I", header80, 76)[0]
    start = max(nonce - 1000, 0)
    count = min(nonce + 1000, MAX_NONCE + 1) - start
    blank = with_nonce(header80, 0)  # the scanner must ignore the header's own nonce
    assert backend.scan(blank, start, count, bits_target_le(header80)) == nonce
    hash_le = bytes.fromhex(hash_hex)[::-1]
    assert backend.scan(blank, start, count, hash_le) == nonce  # tight: only this nonce
    assert backend.scan(blank, start, count, le32(le_int(hash_le) - 1)) is None
    if nonce < MAX_NONCE:  # a window just past it, at the tight target
        assert backend.scan(blank, nonce + 1, 2000, hash_le) is None
    assert backend.scan(blank, nonce, 0, bits_target_le(header80)) is None


def test_scan_matches_reference_on_random_headers(backend: hashing.HashBackend) -> None:
    rng = random.Random(2024)
    target = bytes([0xFF] * 31 + [0x00])  # about one hash in 256
    found = 0
    for _ in range(12):
        header = rng.randbytes(80)
        start = rng.randrange(MAX_NONCE + 1)
        count = rng.randrange(0, 700)  # odd and even counts: pairs and a lone last nonce
        want = ref_scan(header, start, count, target)
        assert backend.scan(header, start, count, target) == want
        found += want is not None
    assert 0 < found < 12  # both outcomes exercised


@functools.cache
def _header_that_only_wraps() -> tuple[bytes, bytes]:
    """A header and target such that no nonce in the last 10 meets the target but some nonce
    in [0, 90) does: a scanner that wraps past 2**32 - 1 would report it."""
    rng = random.Random(32)
    while True:
        header = rng.randbytes(80)
        tail = [le_int(ref_sha256d(with_nonce(header, n))) for n in range(MAX_NONCE - 9, 2**32)]
        head = [le_int(ref_sha256d(with_nonce(header, n))) for n in range(90)]
        if min(head) < min(tail):
            return header, le32(min(head))


def test_scan_stops_at_the_top_of_the_nonce_range(backend: hashing.HashBackend) -> None:
    header, target = _header_that_only_wraps()
    assert backend.scan(header, MAX_NONCE - 9, 100, target) is None
    assert backend.scan(header, MAX_NONCE - 9, 2**70, target) is None  # huge counts clip
    assert backend.scan(header, 0, 90, target) is not None  # the target is reachable
    assert backend.scan(header, MAX_NONCE, 1, le32(2**256 - 1)) == MAX_NONCE


def test_scan_identical_across_backends() -> None:
    rng = random.Random(99)
    backends = [hashing.get_backend(n) for n in hashing.available_backends()]
    for _ in range(20):
        header, start = rng.randbytes(80), rng.randrange(MAX_NONCE - 500)
        count = rng.randrange(1, 400)
        results = {b.name: b.scan(header, start, count, EASY_1_IN_16) for b in backends}
        assert len(set(results.values())) == 1, results
    long_scan = {b.name: b.scan(header, 0, 200_000, ZERO_TARGET) for b in backends[:-1]}
    assert set(long_scan.values()) == {None}


# ---- argument validation ----


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.check_header(bytes(79), bytes(32)), "header80 must be 80 bytes, got 79"),
        (lambda b: b.check_header(bytes(81), bytes(32)), "header80 must be 80 bytes, got 81"),
        (lambda b: b.check_header(bytes(80), bytes(31)), "target32_le must be 32 bytes"),
        (lambda b: b.check_headers([bytes(80), bytes(8)], bytes(32)), r"headers\[1\]"),
        (lambda b: b.check_headers([bytes(80)], bytes(33)), "target32_le must be 32 bytes"),
        (lambda b: b.scan(bytes(76), 0, 1, bytes(32)), "header80 must be 80 bytes, got 76"),
        (lambda b: b.scan(bytes(80), 0, 1, bytes(8)), "target32_le must be 32 bytes"),
        (lambda b: b.scan(bytes(80), -1, 1, bytes(32)), "start_nonce must be in"),
        (lambda b: b.scan(bytes(80), 2**32, 1, bytes(32)), "start_nonce must be in"),
        (lambda b: b.scan(bytes(80), 0, -1, bytes(32)), "count must be >= 0"),
        (lambda b: b.check_header(memoryview(bytes(320)).cast("I"), bytes(32)), "got 320"),
    ],
)
def test_bad_arguments_raise_value_error(backend: hashing.HashBackend, call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(backend)


# ---- the C code alone, under AddressSanitizer and UBSan ----


@pytest.mark.parametrize("defines", [[], ["-DGP_NO_SHANI"]], ids=["as_built", "portable_only"])
def test_native_selftest_under_sanitizers(tmp_path: Path, defines: list[str]) -> None:
    """native/selftest.c with AddressSanitizer and UBSan, warnings as errors; portable_only
    is the build other architectures (and non-GNU compilers) get."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert compiler, "no C compiler, yet the extension was built with one"
    exe = tmp_path / "selftest"
    flags = ["-std=c99", "-g", "-O1", "-Wall", "-Wextra", "-Wpedantic", "-Werror", *defines]
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    native = REPO / "native"
    build = subprocess.run(
        [compiler, *flags, *sanitize, f"-I{native}", str(native / "selftest.c"),
         str(native / "sha256d.c"), "-o", str(exe)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    backends = 2 if "shani" in hashing.available_backends() and not defines else 1
    assert run.stdout.strip() == f"ok (backends checked: {backends})"
