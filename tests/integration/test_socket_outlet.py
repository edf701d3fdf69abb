"""A socket outlet over real processes: the charger (`evcp run`, simulated socket with a
proximity pilot and a solenoid lock) and the bench central system, scenario by scenario as
the OCTT runs them on a charge point without a fixed cable."""

from __future__ import annotations

import time
import urllib.request

import pytest

MOCK_22_KW = "[hardware.mock]\nev_power_w = 22000\n"


def status_notifications(csms, connector: int = 1) -> list[dict]:
    return [m for m in csms.sent_by_charger("StatusNotification") if m["connectorId"] == connector]


def test_tc_024_cs_start_charging_session_lock_failure(csms, start_charger, wait_until):
    charger = start_charger()
    charger.fault("lock", True)  # the plug pushed in only halfway: the lock cannot confirm
    answer = csms.call("RemoteStartTransaction", {"idTag": "LOCK0001", "connectorId": 1})
    assert answer["payload"]["status"] == "Accepted"
    charger.pilot("B")
    faulted = wait_until(lambda: [s for s in status_notifications(csms) if s["status"] == "Faulted"], 15,
                         "StatusNotification Faulted")
    assert faulted[0]["errorCode"] == "ConnectorLockFailure"
    connector = charger.connector()
    assert connector["lock"] == "failed" and not connector["relay_closed"] and connector["contactor"] == "open"
    assert connector["id_tag"] is None, "the authorization went with the fault: nothing is left to start"
    assert csms.transactions() == [], "no transaction started without a locked plug"
    assert not csms.sent_by_charger("StartTransaction")


