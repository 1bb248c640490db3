"""deploy/kubernetes: schema-valid manifests (kubernetes-validate, offline, strict) and the
wiring between them: the Stratum Deployment behind a TCP LoadBalancer, probes on /healthz
and /readyz, ConfigMap and Secret references that resolve, a config gridpool accepts, one
fleet controller per site that never runs twice, PostgreSQL as an external Service."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops.catalogue import REPO

from miners.inventory import fleet_config_from_mapping
from pool.cli import build_parser
from pool.config import parse_config, parse_host_port

K8S = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # oldest still-supported minor we validate against
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def applied() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"] for d in documents(K8S / name)]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in applied() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}"
    return matches[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_kustomization_applies_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")}
    assert set(kustomization["resources"]) == files - NOT_APPLIED
    assert kustomization["namespace"] == "gridpool"
    for document in applied():
        assert document["metadata"].get("namespace", "gridpool") == "gridpool"


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_match_the_kubernetes_schema(path: Path):
    validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (offline schemas)")
    for document in documents(path):
        if document["kind"] == "Kustomization":
            continue
        validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_typo():
    validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (offline schemas)")
    deployment = find("Deployment", "gridpool-stratum")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    with pytest.raises(validate.ValidationError):
        validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_stratum_behind_a_tcp_load_balancer():
    deployment = find("Deployment", "gridpool-stratum")
    service = find("Service", "gridpool-stratum")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"  # per-IP limits see miners
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["protocol"], port["targetPort"]) == (3333, "TCP", "stratum")
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert ports == {"stratum": 3333, "http": 8080}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("name", ["gridpool-stratum", "gridpool-fleet-north"])
def test_probes_and_security_context(name: str):
    deployment = find("Deployment", name)
    main = container(deployment)
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["securityContext"] == {"allowPrivilegeEscalation": False,
                                       "readOnlyRootFilesystem": True,
                                       "capabilities": {"drop": ["ALL"]}}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's gridpool user
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]


def test_config_and_secret_references_resolve(monkeypatch):
    deployment = find("Deployment", "gridpool-stratum")
    main = container(deployment)
    env = secret_env(main)
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    configmap = find("ConfigMap", volume["configMap"]["name"])
    (mount,) = [m for m in main["volumeMounts"] if m["name"] == volume["name"]]
    config_path = Path(main["args"][main["args"].index("--config") + 1])
    assert config_path.parent == Path(mount["mountPath"]) and mount["readOnly"] is True

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = parse_config(tomllib.loads(configmap["data"][config_path.name]))
    assert config.network.chain == "main" and config.log.json is True
    assert all(node.rpc_password == env["BITCOIN_RPC_PASSWORD"] for node in config.nodes)
    assert config.http.port == 8080 and config.http.host == "0.0.0.0"
    assert parse_host_port("stratum", config.stratum.listen[0]) == ("0.0.0.0", 3333)
    assert str(config.data_dir) in {m["mountPath"] for m in main["volumeMounts"]}


def secrets() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["stringData"]
            for d in documents(K8S / "secret.example.yaml")}


def secret_env(main: dict[str, Any]) -> dict[str, str]:
    """The container's environment, resolved from the example Secrets (refs must exist)."""
    env = {}
    for variable in main["env"]:
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets()[ref["name"]], f"{ref} is in no Secret"
        env[variable["name"]] = secrets()[ref["name"]][ref["key"]]
    return env


def test_fleet_controller_per_site_never_runs_twice(monkeypatch):
    fleets = [d for d in applied() if d["kind"] == "Deployment"
              and d["metadata"]["labels"]["app.kubernetes.io/name"] == "gridpool-fleet"]
    assert fleets, "no fleet controller Deployment"
    for deployment in fleets:
        site = deployment["metadata"]["labels"]["app.kubernetes.io/instance"]
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        main = container(deployment)
        assert main["args"][:3] == ["fleet", "run", "--config"]
        build_parser().parse_args(main["args"])  # a command gridpool has
        config_name = deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        text = find("ConfigMap", config_name)["data"][Path(main["args"][3]).name]
        for name, value in secret_env(main).items():
            monkeypatch.setenv(name, value)
        fleet = fleet_config_from_mapping(tomllib.loads(text)["fleet"])
        assert [s.site_id for s in fleet.sites] == [site]  # one site per controller
        assert fleet.admin_token is not None and fleet.admin_token.resolve()
        port = parse_host_port("admin", fleet.admin_listen)[1]
        assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"http": port}
        service = find("Service", deployment["metadata"]["name"])
        assert service["spec"]["ports"][0]["port"] == port


def test_postgresql_is_an_external_service():
    postgres = find("Service", "postgres")
    assert postgres["spec"]["type"] == "ExternalName"
    assert "@postgres.gridpool.svc:5432/" in secrets()["gridpool-secrets"]["ledger-url"]
    assert not [d for d in applied() if d["kind"] in ("StatefulSet", "PersistentVolumeClaim")]
