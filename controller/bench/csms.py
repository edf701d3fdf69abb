"""An OCPP 1.6J and 2.0.1 central system for the bench and for integration tests.

It answers every charge-point-initiated 1.6 core message the way a real central system would,
records everything it receives and sends, and lets a test script it and inspect it over a small
HTTP control API. Run it as its own process::

    python -m evcp.bench.csms --listen 127.0.0.1:9000 --control 127.0.0.1:9001 [--tags A,B] [--ocpp-versions 1.6]

or embed it: ``system = CentralSystem(port=0, control_port=0); await system.start()``.

Charge points connect to ``ws://HOST:PORT/<any/prefix>/<charge point id>`` with the ``ocpp1.6``
subprotocol (or ``ocpp2.0.1``: ``evcp.bench.csms201``; ``--ocpp-versions 1.6`` makes a central
system that speaks 1.6 only, and each charger's record keeps the ``subprotocols_offered`` of its
handshakes). For the OCPP 1.6 security whitepaper's profiles it can also serve TLS (wss://,
``--tls-cert``/``--tls-key``), check client certificates (``--tls-client-ca``: a certificate
signed by that CA whose subject CN is the charge point id authenticates it, profile 3) and
check HTTP Basic passwords (``--basic-auth``, passwords per charge point set with
``POST /policy {"passwords": {"CP-1": "..."}}``, written as the AuthorizationKey is: the text,
or 32 to 40 hex digits for the bytes). A charge point that does not authenticate is refused
with HTTP 401 at the handshake. Control API (all bodies JSON; OCPP payloads in their wire form, camelCase; the
central system's own records in snake_case):

- ``GET /chargers`` -> ``{"chargers": [charger, ...]}``
- ``GET /transactions[?cp=ID]`` -> ``{"transactions": [transaction, ...]}``
- ``GET /anomalies`` -> ``{"anomalies": [anomaly, ...]}`` (unknown or duplicate stops, ...)
- ``GET /messages[?cp=ID][&since=N]`` -> ``{"messages": [frame, ...], "last_seq": N}``
- ``GET /policy`` and ``POST /policy {changes}`` -> the whole policy
- ``POST /call {"cp", "action", "payload", "timeout"}`` -> ``{"status": "result", "payload"}``
  or ``{"status": "error", "code", "description", "details"}``; 400 invalid payload, 404 charge
  point not connected, 502 connection lost or invalid answer, 504 no answer in time
- ``POST /disconnect {"cp"}`` -> ``{"disconnected": "ID"}``
- ``POST /raw {"cp", "frames": [text, ...]}`` -> ``{"last_seq": N}``: the frames are sent to
  the charge point as they are, valid OCPP-J or not (hostile-input tests), and recorded like
  any other; the charge point's answers show in ``/messages``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import itertools
import json
import logging
import re
import signal
import ssl
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import ocpp.messages
import ocpp.v16.call
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus, GenericStatus, RegistrationStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.frames import CloseCode

from aiohttp.web import Request, Response

from evcp.api.http import HttpError, HttpServer, ListenError, json_response, read_json_object
from evcp.cli import EX_UNAVAILABLE
from evcp.ocpp.trace import MASK, redact
from evcp.ocpp.security import basic_auth_password, parse_basic_authorization
from evcp.runtime.systemd import configure_logging

logger = logging.getLogger("evcp.bench.csms")
frame_logger = logging.getLogger("evcp.bench.csms.frames")

SUBPROTOCOL = "ocpp1.6"
SUBPROTOCOL_201 = "ocpp2.0.1"
"""Spoken by ``evcp.bench.csms201``; the charge point's order of preference decides."""
DEFAULT_HEARTBEAT_INTERVAL_S = 300
DEFAULT_CALL_TIMEOUT_S = 10.0
REPLACED_CLOSE_TIMEOUT_S = 1.0
"""How long the closing handshake of a connection replaced by a new one of its charge point may take."""
MAX_CALL_TIMEOUT_S = 300.0
CONTROL_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Room for ``POST /raw`` to carry frames up to the websocket's 1 MiB and beyond."""

AUTHORIZATION_STATUSES = frozenset(status.value for status in AuthorizationStatus)
REGISTRATION_STATUSES = frozenset(status.value for status in RegistrationStatus)


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a ``Z`` suffix."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Policy: how the central system answers


@dataclass(frozen=True)
class BootResponse:
    """One scripted BootNotification answer: ``status`` and its ``interval`` in seconds."""

    status: str
    interval: int

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "interval": self.interval}


