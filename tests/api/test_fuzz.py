"""Hostile HTTP against the charger's API and the bench central system's control API.

Whatever the method, path, query and body (random bytes, any JSON, 5,000-deep nesting, bodies
over the limit), the answer is never a 5xx, every error is JSON ``{"error": ...}``, and a body
over the limit is refused with 413 rather than read.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evcp.api.http import DEFAULT_MAX_BODY_BYTES, HttpServer
from evcp.api.routes import Api
from evcp.bench.csms import CentralSystem, control_routes
from evcp.ocpp.trace import FrameTrace

CHARGER_PATHS = ["/", "/api/status", "/api/history", "/api/trace", "/metrics", "/api/bench/pilot",
                 "/api/bench/tag", "/api/bench/fault", "/api/bench/cable", "/api/events"]
CONTROL_PATHS = ["/chargers", "/transactions", "/anomalies", "/messages", "/policy", "/call", "/disconnect", "/raw"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"]
FIELDS = ["connector", "state", "id_tag", "device", "active", "rating_a", "cp", "action", "payload", "timeout",
          "accept_all", "tags", "authorize_overrides", "boot_responses", "heartbeat_interval", "call_errors",
          "handshake_status", "clock_offset_s", "passwords", "parent_id_tags", "accept_connections",
          "frames"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["A", "B", "C", "D", "E", "F", "meter", "relay", "reader", "power", "lock", "pp", "CP-1", "Reset",
                       "Accepted", "Blocked", "²", "-1", "1e999"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                                                                       children, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)
bodies = st.one_of(
    st.none(),
    objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 6000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 6000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.just(b"9" * 5000),
    st.just(b'{"connector": NaN, "state": Infinity}'),
    st.just(b"x" * (DEFAULT_MAX_BODY_BYTES + 1)),
)
queries = st.one_of(st.just(""), st.builds(lambda k, v: f"?{k}={v}", st.sampled_from(["since", "cp", "x"]),
                                           st.sampled_from(["0", "-1", "abc", "%C2%B2", "99999999999999999999", "", "%00", "%FF"])))


class Bench:
    """The verbs of the simulated hardware, answering as the real BenchHardware does."""

    connectors = 2

    def set_pilot(self, connector, state):
        if state == "D":
            raise ValueError("the simulated pilot board has no D output")

    def present_tag(self, id_tag):
        pass

    def set_fault(self, device, active):
        pass

    def set_cable(self, connector, rating_a):
        pass


class Controller:
    on_change = None

    def status(self):
        return {"charge_point": {"id": "CP-1", "version": "0.1.0", "time": 1.0},
                "ocpp": {"connected": False, "queued_messages": 0},
                "connectors": [{"id": 1, "status": "Available", "error_code": "NoError", "relay_closed": False,
                                "power_w": 0.0, "energy_wh": 0.0, "session_energy_wh": 0.0, "current_limit_a": None,
                                "session_started_at": None}]}


@pytest.fixture(scope="module")
def servers():
    """The charger API (with bench routes) and a real central system's control API, served from
    a thread of their own so hypothesis can drive them with plain blocking requests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        api = Api(FrameTrace(), bench=Bench())
        api.controller = Controller()
        charger = HttpServer(api.routes(), "127.0.0.1", 0)
        await charger.start()
        system = CentralSystem(port=0, control_port=0)
        await system.start()
        return charger, system

    charger, system = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield {"charger": charger.port, "control": system.control_port}

    async def stop():
        await charger.stop()
        await system.stop()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def exchange(port: int, method: str, path: str, body: bytes | None) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        if path.startswith("/api/events") and response.status == 200:
            return response.status, b"", response.getheader("Content-Type", "")
        return response.status, response.read(), response.getheader("Content-Type", "")
    finally:
        connection.close()


def check(status: int, body: bytes, content_type: str, method: str, sent: bytes | None) -> None:
    assert status < 500, body[:300]
    if sent is not None and len(sent) > DEFAULT_MAX_BODY_BYTES and method == "POST" and status == 200:
        raise AssertionError("a body over the limit was read")  # GET routes never read a body
    # A request line aiohttp's parser refuses (method FOO) gets its plain-text 400; everything
    # that reaches the routes is answered in JSON.
    if status >= 400 and method not in ("HEAD", "FOO"):
        assert content_type.startswith("application/json"), (status, content_type, body[:200])
        assert isinstance(json.loads(body)["error"], str)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(method=st.sampled_from(METHODS), path=st.sampled_from(CHARGER_PATHS) | st.text(min_size=1, max_size=20)
       .map(lambda t: "/" + "".join(c for c in t if c.isascii() and c.isprintable() and c not in " ?#%")),
       query=queries, body=bodies)
def test_the_charger_api_never_answers_5xx(servers, method, path, query, body):
    status, answer, content_type = exchange(servers["charger"], method, path + query, body)
    check(status, answer, content_type, method, body)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(method=st.sampled_from(METHODS), path=st.sampled_from(CONTROL_PATHS), query=queries, body=bodies)
def test_the_central_system_control_api_never_answers_5xx(servers, method, path, query, body):
    status, answer, content_type = exchange(servers["control"], method, path + query, body)
    check(status, answer, content_type, method, body)


def test_the_routes_fuzzed_are_the_routes_served():
    api = Api(FrameTrace(), bench=Bench())
    assert {path for _, path in api.routes()} == set(CHARGER_PATHS)
    assert {path for _, path in control_routes(CentralSystem())} == set(CONTROL_PATHS)