def test_tc_018_1_cs_unlock_connector_with_charging_session(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("UNLK0001")
    assert charger.connector()["lock"] == "locked"
    answer = csms.call("UnlockConnector", {"connectorId": 1})
    assert answer["payload"]["status"] == "Unlocked"
    stop = wait_until(lambda: csms.sent_by_charger("StopTransaction"), 10, "StopTransaction")[0]
    assert stop["reason"] == "UnlockCommand"
    connector = charger.wait_status("Finishing")
    assert not connector["relay_closed"] and connector["lock"] == "unlocked"
    charger.pilot("A")
    charger.wait_status("Available")


def test_tc_030_cs_unlock_connector_unlock_failure(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("UNLK0002")
    charger.fault("lock", True)  # jammed while locked: unlocking cannot succeed
    answer = csms.call("UnlockConnector", {"connectorId": 1}, timeout=20)
    assert answer["payload"]["status"] == "UnlockFailed"
    connector = charger.connector()
    assert not connector["relay_closed"], "the contactor is open whatever the lock does"


def locks_until_welded(charger) -> list[tuple[str, bool]]:
    """(lock in the status, the simulated actuator holds the plug) at every look until the contactor
    reads welded: the whole stretch in which commanded open and measured closed disagree."""
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = charger.status()
        connector, simulated = status["connectors"][0], status["bench"]["ev"][0]
        seen.append((connector["lock"], simulated["locked"]))
        if connector["contactor"] == "welded":
            return seen
        time.sleep(0.02)
    raise AssertionError(f"the contactor never read welded: {charger.connector()}")


def test_a_contactor_welded_while_charging_keeps_the_plug_locked(csms, start_charger, wait_until):
    """IEC 61851-1: the plug stays locked while the contacts may be live; commanded open is not open."""
    charger = start_charger()
    charger.start_charging("WELD0001")
    charger.fault("relay", True)  # the main contacts weld under load
    charger.tap("WELD0001")
    seen = locks_until_welded(charger)
    assert seen and all(lock == ("locked", True) for lock in seen), seen
    faulted = wait_until(lambda: [s for s in status_notifications(csms) if s["status"] == "Faulted"], 10,
                         "StatusNotification Faulted")[0]
    assert faulted["errorCode"] == "PowerSwitchFailure"
    answer = csms.call("UnlockConnector", {"connectorId": 1})
    assert answer["payload"]["status"] == "UnlockFailed"
    charger.pilot("A")  # the EV side unplugged: the socket end still may not come out
    connector = charger.wait_status("Faulted")
    assert (connector["lock"], connector["contactor"]) == ("locked", "welded")
    assert charger.status()["bench"]["ev"][0]["locked"] is True


def test_tc_018_1_cs_unlock_connector_on_a_welded_contactor_fails(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("WELD0002")
    charger.fault("relay", True)
    answer = csms.call("UnlockConnector", {"connectorId": 1}, timeout=20)
    assert answer["payload"]["status"] == "UnlockFailed"
    stop = wait_until(lambda: csms.sent_by_charger("StopTransaction"), 10, "StopTransaction")[0]
    assert stop["reason"] == "UnlockCommand"
    connector = charger.connector()
    assert (connector["lock"], connector["contactor"], connector["relay_closed"]) == ("locked", "welded", False)
    assert charger.status()["bench"]["ev"][0]["locked"] is True


def test_tc_031_cs_unlock_connector_unknown_connector(csms, start_charger):
    charger = start_charger()
    assert charger.status()["connectors"][0]["lock"] == "unlocked"
    assert csms.call("UnlockConnector", {"connectorId": 2})["payload"]["status"] == "NotSupported"


@pytest.mark.parametrize("rating_a", [13, 20])
def test_the_cable_rating_caps_the_offer_and_the_ev_draws_what_is_offered(csms, start_charger, wait_until,
                                                                          rating_a):
    charger = start_charger(extra=MOCK_22_KW)
    assert charger.post("/api/bench/cable", {"connector": 1, "rating_a": rating_a})["rating_a"] == rating_a
    charger.start_charging(f"CABLE0{rating_a}")
    connector = wait_until(lambda: (c := charger.connector())["power_w"] > 0 and c, 10, "power flowing")
    assert connector["cable"] == f"{rating_a}A" and connector["cable_rating_a"] == rating_a
    assert connector["current_limit_a"] == rating_a
    ev = charger.status()["bench"]["ev"][0]
    assert ev["offered_a"] == pytest.approx(rating_a, abs=0.1)
    assert ev["current_a"] == pytest.approx(rating_a, abs=0.1), "the EV draws what the pilot offers, per phase"
    assert connector["power_w"] == pytest.approx(rating_a * 230 * 3, rel=0.03), "3 phases at 230 V, not 22 kW"


def test_a_pp_out_of_band_means_no_charge_and_says_why(csms, start_charger, wait_until):
    charger = start_charger()
    charger.fault("pp", True)
    charger.pilot("C")
    faulted = charger.wait_status("Faulted")
    assert faulted["cable"] == "fault" and not faulted["relay_closed"]
    notification = wait_until(lambda: [s for s in status_notifications(csms) if s["status"] == "Faulted"], 10,
                              "StatusNotification Faulted")[0]
    assert "PP" in notification.get("info", "")
    charger.tap_taken_in("PPFAULT1")
    assert csms.transactions() == [] and not csms.sent_by_charger("Authorize"), "a card starts nothing"
    assert not charger.connector()["relay_closed"]


def test_the_status_tells_the_measured_contactor_the_cable_and_the_lock(csms, start_charger, wait_until):
    charger = start_charger()
    idle = charger.connector()
    assert (idle["relay_closed"], idle["relay_feedback_closed"], idle["contactor"]) == (False, False, "open")
    assert (idle["cable"], idle["cable_rating_a"], idle["lock"]) == ("none", None, "unlocked")
    charging = charger.start_charging("STATUS01")
    charging = wait_until(lambda: (c := charger.connector())["relay_feedback_closed"] and c, 5, "mirror closed")
    assert (charging["relay_closed"], charging["contactor"], charging["lock"]) == (True, "closed", "locked")
    assert (charging["cable"], charging["cable_rating_a"]) == ("32A", 32)
    charger.tap("STATUS01")
    charger.wait_status("Finishing")
    charger.fault("relay", True)  # the contacts weld after the session: commanded open, measured closed
    welded = wait_until(lambda: (c := charger.connector())["contactor"] == "welded" and c, 5, "welded")
    assert not welded["relay_closed"] and welded["relay_feedback_closed"] is True
    with urllib.request.urlopen(charger.base + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'evcp_connector_relay_closed{connector="1"} 0' in metrics
    assert 'evcp_connector_relay_feedback_closed{connector="1"} 1' in metrics
    assert 'evcp_connector_locked{connector="1"} 0' in metrics
    assert charger.status()["bench"]["faults"]["relay"] is True
