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
from evcp.core.model import AuthStatus, Device, Settings
from evcp.core.station import Station

CONNECTORS = 2
TAGS = ["T1", "T2", "T3"]

tags = st.sampled_from(TAGS)
connector_ids = st.integers(min_value=0, max_value=CONNECTORS + 1)
statuses = st.sampled_from(list(AuthStatus) + [None])

events = st.one_of(
    st.builds(ev.PilotChanged, st.integers(1, CONNECTORS), st.sampled_from("ABCDEF")),
    st.builds(ev.TagPresented, tags),
    st.builds(ev.AuthorizationResult, tags, statuses, st.sampled_from([None, "P1", "P2"])),
    st.builds(ev.MeterSampled, st.integers(1, CONNECTORS), st.floats(0, 1e6), st.floats(0, 22000)),
    st.builds(ev.DeviceFault, st.integers(0, CONNECTORS), st.sampled_from(list(Device)), st.booleans()),
    st.builds(ev.Tick),
    st.builds(ev.RemoteStartRequested, st.one_of(st.none(), connector_ids), tags),
    st.builds(ev.RemoteStopRequested, st.integers(1, 6)),
    st.builds(ev.AvailabilityRequested, connector_ids, st.booleans()),
    st.builds(ev.UnlockRequested, connector_ids),
    # Confirmations are generated from the model's open starts, see below.
    st.builds(lambda i, s: ("confirm", i, s), st.integers(0, 5), st.sampled_from(list(AuthStatus))),
    st.builds(lambda hard: ev.ResetRequested(hard), st.booleans()),
)


class Model:
    def __init__(self):
        self.pilot = {c: "A" for c in range(1, CONNECTORS + 1)}
        self.relay = {c: False for c in self.pilot}
        self.current_tx = {c: None for c in self.pilot}
        self.accepted: set[int] = set()
        self.hard_fault = {c: set() for c in self.pilot}
        self.unconfirmed: list[tuple[int, int]] = []
        self.next_tx_id = 1
        self.started: set[int] = set()
        self.stopped: set[int] = set()

    def must_be_open(self, c: int) -> bool:
        tx = self.current_tx[c]
        return (
            self.pilot[c] != "C"
            or tx is None
            or tx not in self.accepted
            or bool(self.hard_fault[c])
            or self.pilot[c] in "EF"
        )


def apply(station: Station, model: Model, event, now: float) -> None:
    if isinstance(event, tuple):
        _, index, status = event
        if not model.unconfirmed:
            return
        connector, local_id = model.unconfirmed.pop(index % len(model.unconfirmed))
        event = ev.TransactionStartConfirmed(connector, local_id, model.next_tx_id, status)
        model.next_tx_id += 1
        if status is AuthStatus.ACCEPTED:
            model.accepted.add(local_id)
    if isinstance(event, ev.PilotChanged):
        model.pilot[event.connector] = event.state
    if isinstance(event, ev.DeviceFault) and event.connector and event.device in (Device.RELAY, Device.PILOT):
        faults = model.hard_fault[event.connector]
        (faults.add if event.active else faults.discard)(event.device)
    resetting = isinstance(event, ev.ResetRequested)

    for a in station.handle(event, now):
        if isinstance(a, act.StartTransaction):
            assert model.current_tx[a.connector] is None
            assert a.local_id not in model.started
            model.started.add(a.local_id)
            model.current_tx[a.connector] = a.local_id
            model.unconfirmed.append((a.connector, a.local_id))
        elif isinstance(a, act.StopTransaction):
            assert model.current_tx[a.connector] == a.local_id, "a stop belongs to the running transaction"
            assert a.local_id not in model.stopped, "a transaction is stopped exactly once"
            model.stopped.add(a.local_id)
            model.current_tx[a.connector] = None
        elif isinstance(a, act.CloseRelay):
            c = a.connector
            assert not model.must_be_open(c), f"relay {c} closed illegally: {model.__dict__}"
            assert not resetting
            model.relay[c] = True
        elif isinstance(a, act.OpenRelay):
            model.relay[a.connector] = False

    for c in model.relay:
        if model.relay[c]:
            assert not model.must_be_open(c), f"relay {c} left closed after {event}"
        assert model.relay[c] == station.connectors[c].relay_closed
    if resetting:
        assert not any(model.relay.values())


@settings(max_examples=400, deadline=None)
@given(st.lists(events, min_size=1, max_size=60), st.booleans(), st.booleans())
def test_relay_closes_only_after_accepted_start_and_opens_in_the_same_step(sequence, stop_on_ev, auth_remote):
    station = Station(CONNECTORS, Settings(stop_on_ev_disconnect=stop_on_ev, authorize_remote_start=auth_remote))
    model = Model()
    now = 1000.0
    for a in station.start(now):
        assert not isinstance(a, act.CloseRelay)
    for event in sequence:
        now += 0.5
        apply(station, model, event, now)
