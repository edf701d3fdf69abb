"""Session-level scenarios, each named after the OCTT charge-point test case it mirrors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core.model import AuthStatus, ConnectorStatus, Device, ErrorCode, ReservationEnd, Settings, StopReason
from evcp.core.station import Station

ACCEPTED = AuthStatus.ACCEPTED


class Bench:
    """Drives a Station with a clock and keeps every action it returned."""

    def __init__(self, connectors: int = 1, **settings):
        self.now = 1_000.0
        self.station = Station(connectors, Settings(**settings))
        self.log: list[act.Action] = list(self.station.start(self.now))

    def __call__(self, event, after: float = 0.1) -> list[act.Action]:
        self.now += after
        out = self.station.handle(event, self.now)
        self.log.extend(out)
        return out

    def statuses(self, connector: int = 1) -> list[str]:
        return [a.status.value for a in self.log if isinstance(a, act.StatusChanged) and a.connector == connector]

    def last(self, kind):
        found = [a for a in self.log if isinstance(a, kind)]
        return found[-1] if found else None

    def relay_closed(self, connector: int = 1) -> bool:
        return self.station.connectors[connector].relay_closed

    def start_session(self, tag: str = "04A1B2C3", tx_id: int = 42, parent: str | None = None) -> None:
        self(ev.PilotChanged(1, "B"))
        self(ev.TagPresented(tag))
        self(ev.AuthorizationResult(tag, ACCEPTED, parent))
        start = self.last(act.ReportTransactionStart)
        self(ev.TransactionStartConfirmed(1, start.local_id, tx_id, ACCEPTED, parent))
        self(ev.PilotChanged(1, "C"))


    def card_start(self, tag: str, verdict: AuthStatus | None = AuthStatus.ACCEPTED,
                   connector: int = 1) -> act.ReportTransactionStart:
        """The EV asks for current, a card is tapped and gets ``verdict``: the transaction's start,
        not yet answered by the central system."""
        self(ev.PilotChanged(connector, "C"))
        self(ev.TagPresented(tag))
        self(ev.AuthorizationResult(tag, verdict))
        return self.last(act.ReportTransactionStart)


def answer(actions) -> str:
    return next(a.status for a in actions if isinstance(a, act.Answer))


def test_power_up_opens_every_relay_and_reports_every_connector():
    b = Bench(connectors=2)
    opened = [a.connector for a in b.log if isinstance(a, act.OpenRelay)]
    assert opened == [1, 2]
    assert {a.connector for a in b.log if isinstance(a, act.StatusChanged)} == {0, 1, 2}


def test_tc_003_regular_charging_session_plugin_first():
    b = Bench()
    b(ev.MeterSampled(1, 1500.0, 0.0))
    b(ev.PilotChanged(1, "B"))
    assert b.statuses()[-1] == "Preparing"
    out = b(ev.TagPresented("04A1B2C3"))
    assert act.RequestAuthorization("04A1B2C3") in out
    out = b(ev.AuthorizationResult("04A1B2C3", ACCEPTED))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    assert (start.connector, start.id_tag, start.meter_start_wh) == (1, "04A1B2C3", 1500)
    assert not b.relay_closed(), "relay must stay open until StartTransaction.conf"
    out = b(ev.TransactionStartConfirmed(1, start.local_id, 7, ACCEPTED))
    assert act.OfferCurrent(1, 32.0) in out
    assert not b.relay_closed(), "EV is in B: not requesting charge"
    assert b.statuses()[-1] == "SuspendedEV"
    out = b(ev.PilotChanged(1, "C"))
    assert act.CloseRelay(1) in out
    assert b.statuses()[-1] == "Charging"


def test_tc_004_1_identification_first():
    b = Bench()
    b(ev.TagPresented("TAG1"))
    b(ev.AuthorizationResult("TAG1", ACCEPTED))
    assert b.statuses()[-1] == "Preparing"
    out = b(ev.PilotChanged(1, "C"))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    out = b(ev.TransactionStartConfirmed(1, start.local_id, 8, ACCEPTED))
    assert act.CloseRelay(1) in out
    assert b.statuses()[-1] == "Charging"


def test_tc_004_2_identification_first_connection_timeout():
    b = Bench(connection_timeout_s=30)
    b(ev.TagPresented("TAG1"))
    b(ev.AuthorizationResult("TAG1", ACCEPTED))
    b(ev.Tick(), after=29)
    assert b.statuses()[-1] == "Preparing"
    b(ev.Tick(), after=2)
    assert b.statuses()[-1] == "Available"
    b(ev.PilotChanged(1, "B"))
    assert b.last(act.ReportTransactionStart) is None


def test_an_authorization_before_the_plug_is_reported_and_so_is_its_timeout():
    b = Bench(connection_timeout_s=30)
    b(ev.TagPresented("TAG1"))
    out = b(ev.AuthorizationResult("TAG1", ACCEPTED))
    assert act.Authorized(1, "TAG1", False, b.now) in out
    out = b(ev.Tick(), after=31)
    assert act.AuthorizationEnded(1, "TAG1", False, StopReason.TIMEOUT, b.now) in out


def test_an_authorization_that_becomes_a_transaction_is_neither_waiting_nor_ended():
    b = Bench()
    b(ev.TagPresented("TAG1"))
    b(ev.AuthorizationResult("TAG1", ACCEPTED))
    out = b(ev.PilotChanged(1, "B"))
    assert any(isinstance(a, act.ReportTransactionStart) for a in out)
    assert not any(isinstance(a, act.AuthorizationEnded) for a in b.log)
    b2 = Bench()
    b2(ev.PilotChanged(1, "B"))
    b2(ev.TagPresented("TAG1"))
    out = b2(ev.AuthorizationResult("TAG1", ACCEPTED))
    assert not any(isinstance(a, act.Authorized) for a in out), "plugged in: the transaction begins at once"


def test_a_withdrawn_or_refused_authorization_says_why():
    b = Bench()
    b(ev.TagPresented("TAG1"))
    b(ev.AuthorizationResult("TAG1", ACCEPTED))
    out = b(ev.TagPresented("TAG1"))
    assert act.AuthorizationEnded(1, "TAG1", False, StopReason.LOCAL, b.now) in out
    b(ev.TagPresented("BAD"))
    out = b(ev.AuthorizationResult("BAD", AuthStatus.INVALID))
    assert act.AuthorizationEnded(1, "BAD", False, StopReason.DEAUTHORIZED, b.now) in out


def test_a_remote_start_says_it_is_one_while_waiting_when_it_times_out_and_when_it_starts():
    b = Bench(connection_timeout_s=10)
    out = b(ev.RemoteStartRequested(1, "APP1"))
    assert act.Authorized(1, "APP1", True, b.now) in out
    out = b(ev.Tick(), after=11)
    assert act.AuthorizationEnded(1, "APP1", True, StopReason.TIMEOUT, b.now) in out
    b(ev.RemoteStartRequested(1, "APP1"))
    out = b(ev.PilotChanged(1, "B"))
    assert next(a for a in out if isinstance(a, act.ReportTransactionStart)).remote
    b(ev.PilotChanged(1, "A"))
    b(ev.TagPresented("TAG1"))
    b(ev.AuthorizationResult("TAG1", ACCEPTED))
    out = b(ev.PilotChanged(1, "B"))
    assert not next(a for a in out if isinstance(a, act.ReportTransactionStart)).remote


def deliveries(b: Bench) -> list[tuple[bool, bool]]:
    return [(a.power_path_closed, a.energy_flowing) for a in b.log if isinstance(a, act.PowerDeliveryChanged)]


def test_the_power_path_closes_with_the_contactor_and_energy_flows_once_a_reading_shows_the_ev_drawing():
    b = Bench()
    b(ev.MeterSampled(1, 1000.0, 7000.0))  # a reading from before the contactor closed does not count
    b.start_session()
    assert b.relay_closed() and deliveries(b) == [(True, False)]
    b(ev.MeterSampled(1, 1000.0, 50.0))
    assert deliveries(b) == [(True, False)], "below ENERGY_FLOW_MIN_W the EV is not drawing"
    b(ev.MeterSampled(1, 1001.0, 7000.0))
    assert deliveries(b) == [(True, False), (True, True)]
    b(ev.MeterSampled(1, 1002.0, 0.0))
    assert deliveries(b)[-1] == (True, False), "the EV stopped drawing, the contactor is still closed"
    b(ev.PilotChanged(1, "B"))
    assert not b.relay_closed() and deliveries(b)[-1] == (False, False)


def test_without_any_meter_reading_the_closed_contactor_counts_as_energy_flowing():
    b = Bench()
    b.start_session()
    assert deliveries(b) == [(True, True)]
    b(ev.RemoteStopRequested(42))
    assert deliveries(b)[-1] == (False, False)


def test_the_protocol_may_end_a_transaction_for_a_reason_of_its_own():
    b = Bench()
    b.start_session(tx_id=9)
    b(ev.RemoteStopRequested(9, StopReason.OTHER, why="OCPP 2.0.1 TxStopPoint reached"))
    assert b.last(act.ReportTransactionStop).reason is StopReason.OTHER and not b.relay_closed()
    b(ev.PilotChanged(1, "C"))
    assert not b.relay_closed(), "the EV still plugged in asks again: no energy without a new session"


def test_a_transaction_whose_start_waits_for_its_answer_is_stopped_by_its_local_id():
    b = Bench()
    start = b.card_start("TAG1")
    assert answer(b(ev.RemoteStopRequested(None))) == "Rejected", "no central system id names an unanswered start"
    assert answer(b(ev.RemoteStopRequested(None, StopReason.HARD_RESET, local_id=start.local_id + 1))) == "Rejected"
    out = b(ev.RemoteStopRequested(None, StopReason.HARD_RESET, local_id=start.local_id))
    assert answer(out) == "Accepted"
    stop = next(a for a in out if isinstance(a, act.ReportTransactionStop))
    assert (stop.local_id, stop.transaction_id, stop.reason) == (start.local_id, None, StopReason.HARD_RESET)
    b(ev.TransactionStartConfirmed(1, start.local_id, start.local_id, ACCEPTED))  # the answer, too late
    assert not any(isinstance(a, act.CloseRelay) for a in b.log), "no energy for a transaction already stopped"


def test_a_start_never_answered_ends_without_energy_and_frees_the_connector():
    b = Bench()
    start = b.card_start("TAG1")
    out = b(ev.TransactionStartConfirmed(1, start.local_id, start.local_id, None))
    stop = next(a for a in out if isinstance(a, act.ReportTransactionStop))
    assert (stop.local_id, stop.reason) == (start.local_id, StopReason.DEAUTHORIZED)
    assert not b.relay_closed() and b.statuses()[-1] == "Finishing"
    b(ev.PilotChanged(1, "A"))
    assert b.statuses()[-1] == "Available"
    assert not any(isinstance(a, act.CloseRelay) for a in b.log)


def test_an_offline_start_never_answered_goes_on_as_it_was_allowed():
    b = Bench(offline_start=True, allow_offline_unknown=True)
    start = b.card_start("TAG1", None)
    assert b.relay_closed()
    b(ev.TransactionStartConfirmed(1, start.local_id, start.local_id, None))
    assert b.relay_closed() and b.last(act.ReportTransactionStop) is None
    b(ev.RemoteStopRequested(start.local_id))
    assert b.last(act.ReportTransactionStop).reason is StopReason.REMOTE, "it has its transaction id now"


def test_tc_023_authorize_invalid_never_starts():
    b = Bench()
    b(ev.TagPresented("BAD"))
    b(ev.AuthorizationResult("BAD", AuthStatus.INVALID))
    b(ev.PilotChanged(1, "B"))
    assert b.statuses()[-1] == "Preparing"
    assert b.last(act.ReportTransactionStart) is None


def test_no_answer_to_authorize_does_not_start():
    b = Bench()
    b(ev.PilotChanged(1, "B"))
    b(ev.TagPresented("T"))
    b(ev.AuthorizationResult("T", None))
    assert b.last(act.ReportTransactionStart) is None
    assert b.station.connectors[1].phase.value == "idle"


@pytest.mark.parametrize("verdict", [AuthStatus.INVALID, AuthStatus.BLOCKED, AuthStatus.EXPIRED,
                                     AuthStatus.CONCURRENT_TX])
def test_non_accepted_start_conf_never_closes_and_stops_deauthorized(verdict):
    b = Bench()
    start = b.card_start("T")
    out = b(ev.TransactionStartConfirmed(1, start.local_id, 9, verdict))
    assert not any(isinstance(a, act.CloseRelay) for a in b.log)
    stop = next(a for a in out if isinstance(a, act.ReportTransactionStop))
    assert (stop.transaction_id, stop.reason) == (9, StopReason.DEAUTHORIZED)
    assert b.statuses()[-1] == "Finishing"


def test_non_accepted_start_with_stop_on_invalid_id_false_keeps_transaction_without_energy():
    b = Bench(stop_on_invalid_id=False)
    b(ev.PilotChanged(1, "C"))
    b(ev.TagPresented("T"))
    b(ev.AuthorizationResult("T", ACCEPTED))
    b(ev.TransactionStartConfirmed(1, b.last(act.ReportTransactionStart).local_id, 9, AuthStatus.INVALID))
    assert not b.relay_closed()
    assert b.last(act.ReportTransactionStop) is None
    assert b.statuses()[-1] == "SuspendedEVSE"


def test_a_running_transaction_whose_token_is_revoked_opens_and_stops_deauthorized():
    b = Bench()
    b.start_session()
    assert b.relay_closed()
    local_id = b.last(act.ReportTransactionStart).local_id
    out = b(ev.TransactionAuthorizationRevoked(1, local_id, AuthStatus.BLOCKED))
    assert isinstance(out[0], act.OpenRelay)
    assert b.last(act.ReportTransactionStop).reason is StopReason.DEAUTHORIZED


def test_a_revocation_without_stop_on_invalid_id_keeps_the_transaction_up_to_max_energy():
    b = Bench(stop_on_invalid_id=False, max_energy_on_invalid_wh=100)
    b(ev.MeterSampled(1, 1000.0, 7000.0))
    b.start_session()
    b(ev.TransactionAuthorizationRevoked(1, b.last(act.ReportTransactionStart).local_id, AuthStatus.INVALID))
    assert b.relay_closed(), "up to MaxEnergyOnInvalidId more"
    out = b(ev.MeterSampled(1, 1100.0, 7000.0))
    assert isinstance(out[0], act.OpenRelay)
    assert b.last(act.ReportTransactionStop) is None
    assert b.statuses()[-1] == "SuspendedEVSE"


@pytest.mark.parametrize("status, other_transaction", [(ACCEPTED, False), (AuthStatus.BLOCKED, True)])
def test_a_revocation_that_is_accepted_or_for_another_transaction_changes_nothing(status, other_transaction):
    b = Bench()
    b.start_session()
    local_id = b.last(act.ReportTransactionStart).local_id + (1 if other_transaction else 0)
    assert b(ev.TransactionAuthorizationRevoked(1, local_id, status)) == []
    assert b.relay_closed() and b.last(act.ReportTransactionStop) is None


def test_tc_005_1_ev_side_disconnect_stops_and_opens_relay_in_the_same_step():
    b = Bench()
    b.start_session()
    assert b.relay_closed()
    out = b(ev.PilotChanged(1, "A"))
    assert isinstance(out[0], act.OpenRelay)
    stop = b.last(act.ReportTransactionStop)
    assert stop.reason is StopReason.EV_DISCONNECTED
    assert b.statuses()[-1] == "Available"


def test_tc_005_3_ev_side_disconnect_without_stop_keeps_transaction_suspended():
    b = Bench(stop_on_ev_disconnect=False)
    b.start_session()
    out = b(ev.PilotChanged(1, "A"))
    assert isinstance(out[0], act.OpenRelay)
    assert b.last(act.ReportTransactionStop) is None
    assert b.statuses()[-1] == "SuspendedEV"
    b(ev.PilotChanged(1, "C"))
    assert b.relay_closed()
    out = b(ev.RemoteStopRequested(42))
    assert answer(out) == "Accepted"
    assert b.last(act.ReportTransactionStop).reason is StopReason.REMOTE


def test_ev_pauses_c_to_b_opens_relay_and_resumes():
    b = Bench()
    b.start_session()
    out = b(ev.PilotChanged(1, "B"))
    assert act.OpenRelay(1, "EV left state C (pilot B)") in out
    assert b.statuses()[-1] == "SuspendedEV"
    b(ev.PilotChanged(1, "C"))
    assert b.relay_closed()


def test_tc_068_stop_with_same_id_tag_and_not_with_another():
    b = Bench()
    b.start_session(tag="OWNER")
    out = b(ev.TagPresented("STRANGER"))
    assert not any(isinstance(a, (act.ReportTransactionStop, act.RequestAuthorization)) for a in out)
    assert b.relay_closed()
    out = b(ev.TagPresented("OWNER"))
    assert isinstance(out[0], act.OpenRelay) or act.OpenRelay in map(type, out)
    stop = b.last(act.ReportTransactionStop)
    assert (stop.id_tag, stop.reason) == ("OWNER", StopReason.LOCAL)
    assert b.statuses()[-1] == "Finishing"


def test_tc_069_stop_with_sibling_tag_sharing_parent_id():
    b = Bench()
    b.start_session(tag="CHILD1", parent="FLEET")
    out = b(ev.TagPresented("CHILD2"))
    assert act.RequestAuthorization("CHILD2") in out
    assert b.relay_closed()
    b(ev.AuthorizationResult("CHILD2", ACCEPTED, "OTHERFLEET"))
    assert b.relay_closed(), "a different parent must not stop the transaction"
    b(ev.TagPresented("CHILD2"))
    b(ev.AuthorizationResult("CHILD2", ACCEPTED, "FLEET"))
    assert not b.relay_closed()
    assert b.last(act.ReportTransactionStop).id_tag == "CHILD2"


def test_tc_010_remote_start_cable_plugged_in_first():
    b = Bench()
    b(ev.PilotChanged(1, "C"))
    out = b(ev.RemoteStartRequested(1, "REMOTE1"))
    assert answer(out) == "Accepted"
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    assert start.id_tag == "REMOTE1"
    b(ev.TransactionStartConfirmed(1, start.local_id, 11, ACCEPTED))
    assert b.relay_closed()


def test_tc_011_1_remote_start_first_with_authorize_remote_tx_requests():
    b = Bench(authorize_remote_start=True)
    out = b(ev.RemoteStartRequested(1, "REMOTE1"))
    assert answer(out) == "Accepted"
    assert act.RequestAuthorization("REMOTE1") in out
    b(ev.AuthorizationResult("REMOTE1", ACCEPTED))
    assert b.statuses()[-1] == "Preparing"
    out = b(ev.PilotChanged(1, "B"))
    assert any(isinstance(a, act.ReportTransactionStart) for a in out)


def test_tc_011_2_remote_start_time_out():
    b = Bench(connection_timeout_s=10)
    b(ev.RemoteStartRequested(1, "REMOTE1"))
    assert b.statuses()[-1] == "Preparing"
    b(ev.Tick(), after=11)
    assert b.statuses()[-1] == "Available"


def test_tc_012_remote_stop():
    b = Bench()
    b.start_session(tx_id=77)
    out = b(ev.RemoteStopRequested(77))
    assert answer(out) == "Accepted"
    assert not b.relay_closed()
    assert b.last(act.ReportTransactionStop).reason is StopReason.REMOTE
    assert b.statuses()[-1] == "Finishing"


def test_tc_026_remote_start_on_busy_connector_rejected():
    b = Bench()
    b.start_session()
    assert answer(b(ev.RemoteStartRequested(1, "OTHER"))) == "Rejected"


def test_tc_027_remote_start_on_connector_0_rejected():
    b = Bench()
    assert answer(b(ev.RemoteStartRequested(0, "T"))) == "Rejected"


def test_tc_028_remote_stop_unknown_transaction_rejected():
    b = Bench()
    b.start_session(tx_id=5)
    assert answer(b(ev.RemoteStopRequested(6))) == "Rejected"
    assert b.relay_closed()


def test_tc_041_fault_blocks_start_and_reports_faulted():
    b = Bench()
    b(ev.DeviceFault(1, Device.RELAY, True, "welded"))
    assert b.statuses()[-1] == "Faulted"
    b(ev.PilotChanged(1, "B"))
    b(ev.TagPresented("T"))
    b(ev.AuthorizationResult("T", ACCEPTED))
    assert b.last(act.ReportTransactionStart) is None
    assert answer(b(ev.RemoteStartRequested(1, "T"))) == "Rejected"


def test_welded_contactor_during_charging_stops_with_power_switch_failure():
    b = Bench()
    b.start_session()
    out = b(ev.DeviceFault(1, Device.RELAY, True, "feedback closed while commanded open"))
    assert act.OpenRelay in map(type, out)
    changed = b.last(act.StatusChanged)
    assert (changed.status, changed.error_code) == (ConnectorStatus.FAULTED, ErrorCode.POWER_SWITCH_FAILURE)
    assert b.last(act.ReportTransactionStop).reason is StopReason.OTHER


@pytest.mark.parametrize("state", ["E", "F"])
def test_pilot_error_states_open_relay_at_once_and_fault(state):
    b = Bench()
    b.start_session()
    out = b(ev.PilotChanged(1, state))
    assert isinstance(out[0], act.OpenRelay)
    assert b.statuses()[-1] == "Faulted"


def test_meter_fault_is_reported_survived_and_blocks_new_sessions():
    b = Bench()
    b(ev.MeterSampled(1, 100.0, 0.0))
    b.start_session()
    b(ev.MeterSampled(1, 250.0, 7000.0))
    b(ev.DeviceFault(1, Device.METER, True, "no answer"))
    changed = b.last(act.StatusChanged)
    assert (changed.status, changed.error_code) == (ConnectorStatus.CHARGING, ErrorCode.POWER_METER_FAILURE)
    assert b.relay_closed(), "the session goes on with its last good reading"
    b(ev.TagPresented("04A1B2C3"))
    assert b.last(act.ReportTransactionStop).meter_stop_wh == 250
    b(ev.PilotChanged(1, "A"))
    b(ev.PilotChanged(1, "B"))
    b(ev.TagPresented("NEXT"))
    b(ev.AuthorizationResult("NEXT", ACCEPTED))
    assert b.last(act.ReportTransactionStart).id_tag == "04A1B2C3", "no new session without a meter"
    b(ev.DeviceFault(1, Device.METER, False))
    assert b.last(act.StatusChanged).error_code is ErrorCode.NO_ERROR


def test_reader_fault_reported_on_connector_zero():
    b = Bench()
    b(ev.DeviceFault(0, Device.READER, True, "no answer on SPI"))
    changed = b.last(act.StatusChanged)
    assert (changed.connector, changed.error_code) == (0, ErrorCode.READER_FAILURE)
    b(ev.DeviceFault(0, Device.READER, False))
    assert b.last(act.StatusChanged).error_code is ErrorCode.NO_ERROR


def problems(out) -> list[tuple[int, Device, bool, str]]:
    return [(a.connector, a.device, a.active, a.detail) for a in out if isinstance(a, act.DeviceProblem)]


def test_each_device_fault_is_reported_once_when_it_begins_and_once_when_it_ends():
    b = Bench(connectors=2)
    assert problems(b(ev.DeviceFault(2, Device.METER, True, "no answer"))) == [(2, Device.METER, True, "no answer")]
    assert problems(b(ev.DeviceFault(2, Device.METER, True, "still no answer"))) == [], "not again while it lasts"
    out = b(ev.DeviceFault(0, Device.READER, True, "no answer on SPI"))
    assert problems(out) == [(0, Device.READER, True, "no answer on SPI")]
    assert problems(b(ev.Tick())) == []
    out = b(ev.DeviceFault(2, Device.METER, False))
    assert problems(out) == [(2, Device.METER, False, "")]
    assert problems(b(ev.DeviceFault(0, Device.READER, False))) == [(0, Device.READER, False, "")]


def test_an_unreadable_power_fail_input_is_reported_on_connector_zero_and_stops_nothing():
    b = Bench()
    b.start_session()
    b(ev.DeviceFault(0, Device.POWER_FAIL_INPUT, True, "power-fail input unreadable: GPIO26"))
    changed = b.last(act.StatusChanged)
    assert (changed.connector, changed.status, changed.error_code, changed.info) == (
        0, ConnectorStatus.AVAILABLE, ErrorCode.OTHER_ERROR, "power-fail input unreadable: GPIO26")
    assert b.relay_closed() and b.station.connectors[1].transaction is not None
    b(ev.DeviceFault(0, Device.POWER_FAIL_INPUT, False))
    assert (b.last(act.StatusChanged).connector, b.last(act.StatusChanged).error_code) == (0, ErrorCode.NO_ERROR)


def test_unplug_before_start_conf_stops_without_ever_closing():
    b = Bench()
    b(ev.PilotChanged(1, "C"))
    b(ev.RemoteStartRequested(1, "T"))
    start = b.last(act.ReportTransactionStart)
    b(ev.PilotChanged(1, "A"))
    stop = b.last(act.ReportTransactionStop)
    assert (stop.local_id, stop.transaction_id, stop.reason) == (start.local_id, None, StopReason.EV_DISCONNECTED)
    b(ev.TransactionStartConfirmed(1, start.local_id, 3, ACCEPTED))
    assert not any(isinstance(a, act.CloseRelay) for a in b.log)
    assert b.statuses()[-1] == "Available"


@pytest.mark.parametrize("hard,reason", [(True, StopReason.HARD_RESET), (False, StopReason.SOFT_RESET)])
def test_tc_015_reset_with_transaction_stops_then_restarts(hard, reason):
    b = Bench()
    b.start_session()
    out = b(ev.ResetRequested(hard))
    kinds = [type(a) for a in out]
    assert kinds.index(act.OpenRelay) < kinds.index(act.ReportTransactionStop) < kinds.index(act.Restart)
    assert b.last(act.ReportTransactionStop).reason is reason
    assert answer(out) == "Accepted"


def test_change_availability_scheduled_during_transaction_then_applied():
    b = Bench()
    b.start_session()
    assert answer(b(ev.AvailabilityRequested(1, False))) == "Scheduled"
    assert b.relay_closed()
    b(ev.RemoteStopRequested(42))
    assert b.statuses()[-1] == "Unavailable"
    assert answer(b(ev.RemoteStartRequested(1, "T"))) == "Rejected"
    assert answer(b(ev.AvailabilityRequested(1, True))) == "Accepted"
    assert b.statuses()[-1] == "Finishing"


def test_tc_034_change_availability_of_connector_zero():
    b = Bench(connectors=2)
    assert answer(b(ev.AvailabilityRequested(0, False))) == "Accepted"
    assert b.statuses(0)[-1] == b.statuses(1)[-1] == b.statuses(2)[-1] == "Unavailable"
    assert answer(b(ev.AvailabilityRequested(3, False))) == "Rejected"


def test_unlock_connector_without_a_lock_actuator_is_not_supported_and_stops_nothing():
    """OCPP 1.6 §7.44 NotSupported: "Charge Point has no connector lock" (the lock: test_station_socket)."""
    b = Bench()
    assert answer(b(ev.UnlockRequested(5))) == "NotSupported"
    b.start_session()
    assert answer(b(ev.UnlockRequested(1))) == "NotSupported"
    assert b.last(act.ReportTransactionStop) is None
    tethered = Bench(tethered_cable=True)
    assert answer(tethered(ev.UnlockRequested(1))) == "NotSupported"


def test_tc_070_periodic_meter_values_spaced_by_interval():
    b = Bench(meter_sample_interval_s=10)
    b(ev.MeterSampled(1, 0.0, 0.0))
    b.start_session()
    reports = []
    for _ in range(35):
        b(ev.MeterSampled(1, 100.0, 7000.0), after=0.0)
        reports += [a for a in b(ev.Tick(), after=1.0) if isinstance(a, act.ReportMeterValues)]
    assert [r.context for r in reports] == ["Sample.Periodic"] * 3
    assert [round(reports[i + 1].at - reports[i].at) for i in range(2)] == [10, 10]
    assert all(r.transaction_id == 42 for r in reports)


def test_tc_071_clock_aligned_meter_values_on_boundaries():
    b = Bench(meter_sample_interval_s=0, clock_aligned_interval_s=20)
    b.now = 1_000_003.0
    b(ev.MeterSampled(1, 0.0, 0.0))
    reports = []
    for _ in range(65):
        reports += [a for a in b(ev.Tick(), after=1.0) if isinstance(a, act.ReportMeterValues)]
    assert [r.at % 20 for r in reports] == [0, 0, 0]
    assert {r.context for r in reports} == {"Sample.Clock"}


def test_readings_kept_for_the_transaction_end_follow_their_own_intervals_and_only_during_transactions():
    b = Bench(meter_sample_interval_s=10, end_sample_interval_s=15, end_clock_aligned_interval_s=20)
    b.now = 1_000_003.0
    b(ev.MeterSampled(1, 0.0, 0.0))
    for _ in range(30):
        assert not [a for a in b(ev.Tick(), after=1.0) if isinstance(a, act.ReportMeterValues)
                    and a.for_transaction_end], "no transaction, nothing kept for its end"
    b.start_session()
    reports = []
    for _ in range(45):
        reports += [a for a in b(ev.Tick(), after=1.0) if isinstance(a, act.ReportMeterValues)]
    periodic = [r for r in reports if r.context == "Sample.Periodic" and not r.for_transaction_end]
    kept = [r for r in reports if r.for_transaction_end]
    assert len(periodic) == 4, "TxUpdatedInterval goes on as before"
    kept_periodic = [r.at for r in kept if r.context == "Sample.Periodic"]
    kept_aligned = [r.at for r in kept if r.context == "Sample.Clock"]
    assert [round(b - a) for a, b in zip(kept_periodic, kept_periodic[1:])] == [15] and len(kept_periodic) == 2
    assert [at % 20 for at in kept_aligned] == [0, 0] and all(r.local_id is not None for r in kept)


def test_new_session_from_finishing_with_a_new_card():
    b = Bench()
    b.start_session(tag="FIRST")
    b(ev.TagPresented("FIRST"))
    assert b.statuses()[-1] == "Finishing"
    b(ev.TagPresented("SECOND"))
    b(ev.AuthorizationResult("SECOND", ACCEPTED))
    assert b.last(act.ReportTransactionStart).id_tag == "SECOND"


def test_settings_can_change_at_run_time():
    b = Bench()
    b.station.settings = replace(b.station.settings, max_current_a=16.0)
    b.start_session()
    assert act.OfferCurrent(1, 16.0) in b.log


@pytest.mark.parametrize("reason", [StopReason.POWER_LOSS, StopReason.REBOOT])
def test_tc_032_1_shutdown_stops_transactions_before_going_down(reason):
    b = Bench()
    b.start_session()
    out = b(ev.ShutdownRequested(reason))
    assert isinstance(out[0], act.OpenRelay)
    assert b.last(act.ReportTransactionStop).reason is reason
    b(ev.TagPresented("LATE"))
    assert not any(isinstance(a, act.RequestAuthorization) for a in b.log if getattr(a, "id_tag", "") == "LATE")
    assert answer(b(ev.RemoteStartRequested(1, "LATE"))) == "Rejected"


def test_tc_037_1_offline_start_with_the_installer_opt_in_charges_before_the_answer():
    b = Bench(offline_start=True, allow_offline_unknown=True)
    b(ev.PilotChanged(1, "C"))
    b(ev.TagPresented("OFFLINE1"))
    out = b(ev.AuthorizationResult("OFFLINE1", None))
    assert [type(a) for a in out][:1] != [act.OpenRelay]
    assert any(isinstance(a, act.ReportTransactionStart) for a in out) and act.CloseRelay(1) in out
    assert b.statuses()[-1] == "Charging"
    start = b.last(act.ReportTransactionStart)
    b(ev.TransactionStartConfirmed(1, start.local_id, 21, ACCEPTED))
    assert b.relay_closed()


def test_offline_start_stays_off_without_the_opt_in_even_for_unknown_ids_allowed_by_ocpp():
    b = Bench(offline_start=False, allow_offline_unknown=True)
    b(ev.PilotChanged(1, "C"))
    b(ev.TagPresented("OFFLINE1"))
    b(ev.AuthorizationResult("OFFLINE1", None))
    assert b.last(act.ReportTransactionStart) is None and not b.relay_closed()


def test_tc_037_3_late_rejection_of_an_offline_start_stops_deauthorized_at_once():
    b = Bench(offline_start=True, allow_offline_unknown=True)
    b(ev.PilotChanged(1, "C"))
    b(ev.TagPresented("OFFLINE1"))
    b(ev.AuthorizationResult("OFFLINE1", None))
    out = b(ev.TransactionStartConfirmed(1, b.last(act.ReportTransactionStart).local_id, 22, AuthStatus.INVALID))
    assert isinstance(out[0], act.OpenRelay)
    assert b.last(act.ReportTransactionStop).reason is StopReason.DEAUTHORIZED


def test_tc_037_2_late_rejection_without_stop_allows_max_energy_on_invalid_id():
    b = Bench(offline_start=True, allow_offline_unknown=True, stop_on_invalid_id=False,
              max_energy_on_invalid_wh=100)
    b(ev.MeterSampled(1, 1000.0, 0.0))
    b(ev.PilotChanged(1, "C"))
    b(ev.TagPresented("OFFLINE1"))
    b(ev.AuthorizationResult("OFFLINE1", None))
    b(ev.MeterSampled(1, 1500.0, 7000.0))
    b(ev.TransactionStartConfirmed(1, b.last(act.ReportTransactionStart).local_id, 23, AuthStatus.INVALID))
    assert b.relay_closed(), "up to MaxEnergyOnInvalidId more"
    b(ev.MeterSampled(1, 1599.0, 7000.0))
    assert b.relay_closed()
    out = b(ev.MeterSampled(1, 1600.0, 7000.0))
    assert isinstance(out[0], act.OpenRelay)
    assert b.statuses()[-1] == "SuspendedEVSE"
    assert b.last(act.ReportTransactionStop) is None


def test_sessions_without_a_meter_when_the_installer_allows_them():
    b = Bench(require_meter=False)
    b(ev.DeviceFault(1, Device.METER, True, "no answer"))
    b(ev.PilotChanged(1, "C"))
    b(ev.TagPresented("T"))
    b(ev.AuthorizationResult("T", ACCEPTED))
    assert b.last(act.ReportTransactionStart) is not None


def test_an_authorization_that_never_gets_an_answer_frees_the_connector_after_connection_timeout():
    b = Bench(connection_timeout_s=30)
    b(ev.PilotChanged(1, "C"))
    b(ev.TagPresented("LOST"))
    b(ev.Tick(), after=31)
    b(ev.TagPresented("NEXT"))
    assert b.log[-1] == act.RequestAuthorization("NEXT") or act.RequestAuthorization("NEXT") in b.log


def test_availability_changes_are_reported_for_keeping_including_scheduled_ones():
    b = Bench()
    b.start_session()
    b(ev.AvailabilityRequested(1, False))
    assert b.last(act.AvailabilityChanged) == act.AvailabilityChanged(1, False), "scheduled counts"
    b(ev.RemoteStopRequested(42))
    assert sum(isinstance(a, act.AvailabilityChanged) for a in b.log) == 1, "applying it changes nothing more"
    restored = Station(1)
    restored.restore_availability({0: True, 1: False})
    out = restored.start(0.0)
    assert not any(isinstance(a, act.AvailabilityChanged) for a in out), "a restored value is not written again"
    assert restored.status_of(1)[0] is ConnectorStatus.UNAVAILABLE


# --- Reservation (OCPP 1.6 §3.10, §5.13) -------------------------------------------------------


def reserve(b: Bench, connector: int = 1, reservation_id: int = 5, tag: str = "RES", expires_in: float = 600,
            parent: str | None = None) -> str:
    return answer(b(ev.ReserveNowRequested(connector, reservation_id, tag, b.now + expires_in, parent)))


def test_tc_046_1_reserved_connector_local_start_only_by_the_reserved_card():
    b = Bench()
    assert reserve(b) == "Accepted"
    assert b.statuses()[-1] == "Reserved"
    out = b(ev.TagPresented("OTHER"))
    assert not any(isinstance(a, act.RequestAuthorization) for a in out), "another card is not even authorized"
    out = b(ev.TagPresented("RES"))
    assert act.RequestAuthorization("RES") in out
    b(ev.AuthorizationResult("RES", ACCEPTED))
    assert b.statuses()[-1] == "Preparing"
    out = b(ev.PilotChanged(1, "C"))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    assert start.reservation_id == 5
    assert b.station.reservations == {}
    changed = b.last(act.ReservationsChanged)
    assert changed.reservations == ()
    assert act.ReservationEnded(5, 1, ReservationEnd.USED) in out


def test_tc_046_2_reserved_connector_remote_start():
    b = Bench()
    reserve(b)
    assert answer(b(ev.RemoteStartRequested(1, "OTHER"))) == "Rejected"
    assert answer(b(ev.RemoteStartRequested(1, "RES"))) == "Accepted"
    out = b(ev.PilotChanged(1, "C"))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    assert (start.id_tag, start.reservation_id) == ("RES", 5)


def test_tc_047_reservation_expires_and_the_connector_is_free_again():
    b = Bench()
    reserve(b, expires_in=60)
    b(ev.Tick(), after=59)
    assert b.statuses()[-1] == "Reserved"
    assert b.last(act.ReservationEnded) is None
    out = b(ev.Tick(), after=2)
    assert act.ReservationsChanged(()) in out
    assert act.ReservationEnded(5, 1, ReservationEnd.EXPIRED) in out
    assert b.statuses()[-1] == "Available"
    b.start_session("OTHER")
    assert b.last(act.ReportTransactionStart).reservation_id is None


def test_tc_048_reserve_answers_occupied_faulted_unavailable_rejected():
    b = Bench(connectors=2)
    b(ev.PilotChanged(1, "B"))  # OCTT SetConnectorOccupied
    assert reserve(b, connector=1) == "Occupied"
    b(ev.DeviceFault(2, Device.RELAY, True, "welded"))
    assert reserve(b, connector=2) == "Faulted"
    b(ev.DeviceFault(2, Device.RELAY, False))
    b(ev.AvailabilityRequested(2, False))
    assert reserve(b, connector=2) == "Unavailable"
    assert reserve(b, connector=3) == "Rejected"
    assert reserve(b, connector=2, expires_in=-1) == "Rejected"
    assert b.station.reservations == {}


def test_tc_049_reserving_the_charge_point_keeps_one_connector_for_the_card():
    b = Bench(connectors=2)
    assert reserve(b, connector=0) == "Accepted"
    assert b.statuses(1)[-1] == b.statuses(2)[-1] == "Available", "two free connectors for one reservation"
    b(ev.TagPresented("OTHER"))
    b(ev.AuthorizationResult("OTHER", ACCEPTED))
    b(ev.PilotChanged(1, "C"))
    assert b.last(act.ReportTransactionStart).reservation_id is None
    assert b.statuses(2)[-1] == "Reserved", "the last free connector is held for the reservation"
    out = b(ev.TagPresented("THIRD"))
    assert not any(isinstance(a, act.RequestAuthorization) for a in out)
    b(ev.TagPresented("RES"))
    b(ev.AuthorizationResult("RES", ACCEPTED))
    out = b(ev.PilotChanged(2, "C"))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    assert (start.connector, start.reservation_id) == (2, 5)


def test_tc_050_charge_point_reservation_answers():
    b = Bench(connectors=1, reserve_connector_zero=False)
    assert reserve(b, connector=0) == "Rejected"
    b = Bench(connectors=1)
    b(ev.AvailabilityRequested(0, False))  # OCTT SetChargePointUnavailable
    assert reserve(b, connector=0) == "Unavailable"
    b = Bench(connectors=1)
    b(ev.PilotChanged(1, "B"))
    assert reserve(b, connector=0) == "Occupied"
    b = Bench(connectors=1)
    b(ev.DeviceFault(1, Device.RELAY, True, "welded"))
    assert reserve(b, connector=0) == "Faulted"


def test_tc_051_cancel_reservation_frees_the_connector():
    b = Bench()
    reserve(b)
    out = b(ev.CancelReservationRequested(5))
    assert answer(out) == "Accepted" and act.ReservationsChanged(()) in out
    assert act.ReservationEnded(5, 1, ReservationEnd.CANCELLED) in out
    assert b.statuses()[-1] == "Available"
    b.start_session("OTHER")
    assert b.last(act.ReportTransactionStart).reservation_id is None


def test_tc_052_cancel_unknown_reservation_is_rejected_and_keeps_the_other():
    b = Bench()
    reserve(b)
    assert answer(b(ev.CancelReservationRequested(99))) == "Rejected"
    assert list(b.station.reservations) == [5]
    assert b.statuses()[-1] == "Reserved"


def test_tc_053_a_card_of_the_same_parent_uses_the_reservation():
    b = Bench()
    reserve(b, tag="CARD1", parent="GROUP")
    out = b(ev.TagPresented("CARD2"))
    assert act.RequestAuthorization("CARD2") in out, "its parentIdTag must be learnt first"
    b(ev.AuthorizationResult("CARD2", ACCEPTED, "GROUP"))
    out = b(ev.PilotChanged(1, "C"))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    assert (start.id_tag, start.reservation_id) == ("CARD2", 5)


def test_a_card_of_another_parent_is_refused_on_a_reserved_connector():
    b = Bench()
    reserve(b, tag="CARD1", parent="GROUP")
    b(ev.TagPresented("CARD3"))
    b(ev.AuthorizationResult("CARD3", ACCEPTED, "ELSEWHERE"))
    b(ev.PilotChanged(1, "C"))
    assert b.last(act.ReportTransactionStart) is None
    assert b.statuses()[-1] == "Preparing"  # plugged, nothing started
    assert list(b.station.reservations) == [5]


def test_reserve_now_with_the_same_id_replaces_the_reservation():
    b = Bench(connectors=2)
    reserve(b, connector=1, tag="A")
    assert reserve(b, connector=2, tag="B") == "Accepted"
    assert [(r.connector, r.id_tag) for r in b.station.reservations.values()] == [(2, "B")]
    assert b.statuses(1)[-1] == "Available" and b.statuses(2)[-1] == "Reserved"


def test_reservations_survive_a_restart_and_those_expired_meanwhile_end_as_expired():
    b = Bench(connectors=2)
    reserve(b, connector=1, reservation_id=1, expires_in=600)
    reserve(b, connector=2, reservation_id=2, expires_in=30)
    saved = list(b.last(act.ReservationsChanged).reservations)
    again = Station(2, Settings())
    again.restore_reservations(saved)
    out = again.start(b.now + 60)
    assert list(again.reservations) == [1]
    assert [a for a in out if isinstance(a, act.ReservationEnded)] == [act.ReservationEnded(2, 2,
                                                                                          ReservationEnd.EXPIRED)]
    assert act.ReservationsChanged((saved[0],)) in out
    statuses = {a.connector: a.status.value for a in out if isinstance(a, act.StatusChanged)}
    assert statuses[1] == "Reserved" and statuses[2] == "Available"


def test_a_reservation_ends_removed_when_its_connector_becomes_unavailable():
    b = Bench(connectors=2)
    reserve(b, connector=1)
    out = b(ev.AvailabilityRequested(1, False))
    assert act.ReservationEnded(5, 1, ReservationEnd.REMOVED) in out
    assert act.ReservationsChanged(()) in out
    assert b.statuses(1)[-1] == "Unavailable"
    b(ev.AvailabilityRequested(1, True))
    assert b.statuses(1)[-1] == "Available", "the reservation does not come back with the connector"


def test_a_reservation_ends_removed_when_its_connector_becomes_faulted():
    b = Bench(connectors=2)
    reserve(b, connector=2)
    out = b(ev.DeviceFault(1, Device.RELAY, True, "welded"))
    assert b.last(act.ReservationEnded) is None, "a fault elsewhere leaves it"
    out = b(ev.DeviceFault(2, Device.RELAY, True, "welded"))
    assert act.ReservationEnded(5, 2, ReservationEnd.REMOVED) in out
    assert b.station.reservations == {}


def test_a_transient_fault_that_is_not_faulted_leaves_the_reservation():
    b = Bench()
    reserve(b)
    b(ev.DeviceFault(1, Device.METER, True, "no answer"))
    assert list(b.station.reservations) == [5]
    assert b.statuses()[-1] == "Reserved"


def test_a_charge_point_reservation_ends_when_the_charge_point_or_every_connector_is_unusable():
    b = Bench(connectors=2)
    reserve(b, connector=0)
    b(ev.AvailabilityRequested(1, False))
    assert list(b.station.reservations) == [5], "connector 2 can still be kept for it"
    out = b(ev.DeviceFault(2, Device.PILOT, True, "no reading"))
    assert act.ReservationEnded(5, 0, ReservationEnd.REMOVED) in out
    b = Bench(connectors=2)
    reserve(b, connector=0)
    out = b(ev.AvailabilityRequested(0, False))
    assert act.ReservationEnded(5, 0, ReservationEnd.REMOVED) in out


# --- Maintenance hold (firmware installation waits for running sessions) ------------------------


def test_maintenance_keeps_the_running_session_and_starts_no_new_one():
    b = Bench(connectors=2)
    b.start_session()
    b(ev.MaintenanceRequested("firmware installation pending"))
    assert b.relay_closed(1), "a running session is never interrupted"
    assert b.statuses(2)[-1] == "Unavailable"
    b(ev.TagPresented("NEW"))
    assert b.last(act.RequestAuthorization).id_tag != "NEW"
    assert b.station.transactions_running()
    b(ev.PilotChanged(1, "A"))
    assert not b.station.transactions_running()
    assert b.statuses(1)[-1] == "Unavailable"
    b(ev.MaintenanceRequested(None))
    assert b.statuses(1)[-1] == b.statuses(2)[-1] == "Available"


# --- LocalAuthorizeOffline (OCPP 1.6 §3.5) ------------------------------------------------------


def test_locally_authorized_offline_start_needs_the_installer_opt_in():
    b = Bench()
    b(ev.PilotChanged(1, "B"))
    b(ev.TagPresented("LOCAL"))
    b(ev.AuthorizationResult("LOCAL", ACCEPTED, offline=True))
    assert b.last(act.ReportTransactionStart) is None

    b = Bench(offline_start=True)
    b(ev.PilotChanged(1, "B"))
    b(ev.TagPresented("LOCAL"))
    b(ev.AuthorizationResult("LOCAL", ACCEPTED, offline=True))
    assert b.last(act.ReportTransactionStart) is not None
    b(ev.PilotChanged(1, "C"))
    assert b.relay_closed(), "an offline start delivers energy before the central system answers"


# --- SmartCharging on the pilot (OCPP 1.6 §3.13, IEC 61851-1 Table A.6) --------------------------


def profile(purpose: str = "TxDefaultProfile", periods=((0, 16.0),), unit: str = "A", stack_level: int = 0,
            profile_id: int = 1, kind: str = "Relative", **extra) -> dict:
    return {"charging_profile_id": profile_id, "stack_level": stack_level, "charging_profile_purpose": purpose,
            "charging_profile_kind": kind, **extra,
            "charging_schedule": {"charging_rate_unit": unit, "charging_schedule_period": [
                {"start_period": start, "limit": limit} for start, limit in periods]}}


def offers(b: Bench, connector: int = 1) -> list[float | None]:
    return [a.amps for a in b.log if isinstance(a, act.OfferCurrent) and a.connector == connector]


def test_tc_056_tx_default_profile_sets_the_pilot_current():
    b = Bench()
    out = b(ev.ChargingProfileRequested(1, profile(periods=((0, 16.0),))))
    assert answer(out) == "Accepted" and b.last(act.ChargingProfilesChanged) is not None
    b.start_session()
    assert offers(b)[-1] == 16.0, "the profile limits the offer from the start"
    assert b.relay_closed()


def test_a_limit_in_watts_becomes_amps_per_phase():
    b = Bench(phases=3, voltage_v=230.0)
    b(ev.ChargingProfileRequested(0, profile(unit="W", periods=((0, 11040.0),))))
    b.start_session()
    assert offers(b)[-1] == 16.0  # 11040 W / (230 V x 3)


def test_limit_changes_wait_5_s_and_a_limit_below_6_a_pauses_then_opens_after_6_s():
    b = Bench()
    b.start_session()
    assert offers(b)[-1] == 32.0
    b(ev.Tick(), after=5.0)
    b(ev.ChargingProfileRequested(1, profile("TxProfile", periods=((0, 10.0),))))
    assert offers(b)[-1] == 10.0, "5 s after the last duty change, a new limit applies at once"
    b(ev.ChargingProfileRequested(1, profile("TxProfile", periods=((0, 20.0),))))
    assert offers(b)[-1] == 10.0, "the EV gets 5 s to follow the previous change"
    b(ev.Tick(), after=5.0)
    assert offers(b)[-1] == 20.0
    b(ev.ChargingProfileRequested(1, profile("TxProfile", periods=((0, 3.0),))))
    b(ev.Tick(), after=5.0)
    assert offers(b)[-1] is None, "below 6 A: no PWM (state C1)"
    assert b.statuses()[-1] == "SuspendedEVSE"
    assert b.relay_closed(), "the EV has time to stop drawing current before the contactor opens"
    b(ev.Tick(), after=5.9)
    assert b.relay_closed()
    out = b(ev.Tick(), after=0.2)
    assert act.OpenRelay(1, "charging limit below 6 A and the EV stayed in state C") in out
    b(ev.ChargingProfileRequested(1, profile("TxProfile", periods=((0, 12.0),))))
    assert offers(b)[-1] == 12.0
    assert b.relay_closed(), "charging resumes when the limit allows it again"
    assert b.statuses()[-1] == "Charging"


def test_a_pause_ends_at_once_when_the_ev_leaves_state_c():
    b = Bench()
    b.start_session()
    b(ev.Tick(), after=5.0)
    b(ev.ChargingProfileRequested(1, profile("TxProfile", periods=((0, 0.0),))))
    assert offers(b)[-1] is None
    b(ev.PilotChanged(1, "B"))
    assert not b.relay_closed()
    assert b.statuses()[-1] == "SuspendedEVSE", "the charger, not the EV, suspended charging"


def test_a_stop_opens_the_relay_at_once_despite_the_5_s_rule():
    b = Bench()
    b.start_session()
    b(ev.ChargingProfileRequested(1, profile("TxProfile", periods=((0, 10.0),))))
    out = b(ev.TagPresented("04A1B2C3"))
    assert isinstance(out[0], act.OpenRelay) and act.OfferCurrent(1, None) in out


def test_tc_058_1_tx_profile_without_a_transaction_is_rejected():
    b = Bench()
    assert answer(b(ev.ChargingProfileRequested(1, profile("TxProfile")))) == "Rejected"
    assert answer(b(ev.ChargingProfileRequested(3, profile()))) == "Rejected"
    assert answer(b(ev.ChargingProfileRequested(1, profile("ChargePointMaxProfile")))) == "Rejected"


def test_tc_059_remote_start_with_a_tx_profile_then_tx_profiles_end_with_the_transaction():
    b = Bench()
    b(ev.PilotChanged(1, "C"))
    out = b(ev.RemoteStartRequested(1, "REMOTE", profile("TxProfile", periods=((0, 8.0),), profile_id=7)))
    assert answer(out) == "Accepted"
    start = b.last(act.ReportTransactionStart)
    b(ev.TransactionStartConfirmed(1, start.local_id, 77, ACCEPTED))
    assert offers(b)[-1] == 8.0
    assert [p.id for p in b.station.charging.profiles] == [7]
    b(ev.RemoteStopRequested(77))
    assert b.station.charging.profiles == ()
    assert b.last(act.ChargingProfilesChanged).saved == ()


def test_tc_060_remote_start_with_another_purpose_is_rejected():
    b = Bench()
    assert answer(b(ev.RemoteStartRequested(1, "REMOTE", profile("TxDefaultProfile")))) == "Rejected"
    assert answer(b(ev.RemoteStartRequested(1, "REMOTE", {"charging_profile_id": 1}))) == "Rejected"
    assert b.last(act.ReportTransactionStart) is None


def test_tc_067_clear_charging_profile_by_id_and_unknown():
    b = Bench()
    b(ev.ChargingProfileRequested(1, profile(profile_id=3)))
    assert answer(b(ev.ClearChargingProfileRequested(profile_id=9))) == "Unknown"
    assert answer(b(ev.ClearChargingProfileRequested(profile_id=3))) == "Accepted"
    assert b.station.charging.profiles == ()


def test_charging_profiles_survive_a_restart():
    b = Bench()
    b(ev.ChargingProfileRequested(0, profile(periods=((0, 13.0),))))
    saved = list(b.last(act.ChargingProfilesChanged).saved)
    again = Station(1, Settings())
    assert again.restore_charging_profiles(saved) == []
    again.start(b.now)
    composite = again.composite_schedule(1, 60, "A", b.now)
    assert [p.limit for p in composite.periods] == [13.0]
    assert again.composite_schedule(5, 60, "A", b.now) is None


def test_the_charge_point_maximum_is_shared_by_the_connectors_charging():
    b = Bench(connectors=2)
    b(ev.ChargingProfileRequested(0, profile("ChargePointMaxProfile", periods=((0, 20.0),))))
    for connector, tag, tx_id in ((1, "CARD1", 1), (2, "CARD2", 2)):
        start = b.card_start(tag, connector=connector)
        b(ev.TransactionStartConfirmed(connector, start.local_id, tx_id, ACCEPTED))
        if connector == 1:
            assert offers(b, 1)[-1] == 20.0, "alone, connector 1 gets the whole charge point maximum"
    b(ev.Tick(), after=5.0)
    assert offers(b, 1)[-1] == offers(b, 2)[-1] == 10.0, "20 A for the charge point: 10 A each"
    b(ev.RemoteStopRequested(2))
    b(ev.Tick(), after=5.0)
    assert offers(b, 1)[-1] == 20.0
