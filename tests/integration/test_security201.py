"""OCPP 2.0.1 security events over real processes (``evcp run`` with ``ocpp.version = "2.0.1"``
and the bench central system): Part 2 A04, SecurityEventNotification is queued while the CSMS
is away and survives power cuts (SIGKILL)."""

from __future__ import annotations

import signal

from .conftest import wait_until


def kill(charger) -> None:
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(5)


def test_tc_a_04_security_events_raised_offline_survive_power_cuts_and_arrive_in_order(csms, start_charger):
    csms.post("/policy", {"accept_connections": False})
    charger = start_charger(ocpp='version = "2.0.1"', wait_online=False)
    wait_until(lambda: "HTTP 503" in charger.log_path.read_text(), 10, "the outage seen")
    kill(charger)
    charger = start_charger(ocpp='version = "2.0.1"', wait_online=False)
    kill(charger)
    csms.post("/policy", {"accept_connections": True})
    start_charger(ocpp='version = "2.0.1"')

    def startup_events():
        return [e for e in csms.get("/chargers")["chargers"][0]["security_events"] if e["type"] == "StartupOfTheDevice"]

    startups = wait_until(lambda: len(found := startup_events()) == 3 and found, 15, "the three startups")
    stamps = [e["timestamp"] for e in startups]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3, "each start once, in the order they happened"
    assert csms.sent_by_charger("SecurityEventNotification"), "sent as OCPP 2.0.1 SecurityEventNotification"
