"""The OCPP 2.0.1 adapter against a real 2.0.1 CSMS on loopback (every message schema-checked
on both sides), over the real core and the bench's simulated hardware."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

from .csms import Csms


async def relay_closed(charger, timeout: float = 5.0) -> bool:
    relay = charger.hardware.connectors[0].relay
    try:
        async with asyncio.timeout(timeout):
            while not relay.is_closed:
                await asyncio.sleep(0.02)
    except TimeoutError:
        return False
    return True


def never_energized(charger) -> bool:
    """The simulated contactor of EVSE 1 never closed, not even for a moment."""
    contactor = charger.hardware.bench.simulated[0].contactor
    return contactor is not None and "closed" not in [event for _, event in contactor.history]


async def registered(charger, csms: Csms) -> None:
    await csms.wait_for(lambda: charger.controller and charger.controller.adapter.registration == "Accepted"
                        or None)
    await csms.wait_for(lambda: csms.messages("StatusNotification"))


def events(csms: Csms) -> list[dict]:
    return csms.messages("TransactionEvent")


async def test_tc_b_01_boot_power_up_then_status_of_every_connector(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    boot = csms.messages("BootNotification")[0]
    assert boot["reason"] == "PowerUp"
    assert boot["chargingStation"]["vendorName"] and boot["chargingStation"]["model"]
    status = csms.messages("StatusNotification")[0]
    assert (status["evseId"], status["connectorId"], status["connectorStatus"]) == (1, 1, "Available")


async def test_tc_b_02_pending_then_accepted_nothing_else_before(csms, start_station):
    csms.policy.boot = ["Pending", "Accepted"]
    csms.policy.interval = 1
    charger = await start_station(csms)
    await registered(charger, csms)
    names = [name for name, _ in csms.received]
    assert names[:2] == ["BootNotification", "BootNotification"]
    assert "StatusNotification" in names[2:]


async def test_tc_b_03_rejected_nothing_but_boot_notification_until_accepted_after_the_interval(csms, start_station):
    """Part 2 B03: after a Rejected BootNotificationResponse the station sends nothing until the
    interval has passed, then BootNotification again; a card and a plugged EV meanwhile change nothing."""
    csms.policy.boot = ["Rejected", "Rejected", "Accepted"]
    csms.policy.interval = 1
    charger = await start_station(csms)
    async with asyncio.timeout(5):
        while charger.controller.adapter.registration != "Rejected":
            await asyncio.sleep(0.01)
    charger.hardware.bench.set_pilot(1, "B")
    charger.hardware.bench.present_tag("04A1B2C3")
    await registered(charger, csms)
    names = [name for name, _ in csms.received]
    assert names[:3] == ["BootNotification"] * 3
    first, second, third = csms.arrived[:3]
    assert second - first >= 0.95 and third - second >= 0.95  # not before the interval (1 s)
    assert csms.messages("BootNotification")[2]["reason"] == "PowerUp"
    assert not await relay_closed(charger, timeout=0.5)


async def test_tc_e_relay_closes_only_after_authorize_accepted_and_events_are_ordered(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "B")
    bench.present_tag("04A1B2C3")
    bench.set_pilot(1, "C")
    assert await relay_closed(charger)
    authorize = csms.messages("Authorize")[0]
    assert authorize["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    tx_id = started[0]["transactionInfo"]["transactionId"]
    assert uuid.UUID(tx_id)
    bench.set_pilot(1, "A")
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert not charger.hardware.connectors[0].relay.is_closed
    assert ended[0]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    mine = [e for e in events(csms) if e["transactionInfo"]["transactionId"] == tx_id]
    assert [e["seqNo"] for e in mine] == list(range(len(mine)))


async def test_tc_c_rejected_id_token_never_closes_the_contactor(csms, start_station):
    csms.policy.authorize = "Invalid"
    charger = await start_station(csms)
    await registered(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag("04A1B2C3")
    await csms.wait_for(lambda: csms.messages("Authorize"))
    assert not await relay_closed(charger, timeout=1.5)
    assert not [e for e in events(csms) if "idToken" in e]


async def set_variables(csms: Csms, component: str, **values: str) -> None:
    answer = await csms.session.send("SetVariables", {"setVariableData": [
        {"component": {"name": component}, "variable": {"name": name}, "attributeValue": value}
        for name, value in values.items()]})
    assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}, answer


async def test_tc_e_authorized_start_point_card_before_the_cable_starts_at_once_then_cable_plugged_in(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await set_variables(csms, "TxCtrlr", TxStartPoint="Authorized")
    bench = charger.hardware.bench
    bench.present_tag("04A1B2C3")
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    assert (started[0]["triggerReason"], started[0]["transactionInfo"]["chargingState"]) == ("Authorized", "Idle")
    assert started[0]["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}
    assert not charger.hardware.connectors[0].relay.is_closed
    bench.set_pilot(1, "B")
    await csms.wait_for(lambda: [e for e in events(csms) if e["triggerReason"] == "CablePluggedIn"])
    bench.set_pilot(1, "C")
    assert await relay_closed(charger)
    charging = await csms.wait_for(lambda: [e for e in events(csms)
                                            if e["transactionInfo"].get("chargingState") == "Charging"])
    mine = events(csms)[:events(csms).index(charging[0]) + 1]
    assert [(e["eventType"], e["triggerReason"]) for e in mine[:2]] == [
        ("Started", "Authorized"), ("Updated", "CablePluggedIn")]
    assert mine[1]["transactionInfo"]["chargingState"] == "EVConnected"
    assert [e["seqNo"] for e in mine] == list(range(len(mine)))
    assert len({e["transactionInfo"]["transactionId"] for e in events(csms)}) == 1


async def test_tc_e_authorized_start_point_started_answered_blocked_before_the_cable_never_gives_energy(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await set_variables(csms, "TxCtrlr", TxStartPoint="Authorized")
    csms.policy.transaction_id_token = "Blocked"  # Authorize Accepted, then the CSMS changes its mind (E05)
    bench = charger.hardware.bench
    bench.present_tag("04A1B2C3")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    transactions = charger.controller.adapter.transactions
    async with asyncio.timeout(5):
        while transactions.by_evse[1].refused is None:  # the TransactionEventResponse is in
            await asyncio.sleep(0.02)
    bench.set_pilot(1, "C")
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("Deauthorized",
                                                                                          "DeAuthorized")
    assert never_energized(charger), "never any energy"


async def test_tc_e_authorized_start_point_started_answered_blocked_after_the_cable_came_opens_the_contactor(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await set_variables(csms, "TxCtrlr", TxStartPoint="Authorized")
    csms.policy.transaction_id_token = "Blocked"
    csms.policy.transaction_event_delay_s = 1.5  # the EV comes, and charges, before the answer
    bench = charger.hardware.bench
    bench.present_tag("04A1B2C3")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    bench.set_pilot(1, "C")
    assert await relay_closed(charger)  # accepted by its AuthorizeResponse
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert ended[0]["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert not charger.hardware.connectors[0].relay.is_closed


async def charging_session(charger, csms: Csms, tag: str = "04A1B2C3") -> str:
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(tag)
    assert await relay_closed(charger)
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    return started[-1]["transactionInfo"]["transactionId"]


async def test_tc_e_tx_stop_point_power_path_closed_ends_the_transaction_when_the_ev_stops_charging(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await set_variables(csms, "TxCtrlr", TxStopPoint="PowerPathClosed")
    tx_id = await charging_session(charger, csms)
    readings = []
    fresh_energy_wh = charger.controller.fresh_energy_wh

    async def counted(evse):
        readings.append(evse)
        return await fresh_energy_wh(evse)

    charger.controller.fresh_energy_wh = counted
    bench = charger.hardware.bench
    bench.set_pilot(1, "B")  # the EV opens S2: the contactor opens
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert ended[0]["transactionInfo"]["transactionId"] == tx_id
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("ChargingStateChanged",
                                                                                          "StoppedByEV")
    async with asyncio.timeout(5):
        while charger.controller.station.connectors[1].transaction is not None:  # the core's ends too
            await asyncio.sleep(0.02)
    assert readings == [1], "one fresh reading for the one Ended"
    bench.set_pilot(1, "C")  # the EV, still plugged in, asks again
    assert not await relay_closed(charger, timeout=1.5)
    assert len([e for e in events(csms) if e["eventType"] == "Started"]) == 1, "no new transaction by itself"
    await csms.wait_for(lambda: statuses(csms)[-1] == "Occupied")


async def test_tc_e_energy_transfer_start_and_stop_points_follow_what_the_ev_draws(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await set_variables(csms, "TxCtrlr", TxStartPoint="EnergyTransfer", TxStopPoint="EnergyTransfer")
    ev = charger.hardware.bench.simulated[0].ev
    ev.max_power_w = 0.0  # in state C, but drawing nothing yet
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("04A1B2C3")
    assert await relay_closed(charger)
    await asyncio.sleep(2.5)  # more than two meter readings
    assert not events(csms), "the contactor closed, but no energy flows: no transaction yet"
    ev.max_power_w = 7400.0
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    assert started[0]["idToken"]["idToken"] == "04A1B2C3"
    ev.max_power_w = 0.0  # full: the EV stops drawing, still in state C
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert ended[0]["transactionInfo"]["stoppedReason"] == "StoppedByEV"
    relay = charger.hardware.connectors[0].relay
    async with asyncio.timeout(5):
        while relay.is_closed:
            await asyncio.sleep(0.02)


def contexts(meter_value: dict) -> set[tuple[str, str]]:
    return {(v["context"], v["measurand"]) for v in meter_value["sampledValue"]}


async def test_tc_j_02_configured_measurands_in_started_updated_and_ended(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    energy, power, current = "Energy.Active.Import.Register", "Power.Active.Import", "Current.Import"
    await set_variables(csms, "SampledDataCtrlr", TxStartedMeasurands=f"{energy},{power}", TxUpdatedInterval="1",
                        TxUpdatedMeasurands=power, TxEndedMeasurands=f"{energy},{current}", TxEndedInterval="1")
    await set_variables(csms, "AlignedDataCtrlr", Interval="1", Measurands=energy, TxEndedInterval="1",
                        TxEndedMeasurands=power)
    tx_id = await charging_session(charger, csms)
    started = next(e for e in events(csms) if e["eventType"] == "Started")
    assert contexts(started["meterValue"][0]) == {("Transaction.Begin", energy), ("Transaction.Begin", power)}
    await csms.wait_for(lambda: {"MeterValuePeriodic", "MeterValueClock"} <= {e["triggerReason"] for e in events(csms)}
                        and len(events(csms)) >= 8, timeout=15)
    charger.hardware.bench.present_tag("04A1B2C3")
    ended = (await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"]))[0]
    updated = [e for e in events(csms) if e["eventType"] == "Updated"]
    periodic = [e for e in updated if e["triggerReason"] == "MeterValuePeriodic"]
    clock = [e for e in updated if e["triggerReason"] == "MeterValueClock"]
    assert periodic and all(contexts(e["meterValue"][0]) == {("Sample.Periodic", power)} for e in periodic)
    assert clock and all(contexts(e["meterValue"][0]) == {("Sample.Clock", energy)} for e in clock)
    readings = ended["meterValue"]
    assert contexts(readings[-1]) == {("Transaction.End", energy), ("Transaction.End", current)}
    kept = [contexts(mv) for mv in readings[:-1]]
    assert {("Sample.Periodic", energy), ("Sample.Periodic", current)} in kept
    assert {("Sample.Clock", power)} in kept
    assert all(e["transactionInfo"]["transactionId"] == tx_id for e in events(csms))


async def test_tc_b_06_get_variables_statuses(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    answer = await csms.session.send("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "NoSuchVariable"}},
        {"component": {"name": "NoSuchController"}, "variable": {"name": "Enabled"}},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}, "attributeType": "MaxSet"},
    ]})
    results = answer["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == [
        "Accepted", "UnknownVariable", "UnknownComponent", "NotSupportedAttributeType"]
    assert results[0]["attributeValue"] == "300"  # the interval of the BootNotificationResponse


async def test_tc_b_set_variables_persist_and_change_behaviour(csms, start_station, tmp_path):
    charger = await start_station(csms)
    await registered(charger, csms)
    answer = await csms.session.send("SetVariables", {"setVariableData": [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}, "attributeValue": "EVConnected"},
        {"component": {"name": "ChargingStation"}, "variable": {"name": "Model"}, "attributeValue": "x"},
    ]})
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Accepted", "Rejected"]
    charger.hardware.bench.set_pilot(1, "B")
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    assert started[0]["triggerReason"] == "CablePluggedIn" and "idToken" not in started[0]
    variables = charger.controller.store.load_document("ocpp201-variables")
    assert variables["TxCtrlr///TxStartPoint/"] == "EVConnected"


async def test_tc_b_07_get_base_report_in_parts(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    answer = await csms.session.send("GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"})
    assert answer == {"status": "Accepted"}
    reports = await csms.wait_for(lambda: [r for r in csms.messages("NotifyReport") if not r["tbc"]] and
                                  csms.messages("NotifyReport"))
    assert [r["seqNo"] for r in reports] == list(range(len(reports))) and len(reports) >= 2
    assert all(r["requestId"] == 5 for r in reports)
    count = sum(len(r["reportData"]) for r in reports)
    assert count == len(charger.controller.adapter.device_model.variables)
    assert (await csms.session.send("GetBaseReport", {"requestId": 6, "reportBase": "SummaryInventory"}))["status"] \
        == "Accepted"


async def test_tc_f_01_remote_start_then_remote_stop(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    charger.hardware.bench.set_pilot(1, "C")
    answer = await csms.session.send("RequestStartTransaction", {
        "idToken": {"idToken": "APP-USER-1", "type": "Central"}, "remoteStartId": 77, "evseId": 1})
    assert answer["status"] == "Accepted"
    assert await relay_closed(charger)
    assert not csms.messages("Authorize")  # AuthorizeRemoteStart false: the CSMS's request is the acceptance
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    assert started[0]["transactionInfo"]["remoteStartId"] == 77
    assert started[0]["idToken"] == {"idToken": "APP-USER-1", "type": "Central"}
    tx_id = started[0]["transactionInfo"]["transactionId"]
    assert (await csms.session.send("RequestStopTransaction", {"transactionId": "not-a-transaction"}))["status"] \
        == "Rejected"
    assert (await csms.session.send("RequestStopTransaction", {"transactionId": tx_id}))["status"] == "Accepted"
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert not charger.hardware.connectors[0].relay.is_closed
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("RemoteStop", "Remote")


async def test_tc_f_a_remote_start_that_timed_out_leaves_nothing_behind_for_a_later_local_start(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await set_variables(csms, "TxCtrlr", EVConnectionTimeOut="1")
    token = {"idToken": "04A1B2C3", "type": "ISO14443"}
    answer = await csms.session.send("RequestStartTransaction", {"idToken": token, "remoteStartId": 5, "evseId": 1})
    assert answer["status"] == "Accepted"
    await csms.wait_for(lambda: statuses(csms)[-2:] == ["Occupied", "Available"])  # no EV within the timeout
    assert not events(csms), "TxStartPoint PowerPathClosed: no transaction was started for it"
    await charging_session(charger, csms, "04A1B2C3")  # the same card, at the station, later
    started, = [e for e in events(csms) if e["eventType"] == "Started"]
    assert "remoteStartId" not in started["transactionInfo"] and started["idToken"] == token
    assert not [e for e in events(csms) if e["triggerReason"] == "RemoteStart"]


class Forgetful(set):
    """An adapter memory of AuthorizeResponses that keeps nothing: every start must then wait
    for the TransactionEventResponse's idTokenInfo."""

    def add(self, item) -> None:
        pass


