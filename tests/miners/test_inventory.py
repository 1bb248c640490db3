"""miners.inventory: sites from the configuration, from the simulator's inventory file, and
from a subnet scan that identifies firmware by its API answers."""

import asyncio
import random
from pathlib import Path

import pytest

from miners.errors import InventoryError
from miners.inventory import (
    KNOWN_MODELS,
    ScanRange,
    SecretRef,
    load_inventory_json,
    scan,
    site_from_mapping,
)
from miners.sim.fleet import Fleet, FleetSpec
from miners.sim.miner import PoolConfig, SimulatedMiner
from pool.errors import ConfigError


def test_site_from_config_with_defaults_and_secret_references(tmp_path: Path):
    (tmp_path / "pw").write_text("s3cret\n")
    site = site_from_mapping(
        {
            "id": "A",
            "budget_kw": 500,
            "miner": [
                {"id": "m1", "model": "s21", "host": "10.0.0.5"},
                {"id": "m2", "model": "bitaxe-gamma", "host": "10.0.0.6", "worker": "acct.bx",
                 "password_file": "pw"},
                {"id": "m3", "model": "s19jpro", "host": "10.0.0.7", "driver": "cgminer",
                 "password_env": "M3_PW"},
            ],
            "scan": [{"subnet": "10.0.1.0/24"}],
        },
        key="fleet.site[0]",
        base_dir=tmp_path,
    )
    m1, m2, m3 = site.miners
    assert site.budget_w == 500_000 and site.worker_prefix == "A."
    assert (m1.driver, m1.port, m1.worker) == ("luxos", 4028, "A.m1")
    assert (m2.driver, m2.port, m2.worker) == ("bitaxe", 80, "acct.bx")
    assert m2.password.resolve() == "s3cret" and "s3cret" not in repr(m2)
    assert m3.password.resolve({"M3_PW": "x"}) == "x"
    with pytest.raises(InventoryError, match="M3_PW"):
        m3.password.resolve({})
    assert site.scan == (ScanRange("10.0.1.0/24"),)
    assert site.nominal_w == 3500 + 18 + 3068


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"id": "A", "colour": "red"}, "fleet.site[0].colour"),
        ({"id": "A", "budget_kw": -1}, "fleet.site[0].budget_kw"),
        ({"id": "A", "miner": [{"id": "m", "model": "s9", "host": "h"}]},
         "fleet.site[0].miner[0].model"),
        ({"id": "A", "miner": [{"id": "m", "model": "s21", "host": "h", "port": 0}]},
         "fleet.site[0].miner[0].port"),
        ({"id": "A", "miner": [{"id": "m", "model": "s21"}]}, "fleet.site[0].miner[0].host"),
        ({"id": "A", "miner": [{"id": "m", "model": "s21", "host": "h", "driver": "ssh"}]},
         "fleet.site[0].miner[0].driver"),
        ({"id": "A", "scan": [{"subnet": "10.0.0.0/8"}]}, "fleet.site[0].scan[0].subnet"),
        ({"id": "A", "miner": [{"id": "m", "model": "s21", "host": "a"},
                               {"id": "m", "model": "s21", "host": "b"}]}, "fleet.site[0]"),
    ],
)
def test_config_errors_name_the_key(raw, key, tmp_path):
    with pytest.raises(ConfigError) as err:
        site_from_mapping(raw, key="fleet.site[0]", base_dir=tmp_path)
    assert err.value.key == key


async def test_the_simulators_inventory_file_loads(tmp_path: Path):
    fleet = Fleet(FleetSpec(pool_url="stratum+tcp://127.0.0.1:1", sites=2, miners_per_site=3))
    await fleet.start()
    try:
        fleet.write_inventory(tmp_path / "inv.json")
        addresses = {m.miner_id: m.api_address for m in fleet.miners.values()}
    finally:
        await fleet.stop()
    sites = load_inventory_json(tmp_path / "inv.json")
    assert [s.site_id for s in sites] == ["site1", "site2"]
    first = sites[0].miners[0]
    sim_miner = fleet.miners[first.miner_id]
    assert (first.host, first.port) == addresses[first.miner_id]
    assert first.worker == sim_miner.worker and first.driver == sim_miner.model.api
    assert first.model.nominal_w == sim_miner.model.nominal_w
    assert first.model.nominal_mhz == KNOWN_MODELS[sim_miner.model.key].nominal_mhz
    site = site_from_mapping({"id": "site2", "inventory": "inv.json"}, key="s",
                             base_dir=tmp_path)
    assert len(site.miners) == 3
    (tmp_path / "bad.json").write_text('{"version": 99}')
    with pytest.raises(InventoryError, match="version"):
        load_inventory_json(tmp_path / "bad.json")


