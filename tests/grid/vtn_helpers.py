"""openleadr's own VTN (OpenADRServer) on a loopback port, recording what VENs send back:
registrations, opt-in/opt-out replies, oadrCreateOpt reasons and telemetry reports.

openleadr's server has no EiOpt service; the test VTN adds one that parses the VEN's
oadrCreateOpt with openleadr's own parser and answers oadrCreatedOpt. openleadr keeps some
VTN settings as class attributes (`VTNService.ven_lookup`), so every test VTN sets one."""

from __future__ import annotations

import asyncio
import warnings
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from openleadr import OpenADRServer
from openleadr.messaging import create_message, parse_message

VTN_ID = "TESTVTN"


class TestVtn:
    __test__ = False  # not a pytest class

    def __init__(self, *, poll_s: float = 1.0, tls: dict[str, Path] | None = None) -> None:
        self.vens: dict[str, dict[str, Any]] = {}  # ven_id -> registration info
        self.opts: dict[str, str] = {}  # event id -> optIn / optOut (the event reply)
        self.opt_reasons: list[dict[str, Any]] = []  # oadrCreateOpt payloads
        self.reports: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        self.opt_seen = asyncio.Event()
        tls = tls or {}
        with warnings.catch_warnings():  # openleadr stores itself under a plain str app key
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            self.server = OpenADRServer(
                vtn_id=VTN_ID, http_port=0, http_host="127.0.0.1",
                requested_poll_freq=timedelta(seconds=poll_s), ven_lookup=self.ven_lookup,
                show_fingerprint=False, http_cert=_str(tls.get("cert")),
                http_key=_str(tls.get("key")), http_ca_file=_str(tls.get("ca")),
                cert=_str(tls.get("cert")), key=_str(tls.get("key")))
        self.server.add_handler("on_create_party_registration", self.on_register)
        self.server.add_handler("on_register_report", self.on_register_report)
        self.server.app.router.add_post(f"{self.server.http_path_prefix}/EiOpt", self._ei_opt)
        self.fingerprints: dict[str, str] = {}  # ven_name -> expected TLS fingerprint
        self.url = ""

    async def start(self) -> str:
        await self.server.run()
        port = self.server.app_runner.addresses[0][1]
        scheme = "https" if self.server.ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{port}{self.server.http_path_prefix}"
        return self.url

    async def stop(self) -> None:
        await self.server.stop()

    # -- handlers -----------------------------------------------------------------------

    async def on_register(self, info: dict[str, Any]) -> tuple[str, str] | bool:
        name = info["ven_name"]
        if name in self.fingerprints and info.get("fingerprint") != self.fingerprints[name]:
            return False
        ven_id = f"ven-{name}"
        self.vens[ven_id] = {"ven_id": ven_id, "ven_name": name, "registration_id": f"reg-{name}",
                             "fingerprint": info.get("fingerprint")}
        return ven_id, f"reg-{name}"

    async def ven_lookup(self, ven_id: str) -> dict[str, Any] | None:
        return self.vens.get(ven_id)

    async def on_register_report(self, ven_id: str, resource_id: str, measurement: str,
                                 unit: str, scale: str, min_sampling_interval: timedelta,
                                 max_sampling_interval: timedelta) -> tuple[Any, timedelta]:
        def collect(values: list[tuple[datetime, float]]) -> None:
            self.reports[resource_id].extend(values)

        return collect, min_sampling_interval

    async def _ei_opt(self, request: web.Request) -> web.Response:
        message_type, payload = parse_message(await request.read())
        assert message_type == "oadrCreateOpt", message_type
        self.opt_reasons.append(payload)
        self.opt_seen.set()
        reply = create_message("oadrCreatedOpt", response={
            "response_code": 200, "response_description": "OK",
            "request_id": payload["request_id"]}, opt_id=payload["opt_id"])
        return web.Response(text=reply, content_type="application/xml")

    # -- events -------------------------------------------------------------------------

    def send(self, ven_id: str, signal_name: str, signal_type: str, values: list[float], *,
             start: datetime | None = None, interval_s: float = 600.0,
             measurement: dict[str, Any] | None = None) -> str:
        """Queue an event for the VEN's next poll; its reply lands in `self.opts`."""
        start = start or datetime.now(UTC)
        intervals = [{"dtstart": start + timedelta(seconds=i * interval_s),
                      "duration": timedelta(seconds=interval_s), "signal_payload": v}
                     for i, v in enumerate(values)]

        def replied(ven_id: str, event_id: str, opt_type: str) -> None:
            self.opts[event_id] = opt_type

        if measurement is None:
            return self.server.add_event(ven_id=ven_id, signal_name=signal_name,
                                         signal_type=signal_type, intervals=intervals,
                                         callback=replied)
        from openleadr import objects, utils

        signal = objects.EventSignal(intervals=intervals, signal_name=signal_name,
                                     signal_type=signal_type, signal_id=utils.generate_id(),
                                     measurement=objects.Measurement(**measurement))
        event = objects.Event(
            event_descriptor=objects.EventDescriptor(
                event_id=utils.generate_id(), modification_number=0,
                market_context="oadr://unknown.context", event_status="far",
                created_date_time=datetime.now(UTC)),
            event_signals=[signal], targets=[{"ven_id": ven_id}],
            active_period=utils.get_active_period_from_intervals(intervals, False))
        return self.server.add_raw_event(ven_id=ven_id, event=event, callback=replied)

    def cancel(self, ven_id: str, event_id: str) -> None:
        self.server.cancel_event(ven_id, event_id)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