async def test_tc_e_without_an_accepted_authorize_the_transaction_event_response_decides_rejected(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    charger.controller.adapter._accepted_tokens = Forgetful()
    csms.policy.transaction_id_token = "Invalid"
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("04A1B2C3")
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    started = [e for e in events(csms) if e["eventType"] == "Started"][0]
    assert started["idToken"]["idToken"] == "04A1B2C3"  # sent at once, though TxStartPoint is PowerPathClosed
    assert ended[0]["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert not await relay_closed(charger, timeout=1.0)


async def test_tc_e_without_an_accepted_authorize_the_transaction_event_response_decides_accepted(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    charger.controller.adapter._accepted_tokens = Forgetful()
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("04A1B2C3")
    assert await relay_closed(charger)
    assert [e for e in events(csms) if e["eventType"] == "Started"]


async def test_tc_e_a_started_whose_id_token_is_never_answered_ends_the_attempt_without_energy(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    answer = await csms.session.send("SetVariables", {"setVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": name, "instance": "TransactionEvent"},
         "attributeValue": value} for name, value in (("MessageAttempts", "2"), ("MessageAttemptInterval", "1"))]})
    assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
    charger.controller.adapter._accepted_tokens = Forgetful()  # the start waits for the idTokenInfo
    csms.policy.transaction_event_errors = 2  # E13: every attempt of the Started fails
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag("04A1B2C3")
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"], timeout=15)
    attempts = [e for e in events(csms) if e["eventType"] == "Started"]
    assert len(attempts) == 2 and attempts[0]["transactionInfo"]["transactionId"] == \
        ended[0]["transactionInfo"]["transactionId"]
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("Deauthorized",
                                                                                          "DeAuthorized")
    assert charger.controller.station.connectors[1].transaction is None, "the core is not left starting"
    assert never_energized(charger), "never any energy"
    assert statuses(csms)[-1] == "Occupied"
    bench.set_pilot(1, "A")
    await csms.wait_for(lambda: statuses(csms)[-1] == "Available")


async def test_tc_b_11_reset_immediate_stops_transactions_and_boots_with_remote_reset(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await charging_session(charger, csms)
    assert (await csms.session.send("Reset", {"type": "Immediate"}))["status"] == "Accepted"
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert ended[0]["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert not charger.hardware.connectors[0].relay.is_closed
    boots = await csms.wait_for(lambda: len(csms.messages("BootNotification")) >= 2 and csms.messages("BootNotification"))
    assert boots[1]["reason"] == "RemoteReset"


async def test_tc_b_reset_on_idle_is_scheduled_during_a_transaction(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await charging_session(charger, csms)
    assert (await csms.session.send("Reset", {"type": "OnIdle"}))["status"] == "Scheduled"
    await asyncio.sleep(1.5)
    assert charger.hardware.connectors[0].relay.is_closed  # the session goes on
    charger.hardware.bench.present_tag("04A1B2C3")  # the driver ends it
    boots = await csms.wait_for(lambda: len(csms.messages("BootNotification")) >= 2 and csms.messages("BootNotification"))
    assert boots[1]["reason"] == "RemoteReset"


def statuses(csms: Csms, evse: int = 1) -> list[str]:
    return [s["connectorStatus"] for s in csms.messages("StatusNotification") if s["evseId"] == evse]


async def evse_reset_done(csms: Csms, before: int) -> list[str]:
    """The statuses of EVSE 1 reported since ``before``, once Unavailable was followed by another."""
    def done():
        since = statuses(csms)[before:]
        return "Unavailable" in since and since[-1] != "Unavailable" and since
    return await csms.wait_for(done)


async def test_tc_b_12_reset_on_idle_of_an_evse_waits_for_its_transaction_then_resets_that_evse_alone(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await charging_session(charger, csms)
    before = len(statuses(csms))
    answer = await csms.session.send("Reset", {"type": "OnIdle", "evseId": 1})
    assert answer["status"] == "Scheduled"
    await asyncio.sleep(1.5)
    assert charger.hardware.connectors[0].relay.is_closed, "the session goes on"
    assert "Unavailable" not in statuses(csms)[before:]
    charger.hardware.bench.present_tag("04A1B2C3")  # the driver ends it
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert (ended[0]["transactionInfo"]["transactionId"], ended[0]["transactionInfo"]["stoppedReason"]) == (
        tx_id, "Local")
    since = await evse_reset_done(csms, before)
    assert since[-1] == "Occupied", "the EV is still plugged in"
    assert not charger.hardware.connectors[0].relay.is_closed
    assert len(csms.messages("BootNotification")) == 1, "the station itself did not restart"


async def test_tc_b_12_reset_immediate_of_an_evse_ends_its_transaction_with_immediate_reset_then_resets_it(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await charging_session(charger, csms)
    before = len(statuses(csms))
    assert (await csms.session.send("Reset", {"type": "Immediate", "evseId": 1}))["status"] == "Accepted"
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert (ended[0]["transactionInfo"]["transactionId"], ended[0]["triggerReason"],
            ended[0]["transactionInfo"]["stoppedReason"]) == (tx_id, "ResetCommand", "ImmediateReset")
    assert not charger.hardware.connectors[0].relay.is_closed
    await evse_reset_done(csms, before)
    charger.hardware.bench.set_pilot(1, "A")
    await csms.wait_for(lambda: statuses(csms)[-1] == "Available")
    assert len(csms.messages("BootNotification")) == 1


async def test_tc_b_12_reset_of_an_idle_evse_is_accepted_and_done_at_once(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    for kind in ("OnIdle", "Immediate"):
        before = len(statuses(csms))
        assert (await csms.session.send("Reset", {"type": kind, "evseId": 1}))["status"] == "Accepted"
        assert await evse_reset_done(csms, before) == ["Unavailable", "Available"]
    assert (await csms.session.send("Reset", {"type": "Immediate", "evseId": 3}))["status"] == "Rejected"
    assert charger.controller.station.connectors[1].operative
    assert charger.controller.store.load_availability().get(1) is not False, "not kept Unavailable across a restart"


def ends_of(csms: Csms, tx_id: str) -> list[dict]:
    return [e for e in events(csms) if e["eventType"] == "Ended" and e["transactionInfo"]["transactionId"] == tx_id]


def reason_of(ended: dict) -> tuple[str, str]:
    return ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]


async def test_tc_b_11_reset_immediate_ends_every_transaction_the_core_s_and_one_the_cable_alone_keeps_open(
        csms, start_station):
    """Part 2 B11: every open transaction ends with ResetCommand / ImmediateReset before the
    station restarts: EVSE 1 charging (the core's transaction), EVSE 2 with only its cable in
    (TxStartPoint EVConnected: a transaction the core does not run)."""
    charger = await start_station(csms, connectors=2, variables={"TxCtrlr.TxStartPoint": "EVConnected"})
    await registered(charger, csms)
    charging_id = await charging_session(charger, csms)
    charger.hardware.bench.set_pilot(2, "B")
    cable_only = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"
                                              and e["evse"]["id"] == 2])
    cable_id = cable_only[0]["transactionInfo"]["transactionId"]
    assert charger.controller.station.connectors[2].transaction is None
    assert (await csms.session.send("Reset", {"type": "Immediate"}))["status"] == "Accepted"
    boots = await csms.wait_for(lambda: len(csms.messages("BootNotification")) >= 2 and csms.messages("BootNotification"))
    assert boots[1]["reason"] == "RemoteReset"
    for tx_id in (charging_id, cable_id):
        [ended] = ends_of(csms, tx_id)
        assert reason_of(ended) == ("ResetCommand", "ImmediateReset"), tx_id
        received = [payload for _, payload in csms.received]
        assert received.index(ended) < received.index(boots[1]), "ended before the restart, not at the next start"
        assert [e for e in events(csms) if e["transactionInfo"]["transactionId"] == tx_id][-1] == ended
    assert not [e for e in events(csms) if e["transactionInfo"].get("stoppedReason") == "PowerLoss"]
    assert not any(c.relay.is_closed for c in charger.hardware.connectors)


async def test_tc_b_11_reset_on_idle_waits_for_a_transaction_the_cable_alone_keeps_open(csms, start_station):
    charger = await start_station(csms, variables={"TxCtrlr.TxStartPoint": "EVConnected"})
    await registered(charger, csms)
    await ev_connected_transaction(charger, csms)
    [started] = events(csms)
    assert (await csms.session.send("Reset", {"type": "OnIdle"}))["status"] == "Scheduled"
    await asyncio.sleep(1.5)
    assert len(csms.messages("BootNotification")) == 1, "the transaction is open: no restart yet"
    charger.hardware.bench.set_pilot(1, "A")
    [ended] = await csms.wait_for(lambda: ends_of(csms, started["transactionInfo"]["transactionId"]))
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    boots = await csms.wait_for(lambda: len(csms.messages("BootNotification")) >= 2 and csms.messages("BootNotification"))
    assert boots[1]["reason"] == "RemoteReset"


async def test_tc_b_12_reset_immediate_of_an_evse_ends_a_transaction_the_cable_alone_keeps_open(csms, start_station):
    charger = await start_station(csms, variables={"TxCtrlr.TxStartPoint": "EVConnected"})
    await registered(charger, csms)
    await ev_connected_transaction(charger, csms)
    tx_id = events(csms)[0]["transactionInfo"]["transactionId"]
    before = len(statuses(csms))
    assert (await csms.session.send("Reset", {"type": "Immediate", "evseId": 1}))["status"] == "Accepted"
    [ended] = await csms.wait_for(lambda: ends_of(csms, tx_id))
    assert reason_of(ended) == ("ResetCommand", "ImmediateReset")
    assert (await evse_reset_done(csms, before))[-1] == "Occupied", "the EV is still plugged in"
    assert len(csms.messages("BootNotification")) == 1


async def start_waiting_for_its_answer(charger, csms: Csms) -> str:
    """A card the CSMS accepted only in its Authorize response, forgotten: the core's transaction
    waits for the TransactionEventResponse's idTokenInfo, and the first attempt of that Started
    fails (CALLERROR), its next one coming 2 s later (E13)."""
    answer = await csms.session.send("SetVariables", {"setVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": name, "instance": "TransactionEvent"},
         "attributeValue": value} for name, value in (("MessageAttempts", "3"), ("MessageAttemptInterval", "2"))]})
    assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
    charger.controller.adapter._accepted_tokens = Forgetful()
    csms.policy.transaction_event_errors = 1
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("04A1B2C3")
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    assert charger.controller.adapter._awaiting, "the start still waits for its answer"
    return started[0]["transactionInfo"]["transactionId"]


async def test_tc_b_12_reset_immediate_of_an_evse_ends_a_transaction_whose_start_waits_for_its_answer(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await start_waiting_for_its_answer(charger, csms)
    before = len(statuses(csms))
    assert (await csms.session.send("Reset", {"type": "Immediate", "evseId": 1}))["status"] == "Accepted"
    [ended] = await csms.wait_for(lambda: ends_of(csms, tx_id))
    assert reason_of(ended) == ("ResetCommand", "ImmediateReset")
    await evse_reset_done(csms, before)
    assert charger.controller.station.connectors[1].transaction is None
    assert never_energized(charger), "the late Accepted gives no energy"
    assert len(csms.messages("BootNotification")) == 1


async def test_tc_f_03_request_stop_of_a_transaction_whose_start_waits_for_its_answer(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await start_waiting_for_its_answer(charger, csms)
    assert (await csms.session.send("RequestStopTransaction", {"transactionId": tx_id}))["status"] == "Accepted"
    [ended] = await csms.wait_for(lambda: ends_of(csms, tx_id))
    assert reason_of(ended) == ("RemoteStop", "Remote")
    assert never_energized(charger), "the late Accepted gives no energy"


async def test_tc_f_06_trigger_message(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    send = csms.session.send
    assert (await send("TriggerMessage", {"requestedMessage": "BootNotification"}))["status"] == "Rejected"
    assert (await send("TriggerMessage", {"requestedMessage": "SignV2GCertificate"}))["status"] == "NotImplemented"
    assert (await send("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 9}}))["status"] \
        == "Rejected"
    before = len(csms.messages("StatusNotification"))
    assert (await send("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1}}))["status"] \
        == "Accepted"
    await csms.wait_for(lambda: len(csms.messages("StatusNotification")) > before)
    assert (await send("TriggerMessage", {"requestedMessage": "Heartbeat"}))["status"] == "Accepted"
    await csms.wait_for(lambda: csms.messages("Heartbeat"))
    await charging_session(charger, csms)
    assert (await send("TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}))["status"] \
        == "Accepted"
    triggered = await csms.wait_for(lambda: [e for e in events(csms) if e["triggerReason"] == "Trigger"])
    assert triggered[0]["eventType"] == "Updated"


async def test_tc_f_05_unlock_connector_answers(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    send = csms.session.send
    assert (await send("UnlockConnector", {"evseId": 2, "connectorId": 1}))["status"] == "UnknownConnector"
    await charging_session(charger, csms)
    assert (await send("UnlockConnector", {"evseId": 1, "connectorId": 1}))["status"] == "OngoingAuthorizedTransaction"
    assert charger.hardware.connectors[0].relay.is_closed


async def test_tc_f_05_unlock_connector_on_a_welded_contactor_is_unlock_failed(csms, start_station):
    """The plug stays locked while the contacts may be live (IEC 61851-1): UnlockStatusEnumType UnlockFailed."""
    charger = await start_station(csms)
    await registered(charger, csms)
    await charging_session(charger, csms)
    bench = charger.hardware.bench
    bench.set_fault("relay", True)  # the main contacts weld under load
    bench.present_tag("04A1B2C3")  # the stop: commanded open, still closed
    await csms.wait_for(lambda: [s for s in csms.messages("StatusNotification") if s["connectorStatus"] == "Faulted"])
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    answer = await csms.session.send("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert answer["status"] == "UnlockFailed"
    assert charger.controller.station.lock_state(1) == "locked" and bench.simulated[0].lock.locked


async def test_tc_g_03_change_availability_of_an_evse(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    send = csms.session.send
    assert (await send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}))["status"] \
        == "Accepted"
    await csms.wait_for(lambda: [s for s in csms.messages("StatusNotification") if s["connectorStatus"] == "Unavailable"])
    assert await availability_states(csms) == ("Available", "Unavailable")
    assert (await send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 5}}))["status"] \
        == "Rejected"
    assert (await send("ChangeAvailability", {"operationalStatus": "Operative"}))["status"] == "Accepted"
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] == "Available")
    assert await availability_states(csms) == ("Available", "Available")
    assert (await send("ChangeAvailability", {"operationalStatus": "Inoperative"}))["status"] == "Accepted"
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] == "Unavailable")
    assert await availability_states(csms) == ("Unavailable", "Unavailable")


async def availability_states(csms: Csms) -> tuple[str, str]:
    """ChargingStation's and EVSE 1's AvailabilityState, by GetVariables."""
    answer = await csms.session.send("GetVariables", {"getVariableData": [
        {"component": {"name": "ChargingStation"}, "variable": {"name": "AvailabilityState"}},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]})
    station, evse = answer["getVariableResult"]
    return station["attributeValue"], evse["attributeValue"]


async def locked_after_the_ev_left(charger, csms: Csms) -> None:
    """A session on the socket outlet ends by unplugging at the EV side while
    OCPPCommCtrlr.UnlockOnEVSideDisconnect is false: the plug stays locked in the socket (Part 2 E10)."""
    await charging_session(charger, csms)
    assert charger.controller.station.lock_state(1) == "locked"
    charger.hardware.bench.set_pilot(1, "A")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    await asyncio.sleep(0.5)
    assert charger.controller.station.lock_state(1) == "locked"
    assert not charger.hardware.connectors[0].relay.is_closed


async def test_tc_f_05_unlock_connector_unlocked_by_the_lock_feedback(csms, start_station):
    charger = await start_station(csms, variables={"OCPPCommCtrlr.UnlockOnEVSideDisconnect": "false"})
    await registered(charger, csms)
    await locked_after_the_ev_left(charger, csms)
    answer = await csms.session.send("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert answer["status"] == "Unlocked"
    assert charger.controller.station.lock_state(1) == "unlocked"
    assert not charger.hardware.bench.simulated[0].lock.locked  # the simulated bolt itself


async def test_tc_f_05_unlock_connector_unlock_failed_when_the_lock_does_not_confirm(csms, start_station):
    charger = await start_station(csms, variables={"OCPPCommCtrlr.UnlockOnEVSideDisconnect": "false"})
    await registered(charger, csms)
    await locked_after_the_ev_left(charger, csms)
    charger.hardware.bench.set_fault("lock", True)  # jammed: the feedback keeps saying locked
    answer = await csms.session.send("UnlockConnector", {"evseId": 1, "connectorId": 1})
    assert answer["status"] == "UnlockFailed"
    assert not charger.hardware.connectors[0].relay.is_closed


async def test_tc_g_03_change_availability_of_a_connector(csms, start_station):
    """Part 2 G03 with evse.connectorId: the EVSE's one connector goes Unavailable and back; a
    connector the EVSE does not have is Rejected."""
    charger = await start_station(csms)
    await registered(charger, csms)
    send = csms.session.send
    inoperative = {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}
    assert (await send("ChangeAvailability", inoperative))["status"] == "Accepted"
    unavailable = await csms.wait_for(lambda: [s for s in csms.messages("StatusNotification")
                                               if s["connectorStatus"] == "Unavailable"])
    assert (unavailable[0]["evseId"], unavailable[0]["connectorId"]) == (1, 1)
    assert (await send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 2}})
            )["status"] == "Rejected"
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("04A1B2C3")
    assert not await relay_closed(charger, timeout=1.0)  # no session on an unavailable connector
    assert (await send("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1, "connectorId": 1}})
            )["status"] == "Accepted"
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] != "Unavailable")


async def test_tc_g_03_inoperative_during_a_transaction_is_scheduled_and_applied_when_it_ends(csms, start_station):
    """Part 2 G03.FR.05-like: an EVSE with a transaction answers Scheduled; the session goes on with
    its energy, and the EVSE becomes Unavailable once the transaction ended."""
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await charging_session(charger, csms)
    answer = await csms.session.send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    assert answer["status"] == "Scheduled"
    await asyncio.sleep(1.0)
    assert charger.hardware.connectors[0].relay.is_closed
    assert not [s for s in csms.messages("StatusNotification") if s["connectorStatus"] == "Unavailable"]
    charger.hardware.bench.set_pilot(1, "A")
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert ended[0]["transactionInfo"]["transactionId"] == tx_id
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] == "Unavailable")
    assert not charger.hardware.connectors[0].relay.is_closed


