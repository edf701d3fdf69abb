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


async def charging_session(charger, csms: Csms, tag: str = "04A1B2C3") -> str:
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(tag)
    assert await relay_closed(charger)
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    return started[-1]["transactionInfo"]["transactionId"]


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
    assert (await send("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 5}}))["status"] \
        == "Rejected"
    assert (await send("ChangeAvailability", {"operationalStatus": "Operative"}))["status"] == "Accepted"
    await csms.wait_for(lambda: csms.messages("StatusNotification")[-1]["connectorStatus"] == "Available")


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


async def test_a_reservation_left_by_1_6_does_not_hold_the_2_0_1_station(csms, start_station, tmp_path):
    """ReserveNow came over OCPP 1.6; a 2.0.1 station takes no reservation (Part 2 H) and could
    neither report nor cancel one, so a stored one does not keep its EVSE from other cards."""
    import time

    from evcp.storage import FILENAME, StateStore

    store = StateStore(tmp_path / FILENAME)
    store.save_document("reservations", [{"id": 7, "connector": 1, "id_tag": "SOMEONE",
                                          "expires_at": time.time() + 3600}])
    store.close()
    charger = await start_station(csms, state_dir=tmp_path)
    await registered(charger, csms)
    assert csms.messages("StatusNotification")[0]["connectorStatus"] == "Available"
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
