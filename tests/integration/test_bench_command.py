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
from tests.ports import free_port

pytestmark = pytest.mark.integration

FRAME = re.compile(r'\[[234],\s*"([^"]+)"')
FRAME_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO evcp\.bench\.csms\.frames: (\S+) (<-|->) '
                        r'\[([234]),"([^"]+)"')


def assert_one_console_line_per_frame(output: str) -> None:
    """The bench's console shows each OCPP-J frame once, from the central system's frame logger
    at INFO (``<-`` from the charger, ``->`` to it): not again from the ocpp library or the
    charger's own trace."""
    seen: dict[tuple[str, str, str], int] = {}
    for line in output.splitlines():
        if not FRAME.search(line):
            continue
        match = FRAME_LINE.match(line)
        assert match, f"a frame on the console from another logger: {line}"
        _cp, direction, message_type, unique_id = match.groups()
        key = (direction, message_type, unique_id)
        seen[key] = seen.get(key, 0) + 1
    assert seen, "no frame on the console"
    assert {key: count for key, count in seen.items() if count != 1} == {}, "frames logged more than once"
    for direction, message_type, unique_id in seen:
        if message_type == "2":
            answer = "->" if direction == "<-" else "<-"
            assert (answer, "3", unique_id) in seen or (answer, "4", unique_id) in seen, \
                f"the answer to {direction} CALL {unique_id} is not on the console"


def assert_a_stop_asked_for_is_no_warning(output: str) -> None:
    """The charger closes the link because it was told to stop: INFO, not the WARNING of a lost link."""
    assert re.search(r"^\S+ \S+ INFO evcp\.ocpp: disconnected from central system: the charger is stopping$", output,
                     re.M), output
    assert "WARNING evcp.ocpp: disconnected" not in output


def assert_card_tap_logged(output: str, id_tag: str) -> None:
    taps = [line for line in output.splitlines() if f"card {id_tag} presented" in line]
    assert len(taps) == 1, taps
    assert re.match(r"^\S+ \S+ INFO evcp\.api: bench: card " + id_tag + " presented at the reader$", taps[0]), taps


def test_evcp_bench_runs_a_session_against_its_own_central_system(tmp_path, wait_until):
    ports = [free_port(), free_port()]
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
    assert_one_console_line_per_frame(output)
    assert re.search(r'INFO evcp\.bench\.csms\.frames: CP-BENCH-01 <- \[2,"[^"]+","StartTransaction"', output)
    assert_card_tap_logged(output, "04A1B2C3")
    assert_a_stop_asked_for_is_no_warning(output)


def test_evcp_bench_ports_from_the_command_line(tmp_path, wait_until):
    """--listen, --csms-listen and --control choose the three ports; the charger connects to the
    built-in central system wherever it listens."""
    from urllib.request import urlopen

    api, csms, control = free_port(), free_port(), free_port()
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


def test_evcp_bench_console_shows_each_ocpp_2_0_1_frame_once_and_the_card_tap(tmp_path, wait_until):
    from urllib.request import Request, urlopen

    api, csms, control = free_port(), free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "evcp", "bench", "--state-dir", str(tmp_path / "state"),
                                "--ocpp", "2.0.1", "--listen", f"127.0.0.1:{api}",
                                "--csms-listen", f"127.0.0.1:{csms}", "--control", f"127.0.0.1:{control}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{api}"

    def status():
        return json.loads(urlopen(base + "/api/status", timeout=5).read())

    def post(path, body):
        urlopen(Request(base + path, json.dumps(body).encode()), timeout=5).read()

    try:
        wait_until(lambda: status()["ocpp"]["registration"] == "Accepted", 20, "bench boot")
        assert status()["ocpp"]["version"] == "2.0.1"
        post("/api/bench/pilot", {"connector": 1, "state": "C"})
        post("/api/bench/tag", {"id_tag": "DEADBEEF"})
        wait_until(lambda: status()["connectors"][0]["status"] == "Charging", 10, "charging")
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0]
    assert process.returncode == 0, output
    assert output.index("SIGTERM: every contactor OPEN") < output.index("stopped; every contactor open")
    assert re.search(r"contactor OPEN \(shutting down \(Reboot\)\)", output)
    assert_one_console_line_per_frame(output)
    assert re.search(r'INFO evcp\.bench\.csms\.frames: CP-BENCH-01 <- \[2,"[^"]+","TransactionEvent"', output)
    assert_card_tap_logged(output, "DEADBEEF")
    assert_a_stop_asked_for_is_no_warning(output)