async def ev_connected_transaction(charger, csms: Csms) -> None:
    """TxStartPoint EVConnected: plugging in starts a transaction the core does not run (no card yet)."""
    charger.hardware.bench.set_pilot(1, "B")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    assert charger.controller.station.connectors[1].transaction is None


async def test_tc_g_03_inoperative_during_a_transaction_started_at_ev_connected_is_scheduled_too(csms,
                                                                                                 start_station):
    charger = await start_station(csms, variables={"TxCtrlr.TxStartPoint": "EVConnected"})
    await registered(charger, csms)
    await ev_connected_transaction(charger, csms)
    answer = await csms.session.send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    assert answer["status"] == "Scheduled"
    await asyncio.sleep(1.0)
    assert "Unavailable" not in [s["connectorStatus"] for s in csms.messages("StatusNotification")]
    charger.hardware.bench.set_pilot(1, "A")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] == "Unavailable")


async def test_tc_g_03_an_inoperative_scheduled_for_a_transaction_started_at_ev_connected_survives_a_restart(
        csms, start_station, tmp_path):
    variables = {"TxCtrlr.TxStartPoint": "EVConnected"}
    charger = await start_station(csms, state_dir=tmp_path, variables=variables)
    await registered(charger, csms)
    await ev_connected_transaction(charger, csms)
    answer = await csms.session.send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    assert answer["status"] == "Scheduled"
    charger.task.cancel()  # the station stops before the transaction ended
    await asyncio.gather(charger.task, return_exceptions=True)
    csms.received.clear()
    again = await start_station(csms, state_dir=tmp_path, variables=variables)
    await registered(again, csms)
    await csms.wait_for(lambda: "Unavailable" in [s["connectorStatus"] for s in csms.messages("StatusNotification")])
    assert not again.controller.station.connectors[1].operative


