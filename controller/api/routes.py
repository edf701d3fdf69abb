"""The charger's HTTP API (a stable contract; see the README).

GET  /                  the status page
GET  /api/status        connectors, contactors, pilot, energy, OCPP link
GET  /api/events        server-sent events: "status" (the /api/status document) on every change,
                        "trace" (new OCPP frames), "history" (the chart's samples) first
GET  /api/history       power and offered current of each connector's current or last session
GET  /api/trace?since=N the OCPP frames seen since sequence N (secrets redacted)
GET  /metrics           Prometheus text exposition of the same figures
POST /api/bench/pilot   {"connector": 1, "state": "A".."F"}          simulated hardware only
POST /api/bench/tag     {"id_tag": "..."}                             simulated hardware only
POST /api/bench/fault   {"device": "meter"|"relay"|"reader"|"power"|"lock"|"pp", "active": bool}  simulated only
POST /api/bench/cable   {"connector": 1, "rating_a": 13|20|32|63|null}  the simulated cable (null: none)

The bench routes do not exist (404) unless the hardware backend is "mock". With
``api.password`` set, every route asks for HTTP Basic credentials (user "evcp").
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from importlib import resources
from typing import Any, Callable, Protocol

from aiohttp import web

from evcp.api.http import HttpError, Routes, html_response, json_response, read_json_object, server_stopping, wait_any
from evcp.hal import PILOT_STATES

logger = logging.getLogger("evcp.api")

BENCH_DEVICES = ("meter", "relay", "reader", "power", "lock", "pp")
CABLE_RATINGS = (13, 20, 32, 63)
API_USER = "evcp"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PUSH_MIN_INTERVAL_S = 0.2
"""Status pushes are at most this often: a burst of changes is sent as one update."""
KEEPALIVE_S = 15.0
"""An event stream with nothing to say sends a comment this often, so a dead client is noticed."""
JOULES_PER_WH = 3600


class BenchControls(Protocol):
    """What simulated hardware lets a person do to it."""

    connectors: int

    def set_pilot(self, connector: int, state: str) -> None: ...

    def present_tag(self, id_tag: str) -> None: ...

    def set_fault(self, device: str, active: bool) -> None: ...

    def set_cable(self, connector: int, rating_a: float | None) -> None: ...


class ApiTarget(Protocol):
    """The running controller, as the API sees it (it changes on a reset)."""

    on_change: Callable[[], None] | None

    def status(self) -> dict[str, Any]: ...


class Changes:
    """Wakes every waiter when the controller's state may have changed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    @property
    def next(self) -> asyncio.Event:
        """The event the next :meth:`notify` sets."""
        return self._event


class SessionHistory:
    """Power and offered current over each connector's current (or last) session, for the chart.

    A sample every ``interval`` seconds; when a session has ``MAX_POINTS`` samples every other
    one is dropped and the interval doubles, so a long session keeps its whole shape in bounded
    memory.
    """

    MAX_POINTS = 720
    FIRST_INTERVAL_S = 1.0

    def __init__(self) -> None:
        self._sessions: dict[int, dict[str, Any]] = {}

    def record(self, status: dict[str, Any]) -> None:
        now = status.get("charge_point", {}).get("time")
        now = time.time() if now is None else now
        for c in status.get("connectors", []):
            started = c.get("session_started_at")
            if started is None:
                continue
            session = self._sessions.get(c["id"])
            if session is None or session["started_at"] != started:
                session = self._sessions[c["id"]] = {"started_at": started, "interval_s": self.FIRST_INTERVAL_S,
                                                     "points": []}
            session["transaction_id"] = c.get("transaction_id")
            points = session["points"]
            if points and now - points[-1][0] < session["interval_s"]:
                continue
            points.append([round(now, 1), c.get("power_w"), c.get("current_limit_a")])
            if len(points) > self.MAX_POINTS:
                del points[1::2]
                session["interval_s"] *= 2

    def document(self) -> dict[str, Any]:
        """``{"connectors": {"1": {"started_at", "transaction_id", "points": [[time, power_w,
        offered_a], ...]}}}``: time in seconds since the epoch, offered_a null without PWM."""
        return {"connectors": {str(cid): {"started_at": s["started_at"], "transaction_id": s.get("transaction_id"),
                                          "points": list(s["points"])}
                               for cid, s in sorted(self._sessions.items())}}


