"""The charger's HTTP API: Prometheus text, Basic auth, event stream, session chart, bench faults."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from evcp.api.http import HttpServer
from evcp.api.routes import Api, SessionHistory, prometheus_text
from evcp.ocpp.trace import FrameTrace


def status_document(**connector):
    return {
        "charge_point": {"id": "CP-1", "backend": "mock", "version": "0.1.0", "uptime_s": 12.5, "time": 1000.0},
        "ocpp": {"connected": True, "version": "auto", "protocol": "2.0.1", "queued_messages": 2, "reconnects": 3,
                 "connection_failures": 4},
        "counters": {"transactions_started": 5, "transactions_stopped": 4},
        "connectors": [{"id": 1, "status": "Charging", "error_code": "NoError", "relay_closed": True,
                        "power_w": 7400.0, "energy_wh": 1234.5, "session_energy_wh": 100.0, "current_limit_a": 32.0,
                        "session_started_at": 900.0, "session_duration_s": 100.0, **connector}],
    }


STATUS = status_document(relay_feedback_closed=False, cable="20A", cable_rating_a=20.0, lock="locked")


class Target:
    on_change = None

    def __init__(self, document=None):
        self.document = document or STATUS

    def status(self):
        return json.loads(json.dumps(self.document))


class Bench:
    connectors = 1

    def __init__(self):
        self.faults = []

    def set_pilot(self, connector, state):
        if state == "D":
            raise ValueError("the simulated pilot board has no D output")

    def present_tag(self, id_tag):
        pass

    def set_fault(self, device, active):
        self.faults.append((device, active))


def test_prometheus_text_uses_base_units_and_names_counters_total():
    text = prometheus_text(STATUS)
    assert "evcp_ocpp_connected 1\n" in text
    assert "evcp_ocpp_queued_messages 2\n" in text
    assert 'evcp_build_info{version="0.1.0"} 1\n' in text
    assert "evcp_ocpp_reconnects_total 3\n" in text and "evcp_ocpp_connection_failures_total 4\n" in text
    assert "evcp_transactions_started_total 5\n" in text and "evcp_transactions_stopped_total 4\n" in text
    assert 'evcp_connector_relay_closed{connector="1"} 1\n' in text
    assert 'evcp_connector_relay_feedback_closed{connector="1"} 0\n' in text, "measured beside commanded"
    assert 'evcp_connector_cable_rating_amperes{connector="1"} 20.0\n' in text
    assert 'evcp_connector_locked{connector="1"} 1\n' in text
    assert 'evcp_connector_power_watts{connector="1"} 7400.0\n' in text
    assert 'evcp_connector_energy_joules_total{connector="1"} 4444200.0\n' in text  # 1234.5 Wh
    assert "# TYPE evcp_connector_energy_joules_total counter\n" in text, "a register counting up is a counter"
    assert 'evcp_connector_energy_joules{connector="1"} 4444200.0\n' in text, "the gauge of earlier versions stays"
    assert "# HELP evcp_connector_energy_joules Deprecated: " in text
    assert 'evcp_connector_session_energy_joules{connector="1"} 360000.0\n' in text
    assert 'evcp_connector_status{connector="1",status="Charging",error_code="NoError"} 1\n' in text
    assert "hours" not in text
    families = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    for name, kind in families:
        assert name.endswith("_total") == (kind == "counter"), name
        assert f"# HELP {name} " in text
    assert len({name for name, _ in families}) == len(families)


def test_prometheus_text_tells_the_ocpp_setting_and_the_protocol_the_connection_speaks():
    assert 'evcp_ocpp_protocol_info{version="auto",protocol="2.0.1"} 1\n' in prometheus_text(STATUS)
    offline = json.loads(json.dumps(STATUS))
    offline["ocpp"].update(connected=False, protocol=None)
    text = prometheus_text(offline)
    assert 'evcp_ocpp_protocol_info{version="auto",protocol=""} 1\n' in text, "no protocol while not connected"
    assert "# TYPE evcp_ocpp_protocol_info gauge\n" in text


def test_prometheus_text_shows_per_phase_values_and_feedback_when_the_status_has_them():
    text = prometheus_text(status_document(current_a=[10.0, 11.0, 12.0], voltage_v=[230.0, 231.0, 229.5],
                                           relay_feedback_closed=False))
    assert 'evcp_connector_current_amperes{connector="1",phase="L2"} 11.0\n' in text
    assert 'evcp_connector_voltage_volts{connector="1",phase="L3"} 229.5\n' in text
    assert 'evcp_connector_relay_feedback_closed{connector="1"} 0\n' in text
    assert "evcp_connector_current_amperes" not in prometheus_text(STATUS)


def promtool() -> str | None:
    """promtool on PATH, or where ./dev.sh test puts it: beside the virtual environment's Python."""
    beside_venv = Path(sys.prefix) / "promtool" / "promtool"
    return shutil.which("promtool") or (str(beside_venv) if os.access(beside_venv, os.X_OK) else None)


