"""The charger's HTTP API (a stable contract; see the README).

GET  /                  the status page
GET  /api/status        connectors, contactors, pilot, energy, OCPP link
GET  /api/trace?since=N the OCPP frames seen since sequence N (secrets redacted)
POST /api/bench/pilot   {"connector": 1, "state": "A".."F"}          simulated hardware only
POST /api/bench/tag     {"id_tag": "..."}                             simulated hardware only
POST /api/bench/fault   {"device": "meter"|"relay"|"reader"|"power", "active": bool}  simulated hardware only

The bench routes do not exist (404) unless the hardware backend is "mock".
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Protocol

from evcp.api.http import HttpError, Request, Response, Routes, html_response, json_response
from evcp.hal import PILOT_STATES

BENCH_DEVICES = ("meter", "relay", "reader", "power")


class BenchControls(Protocol):
    """What simulated hardware lets a person do to it."""

    connectors: int

    def set_pilot(self, connector: int, state: str) -> None: ...

    def present_tag(self, id_tag: str) -> None: ...

    def set_fault(self, device: str, active: bool) -> None: ...


class ApiTarget(Protocol):
    """The running controller, as the API sees it (it changes on a reset)."""

    def status(self) -> dict[str, Any]: ...


class Api:
    def __init__(self, trace, bench: BenchControls | None):
        self.controller: ApiTarget | None = None
        self.trace = trace
        self.bench = bench

    def routes(self) -> Routes:
        routes: dict[tuple[str, str], Any] = {
            ("GET", "/"): self.page,
            ("GET", "/api/status"): self.status,
            ("GET", "/api/trace"): self.frames,
        }
        if self.bench is not None:
            routes[("POST", "/api/bench/pilot")] = self.bench_pilot
            routes[("POST", "/api/bench/tag")] = self.bench_tag
            routes[("POST", "/api/bench/fault")] = self.bench_fault
        return routes

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

    async def bench_pilot(self, request: Request) -> Response:
        body = request.json_object()
        connector = body.get("connector", 1)
        state = body.get("state")
        if not isinstance(connector, int) or isinstance(connector, bool) or not 1 <= connector <= self.bench.connectors:
            raise HttpError(400, f"connector must be an integer 1..{self.bench.connectors} (got {connector!r})")
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


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer (got {text!r})") from None
