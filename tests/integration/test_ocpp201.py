"""OCPP 2.0.1 over real processes: ``evcp run`` (mock hardware, ``ocpp.version = "2.0.1"``) and the
bench central system (``python -m evcp.bench.csms``), on loopback. Named after the OCPP 2.0.1
functional blocks and the OCTT test cases they follow (B: provisioning, E: transactions,
F: remote control)."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import datetime

from .conftest import wait_until

V201 = 'version = "2.0.1"'
CP = "CP-IT-01"


def start_201(start_charger, **kw):
    return start_charger(ocpp=V201 + "\n" + kw.pop("ocpp", ""), **kw)


def events(csms, transaction_id: str | None = None) -> list[dict]:
    """The TransactionEventRequests the charger sent, in arrival order (of one transaction if given)."""
    return [p for p in csms.sent_by_charger("TransactionEvent")
            if transaction_id in (None, p["transactionInfo"]["transactionId"])]


def transaction(csms, transaction_id: str) -> dict:
    return next(t for t in csms.transactions() if t["transaction_id"] == transaction_id)


def seq_anomalies(csms) -> list[dict]:
    return [a for a in csms.get("/anomalies")["anomalies"]
            if a["kind"].startswith("seq_no") or a["kind"] in ("event_before_started", "started_twice",
                                                                "event_after_ended", "schema_violation")]


def started_transaction(csms) -> str:
    started = wait_until(lambda: [e for e in events(csms) if e["eventType"] == "Started"], 15, "TransactionEvent Started")
    return started[-1]["transactionInfo"]["transactionId"]


def ended(csms, transaction_id: str, timeout: float = 15) -> dict:
    return wait_until(lambda: next((e for e in events(csms, transaction_id) if e["eventType"] == "Ended"), None),
                      timeout, "TransactionEvent Ended")


def assert_seq_nos_from_zero_without_gaps(csms, transaction_id: str) -> list[int]:
    seq_nos = [e["seqNo"] for e in events(csms, transaction_id)]
    assert seq_nos == list(range(len(seq_nos))), seq_nos
    assert transaction(csms, transaction_id)["seq_nos"] == seq_nos
    return seq_nos


def test_tc_b_01_cs_cold_boot(csms, start_charger):
    """TC_B_01_CS: BootNotification (reason PowerUp) is the first CALL; once Accepted, a
    StatusNotification for every EVSE and its connector (Part 2 B01, G01)."""
    charger = start_201(start_charger, connectors=2)
    statuses = wait_until(lambda: len(s := csms.sent_by_charger("StatusNotification")) >= 2 and s, 10,
                          "StatusNotification of both EVSEs")
    calls = [m for m in csms.messages() if m["direction"] == "received" and m["message_type"] == "CALL"]
    assert calls[0]["action"] == "BootNotification"
    boot = calls[0]["payload"]
    assert boot["reason"] == "PowerUp" and boot["chargingStation"]["vendorName"] and boot["chargingStation"]["model"]
    assert {(s["evseId"], s["connectorId"], s["connectorStatus"]) for s in statuses} == {
        (1, 1, "Available"), (2, 1, "Available")}
    [listed] = csms.get("/chargers")["chargers"]
    assert listed["ocpp_version"] == "2.0.1" and listed["registration_status"] == "Accepted"
    assert set(listed["evse_connectors"]) == {"1/1", "2/1"}
    assert charger.status()["ocpp"]["version"] == "2.0.1"
    assert seq_anomalies(csms) == []


def test_tc_b_02_cs_pending_then_accepted_nothing_but_boot_before(csms, start_charger):
    """TC_B_02_CS: while Pending the station sends nothing but BootNotification (Part 2 B02.FR.01)."""
    csms.post("/policy", {"boot_responses": [{"status": "Pending", "interval": 1}]})
    start_201(start_charger)
    calls = [m for m in csms.messages() if m["direction"] == "received" and m["message_type"] == "CALL"]
    boots = [i for i, m in enumerate(calls) if m["action"] == "BootNotification"]
    assert len(boots) >= 2 and boots[:2] == [0, 1]


def test_tc_b_03_cs_rejected_nothing_but_boot_until_accepted_after_the_interval(csms, start_charger):
    """TC_B_03_CS: after BootNotification Rejected the station sends nothing (no StatusNotification,
    no Authorize for a card tapped meanwhile) until the interval has passed, then BootNotification
    again (Part 2 B03); the central system saw no request while it was Rejected."""
    csms.post("/policy", {"boot_responses": [{"status": "Rejected", "interval": 2}]})
    charger = start_201(start_charger, wait_online=False)
    wait_until(lambda: charger.status()["ocpp"]["registration"] == "Rejected", 10, "Rejected")
    charger.pilot("C")
    charger.tap("04A1B2C3")
    wait_until(lambda: charger.status()["ocpp"]["registration"] == "Accepted", 10, "Accepted after the interval")
    wait_until(lambda: csms.sent_by_charger("StatusNotification"), 10, "StatusNotification once Accepted")
    calls = [m for m in csms.messages() if m["direction"] == "received" and m["message_type"] == "CALL"]
    assert [m["action"] for m in calls[:2]] == ["BootNotification", "BootNotification"]
    first, second = (datetime.fromisoformat(m["time"].replace("Z", "+00:00")) for m in calls[:2])
    assert (second - first).total_seconds() >= 1.9
    assert not [a for a in csms.get("/anomalies")["anomalies"] if a["kind"] == "request_while_rejected"]
    assert not charger.connector()["relay_closed"]


def test_tc_b_06_cs_get_variables_known_unknown_component_and_variable(csms, start_charger):
    start_201(start_charger)
    answer = csms.call("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchVariable"}},
    ]})
    assert answer["status"] == "result", answer
    results = answer["payload"]["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == ["Accepted", "UnknownComponent", "UnknownVariable"]
    assert results[0]["attributeValue"] == "300"


def test_tc_b_09_cs_set_variables_is_applied_and_read_back(csms, start_charger):
    start_201(start_charger)
    answer = csms.call("SetVariables", {"setVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "2"},
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "-5",
         "attributeType": "Target"},
    ]})
    assert answer["status"] == "result", answer
    assert answer["payload"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert answer["payload"]["setVariableResult"][1]["attributeStatus"] != "Accepted"
    read = csms.call("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
    assert read["payload"]["getVariableResult"][0]["attributeValue"] == "2"
    before = len(csms.sent_by_charger("Heartbeat"))
    wait_until(lambda: len(csms.sent_by_charger("Heartbeat")) >= before + 2, 10, "heartbeats every 2 s")


def test_tc_b_07_cs_get_base_report_arrives_as_notify_report(csms, start_charger):
    start_201(start_charger)
    answer = csms.call("GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"})
    assert answer["payload"]["status"] == "Accepted"
    reports = wait_until(lambda: (r := csms.sent_by_charger("NotifyReport")) and not r[-1].get("tbc") and r, 10,
                         "the last NotifyReport part")
    assert [r["seqNo"] for r in reports] == list(range(len(reports)))
    assert {r["requestId"] for r in reports} == {5}
    names = {(d["component"]["name"], d["variable"]["name"]) for r in reports for d in r.get("reportData", [])}
    assert ("OCPPCommCtrlr", "HeartbeatInterval") in names


def test_tc_e_local_start_plug_then_tap_started_updated_ended(csms, start_charger):
    """Part 2 E01-E07: plug in, tap the card, charge, unplug. One transactionId (a UUID string),
    Started / Updated / Ended, seqNo 0.. without gaps, the idToken in Started, stoppedReason."""
    charger = start_201(start_charger)
    charger.pilot("B")
    charger.tap("04A1B2C3")
    charger.pilot("C")
    charger.wait_status("Charging")
    tx_id = started_transaction(csms)
    assert str(uuid.UUID(tx_id)) == tx_id.lower()
    authorize = csms.sent_by_charger("Authorize")
    assert authorize and authorize[0]["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}
    charger.pilot("B")
    wait_until(lambda: any(e["eventType"] == "Updated" for e in events(csms, tx_id)), 10, "an Updated event")
    charger.pilot("A")
    end = ended(csms, tx_id)
    assert end["transactionInfo"].get("stoppedReason", "Local") in ("EVDisconnected", "Local")
    assert not charger.connector()["relay_closed"]
    sent = events(csms, tx_id)
    assert sent[0]["eventType"] == "Started" and sent[0]["idToken"]["idToken"] == "04A1B2C3"
    assert all(e["eventType"] == "Updated" for e in sent[1:-1])
    assert_seq_nos_from_zero_without_gaps(csms, tx_id)
    recorded = transaction(csms, tx_id)
    assert recorded["ended"] and recorded["id_token_status"] == "Accepted" and recorded["evse_id"] == 1
    assert seq_anomalies(csms) == []


def test_tc_e_relay_closes_only_after_the_id_token_was_accepted(csms, start_charger):
    """The relay rule in 2.0.1 terms: no energy before the CSMS accepted the IdToken. The EV asks
    for charge (state C) before any card: the contactor stays open; after the tap it closes only
    once the AuthorizeResponse Accepted was sent."""
    charger = start_201(start_charger)
    charger.pilot("C")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert not charger.connector()["relay_closed"]
        time.sleep(0.1)
    charger.tap("04A1B2C3")
    wait_until(lambda: charger.connector()["relay_closed"], 10, "contactor closed")
    closed_seen = datetime.now().astimezone()
    answers = [m for m in csms.messages() if m["direction"] == "sent" and m["message_type"] == "CALLRESULT"
               and m["action"] == "Authorize" and m["payload"]["idTokenInfo"]["status"] == "Accepted"]
    assert answers, "the contactor closed without an Accepted AuthorizeResponse"
    assert datetime.fromisoformat(answers[0]["time"].replace("Z", "+00:00")) <= closed_seen


def test_tc_c_blocked_id_token_never_closes_the_relay(csms, start_charger):
    csms.post("/policy", {"authorize_overrides": {"BLOCKED1": "Blocked"}})
    charger = start_201(start_charger)
    charger.pilot("C")
    charger.tap("BLOCKED1")
    wait_until(lambda: csms.sent_by_charger("Authorize"), 10, "Authorize")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert not charger.connector()["relay_closed"]
        time.sleep(0.1)
    assert charger.status()["authorization"]["status"] == "Blocked"
    assert [e for e in events(csms) if e["eventType"] == "Started"] == []


def test_tc_c_offline_tap_never_closes_the_relay_on_a_local_guess(csms, start_charger):
    """No local list, no cache, no offline start configured: a card tapped while the CSMS is
    away cannot be accepted, so no energy (Part 2 C01, C12)."""
    charger = start_201(start_charger)
    csms.post("/policy", {"accept_connections": False})
    csms.post("/disconnect", {"cp": CP})
    wait_until(lambda: not charger.status()["ocpp"]["connected"], 10, "charger offline")
    charger.pilot("C")
    charger.tap("04A1B2C3")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert not charger.connector()["relay_closed"]
        time.sleep(0.1)


def test_tc_f_01_remote_start_with_remote_start_id_then_remote_stop(csms, start_charger):
    """F01/F02/F03: RequestStartTransaction (remoteStartId) with the EV plugged in; Started says
    RemoteStart and carries the remoteStartId; RequestStopTransaction ends it (stoppedReason Remote)."""
    charger = start_201(start_charger)
    charger.pilot("C")
    answer = csms.call("RequestStartTransaction", {"idToken": {"idToken": "REMOTE1", "type": "Central"},
                                                   "remoteStartId": 42, "evseId": 1})
    assert answer["status"] == "result" and answer["payload"]["status"] == "Accepted", answer
    charger.wait_status("Charging")
    tx_id = started_transaction(csms)
    wait_until(lambda: charger.connector()["relay_closed"], 10, "contactor closed")
    started = events(csms, tx_id)
    assert any(e["transactionInfo"].get("remoteStartId") == 42 for e in started)
    assert transaction(csms, tx_id)["remote_start_id"] == 42
    assert started[0]["idToken"]["idToken"] == "REMOTE1"
    stop = csms.call("RequestStopTransaction", {"transactionId": tx_id})
    assert stop["payload"]["status"] == "Accepted", stop
    end = ended(csms, tx_id)
    assert end["transactionInfo"]["stoppedReason"] == "Remote"
    wait_until(lambda: not charger.connector()["relay_closed"], 5, "contactor open")
    assert_seq_nos_from_zero_without_gaps(csms, tx_id)
    unknown = csms.call("RequestStopTransaction", {"transactionId": "no-such-transaction"})
    assert unknown["payload"]["status"] == "Rejected"


def test_tc_e_power_loss_sigkill_while_charging_ends_with_power_loss_and_the_next_seq_no(csms, start_charger):
    """E: a crash while charging; at the next start the transaction ends with stoppedReason
    PowerLoss and the seqNo after the last one sent, the contactor open."""
    charger = start_201(start_charger)
    charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    wait_until(lambda: charger.connector()["relay_closed"], 10, "contactor closed")
    before = [e["seqNo"] for e in events(csms, tx_id)]
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(10)
    restarted = start_201(start_charger)
    end = ended(csms, tx_id)
    assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert end["seqNo"] == max(before) + 1
    assert not restarted.connector()["relay_closed"]
    assert_seq_nos_from_zero_without_gaps(csms, tx_id)
    assert seq_anomalies(csms) == []


def test_tc_e_offline_events_are_delivered_in_order_with_their_original_time(csms, start_charger):
    """E: events made while the CSMS is away are queued, sent in order after the reconnect with
    the time they happened and offline true (Part 2 E.FR "offline")."""
    charger = start_201(start_charger)
    charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    online_count = len(events(csms, tx_id))
    csms.post("/policy", {"accept_connections": False})
    csms.post("/disconnect", {"cp": CP})
    wait_until(lambda: not charger.status()["ocpp"]["connected"], 10, "charger offline")
    charger.pilot("B")
    time.sleep(1.2)
    charger.pilot("A")
    wait_until(lambda: charger.connector()["status"] == "Available", 10, "connector Available")
    assert not charger.connector()["relay_closed"]
    offline_until = time.time()
    time.sleep(1.0)
    csms.post("/policy", {"accept_connections": True})
    end = ended(csms, tx_id, timeout=20)
    queued = events(csms, tx_id)[online_count:]
    assert len(queued) >= 2 and queued[-1] is not None and queued[-1]["eventType"] == "Ended"
    assert all(e.get("offline") for e in queued), [e.get("offline") for e in queued]
    stamps = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp() for e in queued]
    assert stamps == sorted(stamps) and stamps[-1] <= offline_until
    assert stamps[-1] - stamps[0] >= 1.0  # each kept the time it happened, not the time it was sent
    assert end["seqNo"] == queued[-1]["seqNo"]
    assert_seq_nos_from_zero_without_gaps(csms, tx_id)
    assert seq_anomalies(csms) == []


def test_tc_e_started_answered_blocked_after_an_accepted_authorize_ends_the_energy(csms, start_charger):
    """Authorize Accepted, then the TransactionEventResponse of Started says Blocked (the CSMS
    changed its mind): with StopTxOnInvalidId true (its default) the station stops the energy and
    ends the transaction (Part 2 E05.FR.02/03 with TxStopPoint Authorized)."""
    csms.post("/policy", {"start_overrides": {"04A1B2C3": "Blocked"}})
    charger = start_201(start_charger)
    charger.pilot("C")
    charger.tap("04A1B2C3")
    tx_id = started_transaction(csms)
    end = ended(csms, tx_id)
    assert (end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == ("Deauthorized", "DeAuthorized")
    wait_until(lambda: not charger.connector()["relay_closed"], 5, "contactor open")
    assert transaction(csms, tx_id)["id_token_status"] == "Blocked"


def test_evcp_bench_ocpp_2_0_1_runs_a_session_against_its_own_central_system(tmp_path):
    """``./dev.sh bench --ocpp 2.0.1``: the bench's charger speaks 2.0.1 to the built-in central system."""
    import json
    import os
    import subprocess
    import sys
    from urllib.request import Request, urlopen

    from .conftest import free_port

    api, csms_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "evcp", "bench", "--ocpp", "2.0.1", "--state-dir",
                                str(tmp_path / "state"), "--listen", f"127.0.0.1:{api}",
                                "--csms-listen", f"127.0.0.1:{csms_port}", "--control", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{api}"
    try:
        def status():
            return json.loads(urlopen(base + "/api/status", timeout=5).read())

        def post(path, body):
            urlopen(Request(base + path, json.dumps(body).encode()), timeout=5).read()

        wait_until(lambda: status()["ocpp"]["registration"] == "Accepted", 20, "bench boot")
        assert status()["ocpp"]["version"] == "2.0.1"
        post("/api/bench/pilot", {"connector": 1, "state": "C"})
        post("/api/bench/tag", {"id_tag": "04A1B2C3"})
        wait_until(lambda: status()["connectors"][0]["relay_closed"], 10, "charging over 2.0.1")
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=15)[0]
    assert process.returncode == 0, output[-2000:]
    assert "status page" in output
    assert "every contactor OPEN" in output and "stopped; every contactor open" in output
