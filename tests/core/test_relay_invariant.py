"""The safety invariant, tried against random event sequences.

For every connector, at every step:
  * CloseRelay only for the connector's current transaction, only after an
    Accepted TransactionStartConfirmed for exactly that transaction, and only
    while the last pilot state is C and the connector has no hard fault;
  * whenever the pilot leaves C, the transaction stops, a hard fault appears,
    a reset is requested or a start is not Accepted, the relay is open at the
    end of that very step (the shell performs a step's actions at once, so
    "same step" is how the 100 ms budget is kept).
The model below tracks only the actions, never the Station's internals.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core.model import AuthStatus, Device, Settings, StopReason
from evcp.core.station import Station

CONNECTORS = 2
TAGS = ["T1", "T2", "T3"]

tags = st.sampled_from(TAGS)
connector_ids = st.integers(min_value=0, max_value=CONNECTORS + 1)
verdicts = st.sampled_from([AuthStatus.ACCEPTED] * 4 + list(AuthStatus))
pilot = st.builds(ev.PilotChanged, st.integers(1, CONNECTORS), st.sampled_from("ABBCCCCCDEF"))
# Answers and confirmations are drawn from what the station really asked for (see apply):
answer_authorization = st.builds(lambda i, s, p: ("authorize", i, s, p), st.integers(0, 5),
                                 st.one_of(st.none(), verdicts), st.sampled_from([None, "P1", "P2"]))
confirm_start = st.builds(lambda i, s: ("confirm", i, s), st.integers(0, 5), st.one_of(st.none(), verdicts))
"""None: the central system never answered (the start message failed all its attempts)."""
# The lock's feedback answers a LockSocket / UnlockSocket the station really asked for: moved or not.
answer_lock = st.builds(lambda i, moved: ("lock", i, moved), st.integers(0, 3), st.sampled_from([True, True, True, False]))
# The lock's feedback opens while nothing moves it (a broken actuator, a plug forced out).
lock_gives_way = st.builds(lambda c: ("lock gives way", c), st.integers(1, CONNECTORS))
cable = st.builds(ev.CableChanged, st.integers(1, CONNECTORS), st.sampled_from([None, 13.0, 20.0, 32.0, 63.0, 32.0]),
                  st.sampled_from(["", "", "", "", "", "", "PP out of band"]))

def charging_profile(purpose: str, limit: float, profile_id: int) -> dict:
    return {"charging_profile_id": profile_id, "stack_level": profile_id % 3, "charging_profile_purpose": purpose,
            "charging_profile_kind": "Relative",
            "charging_schedule": {"charging_rate_unit": "A",
                                  "charging_schedule_period": [{"start_period": 0, "limit": limit}]}}


profiles = st.builds(lambda c, purpose, limit, pid: ev.ChargingProfileRequested(
    c, charging_profile(purpose, limit, pid)), st.integers(0, CONNECTORS),
    st.sampled_from(["TxDefaultProfile", "TxProfile", "ChargePointMaxProfile"]),
    st.sampled_from([0.0, 3.0, 6.0, 10.0, 16.0, 40.0]), st.integers(1, 4))
reservations = st.builds(lambda c, rid, tag, expires_in, parent: ev.ReserveNowRequested(
    c, rid, tag, 1000.0 + expires_in, parent), st.integers(0, CONNECTORS), st.integers(1, 3), tags,
    st.floats(0, 60), st.sampled_from([None, "P1"]))

FAULT_EVENT_DEVICES = [Device.METER, Device.RELAY, Device.READER, Device.PILOT, Device.POWER_FAIL_INPUT]
"""The devices whose faults arrive as DeviceFault (the cable and the lock have events of their own)."""

# Weighted so that most sequences get as far as a closed relay before a fault,
# an availability change, an unlock or a reset ends the session.
EVENT_KINDS = {
    "pilot": (pilot, 6),
    "answer": (answer_authorization, 3),
    "confirm": (confirm_start, 3),
    "tag": (st.builds(ev.TagPresented, tags), 2),
    "remote start": (st.builds(ev.RemoteStartRequested, st.one_of(st.none(), connector_ids), tags), 3),
    "meter": (st.builds(ev.MeterSampled, st.integers(1, CONNECTORS), st.floats(0, 1e6), st.floats(0, 22000)), 1),
    "tick": (st.builds(ev.Tick), 1),
    "remote stop": (st.builds(ev.RemoteStopRequested, st.integers(1, 6)), 1),
    "remote stop by local id": (st.builds(ev.RemoteStopRequested, st.none(), local_id=st.integers(1, 6)), 1),
    "fault": (st.builds(ev.DeviceFault, st.integers(0, CONNECTORS), st.sampled_from(FAULT_EVENT_DEVICES),
                        st.sampled_from([True, False, False])), 1),
    "availability": (st.builds(ev.AvailabilityRequested, connector_ids, st.sampled_from([True, True, False])), 1),
    "unlock": (st.builds(ev.UnlockRequested, connector_ids), 1),
    "charging profile": (profiles, 2),
    "clear profiles": (st.builds(ev.ClearChargingProfileRequested, st.one_of(st.none(), st.integers(1, 4))), 1),
    "reserve": (reservations, 1),
    "cancel reservation": (st.builds(ev.CancelReservationRequested, st.integers(1, 3)), 1),
    "maintenance": (st.builds(ev.MaintenanceRequested, st.sampled_from([None, "firmware installation"])), 1),
    "lock answer": (answer_lock, 3),
    "lock gives way": (lock_gives_way, 1),
    "cable": (cable, 1),
    "mirror contact": (st.builds(ev.ContactorMeasured, st.integers(1, CONNECTORS), st.booleans()), 2),
}
KIND_NAMES = [name for name, (_, weight) in EVENT_KINDS.items() for _ in range(weight)]


@st.composite
def event_sequences(draw, resets: bool):
    names = draw(st.lists(st.sampled_from(KIND_NAMES), min_size=10, max_size=80))
    sequence = [draw(EVENT_KINDS[name][0]) for name in names]
    if resets and sequence:
        at = draw(st.integers(0, len(sequence)))
        ending = st.one_of(st.builds(ev.ResetRequested, st.booleans()),
                           st.builds(ev.ShutdownRequested, st.sampled_from([StopReason.POWER_LOSS, StopReason.REBOOT])))
        sequence.insert(at, draw(ending))
    return sequence


class Model:
    def __init__(self, offline_start: bool = False, socket: bool = False, mirror: bool = False):
        self.offline_start = offline_start
        self.socket = socket
        self.mirror = mirror
        self.contacts_closed: dict[int, bool | None] = {c: None for c in range(1, CONNECTORS + 1)}
        """What the mirror contacts last said (with ``mirror``)."""
        self.locked = {c: False for c in range(1, CONNECTORS + 1)}
        """What the lock's feedback last said (socket outlets)."""
        self.lock_moves: list[tuple[int, bool]] = []
        """Lock operations asked for and not yet answered: (connector, to locked)."""
        self.cable_a = {c: None for c in self.locked}
        self.rejected: set[int] = set()
        self.pilot = {c: "A" for c in range(1, CONNECTORS + 1)}
        self.relay = {c: False for c in self.pilot}
        self.current_tx = {c: None for c in self.pilot}
        self.accepted: set[int] = set()
        self.hard_fault = {c: set() for c in self.pilot}
        self.unconfirmed: list[tuple[int, int]] = []
        self.unanswered: list[str] = []
        self.next_tx_id = 1
        self.started: set[int] = set()
        self.stopped: set[int] = set()

    def must_be_open(self, c: int) -> bool:
        tx = self.current_tx[c]
        return (
            self.pilot[c] != "C"
            or tx is None
            or (tx not in self.accepted and not self.offline_start)
            or tx in self.rejected
            or bool(self.hard_fault[c])
            or self.pilot[c] in "DEF"
            or (self.socket and not self.locked[c])
            or (self.socket and self.cable_a[c] is None)
        )


