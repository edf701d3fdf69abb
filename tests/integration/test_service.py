"""`evcp run` as systemd runs it: READY=1 once up, WATCHDOG=1 while the loop advances, STOPPING=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.integration


def test_notify_protocol_ready_watchdog_status_and_stopping(tmp_path, csms):
    port = free_port()
    config = tmp_path / "evcp.toml"
    config.write_text(f'[charge_point]\nid = "CP-SD-01"\n[ocpp]\ncsms_url = "{csms.url}/ocpp"\n'
                      f'[hardware]\nbackend = "mock"\n[api]\nlisten = "127.0.0.1:{port}"\n'
                      f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(15)
    journal = open(tmp_path / "journal", "w+")
    stream = os.fstat(journal.fileno())
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000",
           "JOURNAL_STREAM": f"{stream.st_dev}:{stream.st_ino}"}  # systemd.exec(5): stderr is that stream
    env.pop("WATCHDOG_PID", None)
    process = subprocess.Popen([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                               stderr=journal, text=True, env=env)
    try:
        messages = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum(m == "WATCHDOG=1" for m in messages) < 2:
            messages.append(notify.recv(4096).decode())
        assert messages[0].startswith("READY=1\nSTATUS=1: Available")
        assert messages.count("WATCHDOG=1") >= 2, messages
        process.send_signal(signal.SIGTERM)
        while not notify.recv(4096).decode().startswith("STOPPING=1"):
            pass
        assert process.wait(15) == 0
        lines = (tmp_path / "journal").read_text()
        assert "<6>evcp.core: connector 1: Available" in lines
        assert "<4>evcp: hardware backend is MOCK" in lines
    finally:
        notify.close()
        journal.close()
        if process.poll() is None:
            process.kill()


def test_an_unsynchronised_clock_takes_the_central_systems_time(csms, start_charger, wait_until):
    from datetime import datetime

    from evcp.runtime.clock import kernel_clock_synchronised

    if kernel_clock_synchronised():
        pytest.skip("this machine's clock is NTP-synchronised: the charger rightly ignores the central system")
    csms.post("/policy", {"clock_offset_s": 7200})
    charger = start_charger()
    wait_until(lambda: "using the central system's time" in charger.log_path.read_text(), 10, "clock corrected")
    wait_until(lambda: any(e["type"] == "SettingSystemTime" for e in csms.sent_by_charger("SecurityEventNotification")),
               10, "SettingSystemTime event (after StartupOfTheDevice)")
    charger.pilot("B")
    status = wait_until(lambda: [s for s in csms.sent_by_charger("StatusNotification") if s["status"] == "Preparing"],
                        10, "a status stamped after the correction")[-1]
    stamped = datetime.fromisoformat(status["timestamp"].replace("Z", "+00:00")).timestamp()
    assert abs(stamped - time.time() - 7200) < 60
