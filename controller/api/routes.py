"""The charger's HTTP API (a stable contract; see the README).

GET  /                  the status page
GET  /api/status        connectors, contactors, pilot, energy, OCPP link
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

import base64
import hmac
from importlib import resources
from typing import Any, Protocol

from evcp.api.http import HttpError, Request, Response, Routes, html_response, json_response
from evcp.hal import PILOT_STATES

BENCH_DEVICES = ("meter", "relay", "reader", "power", "lock", "pp")
CABLE_RATINGS = (13, 20, 32, 63)
API_USER = "evcp"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class BenchControls(Protocol):
    """What simulated hardware lets a person do to it."""

    connectors: int

    def set_pilot(self, connector: int, state: str) -> None: ...

    def present_tag(self, id_tag: str) -> None: ...

    def set_fault(self, device: str, active: bool) -> None: ...

    def set_cable(self, connector: int, rating_a: float | None) -> None: ...


class ApiTarget(Protocol):
    """The running controller, as the API sees it (it changes on a reset)."""

    def status(self) -> dict[str, Any]: ...


class Api:
    def __init__(self, trace, bench: BenchControls | None, password: str | None = None):
        self.controller: ApiTarget | None = None
        self.trace = trace
        self.bench = bench
        self._credentials = (base64.b64encode(f"{API_USER}:{password}".encode()).decode()
                             if password else None)

    def routes(self) -> Routes:
        routes: dict[tuple[str, str], Any] = {
            ("GET", "/"): self.page,
            ("GET", "/api/status"): self.status,
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
        async def checked(request: Request) -> Response:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "basic" or not hmac.compare_digest(given.strip(), self._credentials):
                raise HttpError(401, "credentials required", {"WWW-Authenticate": 'Basic realm="evcp"'})
            return await handler(request)
        return checked

    async def metrics(self, request: Request) -> Response:
        if self.controller is None:
            raise HttpError(503, "controller starting")
        return Response(200, prometheus_text(self.controller.status()).encode(), PROMETHEUS_TYPE)

    async def page(self, request: Request) -> Response:
        return html_response(resources.files("evcp.api").joinpath("status.html").read_text("utf-8"))

    async def status(self, request: Request) -> Response:
        if self.controller is None:
            raise HttpError(503, "controller starting")
        return json_response(self.controller.status())

    async def frames(self, request: Request) -> Response:
        since = _integer(request.query.get("since", "0"), "since")
        last, frames = self.trace.since(since)
        return json_response({"next": last, "frames": frames})

    def _bench_connector(self, body: dict) -> int:
        connector = body.get("connector", 1)
        if not isinstance(connector, int) or isinstance(connector, bool) or not 1 <= connector <= self.bench.connectors:
            raise HttpError(400, f"connector must be an integer 1..{self.bench.connectors} (got {connector!r})")
        return connector

    async def bench_cable(self, request: Request) -> Response:
        body = request.json_object()
        connector = self._bench_connector(body)
        rating = body.get("rating_a", "missing")
        if rating is not None and (isinstance(rating, bool) or rating not in CABLE_RATINGS):
            raise HttpError(400, f"rating_a must be one of {', '.join(map(str, CABLE_RATINGS))} or null "
                                 f"(got {rating!r})")
        self.bench.set_cable(connector, rating)
        return json_response({"connector": connector, "rating_a": rating})

    async def bench_pilot(self, request: Request) -> Response:
        body = request.json_object()
        connector = self._bench_connector(body)
        state = body.get("state")
        if state not in PILOT_STATES:
            raise HttpError(400, f"state must be one of {', '.join(PILOT_STATES)} (got {state!r})")
        try:
            self.bench.set_pilot(connector, state)
        except ValueError as error:
            raise HttpError(400, str(error)) from None
        return json_response({"connector": connector, "state": state})

    async def bench_tag(self, request: Request) -> Response:
        id_tag = request.json_object().get("id_tag")
        if not isinstance(id_tag, str) or not 1 <= len(id_tag) <= 20:
            raise HttpError(400, f"id_tag must be a string of 1..20 characters (got {id_tag!r})")
        self.bench.present_tag(id_tag)
        return json_response({"id_tag": id_tag})

    async def bench_fault(self, request: Request) -> Response:
        body = request.json_object()
        device, active = body.get("device"), body.get("active")
        if device not in BENCH_DEVICES:
            raise HttpError(400, f"device must be one of {', '.join(BENCH_DEVICES)} (got {device!r})")
        if not isinstance(active, bool):
            raise HttpError(400, f"active must be true or false (got {active!r})")
        self.bench.set_fault(device, active)
        return json_response({"device": device, "active": active})


def prometheus_text(status: dict[str, Any]) -> str:
    """The status document as Prometheus gauges (text exposition format 0.0.4)."""
    ocpp = status["ocpp"]
    lines = [
        "# HELP evcp_ocpp_connected 1 while the websocket to the central system is up.",
        "# TYPE evcp_ocpp_connected gauge",
        f"evcp_ocpp_connected {int(bool(ocpp['connected']))}",
        "# HELP evcp_ocpp_queued_messages Transaction messages waiting for the central system.",
        "# TYPE evcp_ocpp_queued_messages gauge",
        f"evcp_ocpp_queued_messages {ocpp.get('queued_messages', 0)}",
    ]
    gauges = [
        ("evcp_connector_relay_closed", "1 while the contactor is commanded closed.", lambda c: int(c["relay_closed"])),
        ("evcp_connector_relay_feedback_closed", "1 while the contactor's mirror contact measures it closed "
         "(-1 without a feedback input).", lambda c: -1 if c["relay_feedback_closed"] is None
         else int(c["relay_feedback_closed"])),
        ("evcp_connector_cable_rating_amperes", "Rating of the cable in the socket from its proximity pilot "
         "(0 = none or tethered).", lambda c: c["cable_rating_a"] or 0),
        ("evcp_connector_locked", "1 while the socket's lock holds the plug (-1 without a lock).",
         lambda c: -1 if c["lock"] is None else int(c["lock"] == "locked")),
        ("evcp_connector_power_watts", "Active power drawn through the connector.", lambda c: c["power_w"]),
        ("evcp_connector_energy_watt_hours", "Energy meter register.", lambda c: c["energy_wh"]),
        ("evcp_connector_session_energy_watt_hours", "Energy of the running transaction.",
         lambda c: c["session_energy_wh"]),
        ("evcp_connector_current_limit_amperes", "Current offered by the pilot PWM (0 = no PWM).",
         lambda c: c["current_limit_a"] or 0),
    ]
    for name, help_text, value in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{connector="{c["id"]}"}} {value(c)}' for c in status["connectors"]]
    lines += ["# HELP evcp_connector_status 1 for the connector's current OCPP status.",
              "# TYPE evcp_connector_status gauge"]
    lines += [f'evcp_connector_status{{connector="{c["id"]}",status="{c["status"]}",'
              f'error_code="{c["error_code"]}"}} 1' for c in status["connectors"]]
    return "\n".join(lines) + "\n"


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer (got {text!r})") from None
