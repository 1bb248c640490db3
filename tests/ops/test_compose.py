"""deploy/docker-compose.yml, checked without a container engine: the services, ports,
volumes and mounts the stack needs, and the gridpool configs it embeds, interpolated as
Compose would and parsed by gridpool's own config loader."""

from __future__ import annotations

import hmac
import re
import tomllib
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from ops.catalogue import REPO

from pool.config import parse_config, parse_host_port

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
REQUIRED_SERVICES = {"bitcoind", "gridpool", "postgres", "prometheus", "grafana"}
MAINNET_SERVICES = {"bitcoind-mainnet", "gridpool-mainnet"}
RPC_PORTS = {"regtest": 18443, "main": 8332}
# A mainnet address for the interpolated mainnet config (the genesis block's P2PKH).
MAINNET_ADDRESS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, default = match.group(2), match.group(3)
        value = env.get(name)
        if (operator == ":-" and not value) or (operator == "-" and value is None):
            return interpolate(default, env)  # a default is interpolated too
        return value or ""

    return _VAR_RE.sub(replace, text)


def test_interpolation_matches_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("a$$b ${SET} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $SET", env) == "a$b x d  d x"
    assert interpolate("${UNSET:-u:s$$h}", env) == "u:s$h"


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env or {}))


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return compose()


def published(service: dict[str, Any]) -> dict[int, str]:
    """container port → host binding ("0.0.0.0:3333" or "127.0.0.1:8080")."""
    ports = {}
    for spec in service.get("ports", []):
        *host, container = str(spec).split(":")
        host_ip = host[0] if len(host) == 2 else "0.0.0.0"
        ports[int(container)] = f"{host_ip}:{host[-1]}"
    return ports


def args(service: dict[str, Any]) -> dict[str, str]:
    """bitcoind's -name=value arguments."""
    return dict(arg.lstrip("-").partition("=")[::2] for arg in service["command"])


def test_services_and_profiles(stack: dict[str, Any]):
    services = stack["services"]
    assert REQUIRED_SERVICES | MAINNET_SERVICES <= set(services)
    for name in REQUIRED_SERVICES:
        assert "profiles" not in services[name], f"{name} must start by default"
    for name in MAINNET_SERVICES:
        assert services[name]["profiles"] == ["mainnet"]
    assert args(services["bitcoind"])["regtest"] == "1"
    assert "regtest" not in args(services["bitcoind-mainnet"])
    for name in ("bitcoind", "bitcoind-mainnet"):
        assert services[name]["image"].startswith("bitcoin/bitcoin:")
        assert "zmqpubhashblock" in args(services[name])
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_ports(stack: dict[str, Any]):
    services = stack["services"]
    for name in ("gridpool", "gridpool-mainnet"):
        ports = published(services[name])
        assert ports[3333] == "0.0.0.0:3333"  # miners connect from the LAN
        assert ports[8080] == "127.0.0.1:8080"  # metrics and health stay local
    assert published(services["prometheus"]) == {9090: "127.0.0.1:9090"}
    assert published(services["grafana"]) == {3000: "127.0.0.1:3000"}
    assert 18443 not in published(services["bitcoind"])  # RPC never leaves the network


def test_volumes_and_mounts(stack: dict[str, Any]):
    declared = set(stack["volumes"])
    for name, service in stack["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    assert any(v.endswith(":/var/lib/gridpool") for v in stack["services"]["gridpool"]["volumes"])
    assert any("/var/lib/postgresql/data" in v for v in stack["services"]["postgres"]["volumes"])
    assert "./prometheus:/etc/prometheus:ro" in stack["services"]["prometheus"]["volumes"]
    build = stack["services"]["gridpool"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_default_rpcauth_matches_the_default_password(stack: dict[str, Any]):
    """bitcoind's rpcauth (user:salt$hmac) and gridpool's password must agree, or the
    default stack would never authenticate."""
    user, _, salted = args(stack["services"]["bitcoind"])["rpcauth"].partition(":")
    salt, _, digest = salted.partition("$")
    password = stack["services"]["gridpool"]["environment"]["BITCOIN_RPC_PASSWORD"]
    expected = hmac.new(salt.encode(), password.encode(), "sha256").hexdigest()
    assert user == "gridpool" and hmac.compare_digest(digest, expected)


@pytest.mark.parametrize(("service", "chain"), [("gridpool", "regtest"),
                                                ("gridpool-mainnet", "main")])
def test_embedded_config_is_valid_and_wired(service: str, chain: str, monkeypatch):
    monkeypatch.setenv("BITCOIN_RPC_PASSWORD", "from-the-environment")
    stack = compose({"GRIDPOOL_PAYOUT_ADDRESS": MAINNET_ADDRESS})
    gridpool = stack["services"][service]
    (mount,) = gridpool["configs"]
    assert gridpool["command"] == ["run", "--config", mount["target"]]
    config = parse_config(tomllib.loads(stack["configs"][mount["source"]]["content"]))
    assert config.network.chain == chain and str(config.data_dir) == "/var/lib/gridpool"
    assert config.log.json is True
    (node,) = config.nodes
    assert node.rpc_password == "from-the-environment"  # resolved from rpc_password_env
    assert set(gridpool["environment"]) == {"BITCOIN_RPC_PASSWORD", "GRIDPOOL_LEDGER_URL"}
    postgres = stack["services"]["postgres"]["environment"]
    ledger = urlsplit(gridpool["environment"]["GRIDPOOL_LEDGER_URL"])
    assert (ledger.scheme, ledger.hostname, ledger.port) == ("postgresql", "postgres", 5432)
    assert (ledger.username, ledger.password, ledger.path) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], f"/{postgres['POSTGRES_DB']}")
    assert gridpool["depends_on"]["postgres"]["condition"] == "service_healthy"
    host, port = parse_host_port("rpc_url", node.rpc_url.removeprefix("http://"))
    bitcoind = stack["services"][host]
    assert gridpool["depends_on"][host]["condition"] == "service_healthy"
    assert port == RPC_PORTS[chain] and str(port) in bitcoind["expose"]
    zmq_host, zmq_port = parse_host_port("zmq", node.zmq_hashblock.removeprefix("tcp://"))
    assert zmq_host == host and args(bitcoind)["zmqpubhashblock"].endswith(f":{zmq_port}")
    assert parse_host_port("listen", config.stratum.listen[0])[1] in published(gridpool)
    assert config.http.port in published(gridpool) and config.http.host == "0.0.0.0"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job.get("static_configs", [])
               for t in c["targets"]}
    aliases = gridpool.get("networks", {}).get("default", {}).get("aliases", [])
    assert {f"{name}:{config.http.port}" for name in (service, *aliases)} & targets
