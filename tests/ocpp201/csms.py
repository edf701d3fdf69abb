"""A small OCPP 2.0.1 CSMS for the adapter's tests: a real websocket server on loopback.

It is the ``ocpp`` library's own v201 message layer on the CSMS side, so every request the
station sends is checked against the OCPP 2.0.1 JSON schemas on arrival (a schema violation
is answered with a CALLERROR and recorded in ``errors``). ``policy`` sets its answers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import websockets
from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import InternalError
from ocpp.messages import Call, CallResult, _validate_payload
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Policy:
    boot: list[str] = field(default_factory=lambda: ["Accepted"])
    """Answers to successive BootNotifications; the last one repeats."""
    interval: int = 300
    authorize: str = "Accepted"
    transaction_id_token: str | None = "Accepted"
    """idTokenInfo status in TransactionEventResponses with an idToken; None = no idTokenInfo."""
    transaction_event_errors: int = 0
    """So many TransactionEventRequests are answered with a CALLERROR InternalError first."""
    transaction_event_delay_s: float = 0.0
    """How long each TransactionEventResponse takes."""


class StationSession(ChargePoint):
    def __init__(self, cp_id, ws, csms: "Csms"):
        super().__init__(cp_id, ws)
        self.csms = csms

    def _seen(self, action: str, payload: dict) -> None:
        self.csms.received.append((action, snake_to_camel_case(payload)))
        self.csms.arrived.append(time.monotonic())
        self.csms.changed.set()

    @on(Action.boot_notification)
    def boot(self, **payload):
        self._seen("BootNotification", payload)
        answers = self.csms.policy.boot
        status = answers.pop(0) if len(answers) > 1 else answers[0]
        return call_result.BootNotification(current_time=now(), interval=self.csms.policy.interval, status=status)

    @on(Action.heartbeat)
    def heartbeat(self, **payload):
        self._seen("Heartbeat", payload)
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    def status(self, **payload):
        self._seen("StatusNotification", payload)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def authorize(self, **payload):
        self._seen("Authorize", payload)
        return call_result.Authorize(id_token_info={"status": self.csms.policy.authorize})

    @on(Action.transaction_event)
    async def transaction_event(self, **payload):
        self._seen("TransactionEvent", payload)
        await asyncio.sleep(self.csms.policy.transaction_event_delay_s)
        if self.csms.policy.transaction_event_errors > 0:
            self.csms.policy.transaction_event_errors -= 1
            raise InternalError(description="scripted failure of TransactionEvent")
        status = self.csms.policy.transaction_id_token
        if payload.get("id_token") and status is not None:
            return call_result.TransactionEvent(id_token_info={"status": status})
        return call_result.TransactionEvent()

    @on(Action.meter_values)
    def meter_values(self, **payload):
        self._seen("MeterValues", payload)
        return call_result.MeterValues()

    @on(Action.notify_report)
    def notify_report(self, **payload):
        self._seen("NotifyReport", payload)
        return call_result.NotifyReport()

    @on(Action.report_charging_profiles)
    def report_charging_profiles(self, **payload):
        self._seen("ReportChargingProfiles", payload)
        return call_result.ReportChargingProfiles()

    @on(Action.security_event_notification)
    def security_event(self, **payload):
        self._seen("SecurityEventNotification", payload)
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    def firmware_status(self, **payload):
        self._seen("FirmwareStatusNotification", payload)
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    def log_status(self, **payload):
        self._seen("LogStatusNotification", payload)
        return call_result.LogStatusNotification()

    @on(Action.notify_event)
    def notify_event(self, **payload):
        self._seen("NotifyEvent", payload)
        return call_result.NotifyEvent()

    @on(Action.reservation_status_update)
    def reservation_status_update(self, **payload):
        self._seen("ReservationStatusUpdate", payload)
        return call_result.ReservationStatusUpdate()

    @on(Action.sign_certificate)
    def sign_certificate(self, **payload):
        self._seen("SignCertificate", payload)
        return call_result.SignCertificate(status="Accepted")

    async def send(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CALL from the CSMS with a camelCase payload; the camelCase answer (schema-checked)."""
        request = Call(unique_id=str(self._unique_id_generator()), action=action, payload=payload)
        _validate_payload(request, "2.0.1")
        async with self._call_lock:
            await self._send(request.to_json())
            response = await asyncio.wait_for(self._response_queue.get(), 10)
        if isinstance(response, CallResult):
            response.action = action
            _validate_payload(response, "2.0.1")
        return response.payload if isinstance(response, CallResult) else {"error": response.error_code}


class Csms:
    def __init__(self, subprotocols=("ocpp2.0.1",)):
        self.subprotocols = list(subprotocols)
        self.policy = Policy()
        self.received: list[tuple[str, dict]] = []
        self.arrived: list[float] = []
        """When each of ``received`` arrived (monotonic seconds)."""
        self.changed = asyncio.Event()
        self.session: StationSession | None = None
        self.connections = 0
        self.close_codes: list[int] = []
        """The close code the station sent on each connection that ended (1006: none)."""
        self._server = None

    async def start(self) -> None:
        self._server = await websockets.serve(self._serve, "127.0.0.1", 0, subprotocols=self.subprotocols)

    @property
    def url(self) -> str:
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"ws://{host}:{port}/ocpp"

    async def _serve(self, ws) -> None:
        self.connections += 1
        self.session = StationSession(ws.request.path.rsplit("/", 1)[-1], ws, self)
        self.changed.set()
        try:
            await self.session.start()
        except websockets.ConnectionClosed as closed:
            self.close_codes.append(closed.rcvd.code if closed.rcvd else 1006)
            self.changed.set()

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def messages(self, action: str) -> list[dict]:
        return [payload for name, payload in self.received if name == action]

    async def wait_for(self, check, timeout: float = 10.0):
        """Until ``check()`` returns something true; returns it."""
        async with asyncio.timeout(timeout):
            while not (result := check()):
                self.changed.clear()
                await self.changed.wait()
        return result
