"""The charger's HTTP API: Prometheus text, Basic auth when a password is set."""

from __future__ import annotations

import asyncio
import base64
import urllib.error
import urllib.request

from evcp.api.http import HttpServer
from evcp.api.routes import Api, prometheus_text
from evcp.ocpp16.link import FrameTrace

STATUS = {
    "ocpp": {"connected": True, "queued_messages": 2},
    "connectors": [{"id": 1, "status": "Charging", "error_code": "NoError", "relay_closed": True,
                    "power_w": 7400.0, "energy_wh": 1234.5, "session_energy_wh": 100.0, "current_limit_a": 32.0,
                    "relay_feedback_closed": False, "cable_rating_a": 20.0, "lock": "locked"}],
}


class Target:
    def status(self):
        return STATUS


def test_prometheus_text_has_one_gauge_per_figure():
    text = prometheus_text(STATUS)
    assert "evcp_ocpp_connected 1\n" in text
    assert "evcp_ocpp_queued_messages 2\n" in text
    assert 'evcp_connector_relay_closed{connector="1"} 1\n' in text
    assert 'evcp_connector_relay_feedback_closed{connector="1"} 0\n' in text, "measured beside commanded"
    assert 'evcp_connector_cable_rating_amperes{connector="1"} 20.0\n' in text
    assert 'evcp_connector_locked{connector="1"} 1\n' in text
    assert 'evcp_connector_power_watts{connector="1"} 7400.0\n' in text
    assert 'evcp_connector_status{connector="1",status="Charging",error_code="NoError"} 1\n' in text
    assert all(line.startswith(("#", "evcp_")) for line in text.splitlines())


async def fetch(url: str, auth: str | None = None) -> tuple[int, bytes, dict]:
    def get():
        request = urllib.request.Request(url)
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)
    return await asyncio.to_thread(get)


async def test_a_password_guards_every_route():
    api = Api(FrameTrace(), bench=None, password="correct horse")
    api.controller = Target()
    server = HttpServer(api.routes(), "127.0.0.1", 0)
    await server.start()
    try:
        status, _, headers = await fetch(server.url + "/api/status")
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="evcp"'
        assert (await fetch(server.url + "/metrics", "evcp:wrong"))[0] == 401
        status, body, _ = await fetch(server.url + "/metrics", "evcp:correct horse")
        assert status == 200 and b"evcp_ocpp_connected 1" in body
    finally:
        await server.stop()


async def test_no_password_on_localhost_and_no_bench_routes_without_mock_hardware():
    api = Api(FrameTrace(), bench=None)
    api.controller = Target()
    server = HttpServer(api.routes(), "127.0.0.1", 0)
    await server.start()
    try:
        assert (await fetch(server.url + "/api/status"))[0] == 200
        assert (await fetch(server.url + "/api/bench/tag"))[0] == 404
    finally:
        await server.stop()
