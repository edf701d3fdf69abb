"""TransactionEvents from the core's facts: start/stop points, seqNo, offline, PowerLoss recovery.
Every payload is checked against the OCPP 2.0.1 TransactionEventRequest schema."""

from __future__ import annotations

import itertools

import pytest
from ocpp.messages import Call, _validate_payload

from evcp.core.actions import ReportMeterValues
from evcp.core.model import StopReason
from evcp.ocpp.outbox import Outbox
from evcp.ocpp201.meter_values import meter_value
from evcp.ocpp201.transactions import (
    ACTION,
    MAX_END_SAMPLES,
    OPEN_TRANSACTIONS,
    Measurands,
    Transactions,
    id_token_for,
    recover,
)
from evcp.storage import StateStore
from evcp.timestamps import parse_timestamp, timestamp

TOKEN = {"idToken": "04A1B2C3", "type": "ISO14443"}
T0 = 1_800_000_000.0


def valid(payload: dict) -> dict:
    _validate_payload(Call("1", ACTION, payload), "2.0.1")
    return payload


class Meter:
    """The EVSE meters as the adapter reads them (``meter_value`` of their last reading)."""

    def __init__(self):
        self.energy_wh = {1: 100.0}
        self.power_w = 7400.0

    def read(self, evse: int, measurands: list[str], context: str, at: float) -> dict | None:
        if evse not in self.energy_wh:
            return None
        report = ReportMeterValues(evse, None, None, self.energy_wh[evse], self.power_w, (10.7, 10.8, 10.6),
                                   (230.1, 229.9, 231.0), at, context)
        return meter_value(report, measurands, 16.0)


class Tracked(Transactions):
    meter: Meter


def tracker(start="PowerPathClosed", stop="EVConnected,Authorized", store=None, outbox=None,
            measurands: Measurands | None = None) -> Tracked:
    ids = (f"00000000-0000-4000-8000-{n:012d}" for n in itertools.count(1))
    measurands = measurands or Measurands(*[["Energy.Active.Import.Register"]] * 5)
    meter = Meter()
    t = Tracked(outbox or Outbox(store), store, lambda: start.split(","), lambda: stop.split(","),
                lambda: measurands, meter.read, new_id=lambda: next(ids))
    t.meter = meter
    return t


def values(meter_value: dict) -> list[tuple[str, str | None, str, float]]:
    """(measurand, phase, context, value) of each SampledValue."""
    return [(v["measurand"], v.get("phase"), v["context"], v["value"]) for v in meter_value["sampledValue"]]


def queued(t: Transactions) -> list[dict]:
    out = []
    while (entry := t.outbox.head()) is not None:
        out.append(valid(entry.payload))
        t.outbox.done(entry)
    return out


def test_id_token_types():
    assert id_token_for("04A1B2C3")["type"] == "ISO14443"
    assert id_token_for("04A1B2C3D4E5F6")["type"] == "ISO14443"
    assert id_token_for("driver-7")["type"] == "Local"
    assert id_token_for("abc", "Central") == {"idToken": "abc", "type": "Central"}