@dataclass
class Policy:
    """Decides the answers to BootNotification, Authorize and StartTransaction.

    A tag's status is, in order: its override (``start_overrides`` for StartTransaction first,
    then ``authorize_overrides``), else Accepted if ``accept_all`` or the tag is in ``tags``,
    else Invalid. ``boot_responses`` is consumed one per BootNotification; once empty every
    boot is Accepted with ``heartbeat_interval``.
    """

    accept_all: bool = True
    tags: set[str] = field(default_factory=set)
    authorize_overrides: dict[str, str] = field(default_factory=dict)
    start_overrides: dict[str, str] = field(default_factory=dict)
    parent_id_tags: dict[str, str] = field(default_factory=dict)
    boot_responses: deque[BootResponse] = field(default_factory=deque)
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL_S
    accept_connections: bool = True
    """False simulates an outage: websocket handshakes are refused with 503."""
    clock_offset_s: float = 0.0
    """Shift of the currentTime this central system reports (to test chargers without an RTC)."""
    handshake_status: int = 0
    """Non-zero: refuse websocket handshakes with this HTTP status (e.g. 401 wrong password)."""
    call_errors: dict[str, int] = field(default_factory=dict)
    """Action -> how many of its next requests are answered with CALLERROR InternalError."""
    passwords: dict[str, str] = field(default_factory=dict)
    """Charge point id -> its HTTP Basic password (AuthorizationKey form), checked with --basic-auth."""

    def current_time(self) -> str:
        moment = datetime.now(timezone.utc) + timedelta(seconds=self.clock_offset_s)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def authorize_status(self, id_tag: str) -> str:
        if id_tag in self.authorize_overrides:
            return self.authorize_overrides[id_tag]
        if self.accept_all or id_tag in self.tags:
            return AuthorizationStatus.accepted.value
        return AuthorizationStatus.invalid.value

    def start_status(self, id_tag: str) -> str:
        return self.start_overrides.get(id_tag) or self.authorize_status(id_tag)

    def id_tag_info(self, id_tag: str, status: str) -> dict[str, str]:
        """An idTagInfo (in the library's snake_case) with ``status`` and the tag's parent."""
        info = {"status": status}
        if id_tag in self.parent_id_tags:
            info["parent_id_tag"] = self.parent_id_tags[id_tag]
        return info

    def next_boot_response(self) -> BootResponse:
        if self.boot_responses:
            return self.boot_responses.popleft()
        return BootResponse(RegistrationStatus.accepted.value, self.heartbeat_interval)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (keys as in :meth:`to_dict`) all or nothing.

        Raises ValueError naming the offending key when any change is invalid.
        """
        parsers: dict[str, Callable[[Any], Any]] = {
            "accept_all": _parse_bool,
            "tags": lambda value: set(_parse_str_list(value)),
            "authorize_overrides": _parse_status_map,
            "start_overrides": _parse_status_map,
            "parent_id_tags": _parse_str_map,
            "boot_responses": lambda value: deque(_parse_boot_responses(value)),
            "heartbeat_interval": _parse_positive_int,
            "accept_connections": _parse_bool,
            "call_errors": _parse_count_map,
            "handshake_status": _parse_http_status,
            "clock_offset_s": float,
            "passwords": _parse_str_map,
        }
        unknown = sorted(set(changes) - set(parsers))
        if unknown:
            raise ValueError(f"unknown policy keys {unknown}; known: {sorted(parsers)}")
        parsed = {}
        for key, value in changes.items():
            try:
                parsed[key] = parsers[key](value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{key}: {error}") from None
        for key, value in parsed.items():
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accept_all": self.accept_all,
            "tags": sorted(self.tags),
            "authorize_overrides": dict(self.authorize_overrides),
            "start_overrides": dict(self.start_overrides),
            "parent_id_tags": dict(self.parent_id_tags),
            "boot_responses": [response.to_dict() for response in self.boot_responses],
            "heartbeat_interval": self.heartbeat_interval,
            "accept_connections": self.accept_connections,
            "call_errors": dict(self.call_errors),
            "handshake_status": self.handshake_status,
            "clock_offset_s": self.clock_offset_s,
            "passwords": {cp_id: MASK for cp_id in sorted(self.passwords)},
        }


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false (got {value!r})")
    return value


def _parse_positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive integer (got {value!r})")
    return value


def _parse_str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"expected a list of strings (got {value!r})")
    return value


def _same_stop(first: Mapping[str, Any], again: Mapping[str, Any]) -> bool:
    keys = ("cp", "meter_stop", "timestamp", "reason", "id_tag")
    return all(first.get(k) == again.get(k) for k in keys)


def _parse_http_status(value: Any) -> int:
    if value in (0, None):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ValueError(f"expected 0 or an HTTP error status 400..599 (got {value!r})")
    return value


def _parse_count_map(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object of action -> count (got {value!r})")
    return {str(action): _parse_positive_int(count) for action, count in value.items()}


def _parse_str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise TypeError(f"expected an object of strings (got {value!r})")
    return dict(value)


def _parse_status_map(value: Any) -> dict[str, str]:
    statuses = _parse_str_map(value)
    for tag, status in statuses.items():
        if status not in AUTHORIZATION_STATUSES:
            raise ValueError(f"{tag}: {status!r} is not one of {sorted(AUTHORIZATION_STATUSES)}")
    return statuses


def _parse_boot_responses(value: Any) -> list[BootResponse]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of {{status, interval}} objects (got {value!r})")
    responses = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"status", "interval"}:
            raise ValueError(f"expected {{status, interval}} (got {item!r})")
        if item["status"] not in REGISTRATION_STATUSES:
            raise ValueError(
                f"status {item['status']!r} is not one of {sorted(REGISTRATION_STATUSES)}"
            )
        interval = item["interval"]
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
            raise ValueError(f"interval must be an integer >= 0 (got {interval!r})")
        responses.append(BootResponse(item["status"], interval))
    return responses


# --------------------------------------------------------------------------------------------
# Records: what the central system has seen


@dataclass
class Charger:
    """Everything known about one charge point id, kept across its connections."""

    id: str
    connected: bool = False
    connected_at: str | None = None
    disconnected_at: str | None = None
    connection_count: int = 0
    registration_status: str | None = None
    boot_count: int = 0
    last_boot: dict[str, Any] | None = None
    last_heartbeat: str | None = None
    connectors: dict[int, dict[str, Any]] = field(default_factory=dict)
    firmware_statuses: list[dict[str, Any]] = field(default_factory=list)
    diagnostics_statuses: list[dict[str, Any]] = field(default_factory=list)
    data_transfers: list[dict[str, Any]] = field(default_factory=list)
    meter_values_outside_transactions: list[dict[str, Any]] = field(default_factory=list)
    security_events: list[dict[str, Any]] = field(default_factory=list)
    """SecurityEventNotification.req payloads (security whitepaper), oldest first."""
    signed_firmware_statuses: list[dict[str, Any]] = field(default_factory=list)
    """SignedFirmwareStatusNotification.req (security whitepaper L01): {"received_at", "status", "request_id"}."""
    log_statuses: list[dict[str, Any]] = field(default_factory=list)
    """LogStatusNotification.req (security whitepaper N01): {"received_at", "status", "request_id"}."""
    certificate_signing_requests: list[dict[str, Any]] = field(default_factory=list)
    """SignCertificate.req (security whitepaper A02, A03): {"received_at", "csr"} with the CSR's PEM text."""
    authenticated_by: str | None = None
    """How the last accepted handshake authenticated: "basic", "client-certificate" or None."""
    refused_handshakes: list[dict[str, Any]] = field(default_factory=list)
    """Handshakes refused for their credentials: {"at", "status", "reason"}."""
    closes: list[dict[str, Any]] = field(default_factory=list)
    """How each connection ended, oldest first: {"at", "code", "reason"} of the close frame the
    charge point sent (its own closing or its echo of ours; code 1006: none came, the connection
    dropped)."""
    ocpp_version: str = "1.6"
    """The protocol of the last connection: "1.6" or "2.0.1" (``evcp.bench.csms201``)."""
    subprotocols_offered: list[str | None] = field(default_factory=list)
    """The Sec-WebSocket-Protocol header of each accepted handshake as the charge point sent it
    (its offer, in its order of preference, e.g. "ocpp2.0.1, ocpp1.6"), oldest first."""
    evse_connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """OCPP 2.0.1 StatusNotification per "evseId/connectorId", the last one of each."""
    reports: list[dict[str, Any]] = field(default_factory=list)
    """OCPP 2.0.1 NotifyReport payloads (snake_case), oldest first."""
    charging_profile_reports: list[dict[str, Any]] = field(default_factory=list)
    """OCPP 2.0.1 ReportChargingProfiles payloads (snake_case, K09), oldest first."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """OCPP 2.0.1 NotifyEvent payloads (snake_case), oldest first."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["connectors"] = {
            str(number): status for number, status in sorted(self.connectors.items())
        }
        return data


