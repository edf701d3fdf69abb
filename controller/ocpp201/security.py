"""Security, certificates, firmware and logs of the OCPP 2.0.1 station (Part 2 blocks A, M, L, N).

The 1.6 machinery, spoken in 2.0.1:

- A00 security profiles 1-3: the connection is made by ``evcp.ocpp.security`` with the
  installer's profile (SecurityCtrlr.SecurityProfile) and SecurityCtrlr.BasicAuthPassword
  (the text itself, 16 to 40 characters); a Charging Station certificate signed by the CSMS
  replaces the installer's client certificate, installed CSMSRootCertificates are trusted.
  A01: a new BasicAuthPassword from SetVariables is used from a reconnection right after the
  answer; when it cannot connect ``ATTEMPTS_BEFORE_FALLBACK`` times, the previous one comes back.
- A05/B09/B10: SetNetworkProfile stores a NetworkConnectionProfile (CSMS URL and security
  profile) in slot 1-3 (slot 0 is the installer's ``ocpp.csms_url`` and ``ocpp.security_profile``);
  OCPPCommCtrlr.NetworkConfigurationPriority says in which order they are tried, from the next
  (re)start. A profile that fails NetworkProfileConnectionAttempts times in a row gives way to the
  next one in that order; once a profile connected, the ones with a lower security profile are
  removed from the order (never downgrade), and a lower profile is Rejected by SetNetworkProfile.
- A02/A03: SignCertificate with a new key's CSR (TriggerMessage SignChargingStationCertificate;
  O = SecurityCtrlr.OrganizationName), CertificateSigned installs the chain for profile 3.
- A04 SecurityEventNotification: every event goes to the security log and the durable queue
  the 1.6 side uses (``SecurityEvents``), delivered in order once the station is registered,
  after reconnections and restarts.
- M03-M05 GetInstalledCertificateIds, DeleteCertificate, InstallCertificate on the 1.6
  certificate store: CSMSRootCertificate is its CentralSystemRootCertificate (the same files),
  ManufacturerRootCertificate the same; V2G and MO certificates (ISO 15118) are not kept.
- L01/L02 UpdateFirmware: ``FirmwareUpdater.update_by_request`` (download, retries, signature
  check with the signing certificate, install once no transaction runs, restart), every
  FirmwareStatusNotification with the requestId; the next BootNotification says FirmwareUpdate.
- N01 GetLog: ``LogUploads.get_log``, LogStatusNotification with the requestId.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import websockets
from ocpp.exceptions import OCPPError

import evcp
from evcp.aio import wait_event
from evcp.ocpp.certificates import CENTRAL_SYSTEM_ROOT, MANUFACTURER_ROOT, CertificateStore
from evcp.ocpp.diagnostics import LogUploads, log_files
from evcp.ocpp.firmware import FirmwareUpdater, SessionGate
from evcp.ocpp.framing import request_time
from evcp.ocpp.outbox import SecurityEventQueue, SecurityEvents
from evcp.ocpp.security import (
    PROFILES_WITH_PASSWORD,
    PendingFailures,
    SecuritySettings,
    SecuritySettingsError,
    classify_failure,
    connection_parameters,
    restrict_to_owner,
)
from evcp.ocpp.transfer import shown_url, transfer_tls_context

if TYPE_CHECKING:
    from evcp.config import Config
    from evcp.ocpp201.device_model import DeviceModel
    from evcp.runtime.controller import Controller
    from evcp.storage import StateStore

log = logging.getLogger("evcp.ocpp")

MAX_CERTIFICATES = 20
"""Root certificates this station keeps (CSMS and manufacturer roots together)."""
MAX_CERTIFICATE_CHAIN_BYTES = 10_000
"""SecurityCtrlr.MaxCertificateChainSize: the largest CertificateSigned chain accepted."""
ATTEMPTS_BEFORE_FALLBACK = 3
"""Failed connections with a new BasicAuthPassword before the previous one comes back (A01)."""
RECONNECT_GRACE_S = 1.0
"""After the answer to a change of the connection's credentials, the connection closes this late."""
NOTIFICATION_WAIT_S = 60.0
"""How long a firmware or log status notification waits for the connection to come back."""

