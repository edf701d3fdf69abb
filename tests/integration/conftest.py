"""Real processes on loopback: the bench central system and the charger (`evcp run`, mock hardware)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.ports import free_port

LISTENING = re.compile(r"csms listening on (wss?://\S+) control (http://\S+)")



@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, urllib.error.URLError, KeyError, IndexError) as error:
            last_error = error
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" ({last_error})" if last_error else ""))


class Http:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(self.base + path, json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return {"http_status": error.code, **json.loads(error.read() or b"{}")}


class CentralSystemProcess(Http):
    def __init__(self, process: subprocess.Popen, url: str, control: str):
        super().__init__(control)
        self.process, self.url = process, url

    def call(self, action: str, payload: dict, cp: str = "CP-IT-01", timeout: float = 10) -> dict:
        return self.post("/call", {"cp": cp, "action": action, "payload": payload, "timeout": timeout})

    def transactions(self) -> list[dict]:
        return self.get("/transactions")["transactions"]

    def messages(self, since: int = 0) -> list[dict]:
        return self.get(f"/messages?since={since}")["messages"]

    def sent_by_charger(self, action: str) -> list[dict]:
        """Payloads of the CALLs the charger sent with this action, oldest first."""
        return [m["payload"] for m in self.messages()
                if m["direction"] == "received" and m["message_type"] == "CALL" and m["action"] == action]


def _start(cmd: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.stdout.read() if process.stdout else ""


def launch_csms(*options: str, listen: str = "127.0.0.1:0") -> CentralSystemProcess:
    """The bench central system as a process, with extra command line ``options`` (TLS, auth)."""
    process = _start([sys.executable, "-m", "evcp.bench.csms", "--listen", listen, "--control", "127.0.0.1:0",
                      *options])
    deadline = time.monotonic() + 15
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = LISTENING.search(line)
        if match:
            break
    else:
        _stop(process)
        raise AssertionError(f"central system did not start: {line!r}")
    return CentralSystemProcess(process, match.group(1), match.group(2))


@pytest.fixture
def csms():
    system = launch_csms()
    yield system
    _stop(system.process)


@pytest.fixture
def start_csms():
    """Start more central systems, e.g. ``start_csms("--tls-cert", cert, "--tls-key", key)``;
    each is stopped at the end of the test (``stop_csms`` stops one earlier)."""
    started: list[CentralSystemProcess] = []

    def start(*options: str, listen: str = "127.0.0.1:0") -> CentralSystemProcess:
        system = launch_csms(*options, listen=listen)
        started.append(system)
        return system

    yield start
    for system in started:
        _stop(system.process)


def stop_csms(system: CentralSystemProcess) -> str:
    """Stop a central system now; returns what it printed."""
    return _stop(system.process)


class ChargerProcess(Http):
    def __init__(self, process: subprocess.Popen, base: str, config_path: Path, log_path: Path):
        super().__init__(base)
        self.process, self.config_path, self.log_path = process, config_path, log_path

    def status(self) -> dict:
        return self.get("/api/status")

    def connector(self, cid: int = 1) -> dict:
        return self.status()["connectors"][cid - 1]

    def pilot(self, state: str, connector: int = 1) -> dict:
        return self.post("/api/bench/pilot", {"connector": connector, "state": state})

    def tap(self, id_tag: str) -> dict:
        return self.post("/api/bench/tag", {"id_tag": id_tag})

    def tap_taken_in(self, id_tag: str) -> dict:
        """Tap a card and wait until the charger has read it (its status names the card): what the
        core decides about a tap it decides at once, so a check that nothing happened is then due."""
        self.tap(id_tag)
        return wait_until(lambda: (a := self.status()["authorization"]) and a["id_tag"] == id_tag and a, 10,
                          f"the charger reads {id_tag}")

    def fault(self, device: str, active: bool) -> dict:
        return self.post("/api/bench/fault", {"device": device, "active": active})

    def start_charging(self, id_tag: str, connector: int = 1) -> dict:
        """EV requests charge, the card is tapped: the reusable state "Charging" of the OCTT."""
        self.pilot("C", connector)
        self.tap(id_tag)
        return self.wait_status("Charging", connector)

    def wait_status(self, status: str, connector: int = 1, timeout: float = 10.0) -> dict:
        return wait_until(lambda: (c := self.connector(connector))["status"] == status and c,
                          timeout, f"connector {connector} {status}")


@pytest.fixture
def start_charger(tmp_path, csms):
    started: list[ChargerProcess] = []

    def start(keys: dict[str, Any] | None = None, connectors: int = 1, extra: str = "",
              wait_online: bool = True, charge_point: str = "", ocpp: str = "",
              csms_url: str | None = None) -> ChargerProcess:
        """``csms_url``: another central system than the ``csms`` fixture's (without the id)."""
        port = free_port()
        config = tmp_path / "evcp.toml"
        key_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in (keys or {}).items())
        config.write_text(f"""
[charge_point]
id = "CP-IT-01"
connectors = {connectors}
{charge_point}

[ocpp]
csms_url = "{csms_url or csms.url + '/ocpp'}"
reconnect_min_s = 0.2
reconnect_max_s = 1.0
call_timeout_s = 5
{ocpp}

[ocpp.keys]
{key_lines}

[hardware]
backend = "mock"

[api]
listen = "127.0.0.1:{port}"

[storage]
state_dir = "{tmp_path / 'state'}"
{extra}
""")
        log_path = tmp_path / "charger.log"
        process = subprocess.Popen([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                                   stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        charger = ChargerProcess(process, f"http://127.0.0.1:{port}", config, log_path)
        started.append(charger)
        def api_up():
            if process.poll() is not None:
                raise AssertionError(f"the charger exited with status {process.returncode}:\n"
                                     + log_path.read_text()[-2000:])
            return charger.status()

        wait_until(api_up, 15, "charger API")
        if wait_online:
            wait_until(lambda: charger.status()["ocpp"]["registration"] == "Accepted", 15, "BootNotification accepted")
        return charger

    yield start
    for charger in started:
        if charger.process.poll() is None:
            charger.process.send_signal(signal.SIGTERM)
            try:
                charger.process.wait(10)
            except subprocess.TimeoutExpired:
                charger.process.kill()


@pytest.fixture
def file_server(tmp_path):
    """The bench file server (HTTP and FTP) over ``tmp_path / "files"``, run in a thread of its own."""
    import asyncio
    import threading

    from evcp.bench.files import FileServer

    root = tmp_path / "files"
    root.mkdir()
    server = FileServer(root)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