async def test_tc_g_03_inoperative_while_a_card_waits_for_the_ev_is_accepted_and_no_session_starts(
        csms, start_station):
    """A card accepted before the cable (TxStartPoint PowerPathClosed: no transaction yet) is no
    transaction to wait for: Inoperative applies at once, and the EV that comes gets no energy."""
    charger = await start_station(csms)
    await registered(charger, csms)
    charger.hardware.bench.present_tag("04A1B2C3")
    await csms.wait_for(lambda: csms.messages("Authorize"))
    await asyncio.sleep(0.2)
    answer = await csms.session.send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    assert answer["status"] == "Accepted"
    charger.hardware.bench.set_pilot(1, "C")
    assert not await relay_closed(charger, timeout=1.0)
    assert not charger.controller.station.connectors[1].operative and never_energized(charger)


async def test_tc_g_03_a_later_change_availability_replaces_a_scheduled_one(csms, start_station):
    charger = await start_station(csms, variables={"TxCtrlr.TxStartPoint": "EVConnected"})
    await registered(charger, csms)
    await ev_connected_transaction(charger, csms)
    send = csms.session.send
    assert (await send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}))["status"] \
        == "Scheduled"
    assert (await send("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1}}))["status"] \
        == "Accepted"
    charger.hardware.bench.set_pilot(1, "A")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] == "Available")
    await asyncio.sleep(1.5)
    assert csms.messages("StatusNotification")[-1]["connectorStatus"] == "Available"
    assert charger.controller.station.connectors[1].operative