STORE_TYPES = {"CSMSRootCertificate": CENTRAL_SYSTEM_ROOT, "ManufacturerRootCertificate": MANUFACTURER_ROOT}
"""2.0.1 certificate use (InstallCertificateUseEnumType, GetCertificateIdUseEnumType) -> the store's type."""
TRIGGERS = {"FirmwareStatusNotification", "LogStatusNotification", "SignChargingStationCertificate"}
"""TriggerMessage targets served here (Part 2 F06, MessageTriggerEnumType)."""
EVENT_TYPES = {"InvalidCentralSystemCertificate": "InvalidCsmsCertificate",
               "InvalidChargePointCertificate": "InvalidChargingStationCertificate"}
"""The 1.6 whitepaper's security event names that 2.0.1 spells differently (Part 2 Appendix 1)."""
PASSWORD = ("SecurityCtrlr", "BasicAuthPassword")
PRIORITY = ("OCPPCommCtrlr", "NetworkConfigurationPriority")
NETWORK_PROFILES = "ocpp201-network-profiles"
"""The stored document of the NetworkConnectionProfiles the CSMS set (slot -> url, securityProfile)."""
CSMS_SLOTS = range(1, 4)
"""configurationSlot values SetNetworkProfile may use; 0 is the installer's."""
STATE_DAMAGED_EVENT = "StateDatabaseDamaged"
"""This station's own security event (the list is open, as in 1.6): the state database's
write-ahead log was damaged at start-up; techInfo says what was kept."""