def apply(station: Station, model: Model, event, now: float) -> None:
    if isinstance(event, tuple) and event[0] == "authorize":
        _, index, status, parent = event
        if not model.unanswered:
            return
        event = ev.AuthorizationResult(model.unanswered.pop(index % len(model.unanswered)), status, parent)
    elif isinstance(event, tuple) and event[0] == "lock":
        _, index, moved = event
        if not model.lock_moves:
            return
        connector, to_locked = model.lock_moves.pop(index % len(model.lock_moves))
        locked = to_locked if moved else not to_locked
        model.locked[connector] = locked
        event = ev.LockReported(connector, locked)
    elif isinstance(event, tuple) and event[0] == "lock gives way":
        connector = event[1]
        if not model.socket or any(c == connector for c, _ in model.lock_moves):
            return  # the shell reports an opening only while the lock is at rest
        model.locked[connector] = False
        event = ev.LockReported(connector, False, "feedback opened")
    elif isinstance(event, tuple):
        _, index, status = event
        if not model.unconfirmed:
            return
        connector, local_id = model.unconfirmed.pop(index % len(model.unconfirmed))
        event = ev.TransactionStartConfirmed(connector, local_id, model.next_tx_id, status)
        model.next_tx_id += 1
        if status is AuthStatus.ACCEPTED:
            model.accepted.add(local_id)
        elif status is not None:
            model.rejected.add(local_id)
    if isinstance(event, ev.PilotChanged):
        model.pilot[event.connector] = event.state
    if isinstance(event, ev.CableChanged):
        model.cable_a[event.connector] = None if event.problem else event.rating_a
    if isinstance(event, ev.ContactorMeasured):
        model.contacts_closed[event.connector] = event.closed
    if isinstance(event, ev.DeviceFault) and event.connector and event.device in (Device.RELAY, Device.PILOT):
        faults = model.hard_fault[event.connector]
        (faults.add if event.active else faults.discard)(event.device)
    resetting = isinstance(event, (ev.ResetRequested, ev.ShutdownRequested))

    for a in station.handle(event, now):
        if isinstance(a, act.ReportTransactionStart):
            assert model.current_tx[a.connector] is None
            assert a.local_id not in model.started
            model.started.add(a.local_id)
            model.current_tx[a.connector] = a.local_id
            model.unconfirmed.append((a.connector, a.local_id))
        elif isinstance(a, act.RequestAuthorization):
            model.unanswered.append(a.id_tag)
        elif isinstance(a, act.ReportTransactionStop):
            assert model.current_tx[a.connector] == a.local_id, "a stop belongs to the running transaction"
            assert a.local_id not in model.stopped, "a transaction is stopped exactly once"
            model.stopped.add(a.local_id)
            model.current_tx[a.connector] = None
        elif isinstance(a, act.CloseRelay):
            c = a.connector
            assert not model.must_be_open(c), f"relay {c} closed illegally: {model.__dict__}"
            assert not resetting
            offered = station.connectors[c].offered_a
            assert offered is not None and offered >= 6.0, "closed without a PWM current offered (IEC 61851-1)"
            if model.socket:
                assert offered <= model.cable_a[c], "offered more than the cable is rated for"
            model.relay[c] = True
        elif isinstance(a, act.OpenRelay):
            model.relay[a.connector] = False
        elif isinstance(a, (act.LockSocket, act.UnlockSocket)):
            assert model.socket
            assert not model.relay[a.connector], "the lock moves only with the contactor open"
            assert all(c != a.connector for c, _ in model.lock_moves), "one lock move at a time"
            if model.mirror and isinstance(a, act.UnlockSocket):
                assert model.contacts_closed[a.connector] is False, "released before the contacts read open"
                assert Device.RELAY not in model.hard_fault[a.connector], "released with a contactor fault"
            model.lock_moves.append((a.connector, isinstance(a, act.LockSocket)))

    for c in model.relay:
        if model.relay[c]:
            assert not model.must_be_open(c), f"relay {c} left closed after {event}"
        assert model.relay[c] == station.connectors[c].relay_closed
    if resetting:
        assert not any(model.relay.values())