async def test_tc_e_offline_events_are_delivered_in_order_with_their_time_and_offline_flag(start_station, tmp_path):
    csms = Csms()
    await csms.start()
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await charging_session(charger, csms)
    port = int(csms.url.rsplit(":", 1)[1].split("/")[0])
    await csms.stop()  # the CSMS goes away
    await asyncio.sleep(0.5)
    charger.hardware.bench.set_pilot(1, "A")  # the session ends offline
    await asyncio.sleep(0.5)
    assert not charger.hardware.connectors[0].relay.is_closed
    again = Csms()
    import websockets
    again._server = await websockets.serve(again._serve, "127.0.0.1", port, subprotocols=again.subprotocols)
    ended = await again.wait_for(lambda: [e for e in events(again) if e["eventType"] == "Ended"], timeout=30)
    assert ended[0]["offline"] is True and ended[0]["transactionInfo"]["transactionId"] == tx_id
    assert ended[0]["seqNo"] == max(e["seqNo"] for e in events(csms) if e["transactionInfo"]["transactionId"] == tx_id) + 1
    await again.stop()


async def test_tc_e_power_loss_after_a_crash_ends_the_transaction_at_the_next_start(csms, start_station, tmp_path):
    charger = await start_station(csms)
    await registered(charger, csms)
    tx_id = await charging_session(charger, csms)
    charger.task.cancel()  # the process goes without stopping anything (as a kill would)
    await asyncio.gather(charger.task, return_exceptions=True)
    assert not charger.hardware.connectors[0].relay.is_closed
    await start_station(csms)
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"], timeout=20)
    assert ended[0]["transactionInfo"]["transactionId"] == tx_id
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("AbnormalCondition", "PowerLoss")
    mine = [e for e in events(csms) if e["transactionInfo"]["transactionId"] == tx_id]
    first_of = {}
    for event in mine:  # an event whose answer the crash cut off comes again, the same (at least once)
        assert first_of.setdefault(event["seqNo"], event) == event, "a seqNo reused for another event"
    assert sorted(first_of) == list(range(len(first_of)))


