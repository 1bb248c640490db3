"""pool.config: every error names its key, valid files parse, secrets stay secret, the
deploy example passes `gridpool check-config`, and random input only raises ConfigError."""

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pool.bitcoin.hashes import hash160
from pool.bitcoin.script import p2wpkh_script
from pool.config import TOP_LEVEL_KEYS, load_config, parse_config
from pool.errors import ConfigError
from pool.web.settings import ApiSettings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "gridpool.example.toml"
REGTEST_ADDR = "bcrt1qzxkwscu4dwx3r26qfvx7l0q3eehp4ngwus8rhh"
MAIN_ADDR = "bc1qzxkwscu4dwx3r26qfvx7l0q3eehp4ngw5l9amd"
SIGNET_ADDR = "tb1qzxkwscu4dwx3r26qfvx7l0q3eehp4ngw7e7wq7"
SOLO_ADDR = "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9"
SECRET = "hunter2-very-secret"
URL = "http://127.0.0.1:18443"

FULL = f"""
data_dir = "state"
[network]
chain = "regtest"
simulated_difficulty = 2500.5
[[node]]
name = "primary"
rpc_url = "{URL}"
rpc_cookie = "bitcoin/.cookie"
zmq_hashblock = "tcp://127.0.0.1:28332"
[[node]]
rpc_url = "http://[::1]:18444"
rpc_user = "pool"
rpc_password_file = "secret.txt"
timeout_s = 3
max_concurrency = 4
[[node]]
name = "env"
rpc_url = "https://node.example:443/wallet"
rpc_user = "pool"
rpc_password_env = "GRIDPOOL_TEST_RPC_PW"
[stratum]
listen = ["0.0.0.0:3333", "[::]:3334"]
start_difficulty = 1.0
min_difficulty = 0.0001
[jobs]
refresh_interval_s = 15
[payout]
mode = "solo"
address = "{REGTEST_ADDR}"
[http]
listen = "127.0.0.1:9090"
[log]
level = "DEBUG"
json = true
"""


def test_defaults() -> None:
    config = parse_config({})
    assert config.network.chain == "regtest" and config.network.simulated_difficulty is None
    assert config.nodes == ()
    assert config.payout.mode == "solo" and config.payout.address is None
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert config.log.level == "info" and config.log.json is None
    assert config.data_dir.name == "gridpool"


def test_full_file_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    monkeypatch.setenv("GRIDPOOL_TEST_RPC_PW", SECRET + "-env")
    path = tmp_path / "gridpool.toml"
    path.write_text(FULL)
    config = load_config(path)
    assert config.network.simulated_difficulty == 2500.5
    assert config.data_dir == tmp_path / "state"
    first, second, third = config.nodes
    assert (first.name, first.rpc_cookie, first.zmq_hashblock) == (
        "primary", tmp_path / "bitcoin" / ".cookie", "tcp://127.0.0.1:28332")
    assert first.rpc_user is None and first.timeout_s == 10.0
    assert (second.name, second.rpc_user, second.rpc_password) == ("node1", "pool", SECRET)
    assert (second.timeout_s, second.max_concurrency) == (3.0, 4)
    assert third.rpc_password == SECRET + "-env"
    assert config.stratum.listen == ("0.0.0.0:3333", "[::]:3334")
    assert config.stratum.min_difficulty == 0.0001
    assert config.jobs.refresh_interval_s == 15.0
    # the example address is P2WPKH of hash160(b"gridpool example")
    assert config.payout.script_pubkey == p2wpkh_script(hash160(b"gridpool example"))
    assert config.http.port == 9090 and config.log.level == "debug" and config.log.json is True
    # secrets never appear in reprs or the summary
    assert SECRET not in repr(config) and SECRET not in config.summary()
    assert "primary" in config.summary()


def node(**extra: Any) -> dict[str, Any]:
    return {"node": [{"rpc_url": URL, "rpc_cookie": "/tmp/.cookie", **extra}]}