def run(station: Station, model: Model, sequence) -> None:
    """Power up (no relay may close), then every event half a second apart, checked by ``apply``."""
    now = 1000.0
    for a in station.start(now):
        assert not isinstance(a, act.CloseRelay)
    for event in sequence:
        now += 0.5
        apply(station, model, event, now)


@settings(max_examples=400, deadline=None)
@given(event_sequences(resets=False), st.booleans(), st.booleans())
def test_relay_closes_only_after_accepted_start_and_opens_in_the_same_step(sequence, stop_on_ev, auth_remote):
    run(Station(CONNECTORS, Settings(stop_on_ev_disconnect=stop_on_ev, authorize_remote_start=auth_remote)),
        Model(), sequence)


@settings(max_examples=150, deadline=None)
@given(event_sequences(resets=True))
def test_a_reset_or_shutdown_anywhere_leaves_every_relay_open_for_good(sequence):
    run(Station(CONNECTORS), Model(), sequence)


@settings(max_examples=300, deadline=None)
@given(event_sequences(resets=False))
def test_offline_start_closes_only_for_unanswered_or_accepted_and_a_rejection_opens_at_once(sequence):
    """With the installer's opt-in, energy may flow before the answer; never after a rejection."""
    run(Station(CONNECTORS, Settings(offline_start=True, allow_offline_unknown=True)), Model(offline_start=True),
        sequence)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([13.0, 20.0, 32.0, 63.0]), min_size=CONNECTORS, max_size=CONNECTORS),
       event_sequences(resets=False), st.sampled_from([True, False, False]), st.sampled_from([True, True, False]))
