"""OCPP 2.0.1 remote control and availability over real processes: ``evcp run`` (mock hardware,
a socket outlet with its simulated lock, ``ocpp.version = "2.0.1"``) and the bench central system,
whose requests go through its control API (``POST /call``), schema-checked on both sides.
Part 2 F03 (RequestStopTransaction), F05 (UnlockConnector), F06 (TriggerMessage), G03
(ChangeAvailability of an EVSE or its connector)."""

from __future__ import annotations

import time

from .conftest import wait_until
from .test_ocpp201 import ended, events, start_201, started_transaction

KEEP_LOCKED = '[ocpp.variables]\n"OCPPCommCtrlr.UnlockOnEVSideDisconnect" = false'
"""The plug stays locked when the EV side is unplugged, until UnlockConnector (Part 2 E10, F05)."""


def statuses(csms) -> list[str]:
    return [s["connectorStatus"] for s in csms.sent_by_charger("StatusNotification")]


def test_tc_f_06_cs_trigger_message_status_notification_meter_values_and_heartbeat(csms, start_charger):
    start_201(start_charger)
    for message, evse in (("StatusNotification", {"id": 1}), ("MeterValues", {"id": 1}), ("Heartbeat", None)):
        before = len(csms.sent_by_charger(message))
        payload = {"requestedMessage": message, **({"evse": evse} if evse else {})}
        assert csms.call("TriggerMessage", payload)["payload"]["status"] == "Accepted", message
        sent = wait_until(lambda: len(s := csms.sent_by_charger(message)) > before and s, 5, f"triggered {message}")
        if evse:
            assert sent[-1]["evseId"] == 1
    [meter_values] = csms.sent_by_charger("MeterValues")
    registers = [v for v in meter_values["meterValue"][0]["sampledValue"]
                 if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"]
    assert registers and registers[0]["context"] == "Trigger"
    assert csms.call("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 2}})["payload"][
        "status"] == "Rejected"


def test_tc_f_03_cs_request_stop_transaction_of_a_session_started_with_a_card(csms, start_charger):
    charger = start_201(start_charger)
    charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    wait_until(lambda: charger.connector()["relay_closed"], 10, "contactor closed")
    answer = csms.call("RequestStopTransaction", {"transactionId": tx_id})
    assert answer["payload"]["status"] == "Accepted"
    end = ended(csms, tx_id)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("RemoteStop", "Remote")
    connector = charger.connector()
    assert not connector["relay_closed"] and connector["contactor"] == "open"


def locked_after_the_ev_left(csms, charger) -> None:
    charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    assert charger.connector()["lock"] == "locked"
    charger.pilot("A")  # the cable is pulled out of the EV; it stays in the socket, locked
    ended(csms, tx_id)
    wait_until(lambda: not charger.connector()["relay_closed"], 5, "contactor open")
    time.sleep(0.5)
    assert charger.connector()["lock"] == "locked"


def test_tc_f_05_cs_unlock_connector_unlocked(csms, start_charger):
    charger = start_201(start_charger, ocpp=KEEP_LOCKED)
    locked_after_the_ev_left(csms, charger)
    answer = csms.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert answer["payload"]["status"] == "Unlocked"
    assert charger.connector()["lock"] == "unlocked"


def test_tc_f_05_cs_unlock_connector_unlock_failed(csms, start_charger):
    charger = start_201(start_charger, ocpp=KEEP_LOCKED)
    locked_after_the_ev_left(csms, charger)
    charger.fault("lock", True)  # jammed: the feedback keeps saying locked
    answer = csms.call("UnlockConnector", {"evseId": 1, "connectorId": 1}, timeout=20)
    assert answer["payload"]["status"] == "UnlockFailed"
    assert not charger.connector()["relay_closed"]


def test_tc_f_05_cs_unlock_connector_during_a_transaction_or_of_an_unknown_connector(csms, start_charger):
    charger = start_201(start_charger)
    assert csms.call("UnlockConnector", {"evseId": 1, "connectorId": 2})["payload"]["status"] == "UnknownConnector"
    charger.start_charging("04A1B2C3")
    answer = csms.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert answer["payload"]["status"] == "OngoingAuthorizedTransaction"
    assert charger.connector()["relay_closed"] and charger.connector()["lock"] == "locked"


def test_tc_g_03_cs_change_availability_of_a_connector(csms, start_charger):
    charger = start_201(start_charger)
    inoperative = {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}
    assert csms.call("ChangeAvailability", inoperative)["payload"]["status"] == "Accepted"
    wait_until(lambda: statuses(csms)[-1] == "Unavailable", 5, "StatusNotification Unavailable")
    assert charger.connector()["status"] == "Unavailable"
    wrong = {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 2}}
    assert csms.call("ChangeAvailability", wrong)["payload"]["status"] == "Rejected"
    operative = {"operationalStatus": "Operative", "evse": {"id": 1, "connectorId": 1}}
    assert csms.call("ChangeAvailability", operative)["payload"]["status"] == "Accepted"
    wait_until(lambda: statuses(csms)[-1] == "Available", 5, "StatusNotification Available")


def test_tc_g_03_cs_inoperative_during_a_transaction_is_scheduled_and_applied_when_it_ends(csms, start_charger):
    charger = start_201(start_charger)
    charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    answer = csms.call("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    assert answer["payload"]["status"] == "Scheduled"
    time.sleep(1.0)
    assert charger.connector()["relay_closed"], "the running session keeps its energy"
    assert "Unavailable" not in statuses(csms)
    charger.pilot("A")
    ended(csms, tx_id)
    wait_until(lambda: statuses(csms)[-1] == "Unavailable", 5, "Unavailable once the transaction ended")
    assert not charger.connector()["relay_closed"]
    assert [e["eventType"] for e in events(csms, tx_id)][-1] == "Ended"


def problems_told(csms) -> list[tuple[str, str]]:
    return [(e["component"]["name"], e["actualValue"]) for m in csms.sent_by_charger("NotifyEvent")
            for e in m["eventData"] if e["variable"]["name"] == "Problem"]


def test_tc_g_05_cs_lock_failure_no_energy_faulted_and_the_lock_s_problem_told(csms, start_charger):
    """Part 2 G05: the plug cannot be locked; no energy is given, the connector is Faulted and
    NotifyEvent says ConnectorPlugRetentionLock Problem true (2.0.1's StatusNotification has no
    errorCode), then false once the plug is out."""
    charger = start_201(start_charger)
    charger.fault("lock", True)  # jammed open: the feedback never says locked
    charger.pilot("C")
    charger.tap("04A1B2C3")
    wait_until(lambda: statuses(csms)[-1] == "Faulted", 10, "StatusNotification Faulted")
    wait_until(lambda: ("ConnectorPlugRetentionLock", "true") in problems_told(csms), 10, "NotifyEvent Problem true")
    time.sleep(0.5)
    assert not charger.connector()["relay_closed"]
    assert all(e["transactionInfo"].get("chargingState") != "Charging" for e in events(csms))
    charger.fault("lock", False)
    charger.pilot("A")
    wait_until(lambda: statuses(csms)[-1] == "Available", 10, "Available once the plug is out")
    wait_until(lambda: problems_told(csms)[-1] == ("ConnectorPlugRetentionLock", "false"), 10, "Problem false")
