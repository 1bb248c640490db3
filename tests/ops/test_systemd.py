"""deploy/systemd: the pool unit and the per-site fleet controller template.

Always: the hardening options are set, the service runs as its own user, and each
ExecStart is a command line gridpool's own CLI parser accepts. With systemd-analyze: the
units verify without a warning and their offline security exposure stays low.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ops.catalogue import REPO

from pool.cli import build_parser

UNITS = REPO / "deploy" / "systemd"
POOL_UNIT = UNITS / "gridpool.service"
FLEET_UNIT = UNITS / "gridpool-fleet@.service"
INSTALLED_GRIDPOOL = "/opt/gridpool/bin/gridpool"
HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}
MAX_EXPOSURE = 25  # systemd-analyze security's threshold scale: 2.5 out of 10
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section → key → every value (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: bad line {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("path", [POOL_UNIT, FLEET_UNIT], ids=lambda p: p.name)
def test_unit_is_hardened_and_unprivileged(path: Path):
    service = unit(path)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{path.name}: {key}={value}"
    assert service["User"][0] not in ("root", "0") and service["Group"]
    assert set(service["RestrictAddressFamilies"][0].split()) <= {"AF_INET", "AF_INET6",
                                                                  "AF_UNIX"}
    assert "@system-service" in service["SystemCallFilter"]
    assert service["StateDirectory"] and service["Restart"] == ["on-failure"]
    assert "multi-user.target" in unit(path)["Install"]["WantedBy"]


@pytest.mark.parametrize("path", [POOL_UNIT, FLEET_UNIT], ids=lambda p: p.name)
def test_exec_lines_are_gridpool_commands(path: Path):
    service = unit(path)["Service"]
    for command in service.get("ExecStartPre", []) + service["ExecStart"]:
        argv = shlex.split(command.replace("%i", "north"))
        assert argv[0] == INSTALLED_GRIDPOOL
        build_parser().parse_args(argv[1:])  # SystemExit if gridpool has no such command


def test_fleet_unit_is_a_per_site_template():
    service = unit(FLEET_UNIT)["Service"]
    (start,) = service["ExecStart"]
    assert start.split()[1:4] == ["fleet", "run", "--config"] and "%i" in start.split()[4]
    assert "%i" in service["StateDirectory"][0] and "%i" in service["LoadCredential"][0]


def test_pool_unit_drains_before_it_is_killed():
    service = unit(POOL_UNIT)["Service"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert int(service["TimeoutStopSec"][0]) >= 30
    assert int(service["LimitNOFILE"][0]) >= 100_000  # one descriptor per miner connection


@pytest.fixture
def local_units(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at this checkout's gridpool, so systemd's check
    that the binary exists passes; the fleet template as an instance."""
    local = str(Path(sys.executable).parent / "gridpool")
    pool = tmp_path / POOL_UNIT.name
    pool.write_text(POOL_UNIT.read_text().replace(INSTALLED_GRIDPOOL, local))
    fleet = tmp_path / "gridpool-fleet@north.service"
    fleet.write_text(FLEET_UNIT.read_text().replace(INSTALLED_GRIDPOOL, local))
    (tmp_path / FLEET_UNIT.name).write_text(fleet.read_text())
    return [pool, fleet]


needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)")


@needs_systemd_analyze
def test_systemd_analyze_verify_reports_nothing(local_units: list[Path]):
    for path in local_units:
        result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_systemd_analyze
def test_security_exposure_is_low(local_units: list[Path]):
    for path in local_units:
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}",
             "--no-pager", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
