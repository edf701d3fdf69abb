"""The bench central system's OCPP 2.0.1 side, driven by raw OCPP-J 2.0.1 frames over real websockets."""

import asyncio
import json
import urllib.request
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from evcp.bench.csms import CentralSystem, Policy

STATION = {"model": "Bench", "vendorName": "evcp"}
NOW = "2026-05-01T10:00:00.000Z"


@pytest.fixture
async def system():
    central = CentralSystem(port=0, control_port=0, policy=Policy(authorize_overrides={"BLOCKED": "Blocked"}))
    await central.start()
    yield central
    await central.stop()


class RawStation:
    """A websocket that sends OCPP-J CALLs and returns the answers as they are on the wire."""

    def __init__(self, websocket):
        self.websocket = websocket

    async def call(self, action: str, payload: dict) -> list:
        unique_id = str(uuid.uuid4())
        await self.websocket.send(json.dumps([2, unique_id, action, payload]))
        answer = json.loads(await asyncio.wait_for(self.websocket.recv(), 5))
        assert answer[1] == unique_id
        return answer

    async def result(self, action: str, payload: dict) -> dict:
        answer = await self.call(action, payload)
        assert answer[0] == 3, answer
        return answer[2]


def station(system, cp_id="CS-1", subprotocols=("ocpp2.0.1",)):
    return connect(f"{system.url}/ocpp/{cp_id}", subprotocols=list(subprotocols))


def control_get(system, path: str) -> dict:
    with urllib.request.urlopen(system.control_url + path, timeout=5) as response:
        return json.loads(response.read())


def event(kind: str, seq_no: int, tx_id: str, **extra) -> dict:
    return {"eventType": kind, "timestamp": NOW, "triggerReason": "Authorized", "seqNo": seq_no,
            "transactionInfo": {"transactionId": tx_id, **extra.pop("info", {})}, **extra}


async def test_the_station_s_preference_picks_the_protocol_and_an_unknown_one_is_refused(system):
    async with station(system, "CS-both", ("ocpp2.0.1", "ocpp1.6")) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
    async with station(system, "CS-16", ("ocpp1.6", "ocpp2.0.1")) as ws:
        assert ws.subprotocol == "ocpp1.6"
    with pytest.raises(InvalidStatus) as refused:
        async with station(system, "CS-x", ("ocpp2.1",)):
            pass
    assert refused.value.response.status_code == 400
    assert system.ledger.chargers["CS-both"].ocpp_version == "2.0.1"
    assert system.ledger.chargers["CS-16"].ocpp_version == "1.6"
    assert system.ledger.chargers["CS-both"].subprotocols_offered == ["ocpp2.0.1, ocpp1.6"]
    listed = {c["id"]: c for c in (await asyncio.to_thread(control_get, system, "/chargers"))["chargers"]}
    assert listed["CS-16"]["subprotocols_offered"] == ["ocpp1.6, ocpp2.0.1"]


async def test_a_central_system_of_1_6_only_hands_a_station_offering_both_1_6():
    from evcp.bench.csms import parse_args

    assert parse_args(["--ocpp-versions", "1.6"]).ocpp_versions == ("ocpp1.6",)
    assert parse_args([]).ocpp_versions == ("ocpp1.6", "ocpp2.0.1")
    with pytest.raises(SystemExit):
        parse_args(["--ocpp-versions", "2.1"])
    only_1_6 = parse_args(["--ocpp-versions", "1.6"]).ocpp_versions
    central = CentralSystem(port=0, control_port=None, subprotocols=only_1_6)
    await central.start()
    try:
        async with station(central, "CS-auto", ("ocpp2.0.1", "ocpp1.6")) as ws:
            assert ws.subprotocol == "ocpp1.6"
    finally:
        await central.stop()
    assert central.ledger.chargers["CS-auto"].subprotocols_offered == ["ocpp2.0.1, ocpp1.6"]


async def test_boot_follows_the_policy_then_status_per_evse_and_connector_is_recorded(system):
    system.policy.update({"boot_responses": [{"status": "Pending", "interval": 7}]})
    async with station(system) as ws:
        raw = RawStation(ws)
        first = await raw.result("BootNotification", {"chargingStation": STATION, "reason": "PowerUp"})
        assert (first["status"], first["interval"]) == ("Pending", 7)
        second = await raw.result("BootNotification", {"chargingStation": STATION, "reason": "PowerUp"})
        assert second["status"] == "Accepted" and second["interval"] == system.policy.heartbeat_interval
        await raw.result("StatusNotification", {"timestamp": NOW, "connectorStatus": "Available",
                                                "evseId": 1, "connectorId": 1})
        assert "currentTime" in await raw.result("Heartbeat", {})
    charger = (await asyncio.to_thread(control_get, system, "/chargers"))["chargers"][0]
    assert charger["boot_count"] == 2 and charger["registration_status"] == "Accepted"
    assert charger["evse_connectors"]["1/1"]["connector_status"] == "Available"
    assert charger["last_boot"]["reason"] == "PowerUp"


async def test_authorize_and_transaction_event_accept_every_token_but_a_blocked_one(system):
    async with station(system) as ws:
        raw = RawStation(ws)
        ok = await raw.result("Authorize", {"idToken": {"idToken": "CARD", "type": "ISO14443"}})
        blocked = await raw.result("Authorize", {"idToken": {"idToken": "BLOCKED", "type": "ISO14443"}})
        assert ok["idTokenInfo"]["status"] == "Accepted" and blocked["idTokenInfo"]["status"] == "Blocked"
        started = await raw.result("TransactionEvent", event(
            "Started", 0, "tx-blocked", idToken={"idToken": "BLOCKED", "type": "ISO14443"}))
        assert started["idTokenInfo"]["status"] == "Blocked"
        no_token = await raw.result("TransactionEvent", event("Updated", 1, "tx-blocked"))
        assert "idTokenInfo" not in no_token