def test_tc_e_power_path_closed_start_point_starts_when_the_contactor_closes_with_the_id_token():
    t = tracker()
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    t.charging_state(1, "SuspendedEV", T0 + 2, online=True)
    assert queued(t) == []  # no transaction at the CSMS before the power path closes
    t.power_delivery(1, True, False, "Charging", False, T0 + 3, online=True)
    started, = queued(t)
    assert (started["eventType"], started["triggerReason"], started["seqNo"]) == ("Started", "ChargingStateChanged", 0)
    assert started["idToken"] == TOKEN and started["evse"] == {"id": 1, "connectorId": 1}
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert started["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    t.charging_state(1, "Charging", T0 + 3, online=True)
    assert queued(t) == [], "the Started said Charging already"


def test_tc_e_energy_transfer_start_point_waits_for_energy_to_flow_not_for_the_contactor():
    t = tracker(start="EnergyTransfer")
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    t.power_delivery(1, True, False, "Charging", False, T0 + 2, online=True)
    assert queued(t) == [], "the contactor closed, but the EV draws nothing yet"
    t.power_delivery(1, True, True, "Charging", False, T0 + 4, online=True)
    started, = queued(t)
    assert (started["eventType"], started["idToken"], started["timestamp"]) == (
        "Started", TOKEN, "2027-01-15T08:00:04.000Z")


def test_tc_e_tx_stop_point_power_path_closed_ends_when_the_contactor_opens_and_ends_the_core_transaction():
    t = tracker(start="PowerPathClosed", stop="PowerPathClosed")
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    assert t.power_delivery(1, True, True, "Charging", False, T0 + 2, online=True) is None
    t.meter.energy_wh[1] = 250.0
    ended_core = t.power_delivery(1, False, False, "SuspendedEV", True, T0 + 9, online=True)
    assert ended_core == 7
    started, ended = queued(t)
    assert (ended["eventType"], ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "Ended", "ChargingStateChanged", "StoppedByEV")
    assert ended["meterValue"][0]["sampledValue"][0]["value"] == 250.0 and t.by_evse == {}
    t.core_stopped(1, 7, StopReason.OTHER, None, T0 + 9, online=True, plugged=True)
    t.ev_connected(1, T0 + 10, online=True)
    assert queued(t) == [], "the core's stop that follows sends nothing, and nothing starts again"


def test_tc_e_tx_stop_point_energy_transfer_ends_when_the_ev_stops_drawing_not_before_it_drew():
    t = tracker(start="PowerPathClosed", stop="EnergyTransfer")
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    assert t.power_delivery(1, True, False, "Charging", False, T0 + 2, online=True) is None
    assert t.power_delivery(1, True, True, "Charging", False, T0 + 4, online=True) is None
    assert t.power_delivery(1, True, False, "Charging", True, T0 + 9, online=True) == 7
    ended = queued(t)[-1]
    assert (ended["eventType"], ended["transactionInfo"]["stoppedReason"]) == ("Ended", "StoppedByEV")


def test_the_contactor_opening_ends_nothing_with_the_default_stop_points():
    t = tracker()
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    t.power_delivery(1, True, True, "Charging", False, T0 + 2, online=True)
    assert t.power_delivery(1, False, False, "SuspendedEV", True, T0 + 3, online=True) is None
    t.charging_state(1, "SuspendedEV", T0 + 3, online=True)
    assert [(e["eventType"], e["transactionInfo"]["chargingState"]) for e in queued(t)] == [
        ("Started", "Charging"), ("Updated", "SuspendedEV")]


def test_tc_e_authorized_start_point_card_before_the_plug_starts_at_once_then_cable_plugged_in():
    t = tracker(start="Authorized")
    t.authorization_granted(1, TOKEN, "Authorized", None, T0, online=True, plugged=False)
    started, = queued(t)
    assert (started["eventType"], started["triggerReason"], started["seqNo"]) == ("Started", "Authorized", 0)
    assert started["idToken"] == TOKEN and started["transactionInfo"]["chargingState"] == "Idle"
    t.ev_connected(1, T0 + 5, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 5, online=True)
    t.charging_state(1, "Charging", T0 + 6, online=True)
    t.core_stopped(1, 7, StopReason.LOCAL, TOKEN, T0 + 9, online=True, plugged=True)
    events = queued(t)
    assert [(e["eventType"], e["triggerReason"], e["transactionInfo"]["chargingState"]) for e in events] == [
        ("Updated", "CablePluggedIn", "EVConnected"), ("Updated", "ChargingStateChanged", "Charging"),
        ("Ended", "StopAuthorized", "EVConnected")]
    assert [e["seqNo"] for e in events] == [1, 2, 3]
    assert {e["transactionInfo"]["transactionId"] for e in events} == {started["transactionInfo"]["transactionId"]}


def test_tc_e_authorized_start_point_no_ev_within_the_timeout_ends_with_timeout():
    t = tracker(start="Authorized")
    t.authorization_granted(1, TOKEN, "Authorized", None, T0, online=True, plugged=False)
    t.authorization_ended(1, TOKEN["idToken"], StopReason.TIMEOUT, T0 + 60, online=True, plugged=False)
    started, ended = queued(t)
    assert (ended["eventType"], ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "Ended", "EVConnectTimeout", "Timeout")
    assert ended["transactionInfo"]["chargingState"] == "Idle" and t.by_evse == {}


def test_tc_f_remote_start_before_the_plug_with_authorized_start_point_carries_its_remote_start_id():
    t = tracker(start="Authorized")
    app = {"idToken": "app-1", "type": "Central"}
    t.authorization_granted(1, app, "RemoteStart", 42, T0, online=True, plugged=False)
    started, = queued(t)
    assert started["triggerReason"] == "RemoteStart" and started["transactionInfo"]["remoteStartId"] == 42


def test_power_path_closed_start_point_card_before_the_plug_then_timeout_sends_nothing():
    t = tracker(start="PowerPathClosed")
    t.authorization_granted(1, TOKEN, "Authorized", None, T0, online=True, plugged=False)
    t.ev_connected(1, T0 + 1, online=True)
    t.ev_disconnected(1, T0 + 2, online=True)
    t.authorization_granted(1, TOKEN, "Authorized", None, T0 + 3, online=True, plugged=False)
    t.authorization_ended(1, TOKEN["idToken"], StopReason.TIMEOUT, T0 + 60, online=True, plugged=False)
    assert queued(t) == [] and t.by_evse == {}


def test_ev_connected_start_point_then_authorized_update_then_ended_without_gaps():
    t = tracker(start="EVConnected")
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    t.charging_state(1, "Charging", T0 + 2, online=True)
    t.meter_values(1, "MeterValuePeriodic", {"timestamp": "2027-01-15T08:00:00Z", "sampledValue": [{"value": 1.0}]},
                   T0 + 3, online=True)
    t.meter.energy_wh[1] = 350.0
    t.core_stopped(1, 7, StopReason.LOCAL, TOKEN, T0 + 4, online=True, plugged=True)
    events = queued(t)
    assert [(e["eventType"], e["triggerReason"]) for e in events] == [
        ("Started", "CablePluggedIn"), ("Updated", "Authorized"), ("Updated", "ChargingStateChanged"),
        ("Updated", "MeterValuePeriodic"), ("Ended", "StopAuthorized")]
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3, 4]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    ended = events[-1]
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["meterValue"][0]["sampledValue"][0]["value"] == 350


