"""OCPP 2.0.1 transactions (Part 2 "E. Transactions") over the core's sessions.

The core decides when energy may flow; this module decides when a 2.0.1 transaction starts and
ends, from the configured TxStartPoint / TxStopPoint (Part 2 §2.6, E01/E06), and turns each
change into a TransactionEvent queued in the durable outbox (``evcp.ocpp.outbox.Outbox``,
shared with 1.6: delivered in order, kept across restarts):

* a transactionId is a UUID made here; seqNo starts at 0 and grows by one per event of the
  transaction, without gaps, across restarts (E.FR: seqNo);
* each event keeps the time it happened (``timestamp``) and ``offline`` when the CSMS could not
  be reached at that moment;
* start points (the first one reached starts it): EVConnected (the plug), Authorized (the card
  or remote start accepted, before the plug too: E01/E02, then an Updated CablePluggedIn when the
  cable comes), PowerPathClosed (the contactor closed), EnergyTransfer (energy flows: the EV
  draws through the closed contactor). Stop points: the transaction ends when one of them stops
  being true (PowerPathClosed: the contactor opens; EnergyTransfer: the EV stops drawing; the
  core's transaction then ends too); with TxStopPoint EVConnected alone it lasts until the cable
  is unplugged;
* meter values (J02): the Started carries the TxStartedMeasurands (Transaction.Begin), the Ended
  the readings kept for it during the transaction, then the TxEndedMeasurands (Transaction.End).

The open transactions are a stored document, written after each event is queued (the queue is
committed first): after a crash ``recover`` sees them, and the queued events, and ends each one
with stoppedReason PowerLoss and the next seqNo (E.FR: "transaction after power loss").
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable

from evcp.core.model import StopReason
from evcp.ocpp.outbox import latest_timestamp
from evcp.timestamps import timestamp

if TYPE_CHECKING:
    from evcp.ocpp.outbox import Outbox
    from evcp.storage import StateStore, StoredTransaction

log = logging.getLogger("evcp.ocpp")

ACTION = "TransactionEvent"
OPEN_TRANSACTIONS = "ocpp201-transactions"
"""Name of the stored document of open transactions."""

STOP_REASONS: dict[StopReason, tuple[str, str]] = {
    # core reason -> (triggerReason, stoppedReason), Part 2 E06 and ReasonEnumType
    StopReason.LOCAL: ("StopAuthorized", "Local"),
    StopReason.REMOTE: ("RemoteStop", "Remote"),
    StopReason.EV_DISCONNECTED: ("EVCommunicationLost", "EVDisconnected"),
    StopReason.DEAUTHORIZED: ("Deauthorized", "DeAuthorized"),
    StopReason.HARD_RESET: ("ResetCommand", "ImmediateReset"),
    StopReason.SOFT_RESET: ("ResetCommand", "ImmediateReset"),
    StopReason.POWER_LOSS: ("AbnormalCondition", "PowerLoss"),
    StopReason.REBOOT: ("AbnormalCondition", "Reboot"),
    StopReason.UNLOCK_COMMAND: ("UnlockCommand", "Other"),
    StopReason.EMERGENCY_STOP: ("AbnormalCondition", "EmergencyStop"),
    StopReason.OTHER: ("AbnormalCondition", "Other"),
    StopReason.TIMEOUT: ("EVConnectTimeout", "Timeout"),
}
ALWAYS_ENDS = {StopReason.HARD_RESET, StopReason.SOFT_RESET, StopReason.POWER_LOSS, StopReason.REBOOT,
               StopReason.EV_DISCONNECTED}
"""Stops that end the transaction whatever TxStopPoint says: the station is going down, or the EV left."""

CHARGING_STATES = {"Charging": "Charging", "SuspendedEV": "SuspendedEV", "SuspendedEVSE": "SuspendedEVSE"}
"""Core connector status -> ChargingStateEnumType; any other plugged status is EVConnected."""


def charging_state_of(status: str, plugged: bool) -> str:
    """ChargingStateEnumType of an EVSE from the core's connector status: Idle without an EV."""
    return CHARGING_STATES.get(status, "EVConnected") if plugged else "Idle"


