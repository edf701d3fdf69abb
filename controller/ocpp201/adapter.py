"""OCPP 2.0.1 adapter: the core's actions become 2.0.1 messages, the CSMS's requests become core events.

The same place in the charger as ``evcp.ocpp16.adapter``, over the same core: it keeps the
websocket up (subprotocol ``ocpp2.0.1``; with ``ocpp.version = "auto"`` also ``ocpp1.6``, and if
the CSMS picks that, ``ProtocolChosen`` hands over to the 1.6 adapter), registers with
BootNotification, sends heartbeats and StatusNotification per EVSE and connector, authorizes id
tokens, reports transactions with TransactionEvent (``evcp.ocpp201.transactions``) through the
durable outbox, and answers the CSMS's requests.

The relay rule in 2.0.1 terms: the core closes the contactor only after TransactionStartConfirmed
Accepted, and this adapter gives that only when the CSMS accepted the IdToken: an
AuthorizeResponse Accepted for that token, a RequestStartTransaction of the CSMS itself (F01:
AuthorizeRemoteStart false), or the idTokenInfo Accepted of the TransactionEventResponse; or
the local list or cache where Part 2 C12-C15 allow it (``evcp.ocpp201.authorization``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import websockets
from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import OCPPError, OccurrenceConstraintViolationError
from ocpp.routing import after, on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import connect

import evcp
from evcp.aio import wait_event
from evcp.config import Config
from evcp.connection import (CLOSE_TIMEOUT_S, MAX_FRAME_BYTES, MAX_QUEUED_FRAMES, keepalive, log_disconnected,
                             reconnect_delay)
from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core.model import AuthStatus, ConnectorStatus, StopReason
from evcp.ocpp.trace import FrameTrace
from evcp.ocpp.outbox import Outbox
from evcp.ocpp.security import SecuritySettingsError, connection_parameters
from evcp.ocpp201.authorization import StationAuthorization
from evcp.ocpp201.device_model import settings_from, station_device_model
from evcp.ocpp201.link import SUBPROTOCOL, StationLink
from evcp.ocpp201.meter_values import meter_value
from evcp.ocpp201.problems import ProblemReports
from evcp.ocpp201.reservations import Refused as ReservationRefused
from evcp.ocpp201.reservations import StatusUpdates, reserve_now_event
from evcp.ocpp201.security import MAX_CERTIFICATE_CHAIN_BYTES, StationSecurity
from evcp.ocpp201.security import TRIGGERS as SECURITY_TRIGGERS
from evcp.ocpp201.smart_charging import Refused, SmartCharging
from evcp.ocpp201.transactions import ACTION, Measurands, Transactions, charging_state_of, id_token_for
from evcp.storage import StoreError
from evcp.timestamps import timestamp

if TYPE_CHECKING:
    from evcp.runtime.controller import Controller
    from evcp.storage import StateStore

log = logging.getLogger("evcp.ocpp")

SUBPROTOCOL_1_6 = "ocpp1.6"
VARIABLES = "ocpp201-variables"
BOOT_REASON = "ocpp201-boot-reason"
HELD_AVAILABILITY = "ocpp201-held-availability"
"""Names of the stored documents."""
TRIGGERABLE = {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent",
               *SECURITY_TRIGGERS}
"""TriggerMessage targets this station sends (Part 2 F06, MessageTriggerEnumType)."""
CONNECTOR_STATUS = {
    # core status -> ConnectorStatusEnumType (Part 2 G01)
    ConnectorStatus.AVAILABLE: "Available",
    ConnectorStatus.PREPARING: "Occupied",
    ConnectorStatus.CHARGING: "Occupied",
    ConnectorStatus.SUSPENDED_EV: "Occupied",
    ConnectorStatus.SUSPENDED_EVSE: "Occupied",
    ConnectorStatus.FINISHING: "Occupied",
    ConnectorStatus.RESERVED: "Reserved",
    ConnectorStatus.UNAVAILABLE: "Unavailable",
    ConnectorStatus.FAULTED: "Faulted",
}
AUTH_STATUS = {"Accepted": AuthStatus.ACCEPTED, "Blocked": AuthStatus.BLOCKED, "Expired": AuthStatus.EXPIRED,
               "ConcurrentTx": AuthStatus.CONCURRENT_TX}
"""AuthorizationStatusEnumType -> the core's verdict; every other status (Invalid, NoCredit,
NotAllowedTypeEVSE, NotAtThisLocation, NotAtThisTime, Unknown) is Invalid to the core."""
CONNECTOR_ID = 1
"""Each EVSE of this station has one connector."""


class ProtocolChosen(Exception):
    """With ``ocpp.version = "auto"`` the CSMS picked another protocol in the handshake."""

    def __init__(self, version: str):
        super().__init__(f"the central system chose OCPP {version}")
        self.version = version


class CsmsRequests(StationLink):
    """Requests from the CSMS, each handed to the adapter (snake_case, as the library gives them)."""

    adapter: "Ocpp201Adapter"

    @on(Action.get_variables)
    def _get_variables(self, get_variable_data: list, **_):
        return call_result.GetVariables(get_variable_result=self.adapter.get_variables(get_variable_data))

    @on(Action.set_variables)
    def _set_variables(self, set_variable_data: list, **_):
        return call_result.SetVariables(set_variable_result=self.adapter.set_variables(set_variable_data))

    @on(Action.get_base_report)
    def _get_base_report(self, request_id: int, report_base: str, **_):
        known = self.adapter.device_model.report(report_base) is not None
        return call_result.GetBaseReport(status="Accepted" if known else "NotSupported")

    @after(Action.get_base_report)
    def _send_report(self, request_id: int, report_base: str, **_):
        self.adapter.spawn(self.adapter.send_report(request_id, report_base))

    @on(Action.request_start_transaction)
    def _request_start(self, id_token: dict, remote_start_id: int, evse_id: int | None = None, **extra):
        status, transaction_id = self.adapter.request_start(id_token, remote_start_id, evse_id,
                                                            extra.get("charging_profile"))
        return call_result.RequestStartTransaction(status=status, transaction_id=transaction_id)

    @on(Action.request_stop_transaction)
    def _request_stop(self, transaction_id: str, **_):
        return call_result.RequestStopTransaction(status=self.adapter.request_stop(transaction_id))

    @on(Action.reset)
    def _reset(self, type: str, evse_id: int | None = None, **_):
        return call_result.Reset(status=self.adapter.reset(type, evse_id))

    @after(Action.reset)
    def _reset_idle_evses(self, **_):
        self.adapter.reset_idle_evses()

    @on(Action.change_availability)
    def _change_availability(self, operational_status: str, evse: dict | None = None, **_):
        return call_result.ChangeAvailability(status=self.adapter.change_availability(operational_status, evse))

    @on(Action.unlock_connector)
    async def _unlock(self, evse_id: int, connector_id: int, **_):
        return call_result.UnlockConnector(status=await self.adapter.unlock(evse_id, connector_id))

    @on(Action.trigger_message)
    def _trigger(self, requested_message: str, evse: dict | None = None, **_):
        return call_result.TriggerMessage(status=self.adapter.trigger_answer(requested_message, evse))

    @after(Action.trigger_message)
    async def _triggered(self, requested_message: str, evse: dict | None = None, **_):
        if self.adapter.trigger_answer(requested_message, evse) == "Accepted":
            self.adapter.spawn_triggered(requested_message, evse)

    @on(Action.clear_cache)
    def _clear_cache(self, **_):
        return call_result.ClearCache(status=self.adapter.authorization.clear_cache())

    @on(Action.get_local_list_version)
    def _get_local_list_version(self, **_):
        return call_result.GetLocalListVersion(version_number=self.adapter.authorization.list_version())

    @on(Action.send_local_list)
    def _send_local_list(self, version_number: int, update_type: str, local_authorization_list: list | None = None,
                         **_):
        return call_result.SendLocalList(status=self.adapter.authorization.send_local_list(
            version_number, update_type, local_authorization_list))

    # Part 2 K, smart charging: evcp.ocpp201.smart_charging.

    @on(Action.get_transaction_status)
    def _get_transaction_status(self, transaction_id: str | None = None, **_):
        return call_result.GetTransactionStatus(**self.adapter.transaction_status(transaction_id))

    @on(Action.reserve_now)
    def _reserve_now(self, **request):
        return call_result.ReserveNow(status=self.adapter.reserve_now(request))

    @on(Action.cancel_reservation)
    def _cancel_reservation(self, reservation_id: int, **_):
        return call_result.CancelReservation(
            status=self.adapter.command(ev.CancelReservationRequested(reservation_id)))  # H02

    @on(Action.set_charging_profile)
    def _set_charging_profile(self, evse_id: int, charging_profile: dict, **_):
        answer = self.adapter.smart_charging.set_profile(evse_id, charging_profile)
        return call_result.SetChargingProfile(status=answer.status, status_info=answer.status_info)

    @on(Action.clear_charging_profile)
    def _clear_charging_profile(self, charging_profile_id: int | None = None,
                                charging_profile_criteria: dict | None = None, **_):
        answer = self.adapter.smart_charging.clear(charging_profile_id, charging_profile_criteria)
        return call_result.ClearChargingProfile(status=answer.status)

    @on(Action.get_charging_profiles)
    def _get_charging_profiles(self, request_id: int, charging_profile: dict, evse_id: int | None = None, **_):
        answer, _ = self.adapter.smart_charging.get_profiles(request_id, evse_id, charging_profile)
        return call_result.GetChargingProfiles(status=answer.status)

    @after(Action.get_charging_profiles)
    def _report_charging_profiles(self, request_id: int, charging_profile: dict, evse_id: int | None = None, **_):
        _, reports = self.adapter.smart_charging.get_profiles(request_id, evse_id, charging_profile)
        self.adapter.spawn(self.adapter.send_all("ReportChargingProfiles", reports))

    @on(Action.get_composite_schedule)
    def _get_composite_schedule(self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_):
        answer, schedule = self.adapter.smart_charging.composite(duration, charging_rate_unit, evse_id)
        return call_result.GetCompositeSchedule(status=answer.status, status_info=answer.status_info,
                                                schedule=camel_to_snake_case(schedule) if schedule else None)

    @on(Action.data_transfer)
    def _data_transfer(self, vendor_id: str, **_):
        return call_result.DataTransfer(status="UnknownVendorId")

    # Blocks A, M, L, N: evcp.ocpp201.security does the work.

    @after(Action.set_variables)
    async def _maybe_reconnect(self, **_):
        await self.adapter.security.reconnect_if_wanted(self.adapter.close_connection)

    @on(Action.install_certificate)
    def _install_certificate(self, certificate_type: str, certificate: str, **_):
        return call_result.InstallCertificate(status=self.adapter.security.install_certificate(certificate_type,
                                                                                               certificate))

    @on(Action.get_installed_certificate_ids)
    def _get_installed_certificate_ids(self, certificate_type: list[str] | None = None, **_):
        status, chain = self.adapter.security.installed_certificate_ids(certificate_type)
        return call_result.GetInstalledCertificateIds(status=status, certificate_hash_data_chain=chain or None)

    @on(Action.delete_certificate)
    def _delete_certificate(self, certificate_hash_data: dict, **_):
        return call_result.DeleteCertificate(status=self.adapter.security.delete_certificate(
            snake_to_camel_case(certificate_hash_data)))

    @on(Action.certificate_signed)
    def _certificate_signed(self, certificate_chain: str, certificate_type: str | None = None, **_):
        return call_result.CertificateSigned(status=self.adapter.security.certificate_signed(certificate_chain,
                                                                                             certificate_type))

    @after(Action.certificate_signed)
    async def _use_new_certificate(self, **_):
        await self.adapter.security.reconnect_if_wanted(self.adapter.close_connection)

    @on(Action.update_firmware)
    def _update_firmware(self, request_id: int, firmware: dict, retries: int | None = None,
                         retry_interval: int | None = None, **_):
        return call_result.UpdateFirmware(status=self.adapter.security.update_firmware(request_id, firmware, retries,
                                                                                       retry_interval))

    @on(Action.set_network_profile)
    def _set_network_profile(self, configuration_slot: int, connection_data: dict, **_):
        return call_result.SetNetworkProfile(status=self.adapter.security.set_network_profile(configuration_slot,
                                                                                             connection_data))

    @on(Action.get_log)
    def _get_log(self, log: dict, log_type: str, request_id: int, retries: int | None = None,
                 retry_interval: int | None = None, **_):
        status, filename = self.adapter.security.get_log(log_type, request_id, log, retries, retry_interval)
        return call_result.GetLog(status=status, filename=filename)


class Ocpp201Adapter:
    """Lives as long as the controller; ``run`` keeps the connection."""

    def __init__(self, config: Config, controller: "Controller", trace: FrameTrace | None = None,
                 store: "StateStore | None" = None, offer_1_6: bool = False):
        self.config = config
        self.controller = controller
        self.connectors = config.charge_point.connectors
        self.trace = trace or FrameTrace()
        self.offer_1_6 = offer_1_6
        self.outbox = Outbox(store)
        self.link: CsmsRequests | None = None
        self.connected = False
        self.registration: str | None = None
        self.last_contact: float | None = None
        self._store = store
        self._online = asyncio.Event()
        self._heartbeat_changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.device_model = station_device_model(config, MAX_CERTIFICATE_CHAIN_BYTES)
        self.device_model.set_initial(config.ocpp.variables)
        for problem in self.device_model.restore(self._load(VARIABLES)):
            log.warning("stored OCPP 2.0.1 variable not restored: %s", problem)
        self.security = StationSecurity(config, controller, self.device_model, store, self._call, self._online,
                                        lambda: self._save(VARIABLES, self.device_model.saved()),
                                        lambda: self._save(BOOT_REASON, "FirmwareUpdate"))
        self.transactions = Transactions(self.outbox, store, self._start_points, self._stop_points, self._measurands,
                                         self._read_meter)
        self.smart_charging = SmartCharging(controller, self.transactions, self.device_model)
        self.boot_reason = self._load(BOOT_REASON) or "PowerUp"
        self._save(BOOT_REASON, None)
        self.authorization = StationAuthorization(self.device_model, store)
        self.reservation_updates = StatusUpdates(self._load, self._save)
        self.problems = ProblemReports(self._problem_value)
        self._accepted_tokens: set[str] = set()
        """Id tokens the CSMS accepted in an AuthorizeResponse, not yet used by a transaction."""
        self._locally_accepted: set[str] = set()
        """Id tokens accepted online from the local list or cache (LocalPreAuthorize, C12/C14)."""
        self._remote_starts: dict[str, tuple[int, str]] = {}
        """id token -> (remoteStartId, IdTokenType) of an accepted RequestStartTransaction, until
        its transaction begins or its authorization ends (EVConnectionTimeOut, ...)."""
        self._token_types: dict[str, str] = {}
        self._awaiting: dict[int, int] = {}
        """core local_id -> EVSE of transactions whose start waits for the TransactionEventResponse."""
        self._evse_resets: set[int] = set()
        """EVSEs to reset once they have no transaction (Part 2 B12)."""
        self._availability_waits: dict[int, asyncio.Task] = {}
        """ChangeAvailability Inoperative (by target, 0: the station) waiting for transactions of
        this adapter's own that the core does not run (started at EVConnected, before any card)."""
        self._status_sent: dict[int, str] = {}
        self.controller.apply_settings(settings_from(self.device_model, self.controller.installer_settings))

    def detach(self) -> None:
        self.outbox.commit_deletions()
        self.security.close()
        for held in self._availability_waits.values():
            held.cancel()

    # ----------------------------------------------------------------- device model

    def _start_points(self) -> list[str]:
        return self.device_model.members("TxCtrlr", "TxStartPoint")

    def _stop_points(self) -> list[str]:
        return self.device_model.members("TxCtrlr", "TxStopPoint")

    def _measurands(self) -> Measurands:
        m = self.device_model.members
        return Measurands(m("SampledDataCtrlr", "TxStartedMeasurands"), m("SampledDataCtrlr", "TxUpdatedMeasurands"),
                          m("SampledDataCtrlr", "TxEndedMeasurands"), m("AlignedDataCtrlr", "Measurands"),
                          m("AlignedDataCtrlr", "TxEndedMeasurands"))

    @property
    def heartbeat_interval(self) -> float:
        return float(self.device_model.number("OCPPCommCtrlr", "HeartbeatInterval"))

    def get_variables(self, items: list[dict]) -> list[dict]:
        """GetVariables (Part 2 B06)."""
        limit = self.device_model.number("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables")
        if len(items) > limit:
            raise OccurrenceConstraintViolationError(
                details={"cause": f"{len(items)} items, ItemsPerMessageGetVariables is {limit}"})
        results = []
        for item in items:
            result = self.device_model.get_variable(item["component"], item["variable"], item.get("attribute_type"))
            answer = {"attribute_status": result.status, "attribute_type": item.get("attribute_type") or "Actual",
                      "component": item["component"], "variable": item["variable"]}
            if result.value is not None:
                answer["attribute_value"] = result.value
            results.append(answer)
        return results

    def set_variables(self, items: list[dict]) -> list[dict]:
        """SetVariables (Part 2 B05): accepted values are stored, then acted on."""
        limit = self.device_model.number("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables")
        if len(items) > limit:
            raise OccurrenceConstraintViolationError(
                details={"cause": f"{len(items)} items, ItemsPerMessageSetVariables is {limit}"})
        results, changed = [], False
        for item in items:
            result = self.device_model.set_variable(item["component"], item["variable"], str(item["attribute_value"]),
                                                    item.get("attribute_type"))
            answer: dict[str, Any] = {"attribute_status": result.status,
                                      "attribute_type": item.get("attribute_type") or "Actual",
                                      "component": item["component"], "variable": item["variable"]}
            if result.reason:
                answer["attribute_status_info"] = {"reason_code": result.reason[:20]}
            results.append(answer)
            if result.status == "Accepted":
                self.security.variable_set(item["component"]["name"], item["variable"]["name"])
            changed = changed or result.status == "Accepted"
        if changed:
            self._save(VARIABLES, self.device_model.saved())
            self.controller.apply_settings(settings_from(self.device_model, self.controller.installer_settings))
            self._heartbeat_changed.set()
        return results

    async def send_report(self, request_id: int, report_base: str) -> None:
        """NotifyReport in parts of ItemsPerMessageGetReport items (Part 2 B07)."""
        items = self.device_model.report(report_base)
        if items is None:
            return
        size = max(1, self.device_model.number("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"))
        parts = [items[i:i + size] for i in range(0, len(items), size)] or [[]]
        generated = timestamp(time.time())
        for seq, part in enumerate(parts):
            payload: dict[str, Any] = {"requestId": request_id, "generatedAt": generated, "seqNo": seq,
                                       "tbc": seq < len(parts) - 1}
            if part:
                payload["reportData"] = part
            await self._call("NotifyReport", payload)

    async def send_all(self, action: str, payloads: list[dict[str, Any]]) -> None:
        """Requests of one kind in order, each after the answer to the one before."""
        for payload in payloads:
            await self._call(action, payload)

    # ----------------------------------------------------------------- the connection

    @property
    def url(self) -> str:
        return self.security.csms_url.rstrip("/") + "/" + self.config.charge_point.id

    @property
    def protocol(self) -> str | None:
        """The OCPP version the open connection speaks (its handshake agreed to nothing else); None
        while there is none."""
        return "2.0.1" if self.connected else None

    @property
    def online(self) -> bool:
        return self._online.is_set()

    def _subprotocols(self) -> list[str]:
        return [SUBPROTOCOL, SUBPROTOCOL_1_6] if self.offer_1_6 else [SUBPROTOCOL]

    async def run(self) -> None:
        """Keep the connection up until cancelled (OCPP-J 2.0.1 §3: the station connects)."""
        self._resume_held_availability()
        failures = 0
        while True:
            settings = self.security.settings()
            try:
                parameters = connection_parameters(self.url, self.config.charge_point.id, settings)
                ping_interval, ping_timeout = keepalive(
                    self.device_model.number("OCPPCommCtrlr", "WebSocketPingInterval"))
                async with connect(parameters.url, subprotocols=self._subprotocols(), proxy=None, open_timeout=10,
                                   ping_interval=ping_interval, ping_timeout=ping_timeout,
                                   close_timeout=CLOSE_TIMEOUT_S, max_size=MAX_FRAME_BYTES,
                                   max_queue=MAX_QUEUED_FRAMES,
                                   ssl=parameters.ssl_context, additional_headers=parameters.headers) as ws:
                    # Leaving ``async with`` by an exception closes with 1011 (internal error); a clean
                    # stop is 1001 going away, the hand-over to 1.6 1000 normal closure (RFC 6455 §7.4.1).
                    if ws.subprotocol == SUBPROTOCOL_1_6 and self.offer_1_6:
                        log.info("central system %s chose OCPP 1.6 in the handshake", self.url)
                        await ws.close(1000, "speaking OCPP 1.6 instead")
                        raise ProtocolChosen("1.6")
                    if ws.subprotocol != SUBPROTOCOL:
                        raise ConnectionError(f"central system did not agree to {SUBPROTOCOL} (got {ws.subprotocol})")
                    failures = 0
                    self.security.connected()
                    try:
                        await self._serve(ws)
                    except asyncio.CancelledError:
                        await ws.close(1001, "charging station stopping")
                        raise
            except (asyncio.CancelledError, ProtocolChosen):
                raise
            except (OSError, websockets.WebSocketException, ConnectionError, TimeoutError,
                    SecuritySettingsError) as error:
                if self.connected:
                    log.warning("connection to central system %s lost: %s", self.url, error or type(error).__name__)
                elif self.security.connection_failed(error, settings.profile):
                    failures = max(failures, 5)  # credentials and certificates do not fix themselves
                elif failures == 0:
                    log.warning("central system %s unreachable: %s", self.url, error or type(error).__name__)
            except Exception:  # noqa: BLE001 - whatever the CSMS does, the station goes on
                log.exception("connection to central system %s ended by an unexpected error; reconnecting", self.url)
            finally:
                self._went_offline()
            failures += 1
            await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        return reconnect_delay(self.config.ocpp, failures)

    async def _serve(self, ws) -> None:
        link = CsmsRequests(self.config.charge_point.id, ws, self.trace,
                            response_timeout=self.config.ocpp.call_timeout_s, on_frame=self._touch)
        link.adapter = self
        self.link, self.connected = link, True
        log.info("connected to central system %s (OCPP 2.0.1)", self.url)
        receiver = asyncio.create_task(link.start(), name="ocpp-receive")
        try:
            registering = asyncio.create_task(self._register(), name="ocpp-boot")
            done, _ = await asyncio.wait([receiver, registering], return_when=asyncio.FIRST_COMPLETED)
            if registering not in done:
                registering.cancel()
                await asyncio.gather(registering, return_exceptions=True)
            for task in done:
                task.result()
            workers = [asyncio.create_task(self._heartbeats(), name="ocpp-heartbeat"),
                       asyncio.create_task(self._drain_outbox(), name="ocpp-outbox"),
                       asyncio.create_task(self.security.deliver_events(), name="ocpp-security-events")]
            try:
                done, _ = await asyncio.wait([receiver, *workers], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    def _went_offline(self) -> None:
        if self.connected:
            log_disconnected(log)
        self.connected = False
        self.link = None
        self._online.clear()

    def _touch(self) -> None:
        self.last_contact = asyncio.get_running_loop().time()

    async def _register(self) -> None:
        """BootNotification until Accepted (Part 2 B01-B03); with Pending or Rejected it is sent
        again after the interval given, and nothing else is sent meanwhile."""
        if self.registration == "Accepted":
            log.info("reconnected; registration still valid, reporting current statuses")
        while self.registration != "Accepted":
            cp = self.config.charge_point
            station: dict[str, Any] = {"model": cp.model, "vendorName": cp.vendor,
                                       "firmwareVersion": f"evcp {evcp.__version__}"}
            if cp.serial_number:
                station["serialNumber"] = cp.serial_number
            answer = await self._call("BootNotification", {"chargingStation": station, "reason": self.boot_reason})
            self.registration = answer["status"]
            self.controller.central_system_time(answer["currentTime"])
            interval = int(answer["interval"])
            log.info("BootNotification (%s): %s (interval %ss)", self.boot_reason, answer["status"], interval)
            if answer["status"] == "Accepted":
                if interval > 0:
                    self.device_model.set_internal("OCPPCommCtrlr", "HeartbeatInterval", str(interval))
                break
            await asyncio.sleep(interval if interval > 0 else 30.0)
        self._online.set()
        self._status_sent.clear()
        for evse in range(1, self.connectors + 1):
            self._spawn(self._send_status(evse))
        if self.reservation_updates.pending:
            self._spawn(self.reservation_updates.deliver(self._call))
        self._spawn(self._tell_problems())

    async def _heartbeats(self) -> None:
        while True:
            self._heartbeat_changed.clear()
            if await wait_event(self._heartbeat_changed, self.heartbeat_interval):
                continue
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        self.controller.central_system_time((await self._call("Heartbeat", {}))["currentTime"])

    async def _call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        link = self.link
        if link is None:
            raise ConnectionError("not connected")
        return await link.call_payload(action, payload)

    def spawn(self, coro) -> None:
        self._spawn(coro)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    # ----------------------------------------------------------------- transaction messages

    async def _drain_outbox(self) -> None:
        """TransactionEvents strictly in order (Part 2 E: "the Charging Station SHALL deliver
        TransactionEventRequests in the order they were generated")."""
        try:
            await self._send_queued()
        finally:
            self.outbox.commit_deletions()

    async def _send_queued(self) -> None:
        loop = asyncio.get_running_loop()
        self.outbox.connected()
        while True:
            entry = self.outbox.head()
            if entry is None or loop.time() < entry.not_before:
                # Empty: put() wakes it, nothing to poll for.
                await self.outbox.wait(None if entry is None else entry.not_before - loop.time())
                continue
            if entry.action != ACTION:
                log.error("dropping a queued %s: not an OCPP 2.0.1 message (queued under OCPP 1.6)", entry.action)
                self.outbox.done(entry)
                continue
            if entry.final_reading is not None:
                await self._take_final_reading(entry)
            entry.unanswered = False  # a silence this connection outlived by its interval stays counted
            try:
                answer = await self._call(ACTION, entry.payload)
            except OCPPError as error:
                if not self._retry(entry, f"CALLERROR {error.code}"):
                    self._given_up(entry)
                continue
            except asyncio.TimeoutError:
                if not self._retry(entry, "no answer", unanswered=True):
                    self._given_up(entry)
                continue
            self.outbox.done(entry)
            self._transaction_answered(entry, answer)

    async def _take_final_reading(self, entry) -> None:
        """The Ended event's energy from a reading taken after the contactor opened."""
        try:
            async with asyncio.timeout(5.0):
                energy_wh = await asyncio.shield(entry.final_reading)
        except TimeoutError:
            energy_wh = None
        entry.final_reading = None
        for mv in entry.payload.get("meterValue", []):
            for sampled in mv["sampledValue"]:
                if (energy_wh is not None and sampled.get("context") == "Transaction.End"
                        and sampled.get("measurand") == "Energy.Active.Import.Register" and energy_wh > sampled["value"]):
                    sampled["value"] = round(energy_wh, 1)
                    self.outbox.update(entry)

    def _retry(self, entry, why: str, unanswered: bool = False) -> bool:
        """OCPPCommCtrlr.MessageAttemptsTransactionEvent / MessageAttemptIntervalTransactionEvent
        (E13), ``Outbox.failed``."""
        model = self.device_model
        return self.outbox.failed(entry, why, model.number("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"),
                                  model.number("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"),
                                  unanswered)

    def _given_up(self, entry) -> None:
        """A TransactionEvent that failed its MessageAttempts is dropped (E13); a start waiting
        for its idTokenInfo will get none, and the core hears so (as the 1.6 adapter answers an
        Authorize that got no answer): it ends the attempt without energy."""
        self.outbox.done(entry)
        token = entry.payload.get("idToken")
        evse = self._awaiting.pop(entry.local_id, None) if token and entry.local_id is not None else None
        if evse is not None:
            log.warning("EVSE %d: the central system never answered about %s; no transaction for it",
                        evse, token["idToken"])
            self.controller.post(ev.TransactionStartConfirmed(evse, entry.local_id, entry.local_id, None))

    def _transaction_answered(self, entry, answer: dict[str, Any]) -> None:
        """The idTokenInfo of a TransactionEventResponse goes to the cache (C10), decides a start
        that waits for it, and revokes one already accepted (by an AuthorizeResponse, or by the
        local list or cache with LocalPreAuthorize) that it refuses (Part 2 E05: StopTxOnInvalidId)."""
        token = entry.payload.get("idToken")
        if token is None:
            return
        info = answer.get("idTokenInfo")
        if info is not None:
            self.authorization.learn(token, info, time.time())
        local_id = entry.local_id
        status = AUTH_STATUS.get(info["status"], AuthStatus.INVALID) if info else AuthStatus.INVALID
        if local_id is None:
            # Sent while the authorization waited for the EV (TxStartPoint Authorized, E02).
            tx = self.transactions.with_token(token)
            if tx is None or info is None or status is AuthStatus.ACCEPTED:
                return
            if tx.local_id is None:
                if tx.granted:
                    tx.refused = info["status"]  # E05: the core's transaction is refused when the EV comes
                return
            local_id = tx.local_id  # the EV came meanwhile: that transaction is revoked (below)
        if local_id in self._awaiting:
            evse = self._awaiting.pop(local_id)
            if info is None:
                log.warning("EVSE %d: TransactionEventResponse without idTokenInfo for %s; not accepted",
                            evse, token["idToken"])
            self.controller.post(ev.TransactionStartConfirmed(evse, local_id, local_id, status, _group(info)))
            return
        tx = self.transactions.of_local(local_id)
        if info is not None and status is not AuthStatus.ACCEPTED and tx is not None and tx.id_token == token:
            log.warning("EVSE %d: the central system answered %s for %s in a running transaction",
                        tx.evse, info["status"], token["idToken"])
            self.controller.post(ev.TransactionAuthorizationRevoked(tx.evse, local_id, status))

    def transaction_id(self, local_id: int | None) -> str | None:
        tx = self.transactions.of_local(local_id)
        return tx.transaction_id if tx else None

    async def flush(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (len(self.outbox) or (self.online and len(self.security.events.queue))) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not len(self.outbox)

    # ----------------------------------------------------------------- actions from the core

    def perform(self, action: act.Action) -> None:
        """Take one protocol action from the core; never blocks (sending happens in tasks)."""
        now_online = self.online
        evse = getattr(action, "connector", 0)
        if isinstance(action, act.PlugChanged):
            if action.plugged:
                self.transactions.ev_connected(evse, action.at, now_online)
            else:
                self.transactions.ev_disconnected(evse, action.at, now_online)
        elif isinstance(action, act.StatusChanged):
            # The AvailabilityState variables (Part 2 G01; GetVariables, SummaryInventory) follow.
            self.device_model.set_internal("EVSE" if evse else "ChargingStation", "AvailabilityState",
                                           CONNECTOR_STATUS[action.status], evse or None)
            if evse == 0:
                return
            plugged = self.controller.station.connectors[evse].plugged
            self.transactions.charging_state(evse, charging_state_of(action.status.value, plugged), action.at,
                                             now_online)
            if now_online:
                self._spawn(self._send_status(evse, action.at, status=CONNECTOR_STATUS[action.status]))
        elif isinstance(action, act.RequestAuthorization):
            self._spawn(self._authorize(action.id_tag))
        elif isinstance(action, act.PowerDeliveryChanged):
            self._power_delivery(action, now_online)
        elif isinstance(action, act.Authorized):
            self._authorization_granted(action, now_online)
        elif isinstance(action, act.AuthorizationEnded):
            if action.remote:
                self._remote_starts.pop(action.id_tag, None)  # F01/F02: no EV in time, refused, ...
            self.transactions.authorization_ended(evse, action.id_tag, action.reason, action.at, now_online,
                                                  self.controller.station.connectors[evse].plugged)
        elif isinstance(action, act.ReportTransactionStart):
            self._core_started(action, now_online)
        elif isinstance(action, act.ReportTransactionStop):
            self._core_stopped(action, now_online)
        elif isinstance(action, act.ReportMeterValues):
            self._meter_values(action, now_online)
        elif isinstance(action, act.OfferCurrent):
            self.smart_charging.offer_changed(action.connector, action.amps, self.controller.clock(), now_online)
        elif isinstance(action, act.DeviceProblem):
            self.problems.changed(action.connector, action.device, action.active, action.detail)
            if now_online:
                self._spawn(self._tell_problems())
        elif isinstance(action, act.ReservationEnded):
            if self.reservation_updates.ended(action.reservation_id, action.reason) and now_online:
                self._spawn(self.reservation_updates.deliver(self._call))
        if self._evse_resets:
            self.reset_idle_evses()

    def _read_meter(self, evse: int, measurands: list[str], context: str, at: float) -> dict[str, Any] | None:
        """The EVSE's last meter reading as a MeterValueType of ``measurands`` (None before the first)."""
        report = self.controller.station.meter_report(evse, at, context)
        return meter_value(report, measurands, self.controller.offered_current(evse)) if report else None

    def _power_delivery(self, a: act.PowerDeliveryChanged, online: bool) -> None:
        c = self.controller.station.connectors[a.connector]
        state = charging_state_of(self.controller.status_of(a.connector)[0].value, c.plugged)
        by_ev = c.pilot != "C" or a.power_path_closed  # S2 opened, or the EV takes nothing through the contactor
        local_id = self.transactions.power_delivery(
            a.connector, a.power_path_closed, a.energy_flowing, state, by_ev, a.at, online,
            self._final_reading(a.connector))
        if local_id is not None:
            why = "the contactor opened" if not a.power_path_closed else "the EV stopped drawing energy"
            log.info("EVSE %d: OCPP 2.0.1 TxStopPoint reached (%s): the transaction ends", a.connector, why)
            self.controller.post(ev.RemoteStopRequested(None, StopReason.OTHER, local_id=local_id,
                                                        why=f"OCPP 2.0.1 TxStopPoint reached: {why}"))

    def _final_reading(self, evse: int) -> Callable[[], asyncio.Future]:
        """What starts a fresh meter reading for an Ended event, called only when one is made."""
        return lambda: asyncio.ensure_future(self.controller.fresh_energy_wh(evse))

    def _authorization_granted(self, a: act.Authorized, online: bool) -> None:
        remote = self._remote_starts.get(a.id_tag) if a.remote else None
        token = id_token_for(a.id_tag, remote[1] if remote else self._token_types.get(a.id_tag))
        self.transactions.authorization_granted(a.connector, token, "RemoteStart" if remote else "Authorized",
                                                remote[0] if remote else None, a.at, online,
                                                self.controller.station.connectors[a.connector].plugged)

    def _core_started(self, a: act.ReportTransactionStart, online: bool) -> None:
        remote = self._remote_starts.pop(a.id_tag, None) if a.remote else None
        kind = remote[1] if remote else self._token_types.get(a.id_tag)
        token = id_token_for(a.id_tag, kind)
        if remote is not None and not self.controller.settings.authorize_remote_start:
            accepted_by = "its RequestStartTransaction"
        elif a.id_tag in self._accepted_tokens:
            accepted_by = "AuthorizeResponse"
        elif a.id_tag in self._locally_accepted:
            accepted_by = "local list or cache, LocalPreAuthorize"
        else:
            accepted_by = None
        tx = self.transactions.authorized(a.connector, a.local_id, token, "RemoteStart" if remote else "Authorized",
                                          remote[0] if remote else None, a.reservation_id, a.at, online,
                                          needs_answer=accepted_by is None)
        if tx.refused is not None:
            log.warning("EVSE %d: the central system answered %s for %s before the EV came; not accepted",
                        a.connector, tx.refused, a.id_tag)
            self._accepted_tokens.discard(a.id_tag)
            self._locally_accepted.discard(a.id_tag)
            self.controller.post(ev.TransactionStartConfirmed(a.connector, a.local_id, a.local_id,
                                                              AUTH_STATUS.get(tx.refused, AuthStatus.INVALID)))
            return
        if accepted_by is None:
            self._awaiting[a.local_id] = a.connector
            log.info("EVSE %d: %s waits for the TransactionEventResponse idTokenInfo", a.connector, a.id_tag)
            return
        self._accepted_tokens.discard(a.id_tag)
        self._locally_accepted.discard(a.id_tag)
        log.info("EVSE %d: %s accepted (%s)", a.connector, a.id_tag, accepted_by)
        self.controller.post(ev.TransactionStartConfirmed(a.connector, a.local_id, a.local_id, AuthStatus.ACCEPTED))

    def _core_stopped(self, a: act.ReportTransactionStop, online: bool) -> None:
        if self._store is not None:
            self._store.transaction_stopped(a.local_id)  # the 1.6 recovery must never stop it again
        self._awaiting.pop(a.local_id, None)
        token = id_token_for(a.id_tag, self._token_types.get(a.id_tag)) if a.id_tag else None
        self.transactions.core_stopped(a.connector, a.local_id, a.reason, token, a.at, online,
                                       plugged=self.controller.station.connectors[a.connector].plugged,
                                       final_reading=self._final_reading(a.connector))

    def _meter_values(self, report: act.ReportMeterValues, online: bool) -> None:
        """Periodic and clock-aligned readings (Part 2 J01/J02): an Updated of the running
        transaction (MeterValuePeriodic, MeterValueClock) or MeterValues without one; those taken
        for the transaction's end are kept for its Ended."""
        aligned = report.context == "Sample.Clock"
        measurands = self._measurands()
        offered = self.controller.offered_current(report.connector)
        if report.for_transaction_end:
            self.transactions.end_sample(report.connector, meter_value(
                report, measurands.aligned_ended if aligned else measurands.ended, offered))
            return
        value = meter_value(report, measurands.aligned if aligned else measurands.updated, offered)
        trigger = "MeterValueClock" if aligned else "MeterValuePeriodic"
        if report.local_id is not None and self.transactions.meter_values(report.connector, trigger, value,
                                                                          report.at, online):
            return
        if online:
            self._spawn(self._call("MeterValues", {"evseId": report.connector, "meterValue": [value]}))

    async def _send_status(self, evse: int, at: float | None = None, force: bool = False,
                           status: str | None = None) -> None:
        """StatusNotification of the EVSE's connector (Part 2 G01), when its 2.0.1 status changed;
        ``status`` as the core reported it at ``at``, else as it is now."""
        status = status or CONNECTOR_STATUS[self.controller.status_of(evse)[0]]
        if not force and self._status_sent.get(evse) == status:
            return
        self._status_sent[evse] = status
        await self._call("StatusNotification", {"timestamp": timestamp(at or time.time()), "connectorStatus": status,
                                                "evseId": evse, "connectorId": CONNECTOR_ID})

    def _problem_value(self, component: str, evse: int | None, value: str) -> None:
        try:
            self.device_model.set_internal(component, "Problem", value, evse)
        except KeyError:
            log.warning("no %s.Problem%s in the device model", component, f" on EVSE {evse}" if evse else "")

    async def _tell_problems(self) -> None:
        """NotifyEvent of the devices' problems the CSMS does not know yet (Part 2 G05, N07)."""
        def transaction_of(evse: int) -> str | None:
            tx = self.transactions.by_evse.get(evse)
            return tx.transaction_id if tx is not None and tx.started else None

        try:
            await self.problems.tell(self._call, transaction_of)
        except (ConnectionError, TimeoutError, OCPPError) as error:
            log.warning("NotifyEvent of a device problem not delivered (%s); told again once registered",
                        error or type(error).__name__)

    async def _authorize(self, id_tag: str) -> None:
        """AuthorizeRequest (Part 2 C01), or the local list or cache where C12-C15 let them decide
        (``evcp.ocpp201.authorization``); always answers the core, offline included (nothing known:
        status None, and the core applies OfflineTxForUnknownIdEnabled)."""
        token = id_token_for(id_tag, self._token_types.get(id_tag))
        self._accepted_tokens.discard(id_tag)
        self._locally_accepted.discard(id_tag)
        try:
            online = self.online
            decision = self.authorization.decide(token, time.time(), online=online)
            if decision.ask_central_system:
                try:
                    answer = await self._call("Authorize", {"idToken": token})
                except Exception as error:  # noqa: BLE001 - a lost connection must not leave the card hanging
                    log.warning("Authorize %s got no answer: %s", id_tag, error or type(error).__name__)
                    online = False
                    decision = self.authorization.decide(token, time.time(), online=False)
                else:
                    info = answer["idTokenInfo"]
                    self.authorization.learn(token, info, time.time())
                    status = AUTH_STATUS.get(info["status"], AuthStatus.INVALID)
                    if status is AuthStatus.ACCEPTED:
                        self._accepted_tokens.add(id_tag)
                    log.info("Authorize %s (%s): %s", id_tag, token["type"], info["status"])
                    self.controller.post(ev.AuthorizationResult(id_tag, status, _group(info)))
                    return
            if decision.info is not None:
                status = AUTH_STATUS.get(decision.info.status, AuthStatus.INVALID)
                if status is AuthStatus.ACCEPTED and online:
                    self._locally_accepted.add(id_tag)
                log.info("Authorize %s (%s): %s from the %s%s", id_tag, token["type"], decision.info.status,
                         decision.source, "" if online else " (central system offline)")
                self.controller.post(ev.AuthorizationResult(id_tag, status, decision.info.group_id,
                                                            offline=not online))
                return
            log.info("Authorize %s: central system offline and nothing known locally", id_tag)
            self.controller.post(ev.AuthorizationResult(id_tag, None))
        except BaseException:
            self.controller.post(ev.AuthorizationResult(id_tag, None))
            raise

    # ----------------------------------------------------------------- requests from the CSMS

    def command(self, event) -> str:
        """Hand a CSMS command to the core now; its Answer is the reply's status."""
        for action in self.controller.dispatch(event):
            if isinstance(action, act.Answer):
                return action.status
        raise RuntimeError(f"the core gave no answer to {event}")

    def request_start(self, id_token: dict, remote_start_id: int, evse_id: int | None,
                      charging_profile: dict | None) -> tuple[str, str | None]:
        """RequestStartTransaction (Part 2 F01/F02)."""
        if evse_id is not None and not 1 <= evse_id <= self.connectors:
            return "Rejected", None
        core_profile = None
        if charging_profile is not None:
            try:
                core_profile = self.smart_charging.start_profile(charging_profile)  # K05
            except Refused as refused:
                log.info("RequestStartTransaction refused: %s", refused.info)
                return "Rejected", None
        tag, kind = id_token["id_token"], id_token["type"]
        self._token_types[tag] = kind
        self._remote_starts[tag] = (remote_start_id, kind)
        open_tx = self.transactions.by_evse.get(evse_id) if evse_id is not None else None
        status = self.command(ev.RemoteStartRequested(evse_id, tag, core_profile))
        if status != "Accepted":
            self._remote_starts.pop(tag, None)
        return status, open_tx.transaction_id if open_tx and status == "Accepted" else None

    def reserve_now(self, request: dict[str, Any]) -> str:
        """ReserveNow (Part 2 H01): the core reserves the EVSE (or, with no evseId, keeps one EVSE
        free) for the IdToken or its groupIdToken; the TransactionEvent that uses the reservation
        carries its reservationId."""
        try:
            reservation = reserve_now_event(self.device_model, self.connectors, **request)
        except ReservationRefused as refused:
            log.info("ReserveNow %s: %s (%s)", request.get("id"), refused.status, refused)
            return refused.status
        status = self.command(reservation)
        if status == "Accepted":
            self._token_types[reservation.id_tag] = request["id_token"]["type"]
        return status

    def transaction_status(self, transaction_id: str | None) -> dict[str, bool]:
        """GetTransactionStatus (Part 2 E14): whether TransactionEvents wait in the queue (of that
        transaction, if named) and, for a named one, whether it is still ongoing (an unknown one:
        neither)."""
        if transaction_id is None:
            return {"messages_in_queue": self.outbox.holds(ACTION)}
        return {"ongoing_indicator": self.transactions.find(transaction_id) is not None,
                "messages_in_queue": self.outbox.holds(ACTION, "$.transactionInfo.transactionId", transaction_id)}

    def request_stop(self, transaction_id: str) -> str:
        """RequestStopTransaction (Part 2 F03): the core stops its transaction (reason Remote), also
        one whose start still waits for its TransactionEventResponse; a transaction the core does
        not run (cable only) ends here."""
        tx = self.transactions.find(transaction_id)
        if tx is None:
            return "Rejected"
        if tx.local_id is not None:
            return self.command(ev.RemoteStopRequested(None, local_id=tx.local_id))
        self.transactions.end(tx, StopReason.REMOTE, self.controller.clock(), self.online)
        return "Accepted"

    def reset(self, kind: str, evse_id: int | None) -> str:
        """Reset (Part 2 B11/B12). The station: Immediate ends every open transaction (triggerReason
        ResetCommand, stoppedReason ImmediateReset) and restarts once their events are delivered;
        OnIdle waits until none is open (Scheduled). An EVSE alone (B12): Immediate ends its
        transaction the same way, OnIdle waits for it to end (Scheduled); then the EVSE alone is
        reset (``reset_idle_evses``), nothing else restarts."""
        if evse_id is not None:
            if not 1 <= evse_id <= self.connectors:
                return "Rejected"
            busy = not self._idle(evse_id)
            if busy and kind == "Immediate":
                self._end_for_reset(evse_id, f"reset of EVSE {evse_id} requested by the central system")
            self._evse_resets.add(evse_id)  # after the stop: reset once the Reset response went out
            return "Scheduled" if busy and kind == "OnIdle" else "Accepted"
        self._save(BOOT_REASON, "RemoteReset")
        busy = [evse for evse in range(1, self.connectors + 1) if not self._idle(evse)]
        if kind == "OnIdle" and busy:
            self._spawn(self._reset_when_idle())
            return "Scheduled"
        for evse in busy:
            if self.controller.station.connectors[evse].transaction is None:  # the core ends its own below
                self._end_for_reset(evse, "reset requested by the central system")
        return self.command(ev.ResetRequested(hard=False))

    def _end_for_reset(self, evse: int, why: str) -> None:
        """An Immediate reset ends the EVSE's transaction (B11/B12: ResetCommand, ImmediateReset):
        the core's, also while its start waits for the TransactionEventResponse, or this adapter's
        own that the core does not run (TxStartPoint EVConnected: the cable alone keeps it open)."""
        core_tx = self.controller.station.connectors[evse].transaction
        if core_tx is not None:
            self.command(ev.RemoteStopRequested(None, StopReason.HARD_RESET, why=why, local_id=core_tx.local_id))
            return
        tx = self.transactions.by_evse.get(evse)
        if tx is not None:
            self.transactions.end(tx, StopReason.HARD_RESET, self.controller.clock(), self.online)

    def reset_idle_evses(self) -> None:
        """Reset each EVSE waiting for it that has no transaction any more (B12)."""
        for evse in sorted(self._evse_resets):
            if self._idle(evse):
                self._evse_resets.discard(evse)
                self._reset_evse(evse)

    def _idle(self, evse: int) -> bool:
        """No transaction on the EVSE: neither the core's nor one the CSMS knows of."""
        tx = self.transactions.by_evse.get(evse)
        return self.controller.station.connectors[evse].transaction is None and (tx is None or not tx.started)

    def _reset_evse(self, evse: int) -> None:
        """B12: the EVSE goes Unavailable and is initialised again: its authorization dropped, the
        contactor open, the pilot without PWM; then it is as available as it was before (posted:
        this may run within a dispatch)."""
        c = self.controller.station.connectors[evse]
        operative = c.operative if c.pending_operative is None else c.pending_operative
        log.info("EVSE %d: reset", evse)
        self.controller.post(ev.AvailabilityRequested(evse, False))
        if operative:
            self.controller.post(ev.AvailabilityRequested(evse, True))

    async def _reset_when_idle(self) -> None:
        while not all(self._idle(evse) for evse in range(1, self.connectors + 1)):
            await asyncio.sleep(1.0)
        self.controller.dispatch(ev.ResetRequested(hard=False))

    def change_availability(self, operational_status: str, evse: dict | None) -> str:
        """ChangeAvailability (Part 2 G03/G04) of the station, an EVSE or its connector. Inoperative
        during a transaction is Scheduled and applied once it ended: the core holds it for its own
        transactions, this adapter for a transaction the core does not run (TxStartPoint EVConnected,
        no card yet). A later request for the same target replaces a held one."""
        target = 0
        if evse is not None:
            target = evse["id"]
            if evse.get("connector_id") not in (None, CONNECTOR_ID) or not 0 <= target <= self.connectors:
                return "Rejected"
        held = self._availability_waits.pop(target, None)
        if held is not None:
            held.cancel()
            self._save(HELD_AVAILABILITY, sorted(self._availability_waits))
        request = ev.AvailabilityRequested(target, operational_status == "Operative")
        if request.operative or not any(self.controller.station.connectors[e].transaction is None
                                        for e in self._open_transactions_on(target)):
            return self.command(request)
        self._hold_inoperative(target)
        return "Scheduled"

    def _hold_inoperative(self, target: int) -> None:
        """Inoperative once this adapter's own transactions on ``target`` ended; kept in the state
        directory, so that a restart meanwhile still applies it (Part 2 G03: the operational state
        survives a reboot)."""
        held = self._availability_waits[target] = asyncio.get_running_loop().create_task(
            self._apply_once_ended(ev.AvailabilityRequested(target, False)))
        held.add_done_callback(_log_failure)
        self._save(HELD_AVAILABILITY, sorted(self._availability_waits))

    def _resume_held_availability(self) -> None:
        for target in self._load(HELD_AVAILABILITY) or []:
            if isinstance(target, int) and 0 <= target <= self.connectors and target not in self._availability_waits:
                log.info("%s: ChangeAvailability Inoperative scheduled before the restart, applied once no "
                         "transaction runs", f"EVSE {target}" if target else "the station")
                self._hold_inoperative(target)

    def _open_transactions_on(self, target: int) -> list[int]:
        """The EVSEs of ``target`` (0: all) with a transaction (``_idle``)."""
        return [e for e in (range(1, self.connectors + 1) if target == 0 else (target,)) if not self._idle(e)]

    async def _apply_once_ended(self, request: ev.AvailabilityRequested) -> None:
        while self._open_transactions_on(request.connector):
            await asyncio.sleep(1.0)
        self._availability_waits.pop(request.connector, None)
        self.controller.dispatch(request)
        self._save(HELD_AVAILABILITY, sorted(self._availability_waits))

    async def unlock(self, evse_id: int, connector_id: int) -> str:
        """UnlockConnector (Part 2 F05): never during an authorized transaction; the answer is the
        lock feedback's."""
        if not 1 <= evse_id <= self.connectors or connector_id != CONNECTOR_ID:
            return "UnknownConnector"
        if self.controller.station.connectors[evse_id].transaction is not None:
            return "OngoingAuthorizedTransaction"
        status = await self.controller.unlock_connector(evse_id)
        return "Unlocked" if status == "Unlocked" else "UnlockFailed"

    def trigger_answer(self, message: str, evse: dict | None) -> str:
        """TriggerMessageResponse status (Part 2 F06)."""
        if message not in TRIGGERABLE:
            return "NotImplemented"
        if evse is not None and not 1 <= evse.get("id", 0) <= self.connectors:
            return "Rejected"
        if message == "BootNotification" and self.registration == "Accepted":
            return "Rejected"  # F06.FR.17: no BootNotification once it was accepted
        if message in SECURITY_TRIGGERS:
            return self.security.trigger_answer(message)
        return "Accepted"

    def spawn_triggered(self, message: str, evse: dict | None) -> None:
        """After the TriggerMessageResponse, in a task: never a CALL awaited inside a handler."""
        self._spawn(self.send_triggered(message, evse))

    async def send_triggered(self, message: str, evse: dict | None) -> None:
        evses = [evse["id"]] if evse else list(range(1, self.connectors + 1))
        now = self.controller.clock()
        if message == "BootNotification":
            self.boot_reason = "Triggered"
            self.registration = None
            self._online.clear()
            await self._register()
        elif message == "Heartbeat":
            await self._heartbeat()
        elif message == "StatusNotification":
            for e in evses:
                await self._send_status(e, force=True)
        elif message == "MeterValues":
            for e in evses:
                report = self.controller.meter_report(e, "Trigger")
                if report is not None:
                    value = meter_value(report, self._measurands().aligned, self.controller.offered_current(e))
                    await self._call("MeterValues", {"evseId": e, "meterValue": [value]})
        elif message in SECURITY_TRIGGERS:
            await self.security.send_triggered(message)
        elif message == "TransactionEvent":
            for e in evses:
                report = self.controller.meter_report(e, "Trigger")
                value = meter_value(report, self._measurands().updated, self.controller.offered_current(e)) \
                    if report is not None else None
                tx = self.transactions.by_evse.get(e)
                if tx is not None and tx.started:
                    self.transactions.trigger(e, value, now, self.online)

    # ----------------------------------------------------------------- storage

    def _load(self, name: str):
        return self._store.load_document(name) if self._store is not None else None

    def _save(self, name: str, body) -> None:
        if self._store is None:
            return
        try:
            self._store.save_document(name, body)
        except StoreError as error:
            log.error("cannot store the %s: %s", name, error)

    # The adapter interface the runtime calls on either protocol.

    def security_event(self, event_type: str, info: str | None = None, at: float | None = None) -> None:
        """A SecurityEventNotification (Part 2 A04), durable until delivered (``StationSecurity.report``)."""
        self.security.report(event_type, info, at)

    async def close_connection(self) -> None:
        """Close the websocket; ``run`` reconnects with the settings then in force."""
        link = self.link
        if link is not None:
            await link._connection.close(1000, "reconnecting with new security settings")


def _group(info: dict | None) -> str | None:
    group = (info or {}).get("groupIdToken")
    return group.get("idToken") if group else None


def _log_failure(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, (ConnectionError, websockets.ConnectionClosed, TimeoutError)):
        log.error("OCPP 2.0.1 task failed: %r", error)