class StationSecurity:
    """Blocks A, M, L and N for the 2.0.1 adapter, which hands the CSMS's requests over and
    gives ``send`` (a CALL's camelCase answer) and ``online`` (set while registered)."""

    def __init__(self, config: "Config", controller: "Controller", device_model: "DeviceModel",
                 store: "StateStore | None", send: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
                 online: asyncio.Event, save_variables: Callable[[], None],
                 on_firmware_installed: Callable[[], None]):
        self.config = config
        self.device_model = device_model
        self._store = store
        self._send = send
        self._online = online
        self._save_variables = save_variables
        self._on_firmware_installed = on_firmware_installed
        self._controller = controller
        state_dir = config.storage.state_dir
        self.security_log_path = state_dir / "security.log"
        self.events = SecurityEvents(SecurityEventQueue(store), self.security_log_path)
        self.certificates = CertificateStore(state_dir / "certificates", MAX_CERTIFICATES, MAX_CERTIFICATE_CHAIN_BYTES)
        transfer_tls = transfer_tls_context(config.ocpp.ca_file)
        self.firmware = FirmwareUpdater(
            state_dir / "firmware", config.firmware.install_command, self._notify_firmware, SessionGate(controller),
            on_installed=self._firmware_installed, verify_signature=self.certificates.verify_firmware_signature,
            check_signing_certificate=self.certificates.check_signing_certificate,
            security_event=lambda kind, info: self.report(kind, info),
            install_timeout_s=config.firmware.install_timeout_s, tls_context=transfer_tls)
        self.logs = LogUploads(state_dir / "uploads", config.charge_point.id,
                               lambda kind: log_files(kind, config.trace_file, self.security_log_path),
                               self._no_diagnostics, self._notify_log, tls_context=transfer_tls)
        self.reconnect_wanted = False
        """A change of the credentials was accepted: the adapter reconnects after the answer."""
        self._working_password: str | None = None
        """The BasicAuthPassword of the last connection that opened."""
        self._password_on_trial = False
        """A new BasicAuthPassword has not connected yet (A01)."""
        self._failed_on_trial = 0
        self._pending_failures = PendingFailures()
        self._certificate_arrived = asyncio.Event()
        self._signing: asyncio.Task | None = None
        self._network_profiles = {0: {"url": config.ocpp.csms_url, "securityProfile": config.ocpp.security_profile}}
        stored = (store.load_document(NETWORK_PROFILES) if store is not None else None) or {}
        self._network_profiles.update({int(slot): profile for slot, profile in stored.items()})
        device_model.variable(*PRIORITY).rule = self._priority_problem
        self._slot_failures = 0
        self._use_slot(next(iter(self._priority()), 0))
        self._count_certificates()
        self._protect_secrets()
        self.report("StartupOfTheDevice", f"evcp {evcp.__version__} started")
        if store is not None and (damage := store.take_wal_damage()):
            self.report(STATE_DAMAGED_EVENT, damage)

    def close(self) -> None:
        """When the adapter stops: the firmware update or upload under way ends with it."""
        for work in (self.firmware, self.logs):
            asyncio.ensure_future(work.close())
        if self._signing is not None:
            self._signing.cancel()
        if len(self.events.queue) and self._store is None:
            log.warning("%d security event(s) not delivered, lost (no state database)", len(self.events.queue))

    # ----------------------------------------------------------------- A04 security events

    def report(self, event_type: str, info: str | None = None, at: float | None = None) -> None:
        """A SecurityEventNotification (A04) of ``event_type`` with ``info`` as techInfo."""
        self.events.report(EVENT_TYPES.get(event_type, event_type), info, at)

    async def deliver_events(self) -> None:
        """The queued SecurityEventNotifications, oldest first, for as long as the connection lasts."""
        async def send(event: dict[str, Any]) -> None:
            payload = {"type": event["type"], "timestamp": event["timestamp"]}
            if event["tech_info"]:
                payload["techInfo"] = event["tech_info"]
            await self._send("SecurityEventNotification", payload)

        await self.events.deliver(send, lambda: float(self.device_model.number(
            "OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent")))

    # ----------------------------------------------------------------- A00/A01 the connection

    def settings(self) -> SecuritySettings:
        """The settings of the next connection (see the module docstring)."""
        ocpp = self.config.ocpp
        cert_file, key_file, extra_ca_file = self.certificates.connection_files(ocpp.client_cert_file,
                                                                                ocpp.client_key_file)
        return SecuritySettings(profile=self._network_profiles[self._slot]["securityProfile"],
                                authorization_key=self.device_model.get(*PASSWORD), ca_file=ocpp.ca_file,
                                client_cert_file=cert_file, client_key_file=key_file, extra_ca_file=extra_ca_file,
                                plain_password=True)

    @property
    def csms_url(self) -> str:
        """The CSMS URL of the NetworkConnectionProfile in use, without the station's identity."""
        return self._network_profiles[self._slot]["url"]

    def connected(self) -> None:
        """The websocket opened: a password on trial is confirmed, and the connection failures
        met since the last connection are reported (A04: once the CSMS can be reached)."""
        self._slot_failures = 0
        self._never_below(self._network_profiles[self._slot]["securityProfile"])
        if self._password_on_trial:
            log.info("the new BasicAuthPassword works")
        self._password_on_trial, self._failed_on_trial = False, 0
        self._working_password = self.device_model.get(*PASSWORD)
        self._pending_failures.report_to(self.report)

    def connection_failed(self, error: BaseException, profile: int) -> bool:
        """A connection attempt failed before the websocket opened; True when the cause is the
        security settings or credentials (worth logging as an error, not fixed by retrying soon)."""
        failure = classify_failure(error, profile)
        self._pending_failures.failed(failure)
        serious = failure.event_type is not None or isinstance(error, SecuritySettingsError)
        if serious:
            log.error("central system %s (security profile %d); retrying", failure.reason, profile)
        if self._password_on_trial:
            self._failed_on_trial += 1
            if self._failed_on_trial >= ATTEMPTS_BEFORE_FALLBACK:
                self._fall_back(failure.reason)
        self._slot_failures += 1
        order = self._priority()
        if len(order) > 1 and self._slot_failures >= self.device_model.number("OCPPCommCtrlr",
                                                                               "NetworkProfileConnectionAttempts"):
            following = order[(order.index(self._slot) + 1) % len(order)] if self._slot in order else order[0]
            log.error("NetworkConnectionProfile %d failed %d connection attempts (last: %s); trying profile %d",
                      self._slot, self._slot_failures, failure.reason, following)
            self._use_slot(following)
        return serious

    # ----------------------------------------------------------------- A05/B09/B10 network profiles

    def set_network_profile(self, slot: int, data: dict) -> str:
        """SetNetworkProfile (B09): Accepted once stored, Rejected for a slot that is not the CSMS's
        or is in use, another protocol than OCPP 2.0.1 JSON, a lower security profile than the one
        in use (A05), or settings that could not connect (profile 2/3 without wss://, profile 3
        without a client certificate, profile 1/2 without a BasicAuthPassword)."""
        profile = int(data["security_profile"])
        url = data["ocpp_csms_url"]
        problem = None
        if slot not in CSMS_SLOTS:
            problem = f"configurationSlot {slot} is not one of {CSMS_SLOTS.start}..{CSMS_SLOTS.stop - 1}"
        elif slot == self._slot:
            problem = f"configurationSlot {slot} is in use"
        elif (data["ocpp_version"], data["ocpp_transport"]) != ("OCPP20", "JSON"):
            problem = f"{data['ocpp_version']} over {data['ocpp_transport']} is not spoken here"
        elif profile < self._network_profiles[self._slot]["securityProfile"]:
            problem = f"security profile {profile} is lower than the one in use"
        else:
            settings = replace(self.settings(), profile=profile)
            try:
                connection_parameters(url.rstrip("/") + "/" + self.config.charge_point.id,
                                      self.config.charge_point.id, settings)
            except SecuritySettingsError as error:
                problem = str(error)
        if problem is not None:
            log.warning("SetNetworkProfile slot %d refused: %s", slot, problem)
            return "Rejected"
        self._network_profiles[slot] = {"url": url, "securityProfile": profile}
        if self._store is not None:
            self._store.save_document(NETWORK_PROFILES, {str(k): v for k, v in self._network_profiles.items() if k})
        log.info("NetworkConnectionProfile %d: %s, security profile %d", slot, shown_url(url), profile)
        return "Accepted"

    def _priority(self) -> list[int]:
        return [int(slot) for slot in self.device_model.get(*PRIORITY).split(",") if slot.strip()]

    def _priority_problem(self, text: str) -> str | None:
        try:
            slots = [int(slot) for slot in text.split(",")]
        except ValueError:
            return "expected configuration slots separated by commas"
        unknown = [slot for slot in slots if slot not in self._network_profiles]
        if unknown:
            return f"no NetworkConnectionProfile in slot {unknown[0]}"
        return "a slot twice" if len(set(slots)) != len(slots) else None

    def _use_slot(self, slot: int) -> None:
        if slot not in self._network_profiles:
            slot = 0
        self._slot, self._slot_failures = slot, 0
        self.device_model.set_internal("OCPPCommCtrlr", "ActiveNetworkProfile", str(slot))
        self.device_model.set_internal("SecurityCtrlr", "SecurityProfile",
                                       str(self._network_profiles[slot]["securityProfile"]))

    def _never_below(self, profile: int) -> None:
        """A05: once connected with a security profile, the profiles below it are not tried again."""
        order = self._priority()
        kept = [slot for slot in order if self._network_profiles.get(slot, {}).get("securityProfile", 0) >= profile]
        if kept != order and kept:
            log.info("security profile %d in use: NetworkConfigurationPriority %s becomes %s", profile,
                     ",".join(map(str, order)), ",".join(map(str, kept)))
            self.device_model.set_internal(*PRIORITY, ",".join(map(str, kept)))
            self._save_variables()
            self.report("ReconfigurationOfSecurityParameters", f"security profile {profile} in use, lower ones removed")


    def _fall_back(self, reason: str) -> None:
        self._password_on_trial, self._failed_on_trial = False, 0
        self.device_model.set_internal(*PASSWORD, self._working_password or "")
        self._save_variables()
        log.error("the new BasicAuthPassword failed %d connection attempts (last: %s); back to the previous one",
                  ATTEMPTS_BEFORE_FALLBACK, reason)
        self.report("ReconfigurationOfSecurityParameters", "BasicAuthPassword set back: the new one could not "
                    "connect")

    def variable_set(self, component: str, variable: str) -> None:
        """SetVariables accepted a value: a new BasicAuthPassword is tried on a new connection
        (A01); if it cannot connect, the one of the last connection comes back."""
        if (component, variable) != PASSWORD:
            return
        self.report("ReconfigurationOfSecurityParameters", "BasicAuthPassword changed by the CSMS")
        self._protect_secrets()
        if self.device_model.number("SecurityCtrlr", "SecurityProfile") in PROFILES_WITH_PASSWORD:
            self._password_on_trial = self._working_password is not None
            self.reconnect_wanted = True

    async def reconnect_if_wanted(self, close: Callable[[], Awaitable[None]]) -> None:
        """After the answer that changed the credentials: close the connection, to reconnect with them."""
        if not self.reconnect_wanted:
            return
        self.reconnect_wanted = False
        await asyncio.sleep(RECONNECT_GRACE_S)
        log.info("security settings changed: reconnecting with them")
        await close()

    def _protect_secrets(self) -> None:
        """The BasicAuthPassword is stored in the state database: readable by the service only."""
        if self._store is None or not self.device_model.get(*PASSWORD):
            return
        files = [self._store.path.with_name(self._store.path.name + suffix) for suffix in ("", "-wal", "-shm")]
        for problem in restrict_to_owner(files):
            log.warning("cannot restrict the state database to the evcp user: %s", problem)

    # ----------------------------------------------------------------- M03-M05 root certificates

    def install_certificate(self, certificate_type: str, certificate: str) -> str:
        """InstallCertificate (M05): Accepted, Rejected or Failed."""
        kind = STORE_TYPES.get(certificate_type)
        if kind is None:
            log.info("InstallCertificate %s: Rejected (no ISO 15118 certificates here)", certificate_type)
            return "Rejected"
        status, why = self.certificates.install(kind, certificate)
        log.info("InstallCertificate %s: %s (%s)", certificate_type, status, why)
        self._count_certificates()
        return status

    def installed_certificate_ids(self, certificate_types: list[str] | None) -> tuple[str, list[dict]]:
        """GetInstalledCertificateIds (M03): the status and the certificateHashDataChain."""
        chain = []
        for certificate_type in certificate_types or list(STORE_TYPES):
            kind = STORE_TYPES.get(certificate_type)
            if kind is None:
                continue
            _, ids = self.certificates.installed_ids(kind)
            chain += [{"certificateType": certificate_type, "certificateHashData": data} for data in ids]
        return ("Accepted" if chain else "NotFound"), chain

    def delete_certificate(self, hash_data: dict) -> str:
        """DeleteCertificate (M04): Accepted, NotFound, or Failed for the Charging Station
        certificate and for the last CSMS root when the connection's TLS depends on it."""
        protect = (self.device_model.number("SecurityCtrlr", "SecurityProfile") >= 2
                   and self.config.ocpp.ca_file is None)
        status = self.certificates.delete(hash_data, protect_last_central_system_root=protect)
        log.info("DeleteCertificate serial %s: %s", hash_data.get("serialNumber"), status)
        self._count_certificates()
        return status

    def _count_certificates(self) -> None:
        try:
            count = sum(len(self.certificates.roots(kind)) for kind in STORE_TYPES.values())
        except OSError:
            return
        self.device_model.set_internal("SecurityCtrlr", "CertificateEntries", str(count))

    # ----------------------------------------------------------------- A02/A03 the station's certificate

    def certificate_signed(self, chain: str, certificate_type: str | None) -> str:
        """CertificateSigned (A02): a valid chain for the pending key is used from the next
        connection, at once with profile 3; an invalid one is Rejected and reported."""
        if certificate_type not in (None, "ChargingStationCertificate"):
            log.warning("CertificateSigned %s refused: no ISO 15118 certificates here", certificate_type)
            return "Rejected"
        trusted = [self.config.ocpp.ca_file] if self.config.ocpp.ca_file else []
        accepted, why = self.certificates.accept_signed_certificate(chain, trusted)
        if not accepted:
            log.warning("CertificateSigned refused: %s", why)
            self.report("InvalidChargingStationCertificate", why)
            return "Rejected"
        log.info("new Charging Station certificate accepted: %s", why)
        self._certificate_arrived.set()
        if self.device_model.number("SecurityCtrlr", "SecurityProfile") == 3:
            self.reconnect_wanted = True
        return "Accepted"

    async def sign_certificate(self) -> None:
        """SignCertificateRequest with a new key's CSR (A02). Accepted, and no CertificateSigned
        within SecurityCtrlr.CertSigningWaitMinimum, it is sent again with a new CSR, the wait
        doubled each time, at most CertSigningRepeatTimes times."""
        if self._signing is not None and not self._signing.done():
            self._signing.cancel()
        self._certificate_arrived.clear()
        if await self._request_signature():
            self._signing = asyncio.get_running_loop().create_task(self._repeat_signing_request(),
                                                                   name="ocpp-sign-certificate")

    async def _request_signature(self) -> bool:
        csr = self.certificates.create_signing_request(
            self.config.charge_point.id, self.device_model.get("SecurityCtrlr", "OrganizationName"),
            self.config.charge_point.serial_number)
        answer = await self._send("SignCertificate", {"csr": csr, "certificateType": "ChargingStationCertificate"})
        log.info("SignCertificate: %s", answer["status"])
        return answer["status"] == "Accepted"

    async def _repeat_signing_request(self) -> None:
        wait = float(self.device_model.number("SecurityCtrlr", "CertSigningWaitMinimum"))
        for _ in range(self.device_model.number("SecurityCtrlr", "CertSigningRepeatTimes")):
            if await wait_event(self._certificate_arrived, wait):
                return
            log.warning("no CertificateSigned within %g s of the signing request; sending it again", wait)
            try:
                if not await self._request_signature():
                    return
            except (OCPPError, ConnectionError, asyncio.TimeoutError, websockets.ConnectionClosed) as error:
                log.warning("SignCertificate not delivered: %s", error or type(error).__name__)
            wait *= 2

    # ----------------------------------------------------------------- L01/L02 firmware

    def update_firmware(self, request_id: int, firmware: dict, retries: int | None,
                        retry_interval: int | None) -> str:
        """UpdateFirmware (L01/L02): UpdateFirmwareResponse's status."""
        install = firmware.get("install_date_time")
        status = self.firmware.update_by_request(
            request_id, firmware["location"], request_time(firmware["retrieve_date_time"], "retrieveDateTime"),
            retries, retry_interval, request_time(install, "installDateTime") if install else None,
            firmware.get("signing_certificate"), firmware.get("signature"))
        log.info("UpdateFirmware %d from %s: %s", request_id, shown_url(firmware["location"]), status)
        return status

    async def _firmware_installed(self) -> None:
        self.report("FirmwareUpdated", f"firmware installed by UpdateFirmware {self.firmware.signed_status[1]}")
        self._on_firmware_installed()
        await self._controller.restart_into_new_firmware()

    async def _notify_firmware(self, status: str, request_id: int | None) -> None:
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        await self._notify("FirmwareStatusNotification", payload)

    # ----------------------------------------------------------------- N01 logs

    def get_log(self, log_type: str, request_id: int, log_parameters: dict, retries: int | None,
                retry_interval: int | None) -> tuple[str, str | None]:
        """GetLog (N01): GetLogResponse's (status, filename)."""
        oldest, latest = log_parameters.get("oldest_timestamp"), log_parameters.get("latest_timestamp")
        status, name = self.logs.get_log(log_type, request_id, log_parameters["remote_location"],
                                         request_time(oldest, "oldestTimestamp") if oldest else None,
                                         request_time(latest, "latestTimestamp") if latest else None,
                                         retries, retry_interval)
        log.info("GetLog %d (%s) to %s: %s", request_id, log_type, shown_url(log_parameters["remote_location"]),
                 status)
        return status, name

    async def _notify_log(self, status: str, request_id: int) -> None:
        await self._notify("LogStatusNotification", {"status": status, "requestId": request_id})

    @staticmethod
    async def _no_diagnostics(status: str) -> None:
        raise RuntimeError("OCPP 2.0.1 has no GetDiagnostics")

    async def _notify(self, action: str, payload: dict[str, Any]) -> None:
        """A status notification: waits a while for the connection when offline; not delivered
        (and logged) when it stays away."""
        if not await wait_event(self._online, NOTIFICATION_WAIT_S):
            log.warning("%s %s not sent: CSMS offline", action, payload["status"])
            return
        try:
            await self._send(action, payload)
        except (OCPPError, ConnectionError, asyncio.TimeoutError, websockets.ConnectionClosed) as error:
            log.warning("%s %s not delivered: %s", action, payload["status"], error or type(error).__name__)

    # ----------------------------------------------------------------- F06 TriggerMessage

    def trigger_answer(self, message: str) -> str:
        if message == "SignChargingStationCertificate" and not self.device_model.get("SecurityCtrlr",
                                                                                      "OrganizationName"):
            return "Rejected"  # the CSR's O is SecurityCtrlr.OrganizationName
        return "Accepted"

    async def send_triggered(self, message: str) -> None:
        """The message a TriggerMessage asked for (F06): the status of the update or upload under
        way with its requestId, Idle without one when there is none."""
        if message == "FirmwareStatusNotification":
            status, request_id = self.firmware.signed_status
            payload: dict[str, Any] = {"status": status}
            if request_id is not None:
                payload["requestId"] = request_id
            await self._send("FirmwareStatusNotification", payload)
        elif message == "LogStatusNotification":
            payload = {"status": self.logs.log_status}
            if self.logs.log_request_id is not None:
                payload["requestId"] = self.logs.log_request_id
            await self._send("LogStatusNotification", payload)
        elif message == "SignChargingStationCertificate":
            await self.sign_certificate()