def test_unplug_before_any_card_ends_an_ev_connected_transaction():
    t = tracker(start="EVConnected")
    t.ev_connected(1, T0, online=True)
    t.ev_disconnected(1, T0 + 9, online=True)
    started, ended = queued(t)
    assert (ended["eventType"], ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "Ended", "EVCommunicationLost", "EVDisconnected")
    assert t.by_evse == {}


def test_tx_stop_point_ev_connected_keeps_the_transaction_until_unplug_with_the_first_reason():
    t = tracker(start="EVConnected", stop="EVConnected")
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    t.core_stopped(1, 7, StopReason.REMOTE, None, T0 + 2, online=True, plugged=True)
    t.ev_disconnected(1, T0 + 3, online=True)
    events = queued(t)
    assert [(e["eventType"], e["triggerReason"]) for e in events] == [
        ("Started", "CablePluggedIn"), ("Updated", "Authorized"), ("Updated", "RemoteStop"),
        ("Ended", "EVCommunicationLost")]
    assert events[-1]["transactionInfo"]["stoppedReason"] == "Remote"


def test_a_second_authorization_in_a_transaction_kept_by_the_cable_is_reported_again_with_the_first_reason_kept():
    t = tracker(start="EVConnected", stop="EVConnected")
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    t.core_stopped(1, 7, StopReason.LOCAL, TOKEN, T0 + 2, online=True, plugged=True)
    t.authorized(1, 8, TOKEN, "Authorized", None, None, T0 + 3, online=True)
    t.core_stopped(1, 8, StopReason.REMOTE, None, T0 + 4, online=True, plugged=True)
    t.authorization_granted(1, TOKEN, "Authorized", None, T0 + 5, online=True, plugged=True)
    t.authorization_ended(1, TOKEN["idToken"], StopReason.OTHER, T0 + 6, online=True, plugged=True)
    t.ev_disconnected(1, T0 + 7, online=True)
    events = queued(t)
    assert [(e["eventType"], e["triggerReason"]) for e in events] == [
        ("Started", "CablePluggedIn"), ("Updated", "Authorized"), ("Updated", "StopAuthorized"),
        ("Updated", "Authorized"), ("Updated", "RemoteStop"), ("Updated", "Authorized"),
        ("Updated", "AbnormalCondition"), ("Ended", "EVCommunicationLost")]
    assert events[-1]["transactionInfo"]["stoppedReason"] == "Remote", "the reason of the last session's stop"


