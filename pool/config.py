"""The configuration file: one TOML file parsed once into frozen dataclasses.

Every unknown key and bad value raises `ConfigError(key, reason)` with the dotted key
(`network.chain`, `node[1].rpc_url`, `stratum.max_line_bytes`). Secrets come from a file
(`rpc_password_file`, `rpc_cookie`) or an environment variable (`rpc_password_env`); they
are never part of an error message or a repr. Relative paths are relative to the config
file's directory. `[stratum]` and `[jobs]` are parsed by their owners' `from_mapping`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pool.bitcoin.address import CHAINS, address_to_script_pubkey
from pool.errors import AddressError, ConfigError

if TYPE_CHECKING:
    from pool.jobs import JobSettings
    from pool.ledger.settings import LedgerSettings
    from pool.stratum.settings import StratumSettings

MAX_CONFIG_BYTES = 1024 * 1024  # a config file larger than this is refused unread
MAX_NODES = 16  # [[node]] entries; submitblock goes to all of them at once
PAYOUT_MODES = ("solo", "pplns")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_HTTP_LISTEN = "127.0.0.1:8080"
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # node names are metric label values
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")

TOP_LEVEL_KEYS = ("network", "node", "stratum", "jobs", "payout", "ledger", "http", "log",
                  "api", "data_dir")
BPS_PER_PERCENT = 100
DEFAULT_WINDOW_MULTIPLE = 2.0  # PPLNS N = this x network difficulty
DEFAULT_DUST_SATS = 10_000  # pool.payouts.DEFAULT_DUST_SATS
DEFAULT_MAX_COINBASE_BYTES = 700  # pool.payouts.DEFAULT_MAX_COINBASE_BYTES (Antminer limit)
MIN_MAX_COINBASE_BYTES = 250  # a 100-byte scriptSig, the pool output and the commitment
MAX_PAYOUT_ACCOUNTS = 100_000  # [[payout.account]] entries
_ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as in Stratum usernames


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gridpool"


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    chain: str = "regtest"  # main | test | testnet4 | signet | regtest
    # regtest only: the pool treats this difficulty as the network's when deciding that a
    # share is a block, so blocks are as rare as on a real chain of that difficulty.
    simulated_difficulty: float | None = None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One bitcoind. Auth: rpc_cookie, or rpc_user + rpc_password (resolved from the
    file/env reference at parse time), or neither (a proxy that adds credentials)."""

    rpc_url: str
    name: str = ""
    rpc_cookie: Path | None = None
    rpc_user: str | None = None
    rpc_password: str | None = field(default=None, repr=False)
    zmq_hashblock: str | None = None
    timeout_s: float = 10.0  # per RPC call, queueing included
    max_concurrency: int = 8  # RPC calls in flight to this node