def test_promtool_accepts_the_metrics():
    promtool_path = promtool()
    if promtool_path is None:
        pytest.skip("promtool is not installed: Debian package prometheus, or ./dev.sh test as root, which puts "
                    f"it in {Path(sys.prefix) / 'promtool'}")
    online = status_document(current_a=[10.0], voltage_v=[230.0], relay_feedback_closed=True)
    offline = json.loads(json.dumps(online))
    offline["ocpp"].update(connected=False, protocol=None)
    for document in (online, offline):
        result = subprocess.run([promtool_path, "check", "metrics"], input=prometheus_text(document),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
            result.stdout + result.stderr


def test_session_history_keeps_a_whole_long_session_in_bounded_memory():
    history = SessionHistory()
    for second in range(10 * SessionHistory.MAX_POINTS):
        document = status_document(power_w=float(second), session_started_at=0.0)
        document["charge_point"]["time"] = float(second)
        history.record(document)
    points = history.document()["connectors"]["1"]["points"]
    assert SessionHistory.MAX_POINTS / 2 <= len(points) <= SessionHistory.MAX_POINTS
    assert points[0][0] == 0.0 and points[-1][0] >= 10 * SessionHistory.MAX_POINTS - 16
    gaps = {round(b[0] - a[0]) for a, b in zip(points, points[1:])}
    assert len(gaps) == 1  # evenly spaced: the interval doubled as the session grew
    document = status_document(session_started_at=5000.0)
    history.record(document)
    assert len(history.document()["connectors"]["1"]["points"]) == 1  # a new session starts a new chart


async def fetch(url: str, auth: str | None = None, body: bytes | None = None) -> tuple[int, bytes, dict]:
    def get():
        request = urllib.request.Request(url, data=body)
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)
    return await asyncio.to_thread(get)


@pytest.fixture
async def serve():
    servers = []

    async def start(api: Api) -> HttpServer:
        server = HttpServer(api.routes(), "127.0.0.1", 0)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def test_a_password_guards_every_route(serve):
    api = Api(FrameTrace(), bench=None, password="correct horse")
    api.controller = Target()
    server = await serve(api)
    status, _, headers = await fetch(server.url + "/api/status")
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="evcp"'
    assert (await fetch(server.url + "/metrics", "evcp:wrong"))[0] == 401
    assert (await fetch(server.url + "/api/events", "evcp:wrong"))[0] == 401
    status, body, headers = await fetch(server.url + "/metrics", "evcp:correct horse")
    assert status == 200 and b"evcp_ocpp_connected 1" in body
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_no_password_on_localhost_and_no_bench_routes_without_mock_hardware(serve):
    api = Api(FrameTrace(), bench=None)
    api.controller = Target()
    server = await serve(api)
    assert (await fetch(server.url + "/api/status"))[0] == 200
    for route in ("pilot", "tag", "fault"):
        status, body, _ = await fetch(server.url + f"/api/bench/{route}", body=b"{}")
        assert status == 404 and "error" in json.loads(body)
    assert "bench" not in json.loads((await fetch(server.url + "/api/status"))[1])


