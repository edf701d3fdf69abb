"""`evcp run` stops within its budget after SIGTERM whatever the network does, contactor open first.

The central system is frozen with SIGSTOP while a transaction runs: its TCP socket stays open and
the kernel still completes new TCP handshakes into its backlog, but no byte is ever answered. That
is a central system that stops answering, a StopTransaction that is never confirmed and a
reconnect whose websocket handshake hangs, all at once.
"""

from __future__ import annotations

import re
import signal
import socket
import time

import pytest

pytestmark = pytest.mark.integration

#: systemd/evcp.service TimeoutStopSec is 20 s; evcp's own budget (evcp.runtime.app) is well under.
EXIT_WITHIN_S = 9.0


def _stop_and_time(charger) -> tuple[float, int]:
    started = time.monotonic()
    charger.process.send_signal(signal.SIGTERM)
    status = charger.process.wait(EXIT_WITHIN_S + 10)
    return time.monotonic() - started, status


def _lines(charger) -> list[str]:
    return charger.log_path.read_text().splitlines()


def _stopped_in_time(charger, elapsed: float, status: int) -> list[str]:
    """Asserts a clean exit within EXIT_WITHIN_S; the charger's log lines."""
    lines = _lines(charger)
    print(f"exit {status} after {elapsed:.2f} s of SIGTERM")
    assert status == 0, "\n".join(lines[-30:])
    assert elapsed < EXIT_WITHIN_S, f"took {elapsed:.1f} s:\n" + "\n".join(lines[-30:])
    return lines


def _first(lines: list[str], pattern: str) -> int:
    for number, line in enumerate(lines):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"no line matches {pattern!r} in:\n" + "\n".join(lines[-40:]))


def test_sigterm_while_charging_and_the_central_system_stopped_answering(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("TAG-SHUTDOWN")
    wait_until(lambda: csms.transactions(), 10, "StartTransaction at the central system")
    assert charger.connector()["relay_closed"] is True
    csms.process.send_signal(signal.SIGSTOP)
    try:
        # Something is queued that will never be confirmed: a card tap asks for a stop.
        charger.tap("TAG-SHUTDOWN")
        wait_until(lambda: not charger.connector()["relay_closed"], 5, "contactor opened by the card")
        charger.pilot("C")
        elapsed, status = _stop_and_time(charger)
    finally:
        csms.process.send_signal(signal.SIGCONT)
    lines = _stopped_in_time(charger, elapsed, status)
    assert _first(lines, r"SIGTERM received") < _first(lines, r"SIGTERM: every contactor OPEN") \
        < _first(lines, r"shutting down with 1 transaction messages queued") < _first(lines, r"stopped; every contactor open")


@pytest.mark.parametrize("ocpp", ["", 'version = "2.0.1"'], ids=["1.6", "2.0.1"])
def test_sigterm_while_charging_opens_the_contactor_before_anything_else(csms, start_charger, wait_until, ocpp):
    charger = start_charger(ocpp=ocpp)
    charger.start_charging("TAG-SHUTDOWN")
    wait_until(lambda: csms.transactions(), 10, "StartTransaction at the central system")
    csms.process.send_signal(signal.SIGSTOP)
    try:
        elapsed, status = _stop_and_time(charger)
    finally:
        csms.process.send_signal(signal.SIGCONT)
    lines = _stopped_in_time(charger, elapsed, status)
    signalled = _first(lines, r"SIGTERM")
    opened = _first(lines, r"every contactor OPEN")
    assert signalled < opened
    # Nothing but the opening happened between the signal and it: the next line is about the relay.
    assert all("contactor" in line or "SIGTERM" in line for line in lines[signalled:opened + 1])


@pytest.mark.parametrize("ocpp", ["", 'version = "2.0.1"'], ids=["1.6", "2.0.1"])
def test_sigterm_closes_the_websocket_with_1001_going_away(csms, start_charger, wait_until, ocpp):
    """A clean stop while charging: the transaction ends at the central system, then the websocket
    closes with 1001 "going away", never 1011 "internal error" (RFC 6455 §7.4.1)."""
    charger = start_charger(ocpp=ocpp)
    charger.start_charging("TAG-SHUTDOWN")
    wait_until(lambda: csms.transactions(), 10, "the transaction at the central system")
    elapsed, status = _stop_and_time(charger)
    _stopped_in_time(charger, elapsed, status)
    closes = wait_until(lambda: csms.get("/chargers")["chargers"][0]["closes"], 5, "the close at the central system")
    assert [close["code"] for close in closes] == [1001], closes
    [transaction] = csms.transactions()
    assert transaction["open"] is False, "the transaction ended before the websocket closed"


def test_sigterm_during_a_connect_that_never_completes(tmp_path, start_charger):
    """A central system whose TCP port accepts into its backlog and never speaks: the websocket
    opening handshake hangs (open_timeout is 10 s) when SIGTERM comes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host, port = silent.getsockname()
        charger = start_charger(wait_online=False, csms_url=f"ws://{host}:{port}/ocpp",
                                ocpp="allow_offline_start = true")
        charger.pilot("C")
        charger.tap("TAG-OFFLINE")
        time.sleep(0.5)
        elapsed, status = _stop_and_time(charger)
    lines = _stopped_in_time(charger, elapsed, status)
    assert _first(lines, r"SIGTERM: every contactor OPEN") < _first(lines, r"stopped; every contactor open")


def test_the_stop_deadline_ends_a_process_that_hangs_after_opening_the_relays_again(tmp_path):
    """The last resort behind the budgets: a stop that hangs anyway (here the main thread sleeps,
    as in a DNS lookup that never returns) is ended at the deadline, relays opened once more."""
    import subprocess
    import sys

    marker = tmp_path / "opened"
    program = (
        "import time\n"
        "from evcp.runtime.app import arm_stop_deadline\n"
        f"arm_stop_deadline(0.5, lambda: open({str(marker)!r}, 'w').write('relays opened'))\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=20)
    elapsed = time.monotonic() - started
    assert result.returncode == 70, result.stderr
    assert elapsed < 5, elapsed
    assert marker.read_text() == "relays opened"
    assert "stop took longer than 0.5 s: ending the process now" in result.stderr