def user_node(**extra: Any) -> dict[str, Any]:
    return {"node": [{"rpc_url": URL, "rpc_user": "u", **extra}]}


BAD = [
    ({"bogus": 1}, "bogus"),
    ({"network": {"chian": "main"}}, "network.chian"),
    ({"network": []}, "network"),
    ({"network": {"chain": 5}}, "network.chain"),
    ({"network": {"chain": "mainnet"}}, "network.chain"),
    ({"network": {"chain": "main", "simulated_difficulty": 1e3}}, "network.simulated_difficulty"),
    ({"network": {"chain": "signet", "simulated_difficulty": 1}}, "network.simulated_difficulty"),
    ({"network": {"simulated_difficulty": -1.0}}, "network.simulated_difficulty"),
    ({"network": {"simulated_difficulty": float("nan")}}, "network.simulated_difficulty"),
    ({"network": {"simulated_difficulty": "1000"}}, "network.simulated_difficulty"),
    ({"payout": {"address": MAIN_ADDR}}, "payout.address"),
    ({"network": {"chain": "main"}, "payout": {"address": REGTEST_ADDR}}, "payout.address"),
    ({"network": {"chain": "main"}, "payout": {"address": MAIN_ADDR[:-1] + "x"}}, "payout.address"),
    ({"payout": {"mode": "pplns"}}, "payout.address"),  # pplns needs the pool's address
    ({"payout": {"mode": "pps"}}, "payout.mode"),
    ({"payout": {"fee": 1}}, "payout.fee"),
    ({"payout": {"fee_bps": 100}}, "payout.fee_address"),  # a fee output needs an address
    ({"payout": {"address": REGTEST_ADDR, "fee_bps": 10_001}}, "payout.fee_bps"),
    ({"payout": {"address": REGTEST_ADDR, "fee_bps": 1.5}}, "payout.fee_bps"),
    ({"payout": {"address": REGTEST_ADDR, "fee_percent": 0.005}}, "payout.fee_percent"),
    ({"payout": {"address": REGTEST_ADDR, "fee_percent": 1, "fee_bps": 100}},
     "payout.fee_percent"),
    ({"payout": {"fee_address": MAIN_ADDR}}, "payout.fee_address"),
    ({"payout": {"window_multiple": 0}}, "payout.window_multiple"),
    ({"payout": {"dust_sats": 0}}, "payout.dust_sats"),
    ({"payout": {"max_coinbase_bytes": 100}}, "payout.max_coinbase_bytes"),
    ({"payout": {"account": {"name": "a", "address": REGTEST_ADDR}}}, "payout.account"),
    ({"payout": {"account": [{"name": "a b", "address": REGTEST_ADDR}]}}, "payout.account[0].name"),
    ({"payout": {"account": [{"name": "a"}]}}, "payout.account[0].address"),
    ({"payout": {"account": [{"name": "a", "address": MAIN_ADDR}]}}, "payout.account[0].address"),
    ({"payout": {"account": [{"name": "a", "address": REGTEST_ADDR},
                             {"name": "a", "address": REGTEST_ADDR}]}}, "payout.account[1].name"),
    ({"payout": {"account": [{"name": "a", "address": REGTEST_ADDR, "x": 1}]}},
     "payout.account[0].x"),
    ({"ledger": {"url": "mysql://x"}}, "ledger.url"),
    ({"ledger": {"url": "sqlite://relative.db"}}, "ledger.url"),
    ({"ledger": {"url": "postgresql://h:notaport/db"}}, "ledger.url"),
    ({"ledger": {"max_batch": 0}}, "ledger.max_batch"),
    ({"ledger": {"linger_ms": "1"}}, "ledger.linger_ms"),
    ({"ledger": {"record_timeout_s": 0}}, "ledger.record_timeout_s"),
    ({"ledger": {"bogus": 1}}, "ledger.bogus"),
    ({"ledger": {"password": "x"}}, "ledger.password"),  # only for postgresql://
    ({"ledger": {"url": "postgresql://u@h:5432/db", "password": "x", "password_env": "X"}},
     "ledger.password_env"),
    ({"ledger": {"url": "postgresql://u@h:5432/db", "password_env": "GRIDPOOL_UNSET_X"}},
     "ledger.password_env"),
    ({"ledger": {"journal_path": ""}, "data_dir": 5}, "data_dir"),
    ({"http": {"listen": "127.0.0.1"}}, "http.listen"),
    ({"http": {"listen": "127.0.0.1:80800"}}, "http.listen"),
    ({"http": {"listen": "bad host:80"}}, "http.listen"),
    ({"http": {"listen": 8080}}, "http.listen"),
    ({"stratum": {"listen": ["0.0.0.0:99999"]}}, "stratum.listen[0]"),
    ({"stratum": {"bogus": 1}}, "stratum.bogus"),
    ({"stratum": {"max_line_bytes": "big"}}, "stratum.max_line_bytes"),
    ({"jobs": {"bogus": 1}}, "jobs.bogus"),
    ({"log": {"level": "loud"}}, "log.level"),
    ({"log": {"json": "yes"}}, "log.json"),
    ({"data_dir": 5}, "data_dir"),
    ({"node": {"rpc_url": URL}}, "node"),
    ({"node": [{"rpc_cookie": "/c"}]}, "node[0].rpc_url"),
    ({"node": [{"rpc_url": URL, "rpc_cookie": "/c"}, {"rpc_url": "ftp://x:1", "rpc_cookie": "/c"}]},
     "node[1].rpc_url"),
    (node(rpc_url="http://127.0.0.1"), "node[0].rpc_url"),
    (node(rpc_url="http://127.0.0.1:notaport"), "node[0].rpc_url"),
    (node(rpcurl="x"), "node[0].rpcurl"),
    (node(timeout_s="10"), "node[0].timeout_s"),
    (node(timeout_s=0), "node[0].timeout_s"),
    (node(max_concurrency=2.5), "node[0].max_concurrency"),
    (node(max_concurrency=0), "node[0].max_concurrency"),
    (node(zmq_hashblock="127.0.0.1:28332"), "node[0].zmq_hashblock"),
    (node(zmq_hashblock="tcp://127.0.0.1"), "node[0].zmq_hashblock"),
    (node(name="has space"), "node[0].name"),
    (node(rpc_user="u", rpc_password="p"), "node[0].rpc_cookie"),
    ({"node": [{"rpc_url": URL, "rpc_cookie": "/c"}, {"rpc_url": URL, "rpc_cookie": "/c",
                                                      "name": "node0"}]}, "node[1].name"),
    (user_node(), "node[0].rpc_password"),
    ({"node": [{"rpc_url": URL, "rpc_password": "p"}]}, "node[0].rpc_user"),
    (user_node(rpc_password="a", rpc_password_env="B"), "node[0].rpc_password_env"),
    (user_node(rpc_password_env="GRIDPOOL_SURELY_UNSET_VAR"), "node[0].rpc_password_env"),
    (user_node(rpc_password_file="does/not/exist"), "node[0].rpc_password_file"),
    (user_node(rpc_password=""), "node[0].rpc_password"),
    (user_node(rpc_password=5), "node[0].rpc_password"),
    (node(rpc_cookie="~no_such_user_gridpool/.cookie"), "node[0].rpc_cookie"),
]