@dataclass
class Transaction:
    """One transaction as the central system saw it; ``stop`` is the first StopTransaction."""

    transaction_id: int
    cp: str
    connector_id: int
    id_tag: str
    id_tag_status: str
    meter_start: int
    timestamp: str
    reservation_id: int | None
    received_at: str
    stop: dict[str, Any] | None = None
    duplicate_stops: list[dict[str, Any]] = field(default_factory=list)
    """Second stops with different data: a billing bug."""
    retransmitted_stops: int = 0
    """The same stop received again (its answer was lost): harmless, billed once."""
    meter_values: list[dict[str, Any]] = field(default_factory=list)

    @property
    def energy_wh(self) -> int | None:
        """meterStop - meterStart of the first stop; None while the transaction is open."""
        return None if self.stop is None else self.stop["meter_stop"] - self.meter_start

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["open"] = self.stop is None
        data["energy_wh"] = self.energy_wh
        data["meter_values_count"] = len(self.meter_values)
        return data


class Ledger:
    """The central system's state and its answers, free of any I/O.

    Each method takes one received request (library snake_case arguments) and returns what the
    answer needs. Oddities a real central system would flag (a stop for an unknown or already
    stopped transaction, requests while Rejected) are answered normally and recorded as
    anomalies, so tests can assert on them.
    """

    def __init__(self, policy: Policy | None = None, first_transaction_id: int = 1):
        self.policy = policy or Policy()
        self.chargers: dict[str, Charger] = {}
        self.transactions: dict[int, Transaction] = {}
        self.anomalies: list[dict[str, Any]] = []
        self._transaction_ids = itertools.count(first_transaction_id)

    def charger(self, cp_id: str) -> Charger:
        if cp_id not in self.chargers:
            self.chargers[cp_id] = Charger(cp_id)
        return self.chargers[cp_id]

    def record_anomaly(self, cp_id: str, kind: str, detail: str, **data: Any) -> None:
        anomaly = {"seq": len(self.anomalies) + 1, "time": utc_now_iso(), "cp": cp_id,
                   "kind": kind, "detail": detail, **data}
        self.anomalies.append(anomaly)
        logger.warning("anomaly from %s: %s: %s", cp_id, kind, detail)

    def connected(self, cp_id: str) -> None:
        charger = self.charger(cp_id)
        charger.connected = True
        charger.connected_at = utc_now_iso()
        charger.connection_count += 1

    def disconnected(self, cp_id: str) -> None:
        charger = self.charger(cp_id)
        charger.connected = False
        charger.disconnected_at = utc_now_iso()

    def connection_closed(self, cp_id: str, code: int, reason: str) -> None:
        self.charger(cp_id).closes.append({"at": utc_now_iso(), "code": code, "reason": reason})

    def request_received(self, cp_id: str, action: str) -> None:
        """Note a request before it is handled; OCPP 1.6 §4.2 forbids any while Rejected."""
        charger = self.charger(cp_id)
        if action != Action.boot_notification.value and charger.registration_status == "Rejected":
            self.record_anomaly(
                cp_id, "request_while_rejected",
                f"{action} sent while the last BootNotification was Rejected", action=action,
            )

    def boot(self, cp_id: str, details: dict[str, Any]) -> BootResponse:
        response = self.policy.next_boot_response()
        charger = self.charger(cp_id)
        charger.boot_count += 1
        charger.registration_status = response.status
        charger.last_boot = {"received_at": utc_now_iso(), **details, **response.to_dict()}
        logger.info("%s booted: %s, interval %s s", cp_id, response.status, response.interval)
        return response

    def heartbeat(self, cp_id: str) -> None:
        self.charger(cp_id).last_heartbeat = utc_now_iso()

    def connector_status(self, cp_id: str, connector_id: int, details: dict[str, Any]) -> None:
        self.charger(cp_id).connectors[connector_id] = {"received_at": utc_now_iso(), **details}

    def authorize(self, cp_id: str, id_tag: str) -> dict[str, str]:
        return self.policy.id_tag_info(id_tag, self.policy.authorize_status(id_tag))

    def start_transaction(
        self, cp_id: str, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
        reservation_id: int | None = None,
    ) -> tuple[int, dict[str, str]]:
        """A new transaction id (even for a refused tag, as OCPP 1.6 requires) and idTagInfo."""
        status = self.policy.start_status(id_tag)
        transaction = Transaction(
            transaction_id=next(self._transaction_ids), cp=cp_id, connector_id=connector_id,
            id_tag=id_tag, id_tag_status=status, meter_start=meter_start, timestamp=timestamp,
            reservation_id=reservation_id, received_at=utc_now_iso(),
        )
        self.transactions[transaction.transaction_id] = transaction
        logger.info("%s started transaction %s for %s: %s",
                    cp_id, transaction.transaction_id, id_tag, status)
        return transaction.transaction_id, self.policy.id_tag_info(id_tag, status)

    def stop_transaction(
        self, cp_id: str, transaction_id: int, meter_stop: int, timestamp: str,
        reason: str | None = None, id_tag: str | None = None,
        transaction_data: list | None = None,
    ) -> dict[str, str] | None:
        """Close the transaction; returns the idTagInfo for ``id_tag`` (None without a tag)."""
        stop = {"received_at": utc_now_iso(), "cp": cp_id, "meter_stop": meter_stop,
                "timestamp": timestamp, "reason": reason, "id_tag": id_tag,
                "transaction_data": transaction_data}
        transaction = self.transactions.get(transaction_id)
        if transaction is None:
            self.record_anomaly(cp_id, "unknown_transaction",
                                f"StopTransaction for unknown transaction {transaction_id}",
                                transaction_id=transaction_id, stop=stop)
        elif transaction.stop is not None and _same_stop(transaction.stop, stop):
            # The charger did not get our answer (connection lost) and sent the same stop again,
            # as OCPP requires: a retransmission, billed once.
            transaction.retransmitted_stops += 1
            logger.info("%s sent the stop of transaction %s again (retransmission)", cp_id, transaction_id)
        elif transaction.stop is not None:
            transaction.duplicate_stops.append(stop)
            self.record_anomaly(cp_id, "duplicate_stop",
                                f"transaction {transaction_id} stopped again with different data",
                                transaction_id=transaction_id, stop=stop)
        else:
            if transaction.cp != cp_id:
                self.record_anomaly(cp_id, "stop_from_other_charger",
                                    f"transaction {transaction_id} was started by {transaction.cp}",
                                    transaction_id=transaction_id)
            transaction.stop = stop
            logger.info("%s stopped transaction %s: %s Wh, reason %s",
                        cp_id, transaction_id, transaction.energy_wh, reason)
        if id_tag is None:
            return None
        return self.policy.id_tag_info(id_tag, self.policy.authorize_status(id_tag))

    def meter_values(
        self, cp_id: str, connector_id: int, meter_value: list, transaction_id: int | None = None,
    ) -> None:
        sample = {"received_at": utc_now_iso(), "connector_id": connector_id,
                  "transaction_id": transaction_id, "meter_value": meter_value}
        if transaction_id is None:
            self.charger(cp_id).meter_values_outside_transactions.append(sample)
        elif transaction_id in self.transactions:
            self.transactions[transaction_id].meter_values.append(sample)
        else:
            self.record_anomaly(cp_id, "meter_values_for_unknown_transaction",
                                f"MeterValues for unknown transaction {transaction_id}",
                                transaction_id=transaction_id)

    def data_transfer(self, cp_id: str, details: dict[str, Any]) -> None:
        self.charger(cp_id).data_transfers.append({"received_at": utc_now_iso(), **details})

    def firmware_status(self, cp_id: str, status: str) -> None:
        entry = {"received_at": utc_now_iso(), "status": status}
        self.charger(cp_id).firmware_statuses.append(entry)

    def diagnostics_status(self, cp_id: str, status: str) -> None:
        entry = {"received_at": utc_now_iso(), "status": status}
        self.charger(cp_id).diagnostics_statuses.append(entry)

    def security_event(self, cp_id: str, details: dict[str, Any]) -> None:
        entry = {"received_at": utc_now_iso(), **details}
        self.charger(cp_id).security_events.append(entry)
        logger.info("%s security event %s: %s", cp_id, details.get("type"), details.get("tech_info"))

    def signed_firmware_status(self, cp_id: str, status: str, request_id: int | None) -> None:
        entry = {"received_at": utc_now_iso(), "status": status, "request_id": request_id}
        self.charger(cp_id).signed_firmware_statuses.append(entry)

    def log_status(self, cp_id: str, status: str, request_id: int | None) -> None:
        entry = {"received_at": utc_now_iso(), "status": status, "request_id": request_id}
        self.charger(cp_id).log_statuses.append(entry)

    def certificate_signing_request(self, cp_id: str, csr: str) -> None:
        self.charger(cp_id).certificate_signing_requests.append({"received_at": utc_now_iso(), "csr": csr})
        logger.info("%s sent a certificate signing request", cp_id)

    def handshake_authenticated(self, cp_id: str, method: str) -> None:
        self.charger(cp_id).authenticated_by = method

    def handshake_refused(self, cp_id: str, status: int, reason: str) -> None:
        self.charger(cp_id).refused_handshakes.append({"at": utc_now_iso(), "status": status, "reason": reason})
        logger.warning("%s refused at the handshake: HTTP %s, %s", cp_id, status, reason)


