"""The README's bench command: `evcp bench` starts its own central system and a simulated charger."""

from __future__ import annotations

import json
import os
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
