"""A socket outlet: the cable's rating from the proximity pilot and the lock that holds the plug.

Scenarios named after the OCTT charge-point cases they mirror (TC_005, TC_017_1, TC_018_1,
TC_024, TC_030); the rest follow IEC 61851-1 Annex B (cable rating) and the relay rule.
"""

from __future__ import annotations

import pytest

from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core.model import AuthStatus, ConnectorStatus, Device, ErrorCode, StopReason

from tests.core.test_station import ACCEPTED, Bench, answer

TAG = "04A1B2C3"


def socket_bench(**settings) -> Bench:
    return Bench(cable_sensing=(1,), socket_locks=(1,), **settings)


def lock_requests(actions) -> list[type]:
    return [type(a) for a in actions if isinstance(a, (act.LockSocket, act.UnlockSocket))]


def plug_and_authorize(b: Bench, rating: float | None = 32.0) -> list:
    """Cable in the socket (PP read first, as the shell does), EV plugged, card accepted."""
    b(ev.CableChanged(1, rating))
    b(ev.PilotChanged(1, "B"))
    b(ev.TagPresented(TAG))
    return b(ev.AuthorizationResult(TAG, ACCEPTED))


def charge(b: Bench, rating: float = 32.0, tx_id: int = 9) -> None:
    out = plug_and_authorize(b, rating)
    assert lock_requests(out) == [act.LockSocket]
    out = b(ev.LockReported(1, locked=True))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    b(ev.TransactionStartConfirmed(1, start.local_id, tx_id, ACCEPTED))
    b(ev.PilotChanged(1, "C"))
    assert b.relay_closed()


def test_the_plug_is_locked_before_the_transaction_starts_and_the_contactor_closes():
    b = socket_bench()
    out = plug_and_authorize(b)
    assert act.LockSocket(1) in out
    assert not any(isinstance(a, act.ReportTransactionStart) for a in out), "no transaction before the plug is locked"
    assert b.station.lock_state(1) == "locking"
    out = b(ev.LockReported(1, locked=True))
    start = next(a for a in out if isinstance(a, act.ReportTransactionStart))
    out = b(ev.TransactionStartConfirmed(1, start.local_id, 5, ACCEPTED))
    assert act.OfferCurrent(1, 32.0) in out
    b(ev.PilotChanged(1, "C"))
    assert b.relay_closed()
    assert b.station.lock_state(1) == "locked"


def test_the_plug_is_told_when_it_happens_not_when_the_lock_has_moved():
    """A card first, then the cable: the plug comes at once, ahead of the lock's move (OCPP 2.0.1
    stamps CablePluggedIn with it), and the unplug too."""
    b = socket_bench()
    b(ev.CableChanged(1, 32.0))
    b(ev.TagPresented(TAG))
    b(ev.AuthorizationResult(TAG, ACCEPTED))
    out = b(ev.PilotChanged(1, "B"))
    assert [a for a in out if isinstance(a, (act.PlugChanged, act.LockSocket))] == [act.PlugChanged(1, True, b.now),
                                                                                   act.LockSocket(1)]
    assert not any(isinstance(a, act.ReportTransactionStart) for a in out), "the transaction waits for the lock"
    assert act.PlugChanged(1, True, b.now) not in b(ev.LockReported(1, locked=True)), "told once"
    out = b(ev.PilotChanged(1, "A"))
    assert act.PlugChanged(1, False, b.now) in out


def test_tc_024_lock_failure_faults_the_connector_and_starts_nothing():
    b = socket_bench()
    b(ev.RemoteStartRequested(1, TAG))
    b(ev.CableChanged(1, 32.0))
    out = b(ev.PilotChanged(1, "B"))
    assert act.LockSocket(1) in out
    out = b(ev.LockReported(1, locked=False, detail="feedback did not confirm within 1 s"))
    change = b.last(act.StatusChanged)
    assert (change.status, change.error_code) == (ConnectorStatus.FAULTED, ErrorCode.CONNECTOR_LOCK_FAILURE)
    assert [(a.device, a.active) for a in out if isinstance(a, act.DeviceProblem)] == [(Device.LOCK, True)]
    assert not any(isinstance(a, act.ReportTransactionStart) for a in b.log)
    assert act.UnlockSocket(1, "release after a failed lock") in out, "a half-engaged pin is released"
    assert not b.relay_closed()
    # The plug is taken out: the fault goes with it.
    b(ev.LockReported(1, locked=False))
    b(ev.PilotChanged(1, "A"))
    b(ev.CableChanged(1, None))
    assert b.statuses()[-1] == "Available"
    assert b.station.lock_state(1) == "unlocked"
    assert act.DeviceProblem(1, Device.LOCK, False) in b.log