def id_token_for(id_tag: str, kind: str | None = None) -> dict[str, str]:
    """IdTokenType of an id tag: an RFID UID (4, 7 or 10 bytes in hex) is ISO14443; else the
    type the CSMS gave (RequestStartTransaction), else Local."""
    if kind:
        return {"idToken": id_tag, "type": kind}
    is_uid = len(id_tag) in (8, 14, 20) and all(ch in "0123456789abcdefABCDEF" for ch in id_tag)
    return {"idToken": id_tag, "type": "ISO14443" if is_uid else "Local"}


@dataclass
class OpenTransaction:
    transaction_id: str
    evse: int
    seq_next: int = 0
    local_id: int | None = None
    """The core's transaction, while it runs (it may end before the 2.0.1 transaction does)."""
    started: bool = False
    """The Started event was queued."""
    id_token: dict[str, str] | None = None
    remote_start_id: int | None = None
    reservation_id: int | None = None
    charging_state: str = "EVConnected"
    stopped_reason: str | None = None
    """The first reason the transaction was stopped for, while it waits for its stop point."""
    pending: dict[str, Any] = field(default_factory=dict)
    """Fields for the Started event: the idToken of an authorization made before the start point."""
    power_path_closed: bool = False
    energy_flowing: bool = False
    granted: bool = False
    """``id_token`` was authorized and the core's transaction waits for the EV (``authorization_granted``)."""
    refused: str | None = None
    """The idTokenInfo status the CSMS answered for the id token while it waited for the EV (Part 2
    E05): the core's transaction, when it begins, is refused with it."""
    end_samples: list[dict[str, Any]] = field(default_factory=list)
    """MeterValueType readings taken for the Ended event (TxEndedInterval, Sample.Periodic, and
    AlignedDataCtrlr.TxEndedInterval, Sample.Clock: Part 2 J02), oldest first."""
    end_samples_dropped: int = 0
    last_event_at: float | None = None
    """When its latest event (Started, Updated) happened: its PowerLoss Ended is never stamped
    earlier (``recover``)."""

    @classmethod
    def from_saved(cls, item: dict[str, Any]) -> "OpenTransaction":
        """A stored transaction; fields this version no longer keeps are left out."""
        return cls(**{name: value for name, value in item.items() if name in _FIELDS})


_FIELDS = {f.name for f in fields(OpenTransaction)}
MAX_END_SAMPLES = 100
"""Most readings kept for one Ended event (each is one MeterValueType); later ones are dropped,
so that a long transaction with a short TxEndedInterval cannot outgrow the message and the store."""


@dataclass
class Measurands:
    """The configured measurands (Part 2 J02): SampledDataCtrlr.TxStartedMeasurands,
    TxUpdatedMeasurands, TxEndedMeasurands; AlignedDataCtrlr.Measurands, TxEndedMeasurands."""

    started: list[str]
    updated: list[str]
    ended: list[str]
    aligned: list[str]
    aligned_ended: list[str]


MeterReader = Callable[[int, list[str], str, float], "dict[str, Any] | None"]
"""(evse, measurands, context, at) -> the MeterValueType of the EVSE's meter now, None before its
first reading."""