def test_a_stop_before_the_start_point_sends_nothing():
    t = tracker(start="PowerPathClosed")
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.core_stopped(1, 7, StopReason.LOCAL, TOKEN, T0 + 1, online=True, plugged=True)
    assert queued(t) == [] and t.by_evse == {}


def test_events_made_offline_say_so_and_keep_their_time():
    t = tracker(start="Authorized")
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=False)
    started, = queued(t)
    assert started["offline"] is True and started["timestamp"] == "2027-01-15T08:00:00.000Z"


def test_remote_start_id_in_the_started_event():
    t = tracker(start="Authorized")
    t.authorized(1, 7, {"idToken": "app-1", "type": "Central"}, "RemoteStart", 42, None, T0, online=True)
    started, = queued(t)
    assert started["triggerReason"] == "RemoteStart" and started["transactionInfo"]["remoteStartId"] == 42


def test_reset_ends_the_transaction_whatever_the_stop_point(tmp_path):
    t = tracker(start="EVConnected", stop="EVConnected")
    t.ev_connected(1, T0, online=True)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.core_stopped(1, 7, StopReason.SOFT_RESET, None, T0 + 1, online=True, plugged=True)
    ended = queued(t)[-1]
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == ("ResetCommand", "ImmediateReset")


def test_seq_no_survives_a_restart_and_power_loss_ends_with_the_next_one(tmp_path):
    store = StateStore(tmp_path / "evcp.sqlite3")
    store.transaction_started(7, 1, "04A1B2C3", 100, T0)
    store.meter_reading(1, 180.0, T0 + 50)
    t = tracker(start="Authorized", store=store)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.meter_values(1, "MeterValuePeriodic", {"timestamp": "2027-01-15T08:00:00Z", "sampledValue": [{"value": 1.0}]},
                   T0 + 60, online=True)
    tx_id = t.by_evse[1].transaction_id
    delivered = t.outbox.head()
    t.outbox.done(delivered)  # the Started reached the CSMS, the Updated is still queued
    # the process dies here; at the next start:
    ended, = recover(store, {1: 250.0})
    valid(ended)
    assert ended["seqNo"] == 2 and ended["transactionInfo"] == {
        "transactionId": tx_id, "chargingState": "Idle", "stoppedReason": "PowerLoss"}
    assert ended["meterValue"][0]["sampledValue"][0]["value"] == 250.0
    assert store.open_transactions() == []  # the 1.6 recovery will not stop it a second time
    assert store.load_document(OPEN_TRANSACTIONS) == {}
    assert [m.payload["seqNo"] for m in store.outbox_entries()] == [1, 2]
    assert recover(store, {}) == []  # once only
    store.close()


def test_the_open_transactions_are_checkpointed_at_every_event_never_for_a_kept_sample_alone(
        tmp_path, frames_in_log):
    # What a damaged write-ahead log can take (frames not checkpointed): a kept sample, a delivered
    # message's deletion; never a transaction nor a seqNo.
    store = StateStore(tmp_path / "evcp.sqlite3")
    store.transaction_started(7, 1, "04A1B2C3", 100, T0)
    t = tracker(start="EVConnected", store=store)
    t.ev_connected(1, T0, online=True)
    t.outbox.done(t.outbox.head())
    assert frames_in_log(store) == 0, "Started: queued, delivered and saved"
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0 + 1, online=True)
    assert frames_in_log(store) == 0, "tied to the core's transaction 7: recovery stops that one with it"
    t.meter_values(1, "MeterValuePeriodic", {"timestamp": "2027-01-15T08:00:00Z", "sampledValue": [{"value": 1.0}]},
                   T0 + 60, online=True)
    assert frames_in_log(store) == 0, "an Updated event: its seqNo"
    t.end_sample(1, {"timestamp": "2027-01-15T08:01:00Z", "sampledValue": [{"value": 2.0}]})
    assert frames_in_log(store) > 0, "a sample kept for the Ended is not checkpointed"
    t.core_stopped(1, 7, StopReason.LOCAL, None, T0 + 90, online=True, plugged=False)
    assert frames_in_log(store) == 0, "Ended"
    store.close()