async def test_seq_no_gaps_duplicates_and_retransmissions_of_a_transaction(system):
    meter = [{"timestamp": NOW, "sampledValue": [{"value": 1000.0}]}]
    meter_end = [{"timestamp": NOW, "sampledValue": [{"value": 1.5, "unitOfMeasure": {"unit": "kWh"}}]}]
    async with station(system) as ws:
        raw = RawStation(ws)
        token = {"idToken": "CARD", "type": "ISO14443"}
        first = event("Started", 0, "tx-1", idToken=token, evse={"id": 1, "connectorId": 1}, meterValue=meter,
                      info={"chargingState": "Charging"})
        await raw.result("TransactionEvent", first)
        await raw.result("TransactionEvent", first)  # the same event again: its answer was lost
        await raw.result("TransactionEvent", event("Updated", 1, "tx-1"))
        await raw.result("TransactionEvent", event("Updated", 1, "tx-1", triggerReason="MeterValuePeriodic"))
        await raw.result("TransactionEvent", event("Ended", 4, "tx-1", meterValue=meter_end,
                                                   info={"stoppedReason": "EVDisconnected"}))
        await raw.result("TransactionEvent", event("Updated", 0, "tx-unknown"))
    listed = (await asyncio.to_thread(control_get, system, "/transactions"))["transactions"]
    [tx] = [t for t in listed if t["transaction_id"] == "tx-1"]
    assert tx["protocol"] == "2.0.1" and tx["seq_nos"] == [0, 1, 4] and tx["last_seq_no"] == 4
    assert (tx["evse_id"], tx["connector_id"], tx["id_token"]["id_token"]) == (1, 1, "CARD")
    assert tx["started"] and tx["ended"] and not tx["open"] and tx["stopped_reason"] == "EVDisconnected"
    assert tx["retransmitted_events"] == 1 and tx["energy_wh"] == 500.0 and tx["id_token_status"] == "Accepted"
    anomalies = (await asyncio.to_thread(control_get, system, "/anomalies"))["anomalies"]
    kinds = [(a["kind"], a.get("transaction_id")) for a in anomalies]
    assert kinds == [("seq_no_duplicate", "tx-1"), ("seq_no_gap", "tx-1"), ("event_before_started", "tx-unknown")]
    gap = system.ledger.anomalies[1]
    assert gap["missing"] == [2, 3]


async def test_a_request_the_201_schema_rejects_is_a_callerror_and_an_anomaly(system):
    async with station(system) as ws:
        raw = RawStation(ws)
        answer = await raw.call("BootNotification", {"chargingStation": STATION, "reason": "Sunrise"})
        assert answer[0] == 4 and answer[2] in ("FormatViolation", "FormationViolation", "PropertyConstraintViolation")
        missing = await raw.call("TransactionEvent", {"eventType": "Started", "seqNo": 0})
        assert missing[0] == 4
    assert [a["action"] for a in system.ledger.anomalies if a["kind"] == "schema_violation"] == [
        "BootNotification", "TransactionEvent"]
    assert system.ledger.chargers["CS-1"].boot_count == 0


async def test_call_sends_201_requests_and_checks_them_against_the_201_schemas(system):
    from evcp.bench.csms import InvalidCall

    async with station(system) as ws:
        async def answer_one():
            request = json.loads(await ws.recv())
            await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
            return request

        answering = asyncio.create_task(answer_one())
        outcome = await system.call("CS-1", "RequestStartTransaction",
                                    {"idToken": {"idToken": "CARD", "type": "Central"}, "remoteStartId": 7})
        request = await answering
        assert request[2] == "RequestStartTransaction" and request[3]["remoteStartId"] == 7
        assert outcome.status == "result" and outcome.payload == {"status": "Accepted"}
        with pytest.raises(InvalidCall, match="OCPP 2.0.1 action 'RemoteStartTransaction'"):
            await system.call("CS-1", "RemoteStartTransaction", {"idTag": "CARD"})
        with pytest.raises(InvalidCall):
            await system.call("CS-1", "Reset", {"type": "Sometime"})


async def test_answers_to_no_call_of_the_central_system_are_dropped_not_queued(system):
    async with station(system) as ws:
        raw = RawStation(ws)
        for stray in ('[3,"nobody-asked",{}]', '[4,"nobody-asked","GenericError","",{}]'):
            await ws.send(stray)
        await raw.result("Heartbeat", {})
        assert system._sessions["CS-1"].charge_point._response_queue.empty()


async def test_report_charging_profiles_is_recorded(system):
    profile = {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Relative",
               "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                                     "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}]}
    async with station(system) as ws:
        raw = RawStation(ws)
        await raw.result("BootNotification", {"chargingStation": STATION, "reason": "PowerUp"})
        await raw.result("ReportChargingProfiles", {"requestId": 4, "chargingLimitSource": "CSO", "evseId": 1,
                                                    "chargingProfile": [profile], "tbc": False})
    chargers = (await asyncio.to_thread(control_get, system, "/chargers"))["chargers"]
    charger = next(c for c in chargers if c["id"] == "CS-1")
    reports = charger["charging_profile_reports"]
    assert [(r["request_id"], r["evse_id"], r["charging_profile"][0]["id"]) for r in reports] == [(4, 1, 1)]