def test_a_failed_lock_does_not_retry_on_its_own():
    b = socket_bench()
    plug_and_authorize(b)
    b(ev.LockReported(1, locked=False))
    b(ev.LockReported(1, locked=False))  # the release after the failure
    out = b(ev.TagPresented(TAG))
    assert lock_requests(out) == []
    assert not any(isinstance(a, act.RequestAuthorization) for a in out)


def test_tc_018_1_unlock_with_a_session_stops_it_opens_the_contactor_then_unlocks():
    b = socket_bench()
    charge(b)
    out = b(ev.UnlockRequested(1))
    assert not any(isinstance(a, act.Answer) for a in out), "the answer waits for the lock's feedback"
    kinds = [type(a) for a in out]
    assert kinds.index(act.OpenRelay) < kinds.index(act.UnlockSocket)
    assert b.last(act.ReportTransactionStop).reason is StopReason.UNLOCK_COMMAND
    assert act.UnlockSocket(1, "unlock requested by the central system", requested=True) in out
    b(ev.LockReported(1, locked=False))
    assert b.station.lock_state(1) == "unlocked"
    assert b.statuses()[-1] == "Finishing"
    b(ev.PilotChanged(1, "A"))
    assert b.statuses()[-1] == "Available"


def test_tc_030_unlock_failure_is_a_lock_fault():
    b = socket_bench()
    charge(b)
    b(ev.UnlockRequested(1))
    b(ev.LockReported(1, locked=True, detail="actuator jammed"))
    assert b.station.lock_state(1) == "failed"
    change = b.last(act.StatusChanged)
    assert (change.status, change.error_code) == (ConnectorStatus.FAULTED, ErrorCode.CONNECTOR_LOCK_FAILURE)
    # A second UnlockConnector tries again; when it works the fault clears.
    out = b(ev.UnlockRequested(1))
    assert act.UnlockSocket(1, "unlock requested by the central system", requested=True) in out
    b(ev.LockReported(1, locked=False))
    assert b.station.lock_state(1) == "unlocked"
    assert b.statuses()[-1] == "Finishing"


def test_tc_017_1_unlock_without_a_session_unlocks_a_socket():
    b = socket_bench()
    out = b(ev.UnlockRequested(1))
    assert act.UnlockSocket(1, "unlock requested by the central system", requested=True) in out


def test_unlock_is_not_supported_without_a_lock_or_with_a_tethered_cable():
    assert answer(Bench()(ev.UnlockRequested(1))) == "NotSupported"
    assert answer(Bench(tethered_cable=True, socket_locks=(1,))(ev.UnlockRequested(1))) == "NotSupported"
    assert answer(socket_bench()(ev.UnlockRequested(7))) == "NotSupported"  # TC_031


def test_an_unlock_asked_while_the_lock_moves_waits_for_the_move():
    b = socket_bench()
    plug_and_authorize(b)
    out = b(ev.UnlockRequested(1))
    assert lock_requests(out) == [], "the lock is still locking"
    out = b(ev.LockReported(1, locked=True))
    assert act.UnlockSocket(1, "unlock requested by the central system", requested=True) in out
    assert not any(isinstance(a, act.ReportTransactionStart) for a in b.log)


def test_the_session_ending_unlocks_after_the_contactor_opened():
    b = socket_bench()
    charge(b)
    out = b(ev.TagPresented(TAG))
    kinds = [type(a) for a in out]
    assert act.OpenRelay in kinds and act.UnlockSocket in kinds
    assert kinds.index(act.OpenRelay) < kinds.index(act.UnlockSocket)
    assert b.last(act.ReportTransactionStop).reason is StopReason.LOCAL