KEY_OF_1_6 = {"MaxEnergyOnInvalidId": "5000"}
"""Under "auto" an OCPP 1.6 key applies only when the CSMS picks 1.6."""


async def test_auto_speaks_2_0_1_when_the_csms_picks_it_with_the_device_models_settings(csms, start_station):
    charger = await start_station(csms, version="auto", keys=KEY_OF_1_6)
    await registered(charger, csms)
    assert charger.controller.protocol == "auto"
    assert charger.controller.settings.max_energy_on_invalid_wh == 0  # TxCtrlr.MaxEnergyOnInvalidId


async def test_auto_hands_over_to_1_6_when_the_csms_picks_it_with_the_1_6_keys_settings(start_station):
    from evcp.bench.csms import SUBPROTOCOL, CentralSystem

    central = CentralSystem(port=0, control_port=None, subprotocols=(SUBPROTOCOL,))
    await central.start()
    charger = await start_station(SimpleNamespace(url=central.url + "/ocpp"), version="auto", keys=KEY_OF_1_6)
    async with asyncio.timeout(15):
        while not (charger.controller.protocol == "1.6" and charger.controller.adapter.registration == "Accepted"):
            await asyncio.sleep(0.05)
    assert charger.controller.settings.max_energy_on_invalid_wh == 5000
    await central.stop()


