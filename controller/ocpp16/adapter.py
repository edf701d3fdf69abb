"""OCPP 1.6J adapter: the core's actions become OCPP messages, OCPP requests become core events.

One object lives as long as the controller. It keeps the websocket to the
central system up (reconnecting with backoff), registers with BootNotification,
sends heartbeats, drains the transaction outbox in order, and answers the
central system's requests by asking the core.

It connects with the security profile and password in force (``evcp.ocpp.security``):
when the central system changes either, the connection is closed once the answer is sent
and opened again with the new settings; if those cannot connect, the previous ones come
back. Security events (whitepaper "Security events") are sent once the charger is
registered; until then they wait in the state database, like transaction messages.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import websockets
from ocpp.charge_point import camel_to_snake_case, remove_nones, snake_to_camel_case
from ocpp.exceptions import OCPPError, OccurrenceConstraintViolationError
from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect

import evcp
from evcp.aio import wait_event
from evcp.config import Config
from evcp.connection import (CLOSE_TIMEOUT_S, MAX_FRAME_BYTES, MAX_QUEUED_FRAMES, keepalive, log_disconnected,
                             reconnect_delay)
from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core.model import AuthStatus, Settings
from evcp.ocpp.certificates import CertificateStore
from evcp.ocpp16.configuration import Configuration, TooManyKeysRequested, apply_installer_settings
from evcp.ocpp.diagnostics import LogUploads, log_files
from evcp.ocpp.firmware import FirmwareUpdater, SessionGate
from evcp.ocpp.framing import request_time
from evcp.ocpp16.link import ChargePointLink
from evcp.ocpp.trace import FrameTrace
from evcp.ocpp16.local_auth import AuthorizationCache, IdTagInfo, LocalAuthList, LocalAuthorization
from evcp.ocpp16.meter_values import meter_values_payload
from evcp.timestamps import timestamp
from evcp.ocpp.transfer import shown_url, transfer_tls_context
from evcp.ocpp.outbox import Outbox, SecurityEventQueue, SecurityEvents
from evcp.ocpp.security import (
    ConnectionParameters,
    HandshakeFailure,
    PendingFailures,
    SecuritySettings,
    SecuritySettingsError,
    classify_failure,
    connection_parameters,
    restrict_to_owner,
)

from evcp.storage import StoreError

if TYPE_CHECKING:
    from evcp.runtime.controller import Controller
    from evcp.storage import StateStore

log = logging.getLogger("evcp.ocpp")

TRIGGERABLE = {"BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification", "Heartbeat",
               "MeterValues", "StatusNotification"}
"""TriggerMessage targets (OCPP 1.6 §5.17, MessageTrigger): every one the standard names."""
EXTENDED_TRIGGERABLE = {"BootNotification", "FirmwareStatusNotification", "Heartbeat", "LogStatusNotification",
                        "MeterValues", "SignChargePointCertificate", "StatusNotification"}
"""ExtendedTriggerMessage targets (security whitepaper, MessageTriggerEnumType): every one it names;
FirmwareStatusNotification means SignedFirmwareStatusNotification there."""

ATTEMPTS_BEFORE_FALLBACK = 3
"""Failed connection attempts with new security settings before the previous ones come back."""
REPEATED_PROBLEM_LOG_S = 600.0
"""A connection problem that does not change is logged again after this long, not at each retry."""
HANDSHAKE_REFUSALS = (SecuritySettingsError, websockets.InvalidStatus, websockets.InvalidMessage, ssl.SSLError)
"""Connection attempts refused by the central system, by TLS or by the settings themselves, as
opposed to a network that does not answer."""
RECONNECT_GRACE_S = 1.0
"""After accepting new security settings, requests the central system sends right away (OCTT
TC_083 follows the change with a Reset) are still answered on the old connection this long."""
BOOT_RETRY_S = 30.0
"""BootNotification is sent again after this long when the central system gives no interval."""
NOTIFICATION_WAIT_S = 60.0
"""How long a firmware or upload status notification waits for the connection to come back."""
LOCAL_LIST = "local-authorization-list"
AUTHORIZATION_CACHE = "authorization-cache"
"""Names of the stored documents."""
STATE_DAMAGED_EVENT = "StateDatabaseDamaged"
"""Security event of this charger (the whitepaper's list is open): the state database's
write-ahead log was damaged at start-up; techInfo says what was kept."""


def settings_from(configuration: Configuration, base: Settings) -> Settings:
    """The core's settings from the OCPP configuration keys (OCPP 1.6 §9.1)."""
    return replace(
        base,
        connection_timeout_s=float(configuration.get("ConnectionTimeOut")),
        stop_on_ev_disconnect=bool(configuration.get("StopTransactionOnEVSideDisconnect")),
        unlock_on_ev_disconnect=bool(configuration.get("UnlockConnectorOnEVSideDisconnect")),
        stop_on_invalid_id=bool(configuration.get("StopTransactionOnInvalidId")),
        authorize_remote_start=bool(configuration.get("AuthorizeRemoteTxRequests")),
        meter_sample_interval_s=float(configuration.get("MeterValueSampleInterval")),
        clock_aligned_interval_s=float(configuration.get("ClockAlignedDataInterval")),
        allow_offline_unknown=bool(configuration.get("AllowOfflineTxForUnknownId")),
        max_energy_on_invalid_wh=float(configuration.get("MaxEnergyOnInvalidId")),
        reserve_connector_zero=bool(configuration.get("ReserveConnectorZeroSupported")),
        max_stack_level=int(configuration.get("ChargeProfileMaxStackLevel")),
        max_schedule_periods=int(configuration.get("ChargingScheduleMaxPeriods")),
        max_charging_profiles=int(configuration.get("MaxChargingProfilesInstalled")),
        charging_rate_units=tuple(configuration.get("ChargingScheduleAllowedChargingRateUnit")),
    )


class CentralSystemLink(ChargePointLink):
    """Requests from the central system, each handed to the adapter."""

    adapter: "Ocpp16Adapter"

    @on(Action.remote_start_transaction)
    def _remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile=None, **_):
        return call_result.RemoteStartTransaction(
            status=self.adapter.command(ev.RemoteStartRequested(connector_id, id_tag, charging_profile)))

    @on(Action.set_charging_profile)
    def _set_charging_profile(self, connector_id: int, cs_charging_profiles: dict, **_):
        return call_result.SetChargingProfile(
            status=self.adapter.command(ev.ChargingProfileRequested(connector_id, cs_charging_profiles)))

    @on(Action.clear_charging_profile)
    def _clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                charging_profile_purpose: str | None = None, stack_level: int | None = None, **_):
        return call_result.ClearChargingProfile(status=self.adapter.command(ev.ClearChargingProfileRequested(
            id, connector_id, charging_profile_purpose, stack_level)))

    @on(Action.get_composite_schedule)
    def _get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_):
        schedule = self.adapter.controller.composite_schedule(connector_id, duration, charging_rate_unit)
        if schedule is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=timestamp(schedule.start),
            charging_schedule=camel_to_snake_case(schedule.to_ocpp()))

    @on(Action.remote_stop_transaction)
    def _remote_stop(self, transaction_id: int, **_):
        return call_result.RemoteStopTransaction(
            status=self.adapter.command(ev.RemoteStopRequested(transaction_id)))

    @on(Action.change_availability)
    def _change_availability(self, connector_id: int, type: str, **_):
        return call_result.ChangeAvailability(
            status=self.adapter.command(ev.AvailabilityRequested(connector_id, type == "Operative")))

    @on(Action.reset)
    def _reset(self, type: str, **_):
        status = self.adapter.command(ev.ResetRequested(type == "Hard"))
        if status == "Accepted":
            self.adapter.security_event("ResetOrReboot", f"{type} reset requested by the central system")
        return call_result.Reset(status=status)

    @on(Action.unlock_connector)
    async def _unlock(self, connector_id: int, **_):
        # OCPP 1.6 §5.19: the answer says whether the lock really let go (its feedback), so it waits for it.
        return call_result.UnlockConnector(status=await self.adapter.controller.unlock_connector(connector_id))

    @on(Action.get_configuration)
    def _get_configuration(self, key: list[str] | None = None, **_):
        try:
            known, unknown = self.adapter.configuration.get_configuration(key)
        except TooManyKeysRequested as error:
            raise OccurrenceConstraintViolationError(details={"cause": str(error)})
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def _change_configuration(self, key: str, value: str, **_):
        status = self.adapter.change_configuration(key, value)
        log.info("ChangeConfiguration %s: %s", key, status)
        return call_result.ChangeConfiguration(status=status)

    @after(Action.change_configuration)
    async def _configuration_changed(self, **_):
        # After the answer went out: the central system hears Accepted before the reconnect.
        await self.adapter.reconnect_if_security_changed()

    @on(Action.reserve_now)
    def _reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                     parent_id_tag: str | None = None, **_):
        expires_at = request_time(expiry_date, "expiryDate")
        return call_result.ReserveNow(status=self.adapter.command(
            ev.ReserveNowRequested(connector_id, reservation_id, id_tag, expires_at, parent_id_tag)))

    @on(Action.cancel_reservation)
    def _cancel_reservation(self, reservation_id: int, **_):
        return call_result.CancelReservation(
            status=self.adapter.command(ev.CancelReservationRequested(reservation_id)))

    @on(Action.clear_cache)
    def _clear_cache(self, **_):
        return call_result.ClearCache(status=self.adapter.clear_cache())

    @on(Action.send_local_list)
    def _send_local_list(self, list_version: int, update_type: str, local_authorization_list=None, **_):
        return call_result.SendLocalList(
            status=self.adapter.send_local_list(list_version, update_type, local_authorization_list))

    @on(Action.get_local_list_version)
    def _get_local_list_version(self, **_):
        return call_result.GetLocalListVersion(list_version=self.adapter.local_authorization.list_version(
            list_enabled=bool(self.adapter.configuration.get("LocalAuthListEnabled"))))

    @on(Action.install_certificate)
    def _install_certificate(self, certificate_type: str, certificate: str, **_):
        status, why = self.adapter.certificates.install(certificate_type, certificate)
        log.info("InstallCertificate %s: %s%s", certificate_type, status, f" ({why})" if why else "")
        return call_result.InstallCertificate(status=status)

    @on(Action.get_installed_certificate_ids)
    def _get_installed_certificate_ids(self, certificate_type: str, **_):
        status, ids = self.adapter.certificates.installed_ids(certificate_type)
        return call_result.GetInstalledCertificateIds(status=status, certificate_hash_data=ids or None)

    @on(Action.delete_certificate)
    def _delete_certificate(self, certificate_hash_data: dict, **_):
        status = self.adapter.certificates.delete(
            snake_to_camel_case(certificate_hash_data),
            protect_last_central_system_root=self.adapter.needs_installed_roots())
        log.info("DeleteCertificate serial %s: %s", certificate_hash_data.get("serial_number"), status)
        return call_result.DeleteCertificate(status=status)

    @on(Action.certificate_signed)
    def _certificate_signed(self, certificate_chain: str, **_):
        return call_result.CertificateSigned(status=self.adapter.certificate_signed(certificate_chain))

    @after(Action.certificate_signed)
    async def _switch_certificate(self, **_):
        await self.adapter.reconnect_if_security_changed()

    @on(Action.update_firmware)
    def _update_firmware(self, location: str, retrieve_date: str, retries: int | None = None,
                         retry_interval: int | None = None, **_):
        self.adapter.firmware.update(location, request_time(retrieve_date, "retrieveDate"), retries, retry_interval)
        log.info("UpdateFirmware from %s at %s", shown_url(location), retrieve_date)
        return call_result.UpdateFirmware()

    @on(Action.signed_update_firmware)
    def _signed_update_firmware(self, request_id: int, firmware: dict, retries: int | None = None,
                                retry_interval: int | None = None, **_):
        install = firmware.get("install_date_time")
        status = self.adapter.firmware.signed_update(
            request_id, firmware["location"], request_time(firmware["retrieve_date_time"], "retrieveDateTime"),
            retries, retry_interval, request_time(install, "installDateTime") if install else None,
            firmware["signing_certificate"], firmware["signature"])
        log.info("SignedUpdateFirmware %d from %s: %s", request_id, shown_url(firmware["location"]), status)
        return call_result.SignedUpdateFirmware(status=status)

    @on(Action.get_diagnostics)
    def _get_diagnostics(self, location: str, retries: int | None = None, retry_interval: int | None = None,
                         start_time: str | None = None, stop_time: str | None = None, **_):
        file_name = self.adapter.logs.get_diagnostics(
            location, request_time(start_time, "startTime") if start_time else None,
            request_time(stop_time, "stopTime") if stop_time else None, retries, retry_interval)
        return call_result.GetDiagnostics(file_name=file_name)

    @on(Action.get_log)
    def _get_log(self, log: dict, log_type: str, request_id: int, retries: int | None = None,
                 retry_interval: int | None = None, **_):
        oldest, latest = log.get("oldest_timestamp"), log.get("latest_timestamp")
        status, file_name = self.adapter.logs.get_log(
            log_type, request_id, log["remote_location"],
            request_time(oldest, "oldestTimestamp") if oldest else None,
            request_time(latest, "latestTimestamp") if latest else None, retries, retry_interval)
        return call_result.GetLog(status=status, filename=file_name)

    @on(Action.data_transfer)
    def _data_transfer(self, vendor_id: str, **_):
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.trigger_message)
    def _trigger(self, requested_message: str, connector_id: int | None = None, call_unique_id: str = "", **_):
        return call_result.TriggerMessage(status=self.adapter.accept_trigger(
            call_unique_id, requested_message, connector_id, extended=False))

    @after(Action.trigger_message)
    async def _triggered(self, call_unique_id: str = "", **_):
        await self.adapter.send_accepted_trigger(call_unique_id)

    @on(Action.extended_trigger_message)
    def _extended_trigger(self, requested_message: str, connector_id: int | None = None, call_unique_id: str = "",
                          **_):
        return call_result.ExtendedTriggerMessage(status=self.adapter.accept_trigger(
            call_unique_id, requested_message, connector_id, extended=True))

    @after(Action.extended_trigger_message)
    async def _extended_triggered(self, call_unique_id: str = "", **_):
        await self.adapter.send_accepted_trigger(call_unique_id)


