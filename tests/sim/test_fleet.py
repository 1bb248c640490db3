"""The fleet runner: layout, inventory, per-miner endpoints, admin API, and `gridpool sim`."""

import asyncio
import json
import sys

import aiohttp
import pytest

from miners.sim import fleet as fleet_mod
from miners.sim.fleet import Fleet, FleetSpec, admin_app, plan
from pool.errors import ConfigError
from pool.shares import site_of_worker

DIFFICULTY = 5e-7  # ~2150 hashes per share


def test_plan_is_deterministic_and_names_workers_by_site():
    spec = FleetSpec(pool_url="stratum+tcp://127.0.0.1:1", sites=3, miners_per_site=4, seed=9)
    slots = plan(spec)
    assert [s.worker for s in slots[:5]] == [
        "sim.site1.m001",
        "sim.site1.m002",
        "sim.site1.m003",
        "sim.site1.m004",
        "sim.site2.m001",
    ]
    # The pool files each share under the site named by the worker's first part.
    sites = {site_of_worker(s.worker.partition(".")[2]) for s in slots}
    assert sites == {"site1", "site2", "site3"}
    assert plan(spec) == slots
    assert {s.model.key for s in plan(FleetSpec(pool_url="x", miners_per_site=200))} == {
        "s19jpro",
        "s21",
        "m50s",
        "bitaxe-gamma",
    }


def test_addresses_mode_gives_each_miner_its_own_loopback_address():
    spec = FleetSpec(pool_url="x", sites=2, miners_per_site=300, address_mode="addresses")
    hosts = [(s.api_host, s.api_port) for s in plan(spec)]
    assert len(set(hosts)) == len(hosts)
    assert hosts[0][0] == "127.11.0.1" and hosts[299][0] == "127.11.1.50"
    assert all(h.startswith("127.") for h, _ in hosts)


def test_auto_scale_targets_the_fleet_rate():
    spec = FleetSpec(pool_url="x", sites=3, miners_per_site=50)
    fleet = Fleet(spec)
    assert fleet.real_rate_hs() == pytest.approx(fleet_mod.DEFAULT_FLEET_RATE_HS, rel=0.01)
    assert fleet.hash_scale < 1000


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"sites": 0}, "sim.sites"),
        ({"model_mix": (("s9", 1.0),)}, "sim.model_mix"),
        ({"username_template": "{rack}.{miner}"}, "sim.username_template"),
        ({"faults": {"ignore_sleep": "yes"}}, "sim.faults.ignore_sleep"),
    ],
)
def test_bad_specs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as excinfo:
        FleetSpec(pool_url="x", **kwargs)
    assert excinfo.value.key == key


async def luxos_version(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b'{"command": "version"}')
    await writer.drain()
    async with asyncio.timeout(5):
        raw = await reader.read()
    writer.close()
    return json.loads(raw.rstrip(b"\x00"))


async def test_small_fleet_mines_serves_apis_and_writes_inventory(pool_at, tmp_path, wait_until):
    pool = await pool_at(DIFFICULTY)
    spec = FleetSpec(pool_url=pool.url, sites=2, miners_per_site=3, hash_scale=50.0, seed=4)
    fleet = Fleet(spec)
    await fleet.start()
    runner = None
    try:
        path = tmp_path / "inventory.json"
        fleet.write_inventory(path)
        inventory = json.loads(path.read_text())
        assert [site["id"] for site in inventory["sites"]] == ["site1", "site2"]
        rows = [m for site in inventory["sites"] for m in site["miners"]]
        assert len(rows) == 6 and len({(m["host"], m["port"]) for m in rows}) == 6
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for row in rows:
                if row["driver"] == "luxos":
                    reply = await luxos_version(row["host"], row["port"])
                    assert reply["STATUS"][0]["Code"] == 22
                else:
                    url = f"http://{row['host']}:{row['port']}/api/system/info"
                    async with http.get(url) as resp:
                        assert (await resp.json())["ASICModel"] == "BM1370"

            hashers = [m["worker"] for m in rows if m["driver"] == "luxos"]
            await wait_until(lambda: all(pool.worker_shares(w) for w in hashers), 15.0)

            runner = aiohttp.web.AppRunner(admin_app(fleet))
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            admin = f"http://{host}:{port}"
            target = rows[0]["id"]
            async with http.post(f"{admin}/miners/{target}/faults", json={"ignore_sleep": True}):
                pass
            async with http.get(f"{admin}/miners/{target}") as resp:
                detail = await resp.json()
            assert detail["faults"] == {"ignore_sleep": True} and detail["stratum_connected"]
            async with http.post(f"{admin}/miners/{target}/faults", json={"bogus": 1}) as resp:
                assert resp.status == 400
            async with http.get(f"{admin}/miners") as resp:
                assert len(await resp.json()) == 6
        summary = fleet.site_summary()
        assert sum(row["miners"] for row in summary) == 6
        assert sum(row["accepted"] for row in summary) >= len(hashers)
    finally:
        if runner is not None:
            await runner.cleanup()
        await fleet.stop()


async def test_addresses_mode_serves_on_the_firmware_ports(pool_at):
    pool = await pool_at(DIFFICULTY)
    spec = FleetSpec(
        pool_url=pool.url,
        sites=1,
        miners_per_site=2,
        model_mix=(("s21", 1.0),),
        hash_scale=10.0,
        address_mode="addresses",
        seed=3,
    )
    fleet = Fleet(spec)
    await fleet.start()
    try:
        for miner in fleet.miners.values():
            host, port = miner.api_address
            assert port == 4028 and host.startswith("127.11.0.")
            assert (await luxos_version(host, port))["VERSION"][0]["Type"] == "Antminer S21"
    finally:
        await fleet.stop()


@pytest.mark.slow
async def test_gridpool_sim_command_runs_against_a_pool(pool_at, tmp_path):
    pool = await pool_at(DIFFICULTY)
    inventory = tmp_path / "inv.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pool.cli",
        "sim",
        "--pool",
        pool.url,
        "--sites",
        "2",
        "--miners-per-site",
        "2",
        "--models",
        "s21=1",
        "--hash-scale",
        "50",
        "--duration",
        "4",
        "--inventory",
        str(inventory),
        "--no-live",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    workers = {m["worker"] for s in json.loads(inventory.read_text())["sites"] for m in s["miners"]}
    assert workers == {"sim.site1.m001", "sim.site1.m002", "sim.site2.m001", "sim.site2.m002"}
    assert {s.worker for s in pool.shares} == workers


async def test_start_fleet_helper_for_gridpool_run(pool_at, tmp_path, wait_until):
    pool = await pool_at(DIFFICULTY)
    path = tmp_path / "run" / "sim-inventory.json"
    fleet = await fleet_mod.start_fleet(
        pool.url,
        inventory_path=path,
        sites=3,
        miners_per_site=1,
        model_mix=(("s21", 1.0),),
        hash_scale=50.0,
    )
    try:
        assert [s["id"] for s in json.loads(path.read_text())["sites"]] == [
            "site1",
            "site2",
            "site3",
        ]
        workers = {miner.worker for miner in fleet.miners.values()}
        await wait_until(lambda: {s.worker for s in pool.shares} == workers, 15.0)
    finally:
        await fleet.stop()