# --------------------------------------------------------------------------------------------
# Message log: every frame in and out, with sequence numbers


MESSAGE_TYPES = {2: "CALL", 3: "CALLRESULT", 4: "CALLERROR"}


@dataclass(frozen=True)
class Frame:
    """One websocket text frame as sent or received, decoded where it is valid OCPP-J.

    ``action`` is also filled for CALLRESULT/CALLERROR, from the CALL they answer.
    ``payload`` is the wire payload (camelCase); for a CALLERROR, its details.
    """

    seq: int
    time: str
    cp: str
    direction: str
    raw: str
    message_type: str = "INVALID"
    unique_id: str | None = None
    action: str | None = None
    payload: Any = None
    error_code: str | None = None
    error_description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class MessageLog:
    """Every frame of every charge point, in order, with a sequence number shared by all."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._call_actions: dict[tuple[str, str], str] = {}
        self._sent_calls: set[tuple[str, str]] = set()
        self._answers: dict[tuple[str, str], Frame] = {}

    @property
    def last_seq(self) -> int:
        return len(self.frames)

    def record(self, cp_id: str, direction: str, raw: str) -> Frame:
        frame = Frame(len(self.frames) + 1, utc_now_iso(), cp_id, direction, raw,
                      **self._decode(cp_id, raw))
        self.frames.append(frame)
        if frame.unique_id is not None:
            key = (cp_id, frame.unique_id)
            if frame.message_type == "CALL" and direction == "sent":
                self._sent_calls.add(key)
            elif frame.message_type != "CALL" and direction == "received":
                self._answers[key] = frame
        frame_logger.info("%s %s %s", cp_id, "->" if direction == "sent" else "<-", redact(raw))
        return frame

    def since(self, seq: int = 0, cp_id: str | None = None) -> list[Frame]:
        """Frames with a sequence number above ``seq``, of ``cp_id`` only if given."""
        return [frame for frame in self.frames[max(seq, 0):] if cp_id in (None, frame.cp)]

    def was_sent(self, cp_id: str, unique_id: str) -> bool:
        return (cp_id, unique_id) in self._sent_calls

    def answer_to(self, cp_id: str, unique_id: str) -> Frame | None:
        """The CALLRESULT or CALLERROR the charge point sent for our CALL ``unique_id``."""
        return self._answers.get((cp_id, unique_id))

    def _decode(self, cp_id: str, raw: str) -> dict[str, Any]:
        try:
            message = json.loads(raw)
            message_type = MESSAGE_TYPES[message[0]]
            unique_id = message[1]
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):  # a hostile frame sent on purpose
            return {}
        if not isinstance(unique_id, str):
            return {}
        key = (cp_id, unique_id)
        if message_type == "CALL" and len(message) == 4:
            self._call_actions[key] = message[2]
            return {"message_type": message_type, "unique_id": unique_id,
                    "action": message[2], "payload": message[3]}
        if message_type == "CALLRESULT" and len(message) == 3:
            return {"message_type": message_type, "unique_id": unique_id,
                    "action": self._call_actions.pop(key, None), "payload": message[2]}
        if message_type == "CALLERROR" and len(message) == 5:
            return {"message_type": message_type, "unique_id": unique_id,
                    "action": self._call_actions.pop(key, None), "error_code": message[2],
                    "error_description": message[3], "payload": message[4]}
        return {}


class RecordingConnection:
    """Wraps a websocket for the ocpp library, recording each frame before it passes."""

    def __init__(self, websocket: ServerConnection, cp_id: str, log: MessageLog,
                 on_request: Callable[[Frame], None]):
        self._websocket = websocket
        self._cp_id = cp_id
        self._log = log
        self._on_request = on_request

    async def recv(self) -> str:
        raw = await self._websocket.recv()
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        frame = self._log.record(self._cp_id, "received", raw)
        if frame.message_type == "CALL":
            self._on_request(frame)
        return raw

    async def send(self, raw: str) -> None:
        self._log.record(self._cp_id, "sent", raw)
        await self._websocket.send(raw)


# --------------------------------------------------------------------------------------------
# The OCPP side: one handler object per connected charge point


class _DemoteInfo(logging.LoggerAdapter):
    """The ocpp library logs every frame at INFO; frames are already logged once, so demote."""

    def info(self, msg, *args, **kwargs):
        self.debug(msg, *args, **kwargs)


_library_logger = _DemoteInfo(logging.getLogger("evcp.bench.csms.ocpp"), {})


class StrayAnswersDropped:
    """For the ``ocpp`` library's ChargePoint of either version: with no call of ours
    outstanding, an answer (to a frame of ``send_raw``, or a late one) is recorded and dropped,
    not queued for our next call."""

    async def route_message(self, raw_msg):
        if not self._call_lock.locked() and raw_msg.lstrip().startswith(("[3", "[4")):
            return
        await super().route_message(raw_msg)


class CentralSystemChargePoint(StrayAnswersDropped, ChargePoint):
    """Answers one charge point's requests from the :class:`Ledger`."""

    calls = ocpp.v16.call
    ocpp_version = "1.6"

    def __init__(self, cp_id: str, connection: RecordingConnection, ledger: Ledger):
        super().__init__(cp_id, connection, response_timeout=MAX_CALL_TIMEOUT_S,
                         logger=_library_logger)
        self._ledger = ledger

    async def _handle_call(self, msg):
        """``policy.call_errors``: answer the next N requests of an action with a CALLERROR."""
        remaining = self._ledger.policy.call_errors.get(msg.action, 0)
        if remaining > 0:
            self._ledger.policy.call_errors[msg.action] = remaining - 1
            raise InternalError(details={"cause": f"scripted failure of {msg.action} (policy.call_errors)"})
        return await super()._handle_call(msg)

    @on(Action.boot_notification)
    def on_boot_notification(self, **details):
        response = self._ledger.boot(self.id, details)
        return call_result.BootNotification(
            current_time=self._ledger.policy.current_time(), interval=response.interval, status=response.status
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs):
        self._ledger.heartbeat(self.id)
        return call_result.Heartbeat(current_time=self._ledger.policy.current_time())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id, **details):
        self._ledger.connector_status(self.id, connector_id, details)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **kwargs):
        return call_result.Authorize(id_tag_info=self._ledger.authorize(self.id, id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id, id_tag, meter_start, timestamp,
                             reservation_id=None, **kwargs):
        transaction_id, id_tag_info = self._ledger.start_transaction(
            self.id, connector_id, id_tag, meter_start, timestamp, reservation_id
        )
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=id_tag_info)

    @on(Action.stop_transaction)
    def on_stop_transaction(self, transaction_id, meter_stop, timestamp, reason=None,
                            id_tag=None, transaction_data=None, **kwargs):
        id_tag_info = self._ledger.stop_transaction(
            self.id, transaction_id, meter_stop, timestamp, reason, id_tag, transaction_data
        )
        return call_result.StopTransaction(id_tag_info=id_tag_info)

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, meter_value, transaction_id=None, **kwargs):
        self._ledger.meter_values(self.id, connector_id, meter_value, transaction_id)
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, **details):
        self._ledger.data_transfer(self.id, details)
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, status, **kwargs):
        self._ledger.firmware_status(self.id, status)
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, status, **kwargs):
        self._ledger.diagnostics_status(self.id, status)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **details):
        self._ledger.security_event(self.id, details)
        return call_result.SecurityEventNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(self, status, request_id=None, **kwargs):
        self._ledger.signed_firmware_status(self.id, status, request_id)
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, status, request_id=None, **kwargs):
        self._ledger.log_status(self.id, status, request_id)
        return call_result.LogStatusNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, csr, **kwargs):
        # The bench records the CSR and accepts it; signing it is left to the test (whitepaper A02, A03).
        self._ledger.certificate_signing_request(self.id, csr)
        return call_result.SignCertificate(status=GenericStatus.accepted)