async def test_a_stored_reservation_holds_the_2_0_1_station_after_a_restart_until_cancelled(
        csms, start_station, tmp_path):
    """A reservation kept in the state directory (made over either protocol) holds its EVSE when
    the station comes back speaking 2.0.1, and the CSMS can cancel it (Part 2 H02)."""
    import time

    from evcp.storage import FILENAME, StateStore

    store = StateStore(tmp_path / FILENAME)
    store.save_document("reservations", [{"id": 7, "connector": 1, "id_tag": "SOMEONE",
                                          "expires_at": time.time() + 3600}])
    store.close()
    charger = await start_station(csms, state_dir=tmp_path)
    await registered(charger, csms)
    assert csms.messages("StatusNotification")[0]["connectorStatus"] == "Reserved"
    assert (await csms.session.send("CancelReservation", {"reservationId": 7}))["status"] == "Accepted"
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] == "Available")
    assert charger.controller.station.reservation_on(1) is None


async def test_the_installers_ocpp_variables_are_the_stations_values_and_drive_the_core(csms, start_station):
    charger = await start_station(csms, variables={"SampledDataCtrlr.TxUpdatedInterval": "15",
                                                   "TxCtrlr.MaxEnergyOnInvalidId": "700",
                                                   "OCPPCommCtrlr.UnlockOnEVSideDisconnect": "false"})
    await registered(charger, csms)
    settings = charger.controller.settings
    assert (settings.meter_sample_interval_s, settings.max_energy_on_invalid_wh,
            settings.unlock_on_ev_disconnect) == (15, 700, False)
    answer = await csms.session.send("GetVariables", {"getVariableData": [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "MaxEnergyOnInvalidId"}}]})
    assert answer["getVariableResult"][0]["attributeValue"] == "700"


