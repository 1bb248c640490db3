"""Per-operator request signing for the grid command API (HMAC-SHA256).

A request carries four headers::

    X-Grid-Key:        the key id
    X-Grid-Timestamp:  unix seconds, optionally with up to 3 decimals (e.g. 1767225600.250)
    X-Grid-Nonce:      16-64 characters of [A-Za-z0-9_-], never reused within the window
    X-Grid-Signature:  lowercase hex HMAC-SHA256(secret, canonical request)

The canonical request is six lines joined by "\\n" (no trailing newline)::

    GRIDPOOL-HMAC-SHA256
    METHOD                    upper case
    PATH                      the request target as sent: path and query, not decoded
    TIMESTAMP                 exactly the header value
    NONCE                     exactly the header value
    SHA256(BODY)              lowercase hex of the body bytes (of b"" when there is none)

Checks, in order, each failing closed: headers present and well-formed, key known (401);
signature correct (401, compared in constant time); timestamp within ``skew_s`` of the
server clock and not before the server started (401: "stale timestamp"); nonce not seen
for this key (409). The nonce is remembered only after the signature verified, so nobody
without the key can fill the store, and until the timestamp leaves the window, so the store
holds at most the nonces of the last 2 x ``skew_s`` seconds; it is bounded by
``max_nonces`` and refuses new requests (503) rather than forget a nonce early. Nonces are
not persisted: the "not before start" rule stops a request signed before a restart from
being replayed after it.

Roles: ``grid`` keys (the grid operator) may command budgets; ``site`` keys (site
operators) and ``admin`` keys may only read. A key may be limited to some sites and pinned
to a TLS client certificate (``cert_sha256``) when the listener uses mTLS.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import math
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from miners.grid.errors import GridAuthError, GridBusyError, GridReplayError
from pool.errors import ConfigError

SCHEME = "GRIDPOOL-HMAC-SHA256"
HEADER_KEY = "X-Grid-Key"
HEADER_TIMESTAMP = "X-Grid-Timestamp"
HEADER_NONCE = "X-Grid-Nonce"
HEADER_SIGNATURE = "X-Grid-Signature"
SECRET_BYTES = 32  # generated secrets (256 bits)
MIN_SECRET_BYTES = 16  # shorter configured secrets are refused
MAX_KEYS_FILE_BYTES = 1024 * 1024  # a keys file larger than this is refused unread
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,3})?")
_SIG_RE = re.compile(r"[0-9a-f]{64}")


class Role(StrEnum):
    GRID = "grid"  # the grid operator: may post and cancel curtailments
    SITE = "site"  # a site operator: read only
    ADMIN = "admin"  # a gridpool administrator: read only on this API


@dataclass(frozen=True, slots=True)
class Credential:
    key_id: str
    role: Role
    secret: bytes = field(repr=False)
    sites: frozenset[str] | None = None  # None: every site
    cert_sha256: str | None = None  # hex fingerprint of the required TLS client certificate

    def covers(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    @property
    def can_command(self) -> bool:
        return self.role is Role.GRID


def canonical_request(method: str, path_qs: str, timestamp: str, nonce: str,
                      body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    lines = (SCHEME, method.upper(), path_qs, timestamp, nonce, digest)
    return "\n".join(lines).encode()


def sign(secret: bytes, method: str, path_qs: str, timestamp: str, nonce: str,
         body: bytes) -> str:
    message = canonical_request(method, path_qs, timestamp, nonce, body)
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_headers(key_id: str, secret: bytes, method: str, path_qs: str, body: bytes, *,
                   now: float, nonce: str | None = None) -> dict[str, str]:
    """The four headers for a request (what `gridpool grid curtail` sends)."""
    timestamp = f"{now:.3f}"
    nonce = nonce or secrets.token_urlsafe(18)
    return {
        HEADER_KEY: key_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: sign(secret, method, path_qs, timestamp, nonce, body),
    }


class NonceStore:
    """Nonces per key until their timestamp leaves the window; bounded, never evicts early."""

    def __init__(self, max_nonces: int) -> None:
        if max_nonces < 1:
            raise ConfigError("grid.http.max_nonces", "must be >= 1")
        self.max_nonces = max_nonces
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[float, tuple[str, str]]] = []  # a heap

    def __len__(self) -> int:
        return len(self._seen)

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            self._seen.discard(heapq.heappop(self._expiry)[1])

    def remember(self, key_id: str, nonce: str, *, expires: float, now: float) -> None:
        """Record a nonce; GridReplayError if seen, GridBusyError if the store is full."""
        self._purge(now)
        item = (key_id, nonce)
        if item in self._seen:
            raise GridReplayError(f"nonce already used by key {key_id}")
        if len(self._seen) >= self.max_nonces:
            raise GridBusyError("too many recent requests: nonce store full, retry shortly")
        self._seen.add(item)
        heapq.heappush(self._expiry, (expires, item))


@dataclass(slots=True)
class Verifier:
    """Checks a request's signature headers against a key ring."""

    keys: Mapping[str, Credential]
    nonces: NonceStore
    skew_s: float  # accepted |server clock - request timestamp|
    not_before: float  # requests timestamped before this (the server start) are stale

    def verify(self, headers: Mapping[str, str], method: str, path_qs: str, body: bytes,
               *, now: float, peer_cert_sha256: str | None = None) -> Credential:
        key_id, timestamp, nonce, signature = (
            headers.get(h, "") for h in (HEADER_KEY, HEADER_TIMESTAMP, HEADER_NONCE,
                                         HEADER_SIGNATURE))
        if not (key_id and timestamp and nonce and signature):
            raise GridAuthError("missing signature headers")
        if not (_KEY_ID_RE.fullmatch(key_id) and _TIMESTAMP_RE.fullmatch(timestamp)
                and _NONCE_RE.fullmatch(nonce) and _SIG_RE.fullmatch(signature)):
            raise GridAuthError("malformed signature headers")
        credential = self.keys.get(key_id)
        if credential is None:
            raise GridAuthError("unknown key")
        expected = sign(credential.secret, method, path_qs, timestamp, nonce, body)
        if not hmac.compare_digest(expected, signature):
            raise GridAuthError("bad signature")
        ts = float(timestamp)
        if abs(now - ts) > self.skew_s or ts < self.not_before:
            raise GridAuthError(f"stale timestamp: outside {self.skew_s:g} s of server time")
        if credential.cert_sha256 is not None and (
                peer_cert_sha256 is None
                or not hmac.compare_digest(credential.cert_sha256, peer_cert_sha256)):
            raise GridAuthError("TLS client certificate does not match the key")
        self.nonces.remember(key_id, nonce, expires=max(ts, now) + self.skew_s, now=now)
        return credential


