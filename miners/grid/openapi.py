"""OpenAPI 3.1 description of the grid command API (served at /grid/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from miners.grid.hmac_auth import HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP

_NUM = {"type": "number"}
_NULLABLE_NUM = {"type": ["number", "null"]}
_TIME = {"oneOf": [{"type": "number", "description": "unix seconds"},
                   {"type": "string", "format": "date-time"}]}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_SIGNED_ERRORS = {
    "401": _error("missing, malformed or bad signature; unknown key; stale timestamp"),
    "403": _error("the key's role or sites do not allow this"),
    "404": _error("unknown site or event"),
    "409": _error("nonce replayed, or event id reused with other terms"),
    "413": _error("body too large"),
    "422": _error("bad body; `field` names the field"),
    "503": _error("store unavailable or too many recent requests"),
}


def _op(summary: str, ok: dict[str, Any], *, body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": [{"gridHmac": []}],
                          "responses": {**ok, **_SIGNED_ERRORS}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Curtailment"}}}}
    return op


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_SITE = {"name": "site", "in": "path", "required": True, "schema": {"type": "string"}}
_EVENT = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "gridpool grid command API", "version": "1",
                 "description": "Curtailment commands from the grid operator. Every request "
                                "except this document is signed: see docs/grid-api.md."},
        "paths": {
            "/grid/v1/openapi.json": {"get": {
                "summary": "This document (public)", "security": [],
                "responses": {"200": {"description": "the OpenAPI document"}}}},
            "/grid/v1/sites": {"get": _op("Sites this key covers, with the budget in force",
                                          {"200": {"description": "sites"}})},
            "/grid/v1/heartbeat": {"post": _op("Keep the grid link alive (grid keys only)",
                                               {"200": {"description": "ok"}})},
            "/grid/v1/sites/{site}/timeline": {
                "parameters": [_SITE],
                "get": _op("Budget, schedule, events and their compliance",
                           {"200": _json("Timeline", "the site's timeline")})},
            "/grid/v1/sites/{site}/curtailments": {
                "parameters": [_SITE],
                "post": _op("Limit the site's power (grid keys only)",
                            {"201": _json("Ack", "accepted; says when the site is under"),
                             "200": _json("Ack", "the same command was already accepted")},
                            body=True)},
            "/grid/v1/sites/{site}/curtailments/{event_id}": {
                "parameters": [_SITE, _EVENT],
                "get": _op("One event and its compliance",
                           {"200": _json("Event", "the event")}),
                "delete": _op("Cancel (end now; its up ramp still applies)",
                              {"200": _json("Ack", "cancelled")})},
        },
        "components": {
            "securitySchemes": {"gridHmac": {
                "type": "apiKey", "in": "header", "name": HEADER_SIGNATURE,
                "description": f"HMAC-SHA256 with headers {HEADER_KEY}, {HEADER_TIMESTAMP}, "
                               f"{HEADER_NONCE}, {HEADER_SIGNATURE}; see docs/grid-api.md"}},
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    event_props = {
        "id": {"type": "string"}, "site": {"type": "string"}, "limit_kw": _NUM,
        "start": _NUM, "end": _NULLABLE_NUM, "cancelled": _NULLABLE_NUM,
        "ramp_down_kw_per_min": _NULLABLE_NUM, "ramp_up_kw_per_min": _NULLABLE_NUM,
        "source": {"type": "string", "enum": ["http", "openadr", "cli", "config"]},
        "issued_by": {"type": "string"}, "received": _NUM, "under_limit_by": _NULLABLE_NUM,
        "compliance": {"$ref": "#/components/schemas/Compliance"},
    }
    return {
        "Error": {"type": "object", "required": ["error", "reason"], "properties": {
            "error": {"type": "string"}, "reason": {"type": "string"},
            "field": {"type": "string"}}},
        "Curtailment": {"type": "object", "required": ["limit_kw"],
                        "additionalProperties": False, "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$",
                   "description": "your id; resending the same id and terms is a no-op"},
            "limit_kw": {"type": "number", "minimum": 0},
            "start": {**_TIME, "description": "default: now"},
            "end": {**_TIME, "description": "default: until cancelled"},
            "duration_s": {"type": "number", "exclusiveMinimum": 0},
            "ramp_down_kw_per_min": {"type": "number", "exclusiveMinimum": 0},
            "ramp_up_kw_per_min": {"type": "number", "exclusiveMinimum": 0}}},
        "Ack": {"type": "object", "properties": {
            "event": {"$ref": "#/components/schemas/Event"}, "accepted": {"type": "boolean"},
            "duplicate": {"type": "boolean"}, "budget_kw": _NUM,
            "under_limit_by": {**_NUM, "description": "unix s: the site is under the limit"},
            "under_limit_in_s": _NUM}},
        "Event": {"type": "object", "properties": event_props},
        "Compliance": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["scheduled", "pending", "complying", "late",
                                                  "violated", "met", "void"]},
            "limit_kw": _NUM, "promised": _NULLABLE_NUM, "under_limit_at": _NULLABLE_NUM,
            "seconds_to_comply": _NULLABLE_NUM, "over_limit_s": _NUM,
            "max_power_kw": _NULLABLE_NUM, "last_power_kw": _NULLABLE_NUM,
            "samples": {"type": "integer"}}},
        "Timeline": {"type": "object", "properties": {
            "site": {"type": "string"}, "now": _NUM, "budget_kw": _NUM,
            "binding": {"type": "array", "items": {"type": "string"}},
            "silent": {"type": "boolean"}, "base_kw": _NUM, "safe_kw": _NUM,
            "silence_s": _NULLABLE_NUM, "last_contact": _NUM, "power_kw": _NULLABLE_NUM,
            "power_at": _NULLABLE_NUM,
            "schedule": {"type": "array", "items": {"type": "object", "properties": {
                "at": _NUM, "budget_kw": _NUM}}},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}},
    }