class Ocpp16Adapter:
    def __init__(self, config: Config, controller: "Controller", configuration: Configuration,
                 trace: FrameTrace | None = None, store: "StateStore | None" = None):
        self.config = config
        self.controller = controller
        self.configuration = configuration
        self.connectors = config.charge_point.connectors
        self.trace = trace or FrameTrace()
        self.outbox = Outbox(store)
        self.link: CentralSystemLink | None = None
        self.connected = False
        self.registration: str | None = None
        self.heartbeat_interval = float(configuration.get("HeartbeatInterval"))
        self.last_contact: float | None = None
        self._online = asyncio.Event()
        self._heartbeat_changed = asyncio.Event()
        self._triggers_under_way: set[tuple[str, int | None, bool]] = set()
        self._accepted_triggers: dict[str, tuple[str, int | None, bool]] = {}
        """uniqueId of an accepted TriggerMessage -> what it asked for, until its answer is sent."""
        self._tasks: set[asyncio.Task] = set()
        self._store = store
        self._websocket = None
        self._reconnect_requested = False
        self._security_changed = False
        self._failed_attempts_on_trial = 0
        self._pending_failures = PendingFailures()
        """Security event type -> (first time, attempts, last reason) of handshake failures,
        reported once a connection succeeds."""
        self._last_problem: tuple[str, float] | None = None
        self.security_profile_in_use: int | None = None
        self.security_events = SecurityEventQueue(store)
        """SecurityEventNotification payloads not yet delivered, oldest first."""
        self._security_log = SecurityEvents(self.security_events, self.security_log_path)
        self.local_authorization = self._load_local_authorization()
        self.certificates = CertificateStore(config.storage.state_dir / "certificates",
                                             int(configuration.get("CertificateStoreMaxLength")),
                                             int(configuration.get("CertificateSignedMaxChainSize")))
        transfer_tls = transfer_tls_context(config.ocpp.ca_file)
        self.firmware = FirmwareUpdater(
            config.storage.state_dir / "firmware", config.firmware.install_command, self._notify_firmware,
            SessionGate(controller), on_installed=lambda: controller.restart_into_new_firmware(),
            verify_signature=self.certificates.verify_firmware_signature,
            check_signing_certificate=self.certificates.check_signing_certificate,
            security_event=self.security_event, install_timeout_s=config.firmware.install_timeout_s,
            tls_context=transfer_tls)
        self.logs = LogUploads(config.storage.state_dir / "uploads", config.charge_point.id, self._log_files,
                               self._notify_diagnostics, self._notify_log, tls_context=transfer_tls)
        for problem in apply_installer_settings(configuration, config.ocpp):
            log.error("security settings: %s", problem)
        self._protect_secrets()
        self._unsubscribe = configuration.on_change(self._on_configuration_change)
        self.security_event("StartupOfTheDevice", f"evcp {evcp.__version__} started")
        if store is not None and (damage := store.take_wal_damage()):
            self.security_event(STATE_DAMAGED_EVENT, damage)

    def detach(self) -> None:
        """Stop listening to configuration changes (when this adapter is replaced or stops); a
        firmware update or an upload under way ends with it."""
        self._unsubscribe()
        for work in (self.firmware, self.logs):
            self._spawn(work.close())
        self.outbox.commit_deletions()
        if self.security_events and self._store is not None:
            log.info("%d security event(s) not delivered yet; kept for the next connection", len(self.security_events))
        elif self.security_events:
            log.warning("%d security event(s) not delivered, lost (no state database): %s", len(self.security_events),
                        ", ".join(event["type"] for event in self.security_events))

    # ----------------------------------------------------------------- the connection

    @property
    def url(self) -> str:
        return self.config.ocpp.csms_url.rstrip("/") + "/" + self.config.charge_point.id

    @property
    def protocol(self) -> str | None:
        """The OCPP version the open connection speaks (its handshake agreed to nothing else); None
        while there is none."""
        return "1.6" if self.connected else None

    @property
    def online(self) -> bool:
        """Connected and registered: messages other than BootNotification may be sent."""
        return self._online.is_set()

    def security_settings(self) -> SecuritySettings:
        """The settings the next connection is made with: a charge point certificate signed at the
        central system's request replaces the installer's (whitepaper "Update Charge Point
        Certificate"), and installed CentralSystemRootCertificates are trusted too."""
        ocpp = self.config.ocpp
        cert_file, key_file, extra_ca_file = self.certificates.connection_files(ocpp.client_cert_file,
                                                                                ocpp.client_key_file)
        return SecuritySettings(profile=int(self.configuration.get("SecurityProfile")),
                                authorization_key=str(self.configuration.get("AuthorizationKey")),
                                ca_file=ocpp.ca_file, client_cert_file=cert_file,
                                client_key_file=key_file, extra_ca_file=extra_ca_file)

    async def run(self) -> None:
        """Keep the connection up until cancelled (OCPP-J 1.6 §3: the charge point connects)."""
        failures = 0
        while True:
            self._reconnect_requested = False
            settings = self.security_settings()
            try:
                parameters = connection_parameters(self.url, self.config.charge_point.id, settings)
                ping_interval, ping_timeout = self._keepalive()
                async with connect(parameters.url, subprotocols=["ocpp1.6"], proxy=None, open_timeout=10,
                                   ping_interval=ping_interval, ping_timeout=ping_timeout,
                                   close_timeout=CLOSE_TIMEOUT_S, max_size=MAX_FRAME_BYTES,
                                   max_queue=MAX_QUEUED_FRAMES,
                                   ssl=parameters.ssl_context,
                                   additional_headers=parameters.headers) as ws:
                    if ws.subprotocol != "ocpp1.6":
                        raise ConnectionError(f"central system did not agree to ocpp1.6 (got {ws.subprotocol})")
                    failures = 0
                    self._websocket = ws
                    self._handshake_succeeded(parameters)
                    try:
                        await self._serve(ws)
                    except asyncio.CancelledError:  # a clean stop: RFC 6455 §7.4.1 1001 going away, not 1011
                        await ws.close(1001, "charge point stopping")
                        raise
            except asyncio.CancelledError:
                raise
            except HANDSHAKE_REFUSALS as error:
                if self._websocket is not None:
                    self._connection_lost(error)
                else:
                    failure = classify_failure(error, settings.profile)
                    self._handshake_failed(failure, settings)
                    if failure.event_type or isinstance(error, SecuritySettingsError):
                        failures = max(failures, 5)  # settings and credentials do not fix themselves
            except (OSError, websockets.WebSocketException, ConnectionError, TimeoutError) as error:
                if self._websocket is not None:
                    self._connection_lost(error)
                else:
                    if failures == 0:
                        log.warning("central system %s unreachable: %s", self.url, error or type(error).__name__)
                    self._count_attempt_on_trial(error or type(error).__name__)
            except Exception:  # noqa: BLE001 - whatever the central system does, the charger goes on
                log.exception("connection to central system %s ended by an unexpected error; reconnecting", self.url)
            finally:
                self._websocket = None
                self._went_offline()
            if self._reconnect_requested:
                failures = 0
                continue
            failures += 1
            await asyncio.sleep(self._backoff(failures))

    def _connection_lost(self, error: BaseException) -> None:
        if self._reconnect_requested:
            log.info("reconnecting to the central system with the new security settings")
        else:
            log.warning("connection to central system %s lost: %s", self.url, error or type(error).__name__)

    def _handshake_succeeded(self, parameters: ConnectionParameters) -> None:
        self.security_profile_in_use = parameters.profile
        self._failed_attempts_on_trial = 0
        self._last_problem = None
        confirmed = self.configuration.confirm_trial()
        if confirmed:
            log.info("new security settings work (%s); SecurityProfile %d in use",
                     ", ".join(confirmed), parameters.profile)
        self._pending_failures.report_to(self.security_event)

    def _handshake_failed(self, failure: HandshakeFailure, settings: SecuritySettings) -> None:
        text = f"central system {self.url} {failure.reason} (security profile {settings.profile})"
        now = time.monotonic()
        last = self._last_problem
        if last is None or last[0] != text or now - last[1] > REPEATED_PROBLEM_LOG_S:
            log.error("%s; retrying", text)
            self._last_problem = (text, now)
        self._pending_failures.failed(failure)
        self._count_attempt_on_trial(failure.reason)

    def _count_attempt_on_trial(self, reason: object) -> None:
        """Whitepaper "Migrating to a higher security profile": settings the central system just
        changed that cannot connect give way to the previous ones. Only until they have connected
        once: after that they are the settings (OCTT TC_083 expects no return to the old profile)."""
        if not self.configuration.on_trial():
            return
        self._failed_attempts_on_trial += 1
        if self._failed_attempts_on_trial < ATTEMPTS_BEFORE_FALLBACK:
            return
        self._failed_attempts_on_trial = 0
        restored = self.configuration.fall_back()
        profile = int(self.configuration.get("SecurityProfile"))
        log.error("the new security settings (%s) failed %d connection attempts (last: %s); back to the "
                  "previous ones, SecurityProfile %d", ", ".join(restored), ATTEMPTS_BEFORE_FALLBACK, reason, profile)
        self.security_event("ReconfigurationOfSecurityParameters",
                            f"{', '.join(restored)} set back: the new value could not connect; "
                            f"SecurityProfile {profile}")

    def change_configuration(self, key: str, value: str) -> str:
        """ChangeConfiguration.req. A higher SecurityProfile whose requirements are not met is
        Rejected (whitepaper: the charger must be able to connect with it); an accepted change
        of the security settings reconnects once the answer is sent."""
        before = self.security_settings()
        if key.lower() == "securityprofile" and (problem := self._cannot_raise_to(value, before)):
            log.warning("ChangeConfiguration SecurityProfile %s refused: %s", value, problem)
            return "Rejected"
        status = self.configuration.change(key, value)
        after = self.security_settings()
        if status != "Accepted" or after == before:
            return status
        name = "SecurityProfile" if after.profile != before.profile else "AuthorizationKey"
        self.security_event("ReconfigurationOfSecurityParameters", f"{name} changed by the central system")
        self._protect_secrets()
        if after.credentials() == before.credentials():
            # A password that the profile in force does not send: nothing to reconnect for or to try.
            self.configuration.confirm_trial(name)
        else:
            self._security_changed = True
        return status

    def _cannot_raise_to(self, value: str, settings: SecuritySettings) -> str | None:
        if not (value.isascii() and value.isdigit()) or not settings.profile < int(value) <= 3:
            return None  # not a raise: the key's own rules answer
        try:
            connection_parameters(self.url, self.config.charge_point.id, replace(settings, profile=int(value)))
        except SecuritySettingsError as problem:
            return str(problem)
        return None

    def needs_installed_roots(self) -> bool:
        """The connection's server certificate is verified only by installed
        CentralSystemRootCertificates: the last one must not be deleted (whitepaper "Delete a
        certificate")."""
        return int(self.configuration.get("SecurityProfile")) >= 2 and self.config.ocpp.ca_file is None

    def certificate_signed(self, chain: str) -> str:
        """CertificateSigned.req (whitepaper "Update Charge Point Certificate by request of Central
        System"): a valid certificate for the pending key is used from the next connection, which
        is opened at once with security profile 3; an invalid one is refused and reported (TC_077)."""
        trusted = [self.config.ocpp.ca_file] if self.config.ocpp.ca_file else []
        accepted, why = self.certificates.accept_signed_certificate(chain, trusted)
        if not accepted:
            log.warning("CertificateSigned refused: %s", why)
            self.security_event("InvalidChargePointCertificate", why)
            return "Rejected"
        log.info("new charge point certificate accepted")
        if int(self.configuration.get("SecurityProfile")) == 3:
            self._security_changed = True
        return "Accepted"

    async def request_certificate(self) -> None:
        """SignCertificate.req with a new key's CSR (ExtendedTriggerMessage SignChargePointCertificate)."""
        csr = self.certificates.create_signing_request(
            self.config.charge_point.id, str(self.configuration.get("CpoName")),
            self.config.charge_point.serial_number)
        conf = await self._call(call.SignCertificate(csr=csr))
        log.info("SignCertificate: %s", conf.status)

    async def reconnect_if_security_changed(self) -> None:
        if not self._security_changed:
            return
        self._security_changed = False
        await self.reconnect()

    async def reconnect(self) -> None:
        """Close the connection; ``run`` opens a new one at once with the settings then in force."""
        await asyncio.sleep(RECONNECT_GRACE_S)
        link = self.link
        if link is None or self._websocket is None:
            return
        self._reconnect_requested = True
        log.info("security settings changed: closing the connection to reconnect with SecurityProfile %s",
                 self.configuration.get("SecurityProfile"))
        await link.close_when_idle("reconnecting with new security settings", self.config.ocpp.call_timeout_s)

    def security_event(self, event_type: str, info: str | None = None, at: float | None = None) -> None:
        """Report a security event (whitepaper "Security events"): a SecurityEventNotification of
        ``event_type`` (e.g. SettingSystemTime, TamperDetectionActivated) with ``info`` as techInfo,
        sent once the charger is registered; it waits in the state database meanwhile and is in
        the security log (``SecurityEvents.report``)."""
        self._security_log.report(event_type, info, at)

    @property
    def security_log_path(self) -> Path:
        """The security log that GetLog (logType SecurityLog) uploads: one line per event."""
        return self.config.storage.state_dir / "security.log"

    async def _deliver_security_events(self) -> None:
        await self._security_log.deliver(
            lambda event: self._call(call.SecurityEventNotification(**event)),
            lambda: float(self.configuration.get("TransactionMessageRetryInterval")))

    def _protect_secrets(self) -> None:
        """The AuthorizationKey is stored in the state database: readable by the service only."""
        if self._store is None or not self.configuration.get("AuthorizationKey"):
            return
        files = [self._store.path.with_name(self._store.path.name + suffix) for suffix in ("", "-wal", "-shm")]
        for problem in restrict_to_owner(files):
            log.warning("cannot restrict the state database to the evcp user: %s", problem)

    def _backoff(self, failures: int) -> float:
        return reconnect_delay(self.config.ocpp, failures)

    def _keepalive(self) -> tuple[float | None, float | None]:
        return keepalive(int(self.configuration.get("WebSocketPingInterval")))

    async def _serve(self, ws) -> None:
        link = CentralSystemLink(self.config.charge_point.id, ws, self.trace,
                                 response_timeout=self.config.ocpp.call_timeout_s, on_frame=self._touch)
        link.adapter = self
        self.link, self.connected = link, True
        log.info("connected to central system %s", self.url)
        receiver = asyncio.create_task(link.start(), name="ocpp-receive")
        try:
            await self._register()
            workers = [asyncio.create_task(self._heartbeats(), name="ocpp-heartbeat"),
                       asyncio.create_task(self._drain_outbox(), name="ocpp-outbox"),
                       asyncio.create_task(self._deliver_security_events(), name="ocpp-security-events")]
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
        for trigger in self._accepted_triggers.values():  # answered on a connection that is gone
            self._triggers_under_way.discard(trigger)
        self._accepted_triggers.clear()

    def _touch(self) -> None:
        self.last_contact = asyncio.get_running_loop().time()

    async def _register(self) -> None:
        """BootNotification until Accepted (OCPP 1.6 §4.2); nothing else is sent before."""
        if self.registration == "Accepted":
            log.info("reconnected; registration still valid, reporting current statuses")
        while self.registration != "Accepted":
            try:
                conf = await self._call(call.BootNotification(
                    charge_point_vendor=self.config.charge_point.vendor,
                    charge_point_model=self.config.charge_point.model,
                    charge_point_serial_number=self.config.charge_point.serial_number,
                    firmware_version=f"evcp {evcp.__version__}",
                ))
            except OCPPError as error:
                log.warning("central system answered BootNotification with CALLERROR %s; trying again in %.0f s",
                            error.code, BOOT_RETRY_S)
                await asyncio.sleep(BOOT_RETRY_S)
                continue
            self.registration = conf.status
            self.controller.central_system_time(conf.current_time)
            interval = float(conf.interval)
            log.info("BootNotification: %s (interval %ss)", conf.status, conf.interval)
            if conf.status == "Accepted":
                if interval > 0:
                    self.configuration.set_internal("HeartbeatInterval", str(int(interval)))
                break
            await asyncio.sleep(interval if interval > 0 else BOOT_RETRY_S)
        self._online.set()
        for connector in range(0, self.connectors + 1):
            self._spawn(self._send_status(connector))

    async def _heartbeats(self) -> None:
        """Heartbeat every HeartbeatInterval (OCPP 1.6 §4.6). A CALLERROR is logged and the next one
        goes out on time; no answer at all ends the connection (TimeoutError): the link is dead."""
        while True:
            self._heartbeat_changed.clear()
            if await wait_event(self._heartbeat_changed, self.heartbeat_interval):
                continue
            try:
                conf = await self._call(call.Heartbeat())
            except OCPPError as error:
                log.warning("central system answered Heartbeat with CALLERROR %s", error.code)
                continue
            self.controller.central_system_time(conf.current_time)

    async def _call(self, payload):
        link = self.link
        if link is None:
            raise ConnectionError("not connected")
        return await link.call(payload, suppress=False)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    # ----------------------------------------------------------------- transaction messages

    async def _drain_outbox(self) -> None:
        """Send queued transaction messages strictly in order (OCPP 1.6 "Transaction-related messages")."""
        try:
            await self._send_queued_messages()
        finally:
            self.outbox.commit_deletions()

    async def _send_queued_messages(self) -> None:
        loop = asyncio.get_running_loop()
        self.outbox.connected()
        while True:
            entry = self.outbox.head()
            if entry is None or loop.time() < entry.not_before:
                # Empty: put() wakes it, nothing to poll for.
                await self.outbox.wait(None if entry is None else entry.not_before - loop.time())
                continue
            if entry.final_reading is not None:
                await self._take_final_reading(entry)
            payload = self.outbox.resolved_payload(entry)
            if payload is None:
                log.error("dropping %s of local transaction %s: its start was never confirmed",
                          entry.action, entry.local_id)
                self.outbox.done(entry)
                continue
            entry.unanswered = False  # a silence this connection outlived by its interval stays counted
            try:
                conf = await self._call_payload(entry.action, payload)
            except OCPPError as error:
                if not self._retry(entry, f"CALLERROR {error.code}"):
                    self.outbox.done(entry)
                continue
            except asyncio.TimeoutError:
                if not self._retry(entry, "no answer", unanswered=True):
                    self.outbox.done(entry)
                continue
            if entry.action == "StartTransaction":
                self._start_confirmed(entry, conf)
                continue
            self.outbox.done(entry)
            if entry.action == "StopTransaction" and conf.id_tag_info and entry.payload.get("idTag"):
                self.learn(entry.payload["idTag"], IdTagInfo.from_ocpp(conf.id_tag_info))

    async def _call_payload(self, action: str, payload: dict[str, Any]):
        """A queued message sent as it is stored (camelCase); the answer as the library's dataclass."""
        link = self.link
        if link is None:
            raise ConnectionError("not connected")
        answer = await link.call_payload(action, remove_nones(payload))
        return getattr(call_result, action)(**camel_to_snake_case(answer))

    async def _take_final_reading(self, entry) -> None:
        """meterStop from a reading taken after the contactor opened, when the meter answers:
        no energy flows after that, so it bills what was delivered, not the last poll."""
        reading = entry.final_reading
        try:
            async with asyncio.timeout(5.0):
                energy_wh = await asyncio.shield(reading)
        except TimeoutError:
            entry.final_reading = None
            return
        # Cleared only now: a connection lost while waiting must not lose the reading.
        entry.final_reading = None
        if energy_wh is not None and round(energy_wh) > entry.payload["meterStop"]:
            entry.payload["meterStop"] = round(energy_wh)
            self.outbox.update(entry)

    def _retry(self, entry, why: str, unanswered: bool = False) -> bool:
        """TransactionMessageAttempts / TransactionMessageRetryInterval (OCPP 1.6 "Error responses to
        transaction-related messages"), ``Outbox.failed``."""
        return self.outbox.failed(entry, why, int(self.configuration.get("TransactionMessageAttempts")),
                                  int(self.configuration.get("TransactionMessageRetryInterval")), unanswered)

    def _start_confirmed(self, entry, conf) -> None:
        self.outbox.confirm_start(entry, conf.transaction_id)
        info = conf.id_tag_info or {}
        if info:
            self.learn(entry.payload["idTag"], IdTagInfo.from_ocpp(info))
        self.controller.post(ev.TransactionStartConfirmed(
            entry.payload["connectorId"], entry.local_id, conf.transaction_id,
            AuthStatus(info.get("status", "Invalid")), info.get("parent_id_tag")))

    def transaction_id(self, local_id: int | None) -> int | None:
        return self.outbox.transaction_id(local_id)

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (before a reset); False when time ran out. Security
        events are waited for too while online (ResetOrReboot goes out before the reset)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (len(self.outbox) or (self.online and self.security_events)) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not len(self.outbox)

    # ----------------------------------------------------------------- actions from the core

    def perform(self, action: act.Action) -> None:
        """Take one protocol action from the core. Never blocks; sending happens in tasks."""
        if isinstance(action, act.StatusChanged):
            if self.online:
                self._spawn(self._send_status(action.connector, action))
        elif isinstance(action, act.RequestAuthorization):
            self._spawn(self._authorize(action.id_tag))
        elif isinstance(action, act.ReportTransactionStart):
            payload = {"connectorId": action.connector, "idTag": action.id_tag,
                       "meterStart": action.meter_start_wh, "timestamp": timestamp(action.at)}
            if action.reservation_id is not None:
                payload["reservationId"] = action.reservation_id
            self.outbox.put("StartTransaction", payload, action.local_id)
        elif isinstance(action, act.ReportTransactionStop):
            payload: dict[str, Any] = {
                "transactionId": action.transaction_id, "meterStop": action.meter_stop_wh,
                "timestamp": timestamp(action.at), "reason": action.reason.value,
            }
            if action.id_tag:
                payload["idTag"] = action.id_tag
            self.outbox.put("StopTransaction", payload, action.local_id,
                            final_reading=asyncio.ensure_future(self.controller.fresh_energy_wh(action.connector)))
        elif isinstance(action, act.ReportMeterValues):
            self._meter_values(action)

    def _meter_values(self, report: act.ReportMeterValues) -> None:
        key = "MeterValuesAlignedData" if report.context == "Sample.Clock" else "MeterValuesSampledData"
        offered = self.controller.offered_current(report.connector)
        payload = meter_values_payload(report, list(self.configuration.get(key)), offered,
                                       report.transaction_id)
        if report.local_id is not None:
            self.outbox.put("MeterValues", payload, report.local_id)
        elif self.online:
            self._spawn(self._call(call.MeterValues(**camel_to_snake_case(payload))))

    async def _authorize(self, id_tag: str) -> None:
        """Always answers the core, whatever happens to the connection meanwhile: from the Local
        Authorization List or cache where OCPP 1.6 §3.5 allows, else from Authorize.conf."""
        decision = self._local_decision(id_tag, online=self.online)
        try:
            if decision.ask_central_system:
                try:
                    conf = await self._call(call.Authorize(id_tag=id_tag))
                except Exception as error:  # noqa: BLE001 - a lost connection must not leave the card hanging
                    log.warning("Authorize %s got no answer: %s", id_tag, error or type(error).__name__)
                    decision = self._local_decision(id_tag, online=False)
                else:
                    info = IdTagInfo.from_ocpp(conf.id_tag_info)
                    self.learn(id_tag, info)
                    self.controller.post(ev.AuthorizationResult(id_tag, AuthStatus(info.status), info.parent_id_tag))
                    return
            if decision.info is not None:
                log.info("Authorize %s: %s from the %s%s", id_tag, decision.info.status, decision.source,
                         "" if self.online else " (central system offline)")
                self.controller.post(ev.AuthorizationResult(
                    id_tag, AuthStatus(decision.info.status), decision.info.parent_id_tag, offline=not self.online))
                return
            log.info("Authorize %s: central system offline and nothing known locally", id_tag)
            self.controller.post(ev.AuthorizationResult(id_tag, None))
        except BaseException:
            self.controller.post(ev.AuthorizationResult(id_tag, None))
            raise

    def _local_decision(self, id_tag: str, online: bool):
        c = self.configuration
        return self.local_authorization.decide(
            id_tag, time.time(), online=online, list_enabled=bool(c.get("LocalAuthListEnabled")),
            cache_enabled=bool(c.get("AuthorizationCacheEnabled")),
            pre_authorize=bool(c.get("LocalPreAuthorize")), authorize_offline=bool(c.get("LocalAuthorizeOffline")))

    def learn(self, id_tag: str, info: IdTagInfo) -> None:
        """An idTagInfo from the central system goes to the Authorization Cache (OCPP 1.6 §3.5.1)."""
        if self.local_authorization.learn(id_tag, info, list_enabled=bool(self.configuration.get("LocalAuthListEnabled")),
                                          cache_enabled=bool(self.configuration.get("AuthorizationCacheEnabled"))):
            self._save(AUTHORIZATION_CACHE, self.local_authorization.cache.to_saved())

    def clear_cache(self) -> str:
        """ClearCache (OCPP 1.6 §5.4): the cache only, never the Local Authorization List (OCTT TC_061)."""
        if self.local_authorization.cache.clear():
            if not self._save(AUTHORIZATION_CACHE, self.local_authorization.cache.to_saved()):
                return "Rejected"
        log.info("ClearCache: authorization cache emptied")
        return "Accepted"

    def send_local_list(self, version: int, update_type: str, entries: list | None) -> str:
        """SendLocalList (OCPP 1.6 §5.15): the list changes only if it could also be stored (TC_043_3)."""
        if not self.configuration.get("LocalAuthListEnabled"):
            return "NotSupported"
        local_list = self.local_authorization.local_list
        before = local_list.to_saved()
        status = local_list.apply(update_type, version, entries,
                                  max_length=int(self.configuration.get("LocalAuthListMaxLength")),
                                  max_send_length=int(self.configuration.get("SendLocalListMaxLength")))
        if status == "Accepted" and not self._save(LOCAL_LIST, local_list.to_saved()):
            self.local_authorization.local_list = LocalAuthList(before)
            status = "Failed"
        log.info("SendLocalList %s version %s (%d entries): %s; the list holds %d", update_type, version,
                 len(entries or ()), status, len(self.local_authorization.local_list))
        return status

    def _load_local_authorization(self) -> LocalAuthorization:
        saved_list = self._load(LOCAL_LIST)
        saved_cache = self._load(AUTHORIZATION_CACHE)
        try:
            local_list = LocalAuthList(saved_list)
        except ValueError as error:
            log.error("stored Local Authorization List unreadable (%s); starting with an empty one", error)
            local_list = LocalAuthList()
        try:
            cache = AuthorizationCache(saved=saved_cache)
        except ValueError as error:
            log.error("stored authorization cache unreadable (%s); starting with an empty one", error)
            cache = AuthorizationCache()
        return LocalAuthorization(local_list, cache)

    def _load(self, name: str):
        return self._store.load_document(name) if self._store is not None else None

    def _save(self, name: str, body) -> bool:
        """Store a document; False (and logged) when the state database refuses it."""
        if self._store is None:
            return True
        try:
            self._store.save_document(name, body)
        except StoreError as error:
            log.error("cannot store the %s: %s", name, error)
            return False
        return True

    async def _send_status(self, connector: int, change: act.StatusChanged | None = None) -> None:
        status, error_code, info = self.controller.status_of(connector)
        at = change.at if change else time.time()
        await self._call(call.StatusNotification(
            connector_id=connector, error_code=error_code.value, status=status.value,
            info=info[:50] or None, timestamp=timestamp(at)))

    def _log_files(self, log_type: str) -> list[Path]:
        """What GetDiagnostics / GetLog upload (``diagnostics.log_files``)."""
        return log_files(log_type, self.config.trace_file, self.security_log_path)

    async def _notify_firmware(self, status: str, request_id: int | None) -> None:
        if request_id is None:
            await self._notify(call.FirmwareStatusNotification(status=status))
        else:
            await self._notify(call.SignedFirmwareStatusNotification(status=status, request_id=request_id))

    async def _notify_diagnostics(self, status: str) -> None:
        await self._notify(call.DiagnosticsStatusNotification(status=status))

    async def _notify_log(self, status: str, request_id: int) -> None:
        await self._notify(call.LogStatusNotification(status=status, request_id=request_id))

    async def _notify(self, payload) -> None:
        """A status notification of a firmware update or an upload: waits a while for the
        connection when offline; not delivered (and logged) when it stays away."""
        name = type(payload).__name__
        if not await wait_event(self._online, NOTIFICATION_WAIT_S):
            log.warning("%s %s not sent: central system offline", name, payload.status)
            return
        try:
            await self._call(payload)
        except (OCPPError, ConnectionError, asyncio.TimeoutError, websockets.ConnectionClosed) as error:
            log.warning("%s %s not delivered: %s", name, payload.status, error or type(error).__name__)

    def trigger_answer(self, message: str, connector: int | None, triggerable: set[str]) -> str:
        """TriggerMessage.conf / ExtendedTriggerMessage.conf status (OCPP 1.6 §5.17)."""
        if message not in triggerable:
            return "NotImplemented"
        if connector is not None and not 0 <= connector <= self.connectors:
            return "Rejected"  # OCTT TC_055
        if message == "SignChargePointCertificate" and not self.configuration.get("CpoName"):
            return "Rejected"  # the CSR's organisation comes from CpoName
        return "Accepted"

    def accept_trigger(self, unique_id: str, message: str, connector: int | None, extended: bool) -> str:
        """TriggerMessage / ExtendedTriggerMessage: the status, and, when Accepted, the message
        remembered for ``send_accepted_trigger``. One of each kind is sent at a time: asked again
        while it is still under way, it is Rejected (§5.17: "will not be sent"), so a central
        system repeating a trigger cannot pile up messages."""
        status = self.trigger_answer(message, connector, EXTENDED_TRIGGERABLE if extended else TRIGGERABLE)
        trigger = (message, connector, extended)
        if status == "Accepted":
            if trigger in self._triggers_under_way:
                return "Rejected"
            self._triggers_under_way.add(trigger)
            self._accepted_triggers[unique_id] = trigger
        return status

    async def send_accepted_trigger(self, unique_id: str) -> None:
        """The message a trigger accepted by ``accept_trigger`` asked for, after the answer (§5.17)."""
        trigger = self._accepted_triggers.pop(unique_id, None)
        if trigger is None:
            return
        message, connector, extended = trigger
        try:
            await self.send_triggered(message, connector, extended)
        except (OCPPError, ConnectionError, TimeoutError, websockets.ConnectionClosed) as error:
            log.warning("triggered %s not delivered: %s", message, error or type(error).__name__)
        finally:
            self._triggers_under_way.discard(trigger)

    async def send_triggered(self, message: str, connector: int | None, extended: bool = False) -> None:
        """The requested message, sent after the trigger's answer (§5.17)."""
        if message == "BootNotification":
            self.registration = None
            self._online.clear()
            await self._register()
        elif message == "Heartbeat":
            self.controller.central_system_time((await self._call(call.Heartbeat())).current_time)
        elif message == "StatusNotification":
            for c in ([connector] if connector is not None else range(0, self.connectors + 1)):
                await self._send_status(c)
        elif message == "MeterValues":
            for c in ([connector] if connector else range(1, self.connectors + 1)):
                report = self.controller.meter_report(c, "Trigger")
                if report is not None:
                    payload = meter_values_payload(report, list(self.configuration.get("MeterValuesSampledData")),
                                                   self.controller.offered_current(c),
                                                   self.transaction_id(report.local_id))
                    if payload.get("transactionId", 0) is None:
                        payload.pop("transactionId")
                    await self._call(call.MeterValues(**camel_to_snake_case(payload)))
        elif message == "FirmwareStatusNotification" and extended:
            status, request_id = self.firmware.signed_status
            await self._call(call.SignedFirmwareStatusNotification(status=status, request_id=request_id))
        elif message == "FirmwareStatusNotification":
            await self._call(call.FirmwareStatusNotification(status=self.firmware.status))
        elif message == "DiagnosticsStatusNotification":
            await self._call(call.DiagnosticsStatusNotification(status=self.logs.diagnostics_status))
        elif message == "LogStatusNotification":
            await self._call(call.LogStatusNotification(status=self.logs.log_status,
                                                        request_id=self.logs.log_request_id))
        elif message == "SignChargePointCertificate":
            await self.request_certificate()

    # ----------------------------------------------------------------- requests from the central system

    def command(self, event) -> str:
        """Hand a central-system command to the core now; its Answer is the reply's status."""
        for action in self.controller.dispatch(event):
            if isinstance(action, act.Answer):
                return action.status
        raise RuntimeError(f"the core gave no answer to {event}")

    def _on_configuration_change(self, key: str, value) -> None:
        if key == "HeartbeatInterval":
            self.heartbeat_interval = float(value)
            self._heartbeat_changed.set()
        self.controller.apply_settings(settings_from(self.configuration, self.controller.settings))



def _log_failure(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, (ConnectionError, websockets.ConnectionClosed)):
        log.warning("OCPP message not delivered: %s", error or type(error).__name__)