def test_tc_005_1_ev_side_disconnect_unlocks_when_configured():
    b = socket_bench(unlock_on_ev_disconnect=True)
    charge(b)
    out = b(ev.PilotChanged(1, "A"))
    assert b.last(act.ReportTransactionStop).reason is StopReason.EV_DISCONNECTED
    assert lock_requests(out) == [act.UnlockSocket]


def test_tc_005_2_ev_side_disconnect_keeps_the_cable_locked_until_unlock_or_the_same_card():
    b = socket_bench(unlock_on_ev_disconnect=False)
    charge(b)
    out = b(ev.PilotChanged(1, "A"))
    assert b.last(act.ReportTransactionStop).reason is StopReason.EV_DISCONNECTED
    assert lock_requests(out) == []
    assert b.station.lock_state(1) == "locked"
    assert lock_requests(b(ev.TagPresented("OTHER"))) == [], "another card does not release the cable"
    b(ev.AuthorizationResult("OTHER", AuthStatus.INVALID))
    out = b(ev.TagPresented(TAG))
    assert lock_requests(out) == [act.UnlockSocket]
    assert not any(isinstance(a, act.RequestAuthorization) for a in out), "releasing is not a new session"


def test_tc_005_3_transaction_continues_locked_when_neither_stops_nor_unlocks():
    b = socket_bench(stop_on_ev_disconnect=False, unlock_on_ev_disconnect=False)
    charge(b)
    out = b(ev.PilotChanged(1, "A"))
    assert not any(isinstance(a, act.ReportTransactionStop) for a in out)
    assert lock_requests(out) == []
    assert b.statuses()[-1] == "SuspendedEV"


def test_replugging_into_a_running_transaction_relocks_before_energy():
    b = socket_bench(stop_on_ev_disconnect=False, unlock_on_ev_disconnect=True)
    charge(b)
    out = b(ev.PilotChanged(1, "A"))
    assert lock_requests(out) == [act.UnlockSocket]
    b(ev.LockReported(1, locked=False))
    out = b(ev.PilotChanged(1, "B"))
    assert act.LockSocket(1) in out
    b(ev.PilotChanged(1, "C"))
    assert not b.relay_closed(), "no energy into an unlocked plug"
    out = b(ev.LockReported(1, locked=True))
    assert act.CloseRelay(1) in out


def test_a_plug_found_locked_at_start_up_is_released():
    b = socket_bench()
    out = b(ev.LockReported(1, locked=True))
    assert lock_requests(out) == [act.UnlockSocket]


@pytest.mark.parametrize("rating, offered", [(13.0, 13.0), (20.0, 20.0), (32.0, 32.0), (63.0, 32.0)])
def test_the_offer_never_exceeds_the_cable_rating(rating, offered):
    b = socket_bench(max_current_a=32.0)
    charge(b, rating=rating)
    assert b.last(act.OfferCurrent).amps == offered
    assert b.station.charging_limit_a(1, b.now) == offered


def test_a_lower_cable_rating_read_mid_session_lowers_the_offer_at_once():
    """The PWM's minimum time between limit changes never holds the offer above the cable's rating."""
    b = socket_bench(max_current_a=32.0)
    charge(b, rating=20.0)
    out = b(ev.CableChanged(1, 13.0), after=0.5)
    assert act.OfferCurrent(1, 13.0) in out
    b(ev.PilotChanged(1, "B"))
    b(ev.PilotChanged(1, "C"))
    assert b.relay_closed() and b.station.connectors[1].offered_a == 13.0


def test_an_out_of_band_proximity_pilot_means_no_charge_with_a_clear_status():
    b = socket_bench()
    b(ev.CableChanged(1, None, problem="PP reads 3.4 kOhm, no valid cable rating"))
    b(ev.PilotChanged(1, "B"))
    change = b.last(act.StatusChanged)
    assert (change.status, change.error_code) == (ConnectorStatus.FAULTED, ErrorCode.OTHER_ERROR)
    assert "3.4 kOhm" in change.info
    b(ev.TagPresented(TAG))
    assert not any(isinstance(a, (act.RequestAuthorization, act.LockSocket)) for a in b.log)