def test_secret_ref_file_errors(tmp_path: Path):
    with pytest.raises(InventoryError, match="cannot read"):
        SecretRef(file=tmp_path / "missing").resolve()


async def test_scan_identifies_luxos_and_esp_miner_by_their_answers(sim):
    net = f"127.{random.randint(100, 250)}.{random.randint(0, 250)}"
    bitaxe_port = random.randint(20000, 40000)
    lux = [await sim(key, api_host=f"{net}.{i + 1}", api_port=4028)
           for i, key in enumerate(("s21", "s19jpro"))]
    axe = await sim("bitaxe-gamma", api_host=f"{net}.3", api_port=bitaxe_port)
    named = SimulatedMiner("named", lux[0].model, pool=PoolConfig("stratum+tcp://127.0.0.1:1",
                           "acct.rig7"), api_host=f"{net}.4", api_port=4028)
    await named.start()

    async def not_a_miner(reader, writer):
        await reader.read(100)
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        writer.close()

    other = await asyncio.start_server(not_a_miner, f"{net}.5", 4028)
    try:
        result = await scan("S", [ScanRange(f"{net}.0/29", (4028,), (bitaxe_port,))],
                            worker_prefix="S.", timeout_s=0.5)
    finally:
        other.close()
        await named.stop()
    found = {m.host: m for m in result.found}
    assert set(found) == {f"{net}.1", f"{net}.2", f"{net}.3", f"{net}.4"}
    assert found[f"{net}.1"].driver == "luxos" and found[f"{net}.1"].model.key == "s21"
    assert found[f"{net}.2"].model.key == "s19jpro"
    assert found[f"{net}.3"].driver == "bitaxe" and found[f"{net}.3"].port == bitaxe_port
    assert found[f"{net}.1"].worker == f"S.{found[f'{net}.1'].miner_id}"
    assert found[f"{net}.4"].worker == "acct.rig7"  # read from the miner's pool settings
    assert result.unidentified == ()
    assert axe.api_address[0] == f"{net}.3"


def test_fleet_config_parses_settings_and_names_bad_keys(tmp_path: Path):
    from miners.inventory import fleet_config_from_mapping, load_fleet_config

    raw = {
        "poll": {"interval_s": 5, "request_timeout_s": 2.5, "max_concurrency": 100},
        "control": {"max_attempts": 4},
        "allocation": {"safety_margin": 0.1, "wake_step_miners": 50},
        "admin": {"listen": "0.0.0.0:9000", "token_env": "ADMIN"},
        "pool": {"api_url": "http://pool:8080/api", "token_file": "pool.token"},
        "site": [{"id": "A", "miner": [{"id": "m1", "model": "s21", "host": "10.0.0.1"}]}],
    }
    config = fleet_config_from_mapping(raw, base_dir=tmp_path)
    assert config.poll.interval_s == 5.0 and config.poll.max_concurrency == 100
    assert config.control.max_attempts == 4 and config.allocation.safety_margin == 0.1
    assert config.admin_listen == "0.0.0.0:9000" and config.admin_token.env == "ADMIN"
    assert config.pool_token.file == tmp_path / "pool.token"
    bad = [
        ({"poll": {"interval_s": 0}}, "fleet.poll.interval_s"),
        ({"poll": {"interval_s": "fast"}}, "fleet.poll.interval_s"),
        ({"control": {"max_attempts": 1.5}}, "fleet.control.max_attempts"),
        ({"allocation": {"hysteresis": 2.0}}, "fleet.allocation.hysteresis"),
        ({"allocation": {"colour": 1}}, "fleet.allocation.colour"),
        ({"admin": {"port": 1}}, "fleet.admin.port"),
        ({"site": []}, "fleet.site"),
        ({"site": [{"id": "A"}, {"id": "A"}]}, "fleet.site"),
    ]
    for change, key in bad:
        with pytest.raises(ConfigError) as err:
            fleet_config_from_mapping({**raw, **change}, base_dir=tmp_path)
        assert err.value.key == key, (change, err.value)
    (tmp_path / "g.toml").write_text('[fleet]\n[[fleet.site]]\nid = "B"\n')
    assert load_fleet_config(tmp_path / "g.toml").sites[0].site_id == "B"
    (tmp_path / "h.toml").write_text('[node]\n')
    with pytest.raises(ConfigError, match="no \\[fleet\\]"):
        load_fleet_config(tmp_path / "h.toml")
