"""The README's bench command: `evcp bench` starts its own central system and a simulated charger."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from evcp.bench import bench_config_path

pytestmark = pytest.mark.integration


def test_evcp_bench_runs_a_session_against_its_own_central_system(tmp_path, wait_until):
    from socket import socket

    ports = []
    for _ in range(2):
        with socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    text = bench_config_path().read_text()
    text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{ports[0]}"')
    text = text.replace("127.0.0.1:9000", f"127.0.0.1:{ports[1]}")
    config = tmp_path / "bench.toml"
    config.write_text(text)
    assert f"127.0.0.1:{ports[1]}" in text and f"127.0.0.1:{ports[0]}" in text
    process = subprocess.Popen([sys.executable, "-m", "evcp", "bench", "--config", str(config),
                                "--state-dir", str(tmp_path / "state")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        from urllib.request import Request, urlopen

        base = f"http://127.0.0.1:{ports[0]}"

        def status():
            return json.loads(urlopen(base + "/api/status", timeout=5).read())

        def post(path, body):
            urlopen(Request(base + path, json.dumps(body).encode()), timeout=5).read()

        wait_until(lambda: status()["ocpp"]["registration"] == "Accepted", 20, "bench boot")
        assert "<title>" in urlopen(base + "/", timeout=5).read().decode()
        post("/api/bench/pilot", {"connector": 1, "state": "C"})
        post("/api/bench/tag", {"id_tag": "04A1B2C3"})
        connector = wait_until(lambda: (c := status()["connectors"][0])["status"] == "Charging" and c, 10)
        assert connector["relay_closed"] and connector["transaction_id"] is not None
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=15)[0]
    assert "status page" in output
    assert "every contactor open" in output
    # Ctrl-C stops the session as `evcp run` does on SIGTERM, and the central system hears about it
    # before the bench stops it: StopTransaction reason Reboot, then a normal websocket closure.
    assert re.search(r"contactor OPEN \(shutting down \(Reboot\)\)", output)
    assert re.search(r"stopped transaction \d+: \d+ Wh, reason Reboot", output)
    assert "received 1001 (going away)" in output and "1011" not in output
    assert output.index("reason Reboot") < output.index("every contactor open")


def test_evcp_bench_ports_from_the_command_line(tmp_path, wait_until):
    """--listen, --csms-listen and --control choose the three ports; the charger connects to the
    built-in central system wherever it listens."""
    from socket import socket
    from urllib.request import urlopen

    ports = []
    for _ in range(3):
        with socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    api, csms, control = ports
    process = subprocess.Popen([sys.executable, "-m", "evcp", "bench", "--state-dir", str(tmp_path / "state"),
                                "--listen", f"127.0.0.1:{api}", "--csms-listen", f"127.0.0.1:{csms}",
                                "--control", f"127.0.0.1:{control}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        status = wait_until(lambda: (s := json.loads(urlopen(f"http://127.0.0.1:{api}/api/status", timeout=5).read()))
                            ["ocpp"]["registration"] == "Accepted" and s, 20, "bench boot")
        assert status["ocpp"]["csms_url"] == f"ws://127.0.0.1:{csms}/ocpp/CP-BENCH-01"
        chargers = json.loads(urlopen(f"http://127.0.0.1:{control}/chargers", timeout=5).read())["chargers"]
        assert [c["id"] for c in chargers] == ["CP-BENCH-01"] and chargers[0]["connected"]
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    assert process.returncode == 0, output
    assert "DEBUG" not in output