def test_a_proximity_pilot_fault_while_charging_stops_the_transaction():
    b = socket_bench()
    charge(b)
    out = b(ev.CableChanged(1, None, problem="PP unreadable"))
    assert act.OpenRelay in [type(a) for a in out]
    assert b.last(act.ReportTransactionStop).reason is StopReason.OTHER


def test_an_ev_without_a_cable_rating_is_a_fault():
    b = socket_bench()
    b(ev.PilotChanged(1, "B"))  # PP open: no cable, yet the pilot sees an EV
    change = b.last(act.StatusChanged)
    assert change.status is ConnectorStatus.FAULTED
    assert "no cable" in change.info


def test_a_tethered_charger_ignores_the_proximity_pilot():
    b = Bench(tethered_cable=True, cable_sensing=(1,), socket_locks=(1,))
    b.start_session()
    assert b.relay_closed()
    assert b.station.lock_state(1) is None


def test_state_d_without_ventilation_never_energises():
    b = Bench()
    b.start_session()
    out = b(ev.PilotChanged(1, "D"))
    assert act.OpenRelay in [type(a) for a in out]
    change = b.last(act.StatusChanged)
    assert change.status is ConnectorStatus.FAULTED
    assert "ventilation" in change.info


def test_the_pilot_hardware_explains_state_f():
    b = Bench()
    b(ev.PilotChanged(1, "F", detail="EV diode missing: low level -8.8 V while the PWM runs"))
    assert "diode" in b.last(act.StatusChanged).info


def test_lock_faults_are_reported_per_device():
    b = socket_bench()
    plug_and_authorize(b)
    b(ev.LockReported(1, locked=False))
    assert Device.LOCK in b.station.connectors[1].faults


# A mirror contact on the contactor (IEC 60947-4-1 Annex F): the plug is released only once the
# contacts are measured open, never while a contactor fault (welded) is latched.


def mirrored_socket_bench(**settings) -> Bench:
    b = socket_bench(mirror_contacts=(1,), **settings)
    b(ev.ContactorMeasured(1, closed=False))  # the shell reports the contact at start-up
    return b


def charge_measured(b: Bench) -> None:
    charge(b)
    b(ev.ContactorMeasured(1, closed=True))


def test_with_a_mirror_contact_the_plug_is_released_once_the_contacts_read_open():
    b = mirrored_socket_bench()
    charge_measured(b)
    out = b(ev.TagPresented(TAG))
    assert act.OpenRelay in [type(a) for a in out]
    assert lock_requests(out) == [], "commanded open is not yet open: the contacts may still carry current"
    assert b.station.lock_state(1) == "locked"
    out = b(ev.ContactorMeasured(1, closed=False))
    assert lock_requests(out) == [act.UnlockSocket]


def test_a_contactor_that_welds_keeps_the_plug_locked_for_good():
    b = mirrored_socket_bench()
    charge_measured(b)
    b(ev.TagPresented(TAG))  # the stop: commanded open, the contacts stay closed
    out = b(ev.DeviceFault(1, Device.RELAY, True, "welded: closed while commanded open"))
    assert lock_requests(out) == []
    change = b.last(act.StatusChanged)
    assert (change.status, change.error_code) == (ConnectorStatus.FAULTED, ErrorCode.POWER_SWITCH_FAILURE)
    for event in (ev.PilotChanged(1, "A"), ev.Tick(), ev.TagPresented(TAG), ev.ContactorMeasured(1, closed=False)):
        assert lock_requests(b(event)) == [], f"released after {event}"
    assert b.station.lock_state(1) == "locked"
    assert not any(isinstance(a, act.UnlockSocket) for a in b.log)


