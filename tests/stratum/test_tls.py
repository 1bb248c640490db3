"""The TLS listener (stratum+ssl) beside plain TCP, with a throwaway self-signed cert."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest


@pytest.fixture
def self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)  # fmt: skip
    return cert, key


async def test_tls_listener_serves_stratum(devnet, pool_factory, client_factory, self_signed):
    cert, key = self_signed
    app = await pool_factory(
        [devnet],
        stratum={
            "tls_listen": ["127.0.0.1:0"],
            "tls_cert_file": str(cert),
            "tls_key_file": str(key),
        },
    )
    assert len(app.stratum.addresses) == 2  # plain TCP, then TLS
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    client = await client_factory(app, listener=1, tls=context)
    assert await client.submit(client.find_solution())
    plain = await client_factory(app, listener=0)  # plain TCP still serves beside it
    assert plain.job.job_id == app.jobs.current.job_id
