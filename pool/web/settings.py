"""Settings of the JSON API and dashboard: the `[api]` table of the config file.

Credentials are kept only as SHA-256 hashes: the admin token comes from an environment
variable (default `GRIDPOOL_ADMIN_TOKEN`), a file, or its hash in the config; account
tokens are issued by the admin route (hashes in `tokens_file`) or listed by hash in
`[api.account_tokens]`. Every limit is a named field with its unit.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pool.errors import ConfigError

DEFAULT_ADMIN_TOKEN_ENV = "GRIDPOOL_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 16  # a shorter admin token is refused: it could be guessed
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # pool account names (pool.stratum.usernames)
SOLO_ACCOUNT_RE = re.compile(r"[A-Za-z0-9]{14,90}")  # solo accounts are addresses


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiSettings:
    admin_token_sha256: str | None = field(default=None, repr=False)  # None: admin API off
    tokens_file: Path | None = None  # issued account tokens (hashes); None: <data_dir>/...
    account_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)  # name->sha256
    cache_ttl_s: float = 5.0  # ledger aggregates are recomputed at most this often (s)
    worker_online_s: float = 300.0  # a worker with a share this recent is online (s)
    max_rows: int = 1000  # rows in one list answer (workers, accounts)
    max_blocks: int = 500  # blocks in one /api/blocks answer
    payout_blocks: int = 100  # newest blocks scanned for an account's payouts
    summary_blocks: int = 10  # newest blocks in the summary
    refresh_s: float = 5.0  # the dashboard's poll interval (s)
    max_body_bytes: int = 4096  # request bodies (JSON) larger than this are refused

    @classmethod
    def from_mapping(
        cls,
        raw: Mapping[str, Any],
        *,
        key: str = "api",
        environ: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> ApiSettings:
        """Validate an `[api]` table (ConfigError names `api.<field>`)."""
        env = os.environ if environ is None else environ
        known = {f for f in cls.__dataclass_fields__ if f != "admin_token_sha256"}
        known |= {"admin_token_sha256", "admin_token_env", "admin_token_file"}
        for name in raw:
            if name not in known:
                known_list = ", ".join(sorted(known))
                raise ConfigError(f"{key}.{name}", f"unknown key (known: {known_list})")
        values: dict[str, Any] = {}
        for name in ("cache_ttl_s", "worker_online_s", "refresh_s"):
            if name in raw:
                values[name] = _number(raw[name], f"{key}.{name}", 0.0, 86400.0)
        for name in ("max_rows", "max_blocks", "payout_blocks", "summary_blocks",
                     "max_body_bytes"):
            if name in raw:
                values[name] = int(_number(raw[name], f"{key}.{name}", 1, 1_000_000, integer=True))
        if "tokens_file" in raw:
            values["tokens_file"] = _path(raw["tokens_file"], f"{key}.tokens_file", base_dir)
        values["account_tokens"] = _account_tokens(raw.get("account_tokens", {}), key)
        values["admin_token_sha256"] = _admin_hash(raw, key, env, base_dir)
        return cls(**values)


def _number(value: Any, key: str, low: float, high: float, *, integer: bool = False) -> float:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(key, f"must be {'an integer' if integer else 'a number'}")
    # Range first: math.isfinite() on a huge TOML integer raises OverflowError.
    if not (low <= value <= high and math.isfinite(value)):
        raise ConfigError(key, f"must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _path(value: Any, key: str, base_dir: Path | None) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ConfigError(key, "must be a non-empty path")
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~someone" with no such user, or no home directory
        raise ConfigError(key, f"cannot expand the home directory in {value!r}") from None
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


def _account_tokens(raw: Any, key: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}.account_tokens", "must be a table of account = \"<sha256 hex>\"")
    tokens: dict[str, str] = {}
    for account, digest in raw.items():
        where = f"{key}.account_tokens.{account}"
        if not (ACCOUNT_RE.fullmatch(account) or SOLO_ACCOUNT_RE.fullmatch(account)):
            raise ConfigError(where, "not an account name (1-64 of A-Z a-z 0-9 _ -) or address")
        if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
            raise ConfigError(where, "must be the token's SHA-256 as 64 lowercase hex digits")
        tokens[account] = digest
    return tokens


def _admin_hash(
    raw: Mapping[str, Any], key: str, env: Mapping[str, str], base_dir: Path | None
) -> str | None:
    sources = [s for s in ("admin_token_sha256", "admin_token_env", "admin_token_file")
               if s in raw]
    if len(sources) > 1:
        raise ConfigError(f"{key}.{sources[1]}", f"give only one of {', '.join(sources)}")
    source = sources[0] if sources else "admin_token_env"
    value = raw.get(source, DEFAULT_ADMIN_TOKEN_ENV)
    where = f"{key}.{source}"
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "must be a non-empty string")
    if source == "admin_token_sha256":
        if not _SHA256_RE.fullmatch(value):
            raise ConfigError(where, "must be 64 lowercase hex digits (sha256 of the token)")
        return value
    if source == "admin_token_env":
        token = env.get(value)
        if token is None:
            if sources:  # named explicitly: it must be there
                raise ConfigError(where, f"environment variable {value!r} is not set")
            return None  # the default variable is optional: admin API off
    else:
        path = _path(value, where, base_dir)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or "not UTF-8 text"
            raise ConfigError(where, f"cannot read {path}: {reason}") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(where, f"the admin token must have at least {MIN_TOKEN_CHARS} characters")
    return sha256_hex(token)
