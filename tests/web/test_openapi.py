"""The OpenAPI document: a valid OpenAPI 3.1 description whose paths and methods are
exactly the routes the pool's HTTP app serves (both directions), and that the document
served at /api/openapi.json is this one."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from spec_check import app_routes, spec_routes

from pool.api import create_app
from pool.ledger import open_ledger
from pool.web import ApiSettings, PoolSources, WebApi, web_routes
from pool.web.openapi import build_spec

POOL_APP_ROUTES = {("GET", "/api/pool"),  # added by PoolApp itself (tests/web/test_pool_*)
                   ("POST", "/api/workers/{worker}/starve"),  # and its work gate
                   ("POST", "/api/workers/{worker}/release")}


@pytest.fixture
def pool_http_app(tmp_path: Path) -> web.Application:
    ledger = open_ledger(f"sqlite://{tmp_path}/ledger.db")  # not opened: routes only
    web_api = WebApi(PoolSources(ledger), ApiSettings(), data_dir=tmp_path)
    return create_app(health=lambda: {"healthy": True}, extra_routes=web_routes(web_api))


def test_document_is_valid_openapi() -> None:
    spec = build_spec()
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_validator_rejects_a_broken_document() -> None:
    spec = build_spec()
    spec["paths"]["/api/blocks/{hash}"]["get"]["parameters"] = []  # {hash} undeclared
    with pytest.raises(OpenAPIValidationError, match="hash"):
        validate(spec)


def test_every_route_is_documented_and_every_documented_route_exists(pool_http_app) -> None:
    served = app_routes(pool_http_app) | POOL_APP_ROUTES
    documented = spec_routes(build_spec())
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented routes the app does not serve"
    assert ("GET", "/") in served and ("GET", "/api/openapi.json") in served


def test_every_path_parameter_is_declared() -> None:
    for path, ops in build_spec()["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, op in ops.items():
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == names, (method, path)


def test_account_and_admin_routes_declare_their_security() -> None:
    for path, ops in build_spec()["paths"].items():
        for method, op in ops.items():
            if "{account}" in path and not path.startswith("/api/admin"):
                assert {"accountToken": []} in op["security"], (method, path)
                assert "401" in op["responses"] and "403" in op["responses"]
            if path.startswith("/api/admin") or path in ("/api/accounts",
                                                         "/api/blocks/{hash}/payouts"):
                assert op["security"] == [{"adminToken": []}], (method, path)
            if method in ("put", "post", "delete"):
                assert op.get("security"), f"mutating route {method} {path} without auth"
