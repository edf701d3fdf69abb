"""The bench central system's OCPP 2.0.1 side (subprotocol ``ocpp2.0.1``).

:class:`evcp.bench.csms.CentralSystem` offers ``ocpp1.6`` and ``ocpp2.0.1`` in the websocket
handshake and takes the first one the charging station lists; a 2.0.1 connection is answered
by :class:`CentralSystemStation`. Everything else is shared with 1.6: the server, the policy
(BootNotification answers, which idTokens are accepted: ``authorize_overrides`` such as
``{"TAG": "Blocked"}`` refuse a token, ``start_overrides`` only in TransactionEvent Started),
the chargers and anomalies of the :class:`~evcp.bench.csms.Ledger`, the message log and the
control API (``POST /call`` sends any OCPP 2.0.1 request to a 2.0.1 station, e.g.
``{"cp": "CP-1", "action": "RequestStartTransaction", "payload": {"idToken": {...},
"remoteStartId": 1}}``).

Every request the station sends is checked against the ``ocpp`` package's OCPP 2.0.1 JSON
schemas: a violation is answered with the library's CALLERROR (FormatViolation,
OccurrenceConstraintViolation, ...) and recorded as a ``schema_violation`` anomaly.

``GET /transactions`` lists, after the 1.6 transactions, one object per 2.0.1 transactionId
(snake_case, :meth:`Transaction201.to_dict`)::

    {"protocol": "2.0.1", "transaction_id": "<the station's string>", "cp", "evse_id",
     "connector_id", "id_token": {"id_token", "type"} | null, "id_token_status": str | null,
     "remote_start_id": int | null, "started": bool, "ended": bool, "open": bool,
     "started_at": "<timestamp of the Started event>" | null, "ended_at": ... | null,
     "stopped_reason": str | null, "charging_state": str | null, "last_seq_no": int | null,
     "seq_nos": [int, ...] (in arrival order), "events": [{"seq_no", "event_type",
     "trigger_reason", "timestamp", "offline", "charging_state", "stopped_reason",
     "meter_value", "received_at"}, ...], "energy_wh": number | null}

``energy_wh`` is the last minus the first Energy.Active.Import.Register (Wh or kWh) reported
in the transaction's events. Anomalies of a transaction (OCPP 2.0.1 Part 2 E: seqNo starts at
0 and increases by one per TransactionEventRequest of the transaction): ``seq_no_gap``
(numbers skipped, ``missing``), ``seq_no_duplicate`` (a number again with different content;
the same event again is a retransmission, counted in ``retransmitted_events``),
``seq_no_out_of_order``, ``event_before_started``, ``event_after_ended``, ``started_twice``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ocpp.v201.call
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from evcp.bench.csms import MAX_CALL_TIMEOUT_S, Ledger, StrayAnswersDropped, _library_logger, utc_now_iso

if TYPE_CHECKING:
    from evcp.bench.csms import RecordingConnection

SUBPROTOCOL = "ocpp2.0.1"
OCPP_VERSION = "2.0.1"
ENERGY_REGISTER = "Energy.Active.Import.Register"
EVENT_KEYS = ("event_type", "timestamp", "trigger_reason", "seq_no", "offline", "transaction_info",
              "id_token", "evse", "meter_value", "remote_start_id", "number_of_phases_used",
              "cable_max_current", "reservation_id")
"""The TransactionEventRequest fields that make two events with one seqNo the same event."""


@dataclass
class Transaction201:
    """One OCPP 2.0.1 transaction (a transactionId of one station) as the CSMS saw it."""

    transaction_id: str
    cp: str
    evse_id: int | None = None
    connector_id: int | None = None
    id_token: dict[str, Any] | None = None
    id_token_status: str | None = None
    remote_start_id: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    stopped_reason: str | None = None
    charging_state: str | None = None
    seq_nos: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    retransmitted_events: int = 0
    _by_seq_no: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def started(self) -> bool:
        return any(event["event_type"] == "Started" for event in self.events)

    @property
    def ended(self) -> bool:
        return any(event["event_type"] == "Ended" for event in self.events)

    @property
    def last_seq_no(self) -> int | None:
        return max(self.seq_nos) if self.seq_nos else None

    @property
    def energy_wh(self) -> float | None:
        readings = [wh for event in self.events for wh in _energy_readings(event["meter_value"])]
        return readings[-1] - readings[0] if readings else None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}
        return {"protocol": OCPP_VERSION, **data, "started": self.started, "ended": self.ended,
                "open": not self.ended, "last_seq_no": self.last_seq_no, "energy_wh": self.energy_wh}


def _energy_readings(meter_values: list[dict[str, Any]] | None) -> list[float]:
    """Energy.Active.Import.Register values in Wh, in the order of ``meter_values`` (snake_case)."""
    readings = []
    for meter_value in meter_values or []:
        for sample in meter_value.get("sampled_value", []):
            if sample.get("measurand", ENERGY_REGISTER) != ENERGY_REGISTER or sample.get("phase"):
                continue
            multiplier = 1000.0 if (sample.get("unit_of_measure") or {}).get("unit") == "kWh" else 1.0
            exponent = (sample.get("unit_of_measure") or {}).get("multiplier", 0)
            readings.append(float(sample["value"]) * multiplier * 10 ** exponent)
    return readings


class Ledger201:
    """The OCPP 2.0.1 records beside the shared :class:`Ledger` (policy, chargers, anomalies)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.transactions: dict[tuple[str, str], Transaction201] = {}

    @property
    def policy(self):
        return self.ledger.policy

    def id_token_info(self, id_token: str, status: str) -> dict[str, Any]:
        """IdTokenInfoType (snake_case) with ``status`` and the token's group (``parent_id_tags``)."""
        info: dict[str, Any] = {"status": status}
        parent = self.policy.parent_id_tags.get(id_token)
        if parent is not None:
            info["group_id_token"] = {"id_token": parent, "type": "Central"}
        return info

    def authorize(self, cp_id: str, id_token: dict[str, Any]) -> dict[str, Any]:
        return self.id_token_info(id_token["id_token"], self.policy.authorize_status(id_token["id_token"]))

    def connector_status(self, cp_id: str, evse_id: int, connector_id: int, details: dict[str, Any]) -> None:
        charger = self.ledger.charger(cp_id)
        charger.evse_connectors[f"{evse_id}/{connector_id}"] = {"received_at": utc_now_iso(), **details}

    def meter_values(self, cp_id: str, evse_id: int, meter_value: list) -> None:
        self.ledger.charger(cp_id).meter_values_outside_transactions.append(
            {"received_at": utc_now_iso(), "evse_id": evse_id, "meter_value": meter_value})

    def report(self, cp_id: str, details: dict[str, Any]) -> None:
        self.ledger.charger(cp_id).reports.append({"received_at": utc_now_iso(), **details})

    def charging_profiles(self, cp_id: str, details: dict[str, Any]) -> None:
        self.ledger.charger(cp_id).charging_profile_reports.append({"received_at": utc_now_iso(), **details})

    def transaction_event(self, cp_id: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """Record one TransactionEventRequest (snake_case); the idTokenInfo to answer, if any."""
        info = event["transaction_info"]
        key = (cp_id, info["transaction_id"])
        transaction = self.transactions.get(key)
        if transaction is None:
            transaction = self.transactions[key] = Transaction201(info["transaction_id"], cp_id)
        self._check_sequence(transaction, event)
        self._record(transaction, event)
        token = event.get("id_token")
        if not token:
            return None
        if event["event_type"] == "Started":
            status = self.policy.start_status(token["id_token"])
        else:
            status = self.policy.authorize_status(token["id_token"])
        if transaction.id_token is None or transaction.id_token.get("id_token") == token["id_token"]:
            transaction.id_token, transaction.id_token_status = token, status
        return self.id_token_info(token["id_token"], status)

    def _check_sequence(self, transaction: Transaction201, event: dict[str, Any]) -> None:
        anomaly = self.ledger.record_anomaly
        cp_id, tx_id, seq_no, kind = transaction.cp, transaction.transaction_id, event["seq_no"], event["event_type"]
        if seq_no in transaction._by_seq_no:
            return  # a retransmission or a duplicate: see _record
        if kind == "Started" and transaction.started:
            anomaly(cp_id, "started_twice", f"transaction {tx_id} Started again (seqNo {seq_no})",
                    transaction_id=tx_id, seq_no=seq_no)
        elif kind != "Started" and not transaction.started and not transaction.events:
            anomaly(cp_id, "event_before_started", f"{kind} for transaction {tx_id} not Started (seqNo {seq_no})",
                    transaction_id=tx_id, seq_no=seq_no)
        if transaction.ended:
            anomaly(cp_id, "event_after_ended", f"{kind} for transaction {tx_id} after its Ended (seqNo {seq_no})",
                    transaction_id=tx_id, seq_no=seq_no)
        expected = 0 if transaction.last_seq_no is None else transaction.last_seq_no + 1
        if seq_no > expected:
            missing = [n for n in range(expected, seq_no) if n not in transaction._by_seq_no]
            anomaly(cp_id, "seq_no_gap", f"transaction {tx_id}: seqNo {seq_no} after {transaction.last_seq_no}",
                    transaction_id=tx_id, seq_no=seq_no, missing=missing)
        elif seq_no < expected:
            anomaly(cp_id, "seq_no_out_of_order",
                    f"transaction {tx_id}: seqNo {seq_no} arrived after {transaction.last_seq_no}",
                    transaction_id=tx_id, seq_no=seq_no)

    def _record(self, transaction: Transaction201, event: dict[str, Any]) -> None:
        seq_no = event["seq_no"]
        content = {key: event.get(key) for key in EVENT_KEYS}
        previous = transaction._by_seq_no.get(seq_no)
        if previous is not None:
            if previous == content:
                # Its answer was lost and the station sent it again (OCPP-J §4.1.2): harmless.
                transaction.retransmitted_events += 1
            else:
                self.ledger.record_anomaly(
                    transaction.cp, "seq_no_duplicate",
                    f"transaction {transaction.transaction_id}: seqNo {seq_no} again with other content",
                    transaction_id=transaction.transaction_id, seq_no=seq_no)
            return
        transaction._by_seq_no[seq_no] = content
        transaction.seq_nos.append(seq_no)
        info = event["transaction_info"]
        transaction.events.append({
            "seq_no": seq_no, "event_type": event["event_type"], "trigger_reason": event["trigger_reason"],
            "timestamp": event["timestamp"], "offline": event.get("offline", False),
            "charging_state": info.get("charging_state"), "stopped_reason": info.get("stopped_reason"),
            "meter_value": event.get("meter_value") or [], "received_at": utc_now_iso(),
        })
        evse = event.get("evse") or {}
        transaction.evse_id = evse.get("id", transaction.evse_id)
        transaction.connector_id = evse.get("connector_id", transaction.connector_id)
        if event.get("remote_start_id") is not None:
            transaction.remote_start_id = event["remote_start_id"]
        if info.get("remote_start_id") is not None:
            transaction.remote_start_id = info["remote_start_id"]
        if info.get("charging_state") is not None:
            transaction.charging_state = info["charging_state"]
        if event["event_type"] == "Started":
            transaction.started_at = event["timestamp"]
        elif event["event_type"] == "Ended":
            transaction.ended_at = event["timestamp"]
            transaction.stopped_reason = info.get("stopped_reason", "Local")  # Part 2 E: absent means Local


class CentralSystemStation(StrayAnswersDropped, ChargePoint):
    """Answers one OCPP 2.0.1 charging station's requests from the :class:`Ledger201`."""

    calls = ocpp.v201.call
    ocpp_version = OCPP_VERSION

    def __init__(self, cp_id: str, connection: "RecordingConnection", ledger201: Ledger201):
        super().__init__(cp_id, connection, response_timeout=MAX_CALL_TIMEOUT_S, logger=_library_logger)
        self._ledger201 = ledger201
        self._ledger = ledger201.ledger

    async def _handle_call(self, msg):
        """``policy.call_errors`` as in 1.6; a request the 2.0.1 schemas reject is an anomaly."""
        from ocpp.exceptions import InternalError

        remaining = self._ledger.policy.call_errors.get(msg.action, 0)
        if remaining > 0:
            self._ledger.policy.call_errors[msg.action] = remaining - 1
            raise InternalError(details={"cause": f"scripted failure of {msg.action} (policy.call_errors)"})
        try:
            return await super()._handle_call(msg)
        except OCPPError as error:
            if msg.action in self.route_map:
                self._ledger.record_anomaly(self.id, "schema_violation",
                                            f"{msg.action}: {error.code}: {error.description}",
                                            action=msg.action, code=error.code, details=error.details)
            raise

    @on(Action.boot_notification)
    def on_boot_notification(self, charging_station, reason, **extra):
        charger = self._ledger.charger(self.id)
        charger.ocpp_version = OCPP_VERSION
        response = self._ledger.boot(self.id, {"charging_station": charging_station, "reason": reason, **extra})
        return call_result.BootNotification(current_time=self._ledger.policy.current_time(),
                                            interval=response.interval, status=response.status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **_):
        self._ledger.heartbeat(self.id)
        return call_result.Heartbeat(current_time=self._ledger.policy.current_time())

    @on(Action.status_notification)
    def on_status_notification(self, evse_id, connector_id, **details):
        self._ledger201.connector_status(self.id, evse_id, connector_id, details)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token, **_):
        return call_result.Authorize(id_token_info=self._ledger201.authorize(self.id, id_token))

    @on(Action.transaction_event)
    def on_transaction_event(self, **event):
        id_token_info = self._ledger201.transaction_event(self.id, event)
        return call_result.TransactionEvent(id_token_info=id_token_info)

    @on(Action.meter_values)
    def on_meter_values(self, evse_id, meter_value, **_):
        self._ledger201.meter_values(self.id, evse_id, meter_value)
        return call_result.MeterValues()

    @on(Action.notify_report)
    def on_notify_report(self, **details):
        self._ledger201.report(self.id, details)
        return call_result.NotifyReport()

    @on(Action.report_charging_profiles)
    def on_report_charging_profiles(self, **details):
        self._ledger201.charging_profiles(self.id, details)
        return call_result.ReportChargingProfiles()

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **details):
        self._ledger.security_event(self.id, details)
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, status, **_):
        self._ledger.firmware_status(self.id, status)
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, status, request_id=None, **_):
        self._ledger.log_status(self.id, status, request_id)
        return call_result.LogStatusNotification()

    @on(Action.notify_event)
    def on_notify_event(self, **details):
        self._ledger.charger(self.id).events.append({"received_at": utc_now_iso(), **details})
        return call_result.NotifyEvent()

    @on(Action.reservation_status_update)
    def on_reservation_status_update(self, **_):
        return call_result.ReservationStatusUpdate()

    @on(Action.data_transfer)
    def on_data_transfer(self, **details):
        self._ledger.data_transfer(self.id, details)
        return call_result.DataTransfer(status="UnknownVendorId")