class Transactions:
    """The open 2.0.1 transactions, one per EVSE at most."""

    def __init__(self, outbox: "Outbox", store: "StateStore | None",
                 start_points: Callable[[], list[str]], stop_points: Callable[[], list[str]],
                 measurands: Callable[[], Measurands], read_meter: MeterReader,
                 new_id: Callable[[], str] = lambda: str(uuid.uuid4())):
        self.outbox = outbox
        self.store = store
        self._start_points = start_points
        self._stop_points = stop_points
        self._measurands = measurands
        self._read_meter = read_meter
        self._new_id = new_id
        self.by_evse: dict[int, OpenTransaction] = {}
        saved = store.load_document(OPEN_TRANSACTIONS) if store is not None else None
        for item in (saved or {}).values():
            tx = OpenTransaction.from_saved(item)
            self.by_evse[tx.evse] = tx
        self._checkpointed = self._durable_facts()

    # ----------------------------------------------------------------- queries

    def of_local(self, local_id: int | None) -> OpenTransaction | None:
        return next((tx for tx in self.by_evse.values() if local_id is not None and tx.local_id == local_id), None)

    def with_token(self, id_token: dict[str, str]) -> OpenTransaction | None:
        """The open transaction authorized with ``id_token``."""
        return next((tx for tx in self.by_evse.values() if tx.id_token == id_token), None)

    def find(self, transaction_id: str) -> OpenTransaction | None:
        return next((tx for tx in self.by_evse.values() if tx.transaction_id == transaction_id), None)

    # ----------------------------------------------------------------- facts

    def ev_connected(self, evse: int, at: float, online: bool) -> None:
        """The cable was plugged in (TxStartPoint EVConnected: the transaction starts); after an
        authorization the transaction hears of it (E02: Updated CablePluggedIn)."""
        tx = self.by_evse.get(evse)
        if tx is not None:
            tx.charging_state = "EVConnected"
            if tx.started:
                self._event(tx, "Updated", "CablePluggedIn", at, online)
            elif "EVConnected" in self._start_points():
                pending, tx.pending = tx.pending, {}
                self._started(tx, "CablePluggedIn", at, online, pending)
            else:
                self._save()
            return
        if "EVConnected" not in self._start_points():
            return
        self._started(self._open(evse), "CablePluggedIn", at, online)

    def ev_disconnected(self, evse: int, at: float, online: bool) -> None:
        """The cable was unplugged: the transaction ends if the core's has ended already."""
        tx = self.by_evse.get(evse)
        if tx is None or tx.local_id is not None:
            return
        if not tx.started:
            self._forget(tx)
            return
        tx.charging_state = "Idle"
        self._ended(tx, "EVCommunicationLost", tx.stopped_reason or "EVDisconnected", at, online)

    def authorization_granted(self, evse: int, id_token: dict[str, str], trigger: str,
                              remote_start_id: int | None, at: float, online: bool, plugged: bool) -> None:
        """The id token was accepted for the EVSE, but the core's transaction waits for the EV
        (TxStartPoint Authorized: the transaction starts now, E01/E02; F01 RemoteStart)."""
        tx = self.by_evse.get(evse)
        if tx is None:
            tx = self._open(evse)
            tx.charging_state = "EVConnected" if plugged else "Idle"
        tx.id_token, tx.granted, tx.refused = id_token, True, None
        tx.remote_start_id = remote_start_id or tx.remote_start_id
        extra: dict[str, Any] = {"idToken": id_token}
        if tx.started:
            self._event(tx, "Updated", trigger, at, online, extra=extra)
        elif "Authorized" in self._start_points():
            self._started(tx, trigger, at, online, extra)
        else:
            tx.pending = extra
            self._save()

    def authorization_ended(self, evse: int, id_tag: str, reason: StopReason, at: float, online: bool,
                            plugged: bool) -> None:
        """An authorization of the EVSE ended before the core's transaction began (no EV within
        EVConnectionTimeOut, the card presented again, ...): a transaction it started ends, as
        ``core_stopped`` would end it."""
        tx = self.by_evse.get(evse)
        if tx is None or not tx.granted or tx.id_token is None or tx.id_token["idToken"] != id_tag:
            return
        tx.granted = False
        if not tx.started:
            self._forget(tx)
            return
        self._stop(tx, reason, None, at, online, plugged)

    def authorized(self, evse: int, local_id: int, id_token: dict[str, str], trigger: str,
                   remote_start_id: int | None, reservation_id: int | None, at: float, online: bool,
                   needs_answer: bool = False) -> OpenTransaction:
        """The core started its transaction: the id was accepted and the EV is plugged in.
        ``needs_answer``: the CSMS has not accepted the id token yet, so its event goes out now
        whatever the start point (the TransactionEventResponse's idTokenInfo decides)."""
        tx = self.by_evse.get(evse) or self._open(evse)
        reported = tx.granted and tx.started and tx.id_token == id_token  # by ``authorization_granted``
        if not (tx.granted and tx.id_token == id_token):
            tx.refused = None  # a verdict on another authorization
        tx.granted = False
        tx.local_id, tx.id_token = local_id, id_token
        tx.remote_start_id = remote_start_id or tx.remote_start_id
        tx.reservation_id = reservation_id
        tx.stopped_reason = None
        extra: dict[str, Any] = {"idToken": id_token}
        if reservation_id is not None:
            extra["reservationId"] = reservation_id
        points = self._start_points()
        if reported and not needs_answer:
            self._save()
        elif tx.started:
            self._event(tx, "Updated", trigger, at, online, extra=extra)
        elif needs_answer or "Authorized" in points or "EVConnected" in points:
            self._started(tx, trigger, at, online, extra)
        else:
            tx.pending = extra  # Started waits for the power path (PowerPathClosed, EnergyTransfer)
            self._save()
        return tx

    def charging_state(self, evse: int, state: str, at: float, online: bool) -> None:
        """The EVSE's ChargingStateEnumType changed (``charging_state_of`` the core's status)."""
        tx = self.by_evse.get(evse)
        if tx is None or state == tx.charging_state:
            return
        tx.charging_state = state
        if tx.started:
            self._event(tx, "Updated", "ChargingStateChanged", at, online)
        else:
            self._save()

    def power_delivery(self, evse: int, path_closed: bool, flowing: bool, state: str, by_ev: bool, at: float,
                       online: bool, final_reading: Callable[[], asyncio.Future] | None = None) -> int | None:
        """The contactor closed or opened, energy started or stopped flowing (``state``: the
        chargingState now). TxStartPoint PowerPathClosed / EnergyTransfer: the transaction starts
        (E01). TxStopPoint PowerPathClosed / EnergyTransfer: it ends when what was true stops being
        so while the core's transaction runs (``by_ev``: the EV stopped it, stoppedReason
        StoppedByEV; ``final_reading`` starts the reading its Ended waits for); returns that core
        transaction's local id, which must end too."""
        tx = self.by_evse.get(evse)
        if tx is None:
            return None
        now = {"PowerPathClosed": path_closed, "EnergyTransfer": flowing}
        before = {"PowerPathClosed": tx.power_path_closed, "EnergyTransfer": tx.energy_flowing}
        tx.power_path_closed, tx.energy_flowing = path_closed, flowing
        if not tx.started:
            if any(now[point] for point in self._start_points() if point in now):
                tx.charging_state = state
                pending, tx.pending = tx.pending, {}
                self._started(tx, "ChargingStateChanged", at, online, pending)
            else:
                self._save()
            return None
        lost = [point for point in self._stop_points() if point in now and before[point] and not now[point]]
        if not lost or tx.local_id is None:
            self._save()
            return None
        local_id = tx.local_id
        tx.charging_state = state
        self._ended(tx, "ChargingStateChanged", "StoppedByEV" if by_ev else "Other", at, online,
                    final_reading=final_reading() if final_reading else None)
        return local_id

    def meter_values(self, evse: int, trigger: str, sample: dict[str, Any], at: float, online: bool) -> bool:
        """A periodic or clock-aligned reading of a running transaction; False if none runs."""
        tx = self.by_evse.get(evse)
        if tx is None or not tx.started:
            return False
        self._event(tx, "Updated", trigger, at, online, meter_value=[sample])
        return True

    def end_sample(self, evse: int, sample: dict[str, Any]) -> None:
        """A reading for the Ended event of the EVSE's running transaction (Part 2 J02)."""
        tx = self.by_evse.get(evse)
        if tx is None or not tx.started:
            return
        if len(tx.end_samples) >= MAX_END_SAMPLES:
            if not tx.end_samples_dropped:
                log.warning("EVSE %d: transaction %s keeps %d readings for its Ended event; later ones are dropped",
                            evse, tx.transaction_id, MAX_END_SAMPLES)
            tx.end_samples_dropped += 1
            return
        tx.end_samples.append(sample)
        self._save()

    def trigger(self, evse: int, sample: dict[str, Any] | None, at: float, online: bool) -> None:
        """TriggerMessage TransactionEvent (Part 2 F06): an Updated with triggerReason Trigger."""
        tx = self.by_evse.get(evse)
        if tx is not None and tx.started:
            self._event(tx, "Updated", "Trigger", at, online, meter_value=[sample] if sample else None)

    def core_stopped(self, evse: int, local_id: int, reason: StopReason, id_token: dict[str, str] | None,
                     at: float, online: bool, plugged: bool,
                     final_reading: Callable[[], asyncio.Future] | None = None) -> None:
        """The core ended its transaction (the contactor is open): the 2.0.1 transaction ends
        unless TxStopPoint is EVConnected alone and the cable is still in (then it ends at unplug);
        ``final_reading`` starts the reading its Ended waits for, only if it ends here."""
        tx = self.by_evse.get(evse)
        if tx is None or tx.local_id != local_id:
            return
        tx.local_id = None
        if not tx.started:
            self._forget(tx)  # the start point was never reached: no transaction at the CSMS
            return
        self._stop(tx, reason, id_token, at, online, plugged, final_reading)

    def end(self, tx: OpenTransaction, reason: StopReason, at: float, online: bool) -> None:
        """The CSMS ends a transaction the core does not run (before the card, or after it when the
        cable keeps it open): RequestStopTransaction (Remote), a reset (ImmediateReset)."""
        if not tx.started:
            self._forget(tx)
            return
        trigger, stopped = STOP_REASONS[reason]
        self._ended(tx, trigger, tx.stopped_reason or stopped, at, online)

    # ----------------------------------------------------------------- events

    def _stop(self, tx: OpenTransaction, reason: StopReason, id_token: dict[str, str] | None, at: float,
              online: bool, plugged: bool, final_reading: Callable[[], asyncio.Future] | None = None) -> None:
        """The authorization of a started transaction ended: Ended, unless TxStopPoint is
        EVConnected alone and the cable is still in (then an Updated, and it ends at unplug)."""
        trigger, stopped = STOP_REASONS.get(reason, ("AbnormalCondition", "Other"))
        extra = {"idToken": id_token} if id_token else {}
        points = set(self._stop_points())
        if reason not in ALWAYS_ENDS and plugged and points and points <= {"EVConnected"}:
            tx.stopped_reason = tx.stopped_reason or stopped
            tx.charging_state = "EVConnected"
            self._event(tx, "Updated", trigger, at, online, extra=extra)
            return
        tx.charging_state = "EVConnected" if plugged else "Idle"
        self._ended(tx, trigger, stopped, at, online, extra, final_reading() if final_reading else None)

    def _open(self, evse: int) -> OpenTransaction:
        tx = OpenTransaction(self._new_id(), evse)
        self.by_evse[evse] = tx
        return tx

    def _started(self, tx: OpenTransaction, trigger: str, at: float, online: bool,
                 extra: dict[str, Any] | None = None) -> None:
        """Started with the TxStartedMeasurands at this moment (context Transaction.Begin, J02)."""
        tx.started = True
        begin = self._read_meter(tx.evse, self._measurands().started, "Transaction.Begin", at)
        self._event(tx, "Started", trigger, at, online, meter_value=[begin] if begin else None, extra=extra)

    def _ended(self, tx: OpenTransaction, trigger: str, stopped: str, at: float, online: bool,
               extra: dict[str, Any] | None = None, final_reading: asyncio.Future | None = None) -> None:
        """Ended with the readings kept for it and the TxEndedMeasurands at this moment (context
        Transaction.End, J02)."""
        end = self._read_meter(tx.evse, self._measurands().ended, "Transaction.End", at)
        readings = tx.end_samples + ([end] if end else [])
        del self.by_evse[tx.evse]
        self._event(tx, "Ended", trigger, at, online, meter_value=readings, extra=extra, stopped_reason=stopped,
                    final_reading=final_reading)

    def _forget(self, tx: OpenTransaction) -> None:
        self.by_evse.pop(tx.evse, None)
        self._save()

    def _event(self, tx: OpenTransaction, event_type: str, trigger: str, at: float, online: bool,
               meter_value: list | None = None, extra: dict[str, Any] | None = None,
               stopped_reason: str | None = None, final_reading: asyncio.Future | None = None) -> None:
        info: dict[str, Any] = {"transactionId": tx.transaction_id, "chargingState": tx.charging_state}
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        if tx.remote_start_id is not None and (event_type == "Started" or trigger == "RemoteStart"):
            info["remoteStartId"] = tx.remote_start_id
        payload: dict[str, Any] = {
            "eventType": event_type, "timestamp": timestamp(at), "triggerReason": trigger,
            "seqNo": tx.seq_next, "transactionInfo": info,
        }
        if event_type == "Started":
            payload["evse"] = {"id": tx.evse, "connectorId": 1}
        if not online:
            payload["offline"] = True
        if meter_value:
            payload["meterValue"] = meter_value
        payload.update(extra or {})
        tx.seq_next += 1
        tx.last_event_at = at if tx.last_event_at is None else max(tx.last_event_at, at)
        # The event and the seqNo after it in one commit (and at most one checkpoint).
        with self.store.atomic() if self.store is not None else nullcontext():
            self.outbox.put(ACTION, payload, tx.local_id, final_reading=final_reading)
            self._save()

    def _save(self) -> None:
        """Saved at every event and kept meter sample, and checkpointed (so that a damaged
        write-ahead log cannot take it back) whenever a transaction opens, starts, ends, is tied
        to the core's or sent an event: the seqNo ``recover`` gives the PowerLoss Ended is then
        never one the CSMS already has. A kept sample alone is not checkpointed (``recover``
        ends without it at worst)."""
        if self.store is not None:
            facts = self._durable_facts()
            self.store.save_document(OPEN_TRANSACTIONS, {str(e): asdict(tx) for e, tx in self.by_evse.items()},
                                     checkpoint=facts != self._checkpointed)
            self._checkpointed = facts

    def _durable_facts(self) -> set[tuple[str, int | None, bool, int]]:
        return {(tx.transaction_id, tx.local_id, tx.started, tx.seq_next) for tx in self.by_evse.values()}


