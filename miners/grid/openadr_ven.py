"""OpenADR 2.0b VEN for one site, through openleadr's `OpenADRClient`.

The VEN registers with the operator's VTN, polls it, and turns each event into timeline
events: every interval of a usable signal becomes one `GridEvent` with id
``oadr-<event id>-<signal>-<interval>``.

- ``SIMPLE`` / ``simple`` (type ``level``): level 0-3 → the site budget configured for that
  level (``simple_levels_kw``).
- ``LOAD_DISPATCH`` type ``setpoint``: the payload is the site limit, in kW unless the
  signal's item base says otherwise (``powerReal`` in W with an SI scale); type ``delta``:
  the base allocation minus the payload.

Anything else — another signal, a level that is not configured, a negative or non-power
setpoint — makes the whole event impossible to follow: the VEN opts out and, since
openleadr's event reply carries no reason, sends an ``oadrCreateOpt`` with the OpenADR opt
reason too. A modified event replaces its intervals; a cancelled one is cancelled (its up
ramp, if any, still applies). Test events are acknowledged and never applied.

openleadr awaits ``on_event`` before it replies to the VTN, so the handler only parses and
decides (pure, fast) and hands the timeline work to a task it owns. Every event received,
command applied and opt sent goes to the audit trail; any successful exchange with the VTN
(including an empty poll) counts as grid contact for the silence fallback. The site's
measured power is offered as a ``TELEMETRY_USAGE`` report (RealPower, W) at the sampling
period the VTN asks for, within ``report_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from openleadr import OpenADRClient

from miners.grid.errors import GridError
from miners.grid.service import GridService
from miners.grid.settings import VenSettings
from miners.grid.store import AuditRow
from miners.grid.timeline import GridEvent

log = structlog.get_logger(__name__)

REGISTER_TIMEOUT_S = 60.0  # registration, report registration and first poll together
REPORT_BUFFER_S = 3600.0  # report_duration offered to the VTN
_SCALE = {"p": 1e-12, "n": 1e-9, "micro": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1, "none": 1.0,
          "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_QUIET_TYPES = ("oadrResponse", "oadrUpdatedReport", "oadrCreatedReport")  # not audited


class Refusal(Exception):
    """The event cannot be followed; `opt_reason` is the OpenADR reason sent with it."""

    def __init__(self, reason: str, opt_reason: str = "notParticipating") -> None:
        super().__init__(reason)
        self.reason = reason
        self.opt_reason = opt_reason


def event_to_grid(event: Mapping[str, Any], *, site: str, base_w: float,
                  levels_kw: Sequence[float], issued_by: str, now: float) -> list[GridEvent]:
    """The timeline events for an OpenADR event dict (as openleadr parses it)."""
    descriptor = event["event_descriptor"]
    event_id = str(descriptor["event_id"])
    signals = event.get("event_signals") or []
    if isinstance(signals, Mapping):
        signals = signals.get("event_signals", [])
    out: list[GridEvent] = []
    for s_index, signal in enumerate(signals):
        to_watts = _signal_mapping(signal, base_w, levels_kw)
        for i_index, interval in enumerate(signal.get("intervals") or []):
            start = _start(interval, event)
            duration = interval.get("duration")
            seconds = duration.total_seconds() if isinstance(duration, timedelta) else 0.0
            out.append(GridEvent(
                f"oadr-{event_id}-{s_index}-{i_index}", site,
                to_watts(float(interval["signal_payload"])), start,
                start + seconds if seconds > 0 else None,  # duration 0: open-ended
                source="openadr", issued_by=issued_by, created=now))
    if not out:
        raise Refusal("event has no signal intervals")
    return out


def _signal_mapping(signal: Mapping[str, Any], base_w: float,
                    levels_kw: Sequence[float]) -> Callable[[float], float]:
    name, kind = str(signal.get("signal_name", "")), str(signal.get("signal_type", ""))
    if name.lower() == "simple" and kind == "level":
        if not levels_kw:
            raise Refusal("SIMPLE levels are not configured for this site")

        def level(value: float) -> float:
            if not value.is_integer() or not 0 <= value < len(levels_kw):
                raise Refusal(f"SIMPLE level {value:g} is not 0-{len(levels_kw) - 1}")
            return levels_kw[int(value)] * 1000

        return level
    if name == "LOAD_DISPATCH" and kind in ("setpoint", "delta"):
        factor = _watts_per_unit(signal.get("measurement"))

        def dispatch(value: float) -> float:
            watts = value * factor
            if not math.isfinite(watts):
                raise Refusal("LOAD_DISPATCH value is not finite")
            limit = base_w - watts if kind == "delta" else watts
            if limit < 0 or (kind == "delta" and watts < 0):
                raise Refusal(f"LOAD_DISPATCH {kind} {value:g} gives a negative or raised limit")
            return limit

        return dispatch
    raise Refusal(f"signal {name}/{kind} is not supported (SIMPLE level, LOAD_DISPATCH "
                  "setpoint or delta)")


def _watts_per_unit(measurement: Any) -> float:
    """Watts per payload unit: kW without an item base, else its unit (W) and SI scale."""
    if not measurement:
        return 1000.0
    unit = str(measurement.get("unit") or "")
    if unit != "W":
        raise Refusal(f"LOAD_DISPATCH unit {unit!r} is not power (W)")
    scale = str(measurement.get("scale") or "none")
    if scale not in _SCALE:
        raise Refusal(f"unknown SI scale {scale!r}")
    return _SCALE[scale]


def _start(interval: Mapping[str, Any], event: Mapping[str, Any]) -> float:
    dtstart = interval.get("dtstart") or event["active_period"]["dtstart"]
    return dtstart.timestamp()


class GridVen:
    """Runs one VEN: registration with retries, events, opts, telemetry reports."""

    def __init__(self, settings: VenSettings, service: GridService, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.service = service
        self.clock = clock
        self.site = settings.site
        self.client: OpenADRClient | None = None
        self.registered = asyncio.Event()
        self.vtn_id = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._applied: dict[str, list[str]] = {}  # OpenADR event id -> timeline event ids
        self.log = log.bind(site=self.site, ven=settings.ven_name)
        for name in ("openleadr", "apscheduler"):  # per-poll INFO lines; we log our own
            logging.getLogger(name).setLevel(logging.WARNING)

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.client is not None:
            await _stop_client(self.client)
            self.client = None

    async def _run(self) -> None:
        """Register (again after ``reconnect_s`` on failure); openleadr polls from then on."""
        s = self.settings
        self.log.info("openadr_ven_starting", vtn_url=s.vtn_url, tls=s.cert is not None,
                      report_interval_s=s.report_interval_s, reconnect_s=s.reconnect_s)
        while True:
            client = self._make_client()
            try:
                async with asyncio.timeout(REGISTER_TIMEOUT_S):
                    await client.run()
            except TimeoutError:
                self.log.warning("openadr_register_timeout")
            if client.registration_id:
                self.client = client
                self.registered.set()
                self.log.info("openadr_registered", ven_id=client.ven_id,
                              registration_id=client.registration_id)
                return
            await _stop_client(client)
            self.log.warning("openadr_register_failed", retry_s=s.reconnect_s)
            await asyncio.sleep(s.reconnect_s)

    def _make_client(self) -> OpenADRClient:
        s = self.settings
        passphrase = os.environ.get(s.passphrase_env) if s.passphrase_env else None
        client = OpenADRClient(
            ven_name=s.ven_name, vtn_url=s.vtn_url, ven_id=s.ven_id,
            cert=str(s.cert) if s.cert else None, key=str(s.key) if s.key else None,
            passphrase=passphrase, ca_file=str(s.ca_file) if s.ca_file else None,
            vtn_fingerprint=s.vtn_fingerprint, check_hostname=s.check_hostname,
            show_fingerprint=False)
        client.add_handler("on_event", self.on_event)
        client.add_handler("on_update_event", self.on_event)
        client.add_hook("after_parse_xml", self._after_parse)
        period = timedelta(seconds=s.report_interval_s)
        client.add_report(callback=self._power_samples, resource_id=self.site,
                          data_collection_mode="full",
                          measurement="RealPower", unit="W", scale="none",
                          report_specifier_id=f"gridpool-{self.site}-power",
                          r_id=f"{self.site}-power", sampling_rate=period,
                          report_duration=timedelta(seconds=REPORT_BUFFER_S))
        return client

    # -- messages -----------------------------------------------------------------------

    async def _after_parse(self, message_type: str, payload: Mapping[str, Any]) -> None:
        """Any parsed answer from the VTN is contact; substantive ones are audited."""
        self.service.touch([self.site])
        self.vtn_id = str(payload.get("vtn_id") or self.vtn_id)
        if message_type not in _QUIET_TYPES and message_type != "oadrDistributeEvent":
            self._audit("received", detail={"type": message_type})

    async def on_event(self, event: dict[str, Any]) -> str:
        """Decide at once; the timeline work runs in a task (openleadr awaits this)."""
        descriptor = event["event_descriptor"]
        oadr_id = str(descriptor["event_id"])
        status = descriptor.get("event_status")
        self._audit("received", oadr_id, {
            "type": "oadrDistributeEvent", "modification": descriptor.get("modification_number"),
            "status": status, "signals": _signal_summary(event)})
        if descriptor.get("test_event") not in (None, False, "false"):
            return self._opt(oadr_id, "optIn", "test event: acknowledged, not applied", None)
        if status == "cancelled":
            return self._opt(oadr_id, "optIn", "cancelled", self._cancel(oadr_id))
        try:
            events = event_to_grid(event, site=self.site,
                                   base_w=self.service.timeline(self.site).limits.base_w,
                                   levels_kw=self.settings.simple_levels_kw,
                                   issued_by=self._actor(), now=self.clock())
        except (Refusal, ValueError, KeyError, TypeError, AttributeError) as err:
            refusal = err if isinstance(err, Refusal) else Refusal(f"malformed event: {err!r}")
            return self._opt(oadr_id, "optOut", refusal.reason,
                             self._send_opt_out(event, refusal), refusal.opt_reason)
        return self._opt(oadr_id, "optIn", f"{len(events)} interval(s)",
                         self._apply(oadr_id, events))

    def _opt(self, oadr_id: str, opt: str, reason: str, work: Coroutine[Any, Any, None] | None,
             opt_reason: str = "") -> str:
        """Audit and log the decision, then start its work (last: nothing after can fail)."""
        self._audit("opt", oadr_id, {"opt": opt, "reason": reason, "opt_reason": opt_reason})
        self.log.info("openadr_event", event_id=oadr_id, opt=opt, reason=reason)
        if work is not None:
            self._spawn(work)
        return opt

    async def _apply(self, oadr_id: str, events: list[GridEvent]) -> None:
        previous = self._applied.get(oadr_id, [])
        self._applied[oadr_id] = [e.event_id for e in events]
        for stale in set(previous) - set(self._applied[oadr_id]):
            await self._guarded(self.service.cancel(self.site, stale, channel="openadr",
                                                    actor=self._actor()))
        for event in events:
            await self._guarded(self.service.submit(event, channel="openadr",
                                                    actor=self._actor(),
                                                    received={"openadr_event": oadr_id}))

    async def _cancel(self, oadr_id: str) -> None:
        ids = self._applied.pop(oadr_id, None)
        if ids is None:
            prefix = f"oadr-{oadr_id}-"
            ids = [e.event_id for e in self.service.timeline(self.site).events
                   if e.event_id.startswith(prefix)]
        for event_id in ids:
            await self._guarded(self.service.cancel(self.site, event_id, channel="openadr",
                                                    actor=self._actor()))

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except GridError as err:
            self.log.error("openadr_apply_failed", error=str(err))
            self._audit("apply_failed", detail={"error": str(err)})

    async def _send_opt_out(self, event: Mapping[str, Any], refusal: Refusal) -> None:
        client = self.client
        if client is None or client.ven_id is None:
            return
        descriptor = event["event_descriptor"]
        try:
            async with asyncio.timeout(REGISTER_TIMEOUT_S):
                await client.create_opt(
                    "optOut", refusal.opt_reason, targets=[{"ven_id": client.ven_id}],
                    event_id=descriptor["event_id"],
                    modification_number=descriptor.get("modification_number", 0))
        except (TimeoutError, ValueError) as err:
            self.log.warning("openadr_opt_send_failed", error=repr(err))

    def _power_samples(self, date_from: datetime, date_to: datetime,
                       sampling_interval: timedelta) -> list[tuple[datetime, float]]:
        """Measured site power in the report window (or the latest reading, with its own
        time, when none fell inside it; nothing before the first reading)."""
        samples = self.service.samples(self.site, date_from.timestamp(), date_to.timestamp())
        if not samples:
            latest = self.service.power(self.site)
            samples = [] if latest is None else [latest]
        return [(datetime.fromtimestamp(t, UTC), w) for t, w in samples[-64:]]

    # -- helpers ------------------------------------------------------------------------

    def _actor(self) -> str:
        ven = self.client.ven_id if self.client is not None else self.settings.ven_id
        return f"{self.vtn_id or 'vtn'}>{ven or self.settings.ven_name}"

    def _audit(self, kind: str, event_id: str = "", detail: Mapping[str, Any] | None = None,
               ) -> None:
        self.service.audit_nowait(AuditRow(self.clock(), self.site, kind, "openadr",
                                           self._actor(), event_id, dict(detail or {})))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _signal_summary(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    signals = event.get("event_signals") or []
    if isinstance(signals, Mapping):
        signals = signals.get("event_signals", [])
    return [{"name": s.get("signal_name"), "type": s.get("signal_type"),
             "values": [i.get("signal_payload") for i in (s.get("intervals") or [])][:16]}
            for s in signals][:8]


async def _stop_client(client: OpenADRClient) -> None:
    if client.scheduler.running:
        client.scheduler.shutdown(wait=False)
    if client.report_queue_task:
        client.report_queue_task.cancel()
    if client.client_session is not None:
        await client.client_session.close()