@pytest.mark.parametrize("delivered", [True, False], ids=["started-delivered", "started-queued"])
def test_tc_e_power_loss_ended_is_never_stamped_before_the_started_of_a_power_path_closed_start(
        tmp_path, delivered):
    """TxStartPoint PowerPathClosed: the core's transaction starts at T0, the Started comes when
    the contactor closes at T0 + 30; the power goes before any meter reading was saved. The Ended
    must not come before the Started (a negative duration to the CSMS and to billing)."""
    store = StateStore(tmp_path / "evcp.sqlite3")
    store.transaction_started(7, 1, "04A1B2C3", 100, T0)
    t = tracker(start="PowerPathClosed", store=store)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.power_delivery(1, True, False, "Charging", False, T0 + 30, online=True)
    started = t.outbox.head().payload
    if delivered:
        t.outbox.done(t.outbox.head())
    assert store.last_reading(1) is None
    # the power goes here; at the next start:
    ended, = recover(store, {})
    valid(ended)
    assert ended["seqNo"] == started["seqNo"] + 1
    assert parse_timestamp(ended["timestamp"]) == T0 + 30, "when the station last saw it open"
    assert parse_timestamp(ended["timestamp"]) >= parse_timestamp(started["timestamp"])
    store.close()


def test_power_loss_ended_comes_after_a_queued_updated_later_than_the_last_saved_reading(tmp_path):
    store = StateStore(tmp_path / "evcp.sqlite3")
    store.transaction_started(7, 1, "04A1B2C3", 100, T0)
    store.meter_reading(1, 180.0, T0 + 50)
    t = tracker(start="Authorized", store=store)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.meter_values(1, "MeterValuePeriodic", {"timestamp": timestamp(T0 + 60), "sampledValue": [{"value": 1.0}]},
                   T0 + 60, online=False)
    ended, = recover(store, {1: 250.0})
    assert parse_timestamp(ended["timestamp"]) == T0 + 60
    assert parse_timestamp(ended["meterValue"][-1]["timestamp"]) == T0 + 60
    store.close()


def test_recovery_finds_a_transaction_whose_event_was_queued_but_not_saved(tmp_path):
    store = StateStore(tmp_path / "evcp.sqlite3")
    store.outbox_put(ACTION, {"eventType": "Started", "timestamp": "2027-01-15T08:00:00.000Z",
                              "triggerReason": "Authorized", "seqNo": 0, "evse": {"id": 1, "connectorId": 1},
                              "transactionInfo": {"transactionId": "tx-a"}}, None)
    ended, = recover(store, {})
    assert (ended["seqNo"], ended["transactionInfo"]["transactionId"]) == (1, "tx-a")
    store.close()


def test_a_queued_ended_is_not_ended_twice(tmp_path):
    store = StateStore(tmp_path / "evcp.sqlite3")
    t = tracker(start="Authorized", store=store)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    tx = t.by_evse[1]
    saved = store.load_document(OPEN_TRANSACTIONS)
    t.core_stopped(1, 7, StopReason.LOCAL, None, T0 + 1, online=True, plugged=False)
    store.save_document(OPEN_TRANSACTIONS, saved)  # as if the process died before saving
    assert recover(store, {}) == []
    assert [m.payload["eventType"] for m in store.outbox_entries()] == ["Started", "Ended"]
    assert tx.transaction_id
    store.close()


@pytest.mark.parametrize("reason, trigger, stopped", [
    (StopReason.EV_DISCONNECTED, "EVCommunicationLost", "EVDisconnected"),
    (StopReason.DEAUTHORIZED, "Deauthorized", "DeAuthorized"),
    (StopReason.POWER_LOSS, "AbnormalCondition", "PowerLoss"),
    (StopReason.OTHER, "AbnormalCondition", "Other"),
])
def test_stop_reasons(reason, trigger, stopped):
    t = tracker(start="Authorized")
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.core_stopped(1, 7, reason, None, T0 + 1, online=True, plugged=False)
    ended = queued(t)[-1]
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (trigger, stopped)


ENERGY, POWER, CURRENT = "Energy.Active.Import.Register", "Power.Active.Import", "Current.Import"


def test_tc_j_02_started_carries_the_tx_started_measurands_at_the_start_with_transaction_begin():
    t = tracker(start="Authorized", measurands=Measurands([ENERGY, POWER, CURRENT], [ENERGY], [ENERGY], [], []))
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    started, = queued(t)
    begin, = started["meterValue"]
    assert begin["timestamp"] == "2027-01-15T08:00:00.000Z"
    assert values(begin) == [(ENERGY, None, "Transaction.Begin", 100.0), (POWER, None, "Transaction.Begin", 7400.0),
                             (CURRENT, "L1", "Transaction.Begin", 10.7), (CURRENT, "L2", "Transaction.Begin", 10.8),
                             (CURRENT, "L3", "Transaction.Begin", 10.6)]