@pytest.mark.parametrize(("raw", "key"), BAD)
def test_errors_name_the_key(raw: dict[str, Any], key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base_dir=tmp_path, environ={})
    assert info.value.key == key, str(info.value)
    assert str(info.value).startswith(f"{key}: ")


def test_credentials_in_url_are_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(node(rpc_url=f"http://u:{SECRET}@127.0.0.1:8332"))
    assert info.value.key == "node[0].rpc_url" and SECRET not in str(info.value)


def test_valid_addresses_per_chain() -> None:
    assert parse_config({"network": {"chain": "signet"},
                         "payout": {"address": SIGNET_ADDR}}).payout.address == SIGNET_ADDR
    assert parse_config({"network": {"chain": "main"},
                         "payout": {"address": MAIN_ADDR}}).payout.script_pubkey is not None


def test_pplns_payout_and_ledger(tmp_path: Path) -> None:
    (tmp_path / "pgpass").write_text(SECRET + "\n")
    config = parse_config({
        "data_dir": "state",
        "payout": {"mode": "pplns", "address": REGTEST_ADDR, "fee_percent": 1.5,
                   "fee_address": SOLO_ADDR, "window_multiple": 0.5, "dust_sats": 50_000,
                   "max_coinbase_bytes": 1000,
                   "account": [{"name": "alice", "address": SOLO_ADDR},
                               {"name": "bob-2", "address": REGTEST_ADDR}]},
        "ledger": {"url": "postgresql://pool@db.example:5432/gridpool?schema=pool1",
                   "password_file": "pgpass", "journal_path": "j/shares.journal",
                   "linger_ms": 2, "max_batch": 500},
    }, base_dir=tmp_path)
    payout = config.payout
    assert (payout.mode, payout.fee_bps, payout.window_multiple) == ("pplns", 150, 0.5)
    assert payout.fee_script != payout.script_pubkey and payout.dust_sats == 50_000
    assert [(a.name, a.address) for a in payout.accounts] == [("alice", SOLO_ADDR),
                                                              ("bob-2", REGTEST_ADDR)]
    ledger = config.ledger
    assert ledger.journal_file == str(tmp_path / "j" / "shares.journal")
    assert (ledger.linger_ms, ledger.max_batch) == (2.0, 500)
    assert ledger.dsn() == (f"postgresql://pool:{SECRET}@db.example:5432/gridpool"
                            "?schema=pool1")
    assert SECRET not in repr(config) and SECRET not in config.summary()
    assert "ledger=postgresql://pool@db.example:5432/gridpool" in config.summary()
    with structlog.testing.capture_logs() as logs:
        config.log_settings(structlog.get_logger("test"))
    assert SECRET not in repr(logs)