def energy_value(energy_wh: float, context: str) -> dict[str, Any]:
    return {"value": round(energy_wh, 1), "context": context, "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"}}


def recover(store: "StateStore", energy_now: dict[int, float | None]) -> list[dict[str, Any]]:
    """After a crash or a power cut: end every transaction that was open with stoppedReason
    PowerLoss (Part 2 E.FR on power loss; OCTT TC_E_... "power loss"), the next seqNo, the meter's
    count (``energy_now``, else the last saved reading) and the time it was last seen running
    (``last_seen_open``).

    The open transactions are the stored document's plus any whose events are queued without an
    Ended (a crash between queueing and saving). The core's rows of those transactions are marked
    stopped, so nothing else stops them again. Returns the Ended payloads queued."""
    saved = store.load_document(OPEN_TRANSACTIONS) or {}
    open_txs = {item["transaction_id"]: OpenTransaction.from_saved(item) for item in saved.values()}
    ended: set[str] = set()
    last_seq: dict[str, int] = {}
    queued_evse: dict[str, int] = {}
    last_at: dict[str, float] = {}
    local_ids: dict[str, int] = {}
    for message in store.outbox_of(ACTION):
        info = message.payload.get("transactionInfo", {})
        tid = info.get("transactionId")
        last_seq[tid] = max(last_seq.get(tid, -1), message.payload.get("seqNo", -1))
        stamped = latest_timestamp(message.payload)
        if stamped is not None:
            last_at[tid] = max(last_at.get(tid, stamped), stamped)
        if message.local_id is not None:
            local_ids[tid] = message.local_id
        if "evse" in message.payload:
            queued_evse[tid] = message.payload["evse"]["id"]
        if message.payload.get("eventType") == "Ended":
            ended.add(tid)
    for tid, evse in queued_evse.items():
        if tid not in open_txs and tid not in ended:
            open_txs[tid] = OpenTransaction(tid, evse, started=True, local_id=local_ids.get(tid))
    rows = {row.local_id: row for row in store.open_transactions()}
    payloads = []
    for tid, tx in open_txs.items():
        if tx.local_id is not None and tx.local_id in rows:
            store.transaction_stopped(tx.local_id)
        if tid in ended or not tx.started:
            continue
        seq = max(tx.seq_next, last_seq.get(tid, -1) + 1)
        row = rows.get(tx.local_id) if tx.local_id is not None else None
        reading = store.last_reading(tx.evse)
        energy = energy_now.get(tx.evse)
        if energy is None:
            energy = reading[0] if reading else None
        stamp = timestamp(last_seen_open(tx, row, reading, last_at.get(tid)))
        payload: dict[str, Any] = {
            "eventType": "Ended", "timestamp": stamp, "triggerReason": "AbnormalCondition", "seqNo": seq,
            "offline": True,
            "transactionInfo": {"transactionId": tid, "chargingState": "Idle", "stoppedReason": "PowerLoss"},
        }
        readings = list(tx.end_samples)
        if energy is not None:
            readings.append({"timestamp": stamp, "sampledValue": [energy_value(energy, "Transaction.End")]})
        if readings:
            payload["meterValue"] = readings
        store.outbox_put(ACTION, payload, tx.local_id)
        payloads.append(payload)
        log.warning("EVSE %d: transaction %s was open when the station went down; ending it with PowerLoss "
                    "(seqNo %d)", tx.evse, tid, seq)
    store.save_document(OPEN_TRANSACTIONS, {})
    return payloads


