"""Session level: the charge point's connectors as one deterministic state machine.

``Station.handle(event, now)`` takes one event and the time, changes the
state, and returns the actions the shell must perform. No clock, socket or
GPIO in here, so every path can be tested with plain data.

The safety rule lives in one predicate, ``_may_energise``: a connector's
contactor is closed only while its transaction was Accepted by the central
system, the EV requests charge (pilot C), and nothing is faulted or stopping.
After every event ``_reconcile`` compares each connector with that predicate
and emits OpenRelay / CloseRelay, so no handler can forget to open a relay.

It speaks no protocol: the OCPP 1.6 and 2.0.1 adapters turn its actions into
their messages and the central system's answers and requests into its events
(``evcp.core.events`` and ``evcp.core.actions`` say how each maps them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from enum import Enum

from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core import smart_charging as sc
from evcp.core.model import (
    AuthStatus,
    ConnectorStatus,
    Device,
    ErrorCode,
    ReservationEnd,
    Settings,
    StopReason,
)

PLUGGED = ("B", "C", "D", "E", "F")
"""Pilot states in which a vehicle (or a fault on its cable) is present."""
MIN_PILOT_CURRENT_A = 6.0
"""The lowest current the pilot can offer (IEC 61851-1 Table A.8: 10 % duty); a charging limit
below it pauses charging."""
PWM_CHANGE_INTERVAL_S = 5.0
"""A charging limit changes the pilot duty at most this often: the EV has 5 s to follow a change
(IEC 61851-1 Table A.6 seq. 9.2; EVerest IEC_PWM_MAX_UPDATE_INTERVAL)."""
ENERGY_FLOW_MIN_W = 100.0
"""The EV draws energy when the meter shows at least this much: well above a meter's reading at
no load, far below the least an EV charges with (6 A, IEC 61851-1 Table A.8: about 1.4 kW on one
phase)."""
C1_POWER_OFF_S = 6.0
"""After the PWM stops, an EV still in state C is disconnected after this long (IEC 61851-1
Table A.6 seq. 10.2)."""


class LockState(str, Enum):
    """Where the socket outlet's lock is, or is going (its feedback contact decides)."""

    UNLOCKED = "unlocked"
    LOCKING = "locking"
    LOCKED = "locked"
    UNLOCKING = "unlocking"


class Phase(str, Enum):
    IDLE = "idle"
    AUTHORIZING = "authorizing"
    AUTHORIZED = "authorized"
    STARTING = "starting"
    TRANSACTION = "transaction"
    FINISHING = "finishing"


@dataclass
class Transaction:
    local_id: int
    id_tag: str
    meter_start_wh: int
    started_at: float
    remote: bool
    parent_id_tag: str | None = None
    transaction_id: int | None = None
    accepted: bool = False
    provisional: bool = False
    """Started offline: energy flows before the central system has answered."""
    energy_limit_wh: float | None = None
    """After a late non-Accepted answer: the meter reading at which energy stops."""
    next_sample_at: float | None = None
    next_end_sample_at: float | None = None


@dataclass
class Connector:
    id: int
    pilot: str = "A"
    phase: Phase = Phase.IDLE
    operative: bool = True
    pending_operative: bool | None = None
    auth_tag: str | None = None
    auth_parent: str | None = None
    auth_remote: bool = False
    auth_offline: bool = False
    auth_deadline: float | None = None
    transaction: Transaction | None = None
    faults: dict[Device, str] = field(default_factory=dict)
    relay_closed: bool = False
    offered_a: float | None = None
    offer_changed_at: float | None = None
    """When a charging limit last changed the offer of the running transaction."""
    paused_since: float | None = None
    """When a charging limit below 6 A stopped the PWM while the contactor was closed."""
    pending_profile: sc.ChargingProfile | None = None
    """The TxProfile of a RemoteStartTransaction, installed when its transaction starts."""
    last_sample: ev.MeterSampled | None = None
    drawing: bool = False
    """A reading since the contactor last closed showed the EV drawing (ENERGY_FLOW_MIN_W)."""
    reported: tuple[ConnectorStatus, ErrorCode, str] | None = None
    reported_delivery: tuple[bool, bool] = (False, False)
    reported_plugged: bool = False
    pilot_detail: str = ""
    """Why the pilot reads E, F or D, as the pilot hardware explains it (e.g. a missing EV diode)."""
    senses_cable: bool = False
    """A socket outlet whose proximity pilot gives the cable's rating (IEC 61851-1 Annex B)."""
    cable_a: float | None = None
    """The rating of the cable in the socket; None while there is none (or it is not read)."""
    has_mirror_contact: bool = False
    contacts_closed: bool | None = None
    """What the contactor's mirror contact last said (True = main contacts closed); None before
    its first reading or without one."""
    has_lock: bool = False
    lock: LockState = LockState.UNLOCKED
    lock_fault_until_unplug: bool = False
    """The last lock fault came from a plug the lock did not hold (it would not lock, or the lock
    opened by itself): it clears when the plug is taken out."""
    unlock_requested: bool = False
    """UnlockConnector asked for the plug to be released; done as soon as the lock is not moving."""
    locked_for: str | None = None
    """The idTag whose card releases a plug kept locked after the cable was pulled at the EV
    (UnlockConnectorOnEVSideDisconnect false)."""

    @property
    def plugged(self) -> bool:
        return self.pilot in PLUGGED

    @property
    def cable_fault(self) -> str | None:
        """Why the proximity pilot forbids charging, or None (a socket outlet only)."""
        if not self.senses_cable:
            return None
        if Device.CABLE in self.faults:
            return self.faults[Device.CABLE] or "cable rating unreadable"
        if self.plugged and self.cable_a is None:
            return "the proximity pilot shows no cable while an EV is connected"
        return None

    @property
    def hard_fault(self) -> str | None:
        """Why this connector must not deliver energy at all, or None."""
        if Device.RELAY in self.faults:
            return f"contactor fault: {self.faults[Device.RELAY] or 'feedback disagrees'}"
        if Device.PILOT in self.faults:
            return f"pilot fault: {self.faults[Device.PILOT] or 'unusable reading'}"
        if self.pilot in ("E", "F"):
            return f"pilot state {self.pilot}" + (f": {self.pilot_detail}" if self.pilot_detail else "")
        if self.pilot == "D":
            # IEC 61851-1 state D asks for ventilation, which this charger cannot provide.
            return "pilot state D: the EV requires ventilation, which this charger does not provide"
        if Device.LOCK in self.faults:
            return f"socket lock: {self.faults[Device.LOCK] or 'failed'}"
        if (cable := self.cable_fault) is not None:
            return f"cable: {cable}"
        return None


@dataclass
class _PendingAuthorization:
    connector: int | None
    """The connector to start on, or None when the tag was presented to stop a session."""


@dataclass(frozen=True)
class Reservation:
    """A connector (0 = any one connector) kept for one idTag until it expires (OCPP 1.6 §3.10, §5.13)."""

    id: int
    connector: int
    id_tag: str
    expires_at: float
    parent_id_tag: str | None = None

    def admits(self, id_tag: str, parent_id_tag: str | None) -> bool:
        """The reserved idTag, or one of the same group (parentIdTag, OCTT TC_053)."""
        return id_tag == self.id_tag or (self.parent_id_tag is not None and parent_id_tag == self.parent_id_tag)

    def may_admit(self, id_tag: str) -> bool:
        """Whether ``id_tag`` could be admitted once its parentIdTag is known."""
        return id_tag == self.id_tag or self.parent_id_tag is not None

    def to_saved(self) -> dict:
        return asdict(self)