def test_ledger_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    config = parse_config({"data_dir": str(tmp_path), "payout": {"fee_bps": 0}})
    assert config.ledger.url == f"sqlite://{tmp_path}/ledger.db"
    assert config.ledger.journal_file == str(tmp_path / "shares.journal")
    assert config.payout.max_coinbase_bytes == 700 and config.payout.fee_bps == 0
    no_journal = parse_config({"data_dir": str(tmp_path), "ledger": {"journal": False}})
    assert no_journal.ledger.journal_file is None


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    gridpool = Path(sys.executable).with_name("gridpool")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPOOL_")}
    return subprocess.run([str(gridpool), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def test_example_file_passes_check_config_cli() -> None:
    result = run_cli("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("OK: chain=regtest nodes=1 (local)")


def test_check_config_cli_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('chain = "regtest"',
                                               'chain = "main"\nsimulated_difficulty = 5.0'))
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert "network.simulated_difficulty" in result.stderr and result.stdout == ""
    broken = tmp_path / "broken.toml"
    broken.write_text("[network\nchain=")
    result = run_cli("check-config", str(broken))
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    result = run_cli("check-config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr


# ---- random input ---------------------------------------------------------------------

def _section_keys() -> dict[str, list[str]]:
    from pool.jobs import JobSettings
    from pool.ledger.settings import LedgerSettings
    from pool.stratum.settings import StratumSettings

    return {
        "network": ["chain", "simulated_difficulty"],
        "stratum": [f.name for f in dataclasses.fields(StratumSettings)],
        "jobs": [f.name for f in dataclasses.fields(JobSettings)],
        "payout": ["mode", "address", "fee_percent", "fee_bps", "fee_address",
                   "window_multiple", "dust_sats", "max_coinbase_bytes", "account"],
        "ledger": [f.name for f in dataclasses.fields(LedgerSettings)],
        "http": ["listen"],
        "log": ["level", "json"],
        "api": [f.name for f in dataclasses.fields(ApiSettings)]
        + ["admin_token_env", "admin_token_file", "account_tokens"],
        "node": ["name", "rpc_url", "rpc_cookie", "rpc_user", "rpc_password",
                 "rpc_password_file", "rpc_password_env", "zmq_hashblock", "timeout_s",
                 "max_concurrency"],
    }


INTERESTING = ["regtest", "main", "signet", "solo", "pplns", "127.0.0.1:3333", "[::1]:0",
               URL, "tcp://127.0.0.1:28332", REGTEST_ADDR, MAIN_ADDR, "~", "/", "PATH", "", "a:b"]
scalars = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from([10**400, -(10**400), 2**64, 0, -1, float("inf"), float("nan")]),
    st.sampled_from(INTERESTING), st.datetimes(), st.dates(), st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)


def _section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), values, max_size=4)