def test_a_socket_outlet_energises_only_locked_within_the_cable_rating(cables, sequence, stop_on_ev, unlock_on_ev):
    """Socket outlets: the plug is locked (feedback) and the cable rated (PP) whenever power flows, and the
    lock never moves under load."""
    both = tuple(range(1, CONNECTORS + 1))
    # Start charging on connector 1 (cable rated, plug locked, start accepted), then anything may happen.
    charging = [ev.PilotChanged(1, "B"), ev.RemoteStartRequested(1, "T1"), ("lock", 0, True),
                ("confirm", 0, AuthStatus.ACCEPTED), ev.PilotChanged(1, "C")]
    sequence = [ev.CableChanged(c, rating) for c, rating in zip(both, cables)] + charging + sequence
    run(Station(CONNECTORS, Settings(stop_on_ev_disconnect=stop_on_ev, unlock_on_ev_disconnect=unlock_on_ev,
                                     cable_sensing=both, socket_locks=both)),
        Model(socket=True), sequence)


@settings(max_examples=300, deadline=None)
@given(event_sequences(resets=True), st.sampled_from([True, True, False]))
def test_a_socket_outlet_with_a_mirror_contact_releases_the_plug_only_on_contacts_measured_open(sequence, unlock_on_ev):
    """With a mirror contact, commanded open is not enough: the plug is released only while the contact
    last read open and no contactor fault (welded) is active (IEC 61851-1: locked while it may be live)."""
    both = tuple(range(1, CONNECTORS + 1))
    charging = [ev.PilotChanged(1, "B"), ev.RemoteStartRequested(1, "T1"), ("lock", 0, True),
                ("confirm", 0, AuthStatus.ACCEPTED), ev.PilotChanged(1, "C"), ev.ContactorMeasured(1, True)]
    sequence = ([ev.ContactorMeasured(c, False) for c in both] + [ev.CableChanged(c, 32.0) for c in both]
                + charging + sequence)
    run(Station(CONNECTORS, Settings(unlock_on_ev_disconnect=unlock_on_ev, cable_sensing=both, socket_locks=both,
                                     mirror_contacts=both)),
        Model(socket=True, mirror=True), sequence)
