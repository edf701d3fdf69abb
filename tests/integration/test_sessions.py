"""Whole sessions over a real websocket: `evcp run` (mock hardware) against the bench central system.

Each test reads like the OCTT charge-point case it covers; the charger is driven only
through its HTTP API, the central system only through its control API.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def closed_transactions(csms):
    return [t for t in csms.transactions() if not t["open"]]


def test_tc_001_cold_boot_then_status_of_every_connector(csms, start_charger, wait_until):
    csms.post("/policy", {"boot_responses": [{"status": "Rejected", "interval": 1}]})
    charger = start_charger(connectors=2)
    boots = csms.sent_by_charger("BootNotification")
    assert len(boots) == 2, "re-sent after the Rejected interval"
    assert boots[0]["chargePointVendor"] == "evcp"
    statuses = wait_until(lambda: len(s := csms.sent_by_charger("StatusNotification")) >= 3 and s)
    assert sorted(s["connectorId"] for s in statuses[:3]) == [0, 1, 2]
    assert {s["status"] for s in statuses[:3]} == {"Available"}
    assert charger.status()["ocpp"]["connected"]


def test_tc_003_plugin_first_full_session_is_billed_correctly(csms, start_charger, wait_until):
    charger = start_charger()
    charger.pilot("B")
    charger.wait_status("Preparing")
    charger.tap("04A1B2C3")
    charger.wait_status("SuspendedEV")
    assert charger.connector()["relay_closed"] is False
    charger.pilot("C")
    connector = charger.wait_status("Charging")
    assert connector["relay_closed"] is True and connector["current_limit_a"] == 32.0
    wait_until(lambda: charger.connector()["session_energy_wh"] >= 2, 10, "energy counting up")
    charger.pilot("B")
    charger.wait_status("SuspendedEV")
    charger.tap("04A1B2C3")
    charger.wait_status("Finishing")
    charger.pilot("A")
    charger.wait_status("Available")
    [tx] = wait_until(lambda: closed_transactions(csms), 10, "StopTransaction")
    assert tx["id_tag"] == "04A1B2C3"
    assert tx["stop"]["reason"] == "Local" and tx["stop"]["id_tag"] == "04A1B2C3"
    assert tx["stop"]["meter_stop"] >= tx["meter_start"] + 2
    final_energy = charger.connector()["energy_wh"]
    assert abs(tx["stop"]["meter_stop"] - final_energy) <= 1, "meterStop is the meter's reading at the stop"
    assert csms.sent_by_charger("Authorize") == [{"idTag": "04A1B2C3"}]


@pytest.mark.parametrize("uid", ["DEADBEEF", "04A3C6CAE26180", "04A3C6CAE26180AABBCC"], ids=["4", "7", "10"])
def test_a_card_of_each_uid_length_starts_and_stops_its_own_transaction(csms, start_charger, wait_until, uid):
    """The card is laid on the simulated RC522 and read by the real driver (cascade levels 1-3):
    the idTag is the whole UID, and a card sharing its first bytes is another card."""
    charger = start_charger()
    charger.start_charging(uid)
    assert csms.sent_by_charger("Authorize") == [{"idTag": uid}]
    assert csms.sent_by_charger("StartTransaction")[0]["idTag"] == uid
    if len(uid) > 8:
        other = uid[:-2] + "00"  # the same cascade-level-1 bytes, another card: it does not stop the session
        charger.tap(other)
        wait_until(lambda: f"{other} presented, but no connector" in charger.log_path.read_text(), 10,
                   "the core given the other card's whole UID")
        assert charger.connector()["status"] == "Charging"
    charger.tap(uid)
    charger.wait_status("Finishing")
    [tx] = wait_until(lambda: closed_transactions(csms), 10, "StopTransaction")
    assert tx["id_tag"] == uid and tx["stop"]["id_tag"] == uid


def test_tc_010_remote_start_then_tc_012_remote_stop(csms, start_charger, wait_until):
    charger = start_charger()
    charger.pilot("C")
    charger.wait_status("Preparing")
    answer = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE01"})
    assert answer["payload"] == {"status": "Accepted"}
    charger.wait_status("Charging")
    tx_id = charger.connector()["transaction_id"]
    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id + 1000})["payload"] == {"status": "Rejected"}
    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id})["payload"] == {"status": "Accepted"}
    charger.wait_status("Finishing")
    assert charger.connector()["relay_closed"] is False
    [tx] = wait_until(lambda: closed_transactions(csms))
    assert tx["stop"]["reason"] == "Remote"


def test_tc_027_remote_start_on_connector_zero_is_rejected(csms, start_charger, wait_until):
    start_charger()
    assert csms.call("RemoteStartTransaction", {"connectorId": 0, "idTag": "X"})["payload"] == {"status": "Rejected"}


def test_start_not_accepted_never_closes_the_relay_and_stops_deauthorized(csms, start_charger, wait_until):
    csms.post("/policy", {"start_overrides": {"STOLEN01": "Blocked"}})
    charger = start_charger()
    charger.pilot("C")
    charger.tap("STOLEN01")
    [tx] = wait_until(lambda: closed_transactions(csms), 10, "the DeAuthorized stop")
    assert tx["stop"]["reason"] == "DeAuthorized"
    assert charger.connector()["relay_closed"] is False
    assert "contactor CLOSED" not in charger.log_path.read_text()


def test_tc_068_another_card_does_not_stop_the_session(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("OWNER001")
    charger.tap_taken_in("STRANGER")
    assert charger.connector()["status"] == "Charging"
    assert csms.transactions()[0]["open"] and not csms.sent_by_charger("StopTransaction")


def test_tc_019_tc_021_tc_040_configuration(csms, start_charger, wait_until):
    start_charger()
    conf = csms.call("GetConfiguration", {"key": ["SupportedFeatureProfiles", "Nonsense"]})["payload"]
    assert conf["configurationKey"] == [{"key": "SupportedFeatureProfiles", "readonly": True, "value":
                                         "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"}]
    assert conf["unknownKey"] == ["Nonsense"]
    assert csms.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "15"})["payload"] == {"status": "Accepted"}
    conf = csms.call("GetConfiguration", {"key": ["MeterValueSampleInterval"]})["payload"]
    assert conf["configurationKey"][0]["value"] == "15"
    assert csms.call("ChangeConfiguration", {"key": "Testing", "value": "true"})["payload"] == {"status": "NotSupported"}
    assert csms.call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "-3"})["payload"] == {"status": "Rejected"}


def test_tc_070_sampled_meter_values_during_the_transaction(csms, start_charger, wait_until):
    charger = start_charger(keys={"MeterValueSampleInterval": 1,
                                  "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import"})
    charger.start_charging("METER001")
    values = wait_until(lambda: len(v := csms.sent_by_charger("MeterValues")) >= 3 and v, 10, "3 MeterValues")
    tx_id = charger.connector()["transaction_id"]
    assert all(v["transactionId"] == tx_id for v in values)
    sampled = values[-1]["meterValue"][0]["sampledValue"]
    assert [s["measurand"] for s in sampled] == ["Energy.Active.Import.Register", "Power.Active.Import"]
    assert {s["context"] for s in sampled} == {"Sample.Periodic"}
    assert float(sampled[1]["value"]) > 1000


def test_tc_015_hard_reset_with_transaction(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("RESET001")
    assert csms.call("Reset", {"type": "Hard"})["payload"] == {"status": "Accepted"}
    [tx] = wait_until(lambda: closed_transactions(csms), 10, "StopTransaction")
    assert tx["stop"]["reason"] == "HardReset"
    wait_until(lambda: len(csms.sent_by_charger("BootNotification")) == 2, 15, "BootNotification after the reset")
    charger.wait_status("Preparing")
    assert charger.connector()["relay_closed"] is False


def test_meter_fault_is_reported_and_survived(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("METERF01")
    charger.fault("meter", True)
    wait_until(lambda: charger.connector()["error_code"] == "PowerMeterFailure", 15, "PowerMeterFailure")
    assert charger.connector()["relay_closed"] is True, "the session goes on with its last good reading"
    wait_until(lambda: any(s["errorCode"] == "PowerMeterFailure" for s in csms.sent_by_charger("StatusNotification")))
    charger.fault("meter", False)
    wait_until(lambda: charger.connector()["error_code"] == "NoError", 15, "meter recovery")


def test_tc_041_welded_contactor_faults_the_connector(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("WELD0001")
    charger.tap("WELD0001")
    charger.wait_status("Finishing")
    charger.fault("relay", True)
    connector = charger.wait_status("Faulted")
    assert connector["error_code"] == "PowerSwitchFailure"
    charger.tap_taken_in("WELD0002")
    assert len(csms.transactions()) == 1, "no new session on a faulted connector"
    assert all(a["idTag"] != "WELD0002" for a in csms.sent_by_charger("Authorize")), "not even asked for"


def test_reconnects_after_the_central_system_drops_the_connection(csms, start_charger, wait_until):
    charger = start_charger()
    before = csms.get("/messages")["last_seq"]
    csms.post("/disconnect", {"cp": "CP-IT-01"})
    wait_until(lambda: not charger.status()["ocpp"]["connected"], 5, "disconnect seen")
    wait_until(lambda: charger.status()["ocpp"]["connected"], 10, "reconnected")
    assert len(csms.sent_by_charger("BootNotification")) == 1, "no BootNotification when the registration holds"

    def statuses_after_reconnect():
        return {m["payload"]["connectorId"] for m in csms.messages(before)
                if m["direction"] == "received" and m["action"] == "StatusNotification" and m["message_type"] == "CALL"}

    wait_until(lambda: statuses_after_reconnect() == {0, 1}, 5, "the current status of every connector again")


def test_refused_credentials_are_reported_and_retried_without_a_crash(csms, start_charger, wait_until):
    charger = start_charger()
    csms.post("/policy", {"handshake_status": 401})
    csms.post("/disconnect", {"cp": "CP-IT-01"})
    wait_until(lambda: "HTTP 401 (credentials refused)" in charger.log_path.read_text(), 10, "401 reported")
    assert charger.process.poll() is None
    csms.post("/policy", {"handshake_status": 0})
    wait_until(lambda: charger.status()["ocpp"]["connected"], 10, "reconnected once accepted")


def test_bench_routes_validate_input(csms, start_charger, wait_until):
    charger = start_charger()
    assert charger.pilot("Z")["http_status"] == 400
    assert "cannot" in charger.pilot("D")["error"], "the simulated pilot board has no D output"
    assert charger.post("/api/bench/pilot", {"connector": 9, "state": "A"})["http_status"] == 400
    assert charger.tap("")["http_status"] == 400
    assert charger.fault("toaster", True)["http_status"] == 400


def test_tc_002_pending_registration_still_answers_configuration(csms, start_charger, wait_until):
    csms.post("/policy", {"boot_responses": [{"status": "Pending", "interval": 3}]})
    charger = start_charger(wait_online=False)
    wait_until(lambda: charger.status()["ocpp"]["registration"] == "Pending", 10, "Pending")
    conf = csms.call("GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert conf["status"] == "result"
    assert csms.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "30"})["payload"] == {"status": "Accepted"}
    assert csms.sent_by_charger("StatusNotification") == [], "nothing but BootNotification before Accepted"
    wait_until(lambda: charger.status()["ocpp"]["registration"] == "Accepted", 10, "Accepted after the interval")
    wait_until(lambda: len(csms.sent_by_charger("StatusNotification")) >= 2, 5, "statuses after Accepted")


def test_heartbeat_at_the_interval_given_in_the_boot_answer(csms, start_charger, wait_until):
    csms.post("/policy", {"heartbeat_interval": 1})
    start_charger()
    wait_until(lambda: len(csms.sent_by_charger("Heartbeat")) >= 3, 6, "three heartbeats")


def test_tc_054_trigger_message_and_tc_055_rejected(csms, start_charger, wait_until):
    start_charger()
    before = len(wait_until(lambda: len(s := csms.sent_by_charger("StatusNotification")) >= 2 and s, 5,
                            "the statuses after boot"))
    answer = csms.call("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1})
    assert answer["payload"] == {"status": "Accepted"}
    triggered = wait_until(lambda: (s := csms.sent_by_charger("StatusNotification")[before:]) and s, 5,
                           "triggered status")
    assert [s["connectorId"] for s in triggered] == [1]
    assert csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"})["payload"] == {"status": "Accepted"}
    wait_until(lambda: csms.sent_by_charger("Heartbeat"), 5, "triggered heartbeat")
    assert csms.call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 2})["payload"] == \
        {"status": "Rejected"}


def test_change_availability_scheduled_during_a_transaction(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("AVAIL001")
    assert csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})["payload"] == {"status": "Scheduled"}
    charger.tap("AVAIL001")
    charger.wait_status("Unavailable")
    assert csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "X"})["payload"] == {"status": "Rejected"}
    assert csms.call("ChangeAvailability", {"connectorId": 1, "type": "Operative"})["payload"] == {"status": "Accepted"}
    charger.wait_status("Finishing")


def test_tc_062_data_transfer_to_an_unknown_vendor(csms, start_charger):
    start_charger()
    answer = csms.call("DataTransfer", {"vendorId": "com.example"})
    assert answer["payload"] == {"status": "UnknownVendorId"}