class Api:
    def __init__(self, trace, bench: BenchControls | None, password: str | None = None):
        self._controller: ApiTarget | None = None
        self.trace = trace
        self.bench = bench
        self.changes = Changes()
        self.history = SessionHistory()
        self.bench_faults = {device: False for device in BENCH_DEVICES}
        """What the bench API was last told for each fault (shown when the status has no ``bench``)."""
        self._credentials = (base64.b64encode(f"{API_USER}:{password}".encode()).decode()
                             if password else None)
        self._change_pending = False

    @property
    def controller(self) -> ApiTarget | None:
        return self._controller

    @controller.setter
    def controller(self, controller: ApiTarget | None) -> None:
        """The running controller; its every dispatch wakes the event streams."""
        self._controller = controller
        if controller is not None:
            controller.on_change = self._controller_changed
        self._controller_changed()

    def _controller_changed(self) -> None:
        """Called inside the controller's dispatch: only schedules the work, never does it there."""
        if self._change_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._change_pending = True
        loop.call_soon(self._after_change)

    def _after_change(self) -> None:
        self._change_pending = False
        if self._controller is not None:
            try:
                self.history.record(self._controller.status())
            except Exception:
                logger.exception("recording the session chart failed")
        self.changes.notify()

    def status_document(self) -> dict[str, Any]:
        if self._controller is None:
            raise HttpError(503, "controller starting")
        document = self._controller.status()
        if self.bench is not None:
            document.setdefault("bench", {"faults": dict(self.bench_faults)})
        return document

    def routes(self) -> Routes:
        routes: dict[tuple[str, str], Any] = {
            ("GET", "/"): self.page,
            ("GET", "/api/status"): self.status,
            ("GET", "/api/events"): self.events,
            ("GET", "/api/history"): self.session_history,
            ("GET", "/api/trace"): self.frames,
            ("GET", "/metrics"): self.metrics,
        }
        if self.bench is not None:
            routes[("POST", "/api/bench/pilot")] = self.bench_pilot
            routes[("POST", "/api/bench/tag")] = self.bench_tag
            routes[("POST", "/api/bench/fault")] = self.bench_fault
            routes[("POST", "/api/bench/cable")] = self.bench_cable
        if self._credentials is None:
            return routes
        return {route: self._authenticated(handler) for route, handler in routes.items()}

    def _authenticated(self, handler):
        async def checked(request: web.Request) -> web.StreamResponse:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "basic" or not hmac.compare_digest(given.strip().encode(), self._credentials.encode()):
                raise HttpError(401, "credentials required", {"WWW-Authenticate": 'Basic realm="evcp"'})
            return await handler(request)
        return checked

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=prometheus_text(self.status_document()), headers={"Content-Type": PROMETHEUS_TYPE})

    async def page(self, request: web.Request) -> web.Response:
        return html_response(resources.files("evcp.api").joinpath("status.html").read_text("utf-8"))

    async def status(self, request: web.Request) -> web.Response:
        return json_response(self.status_document())

    async def session_history(self, request: web.Request) -> web.Response:
        return json_response(self.history.document())

    async def frames(self, request: web.Request) -> web.Response:
        since = _integer(request.query.get("since", "0"), "since")
        last, frames = self.trace.since(since)
        return json_response({"next": last, "frames": frames})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events (HTML Living Standard §9.2): the page's only feed."""
        since = _integer(request.query.get("since", "0"), "since")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        stopping = server_stopping(request)
        try:
            await response.write(b"retry: 2000\n\n" + _event("history", self.history.document()))
            while not stopping.is_set():
                changed = self.changes.next
                chunks = []
                if self._controller is not None:
                    chunks.append(_event("status", self.status_document()))
                last, frames = self.trace.since(since)
                if last < since:  # the trace began again (the charger restarted its controller)
                    last, frames = self.trace.since(0)
                if frames:
                    chunks.append(_event("trace", {"next": last, "frames": frames}))
                since = last
                if chunks:
                    await response.write(b"".join(chunks))
                if not await wait_any([changed, stopping], KEEPALIVE_S):
                    await response.write(b": keepalive\n\n")
                await asyncio.sleep(PUSH_MIN_INTERVAL_S)
        except (ConnectionError, RuntimeError):  # the page went away (RuntimeError: transport closed)
            pass
        return response

    def _bench_connector(self, body: dict) -> int:
        connector = body.get("connector", 1)
        if not isinstance(connector, int) or isinstance(connector, bool) or not 1 <= connector <= self.bench.connectors:
            raise HttpError(400, f"connector must be an integer 1..{self.bench.connectors} (got {_short(connector)})")
        return connector

    async def bench_cable(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        connector = self._bench_connector(body)
        rating = body.get("rating_a", "missing")
        if rating is not None and (isinstance(rating, bool) or rating not in CABLE_RATINGS):
            raise HttpError(400, f"rating_a must be one of {', '.join(map(str, CABLE_RATINGS))} or null "
                                 f"(got {_short(rating)})")
        self.bench.set_cable(connector, rating)
        return json_response({"connector": connector, "rating_a": rating})

    async def bench_pilot(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        connector = self._bench_connector(body)
        state = body.get("state")
        if state not in PILOT_STATES:
            raise HttpError(400, f"state must be one of {', '.join(PILOT_STATES)} (got {_short(state)})")
        try:
            self.bench.set_pilot(connector, state)
        except ValueError as error:
            raise HttpError(400, str(error)) from None
        return json_response({"connector": connector, "state": state})

    async def bench_tag(self, request: web.Request) -> web.Response:
        id_tag = (await read_json_object(request)).get("id_tag")
        if not isinstance(id_tag, str) or not 1 <= len(id_tag) <= 20:
            raise HttpError(400, f"id_tag must be a string of 1..20 characters (got {_short(id_tag)})")
        logger.info("bench: card %s presented at the reader", id_tag)
        self.bench.present_tag(id_tag)
        return json_response({"id_tag": id_tag})

    async def bench_fault(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        device, active = body.get("device"), body.get("active")
        if not isinstance(device, str) or device not in BENCH_DEVICES:
            raise HttpError(400, f"device must be one of {', '.join(BENCH_DEVICES)} (got {_short(device)})")
        if not isinstance(active, bool):
            raise HttpError(400, f"active must be true or false (got {_short(active)})")
        try:
            self.bench.set_fault(device, active)
        except ValueError as error:
            raise HttpError(400, str(error)) from None
        logger.info("bench: fault %s %s", device, "on" if active else "off")
        self.bench_faults[device] = active
        self._controller_changed()
        return json_response({"device": device, "active": active})


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message never echoes a whole body."""
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------
# Prometheus text exposition format 0.0.4; names follow Prometheus' naming conventions
# (base units: seconds, joules, watts, amperes, volts; counters end in _total).


def prometheus_text(status: dict[str, Any]) -> str:
    """The status document as Prometheus metrics."""
    cp = status.get("charge_point", {})
    ocpp = status["ocpp"]
    counters = status.get("counters", {})
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, Any], Any]]) -> None:
        samples = [(labels, value) for labels, value in samples if value is not None]
        if not samples:
            return
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        for labels, value in samples:
            shown = ",".join(f'{key}="{_label_value(val)}"' for key, val in labels.items())
            lines.append(f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}")

    family("evcp_build_info", "gauge", "Always 1; the labels tell the evcp version running.",
           [({"version": cp.get("version", "unknown")}, 1)])
    family("evcp_uptime_seconds", "gauge", "Seconds since the evcp process started.", [({}, cp.get("uptime_s"))])
    family("evcp_ocpp_connected", "gauge", "1 while the websocket to the central system is up.",
           [({}, int(bool(ocpp["connected"])))])
    family("evcp_ocpp_protocol_info", "gauge",
           "Always 1; the labels tell the OCPP setting (version: 1.6, 2.0.1 or auto) and the version the "
           "connection speaks (protocol, empty while not connected).",
           [({"version": ocpp["version"], "protocol": ocpp.get("protocol") or ""}, 1)] if "version" in ocpp else [])
    family("evcp_ocpp_queued_messages", "gauge",
           "Outbox depth: transaction messages waiting for the central system.",
           [({}, ocpp.get("queued_messages", 0))])
    family("evcp_ocpp_reconnects_total", "counter",
           "Connections to the central system established after the first one.", [({}, ocpp.get("reconnects"))])
    family("evcp_ocpp_connection_failures_total", "counter",
           "Connection attempts that failed and connections that were lost.", [({}, ocpp.get("connection_failures"))])
    family("evcp_transactions_started_total", "counter", "Transactions started since the process started.",
           [({}, counters.get("transactions_started"))])
    family("evcp_transactions_stopped_total", "counter", "Transactions stopped since the process started.",
           [({}, counters.get("transactions_stopped"))])

    connectors = status["connectors"]

    def per_connector(name: str, help_text: str, value: Callable[[dict], Any], kind: str = "gauge") -> None:
        family(name, kind, help_text, [({"connector": c["id"]}, value(c)) for c in connectors])

    per_connector("evcp_connector_relay_closed", "1 while the contactor is commanded closed.",
                  lambda c: int(bool(c["relay_closed"])))
    per_connector("evcp_connector_relay_feedback_closed", "1 while the contactor's mirror contact measures closed.",
                  lambda c: None if c.get("relay_feedback_closed") is None else int(c["relay_feedback_closed"]))
    per_connector("evcp_connector_cable_rating_amperes",
                  "Rating of the cable in the socket from its proximity pilot (0 = no cable).",
                  lambda c: None if c.get("cable") in (None, "tethered") else c.get("cable_rating_a") or 0)
    per_connector("evcp_connector_locked", "1 while the socket's lock holds the plug.",
                  lambda c: None if c.get("lock") is None else int(c["lock"] == "locked"))
    per_connector("evcp_connector_power_watts", "Active power drawn through the connector.", lambda c: c["power_w"])
    per_connector("evcp_connector_energy_joules_total", "Energy meter register, counting up (1 Wh = 3600 J).",
                  lambda c: c["energy_wh"] * JOULES_PER_WH, kind="counter")
    per_connector("evcp_connector_energy_joules",
                  "Deprecated: evcp_connector_energy_joules_total as a gauge, kept for existing dashboards.",
                  lambda c: c["energy_wh"] * JOULES_PER_WH)
    per_connector("evcp_connector_session_energy_joules", "Energy of the running transaction (1 Wh = 3600 J).",
                  lambda c: c["session_energy_wh"] * JOULES_PER_WH)
    per_connector("evcp_connector_current_limit_amperes", "Current offered by the pilot PWM (0 = no PWM).",
                  lambda c: c["current_limit_a"] or 0)
    per_connector("evcp_connector_session_duration_seconds", "Seconds since the running transaction started.",
                  lambda c: c.get("session_duration_s"))
    for key, name, help_text in (("current_a", "evcp_connector_current_amperes", "Current per phase (last sample)."),
                                 ("voltage_v", "evcp_connector_voltage_volts", "Voltage per phase (last sample).")):
        family(name, "gauge", help_text, [({"connector": c["id"], "phase": f"L{n}"}, value)
                                          for c in connectors for n, value in enumerate(c.get(key) or [], 1)])
    family("evcp_connector_status", "gauge", "1 for the connector's current OCPP status.",
           [({"connector": c["id"], "status": c["status"], "error_code": c["error_code"]}, 1) for c in connectors])
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(round(value, 3))
    return str(value)


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer (got {_short(text)})") from None
