"""Double SHA-256 for share validation and nonce scanning, behind three interchangeable backends.

- ``shani``: the native extension's x86 SHA-NI path (CPUs with SHA extensions);
- ``portable``: the native extension's plain C path (any CPU);
- ``python``: hashlib, always available; as fast for one hash per call (the Python-to-C call
  dominates there) but ~4x slower on batches and ~25x slower scanning nonces.

All three return identical results (tests run every one on the same vectors). Selection:
``get_backend(name)``; with no name, the environment variable ``GRIDPOOL_HASH_BACKEND`` if set,
else the fastest available. A name that is unknown or unavailable raises ``HashBackendError``:
asking for SHA-NI and silently getting hashlib would hide a 25x slower scanner.

Byte order: hashes are returned as digest bytes (``hash_le``, internal order; display hex is the
reverse) and targets are 32-byte little-endian integers (``target32_le``), as Bitcoin compares
them. See docs/hashing.md.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Sequence

import structlog

from pool.errors import HashBackendError

try:
    from pool._sha256d import ffi as _ffi
    from pool._sha256d import lib as _lib
except ImportError as err:  # the install builds it; missing means a broken or foreign build
    _ffi = _lib = None
    _NATIVE_IMPORT_ERROR: str | None = f"{type(err).__name__}: {err}"
else:
    _NATIVE_IMPORT_ERROR = None

log = structlog.get_logger(__name__)

BACKEND_NAMES = ("shani", "portable", "python")  # also the order of preference
ENV_VAR = "GRIDPOOL_HASH_BACKEND"

HEADER_BYTES = 80
TARGET_BYTES = 32
HASH_BYTES = 32
NONCE_OFFSET = 76  # the nonce is header bytes 76..79, little-endian
MAX_NONCE = 0xFFFF_FFFF
_NONCE_SPACE = MAX_NONCE + 1

# Selector values of native/sha256d.h.
_NATIVE_SELECTORS = {"portable": 0, "shani": 1}

_pack_nonce = struct.Struct("<I").pack
_HASH_CTYPE = _ffi.typeof("char[32]") if _ffi is not None else None


class HashBackend:
    """One way of computing sha256d; `name` is one of BACKEND_NAMES.

    Methods validate lengths and ranges and raise ValueError; they never return a wrong-size
    result. Native calls release the GIL, so scans may run in worker threads.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<HashBackend {self.name}>"

    def sha256d(self, data: bytes) -> bytes:
        """SHA256(SHA256(data)), 32 bytes."""
        raise NotImplementedError

    def check_header(self, header80: bytes, target32_le: bytes) -> tuple[bytes, bool]:
        """(hash_le, hash <= target) for one 80-byte header."""
        raise NotImplementedError

    def check_headers(
        self, headers: Sequence[bytes], target32_le: bytes
    ) -> list[tuple[bytes, bool]]:
        """check_header for each header, in order (native backends: one C call per batch)."""
        raise NotImplementedError

    def scan(self, header80: bytes, start_nonce: int, count: int, target32_le: bytes) -> int | None:
        """The first nonce in [start_nonce, start_nonce + count), clipped at 2**32 - 1 (no
        wrap-around), for which the header with that nonce hashes <= target; None if none.
        The nonce bytes of `header80` are ignored."""
        raise NotImplementedError


class NativeBackend(HashBackend):
    """`shani` or `portable`: the cffi extension pool._sha256d (native/sha256d.c).

    Per-call overhead matters more than the hashing itself (~0.1 us per header with SHA-NI):
    bytes go to C without a copy, results come back through a `char[]` that unpacks to bytes.
    """

    __slots__ = ("_selector",)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._selector = _NATIVE_SELECTORS[name]

    def sha256d(self, data: bytes) -> bytes:
        out = _ffi.new(_HASH_CTYPE)
        if type(data) is not bytes:
            data = _ffi.from_buffer(data)  # its len() is the size in bytes, whatever the format
        _lib.gp_sha256d(self._selector, data, len(data), out)
        return _ffi.unpack(out, HASH_BYTES)

    def check_header(self, header80: bytes, target32_le: bytes) -> tuple[bytes, bool]:
        _check_header_args(header80, target32_le)
        out = _ffi.new(_HASH_CTYPE)
        ok = _lib.gp_check_header(self._selector, _c_in(header80), _c_in(target32_le), out)
        return _ffi.unpack(out, HASH_BYTES), ok == 1

    def check_headers(
        self, headers: Sequence[bytes], target32_le: bytes
    ) -> list[tuple[bytes, bool]]:
        _require_len(target32_le, TARGET_BYTES, "target32_le")
        joined = _join_headers(headers)
        n = len(headers)
        if n == 0:
            return []
        hashes_out = _ffi.new("char[]", n * HASH_BYTES)
        ok_out = _ffi.new("char[]", n)
        _lib.gp_check_headers(self._selector, joined, n, _c_in(target32_le), hashes_out, ok_out)
        hashes = _ffi.unpack(hashes_out, n * HASH_BYTES)
        oks = _ffi.unpack(ok_out, n)
        return [(hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES], oks[i] == 1) for i in range(n)]

    def scan(self, header80: bytes, start_nonce: int, count: int, target32_le: bytes) -> int | None:
        count = _check_scan_args(header80, start_nonce, count, target32_le)
        if count == 0:
            return None
        found = _lib.gp_scan(
            self._selector, _c_in(header80), start_nonce, count, _c_in(target32_le)
        )
        return None if found < 0 else found


