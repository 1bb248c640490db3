"""The `[ledger]` config table: where shares and blocks go, and the share recorder's limits.

`LedgerSettings.from_mapping` checks types and ranges (errors name `ledger.<field>`);
`pool.config` then resolves what depends on the rest of the file: the default URL
(`sqlite:///<data_dir>/ledger.db`), the journal path (default `<data_dir>/shares.journal`)
and a PostgreSQL password from `password_file` / `password_env`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pool.errors import ConfigError
from pool.ledger import recorder

SQLITE_FILE_NAME = "ledger.db"
JOURNAL_FILE_NAME = "shares.journal"
URL_SCHEMES = ("sqlite", "postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class LedgerSettings:
    """Every `[ledger]` key. Units are in the names."""

    # sqlite:///absolute/path.db or postgresql://user@host:5432/db[?schema=NAME];
    # "" = sqlite:///<data_dir>/ledger.db.
    url: str = ""
    # PostgreSQL password, inline or (better) from a file or an environment variable.
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    # Journal acknowledged shares to a local file while the database cannot take them.
    journal: bool = True
    journal_path: str = ""  # "" = <data_dir>/shares.journal
    # Share recorder (pool.ledger.recorder): one transaction per batch of at most this many.
    max_batch: int = recorder.MAX_BATCH
    # After the first share of a batch arrives, wait this long for others to join it (ms).
    linger_ms: float = recorder.LINGER_MS
    # Shares waiting to become durable; past it shares are refused (Stratum error 20).
    max_pending: int = recorder.MAX_PENDING
    # A share not durable within this long is refused, never acknowledged (s).
    record_timeout_s: float = recorder.RECORD_TIMEOUT_S
    # A batch commit slower than this counts as an outage: the journal takes over (s).
    commit_timeout_s: float = recorder.COMMIT_TIMEOUT_S
    # Journal size bound; past it shares are refused until the database is back (bytes).
    journal_max_bytes: int = recorder.JOURNAL_MAX_BYTES
    # Deadline of every other ledger operation (window reads, block records) (s).
    op_timeout_s: float = 30.0
    # Raw shares older than twice the PPLNS window are deleted this often (s).
    prune_interval_s: float = 300.0
    # Also delete raw shares older than this (s); unset: by the window alone in pplns
    # mode, 7 days in solo mode. In pplns mode it must exceed the window's duration.
    raw_share_max_age_s: float | None = None
    # A new job waits at most this long for a fresh PPLNS window, else it uses the last (s).
    window_read_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        _check("max_batch", self.max_batch, 1, 100_000)
        _check("linger_ms", self.linger_ms, 0.0, 1000.0)
        _check("max_pending", self.max_pending, 1, 10_000_000)
        _check("record_timeout_s", self.record_timeout_s, 0.1, 600.0)
        _check("commit_timeout_s", self.commit_timeout_s, 0.05, 600.0)
        _check("journal_max_bytes", self.journal_max_bytes, 1 << 16, 1 << 44)
        _check("op_timeout_s", self.op_timeout_s, 0.1, 3600.0)
        _check("prune_interval_s", self.prune_interval_s, 1.0, 86400.0)
        if self.raw_share_max_age_s is not None:
            _check("raw_share_max_age_s", self.raw_share_max_age_s, 60.0, 10 * 365 * 86400.0)
        _check("window_read_timeout_s", self.window_read_timeout_s, 0.0, 60.0)
        sources = [n for n in ("password", "password_file", "password_env")
                   if getattr(self, n) is not None]
        if len(sources) > 1:
            raise ConfigError(sources[1], f"give only one of {', '.join(sources)}")
        if self.url:
            check_url(self.url)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, key: str = "ledger") -> LedgerSettings:
        from pool.stratum.settings import settings_from_mapping  # (it imports pool.config)

        return settings_from_mapping(cls, raw, key)

    @property
    def journal_file(self) -> str | None:
        return self.journal_path if self.journal and self.journal_path else None

    def dsn(self) -> str:
        """The URL to open, with the resolved PostgreSQL password put in."""
        if self.password is None or not self.url.startswith("postgres"):
            return self.url
        parts = urlsplit(self.url)
        user = unquote(parts.username or "")
        host = parts.netloc.rsplit("@", 1)[-1]
        netloc = f"{quote(user, safe='')}:{quote(self.password, safe='')}@{host}"
        return parts._replace(netloc=netloc).geturl()

    def redacted_url(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.netloc.rsplit("@", 1)[-1]
        return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()

    def log_settings(self, logger: Any) -> None:
        values = dataclasses.asdict(self)
        values["url"] = self.redacted_url()
        values["password"] = "***" if self.password is not None else None
        logger.info("ledger settings", **values)

    def recorder_options(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch, "linger_ms": self.linger_ms,
            "max_pending": self.max_pending, "record_timeout_s": self.record_timeout_s,
            "commit_timeout_s": self.commit_timeout_s,
            "journal_max_bytes": self.journal_max_bytes,
        }


def check_url(url: str) -> None:
    """ConfigError('url', …) unless `url` is a ledger URL open_ledger accepts."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError("url", "is not a valid URL") from None
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError("url", "must start with sqlite:/// or postgresql://")
    if parts.scheme == "sqlite" and (parts.netloc or not parts.path.startswith("/")
                                     or parts.path == "/"):
        raise ConfigError("url", "must be sqlite:///absolute/path/to/ledger.db")


def _check(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {value!r}")
