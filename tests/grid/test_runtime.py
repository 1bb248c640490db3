"""`[grid]` from TOML to a running API: settings errors name their key; GridRuntime serves
the API on its own listener or mounted on the main app."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from grid.grid_helpers import RecordingSink, write_keys

from miners.grid.hmac_auth import signed_headers
from miners.grid.runtime import GridRuntime
from miners.grid.settings import GridSettings
from pool.errors import ConfigError

CONFIG = """
[grid]
tick_s = 0.5
max_events_per_site = 10

[[grid.site]]
id = "A"
base_kw = 1000
safe_kw = 400
silence_s = 300

[grid.http]
keys_file = "keys/keys.toml"
skew_s = 20
listen = "127.0.0.1:0"

[[grid.openadr]]
site = "A"
vtn_url = "http://127.0.0.1:1/OpenADR2/Simple/2.0b"
ven_name = "site-A"
simple_levels_kw = [1000, 700, 400, 0]
report_interval_s = 5
reconnect_s = 60
"""


def parse(text: str, base: Path = Path("/etc/gridpool")) -> GridSettings:
    return GridSettings.from_mapping(tomllib.loads(text)["grid"], base_dir=base)


def test_settings_from_toml() -> None:
    s = parse(CONFIG)
    assert s.tick_s == 0.5 and s.max_events_per_site == 10
    assert s.limits()["A"].base_w == 1_000_000 and s.limits()["A"].safe_w == 400_000
    assert s.http.keys_file == Path("/etc/gridpool/keys/keys.toml") and s.http.skew_s == 20
    assert s.openadr[0].simple_levels_kw == (1000, 700, 400, 0)


@pytest.mark.parametrize(("change", "key"), [
    (("tick_s = 0.5", "tick = 0.5"), "grid.tick"),
    (("safe_kw = 400", "safe_kw = 4000"), "grid.site.A.safe_kw"),
    (("base_kw = 1000", "base_kw = -1"), "grid.site.A.base_kw"),
    (("silence_s = 300", "silence_s = 0"), "grid.site.A.silence_s"),
    (("skew_s = 20", "skew_s = 0"), "grid.http.skew_s"),
    (('listen = "127.0.0.1:0"', 'tls_cert = "c.pem"'), "grid.http.tls_key"),
    (("[1000, 700, 400, 0]", "[1000, 700]"), "grid.openadr[0].simple_levels_kw"),
    (('site = "A"\nvtn_url', 'site = "B"\nvtn_url'), "grid.openadr[0].site"),
    (('ven_name = "site-A"\n', ""), "grid.openadr[0].ven_name"),
    (("report_interval_s = 5", "report_interval_s = 0.5"), "grid.openadr[0].report_interval_s"),
])
def test_settings_errors_name_the_key(change: tuple[str, str], key: str) -> None:
    old, new = change
    assert old in CONFIG
    with pytest.raises(ConfigError) as err:
        parse(CONFIG.replace(old, new, 1))
    assert err.value.key == key, err.value


async def _post(url: str, secret: bytes, path: str) -> int:
    body = json.dumps({"limit_kw": 250}).encode()
    headers = signed_headers("tso", secret, "POST", path, body, now=time.time())
    async with aiohttp.ClientSession() as session, session.post(url + path, data=body,
                                                                headers=headers) as resp:
        return resp.status


async def test_runtime_on_its_own_listener(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    secret = write_keys(tmp_path / "keys")["tso"]
    config = CONFIG.split("[[grid.openadr]]")[0]  # no VTN here
    sink = RecordingSink()
    runtime = GridRuntime(parse(config, tmp_path), f"sqlite://{tmp_path}/ledger.db", sink)
    await runtime.start()
    try:
        assert runtime.http_address is not None
        host, port = runtime.http_address
        status = await _post(f"http://{host}:{port}", secret, "/grid/v1/sites/A/curtailments")
        assert status == 201 and sink.budget("A") == 250_000
    finally:
        await runtime.stop()


async def test_runtime_mounted_on_the_main_app(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    secret = write_keys(tmp_path / "keys")["tso"]
    config = CONFIG.split("[[grid.openadr]]")[0].replace('listen = "127.0.0.1:0"\n', "")
    root = web.Application()
    sink = RecordingSink()
    runtime = GridRuntime(parse(config, tmp_path), f"sqlite://{tmp_path}/ledger.db", sink,
                          http_root=root)
    await runtime.start()
    runner = web.AppRunner(root)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        status = await _post(f"http://127.0.0.1:{port}", secret, "/grid/v1/sites/A/curtailments")
        assert status == 201 and sink.budget("A") == 250_000
    finally:
        await runner.cleanup()
        await runtime.stop()