def _c_in(data: bytes) -> object:
    """An input for a `const uint8_t *` parameter: bytes pass as they are (no copy); other
    buffers (bytearray, memoryview) through ffi.from_buffer."""
    return data if type(data) is bytes else _ffi.from_buffer(data)


class PythonBackend(HashBackend):
    """`python`: hashlib (OpenSSL's SHA-256), the reference and the fallback."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("python")

    def sha256d(self, data: bytes) -> bytes:
        return hashlib.sha256(hashlib.sha256(data).digest()).digest()

    def check_header(self, header80: bytes, target32_le: bytes) -> tuple[bytes, bool]:
        _check_header_args(header80, target32_le)
        hash_le = self.sha256d(header80)
        return hash_le, _le_int(hash_le) <= _le_int(target32_le)

    def check_headers(
        self, headers: Sequence[bytes], target32_le: bytes
    ) -> list[tuple[bytes, bool]]:
        _require_len(target32_le, TARGET_BYTES, "target32_le")
        for i, header in enumerate(headers):
            _require_len(header, HEADER_BYTES, f"headers[{i}]")
        target_int = _le_int(target32_le)
        results = []
        for header in headers:
            hash_le = self.sha256d(header)
            results.append((hash_le, _le_int(hash_le) <= target_int))
        return results

    def scan(self, header80: bytes, start_nonce: int, count: int, target32_le: bytes) -> int | None:
        count = _check_scan_args(header80, start_nonce, count, target32_le)
        target_int = _le_int(target32_le)
        midstate = hashlib.sha256(bytes(header80[:64]))  # the first block, hashed once
        middle = bytes(header80[64:NONCE_OFFSET])
        sha256 = hashlib.sha256
        for nonce in range(start_nonce, start_nonce + count):
            first = midstate.copy()
            first.update(middle + _pack_nonce(nonce))
            if _le_int(sha256(first.digest()).digest()) <= target_int:
                return nonce
        return None


def _le_int(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _require_len(value: bytes, expected: int, what: str) -> None:
    if type(value) is not bytes:  # e.g. a memoryview of 4-byte items: len() is not the size
        value = memoryview(value)
        if value.nbytes != expected:
            raise ValueError(f"{what} must be {expected} bytes, got {value.nbytes}")
    elif len(value) != expected:
        raise ValueError(f"{what} must be {expected} bytes, got {len(value)}")


def _check_header_args(header80: bytes, target32_le: bytes) -> None:
    """_require_len for both arguments, with a fast path for the usual bytes (once per share)."""
    if not (
        type(header80) is bytes
        and type(target32_le) is bytes
        and len(header80) == HEADER_BYTES
        and len(target32_le) == TARGET_BYTES
    ):
        _require_len(header80, HEADER_BYTES, "header80")
        _require_len(target32_le, TARGET_BYTES, "target32_le")


def _join_headers(headers: Sequence[bytes]) -> bytes:
    """All headers back to back, after checking each is 80 bytes."""
    joined = b"".join(headers)
    if len(joined) != HEADER_BYTES * len(headers):
        for i, header in enumerate(headers):
            _require_len(header, HEADER_BYTES, f"headers[{i}]")
    return joined


def _check_scan_args(header80: bytes, start_nonce: int, count: int, target32_le: bytes) -> int:
    """Validate a scan request; returns `count` clipped to the nonces left before 2**32."""
    _require_len(header80, HEADER_BYTES, "header80")
    _require_len(target32_le, TARGET_BYTES, "target32_le")
    if not 0 <= start_nonce <= MAX_NONCE:
        raise ValueError(f"start_nonce must be in [0, {MAX_NONCE}], got {start_nonce}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return min(count, _NONCE_SPACE - start_nonce)


@functools.cache
def _backends() -> dict[str, HashBackend]:
    """The available backends, in order of preference; probed once per process."""
    backends: dict[str, HashBackend] = {}
    if _lib is None:
        log.warning(
            "native sha256d extension unavailable, using hashlib only",
            error=_NATIVE_IMPORT_ERROR,
        )
    else:
        if _lib.gp_shani_available():
            backends["shani"] = NativeBackend("shani")
        backends["portable"] = NativeBackend("portable")
    backends["python"] = PythonBackend()
    return backends


def _unavailable_reason() -> str:
    if _lib is None:
        return f"the native extension pool._sha256d did not load ({_NATIVE_IMPORT_ERROR})"
    return "needs an x86 build and a CPU with SHA extensions (CPUID 7 EBX bit 29) and SSE4.1"


def available_backends() -> list[str]:
    """Names of the backends usable here, fastest first, e.g. ["shani", "portable", "python"]."""
    return list(_backends())


def get_backend(name: str | None = None) -> HashBackend:
    """The backend called `name`; None means $GRIDPOOL_HASH_BACKEND if set (and non-empty),
    else the fastest available. Raises HashBackendError for unknown or unavailable names."""
    source = "argument"
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip()
        if not name:
            return next(iter(_backends().values()))
        source = f"from {ENV_VAR}"
    backends = _backends()
    backend = backends.get(name)
    if backend is not None:
        return backend
    available = ", ".join(backends)
    if name not in BACKEND_NAMES:
        raise HashBackendError(
            f"unknown hash backend {name!r} ({source}); "
            f"known: {', '.join(BACKEND_NAMES)}; available here: {available}"
        )
    raise HashBackendError(
        f"hash backend {name!r} ({source}) is not available: {_unavailable_reason()}; "
        f"available here: {available}"
    )


def active_backend_name() -> str:
    """The name of the backend get_backend() returns now (for logs and the metrics gauge)."""
    return get_backend().name