@st.composite
def toml_ish(draw: st.DrawFn) -> dict[str, Any]:
    sections = _section_keys()
    raw: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(TOP_LEVEL_KEYS), unique=True, max_size=5)):
        if name == "node":
            raw[name] = draw(st.lists(_section(sections["node"]), max_size=3) | values)
        elif name == "data_dir":
            raw[name] = draw(values)
        else:
            raw[name] = draw(_section(sections[name]) | values)
    if draw(st.booleans()):
        raw[draw(st.text(max_size=6))] = draw(values)
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=toml_ish())
def test_random_input_raises_only_config_error(raw: dict[str, Any]) -> None:
    try:
        parse_config(raw, base_dir=Path("/nonexistent-gridpool-base"), environ={"PATH": "x"})
    except ConfigError:
        pass


WEIRD = [10**400, -(10**400), 2**64, -1, 0, 0.5, float("nan"), float("inf"), "", "x", "~nobody_x",
         [], [1, "a"], {}, {"a": 1}, True, dt.datetime(2024, 1, 1), dt.time(1, 2)]


def test_every_key_with_weird_values_raises_config_error_naming_it() -> None:
    for section, keys in _section_keys().items():
        for name in keys:
            for value in WEIRD:
                table = {name: value}
                raw = {"node": [{"rpc_url": URL, **table}]} if section == "node" else {
                    section: table}
                try:
                    parse_config(raw, base_dir=Path("/nonexistent-gridpool-base"), environ={})
                except ConfigError as err:
                    prefix = "node[0]" if section == "node" else section
                    assert err.key.startswith(prefix), (raw, err)
                except Exception as err:
                    pytest.fail(f"{raw!r} raised {type(err).__name__}: {err}")


def test_reference_documents_every_key() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    keys = {key for keys in _section_keys().values() for key in keys} | {"data_dir"}
    missing = sorted(key for key in keys if f"| `{key}` |" not in text)
    assert not missing, f"docs/configuration.md lacks {missing}"
    for section in ("[network]", "[[node]]", "[stratum]", "[jobs]", "[payout]", "[ledger]",
                    "[http]", "[log]"):
        assert f"## `{section}`" in text


def test_log_settings_logs_everything_but_secrets(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET)
    config = parse_config({"node": [{"rpc_url": URL, "rpc_user": "u", "rpc_password_file": "pw"},
                                    {"rpc_url": URL, "rpc_cookie": "c", "name": "ck"}]},
                          base_dir=tmp_path)
    with structlog.testing.capture_logs() as logs:
        config.log_settings(structlog.get_logger("test"))
    events = {e["event"] for e in logs}
    assert {"config", "config_node", "stratum settings", "jobs settings"} <= events
    auths = [e["auth"] for e in logs if e["event"] == "config_node"]
    assert auths == ["user/password", "cookie"]
    assert SECRET not in repr(logs)


def test_api_table_is_validated_and_reaches_the_config() -> None:
    config = parse_config({"api": {"cache_ttl_s": 3}})
    assert config.api.cache_ttl_s == 3.0
    with pytest.raises(ConfigError) as err:
        parse_config({"api": {"bogus": 1}})
    assert err.value.key == "api.bogus"