# --------------------------------------------------------------------------------------------
# Calls to a charge point


class CallFailed(Exception):
    """A CALL to a charge point could not produce a result or a CALLERROR."""


class InvalidCall(CallFailed, ValueError):
    """Unknown action, or a payload the OCPP 1.6 schema rejects; nothing was sent."""


class ChargePointNotConnected(CallFailed, LookupError):
    """No charge point with that id is connected."""


class ChargePointDisconnected(CallFailed, ConnectionError):
    """The connection closed before the answer arrived."""


class InvalidCallResult(CallFailed):
    """The charge point answered with a payload the OCPP 1.6 schema rejects."""


class CallTimedOut(CallFailed, TimeoutError):
    """No answer arrived in time."""


@dataclass(frozen=True)
class CallOutcome:
    """The charge point's answer to a CALL: a CALLRESULT payload or a CALLERROR."""

    status: str
    payload: dict[str, Any] | None = None
    code: str | None = None
    description: str | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.status == "result":
            return {"status": "result", "payload": self.payload}
        return {"status": "error", "code": self.code, "description": self.description,
                "details": self.details}


def build_call_payload(action: str, payload: Mapping[str, Any], calls=ocpp.v16.call,
                       version: str = "1.6") -> Any:
    """The ``calls`` (``ocpp.v16.call``, ``ocpp.v201.call``) dataclass for ``action`` built from a
    camelCase wire payload.

    Raises InvalidCall for an unknown action or missing/unexpected fields.
    """
    payload_class = getattr(calls, action, None) if action.isidentifier() else None
    if not (isinstance(payload_class, type) and dataclasses.is_dataclass(payload_class)):
        raise InvalidCall(f"unknown OCPP {version} action {action!r}")
    if not isinstance(payload, Mapping):
        raise InvalidCall(f"payload must be an object (got {type(payload).__name__})")
    try:
        return payload_class(**{_snake_case(key): value for key, value in payload.items()})
    except TypeError as error:
        raise InvalidCall(f"{action}: {error}") from None