def test_unlock_connector_with_a_welded_contactor_answers_unlock_failed():
    b = mirrored_socket_bench()
    charge_measured(b)
    b(ev.TagPresented(TAG))
    b(ev.DeviceFault(1, Device.RELAY, True, "welded: closed while commanded open"))
    out = b(ev.UnlockRequested(1))
    assert answer(out) == "UnlockFailed"
    assert lock_requests(out) == [] and b.station.lock_state(1) == "locked"


def test_tc_018_1_unlock_connector_that_finds_the_contactor_welded_answers_unlock_failed():
    b = mirrored_socket_bench()
    charge_measured(b)
    out = b(ev.UnlockRequested(1))
    assert act.OpenRelay in [type(a) for a in out] and lock_requests(out) == []
    assert not any(isinstance(a, (act.Answer, act.UnlockRefused)) for a in out), "waits for the mirror contact"
    out = b(ev.DeviceFault(1, Device.RELAY, True, "welded: closed while commanded open"))
    refused = [a for a in out if isinstance(a, act.UnlockRefused)]
    assert len(refused) == 1 and "welded" in refused[0].why
    assert lock_requests(out) == [] and b.station.lock_state(1) == "locked"


def test_tc_018_1_unlock_connector_unlocks_once_the_mirror_contact_reads_open():
    b = mirrored_socket_bench()
    charge_measured(b)
    assert lock_requests(b(ev.UnlockRequested(1))) == []
    out = b(ev.ContactorMeasured(1, closed=False))
    assert act.UnlockSocket(1, "unlock requested by the central system", requested=True) in out


def test_a_plug_found_locked_at_start_up_on_welded_contacts_stays_locked():
    b = socket_bench(mirror_contacts=(1,))
    b(ev.ContactorMeasured(1, closed=True))
    assert lock_requests(b(ev.LockReported(1, locked=True))) == []
    assert lock_requests(b(ev.DeviceFault(1, Device.RELAY, True, "welded: closed while commanded open"))) == []


def test_a_plug_found_locked_at_start_up_waits_for_the_first_mirror_reading():
    b = socket_bench(mirror_contacts=(1,))
    assert lock_requests(b(ev.LockReported(1, locked=True))) == [], "no reading yet: not proven open"
    assert lock_requests(b(ev.ContactorMeasured(1, closed=False))) == [act.UnlockSocket]


def test_a_lock_that_opens_by_itself_while_charging_opens_the_contactor_and_faults():
    b = socket_bench()
    charge(b)
    out = b(ev.LockReported(1, locked=False, detail="feedback opened while the plug was held"))
    assert isinstance(out[0], act.OpenRelay), "the contactor opens first, in the same step"
    assert not b.relay_closed()
    change = b.last(act.StatusChanged)
    assert (change.status, change.error_code) == (ConnectorStatus.FAULTED, ErrorCode.CONNECTOR_LOCK_FAILURE)
    assert "opened by itself" in change.info
    assert b.last(act.ReportTransactionStop).reason is StopReason.OTHER
    assert b.station.lock_state(1) == "failed"
    assert lock_requests(out) == [], "nothing moves the lock on its own after a failure"
    for event in (ev.Tick(), ev.PilotChanged(1, "C"), ev.TagPresented(TAG)):
        assert lock_requests(b(event)) == [] and not b.relay_closed()
    # The plug is taken out: the fault goes with it, the connector is usable again.
    b(ev.PilotChanged(1, "A"))
    b(ev.CableChanged(1, None))
    assert b.statuses()[-1] == "Available"
    assert b.station.lock_state(1) == "unlocked"


def test_a_lock_that_opens_by_itself_with_no_session_is_a_lock_fault():
    b = socket_bench(unlock_on_ev_disconnect=False)
    charge(b)
    b(ev.PilotChanged(1, "A"))  # the EV side unplugged: the cable stays locked (TC_005_2)
    assert b.station.lock_state(1) == "locked"
    b(ev.LockReported(1, locked=False))
    assert b.last(act.StatusChanged).error_code is ErrorCode.CONNECTOR_LOCK_FAILURE
    out = b(ev.CableChanged(1, None))  # the cable taken out of the socket
    assert b.statuses()[-1] == "Available"
    assert lock_requests(out) == [], "no cable left to hold for the card"