def last_seen_open(tx: OpenTransaction, row: "StoredTransaction | None", reading: tuple[float, float] | None,
                   last_queued_at: float | None) -> float:
    """The time of a PowerLoss Ended: the last moment the station saw the transaction open.

    TransactionEventRequest.timestamp is when the event happened (Part 2, TransactionEventRequest);
    a PowerLoss end (E06, ReasonEnumType PowerLoss: "complete loss of power") happened when the
    power went, which nothing recorded: some time between the last evidence that the transaction
    was open and the next power-up. The latest evidence is taken: its events (Started, Updated,
    delivered or still queued, as the CSMS sees them once re-stamped), the readings kept for its
    Ended, the core's transaction (start, last reading) and the EVSE's last meter reading (one
    taken before the transaction opened is earlier than its events, so it does not count). The
    Ended so never comes before an event the CSMS has of it (with TxStartPoint PowerPathClosed
    the Started follows the core's start), and the outage, when no energy flowed, is not billed as
    charging time, as the power-up time would bill it. With no evidence at all (a document of an
    older version) the power-up time is the only one left that is not before the Started."""
    evidence = [tx.last_event_at, last_queued_at, reading[1] if reading else None]
    evidence += [latest_timestamp(sample) for sample in tx.end_samples]
    if row is not None:
        evidence += [row.started_at, row.last_reading_at]
    known = [moment for moment in evidence if moment is not None]
    return max(known) if known else time.time()
