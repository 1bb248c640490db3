"""Test helper: an HTTP client for the pool's API that validates every answer against the
OpenAPI document the pool serves (the response schema of that route, method and status)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jsonschema
from aiohttp import web

from pool.web.openapi import build_spec

SPEC = build_spec()
STATIC_PREFIX = "/static"  # the dashboard's files: not API routes, not in the document


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route, without aiohttp's automatic HEADs."""
    found = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or canonical.startswith(STATIC_PREFIX):
            continue
        found.add((route.method, canonical))
    return found


def spec_routes(spec: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def response_schema(method: str, template: str, status: int) -> dict[str, Any]:
    """The JSON schema the spec gives for this answer; AssertionError when undocumented."""
    operation = SPEC["paths"].get(template, {}).get(method.lower())
    assert operation is not None, f"{method} {template} is not in the OpenAPI document"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template} -> {status} is not documented"
    content = response["content"]
    assert "application/json" in content, f"{method} {template} -> {status} is not JSON"
    return content["application/json"]["schema"]


def check_body(method: str, template: str, status: int, body: Any) -> None:
    schema = {**response_schema(method, template, status), "components": SPEC["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any


@dataclass
class ApiClient:
    """`await client.call("GET", "/api/accounts/{account}", account="alice", token=t)`."""

    base: str
    session: aiohttp.ClientSession
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    async def call(self, method: str, template: str, *, token: str | None = None,
                   query: dict[str, str] | None = None, json: Any = None, data: Any = None,
                   headers: dict[str, str] | None = None, **path: str) -> Answer:
        url = self.base + template.format(**path)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, url, params=query, json=json, data=data,
                                        headers=sent) as resp:
            assert resp.content_type == "application/json", (resp.status, await resp.text())
            body = await resp.json()
            answer = Answer(resp.status, body, resp.headers)
        check_body(method, template, answer.status, body)
        if answer.status >= 400 and "error" in body:
            assert body["status"] == answer.status
        self.calls.append((method, template, answer.status))
        return answer