class Station:
    """All connectors of one charge point, plus connector 0 (the charge point itself)."""

    def __init__(self, connectors: int, settings: Settings | None = None, first_local_id: int = 1):
        if connectors < 1:
            raise ValueError("a charge point has at least one connector")
        self.settings = settings or Settings()
        self.connectors = {i: Connector(i) for i in range(1, connectors + 1)}
        self._apply_capabilities()
        self.operative = True
        self.station_faults: dict[Device, str] = {}
        self.going_down: str | None = None
        """Why the charge point is stopping every transaction for good (reset, shutdown), or None."""
        self.charging = sc.ChargingProfiles(self._charging_limits())
        self.reservations: dict[int, Reservation] = {}
        self.maintenance: str | None = None
        """Why no new session may start for now (a firmware installation), or None."""
        self._next_local_id = first_local_id
        self._pending_auth: dict[str, _PendingAuthorization] = {}
        self._reported_station: tuple[ConnectorStatus, ErrorCode, str] | None = None
        self._reported_problems: set[tuple[int, Device]] = set()
        self._reported_availability = self._availability()
        self._last_aligned: float | None = None
        self._last_end_aligned: float | None = None

    # ----------------------------------------------------------------- entry points

    def start(self, now: float) -> list[act.Action]:
        """Actions for power-up: every relay open, no PWM, every status reported."""
        out: list[act.Action] = []
        for c in self.connectors.values():
            c.relay_closed = False
            out.append(act.OpenRelay(c.id, "start-up: contactor open until a transaction is accepted"))
            out.append(act.OfferCurrent(c.id, None))
        self._expire_reservations(now, out)  # those that expired while the power was off
        self._reconcile(now, out)
        return out

    def handle(self, event: ev.Event, now: float) -> list[act.Action]:
        out: list[act.Action] = []
        handler = getattr(self, "_on_" + type(event).__name__)
        handler(event, now, out)
        self._reconcile(now, out)
        # Opening a contactor is never held up by bookkeeping: it goes first. The plug comes before
        # what it led to (a transaction's start, a status).
        first = (act.OpenRelay, act.PlugChanged)
        return ([a for a in out if isinstance(a, act.OpenRelay)] + [a for a in out if isinstance(a, act.PlugChanged)]
                + [a for a in out if not isinstance(a, first)])

    def meter_report(self, connector: int, at: float, context: str) -> act.ReportMeterValues | None:
        """The connector's last reading as a report (with its transaction, if one runs); None before
        the first reading."""
        c = self.connectors.get(connector)
        if c is None or c.last_sample is None:
            return None
        s = c.last_sample
        tx = c.transaction if c.phase is Phase.TRANSACTION else None
        return act.ReportMeterValues(c.id, tx.local_id if tx else None, tx.transaction_id if tx else None,
                                     s.energy_wh, s.power_w, s.current_a, s.voltage_v, at, context)

    def restore_availability(self, saved: dict[int, bool]) -> None:
        """Availability as it was before a reboot (OCTT TC_034); connector 0 is the charge point."""
        if 0 in saved:
            self.operative = saved[0]
        for cid, operative in saved.items():
            if cid in self.connectors:
                self.connectors[cid].operative = operative
        self._reported_availability = self._availability()

    def apply_settings(self, settings: Settings) -> None:
        """New settings; the charging profiles are kept, under the new limits."""
        self.settings = settings
        self._apply_capabilities()
        limits = self._charging_limits()
        if limits != self.charging.limits:
            self.charging = sc.ChargingProfiles(limits, self.charging.to_saved())

    def _apply_capabilities(self) -> None:
        tethered = self.settings.tethered_cable
        for cid, c in self.connectors.items():
            c.senses_cable = not tethered and cid in self.settings.cable_sensing
            c.has_lock = not tethered and cid in self.settings.socket_locks
            c.has_mirror_contact = cid in self.settings.mirror_contacts

    def restore_charging_profiles(self, saved: list[dict]) -> list:
        """Charging profiles as they were before a reboot (OCPP 1.6 §3.13); returns those that
        could not be restored, with why."""
        self.charging = sc.ChargingProfiles(self._charging_limits(), saved)
        return list(self.charging.dropped)

    def composite_schedule(self, connector: int, duration_s: int, unit: str | None,
                           now: float) -> sc.CompositeSchedule | None:
        """GetCompositeSchedule (OCPP 1.6 §5.7); None for a connector that does not exist."""
        try:
            return self.charging.composite(connector, now, duration_s, unit, self._charging_transactions())
        except ValueError:
            return None

    def charging_limit_a(self, connector: int, now: float) -> float:
        """What the charging profiles and the hardware allow on ``connector`` now, per phase."""
        return self._current_limit_a(self.connectors[connector], now)

    def reservation_on(self, connector: int) -> Reservation | None:
        return self._reservation_on(self.connectors[connector])

    def restore_reservations(self, saved: list[dict]) -> None:
        """Reservations as they were before a reboot; those that expired meanwhile end at ``start``."""
        for item in saved:
            r = Reservation(**item)
            if r.connector == 0 or r.connector in self.connectors:
                self.reservations[r.id] = r

    def transactions_running(self) -> bool:
        return any(c.transaction is not None for c in self.connectors.values())

    def status_of(self, connector: int) -> tuple[ConnectorStatus, ErrorCode, str]:
        if connector == 0:
            return self._station_status()
        return self._status(self.connectors[connector])

    # ----------------------------------------------------------------- hardware events

    def _on_PilotChanged(self, e: ev.PilotChanged, now: float, out: list) -> None:
        c = self._connector(e.connector)
        if c is None:
            return
        c.pilot, c.pilot_detail = e.state, e.detail
        if c.cable_fault is not None:
            self._fault_appeared(c, now, out)
        if e.state == "A":
            self._plug_taken_out(c)
            if c.phase in (Phase.TRANSACTION, Phase.STARTING):
                if self.settings.stop_on_ev_disconnect or not self._transaction_accepted(c):
                    self._stop(c, StopReason.EV_DISCONNECTED, now, out, why="EV unplugged")
                else:
                    out.append(act.Notice(f"connector {c.id}: EV unplugged, transaction continues "
                                          "(StopTransactionOnEVSideDisconnect is false)"))
            elif c.phase is Phase.FINISHING:
                c.phase = Phase.IDLE
        elif c.plugged and c.phase is Phase.AUTHORIZED:
            self._begin_transaction(c, now, out)

    def _on_MeterSampled(self, e: ev.MeterSampled, now: float, out: list) -> None:
        c = self._connector(e.connector)
        if c is not None:
            c.last_sample = e
            c.drawing = c.relay_closed and e.power_w >= ENERGY_FLOW_MIN_W

    def _on_DeviceFault(self, e: ev.DeviceFault, now: float, out: list) -> None:
        faults = self.station_faults if e.connector == 0 else self._connector_faults(e.connector)
        if faults is None:
            return
        if not e.active:
            faults.pop(e.device, None)
            return
        faults[e.device] = e.detail
        if e.connector == 0:
            return
        self._fault_appeared(self.connectors[e.connector], now, out)

    def _fault_appeared(self, c: Connector, now: float, out: list) -> None:
        """A hard fault may have appeared: no session may go on."""
        if c.hard_fault:
            self._cancel_authorization(c, StopReason.OTHER, now, out)
            if c.transaction is not None:
                self._stop(c, StopReason.OTHER, now, out, why=c.hard_fault)

    def _on_CableChanged(self, e: ev.CableChanged, now: float, out: list) -> None:
        c = self._connector(e.connector)
        if c is None or not c.senses_cable:
            return
        before = (c.cable_a, c.faults.get(Device.CABLE))
        c.cable_a = e.rating_a if not e.problem else None
        if e.problem:
            c.faults[Device.CABLE] = e.problem
        else:
            c.faults.pop(Device.CABLE, None)
        if (c.cable_a, c.faults.get(Device.CABLE)) != before:
            seen = e.problem or (f"{e.rating_a:g} A cable" if e.rating_a else "no cable")
            out.append(act.Notice(f"connector {c.id}: proximity pilot: {seen}"))
        if e.rating_a is None and not e.problem:
            self._plug_taken_out(c)
        self._fault_appeared(c, now, out)
        if c.phase is Phase.AUTHORIZED and c.plugged:
            self._begin_transaction(c, now, out)

    def _plug_taken_out(self, c: Connector) -> None:
        """The EV was unplugged or the cable left the socket: a lock fault of a plug the lock did
        not hold goes with it (OCTT TC_024)."""
        if c.lock_fault_until_unplug and c.lock is LockState.UNLOCKED:
            c.faults.pop(Device.LOCK, None)
            c.lock_fault_until_unplug = False

    def _on_LockReported(self, e: ev.LockReported, now: float, out: list) -> None:
        c = self._connector(e.connector)
        if c is None or not c.has_lock:
            return
        moving, c.lock = c.lock, LockState.LOCKED if e.locked else LockState.UNLOCKED
        if moving is LockState.LOCKING and not e.locked:
            self._lock_failed(c, "the plug could not be locked", e.detail, True, now, out)
            if self._contacts_proven_open(c):
                # A plug pushed in halfway may hold the pin half out: release it so it can be taken out.
                c.lock = LockState.UNLOCKING
                out.append(act.UnlockSocket(c.id, "release after a failed lock"))
        elif moving is LockState.UNLOCKING and e.locked:
            self._lock_failed(c, "the plug could not be unlocked", e.detail, False, now, out)
        elif moving is LockState.LOCKED and not e.locked and Device.LOCK not in c.faults:
            # Nothing asked it to move: the plug is no longer held, so no energy may flow into it
            # (IEC 61851-1 mode 3 case B); OCPP 1.6 ConnectorLockFailure.
            c.locked_for = None
            self._lock_failed(c, "the lock opened by itself", e.detail, True, now, out)
        elif not e.locked and Device.LOCK in c.faults and not c.lock_fault_until_unplug:
            c.faults.pop(Device.LOCK)
            out.append(act.Notice(f"connector {c.id}: socket unlocked again"))
        if c.lock is LockState.LOCKED and c.phase is Phase.AUTHORIZED and c.plugged:
            self._begin_transaction(c, now, out)

    def _on_ContactorMeasured(self, e: ev.ContactorMeasured, now: float, out: list) -> None:
        c = self._connector(e.connector)
        if c is not None and c.has_mirror_contact:
            c.contacts_closed = e.closed

    def _on_Tick(self, e: ev.Tick, now: float, out: list) -> None:
        self._expire_reservations(now, out)
        for c in self.connectors.values():
            if c.phase is Phase.AUTHORIZED and c.auth_deadline is not None and now >= c.auth_deadline:
                out.append(act.Notice(f"connector {c.id}: no cable within ConnectionTimeOut, "
                                      f"authorization of {c.auth_tag} dropped"))
                self._cancel_authorization(c, StopReason.TIMEOUT, now, out)
            elif c.phase is Phase.AUTHORIZING and c.auth_deadline is not None and now >= c.auth_deadline:
                out.append(act.Notice(f"connector {c.id}: no answer about {c.auth_tag} within "
                                      "ConnectionTimeOut; the connector is free again"))
                self._cancel_authorization(c, StopReason.TIMEOUT, now, out)
            tx = c.transaction
            if c.phase is Phase.TRANSACTION and tx and tx.accepted:
                tx.next_sample_at = self._periodic(c, tx.next_sample_at, self.settings.meter_sample_interval_s,
                                                   now, False, out)
                tx.next_end_sample_at = self._periodic(c, tx.next_end_sample_at,
                                                       self.settings.end_sample_interval_s, now, True, out)
        self._last_aligned = self._clock_aligned(self._last_aligned, self.settings.clock_aligned_interval_s,
                                                 now, False, out)
        self._last_end_aligned = self._clock_aligned(self._last_end_aligned,
                                                     self.settings.end_clock_aligned_interval_s, now, True, out)

    def _periodic(self, c: Connector, due: float | None, interval: float, now: float, for_end: bool,
                  out: list) -> float | None:
        """A transaction's reading every ``interval`` from its start (0 = none); the next time due."""
        if interval <= 0:
            return due
        if due is None:
            return now + interval
        if now >= due:
            # Stamped with the scheduled time so reports are exactly one interval apart.
            self._report_meter(c, due, "Sample.Periodic", out, for_end)
            while due <= now:
                due += interval
        return due

    def _clock_aligned(self, last: float | None, interval: float, now: float, for_end: bool,
                       out: list) -> float | None:
        """Meter values on the clock's interval boundaries (OCPP 1.6 "Clock-Aligned Data",
        ClockAlignedDataInterval); ``for_end``: of the running transactions only. The boundary passed."""
        if interval <= 0:
            return None
        boundary = math.floor(now / interval) * interval
        if last is not None and boundary > last:
            for c in self.connectors.values():
                if not for_end or (c.phase is Phase.TRANSACTION and c.transaction and c.transaction.accepted):
                    self._report_meter(c, boundary, "Sample.Clock", out, for_end)
        return boundary

    # ----------------------------------------------------------------- driver events

    def _on_TagPresented(self, e: ev.TagPresented, now: float, out: list) -> None:
        if self.going_down is not None:
            return
        for c in self.connectors.values():
            if c.transaction is None and c.locked_for == e.id_tag:
                c.locked_for = None
                out.append(act.Notice(f"connector {c.id}: {e.id_tag} presented, the cable is released"))
                return
        for c in self.connectors.values():
            if c.transaction is not None and c.transaction.id_tag == e.id_tag:
                self._stop(c, StopReason.LOCAL, now, out, id_tag=e.id_tag,
                           why=f"{e.id_tag} presented again")
                return
            if c.phase is Phase.AUTHORIZED and c.auth_tag == e.id_tag:
                out.append(act.Notice(f"connector {c.id}: {e.id_tag} presented again, authorization withdrawn"))
                self._cancel_authorization(c, StopReason.LOCAL, now, out)
                return
        target = self._connector_for_new_session(e.id_tag)
        if target is None and self._reserved_away():
            out.append(act.Notice(f"{e.id_tag} presented, but the free connectors are reserved for another card"))
            return
        if target is not None:
            target.phase, target.auth_tag, target.auth_remote = Phase.AUTHORIZING, e.id_tag, False
            self._request_authorization(e.id_tag, target.id, out, now)
        elif any(c.transaction and c.transaction.parent_id_tag for c in self.connectors.values()):
            # Another card of the same group may stop a transaction (OCPP 1.6 §3.5.1, TC_069).
            self._request_authorization(e.id_tag, None, out, now)
        else:
            out.append(act.Notice(f"{e.id_tag} presented, but no connector can start a session"))

    def _on_AuthorizationResult(self, e: ev.AuthorizationResult, now: float, out: list) -> None:
        pending = self._pending_auth.pop(e.id_tag, None)
        if pending is None:
            return
        accepted = e.status is AuthStatus.ACCEPTED
        if pending.connector is None:
            if accepted and e.parent_id_tag:
                for c in self.connectors.values():
                    tx = c.transaction
                    if tx is not None and tx.parent_id_tag == e.parent_id_tag:
                        self._stop(c, StopReason.LOCAL, now, out, id_tag=e.id_tag,
                                   why=f"{e.id_tag} shares parent id {e.parent_id_tag}")
                        return
            return
        c = self.connectors[pending.connector]
        if c.phase is not Phase.AUTHORIZING or c.auth_tag != e.id_tag:
            return
        if e.status is None and self.settings.offline_start and self.settings.allow_offline_unknown:
            # OCPP 1.6 AllowOfflineTxForUnknownId; the installer opted in to offline starts.
            out.append(act.Notice(f"connector {c.id}: central system unreachable, {e.id_tag} allowed "
                                  "offline (AllowOfflineTxForUnknownId)"))
            accepted, c.auth_offline = True, True
        elif e.offline and accepted:
            # OCPP 1.6 §3.5 LocalAuthorizeOffline: known locally, but the start would be an offline one.
            if not self.settings.offline_start:
                out.append(act.Notice(f"connector {c.id}: {e.id_tag} is authorized locally, but the central "
                                      "system is unreachable and offline starts are off (ocpp.allow_offline_start)"))
                self._cancel_authorization(c, StopReason.DEAUTHORIZED, now, out)
                return
            out.append(act.Notice(f"connector {c.id}: central system unreachable, {e.id_tag} authorized "
                                  "locally (LocalAuthorizeOffline)"))
            c.auth_offline = True
        if not accepted:
            verdict = e.status.value if e.status else "no answer from the central system"
            out.append(act.Notice(f"connector {c.id}: {e.id_tag} not authorized ({verdict})"))
            self._cancel_authorization(c, StopReason.DEAUTHORIZED, now, out)
            return
        if not self._can_start(c):
            out.append(act.Notice(f"connector {c.id}: {e.id_tag} authorized, but the connector "
                                  "can no longer start a session"))
            self._cancel_authorization(c, StopReason.OTHER, now, out)
            return
        if self._reservation_blocks(c, e.id_tag, e.parent_id_tag):
            out.append(act.Notice(f"connector {c.id}: {e.id_tag} authorized, but the connector is reserved "
                                  "for another card"))
            self._cancel_authorization(c, StopReason.OTHER, now, out)
            return
        c.auth_parent = e.parent_id_tag
        self._authorized(c, now, out)

    def _on_TransactionStartConfirmed(self, e: ev.TransactionStartConfirmed, now: float, out: list) -> None:
        c = self._connector(e.connector)
        tx = c.transaction if c else None
        if c is None or tx is None or tx.local_id != e.local_id or tx.transaction_id is not None:
            return
        if e.status is None:
            # No answer, as for an Authorize without one: only a start the offline rules allowed
            # (provisional, already drawing) goes on; any other ends here, before any energy.
            if tx.provisional:
                tx.transaction_id = e.transaction_id
                out.append(act.Notice(f"connector {c.id}: the start of transaction {e.transaction_id} was never "
                                      "answered; it goes on as it was started offline"))
                return
            self._stop(c, StopReason.DEAUTHORIZED, now, out,
                       why=f"the central system never answered the start for {tx.id_tag}")
            return
        tx.transaction_id = e.transaction_id
        tx.parent_id_tag = e.parent_id_tag or tx.parent_id_tag
        c.phase = Phase.TRANSACTION
        was_provisional, tx.provisional = tx.provisional, False
        if e.status is AuthStatus.ACCEPTED:
            tx.accepted = True
            out.append(act.Notice(f"connector {c.id}: transaction {e.transaction_id} accepted for {tx.id_tag}"))
            return
        self._not_accepted(c, tx, e.status, was_provisional, now, out)

    def _on_TransactionAuthorizationRevoked(self, e: ev.TransactionAuthorizationRevoked, now: float,
                                            out: list) -> None:
        c = self._connector(e.connector)
        tx = c.transaction if c else None
        if c is None or tx is None or tx.local_id != e.local_id or not tx.accepted or e.status is AuthStatus.ACCEPTED:
            return
        self._not_accepted(c, tx, e.status, True, now, out)

    def _not_accepted(self, c: Connector, tx: Transaction, status: AuthStatus, was_drawing: bool, now: float,
                      out: list) -> None:
        """The central system did not accept the token of a running transaction: stop it
        (StopTransactionOnInvalidId / StopTxOnInvalidId true), or keep it open without energy,
        except MaxEnergyOnInvalidId for a transaction that was already drawing on an earlier verdict."""
        tx.accepted = False
        if self.settings.stop_on_invalid_id:
            self._stop(c, StopReason.DEAUTHORIZED, now, out,
                       why=f"central system answered {status.value} for {tx.id_tag}")
            return
        if was_drawing and self.settings.max_energy_on_invalid_wh > 0:
            tx.energy_limit_wh = self._energy_wh(c) + self.settings.max_energy_on_invalid_wh
        out.append(act.Notice(f"connector {c.id}: transaction {tx.transaction_id} answered {status.value}; "
                              "kept open (stop on invalid id false), "
                              + (f"energy up to {tx.energy_limit_wh:.0f} Wh (MaxEnergyOnInvalidId)"
                                 if tx.energy_limit_wh else "no more energy")))

    # ----------------------------------------------------------------- central system commands

    def _on_RemoteStartRequested(self, e: ev.RemoteStartRequested, now: float, out: list) -> None:
        if e.connector is None:
            c = self._connector_for_new_session(e.id_tag)
        else:
            c = self._connector(e.connector)  # connector 0 is not a connector (TC_027)
        if c is None or self.going_down is not None or not self._can_start(c) or c.phase not in (
            Phase.IDLE, Phase.FINISHING
        ) or self._reservation_blocks(c, e.id_tag, None):
            out.append(act.Answer("Rejected"))
            return
        profile = None
        if e.charging_profile is not None:
            try:
                profile = sc.profile_from_ocpp(c.id, e.charging_profile)
                sc.check_profile(profile)
            except sc.ProfileError as error:
                out.append(act.Notice(f"RemoteStartTransaction refused: charging profile {error}"))
                out.append(act.Answer("Rejected"))
                return
            if profile.purpose != sc.TX:
                out.append(act.Answer("Rejected"))  # OCPP 1.6 §5.11, OCTT TC_060
                return
        out.append(act.Answer("Accepted"))
        c.auth_tag, c.auth_remote, c.pending_profile = e.id_tag, True, profile
        if self.settings.authorize_remote_start:
            c.phase = Phase.AUTHORIZING
            self._request_authorization(e.id_tag, c.id, out, now)
            return
        c.auth_parent = None
        self._authorized(c, now, out)

    def _on_RemoteStopRequested(self, e: ev.RemoteStopRequested, now: float, out: list) -> None:
        for c in self.connectors.values():
            tx = c.transaction
            if tx is not None and (tx.local_id == e.local_id if e.local_id is not None
                                   else e.transaction_id is not None and tx.transaction_id == e.transaction_id):
                out.append(act.Answer("Accepted"))
                self._stop(c, e.reason, now, out, why=e.why)
                return
        out.append(act.Answer("Rejected"))

    def _on_AvailabilityRequested(self, e: ev.AvailabilityRequested, now: float, out: list) -> None:
        if e.connector == 0:
            targets = list(self.connectors.values())
            self.operative = e.operative
        elif e.connector in self.connectors:
            targets = [self.connectors[e.connector]]
        else:
            out.append(act.Answer("Rejected"))
            return
        scheduled = False
        for c in targets:
            if not e.operative and c.transaction is not None:
                c.pending_operative, scheduled = False, True
                continue
            c.operative, c.pending_operative = e.operative, None
            if not e.operative:
                self._cancel_authorization(c, StopReason.OTHER, now, out)
        out.append(act.Answer("Scheduled" if scheduled else "Accepted"))

    def _on_ResetRequested(self, e: ev.ResetRequested, now: float, out: list) -> None:
        out.append(act.Answer("Accepted"))
        self.going_down = "hard reset" if e.hard else "soft reset"
        reason = StopReason.HARD_RESET if e.hard else StopReason.SOFT_RESET
        for c in self.connectors.values():
            self._cancel_authorization(c, reason, now, out)
            if c.transaction is not None:
                self._stop(c, reason, now, out, why=f"{'hard' if e.hard else 'soft'} reset requested")
        self._pending_auth.clear()
        out.append(act.Restart(e.hard))

    def _on_ShutdownRequested(self, e: ev.ShutdownRequested, now: float, out: list) -> None:
        """Stop every transaction before the power goes (OCTT TC_032_1) or the service stops."""
        self.going_down = f"shutting down ({e.reason.value})"
        for c in self.connectors.values():
            self._cancel_authorization(c, e.reason, now, out)
            if c.transaction is not None:
                self._stop(c, e.reason, now, out, why=self.going_down)
        self._pending_auth.clear()

    def _on_UnlockRequested(self, e: ev.UnlockRequested, now: float, out: list) -> None:
        """OCPP 1.6 §5.19: stop the transaction first, then unlock; the answer (Unlocked or UnlockFailed)
        comes from the lock's feedback, so it is given with the LockReported of the UnlockSocket emitted
        with ``requested`` (OCTT TC_018_1, TC_030)."""
        c = self._connector(e.connector)
        if c is None or not c.has_lock:
            # No such connector, a tethered cable or no lock actuator (TC_031, TC_017_2).
            out.append(act.Answer("NotSupported"))
            return
        if (welded := self._contacts_maybe_live(c)) is not None:
            self._refuse_unlock(c, welded, out)
            out.append(act.Answer("UnlockFailed"))
            return
        if c.transaction is not None:
            self._stop(c, StopReason.UNLOCK_COMMAND, now, out, why="unlock requested by the central system")
        self._cancel_authorization(c, StopReason.UNLOCK_COMMAND, now, out)
        c.unlock_requested, c.locked_for = True, None

    def _on_ReserveNowRequested(self, e: ev.ReserveNowRequested, now: float, out: list) -> None:
        replaced = self.reservations.pop(e.reservation_id, None)  # the same id replaces (§5.13)
        verdict = self._reservation_verdict(e, now)
        if verdict != "Accepted":
            if replaced is not None:
                self.reservations[replaced.id] = replaced
            out.append(act.Answer(verdict))
            return
        self.reservations[e.reservation_id] = Reservation(e.reservation_id, e.connector, e.id_tag, e.expires_at,
                                                          e.parent_id_tag)
        out.append(act.Answer("Accepted"))
        where = f"connector {e.connector}" if e.connector else "the charge point"
        out.append(act.Notice(f"{where} reserved for {e.id_tag} (reservation {e.reservation_id})"))
        self._reservations_changed(out)

    def _reservation_verdict(self, e: ev.ReserveNowRequested, now: float) -> str:
        """ReserveNow.conf status (OCPP 1.6 §5.13, §7.38): Faulted, Unavailable, Occupied or Rejected
        when the reservation cannot be honoured."""
        if self.going_down is not None or e.expires_at <= now:
            return "Rejected"
        if e.connector == 0:
            if not self.settings.reserve_connector_zero:
                return "Rejected"
            connectors = list(self.connectors.values())
        elif e.connector in self.connectors:
            connectors = [self.connectors[e.connector]]
        else:
            return "Rejected"
        if all(c.hard_fault for c in connectors):
            return "Faulted"
        if not self.operative or self.maintenance or not any(c.operative for c in connectors):
            return "Unavailable"
        free = [c for c in connectors if self._free(c)]
        if e.connector == 0:
            return "Accepted" if len(free) > len(self._station_reservations()) else "Occupied"
        return "Accepted" if free and not self._held_for_station(free[0]) else "Occupied"

    def _on_CancelReservationRequested(self, e: ev.CancelReservationRequested, now: float, out: list) -> None:
        r = self.reservations.get(e.reservation_id)
        if r is None:
            out.append(act.Answer("Rejected"))  # OCTT TC_052
            return
        out.append(act.Answer("Accepted"))
        self._end_reservation(r, ReservationEnd.CANCELLED,
                              f"reservation {r.id} for {r.id_tag} cancelled by the central system", out)
        self._reservations_changed(out)

    def _on_ChargingProfileRequested(self, e: ev.ChargingProfileRequested, now: float, out: list) -> None:
        if not 0 <= e.connector <= len(self.connectors):
            out.append(act.Answer("Rejected"))
            return
        try:
            profile = sc.profile_from_ocpp(e.connector, e.profile)
        except sc.ProfileError as error:
            out.append(act.Notice(f"SetChargingProfile refused: {error}"))
            out.append(act.Answer("Rejected"))
            return
        accepted, why = self.charging.set(profile, self._charging_transactions(), e.replace_same_stack)
        if not accepted:
            out.append(act.Notice(f"SetChargingProfile {profile.id} refused: {why}"))
            out.append(act.Answer("Rejected"))
            return
        out.append(act.Answer("Accepted"))
        out.append(act.Notice(f"charging profile {profile.id} ({profile.purpose}, stack level "
                              f"{profile.stack_level}) installed on connector {e.connector}"))
        self._charging_profiles_changed(out)

    def _on_ClearChargingProfileRequested(self, e: ev.ClearChargingProfileRequested, now: float, out: list) -> None:
        cleared = self.charging.clear(profile_id=e.profile_id, connector=e.connector, purpose=e.purpose,
                                      stack_level=e.stack_level)
        out.append(act.Answer("Accepted" if cleared else "Unknown"))
        if cleared:
            self._charging_profiles_changed(out)

    def _on_MaintenanceRequested(self, e: ev.MaintenanceRequested, now: float, out: list) -> None:
        self.maintenance = e.reason
        if e.reason is not None:
            out.append(act.Notice(f"no new sessions: {e.reason}"))
            for c in self.connectors.values():
                if c.transaction is None:
                    self._cancel_authorization(c, StopReason.OTHER, now, out)
        else:
            out.append(act.Notice("new sessions allowed again"))

    # ----------------------------------------------------------------- transitions

    def _authorized(self, c: Connector, now: float, out: list) -> None:
        """``c.auth_tag`` may start a session on ``c``: its transaction begins at once if the EV is
        plugged in (and its cable and lock are ready), else it waits for the EV until ConnectionTimeOut."""
        c.phase = Phase.AUTHORIZED
        c.auth_deadline = now + self.settings.connection_timeout_s
        if c.plugged:
            self._begin_transaction(c, now, out)
        if c.phase is Phase.AUTHORIZED and c.auth_tag is not None:
            out.append(act.Authorized(c.id, c.auth_tag, c.auth_remote, now))

    def _begin_transaction(self, c: Connector, now: float, out: list) -> None:
        if not self._can_start(c):
            out.append(act.Notice(f"connector {c.id}: cannot start a transaction ({self._why_not(c)})"))
            self._cancel_authorization(c, StopReason.OTHER, now, out)
            return
        if c.senses_cable and c.cable_a is None:
            return  # begins once the proximity pilot gave the cable's rating
        if c.has_lock and c.lock is not LockState.LOCKED:
            return  # begins once the plug is locked (``_reconcile_lock`` locks it)
        c.locked_for = None
        meter_start = round(c.last_sample.energy_wh) if c.last_sample else 0
        reservation = self._reservation_used(c, c.auth_tag or "", c.auth_parent)
        if reservation is not None:
            # The reservation ends when its transaction starts (OCPP 1.6 §5.13).
            self._end_reservation(reservation, ReservationEnd.USED,
                                  f"connector {c.id}: reservation {reservation.id} used by {c.auth_tag}", out)
            self._reservations_changed(out)
        tx = Transaction(
            local_id=self._next_local_id,
            id_tag=c.auth_tag or "",
            meter_start_wh=meter_start,
            started_at=now,
            remote=c.auth_remote,
            parent_id_tag=c.auth_parent,
        )
        self._next_local_id += 1
        c.transaction, c.phase = tx, Phase.STARTING
        if c.auth_offline:
            tx.accepted = tx.provisional = True
            c.phase = Phase.TRANSACTION
        c.auth_tag = c.auth_parent = c.auth_deadline = None
        c.auth_remote = c.auth_offline = False
        c.offer_changed_at = c.paused_since = None
        if c.pending_profile is not None:
            accepted, why = self.charging.set(c.pending_profile, self._charging_transactions())
            out.append(act.Notice(f"connector {c.id}: charging profile {c.pending_profile.id} of the remote start "
                                  + ("installed" if accepted else f"refused: {why}")))
            c.pending_profile = None
            if accepted:
                self._charging_profiles_changed(out)
        out.append(act.ReportTransactionStart(c.id, tx.local_id, tx.id_tag, meter_start, now,
                                        reservation.id if reservation else None, tx.remote))

    def _stop(self, c: Connector, reason: StopReason, now: float, out: list,
              id_tag: str | None = None, why: str = "") -> None:
        """End the connector's transaction. The relay opens in the same step (``_reconcile``)."""
        tx = c.transaction
        assert tx is not None
        c.transaction = None
        c.phase = Phase.FINISHING if c.plugged else Phase.IDLE
        if c.has_lock and reason is StopReason.EV_DISCONNECTED and not self.settings.unlock_on_ev_disconnect:
            c.locked_for = tx.id_tag  # OCPP 1.6 UnlockConnectorOnEVSideDisconnect false
        meter_stop = round(c.last_sample.energy_wh) if c.last_sample else tx.meter_start_wh
        out.append(act.Notice(f"connector {c.id}: transaction {tx.transaction_id or '(unconfirmed)'} "
                              f"stopped, {reason.value}: {why}"))
        out.append(act.ReportTransactionStop(c.id, tx.local_id, tx.transaction_id, id_tag, meter_stop, now, reason))
        had_tx_profiles = any(p.purpose == sc.TX and p.connector == c.id for p in self.charging.profiles)
        self.charging.transaction_ended(c.id)
        if had_tx_profiles:
            self._charging_profiles_changed(out)  # a TxProfile ends with its transaction (§3.13.3)
        if c.pending_operative is not None:
            c.operative, c.pending_operative = c.pending_operative, None

    def _cancel_authorization(self, c: Connector, reason: StopReason, now: float, out: list) -> None:
        """Drop the connector's authorization (asked for or granted) that has not become a
        transaction; the protocol hears why (``AuthorizationEnded``)."""
        c.pending_profile = None
        if c.phase in (Phase.AUTHORIZING, Phase.AUTHORIZED):
            if c.auth_tag is not None:
                self._pending_auth.pop(c.auth_tag, None)
                out.append(act.AuthorizationEnded(c.id, c.auth_tag, c.auth_remote, reason, now))
            c.phase = Phase.IDLE
        c.auth_tag = c.auth_parent = c.auth_deadline = None
        c.auth_remote = c.auth_offline = False

    def _request_authorization(self, id_tag: str, connector: int | None, out: list, now: float) -> None:
        self._pending_auth[id_tag] = _PendingAuthorization(connector)
        if connector is not None:
            self.connectors[connector].auth_deadline = now + self.settings.connection_timeout_s
        out.append(act.RequestAuthorization(id_tag))

    def _report_meter(self, c: Connector, at: float, context: str, out: list, for_end: bool = False) -> None:
        report = self.meter_report(c.id, at, context)
        if report is not None:
            out.append(replace(report, for_transaction_end=True) if for_end else report)

    def _charging_profiles_changed(self, out: list) -> None:
        out.append(act.ChargingProfilesChanged(tuple(self.charging.to_saved())))

    def _charging_limits(self) -> sc.Limits:
        s = self.settings
        return sc.Limits(connectors=len(self.connectors), max_current_a=s.max_current_a, phases=s.phases,
                         voltage_v=s.voltage_v, max_stack_level=s.max_stack_level,
                         max_periods=s.max_schedule_periods, max_profiles=s.max_charging_profiles,
                         allowed_units=s.charging_rate_units)

    def _charging_transactions(self) -> dict[int, sc.Transaction]:
        return {cid: sc.Transaction(c.transaction.transaction_id, c.transaction.started_at)
                for cid, c in self.connectors.items() if c.transaction is not None}

    def _reservations_changed(self, out: list) -> None:
        out.append(act.ReservationsChanged(tuple(r.to_saved() for r in self.reservations.values())))

    # ----------------------------------------------------------------- reservations

    def _expire_reservations(self, now: float, out: list) -> None:
        expired = [r for r in self.reservations.values() if now >= r.expires_at]
        for r in expired:
            self._end_reservation(r, ReservationEnd.EXPIRED, f"reservation {r.id} for {r.id_tag} expired", out)
        if expired:
            self._reservations_changed(out)

    def _end_reservation(self, r: Reservation, reason: ReservationEnd, text: str, out: list) -> None:
        del self.reservations[r.id]
        out.append(act.Notice(text))
        out.append(act.ReservationEnded(r.id, r.connector, reason))

    def _remove_unusable_reservations(self, out: list) -> None:
        """A reservation ends when its connector, or the charge point, becomes Faulted or
        Unavailable (OCPP 1.6 §5.13; 2.0.1 Part 2 H04: reported Removed). A firmware installation
        that holds new sessions back for a while does not end it."""
        if not self.reservations:
            return
        removed = [(r, why) for r in list(self.reservations.values()) if (why := self._why_unusable(r)) is not None]
        for r, why in removed:
            self._end_reservation(r, ReservationEnd.REMOVED, f"reservation {r.id} for {r.id_tag} removed: {why}", out)
        if removed:
            self._reservations_changed(out)

    def _why_unusable(self, r: Reservation) -> str | None:
        """Why the reservation can no longer be honoured: its connector (for one of the charge
        point: every connector) is Faulted or Unavailable, or the charge point is; else None."""
        if not self.operative:
            return "the charge point is Unavailable"
        if r.connector == 0:
            usable = any(c.operative and not c.hard_fault for c in self.connectors.values())
            return None if usable else "every connector is Faulted or Unavailable"
        c = self.connectors[r.connector]
        if not c.operative:
            return f"connector {c.id} is Unavailable"
        return f"connector {c.id} is Faulted ({c.hard_fault})" if c.hard_fault else None

    def _reservation_on(self, c: Connector) -> Reservation | None:
        return next((r for r in self.reservations.values() if r.connector == c.id), None)

    def _station_reservations(self) -> list[Reservation]:
        return [r for r in self.reservations.values() if r.connector == 0]

    def _free(self, c: Connector) -> bool:
        """Could start a session for anyone right now, reservations aside."""
        return (c.phase is Phase.IDLE and not c.plugged and c.operative and c.hard_fault is None
                and self._reservation_on(c) is None)

    def _held_for_station(self, c: Connector) -> bool:
        """A free connector that must stay free for the charge point's reservations: there are no
        more free connectors than connector-0 reservations (OCPP 1.6 §5.13, connectorId 0)."""
        held = self._station_reservations()
        return bool(held) and self._free(c) and sum(self._free(o) for o in self.connectors.values()) <= len(held)

    def _reservation_used(self, c: Connector, id_tag: str, parent: str | None) -> Reservation | None:
        """The reservation a session of ``id_tag`` on ``c`` uses up, if any."""
        mine = self._reservation_on(c)
        if mine is not None:
            return mine if mine.admits(id_tag, parent) else None
        return next((r for r in self._station_reservations() if r.admits(id_tag, parent)), None)

    def _reservation_blocks(self, c: Connector, id_tag: str, parent: str | None) -> bool:
        """Whether reservations forbid ``id_tag`` (of group ``parent``) to start on ``c``."""
        mine = self._reservation_on(c)
        if mine is not None:
            return not mine.admits(id_tag, parent)
        held = self._station_reservations()
        if not held or not self._free(c):
            return False
        needed = len(held) - (1 if self._reservation_used(c, id_tag, parent) else 0)
        return sum(self._free(o) for o in self.connectors.values() if o is not c) < needed

    def _reservation_may_admit(self, c: Connector, id_tag: str) -> bool:
        """Before the tag's parentIdTag is known: whether some answer could let it start on ``c``
        (OCTT TC_046_1: a card that cannot use the reservation is not even authorized)."""
        mine = self._reservation_on(c)
        if mine is not None:
            return mine.may_admit(id_tag)
        if not self._reservation_blocks(c, id_tag, None):
            return True
        return any(r.may_admit(id_tag) for r in self._station_reservations())

    def _reserved_away(self) -> bool:
        """Some connector could start a session, but only for someone else's reservation."""
        return any(c.phase in (Phase.IDLE, Phase.FINISHING) and self._can_start(c)
                   for c in self.connectors.values())

    # ----------------------------------------------------------------- the safety rule

    def _charging_allowed(self, c: Connector) -> bool:
        """The transaction may draw energy: accepted (or within MaxEnergyOnInvalidId), no fault,
        the charge point not going down."""
        tx = c.transaction
        return (
            c.phase is Phase.TRANSACTION
            and tx is not None
            and (tx.accepted or self._within_energy_limit(c, tx))
            and c.hard_fault is None
            and self.going_down is None
        )

    def _may_energise(self, c: Connector, now: float) -> bool:
        if not (self._charging_allowed(c) and c.pilot == "C"):
            return False
        if c.has_lock and c.lock is not LockState.LOCKED:
            return False  # a socket outlet carries power only with the plug locked in it
        if c.offered_a is not None:
            return True
        # A charging limit below 6 A stopped the PWM: the EV should open S2 within 3 s; if it
        # stays in C, the power goes off after 6 s (IEC 61851-1 Table A.6 seq. 10.1, 10.2).
        return c.relay_closed and c.paused_since is not None and now < c.paused_since + C1_POWER_OFF_S

    def _within_energy_limit(self, c: Connector, tx: Transaction) -> bool:
        return tx.energy_limit_wh is not None and self._energy_wh(c) < tx.energy_limit_wh

    def _energy_wh(self, c: Connector) -> float:
        return c.last_sample.energy_wh if c.last_sample else 0.0

    def _current_limit_a(self, c: Connector, now: float) -> float:
        """What the charging profiles and the hardware allow now, per phase. The charge point's
        maximum (ChargePointMaxProfile) is shared equally by the connectors whose transactions
        may draw energy (OCPP 1.6 §3.13.1)."""
        limit = min(self.settings.max_current_a, self.charging.limit_a(c.id, now, self._charging_transactions()))
        if c.senses_cable and c.cable_a is not None:
            limit = min(limit, c.cable_a)  # never more than the cable is rated for (IEC 61851-1 Annex B)
        whole = self.charging.charge_point_limit_a(now)
        if whole is not None:
            sharing = sum(1 for o in self.connectors.values() if o is c or (self._charging_allowed(o) and o.plugged))
            limit = min(limit, math.floor(whole / sharing * 10) / 10)
        return limit

    def _wanted_offer(self, c: Connector, now: float) -> float | None:
        """PWM only while an allowed transaction may draw energy (IEC 61851-1 state B2/C2), at the
        charging limit; no PWM (B1/C1) while the limit is below 6 A or the plug is not locked."""
        if not (self._charging_allowed(c) and c.plugged):
            return None
        if c.has_lock and c.lock is not LockState.LOCKED:
            return None
        limit = self._current_limit_a(c, now)
        return limit if limit >= MIN_PILOT_CURRENT_A else None

    def _update_offer(self, c: Connector, now: float, out: list) -> None:
        wanted = self._wanted_offer(c, now)
        if wanted == c.offered_a:
            return
        by_limit = self._charging_allowed(c) and c.plugged
        over_cable = c.senses_cable and c.offered_a is not None and (c.cable_a is None or c.offered_a > c.cable_a)
        if (by_limit and not over_cable and c.offer_changed_at is not None
                and now - c.offer_changed_at < PWM_CHANGE_INTERVAL_S):
            return  # a stop, a fault or more than the cable's rating is never held back: only limit changes wait
        if by_limit and wanted is None and c.offered_a is not None:
            c.paused_since = now
            out.append(act.Notice(f"connector {c.id}: charging paused, the charging limit "
                                  f"{self._current_limit_a(c, now):.1f} A is below 6 A"))
        elif wanted is not None:
            c.paused_since = None
        c.offer_changed_at = now if by_limit else None
        c.offered_a = wanted
        out.append(act.OfferCurrent(c.id, wanted))

    def _reconcile(self, now: float, out: list) -> None:
        self._remove_unusable_reservations(out)
        for c in self.connectors.values():
            if c.plugged != c.reported_plugged:
                c.reported_plugged = c.plugged
                out.append(act.PlugChanged(c.id, c.plugged, now))
            self._update_offer(c, now, out)
            energise = self._may_energise(c, now)
            if c.relay_closed and not energise:
                c.relay_closed = False
                out.append(act.OpenRelay(c.id, self._why_open(c)))
            if energise and not c.relay_closed:
                c.relay_closed, c.drawing = True, False
                out.append(act.CloseRelay(c.id))
            delivery = (c.relay_closed, c.relay_closed and (c.drawing or c.last_sample is None))
            if delivery != c.reported_delivery:
                c.reported_delivery = delivery
                out.append(act.PowerDeliveryChanged(c.id, *delivery, now))
            self._reconcile_lock(c, out)
            status = self._status(c)
            if status != c.reported:
                c.reported = status
                out.append(act.StatusChanged(c.id, status[0], status[1], now, status[2]))
        availability = self._availability()
        for cid, operative in availability.items():
            if operative != self._reported_availability.get(cid):
                out.append(act.AvailabilityChanged(cid, operative))
        self._reported_availability = availability
        station = self._station_status()
        if station != self._reported_station:
            self._reported_station = station
            out.append(act.StatusChanged(0, station[0], station[1], now, station[2]))
        self._report_problems(out)

    def _report_problems(self, out: list) -> None:
        """A DeviceProblem for each device fault that began or ended since the last report."""
        problems = {(0, device): detail for device, detail in self.station_faults.items()}
        for c in self.connectors.values():
            problems.update({(c.id, device): detail for device, detail in c.faults.items()})
        for cid, device in sorted(self._reported_problems - problems.keys()):
            out.append(act.DeviceProblem(cid, device, False))
        for (cid, device), detail in sorted(problems.items()):
            if (cid, device) not in self._reported_problems:
                out.append(act.DeviceProblem(cid, device, True, detail or ""))
        self._reported_problems = set(problems)

    def _wants_lock(self, c: Connector) -> bool:
        if c.unlock_requested:
            return False
        if c.locked_for is not None:
            return True
        if c.transaction is not None:
            return c.plugged or not self.settings.unlock_on_ev_disconnect
        return c.phase is Phase.AUTHORIZED and c.plugged and not c.hard_fault

    def _lock_failed(self, c: Connector, what: str, detail: str, plug_not_held: bool, now: float,
                     out: list) -> None:
        """A lock fault: ``plug_not_held`` (it failed to lock, or opened) it lasts until the plug is
        taken out, and no energy may flow; otherwise (it failed to unlock) until it unlocks."""
        c.faults[Device.LOCK] = f"{what}{': ' + detail if detail else ''}"
        c.lock_fault_until_unplug = plug_not_held
        no_energy = "; no energy (OCPP ConnectorLockFailure)" if plug_not_held else ""
        out.append(act.Notice(f"connector {c.id}: {c.faults[Device.LOCK]}{no_energy}"))
        self._fault_appeared(c, now, out)

    def _refuse_unlock(self, c: Connector, why: str, out: list) -> None:
        out.append(act.Notice(f"connector {c.id}: unlock refused, the plug stays locked: {why}"))

    def _contacts_proven_open(self, c: Connector) -> bool:
        """The plug may be released: the contactor is commanded open and, where a mirror contact
        tells, measured open with no contactor fault latched. A socket outlet holds the plug while
        it may be live (IEC 61851-1 mode 3 case B: the plug is locked while energised); a welded
        contactor keeps it locked, as EVerest and Tarragon do."""
        if c.relay_closed:
            return False
        return not c.has_mirror_contact or (c.contacts_closed is False and Device.RELAY not in c.faults)

    def _contacts_maybe_live(self, c: Connector) -> str | None:
        """Why the contacts must be taken as live for good (a latched contactor fault with a mirror
        contact), or None while they are open or only on their way to open."""
        return c.hard_fault if c.has_mirror_contact and Device.RELAY in c.faults else None

    def _reconcile_lock(self, c: Connector, out: list) -> None:
        """Lock the plug for a session, release it after, once the contacts are proven open (an
        UnlockSocket comes after the OpenRelay of the same step, or with the mirror contact's
        reading). After a failure nothing moves on its own again; only UnlockConnector or an
        unplug does."""
        if not c.has_lock or c.lock in (LockState.LOCKING, LockState.UNLOCKING):
            return
        if c.unlock_requested:
            if self._contacts_proven_open(c):
                c.unlock_requested = False
                c.lock = LockState.UNLOCKING
                out.append(act.UnlockSocket(c.id, "unlock requested by the central system", requested=True))
            elif (welded := self._contacts_maybe_live(c)) is not None:
                c.unlock_requested = False
                self._refuse_unlock(c, welded, out)
                out.append(act.UnlockRefused(c.id, welded))
            return
        if Device.LOCK in c.faults:
            return
        wanted = self._wants_lock(c)
        if wanted and c.lock is LockState.UNLOCKED and not c.relay_closed:
            c.lock = LockState.LOCKING
            out.append(act.LockSocket(c.id))
        elif not wanted and c.lock is LockState.LOCKED and self._contacts_proven_open(c):
            c.lock = LockState.UNLOCKING
            out.append(act.UnlockSocket(c.id, "session over" if c.transaction is None else "cable pulled at the EV"))

    def lock_state(self, connector: int) -> str | None:
        """The socket lock as /api/status shows it: None without one, "failed" after a failure."""
        c = self.connectors[connector]
        if not c.has_lock:
            return None
        return "failed" if Device.LOCK in c.faults else c.lock.value

    def _availability(self) -> dict[int, bool]:
        """What each connector will be once its transaction ends (a scheduled change counts)."""
        return {0: self.operative, **{cid: c.operative if c.pending_operative is None else c.pending_operative
                                      for cid, c in self.connectors.items()}}

    def _why_open(self, c: Connector) -> str:
        if c.hard_fault:
            return c.hard_fault
        if self.going_down is not None:
            return self.going_down
        if c.transaction is None:
            return "transaction ended"
        if c.pilot != "C":
            return f"EV left state C (pilot {c.pilot})"
        if self._charging_allowed(c):
            return "charging limit below 6 A and the EV stayed in state C"
        return "transaction not accepted"

    # ----------------------------------------------------------------- status

    def _status(self, c: Connector) -> tuple[ConnectorStatus, ErrorCode, str]:
        error, info = self._error(c)
        if c.hard_fault:
            return ConnectorStatus.FAULTED, error, info
        if c.phase is Phase.TRANSACTION:
            if c.relay_closed and c.offered_a is not None:
                status = ConnectorStatus.CHARGING
            elif c.pilot == "C" or (c.plugged and c.offered_a is None and self._charging_allowed(c)):
                status = ConnectorStatus.SUSPENDED_EVSE
            else:
                status = ConnectorStatus.SUSPENDED_EV
        elif c.phase is Phase.STARTING:
            status = ConnectorStatus.PREPARING
        elif not c.operative or self.maintenance is not None:
            status = ConnectorStatus.UNAVAILABLE
        elif c.phase is Phase.FINISHING:
            status = ConnectorStatus.FINISHING
        elif c.phase is Phase.AUTHORIZED or c.plugged:
            status = ConnectorStatus.PREPARING
        elif self._reservation_on(c) is not None or self._held_for_station(c):
            status = ConnectorStatus.RESERVED
        else:
            status = ConnectorStatus.AVAILABLE
        return status, error, info

    def _error(self, c: Connector) -> tuple[ErrorCode, str]:
        if Device.RELAY in c.faults:
            return ErrorCode.POWER_SWITCH_FAILURE, c.faults[Device.RELAY]
        if Device.PILOT in c.faults or c.pilot in ("D", "E", "F"):
            return ErrorCode.OTHER_ERROR, c.faults.get(Device.PILOT) or c.hard_fault or f"pilot state {c.pilot}"
        if Device.LOCK in c.faults:
            return ErrorCode.CONNECTOR_LOCK_FAILURE, c.faults[Device.LOCK]
        if (cable := c.cable_fault) is not None:
            return ErrorCode.OTHER_ERROR, cable
        if Device.METER in c.faults:
            return ErrorCode.POWER_METER_FAILURE, c.faults[Device.METER]
        return ErrorCode.NO_ERROR, ""

    def _station_status(self) -> tuple[ConnectorStatus, ErrorCode, str]:
        available = self.operative and self.maintenance is None
        status = ConnectorStatus.AVAILABLE if available else ConnectorStatus.UNAVAILABLE
        if Device.READER in self.station_faults:
            return status, ErrorCode.READER_FAILURE, self.station_faults[Device.READER]
        if Device.POWER_FAIL_INPUT in self.station_faults:
            return status, ErrorCode.OTHER_ERROR, self.station_faults[Device.POWER_FAIL_INPUT]
        return status, ErrorCode.NO_ERROR, ""

    # ----------------------------------------------------------------- queries

    def _connector(self, connector_id: int | None) -> Connector | None:
        return self.connectors.get(connector_id) if connector_id else None

    def _connector_faults(self, connector_id: int) -> dict[Device, str] | None:
        c = self._connector(connector_id)
        return c.faults if c else None

    def _transaction_accepted(self, c: Connector) -> bool:
        return c.transaction is not None and c.transaction.accepted

    def _can_start(self, c: Connector) -> bool:
        return self._why_not(c) is None

    def _why_not(self, c: Connector) -> str | None:
        if not c.operative:
            return "connector unavailable"
        if c.hard_fault:
            return c.hard_fault
        if Device.METER in c.faults and self.settings.require_meter:
            return "energy meter not answering"
        if c.transaction is not None:
            return "a transaction is running"
        if self.going_down is not None:
            return self.going_down
        if self.maintenance is not None:
            return self.maintenance
        return None

    def _connector_for_new_session(self, id_tag: str) -> Connector | None:
        """Plugged-in connectors waiting for a card first (TC_003), then free ones (TC_004_1)."""
        candidates = [c for c in self.connectors.values()
                      if c.phase in (Phase.IDLE, Phase.FINISHING) and self._can_start(c)
                      and self._reservation_may_admit(c, id_tag)]
        # The tag's own reservation first, then plugged-in connectors, then free ones.
        for c in candidates:
            r = self._reservation_on(c)
            if r is not None and r.id_tag == id_tag:
                return c
        for c in candidates:
            if c.plugged:
                return c
        return candidates[0] if candidates else None
