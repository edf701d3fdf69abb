"""Device problems in OCPP 2.0.1 (Part 2 G05, N07): ``evcp.ocpp201.problems`` alone, then the
adapter over the real core and simulated hardware against the loopback CSMS."""

from __future__ import annotations

import asyncio

import pytest
from ocpp.exceptions import InternalError
from ocpp.messages import Call, _validate_payload

from evcp.core.model import Device
from evcp.ocpp201.device_model import DeviceModel, station_variables
from evcp.ocpp201.problems import ProblemReports

from .csms import Csms
from .test_adapter import charging_session, registered


def reports() -> tuple[ProblemReports, DeviceModel]:
    model = DeviceModel(station_variables(2, "evcp", "bench", None, "test"))
    return ProblemReports(lambda component, evse, value: model.set_internal(component, "Problem", value, evse)), model


def schema_valid(payload: dict) -> dict:
    _validate_payload(Call(unique_id="1", action="NotifyEvent", payload=payload), "2.0.1")
    return payload


def test_a_problem_is_its_component_s_problem_variable_in_the_device_model():
    problems, model = reports()
    problems.changed(2, Device.METER, True, "no answer from Modbus unit 1")
    problems.changed(0, Device.READER, True, "no answer on SPI")
    assert model.get_variable({"name": "FiscalMetering", "evse": {"id": 2}}, {"name": "Problem"}, None).value == "true"
    assert model.get_variable({"name": "FiscalMetering", "evse": {"id": 1}}, {"name": "Problem"}, None).value == "false"
    assert model.get("TokenReader", "Problem") == "true"
    summary = {(r["component"]["name"], r["component"].get("evse", {}).get("id"))
               for r in model.report("SummaryInventory") if r["variable"]["name"] == "Problem"}
    assert ("FiscalMetering", 2) in summary and ("TokenReader", None) in summary


def test_the_notify_event_tells_what_changed_with_the_reason_and_the_transaction():
    problems, _ = reports()
    problems.changed(1, Device.LOCK, True, "feedback did not confirm within 1 s " + "x" * 600)
    problems.changed(0, Device.READER, True, "")
    payload = schema_valid(problems.payload(problems.untold(), {1: "tx-1"}.get, 1_800_000_000.0))
    assert payload["seqNo"] == 0 and payload["tbc"] is False
    reader, lock = payload["eventData"]
    assert reader["component"] == {"name": "TokenReader"} and "transactionId" not in reader and "techInfo" not in reader
    assert lock["component"] == {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}}
    assert (lock["variable"], lock["actualValue"], lock["trigger"], lock["transactionId"]) == (
        {"name": "Problem"}, "true", "Delta", "tx-1")
    assert len(lock["techInfo"]) == 500
    assert lock["eventId"] != reader["eventId"]


async def test_only_what_the_csms_was_not_told_is_sent_and_a_failed_send_is_tried_again():
    problems, _ = reports()
    sent: list[dict] = []

    async def call(action, payload):
        sent.append(schema_valid(payload))

    problems.changed(1, Device.METER, True, "no answer")
    await problems.tell(call, lambda evse: None)
    await problems.tell(call, lambda evse: None)
    assert len(sent) == 1, "told once"
    problems.changed(1, Device.METER, False, "")

    async def refused(action, payload):
        raise InternalError(description="busy")

    with pytest.raises(InternalError):
        await problems.tell(refused, lambda evse: None)
    await problems.tell(call, lambda evse: None)
    [ended] = sent[1]["eventData"]
    assert (ended["actualValue"], ended["cleared"]) == ("false", True)
    problems.changed(1, Device.RELAY, True, "welded")
    problems.changed(1, Device.RELAY, False, "")
    await problems.tell(call, lambda evse: None)
    assert len(sent) == 2, "a problem that came and went while untold: nothing to tell"


# ----------------------------------------------------------------- the adapter, end to end


def problem_events(csms: Csms) -> list[dict]:
    return [e for m in csms.messages("NotifyEvent") for e in m["eventData"] if e["variable"]["name"] == "Problem"]


async def test_n_07_a_meter_fault_while_charging_is_told_with_its_transaction_and_its_end_too(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await charging_session(charger, csms)
    charger.hardware.bench.set_fault("meter", True)
    [began] = await csms.wait_for(lambda: problem_events(csms), timeout=15)
    assert (began["component"], began["actualValue"], began["transactionId"]) == (
        {"name": "FiscalMetering", "evse": {"id": 1}}, "true", tx_id)
    assert began["techInfo"]
    assert charger.hardware.connectors[0].relay.is_closed, "the session goes on"
    answer = await csms.session.send("GetVariables", {"getVariableData": [
        {"component": {"name": "FiscalMetering", "evse": {"id": 1}}, "variable": {"name": "Problem"}}]})
    assert answer["getVariableResult"][0]["attributeValue"] == "true"
    charger.hardware.bench.set_fault("meter", False)
    ended = await csms.wait_for(lambda: problem_events(csms)[1:], timeout=15)
    assert (ended[0]["component"]["name"], ended[0]["actualValue"]) == ("FiscalMetering", "false")


async def test_a_problem_that_began_while_offline_is_told_once_registered(start_station):
    csms = Csms()
    csms.policy.boot = ["Pending", "Accepted"]
    csms.policy.interval = 3
    await csms.start()
    charger = await start_station(csms)
    await csms.wait_for(lambda: csms.messages("BootNotification"))
    charger.hardware.bench.set_fault("reader", True)
    async with asyncio.timeout(3):
        while Device.READER not in charger.controller.station.station_faults:
            await asyncio.sleep(0.05)
    assert charger.controller.adapter.registration == "Pending" and not csms.messages("NotifyEvent")
    await registered(charger, csms)
    [began] = await csms.wait_for(lambda: problem_events(csms), timeout=15)
    assert (began["component"], began["actualValue"]) == ({"name": "TokenReader"}, "true")
    await csms.stop()