async def test_503_until_the_controller_runs(serve):
    server = await serve(Api(FrameTrace(), bench=None))
    status, body, _ = await fetch(server.url + "/api/status")
    assert status == 503 and json.loads(body) == {"error": "controller starting"}


async def test_bench_faults_set_through_the_api_are_in_the_status(serve):
    bench = Bench()
    api = Api(FrameTrace(), bench=bench)
    api.controller = Target()
    server = await serve(api)
    status, body, _ = await fetch(server.url + "/api/bench/fault", body=b'{"device": "relay", "active": true}')
    assert status == 200 and bench.faults == [("relay", True)]
    document = json.loads((await fetch(server.url + "/api/status"))[1])
    assert document["bench"]["faults"] == {"meter": False, "relay": True, "reader": False, "power": False,
                                         "lock": False, "pp": False}
    for bad in (b'{"device": "toaster", "active": true}', b'{"device": "meter", "active": 1}',
                b'{"device": ["meter"], "active": true}', b'[' * 5000 + b']' * 5000):
        status, body, _ = await fetch(server.url + "/api/bench/fault", body=bad)
        assert status == 400 and json.loads(body)["error"]
    status, body, _ = await fetch(server.url + "/api/bench/pilot", body=b'{"connector": 1, "state": "D"}')
    assert status == 400 and "no D output" in json.loads(body)["error"]


async def test_a_status_document_with_bench_is_shown_as_it_is(serve):
    document = {**STATUS, "bench": {"faults": {"meter": True, "relay": False, "reader": False, "power": False,
                                               "lock": True, "pp": False}, "ev": {}}}
    api = Api(FrameTrace(), bench=Bench())
    api.controller = Target(document)
    server = await serve(api)
    assert json.loads((await fetch(server.url + "/api/status"))[1])["bench"] == document["bench"]


async def read_events(reader, count: int) -> list[tuple[str, object]]:
    events = []
    while len(events) < count:
        block = (await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)).decode()
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if not line.startswith(":")
                      and ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_the_event_stream_pushes_the_status_on_every_change_and_new_frames(serve):
    trace = FrameTrace()
    trace.record("out", '[2,"1","Heartbeat",{}]')
    api = Api(trace, bench=None)
    target = Target()
    api.controller = target
    server = await serve(api)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b" 200 " in head.split(b"\r\n")[0] and b"text/event-stream" in head
    (kind, history), (kind2, status), (kind3, frames) = await read_events(reader, 3)
    assert (kind, kind2, kind3) == ("history", "status", "trace")
    assert status["connectors"][0]["power_w"] == 7400.0
    assert [f["frame"] for f in frames["frames"]] == ['[2,"1","Heartbeat",{}]']
    target.document = status_document(power_w=3700.0)
    trace.record("in", '[3,"1",{"currentTime":"2026-01-01T00:00:00Z"}]')
    target.on_change()  # what Controller.dispatch calls
    pushed = await read_events(reader, 2)
    assert ("status", 3700.0) in [(k, d["connectors"][0]["power_w"]) for k, d in pushed if k == "status"]
    assert any(k == "trace" and d["frames"][0]["direction"] == "in" for k, d in pushed)
    writer.close()


async def test_session_history_route_records_what_the_controller_reports(serve):
    api = Api(FrameTrace(), bench=None)
    api.controller = Target()
    server = await serve(api)
    await asyncio.sleep(0.05)  # the recording is scheduled, never done inside the controller's dispatch
    document = json.loads((await fetch(server.url + "/api/history"))[1])
    assert document["connectors"]["1"]["points"] == [[1000.0, 7400.0, 32.0]]