def _snake_case(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def server_tls_context(cert_file: str, key_file: str, client_ca_file: str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with ``client_ca_file``, client certificates are requested and,
    when one is sent, it must be signed by that CA (a charge point without one may still use
    a password)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _client_common_name(connection: ServerConnection) -> str | None:
    """The subject CN of the verified client certificate of ``connection``, None without one."""
    certificate = connection.transport.get_extra_info("peercert")
    if not certificate:
        return None
    for rdn in certificate.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return ""


def charge_point_preference(spoken: Sequence[str]):
    """The handshake's choice: the first subprotocol the charge point offers that is ``spoken``
    (a station configured for "ocpp2.0.1, ocpp1.6" gets 2.0.1); none of them refuses it (400)."""
    def select(connection: ServerConnection, offered: list[str]) -> str | None:
        for subprotocol in offered:
            if subprotocol in spoken:
                return subprotocol
        raise NegotiationError(f"no supported subprotocol in {list(offered)} (this central system speaks "
                               f"{', '.join(spoken)})")
    return select


def charge_point_id_from_path(path: str) -> str:
    """The last non-empty segment of a websocket path: ``/ocpp/CP-1`` -> ``CP-1``."""
    return unquote(urlsplit(path).path.rstrip("/").rpartition("/")[2])


# --------------------------------------------------------------------------------------------
# The central system: websocket server, control API, state


@dataclass
class _Session:
    websocket: ServerConnection
    charge_point: Any
    """A :class:`CentralSystemChargePoint` or an ``evcp.bench.csms201.CentralSystemStation``."""
    connection: RecordingConnection


class CentralSystem:
    """An OCPP 1.6J and 2.0.1 central system on ``host:port`` with its control API on ``control_port``.

    Port 0 picks a free port (read :attr:`port` / :attr:`control_port` after :meth:`start`);
    ``control_port=None`` runs without the control API. State is in :attr:`ledger` (policy,
    chargers, transactions, anomalies) and :attr:`log` (frames).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        control_host: str = "127.0.0.1",
        control_port: int | None = 9001,
        policy: Policy | None = None,
        first_transaction_id: int = 1,
        tls: ssl.SSLContext | None = None,
        basic_auth: bool = False,
        subprotocols: Sequence[str] = (SUBPROTOCOL, SUBPROTOCOL_201),
    ):
        """``tls``: serve wss:// with this context (see :func:`server_tls_context`).
        ``subprotocols``: the OCPP versions spoken (a 1.6-only central system: ``(SUBPROTOCOL,)``).
        ``basic_auth``: check the HTTP Basic password of each charge point against
        ``policy.passwords``. With a context that verifies client certificates, a valid one
        whose CN is the charge point id also authenticates it; without ``basic_auth`` it is
        then the only way in."""
        self.host = host
        self.tls = tls
        self.basic_auth = basic_auth
        self.subprotocols = list(subprotocols)
        self.control_host = control_host
        self._requested_port = port
        self._requested_control_port = control_port
        from evcp.bench.csms201 import Ledger201

        self.ledger = Ledger(policy, first_transaction_id)
        self.ledger201 = Ledger201(self.ledger)
        self.log = MessageLog()
        self._sessions: dict[str, _Session] = {}
        self._closing: set[asyncio.Task] = set()
        self._server: Server | None = None
        self._control: HttpServer | None = None

    @property
    def policy(self) -> Policy:
        return self.ledger.policy

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("CentralSystem is not started")
        return next(iter(self._server.sockets)).getsockname()[1]

    @property
    def control_port(self) -> int | None:
        return None if self._control is None else self._control.port

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}"

    @property
    def checks_client_certificates(self) -> bool:
        return self.tls is not None and self.tls.verify_mode != ssl.CERT_NONE

    @property
    def control_url(self) -> str | None:
        return None if self._control is None else f"http://{self.control_host}:{self.control_port}"

    def connected_ids(self) -> list[str]:
        return sorted(self._sessions)

    async def start(self) -> None:
        """Listen for charge points and, if configured, for control requests."""
        try:
            self._server = await serve(
                self._serve_charge_point, self.host, self._requested_port,
                subprotocols=self.subprotocols, select_subprotocol=charge_point_preference(self.subprotocols),
                process_request=self._check_path,
                logger=logging.getLogger("evcp.bench.csms.websocket"), ssl=self.tls,
            )
        except OSError as error:
            raise ListenError("central system", self.host, self._requested_port, error) from None
        if self._requested_control_port is not None:
            self._control = HttpServer(
                control_routes(self), self.control_host, self._requested_control_port,
                max_body_bytes=CONTROL_MAX_BODY_BYTES, name="central system control API",
            )
            try:
                await self._control.start()
            except OSError:
                await self.stop()
                raise
        logger.info("central system listening on %s, control %s", self.url, self.control_url)

    async def stop(self) -> None:
        """Stop the control API, then close every charge point connection and the server."""
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def call(
        self, cp_id: str, action: str, payload: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_CALL_TIMEOUT_S,
    ) -> CallOutcome:
        """Send a CALL (camelCase ``payload``) to a connected charge point and await its answer.

        Returns the CALLRESULT payload or the CALLERROR as a :class:`CallOutcome`; raises a
        :class:`CallFailed` subclass when there is neither. Never call this from an ``@on``
        handler: the answer could only arrive after the handler returns.
        """
        session = self._sessions.get(cp_id)
        if session is None:
            raise ChargePointNotConnected(f"charge point {cp_id!r} is not connected")
        station = session.charge_point
        request = build_call_payload(action, payload or {}, station.calls, station.ocpp_version)
        unique_id = str(uuid.uuid4())
        failure: Exception | None = None
        try:
            await asyncio.wait_for(
                session.charge_point.call(request, suppress=False, unique_id=unique_id), timeout
            )
        except asyncio.TimeoutError:
            raise CallTimedOut(f"{cp_id} did not answer {action} within {timeout:g} s") from None
        except ConnectionClosed:
            raise ChargePointDisconnected(f"{cp_id} disconnected during {action}") from None
        except Exception as error:
            failure = error

        answer = self.log.answer_to(cp_id, unique_id)
        if not self.log.was_sent(cp_id, unique_id):
            raise InvalidCall(f"{action} payload rejected: {failure}") from failure
        if answer is not None and answer.message_type == "CALLERROR":
            return CallOutcome("error", code=answer.error_code,
                               description=answer.error_description, details=answer.payload)
        if failure is not None or answer is None:
            raise InvalidCallResult(f"{cp_id} answered {action} invalidly: {failure}") from failure
        return CallOutcome("result", payload=answer.payload)

    async def send_raw(self, cp_id: str, frames: Iterable[str]) -> int:
        """Send ``frames`` to the charge point unchecked, in order; the sequence number of the last."""
        session = self._sessions.get(cp_id)
        if session is None:
            raise ChargePointNotConnected(f"charge point {cp_id!r} is not connected")
        for frame in frames:
            await session.connection.send(frame)
        return self.log.last_seq

    async def disconnect(self, cp_id: str) -> None:
        """Close the charge point's websocket (normal closure); the charge point may reconnect."""
        session = self._sessions.get(cp_id)
        if session is None:
            raise ChargePointNotConnected(f"charge point {cp_id!r} is not connected")
        logger.info("closing the connection of %s on request", cp_id)
        await session.websocket.close(1000, "closed by the central system")

    def _check_path(self, connection: ServerConnection, request):
        if not charge_point_id_from_path(request.path):
            return connection.respond(HTTPStatus.NOT_FOUND, "no charge point id in the path\n")
        if not self.policy.accept_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "central system offline (policy)\n")
        if self.policy.handshake_status:
            return connection.respond(HTTPStatus(self.policy.handshake_status), "refused (policy)\n")
        if self.basic_auth or self.checks_client_certificates:
            return self._authenticate(connection, request)
        return None

    def _authenticate(self, connection: ServerConnection, request):
        """Security whitepaper profiles 1-3: a client certificate for this charge point, or its
        HTTP Basic password; anything else is HTTP 401."""
        cp_id = charge_point_id_from_path(request.path)
        common_name = _client_common_name(connection)
        if common_name is not None:
            if common_name == cp_id:
                self.ledger.handshake_authenticated(cp_id, "client-certificate")
                return None
            return self._refuse(connection, cp_id, f"client certificate is for {common_name!r}")
        if not self.basic_auth:
            return self._refuse(connection, cp_id, "no client certificate")
        credentials = parse_basic_authorization(request.headers.get("Authorization"))
        if credentials is None:
            return self._refuse(connection, cp_id, "no HTTP Basic credentials")
        user, password = credentials
        expected = self.policy.passwords.get(cp_id)
        if user != cp_id:
            return self._refuse(connection, cp_id, f"Basic user {user!r} is not the charge point id")
        if expected is None or not hmac.compare_digest(password, basic_auth_password(expected)):
            return self._refuse(connection, cp_id, "wrong password")
        self.ledger.handshake_authenticated(cp_id, "basic")
        return None

    def _refuse(self, connection: ServerConnection, cp_id: str, reason: str):
        self.ledger.handshake_refused(cp_id, 401, reason)
        response = connection.respond(HTTPStatus.UNAUTHORIZED, f"{reason}\n")
        if self.basic_auth:
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP"'
        return response

    async def _serve_charge_point(self, websocket: ServerConnection) -> None:
        cp_id = charge_point_id_from_path(websocket.request.path)
        previous = self._sessions.get(cp_id)
        if previous is not None:
            # The charge point gave the old connection up, maybe because it went half-open: its
            # closing handshake may never complete. It closes in the background, briefly, while
            # the new connection is served at once.
            logger.warning("%s connected again; closing its previous connection", cp_id)
            previous.websocket.close_timeout = REPLACED_CLOSE_TIMEOUT_S
            closing = asyncio.create_task(previous.websocket.close(1000, "replaced by a new connection"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

        def on_request(frame: Frame) -> None:
            self.ledger.request_received(cp_id, frame.action)

        connection = RecordingConnection(websocket, cp_id, self.log, on_request)
        offered = websocket.request.headers.get_all("Sec-WebSocket-Protocol")
        self.ledger.charger(cp_id).subprotocols_offered.append(", ".join(offered) if offered else None)
        if websocket.subprotocol == SUBPROTOCOL_201:
            from evcp.bench.csms201 import CentralSystemStation

            station = CentralSystemStation(cp_id, connection, self.ledger201)
        else:
            station = CentralSystemChargePoint(cp_id, connection, self.ledger)
        self.ledger.charger(cp_id).ocpp_version = station.ocpp_version
        session = _Session(websocket, station, connection)
        self._sessions[cp_id] = session
        self.ledger.connected(cp_id)
        logger.info("%s connected from %s", cp_id, websocket.remote_address)
        try:
            await session.charge_point.start()
        except ConnectionClosed as closed:
            logger.info("%s disconnected: %s", cp_id, closed)
            received = closed.rcvd
            self.ledger.connection_closed(cp_id, int(received.code if received else CloseCode.ABNORMAL_CLOSURE),
                                          received.reason if received else "")
        finally:
            if self._sessions.get(cp_id) is session:
                del self._sessions[cp_id]
                self.ledger.disconnected(cp_id)


# --------------------------------------------------------------------------------------------
# Control API


def control_routes(system: CentralSystem) -> dict[tuple[str, str], Callable]:
    """The HTTP control API's route table for ``system`` (see the module docstring)."""

    async def get_chargers(request: Request) -> Response:
        return json_response({"chargers": [
            charger.to_dict() for _, charger in sorted(system.ledger.chargers.items())
        ]})

    async def get_transactions(request: Request) -> Response:
        cp_id = request.query.get("cp")
        return json_response({"transactions": [
            transaction.to_dict() for _, transaction in sorted(system.ledger.transactions.items())
            if cp_id in (None, transaction.cp)
        ] + [  # OCPP 2.0.1 transactions (evcp.bench.csms201), in order of their first event
            transaction.to_dict() for transaction in system.ledger201.transactions.values()
            if cp_id in (None, transaction.cp)
        ]})

    async def get_anomalies(request: Request) -> Response:
        return json_response({"anomalies": system.ledger.anomalies})

    async def get_messages(request: Request) -> Response:
        since_text = request.query.get("since", "0")
        if not (since_text.isascii() and since_text.isdigit()):
            raise HttpError(400, f"since must be a sequence number >= 0 (got {since_text!r})")
        frames = system.log.since(int(since_text), request.query.get("cp"))
        return json_response({"messages": [frame.to_dict() for frame in frames],
                              "last_seq": system.log.last_seq})

    async def get_policy(request: Request) -> Response:
        return json_response(system.policy.to_dict())

    async def post_policy(request: Request) -> Response:
        try:
            system.policy.update(await read_json_object(request))
        except ValueError as error:
            raise HttpError(400, str(error)) from None
        logger.info("policy changed: %s", system.policy.to_dict())
        return json_response(system.policy.to_dict())

    async def post_call(request: Request) -> Response:
        body = await read_json_object(request)
        cp_id = _required_str(body, "cp")
        action = _required_str(body, "action")
        timeout = body.get("timeout", DEFAULT_CALL_TIMEOUT_S)
        is_number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        if not is_number or not 0 < timeout <= MAX_CALL_TIMEOUT_S:
            raise HttpError(
                400, f"timeout must be seconds in (0, {MAX_CALL_TIMEOUT_S:g}] (got {timeout!r})"
            )
        try:
            outcome = await system.call(cp_id, action, body.get("payload"), timeout)
        except InvalidCall as error:
            raise HttpError(400, str(error)) from None
        except ChargePointNotConnected as error:
            raise HttpError(404, str(error)) from None
        except CallTimedOut as error:
            raise HttpError(504, str(error)) from None
        except CallFailed as error:
            raise HttpError(502, str(error)) from None
        return json_response(outcome.to_dict())

    async def post_disconnect(request: Request) -> Response:
        cp_id = _required_str(await read_json_object(request), "cp")
        try:
            await system.disconnect(cp_id)
        except ChargePointNotConnected as error:
            raise HttpError(404, str(error)) from None
        return json_response({"disconnected": cp_id})

    async def post_raw(request: Request) -> Response:
        body = await read_json_object(request)
        cp_id = _required_str(body, "cp")
        frames = body.get("frames")
        if not isinstance(frames, list) or not all(isinstance(frame, str) for frame in frames):
            raise HttpError(400, f"frames must be a list of strings (got {type(frames).__name__})")
        try:
            return json_response({"last_seq": await system.send_raw(cp_id, frames)})
        except ChargePointNotConnected as error:
            raise HttpError(404, str(error)) from None
        except ConnectionClosed as error:
            raise HttpError(502, f"{cp_id} disconnected: {error}") from None

    return {
        ("GET", "/chargers"): get_chargers,
        ("GET", "/transactions"): get_transactions,
        ("GET", "/anomalies"): get_anomalies,
        ("GET", "/messages"): get_messages,
        ("GET", "/policy"): get_policy,
        ("POST", "/policy"): post_policy,
        ("POST", "/call"): post_call,
        ("POST", "/disconnect"): post_disconnect,
        ("POST", "/raw"): post_raw,
    }


def _required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise HttpError(400, f"{key} must be a non-empty string (got {value!r})")
    return value


# --------------------------------------------------------------------------------------------
# Command line


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (got {text!r})")
    return host.strip("[]"), int(port)


_VERSIONS = {"1.6": SUBPROTOCOL, "2.0.1": SUBPROTOCOL_201}


def _versions(text: str) -> tuple[str, ...]:
    """"1.6,2.0.1" -> the websocket subprotocols ("ocpp1.6", "ocpp2.0.1")."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _VERSIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected OCPP versions out of {', '.join(_VERSIONS)} (got {text!r})")
    return tuple(_VERSIONS[name] for name in names)


def _tag_list(text: str) -> set[str]:
    return {tag.strip() for tag in text.split(",") if tag.strip()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line options (shared by ``python -m evcp.bench.csms`` and ``evcp csms``)."""
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9000),
                        metavar="HOST:PORT",
                        help="websocket address for charge points (port 0: any; default 127.0.0.1:9000)")
    parser.add_argument("--control", type=_host_port, default=("127.0.0.1", 9001),
                        metavar="HOST:PORT", help="control HTTP API address (port 0: any; default 127.0.0.1:9001)")
    tags = parser.add_mutually_exclusive_group()
    tags.add_argument("--accept-all", action="store_true",
                      help="accept every idTag (the default)")
    tags.add_argument("--tags", type=_tag_list, metavar="A,B",
                      help="accept only these idTags; others are Invalid")
    parser.add_argument("--heartbeat-interval", type=int, default=DEFAULT_HEARTBEAT_INTERVAL_S,
                        metavar="S", help="interval in an Accepted BootNotification answer")
    parser.add_argument("--first-transaction-id", type=int, default=1, metavar="N")
    parser.add_argument("--ocpp-versions", type=_versions, default=(SUBPROTOCOL, SUBPROTOCOL_201), metavar="LIST",
                        help="the OCPP versions spoken, e.g. 1.6 for a central system that only speaks 1.6 "
                             "(default 1.6,2.0.1; the charge point's order of preference picks one)")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this PEM certificate (chain)")
    parser.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", metavar="FILE",
                        help="accept client certificates signed by this CA (security profile 3); "
                             "without --basic-auth they are required")
    parser.add_argument("--basic-auth", action="store_true",
                        help="check HTTP Basic passwords (security profiles 1 and 2); set them with "
                             'POST /policy {"passwords": {"CP-1": "..."}}')
    parser.add_argument("--log", metavar="FILE", help="append frames and events to FILE")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also log frames and events to stderr")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Options that only make sense together; ``parser.error`` (exit 2) otherwise."""
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    return args


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evcp.bench.csms",
        description="OCPP 1.6J and 2.0.1 central system for the bench and integration tests.",
    )
    add_arguments(parser)
    return check_arguments(parser, parser.parse_args(None if argv is None else list(argv)))


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    policy = Policy(heartbeat_interval=args.heartbeat_interval)
    if args.tags is not None:
        policy.accept_all = False
        policy.tags = args.tags
    try:
        tls = server_tls_context(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    except (OSError, ssl.SSLError) as error:
        print(f"csms: cannot use the TLS files: {error}", file=sys.stderr)
        return 2
    system = CentralSystem(
        host=args.listen[0], port=args.listen[1],
        control_host=args.control[0], control_port=args.control[1],
        policy=policy, first_transaction_id=args.first_transaction_id,
        tls=tls, basic_auth=args.basic_auth, subprotocols=args.ocpp_versions,
    )
    # The stop signals are ours before anyone can be told where we listen: a SIGTERM right after
    # that line still stops the central system cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await system.start()
    except OSError as error:
        print(f"csms: {error}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(f"csms listening on {system.url} control {system.control_url}", flush=True)
    await stop.wait()
    logger.info("shutting down")
    await system.stop()
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    return run_command(parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Serve with the parsed command line ``args`` until SIGTERM or SIGINT."""
    # Its own process: every message is checked against the schemas in the loop, not in a worker
    # thread (the library's default), whose two hand-offs per message cost more than the check and
    # would make a charger's backlog replay measure this central system's thread pool.
    ocpp.messages.ASYNC_VALIDATION = False
    # Warnings to stderr (everything with --verbose); everything to --log FILE if given.
    configure_logging("INFO", stderr_level="INFO" if args.verbose else "WARNING", log_file=args.log)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