# -- key files ---------------------------------------------------------------------------


def new_key_file(path: Path, key_id: str) -> dict[str, str]:
    """Write a fresh key (JSON: key_id, secret_hex) readable by the owner only."""
    if not _KEY_ID_RE.fullmatch(key_id):
        raise ConfigError("key_id", f"must match {_KEY_ID_RE.pattern}")
    data = {"key_id": key_id, "secret_hex": secrets.token_hex(SECRET_BYTES)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    return data


def read_key_file(path: Path) -> tuple[str, bytes]:
    """(key_id, secret) from a key file written by `new_key_file`."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        key_id, secret_hex = raw["key_id"], raw["secret_hex"]
        secret = bytes.fromhex(secret_hex)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(str(path), f"not a grid key file ({type(err).__name__})") from None
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise ConfigError(f"{path}.key_id", f"must match {_KEY_ID_RE.pattern}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path}.secret_hex", f"must be at least {MIN_SECRET_BYTES} bytes")
    return key_id, secret


def load_keys(path: Path, *, environ: Mapping[str, str] | None = None) -> dict[str, Credential]:
    """The server's key ring: a TOML file of ``[[key]]`` tables (docs/grid-api.md)."""
    try:
        if path.stat().st_size > MAX_KEYS_FILE_BYTES:
            raise ConfigError(str(path), f"larger than {MAX_KEYS_FILE_BYTES} bytes")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(str(path), f"cannot read keys file: {err}") from None
    rows = raw.get("key", [])
    if set(raw) - {"key"} or not isinstance(rows, list):
        raise ConfigError(str(path), "expected only [[key]] tables")
    keys: dict[str, Credential] = {}
    for i, row in enumerate(rows):
        cred = _credential(row, f"key[{i}]", path.parent, environ or os.environ)
        if cred.key_id in keys:
            raise ConfigError(f"key[{i}].id", f"duplicate key id {cred.key_id!r}")
        keys[cred.key_id] = cred
    return keys


_KEY_FIELDS = ("id", "role", "sites", "file", "secret_env", "cert_sha256")


def _credential(row: Any, key: str, base: Path, environ: Mapping[str, str]) -> Credential:
    if not isinstance(row, dict):
        raise ConfigError(key, "must be a table")
    unknown = set(row) - set(_KEY_FIELDS)
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    try:
        role = Role(row.get("role", ""))
    except ValueError:
        raise ConfigError(f"{key}.role", f"must be one of {[r.value for r in Role]}") from None
    if "file" in row:
        key_id, secret = read_key_file(base / str(row["file"]))
        if row.get("id", key_id) != key_id:
            raise ConfigError(f"{key}.id", "does not match the key file's key_id")
    elif "secret_env" in row and "id" in row:
        key_id = str(row["id"])
        hex_value = environ.get(str(row["secret_env"]))
        if hex_value is None:
            raise ConfigError(f"{key}.secret_env", f"variable {row['secret_env']} is not set")
        try:
            secret = bytes.fromhex(hex_value)
        except ValueError:
            raise ConfigError(f"{key}.secret_env", "must hold a hex secret") from None
    else:
        raise ConfigError(key, "needs file = ... or id = ... with secret_env = ...")
    if not _KEY_ID_RE.fullmatch(key_id):
        raise ConfigError(f"{key}.id", f"must match {_KEY_ID_RE.pattern}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(key, f"secret must be at least {MIN_SECRET_BYTES} bytes")
    sites = row.get("sites", ["*"])
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise ConfigError(f"{key}.sites", "must be a list of site ids (or [\"*\"])")
    pin = row.get("cert_sha256")
    if pin is not None:
        pin = str(pin).lower().replace(":", "")
        if not _SIG_RE.fullmatch(pin):
            raise ConfigError(f"{key}.cert_sha256", "must be a SHA-256 hex fingerprint")
    return Credential(key_id, role, secret, None if "*" in sites else frozenset(sites), pin)


def check_skew(skew_s: float) -> float:
    if not (math.isfinite(skew_s) and 0 < skew_s <= 3600):
        raise ConfigError("grid.http.skew_s", "must be in (0, 3600] seconds")
    return skew_s
