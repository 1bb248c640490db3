"""TLS on both channels: the command API on its own mTLS listener (client certificates from
a CA, keys optionally pinned to one certificate), and the OpenADR VEN presenting a client
certificate to a VTN that requires one."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
from grid.certs import TestPki
from grid.grid_helpers import RecordingSink, grid_settings, until
from grid.vtn_helpers import TestVtn

from miners.grid.hmac_auth import NonceStore, Verifier, load_keys, new_key_file, signed_headers
from miners.grid.http_api import grid_api_app, start_listener
from miners.grid.openadr_ven import GridVen
from miners.grid.service import GridService
from miners.grid.settings import HttpApiSettings, VenSettings
from miners.grid.store import open_grid_store


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path)


async def test_command_api_over_mtls_with_pinned_keys(tmp_path: Path, pki: TestPki) -> None:
    server_cert, server_key, _ = pki.issue("server", "127.0.0.1", server=True)
    cert_a, key_a, fp_a = pki.issue("client-a", "tso")
    cert_b, key_b, _ = pki.issue("client-b", "someone else")
    secret = new_key_file(tmp_path / "tso.json", "tso")["secret_hex"]
    (tmp_path / "keys.toml").write_text(
        f'[[key]]\nfile = "tso.json"\nrole = "grid"\ncert_sha256 = "{fp_a}"\n')
    http = HttpApiSettings(keys_file=tmp_path / "keys.toml", listen="127.0.0.1:0",
                           tls_cert=server_cert, tls_key=server_key, client_ca=pki.ca)
    store = open_grid_store(f"sqlite://{tmp_path}/ledger.db")
    await store.migrate()
    sink = RecordingSink()
    service = GridService(grid_settings(http=http), store, sink)
    await service.start()
    verifier = Verifier(load_keys(http.keys_file), NonceStore(100), 30, service.started_at)
    runner = await start_listener(grid_api_app(service, verifier, http), http, "127.0.0.1", 0)
    port = runner.addresses[0][1]

    async def post(cert: Path | None, key: Path | None) -> int:
        context = ssl.create_default_context(cafile=pki.ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
        body = json.dumps({"limit_kw": 250}).encode()
        path = "/grid/v1/sites/A/curtailments"
        headers = signed_headers("tso", bytes.fromhex(secret), "POST", path, body,
                                 now=time.time())
        async with aiohttp.ClientSession() as session, session.post(
                f"https://127.0.0.1:{port}{path}", data=body, headers=headers,
                ssl=context) as resp:
            return resp.status

    try:
        with pytest.raises(aiohttp.ClientError):  # no client certificate: no TLS session
            await post(None, None)
        assert await post(cert_b, key_b) == 401  # a valid certificate, not the key's
        assert sink.budget("A") == 1_000_000
        assert await post(cert_a, key_a) == 201
        assert sink.budget("A") == 250_000
    finally:
        await runner.cleanup()
        await service.stop()
        await store.close()


async def test_openadr_ven_with_client_certificate(tmp_path: Path, pki: TestPki) -> None:
    vtn_cert, vtn_key, _ = pki.issue("vtn", "127.0.0.1", server=True)
    ven_cert, ven_key, _ = pki.issue("ven", "siteA")
    vtn = TestVtn(poll_s=1, tls={"cert": vtn_cert, "key": vtn_key, "ca": pki.ca})
    url = await vtn.start()
    assert url.startswith("https://")
    store = open_grid_store(f"sqlite://{tmp_path}/ledger.db")
    await store.migrate()
    good = VenSettings(site="A", vtn_url=url, ven_name="siteA", cert=ven_cert, key=ven_key,
                       ca_file=pki.ca, simple_levels_kw=(1000.0, 700.0, 600.0, 0.0))
    no_cert = VenSettings(site="B", vtn_url=url, ven_name="siteB", ca_file=pki.ca,
                          simple_levels_kw=(1000.0, 700.0, 600.0, 0.0), reconnect_s=1)
    sink = RecordingSink()
    service = GridService(grid_settings(openadr=(good, no_cert)), store, sink)
    await service.start()
    vens = [GridVen(good, service), GridVen(no_cert, service)]
    for ven in vens:
        await ven.start()
    try:
        async with asyncio.timeout(10):
            await vens[0].registered.wait()
        event_id = vtn.send(vens[0].client.ven_id, "simple", "level", [1])
        await until(lambda: sink.budget("A") == 700_000)
        await until(lambda: vtn.opts.get(event_id) == "optIn")
        await asyncio.sleep(1.5)
        assert not vens[1].registered.is_set()  # the VTN refuses a VEN without a certificate
        assert "ven-siteB" not in vtn.vens
    finally:
        for ven in vens:
            await ven.stop()
        await service.stop()
        await store.close()
        await vtn.stop()