def end_reading(t: Tracked, measurands: list[str], context: str, at: float) -> dict:
    return t.meter.read(1, measurands, context, at)


def test_tc_j_02_ended_carries_the_readings_kept_during_the_transaction_then_the_tx_ended_measurands_at_the_end():
    t = tracker(start="Authorized", measurands=Measurands([ENERGY], [ENERGY], [ENERGY, POWER], [], [ENERGY]))
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.meter.energy_wh[1] = 150.0
    t.end_sample(1, end_reading(t, [ENERGY, POWER], "Sample.Periodic", T0 + 60))
    t.meter.energy_wh[1] = 180.0
    t.end_sample(1, end_reading(t, [ENERGY], "Sample.Clock", T0 + 900))
    assert [e["eventType"] for e in queued(t)] == ["Started"], "kept for the Ended, not sent on their own"
    t.meter.energy_wh[1] = 200.0
    t.core_stopped(1, 7, StopReason.LOCAL, TOKEN, T0 + 1000, online=True, plugged=False)
    ended, = queued(t)
    assert [values(mv) for mv in ended["meterValue"]] == [
        [(ENERGY, None, "Sample.Periodic", 150.0), (POWER, None, "Sample.Periodic", 7400.0)],
        [(ENERGY, None, "Sample.Clock", 180.0)],
        [(ENERGY, None, "Transaction.End", 200.0), (POWER, None, "Transaction.End", 7400.0)]]
    assert [mv["timestamp"] for mv in ended["meterValue"]] == [
        "2027-01-15T08:01:00.000Z", "2027-01-15T08:15:00.000Z", "2027-01-15T08:16:40.000Z"]


def test_readings_for_the_end_are_kept_only_for_a_started_transaction_and_only_so_many():
    t = tracker(start="PowerPathClosed")
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.end_sample(1, end_reading(t, [ENERGY], "Sample.Periodic", T0 + 1))
    t.power_delivery(1, True, True, "Charging", False, T0 + 2, online=True)
    for n in range(MAX_END_SAMPLES + 5):
        t.end_sample(1, end_reading(t, [ENERGY], "Sample.Periodic", T0 + 3 + n))
    t.core_stopped(1, 7, StopReason.LOCAL, TOKEN, T0 + 999, online=True, plugged=False)
    ended = queued(t)[-1]
    assert len(ended["meterValue"]) == MAX_END_SAMPLES + 1
    assert ended["meterValue"][0]["timestamp"] == "2027-01-15T08:00:03.000Z", "none from before the Started"


def test_readings_for_the_end_survive_a_restart_and_go_with_the_power_loss_ended(tmp_path):
    store = StateStore(tmp_path / "evcp.sqlite3")
    t = tracker(start="Authorized", store=store)
    t.authorized(1, 7, TOKEN, "Authorized", None, None, T0, online=True)
    t.end_sample(1, end_reading(t, [ENERGY], "Sample.Periodic", T0 + 60))
    again = tracker(start="Authorized", store=store)
    assert again.by_evse[1].end_samples == t.by_evse[1].end_samples
    ended, = recover(store, {1: 300.0})
    valid(ended)
    assert [values(mv) for mv in ended["meterValue"]] == [[(ENERGY, None, "Sample.Periodic", 100.0)],
                                                          [(ENERGY, None, "Transaction.End", 300.0)]]
    store.close()


def test_a_transaction_stored_by_an_earlier_version_is_read_without_the_fields_it_no_longer_has(tmp_path):
    store = StateStore(tmp_path / "evcp.sqlite3")
    store.save_document(OPEN_TRANSACTIONS, {"1": {"transaction_id": "tx-a", "evse": 1, "seq_next": 3, "started": True,
                                                  "meter_start_wh": 100.0}})
    t = tracker(store=store)
    assert (t.by_evse[1].transaction_id, t.by_evse[1].seq_next) == ("tx-a", 3)
    ended, = recover(store, {1: 300.0})
    assert ended["seqNo"] == 3
    store.close()