@dataclass(frozen=True, slots=True)
class PayoutAccount:
    """A `[[payout.account]]` entry: the account's payout address, stored in the ledger
    at start-up (the admin API can change it later)."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class PayoutConfig:
    mode: str = "solo"  # solo | pplns
    # The pool's address: paid by account usernames in solo mode; in pplns mode the pool
    # output (fee, carried balances, reward no window work claims). Required for pplns.
    address: str | None = None
    script_pubkey: bytes | None = field(default=None, repr=False)  # of `address`
    fee_bps: int = 0  # pool fee in basis points of coinbasevalue (100 bps = 1 %)
    fee_address: str | None = None  # solo fee output; default `address`
    fee_script: bytes | None = field(default=None, repr=False)  # of fee_address or address
    window_multiple: float = DEFAULT_WINDOW_MULTIPLE  # PPLNS N = this x network difficulty
    dust_sats: int = DEFAULT_DUST_SATS  # smaller amounts are carried as balances
    max_coinbase_bytes: int = DEFAULT_MAX_COINBASE_BYTES  # coinbase size bound (pplns)
    accounts: tuple[PayoutAccount, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = DEFAULT_HTTP_LISTEN  # /metrics, /healthz (API and dashboard later)

    @property
    def host(self) -> str:
        return parse_host_port("http.listen", self.listen)[0]

    @property
    def port(self) -> int:
        return parse_host_port("http.listen", self.listen)[1]


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    json: bool | None = None  # None: JSON unless stderr is a terminal


@dataclass(frozen=True, slots=True)
class GridpoolConfig:
    network: NetworkConfig
    nodes: tuple[NodeConfig, ...]  # empty: the embedded devnet is started
    stratum: StratumSettings
    jobs: JobSettings
    payout: PayoutConfig
    http: HttpConfig
    log: LogConfig
    data_dir: Path
    ledger: LedgerSettings
    api: Any = None  # pool.web.settings.ApiSettings; None = its defaults (docs/api.md)

    def summary(self) -> str:
        """One line for `check-config` and the start-up log (no secrets)."""
        nodes = ",".join(n.name for n in self.nodes) or "embedded devnet"
        return (
            f"chain={self.network.chain} nodes={len(self.nodes)} ({nodes}) "
            f"stratum={','.join(self.stratum.listen)} payout={self.payout.mode} "
            f"ledger={self.ledger.redacted_url()} http={self.http.listen} "
            f"data_dir={self.data_dir}"
        )


    def log_settings(self, logger: Any) -> None:
        """Log every setting once at start-up (auth by kind only, never a secret)."""
        payout = self.payout
        logger.info("config", chain=self.network.chain,
                    simulated_difficulty=self.network.simulated_difficulty,
                    payout_mode=payout.mode, payout_address=payout.address,
                    fee_bps=payout.fee_bps, fee_address=payout.fee_address,
                    window_multiple=payout.window_multiple, dust_sats=payout.dust_sats,
                    max_coinbase_bytes=payout.max_coinbase_bytes,
                    payout_accounts=len(payout.accounts),
                    http_listen=self.http.listen, data_dir=str(self.data_dir))
        self.ledger.log_settings(logger)
        for node in self.nodes:
            auth = "cookie" if node.rpc_cookie else "user/password" if node.rpc_user else "none"
            logger.info("config_node", node=node.name, rpc_url=node.rpc_url, auth=auth,
                        zmq_hashblock=node.zmq_hashblock, timeout_s=node.timeout_s,
                        max_concurrency=node.max_concurrency)
        self.stratum.log_settings(logger)
        logger.info("jobs settings", **asdict(self.jobs))


# ---- entry points ---------------------------------------------------------------------


def load_config(path: Path | None) -> GridpoolConfig:
    """Read and validate `path` (None: all defaults, no nodes → embedded devnet)."""
    if path is None:
        return parse_config({})
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(str(path), f"cannot read config file: {err.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), f"config file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "config file is not UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), f"not valid TOML: {err}") from None
    return parse_config(raw, base_dir=path.parent)


def parse_config(
    raw: Mapping[str, Any],
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> GridpoolConfig:
    """Validate a parsed TOML document; relative paths resolve against `base_dir`
    (default: the current directory), `rpc_password_env` against `environ` (os.environ)."""
    from pool.jobs import JobSettings  # late: jobs imports the node layer, which imports us
    from pool.stratum.settings import StratumSettings
    from pool.web.settings import ApiSettings

    ctx = _Ctx(base_dir or Path.cwd(), os.environ if environ is None else environ)
    top = _table(raw, "config")
    _check_keys(top, "", TOP_LEVEL_KEYS)
    network = _parse_network(top.get("network", {}))
    data_dir_text = _opt(top, "data_dir", "data_dir", str)
    data_dir = ctx.path("data_dir", data_dir_text) if data_dir_text else default_data_dir()
    return GridpoolConfig(
        network=network,
        nodes=_parse_nodes(top.get("node", []), ctx),
        stratum=StratumSettings.from_mapping(_table(top.get("stratum", {}), "stratum")),
        jobs=JobSettings.from_mapping(_table(top.get("jobs", {}), "jobs")),
        payout=_parse_payout(top.get("payout", {}), network.chain),
        http=_parse_http(top.get("http", {})),
        log=_parse_log(top.get("log", {})),
        data_dir=data_dir,
        ledger=_parse_ledger(top.get("ledger", {}), data_dir, ctx),
        api=ApiSettings.from_mapping(_table(top.get("api", {}), "api"), environ=ctx.environ,
                                     base_dir=ctx.base_dir),
    )


# ---- sections -------------------------------------------------------------------------


def _parse_network(raw: Any) -> NetworkConfig:
    table = _table(raw, "network")
    _check_keys(table, "network", ("chain", "simulated_difficulty"))
    chain = _opt(table, "chain", "network.chain", str) or "regtest"
    if chain not in CHAINS:
        raise ConfigError("network.chain", f"must be one of {', '.join(CHAINS)}, got {chain!r}")
    sim = _opt_number(table, "simulated_difficulty", "network.simulated_difficulty")
    if sim is not None:
        if chain != "regtest":
            raise ConfigError(
                "network.simulated_difficulty", f"only allowed with chain = regtest, not {chain}"
            )
        _check_range("network.simulated_difficulty", sim, 1e-12, 2.0**64)
    return NetworkConfig(chain=chain, simulated_difficulty=sim)


_NODE_KEYS = ("name", "rpc_url", "rpc_cookie", "rpc_user", "rpc_password", "rpc_password_file",
              "rpc_password_env", "zmq_hashblock", "timeout_s", "max_concurrency")


def _parse_nodes(raw: Any, ctx: _Ctx) -> tuple[NodeConfig, ...]:
    if isinstance(raw, Mapping):
        raise ConfigError("node", "must be an array of tables: write [[node]], not [node]")
    if not isinstance(raw, list):
        raise ConfigError("node", f"must be an array of tables, not {type(raw).__name__}")
    if len(raw) > MAX_NODES:
        raise ConfigError("node", f"at most {MAX_NODES} nodes, got {len(raw)}")
    nodes = tuple(_parse_node(item, f"node[{i}]", i, ctx) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        if node.name in seen:
            raise ConfigError(f"node[{i}].name", f"duplicate node name {node.name!r}")
        seen.add(node.name)
    return nodes


def _parse_node(raw: Any, key: str, index: int, ctx: _Ctx) -> NodeConfig:
    table = _table(raw, key)
    _check_keys(table, key, _NODE_KEYS)
    url = _opt(table, "rpc_url", f"{key}.rpc_url", str)
    if url is None:
        raise ConfigError(f"{key}.rpc_url", "is required")
    _check_rpc_url(f"{key}.rpc_url", url)
    name = _opt(table, "name", f"{key}.name", str) or f"node{index}"
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{key}.name", "must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    zmq = _opt(table, "zmq_hashblock", f"{key}.zmq_hashblock", str)
    if zmq is not None:
        _check_zmq_endpoint(f"{key}.zmq_hashblock", zmq)
    timeout_s = _opt_number(table, "timeout_s", f"{key}.timeout_s")
    timeout_s = 10.0 if timeout_s is None else timeout_s
    _check_range(f"{key}.timeout_s", timeout_s, 0.1, 600.0)
    concurrency = _opt(table, "max_concurrency", f"{key}.max_concurrency", int)
    concurrency = 8 if concurrency is None else concurrency
    _check_range(f"{key}.max_concurrency", concurrency, 1, 64)
    cookie, user, password = _parse_node_auth(table, key, ctx)
    return NodeConfig(rpc_url=url, name=name, rpc_cookie=cookie, rpc_user=user,
                      rpc_password=password, zmq_hashblock=zmq, timeout_s=timeout_s,
                      max_concurrency=concurrency)


def _parse_node_auth(
    table: Mapping[str, Any], key: str, ctx: _Ctx
) -> tuple[Path | None, str | None, str | None]:
    cookie_text = _opt(table, "rpc_cookie", f"{key}.rpc_cookie", str)
    user = _opt(table, "rpc_user", f"{key}.rpc_user", str)
    sources = [s for s in ("rpc_password", "rpc_password_file", "rpc_password_env") if s in table]
    if len(sources) > 1:
        raise ConfigError(f"{key}.{sources[1]}", f"give only one of {', '.join(sources)}")
    if cookie_text is not None and (user is not None or sources):
        raise ConfigError(f"{key}.rpc_cookie", "give rpc_cookie or rpc_user + password, not both")
    if sources and user is None:
        raise ConfigError(f"{key}.rpc_user", f"is required with {sources[0]}")
    if user is not None and not sources:
        raise ConfigError(f"{key}.rpc_password", "rpc_user needs rpc_password, "
                          "rpc_password_file or rpc_password_env")
    if user is not None and (not user or ":" in user):
        raise ConfigError(f"{key}.rpc_user", "must be non-empty and contain no ':'")
    password = _read_secret(table, sources[0], f"{key}.{sources[0]}", ctx) if sources else None
    cookie = ctx.path(f"{key}.rpc_cookie", cookie_text) if cookie_text is not None else None
    return cookie, user, password


def _read_secret(table: Mapping[str, Any], source: str, key: str, ctx: _Ctx) -> str:
    value = _opt(table, source, key, str)
    assert value is not None
    if source == "rpc_password":
        secret = value
    elif source == "rpc_password_env":
        if value not in ctx.environ:
            raise ConfigError(key, f"environment variable {value!r} is not set")
        secret = ctx.environ[value]
    else:
        path = ctx.path(key, value)
        try:
            secret = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or "not UTF-8 text"
            raise ConfigError(key, f"cannot read password file {path}: {reason}") from None
    if not secret:
        raise ConfigError(key, "the password is empty")
    return secret


_PAYOUT_KEYS = ("mode", "address", "fee_percent", "fee_bps", "fee_address", "window_multiple",
                "dust_sats", "max_coinbase_bytes", "account")


def _parse_payout(raw: Any, chain: str) -> PayoutConfig:
    table = _table(raw, "payout")
    _check_keys(table, "payout", _PAYOUT_KEYS)
    mode = _opt(table, "mode", "payout.mode", str) or "solo"
    if mode not in PAYOUT_MODES:
        raise ConfigError("payout.mode", f"must be one of {', '.join(PAYOUT_MODES)}, got {mode!r}")
    address = _opt(table, "address", "payout.address", str)
    spk = _address_script("payout.address", address, chain)
    if mode == "pplns" and spk is None:
        raise ConfigError("payout.address", "pplns needs the pool's address (it receives the "
                          "fee and the value behind carried balances)")
    fee_bps = _parse_fee(table)
    fee_address = _opt(table, "fee_address", "payout.fee_address", str)
    fee_script = _address_script("payout.fee_address", fee_address, chain) or spk
    if fee_bps and fee_script is None:
        raise ConfigError("payout.fee_address", "a pool fee needs fee_address or address")
    multiple = _opt_number(table, "window_multiple", "payout.window_multiple")
    multiple = DEFAULT_WINDOW_MULTIPLE if multiple is None else multiple
    _check_range("payout.window_multiple", multiple, 1e-6, 1e6)
    dust = _opt(table, "dust_sats", "payout.dust_sats", int)
    dust = DEFAULT_DUST_SATS if dust is None else dust
    _check_range("payout.dust_sats", dust, 1, 21_000_000 * 100_000_000)
    max_bytes = _opt(table, "max_coinbase_bytes", "payout.max_coinbase_bytes", int)
    max_bytes = DEFAULT_MAX_COINBASE_BYTES if max_bytes is None else max_bytes
    _check_range("payout.max_coinbase_bytes", max_bytes, MIN_MAX_COINBASE_BYTES, 1_000_000)
    return PayoutConfig(
        mode=mode, address=address, script_pubkey=spk, fee_bps=fee_bps,
        fee_address=fee_address, fee_script=fee_script, window_multiple=multiple,
        dust_sats=dust, max_coinbase_bytes=max_bytes,
        accounts=_parse_accounts(table.get("account", []), chain),
    )


def _address_script(key: str, address: str | None, chain: str) -> bytes | None:
    if address is None:
        return None
    try:
        return address_to_script_pubkey(address, chain)
    except AddressError as err:
        raise ConfigError(key, f"not a valid {chain} address: {err}") from None


def _parse_fee(table: Mapping[str, Any]) -> int:
    """`fee_bps` (integer basis points) or `fee_percent` (a multiple of 0.01), not both."""
    if "fee_bps" in table and "fee_percent" in table:
        raise ConfigError("payout.fee_percent", "give fee_percent or fee_bps, not both")
    if "fee_bps" in table:
        bps = _opt(table, "fee_bps", "payout.fee_bps", int)
        _check_range("payout.fee_bps", bps, 0, 10_000)
        return int(bps)
    percent = _opt_number(table, "fee_percent", "payout.fee_percent")
    if percent is None:
        return 0
    _check_range("payout.fee_percent", percent, 0.0, 100.0)
    bps = round(percent * BPS_PER_PERCENT)
    if abs(percent * BPS_PER_PERCENT - bps) > 1e-6:
        raise ConfigError("payout.fee_percent", f"must be a multiple of 0.01, got {percent!r}")
    return bps


def _parse_accounts(raw: Any, chain: str) -> tuple[PayoutAccount, ...]:
    if isinstance(raw, Mapping):
        raise ConfigError("payout.account", "write [[payout.account]], not [payout.account]")
    if not isinstance(raw, list):
        raise ConfigError("payout.account", f"must be an array of tables, not "
                          f"{type(raw).__name__}")
    if len(raw) > MAX_PAYOUT_ACCOUNTS:
        raise ConfigError("payout.account", f"at most {MAX_PAYOUT_ACCOUNTS} entries")
    accounts: dict[str, PayoutAccount] = {}
    for index, item in enumerate(raw):
        key = f"payout.account[{index}]"
        table = _table(item, key)
        _check_keys(table, key, ("name", "address"))
        name = _opt(table, "name", f"{key}.name", str)
        if name is None or not _ACCOUNT_NAME_RE.fullmatch(name):
            raise ConfigError(f"{key}.name", "is required: 1-64 of A-Z a-z 0-9 _ -")
        if name in accounts:
            raise ConfigError(f"{key}.name", f"duplicate account {name!r}")
        address = _opt(table, "address", f"{key}.address", str)
        if address is None:
            raise ConfigError(f"{key}.address", "is required")
        _address_script(f"{key}.address", address, chain)
        accounts[name] = PayoutAccount(name, address)
    return tuple(accounts.values())


def _parse_ledger(raw: Any, data_dir: Path, ctx: _Ctx) -> LedgerSettings:
    """`[ledger]` with the URL, journal path and password resolved."""
    from pool.ledger.settings import JOURNAL_FILE_NAME, SQLITE_FILE_NAME, LedgerSettings

    settings = LedgerSettings.from_mapping(_table(raw, "ledger"))
    url = settings.url or f"sqlite://{(data_dir / SQLITE_FILE_NAME).as_posix()}"
    journal = (ctx.path("ledger.journal_path", settings.journal_path)
               if settings.journal_path else data_dir / JOURNAL_FILE_NAME)
    password = settings.password
    if settings.password_file is not None or settings.password_env is not None:
        source = "password_file" if settings.password_file is not None else "password_env"
        table = {"rpc_" + source: getattr(settings, source)}
        password = _read_secret(table, "rpc_" + source, f"ledger.{source}", ctx)
    if password is not None and not url.startswith("postgres"):
        raise ConfigError("ledger.password", "a password only applies to a postgresql:// url")
    return dataclasses.replace(settings, url=url, journal_path=str(journal), password=password,
                               password_file=None, password_env=None)  # (resolved)


def _parse_http(raw: Any) -> HttpConfig:
    table = _table(raw, "http")
    _check_keys(table, "http", ("listen",))
    listen = _opt(table, "listen", "http.listen", str) or DEFAULT_HTTP_LISTEN
    parse_host_port("http.listen", listen)
    return HttpConfig(listen=listen)


def _parse_log(raw: Any) -> LogConfig:
    table = _table(raw, "log")
    _check_keys(table, "log", ("level", "json"))
    level = (_opt(table, "level", "log.level", str) or "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError("log.level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return LogConfig(level=level, json=_opt(table, "json", "log.json", bool))


# ---- value helpers --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    base_dir: Path
    environ: Mapping[str, str]

    def path(self, key: str, text: str) -> Path:
        if not text or "\x00" in text:
            raise ConfigError(key, "must be a non-empty path")
        try:
            path = Path(text).expanduser()
        except RuntimeError:  # "~someone" with no such user
            raise ConfigError(key, f"cannot expand the home directory in {text!r}") from None
        return path if path.is_absolute() else self.base_dir / path


def _table(raw: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"must be a table, not {type(raw).__name__}")
    return raw


def _check_keys(table: Mapping[str, Any], prefix: str, allowed: tuple[str, ...]) -> None:
    for name in table:
        if name not in allowed:
            key = f"{prefix}.{name}" if prefix else str(name)
            raise ConfigError(key, f"unknown key (known: {', '.join(allowed)})")


def _opt(table: Mapping[str, Any], name: str, key: str, kind: type) -> Any:
    """table[name] if present (None if absent), checked to be exactly of `kind`."""
    if name not in table:
        return None
    value = table[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ConfigError(key, f"must be a {_TYPE_NAMES[kind]}, not {type(value).__name__}")
    return value


_TYPE_NAMES = {str: "string", int: "integer", bool: "boolean (true/false)"}


def _opt_number(table: Mapping[str, Any], name: str, key: str) -> float | None:
    if name not in table:
        return None
    value = table[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise ConfigError(key, "number is too large") from None
    if not math.isfinite(number):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    return number


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low:g} and {high:g}, got {value!r}")


def parse_host_port(key: str, text: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' → (host, port); ConfigError naming `key` otherwise."""
    host, sep, port_text = text.rpartition(":")
    if (not sep or not _HOST_RE.fullmatch(host) or not port_text.isascii()
            or not port_text.isdigit() or int(port_text) > 65535):
        raise ConfigError(key, f"must look like host:port or [v6]:port, got {text!r}")
    return host.strip("[]"), int(port_text)


def _check_rpc_url(key: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(key, "is not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        # The URL itself is not echoed: it holds a password.
        raise ConfigError(key, "must not contain credentials; use rpc_user + rpc_password_file "
                          "or rpc_cookie")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be http://host:port, got {url!r}")
    if port is None:
        raise ConfigError(key, f"must name the port (e.g. http://127.0.0.1:8332), got {url!r}")


def _check_zmq_endpoint(key: str, endpoint: str) -> None:
    scheme, sep, rest = endpoint.partition("://")
    if scheme == "tcp" and sep:
        parse_host_port(key, rest)
    elif not (scheme == "ipc" and sep and rest):
        raise ConfigError(key, f"must be tcp://host:port or ipc://path, got {endpoint!r}")
