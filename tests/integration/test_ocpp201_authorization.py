"""OCPP 2.0.1 local authorization over real processes: ``evcp run`` (mock hardware, ``ocpp.version =
"2.0.1"``) and the bench central system, on loopback; the CSMS's requests go through its control
API (``POST /call``), schema-checked on both sides (Part 2 C12, C14, C15, D01, D02)."""

from __future__ import annotations

import signal
import time

from .conftest import wait_until
from .test_ocpp201 import events, start_201

TAG = "04A1B2C3"
RFID = {"idToken": TAG, "type": "ISO14443"}


def set_variables(csms, **values: str) -> None:
    data = [{"component": {"name": name.split("__")[0]}, "variable": {"name": name.split("__")[1]},
             "attributeValue": value} for name, value in values.items()]
    answer = csms.call("SetVariables", {"setVariableData": data})["payload"]
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Accepted"] * len(data)


def send_full_list(csms, version: int, *entries: tuple[dict, str]) -> str:
    payload = {"versionNumber": version, "updateType": "Full",
               "localAuthorizationList": [{"idToken": t, "idTokenInfo": {"status": s}} for t, s in entries]}
    return csms.call("SendLocalList", payload)["payload"]["status"]


def stays_open(charger, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if charger.connector()["relay_closed"]:
            return False
        time.sleep(0.05)
    return True


def test_tc_c_14_d_01_listed_token_starts_without_authorize_and_the_list_survives_a_sigkill(csms, start_charger):
    charger = start_201(start_charger)
    set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    assert send_full_list(csms, 12, (RFID, "Accepted"), ({"idToken": "BLOCKED1", "type": "Local"}, "Blocked")) \
        == "Accepted"
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(10)
    restarted = start_201(start_charger)
    assert csms.call("GetLocalListVersion", {})["payload"] == {"versionNumber": 12}
    restarted.pilot("C")
    restarted.tap(TAG)
    wait_until(lambda: restarted.connector()["relay_closed"], 10, "contactor closed")
    assert csms.sent_by_charger("Authorize") == []
    started = wait_until(lambda: [e for e in events(csms) if e["eventType"] == "Started"], 15, "Started")
    assert started[0]["idToken"] == RFID


def test_tc_c_15_offline_listed_token_starts_and_a_blocked_one_never_does(csms, start_charger):
    charger = start_201(start_charger, ocpp="allow_offline_start = true")
    set_variables(csms, AuthCtrlr__LocalAuthorizeOffline="true")
    assert send_full_list(csms, 1, (RFID, "Accepted"), ({"idToken": "BLOCKED1", "type": "Local"}, "Blocked")) \
        == "Accepted"
    csms.post("/policy", {"accept_connections": False})
    csms.post("/disconnect", {"cp": "CP-IT-01"})
    wait_until(lambda: not charger.status()["ocpp"]["connected"], 10, "charger offline")
    charger.pilot("C")
    charger.tap("BLOCKED1")
    assert stays_open(charger, 2.0)
    charger.tap(TAG)
    wait_until(lambda: charger.connector()["relay_closed"], 10, "contactor closed offline")
    csms.post("/policy", {"accept_connections": True})
    started = wait_until(lambda: [e for e in events(csms) if e["eventType"] == "Started"], 30, "Started")
    assert started[0]["offline"] is True and started[0]["idToken"] == RFID
