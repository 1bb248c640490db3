"""API credentials: bearer tokens, stored only as SHA-256 hashes.

- The **admin token** (ApiSettings.admin_token_sha256) may read every account and issue or
  revoke account tokens (`POST/DELETE /api/admin/accounts/{account}/token`).
- An **account token** reads (and changes the payout address of) that one account. Issued
  tokens live in `tokens_file` (JSON, mode 0600, replaced atomically); tokens listed by
  hash in `[api.account_tokens]` are accepted too and cannot be revoked through the API.

Tokens are 256-bit random strings, so comparing hashes is safe against guessing; the hash
comparison is constant-time anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from pool.errors import ApiError, ConfigError
from pool.web.settings import sha256_hex

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "gpa_"  # issued account tokens start with this (easy to spot in a leak scan)
TOKEN_BYTES = 32  # of randomness per issued token
MAX_TOKEN_CHARS = 256  # a longer Authorization header is refused unread
MAX_TOKENS = 100_000  # issued account tokens kept in the tokens file
MAX_TOKENS_FILE_BYTES = 64 << 20  # a larger tokens file is refused at start
FILE_VERSION = 1
KEY = "api.tokens_file"  # config key named by errors about the file


class TokenStore:
    """Issued account-token hashes, persisted in one JSON file."""

    def __init__(self, path: Path, static: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.static = dict(static or {})  # from the config: account -> sha256 hex
        self._issued: dict[str, dict[str, Any]] = {}  # account -> {"sha256", "created"}
        self._lock = asyncio.Lock()

    def load(self) -> None:
        """Read the file (missing: no issued tokens). ConfigError when it is unusable."""
        try:
            with self.path.open("rb") as fh:
                data = fh.read(MAX_TOKENS_FILE_BYTES + 1)
        except FileNotFoundError:
            return
        except OSError as err:
            raise ConfigError(KEY, f"cannot read {self.path}: {err.strerror}") from None
        if len(data) > MAX_TOKENS_FILE_BYTES:
            raise ConfigError(KEY, f"{self.path} is over {MAX_TOKENS_FILE_BYTES} bytes")
        try:
            doc = json.loads(data)
            accounts = doc["accounts"]
            if doc.get("version") != FILE_VERSION or not isinstance(accounts, dict):
                raise ValueError("unknown layout")
            self._issued = {str(a): {"sha256": str(e["sha256"]), "created": float(e["created"])}
                            for a, e in accounts.items()}
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(KEY, f"{self.path} is not a token file: {err}") from None
        log.info("api_tokens_loaded", path=str(self.path), issued=len(self._issued),
                 configured=len(self.static))

    def has(self, account: str) -> bool:
        return account in self._issued or account in self.static

    def check(self, account: str, token: str) -> bool:
        digest = sha256_hex(token)
        candidates = [e["sha256"] for e in (self._issued.get(account),) if e]
        if account in self.static:
            candidates.append(self.static[account])
        # (every candidate is compared: the time does not say which one matched)
        return any([hmac.compare_digest(digest, c) for c in candidates])

    def info(self, account: str) -> dict[str, Any]:
        issued = self._issued.get(account)
        return {"issued": issued is not None, "issued_time": issued["created"] if issued else None,
                "configured": account in self.static}

    async def issue(self, account: str) -> str:
        """A new token for `account` (replacing an issued one); only its hash is kept."""
        async with self._lock:
            if account not in self._issued and len(self._issued) >= MAX_TOKENS:
                raise ApiError(409, "too_many_tokens", f"at most {MAX_TOKENS} issued tokens")
            token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
            issued = dict(self._issued)
            issued[account] = {"sha256": sha256_hex(token), "created": time.time()}
            await asyncio.to_thread(_write_atomic, self.path, issued)
            self._issued = issued
        log.info("api_token_issued", account=account)
        return token

    async def revoke(self, account: str) -> bool:
        async with self._lock:
            if account not in self._issued:
                return False
            issued = {a: e for a, e in self._issued.items() if a != account}
            await asyncio.to_thread(_write_atomic, self.path, issued)
            self._issued = issued
        log.info("api_token_revoked", account=account)
        return True


def _write_atomic(path: Path, issued: dict[str, dict[str, Any]]) -> None:
    """Write, fsync, rename: a crash leaves the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = json.dumps({"version": FILE_VERSION, "accounts": issued}, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # directory fsync: the rename itself is durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def bearer_token(request: web.Request) -> str:
    """The request's bearer token; ApiError 401 saying what is wrong with the header."""
    header = request.headers.get("Authorization")
    if header is None:
        raise ApiError(401, "unauthorized", "this route needs an 'Authorization: Bearer <token>' "
                       "header", field="Authorization")
    if len(header) > MAX_TOKEN_CHARS + 7:
        raise ApiError(401, "unauthorized", "the Authorization header is too long",
                       field="Authorization")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'",
                       field="Authorization")
    return token


class Authenticator:
    """Decides whether a request may act as admin or read one account."""

    def __init__(self, admin_sha256: str | None, tokens: TokenStore) -> None:
        self.admin_sha256 = admin_sha256
        self.tokens = tokens

    def is_admin_token(self, token: str) -> bool:
        return self.admin_sha256 is not None and hmac.compare_digest(
            sha256_hex(token), self.admin_sha256)

    def require_admin(self, request: web.Request) -> None:
        token = bearer_token(request)
        if self.admin_sha256 is None:
            raise ApiError(403, "admin_disabled", "the admin API is off: no admin token is "
                           "configured (GRIDPOOL_ADMIN_TOKEN or [api] admin_token_*)")
        if not self.is_admin_token(token):
            raise ApiError(403, "forbidden", "this route needs the admin token")

    async def require_account(
        self, request: web.Request, account: str, exists: Callable[[str], Awaitable[bool]]
    ) -> None:
        """Admin token or `account`'s own token; 404 for an account the pool does not know
        (no token of its own and no trace in the ledger)."""
        token = bearer_token(request)
        if not self.tokens.has(account) and not await exists(account):
            raise ApiError(404, "unknown_account", f"no account {account!r}", field="account")
        if self.is_admin_token(token) or self.tokens.check(account, token):
            return
        raise ApiError(403, "forbidden", f"this token does not grant access to account {account!r}")