async def test_the_bench_at_2_0_1_keeps_the_cadence_of_its_1_6_keys(csms, start_station):
    """bench.toml's MeterValueSampleInterval = 10 is SampledDataCtrlr.TxUpdatedInterval under
    ``evcp bench --ocpp 2.0.1`` (``bench_config(version=...)``), not the device model's default 60."""
    charger = await start_station(csms)
    assert charger.controller.settings.meter_sample_interval_s == 10
    assert charger.controller.adapter.device_model.get("SampledDataCtrlr", "TxUpdatedInterval") == "10"


async def test_tc_e_14_get_transaction_status_ongoing_and_messages_in_queue(csms, start_station):
    """Part 2 E14: ongoingIndicator for a named transaction (false for one ended or unknown),
    messagesInQueue for its queued TransactionEvents, or for any without a transactionId."""
    charger = await start_station(csms, variables={"TxCtrlr.TxStartPoint": "EVConnected"})
    await registered(charger, csms)
    await ev_connected_transaction(charger, csms)
    tx_id = events(csms)[0]["transactionInfo"]["transactionId"]
    await asyncio.sleep(0.2)
    send = csms.session.send
    assert await send("GetTransactionStatus", {"transactionId": tx_id}) == {"ongoingIndicator": True,
                                                                           "messagesInQueue": False}
    assert await send("GetTransactionStatus", {}) == {"messagesInQueue": False}
    csms.policy.transaction_event_errors = 100  # the Ended is refused: it stays queued (retried in 60 s)
    charger.hardware.bench.set_pilot(1, "A")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert await send("GetTransactionStatus", {"transactionId": tx_id}) == {"ongoingIndicator": False,
                                                                           "messagesInQueue": True}
    assert await send("GetTransactionStatus", {}) == {"messagesInQueue": True}
    assert await send("GetTransactionStatus", {"transactionId": "not-a-transaction"}) == {
        "ongoingIndicator": False, "messagesInQueue": False}
