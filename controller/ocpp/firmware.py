"""The firmware update process: download, check, wait until no transaction runs, install.

Two flows share one process, and one update runs at a time (OCPP 2.0.1 UpdateFirmware, Part 2
L01/L02, is the second one, the signature optional: ``update_by_request``):

- OCPP 1.6 §5.19 UpdateFirmware (no answer status). FirmwareStatusNotification (§4.5):
  Downloading, Downloaded (or DownloadFailed), Installing, Installed (or InstallationFailed).
- Security whitepaper ed.2 use case L01, SignedUpdateFirmware: the signing certificate is checked
  before answering (InvalidCertificate), the signature after the download (SignatureVerified or
  InvalidSignature, with the security event InvalidFirmwareSignature, OCTT TC_081). Each
  SignedFirmwareStatusNotification carries the request's requestId; the flow adds
  DownloadScheduled (retrieveDateTime in the future) and InstallScheduled (installDateTime in the
  future).

The process waits for retrieveDateTime (and installDateTime) with the injected clock, tries the
download ``1 + retries`` times ``retry_interval_s`` apart, then holds the charging gate (no new
transaction starts) and waits until no transaction runs: a running transaction is never cut short
(whitepaper L01: wait for the transactions to end before installing). Installing runs the
configured command with the firmware file appended to its argv; exit status 0 means installed.
Without a command nothing is ever claimed to be installed: the update ends InstallationFailed.
After Installed, ``on_installed`` is awaited (the controller restarts there) and the gate stays
held; on any failure it is released.

A new request while an update runs replaces it (SignedUpdateFirmware.conf AcceptedCanceled,
whitepaper L01), unless it is already installing: then a signed request is Rejected and an
unsigned one ignored, since an installation is never cut short.

Statuses this process does not produce: DownloadPaused (downloads are never paused),
InstallRebooting (installing restarts the controller, not the device) and
InstallVerificationFailed (the install command reports a single failure).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import shlex
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from evcp.core import events as ev
from evcp.ocpp import transfer

if TYPE_CHECKING:
    from evcp.runtime.controller import Controller

logger = logging.getLogger("evcp.ocpp.firmware")

DEFAULT_RETRIES = 1
DEFAULT_RETRY_INTERVAL_S = 60.0
DEFAULT_INSTALL_TIMEOUT_S = 900.0
DEFAULT_TRANSFER_TIMEOUT_S = 60.0
#: Waits for a date are cut into steps this long, so a clock set after boot (no RTC) is followed.
LONGEST_SLEEP_S = 60.0
OUTPUT_LINES_LOGGED = 20

# FirmwareStatus values (OCPP 1.6 §7.25; whitepaper ed.2 FirmwareStatusEnumType).
IDLE = "Idle"
DOWNLOAD_SCHEDULED = "DownloadScheduled"
DOWNLOADING = "Downloading"
DOWNLOADED = "Downloaded"
DOWNLOAD_FAILED = "DownloadFailed"
SIGNATURE_VERIFIED = "SignatureVerified"
INVALID_SIGNATURE = "InvalidSignature"
INSTALL_SCHEDULED = "InstallScheduled"
INSTALLING = "Installing"
INSTALLED = "Installed"
INSTALLATION_FAILED = "InstallationFailed"

# SignedUpdateFirmware.conf statuses (whitepaper ed.2 UpdateFirmwareStatusEnumType).
ACCEPTED = "Accepted"
REJECTED = "Rejected"
ACCEPTED_CANCELED = "AcceptedCanceled"
INVALID_CERTIFICATE = "InvalidCertificate"

# Security events (whitepaper ed.2 §A, list of security events).
INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"

Notify = Callable[[str, "int | None"], Awaitable[None]]
SecurityEvent = Callable[[str, str], "Awaitable[None] | None"]


class ChargingGate(Protocol):
    """What the firmware process needs from the charger's transactions."""

    def hold(self, reason: str) -> None:
        """From now on no new transaction starts (connectors may show Unavailable)."""

    def release(self) -> None:
        """Transactions may start again."""

    async def wait_idle(self) -> None:
        """Return once no transaction runs."""


class SessionGate:
    """The controller as the firmware process's ChargingGate: no new sessions, and a way to wait
    until the running ones have ended (they are never interrupted)."""

    def __init__(self, controller: "Controller"):
        self._controller = controller

    def hold(self, reason: str) -> None:
        self._controller.dispatch(ev.MaintenanceRequested(reason))

    def release(self) -> None:
        self._controller.dispatch(ev.MaintenanceRequested(None))

    async def wait_idle(self) -> None:
        while self._controller.station.transactions_running():
            await asyncio.sleep(1.0)


@dataclass(frozen=True)
class _Job:
    location: str
    retrieve_at: float
    retries: int
    retry_interval_s: float
    request_id: int | None = None
    """Set for SignedUpdateFirmware; None for the OCPP 1.6 UpdateFirmware."""
    install_at: float | None = None
    signing_certificate: str = ""
    signature: str = ""
    check_signature: bool = False
    """The signature is verified after the download (SignedUpdateFirmware, 2.0.1 L01)."""

    @property
    def signed(self) -> bool:
        return self.request_id is not None


def firmware_file_name(location: str) -> str:
    """A safe local file name for the firmware at ``location`` (its last path segment)."""
    name = unquote(urlsplit(location).path.rpartition("/")[2])
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "firmware.bin"


class FirmwareUpdater:
    """Runs one firmware update at a time and reports its statuses through ``notify``."""

    def __init__(
        self,
        work_dir: Path,
        install_command: Sequence[str] | None,
        notify: Notify,
        gate: ChargingGate,
        *,
        on_installed: Callable[[], Awaitable[None]],
        verify_signature: Callable[[Path, str, str], str | None] | None = None,
        check_signing_certificate: Callable[[str], str | None] | None = None,
        security_event: SecurityEvent | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        install_timeout_s: float = DEFAULT_INSTALL_TIMEOUT_S,
        transfer_timeout_s: float = DEFAULT_TRANSFER_TIMEOUT_S,
        tls_context: ssl.SSLContext | None = None,
    ):
        """
        ``notify(status, request_id)``: send the status (request_id None: FirmwareStatusNotification,
        else SignedFirmwareStatusNotification). ``verify_signature(file, signature_base64,
        certificate_pem)``: None if the signature is valid, else why not; without it signed
        updates are Rejected. ``check_signing_certificate(pem)``: None if the certificate may sign
        firmware, else why not. ``security_event(type, tech_info)``: report a security event.
        ``tls_context``: trusted CAs for https/ftps downloads (default: the system's).
        """
        self._work_dir = Path(work_dir)
        self._install_command = list(install_command) if install_command else None
        self._notify_callback = notify
        self._gate = gate
        self._on_installed = on_installed
        self._verify_signature = verify_signature
        self._check_signing_certificate = check_signing_certificate
        self._security_event = security_event
        self._now = now
        self._sleep = sleep
        self._install_timeout_s = install_timeout_s
        self._transfer_timeout_s = transfer_timeout_s
        self._tls_context = tls_context
        self._task: asyncio.Task | None = None
        self._installing = False
        self._last_status = IDLE
        self._last_request_id: int | None = None
        self._last_signed = False
        self._reports: set[asyncio.Task] = set()

    # -- what the central system asks ------------------------------------------------------------

    def update(self, location: str, retrieve_at: float, retries: int | None = None,
               retry_interval_s: float | None = None) -> None:
        """UpdateFirmware.req (OCPP 1.6 §5.19): start the update in the background.

        ``retrieve_at``: UNIX seconds. ``retries``: download attempts after the first (None:
        :data:`DEFAULT_RETRIES`), ``retry_interval_s`` apart (None: :data:`DEFAULT_RETRY_INTERVAL_S`).
        """
        if self._installing:
            logger.warning("UpdateFirmware for %s ignored: a firmware is being installed",
                           transfer.shown_url(location))
            return
        self._start(_Job(location, retrieve_at, _retries(retries), _interval(retry_interval_s)))

    def signed_update(self, request_id: int, location: str, retrieve_at: float, retries: int | None,
                      retry_interval_s: float | None, install_at: float | None, signing_certificate: str,
                      signature: str) -> str:
        """SignedUpdateFirmware.req (whitepaper ed.2 L01): the SignedUpdateFirmware.conf status;
        when accepted the update goes on in the background. Times and retries as in
        :meth:`update`; ``install_at`` None installs as soon as possible."""
        if self._verify_signature is None:
            logger.error("SignedUpdateFirmware %s rejected: no firmware signature verifier configured", request_id)
            return REJECTED
        problem = transfer.location_problem(location)
        if problem is not None:
            logger.warning("SignedUpdateFirmware %s rejected: %s", request_id, problem)
            return REJECTED
        if self._check_signing_certificate is not None:
            reason = self._check_signing_certificate(signing_certificate)
            if reason is not None:
                # Whitepaper L01: an invalid signing certificate is answered InvalidCertificate
                # and reported as the security event InvalidFirmwareSigningCertificate.
                logger.warning("SignedUpdateFirmware %s: invalid signing certificate: %s", request_id, reason)
                task = asyncio.get_running_loop().create_task(
                    self._report_security_event(INVALID_FIRMWARE_SIGNING_CERTIFICATE, reason))
                self._reports.add(task)
                task.add_done_callback(self._reports.discard)
                return INVALID_CERTIFICATE
        if self._installing:
            logger.warning("SignedUpdateFirmware %s rejected: a firmware is being installed", request_id)
            return REJECTED
        replaced = self.busy
        self._start(_Job(location, retrieve_at, _retries(retries), _interval(retry_interval_s), request_id,
                         install_at, signing_certificate, signature, check_signature=True))
        return ACCEPTED_CANCELED if replaced else ACCEPTED

    def update_by_request(self, request_id: int, location: str, retrieve_at: float, retries: int | None,
                          retry_interval_s: float | None, install_at: float | None,
                          signing_certificate: str | None, signature: str | None) -> str:
        """OCPP 2.0.1 UpdateFirmware (Part 2 L01 secure, L02 non-secure): the response status.
        With a signature and its signing certificate it is :meth:`signed_update`; without either
        (L02) the firmware is installed unchecked, the statuses still carrying ``request_id``.
        One without the other is Rejected: the signature could not be verified."""
        if signing_certificate and signature:
            return self.signed_update(request_id, location, retrieve_at, retries, retry_interval_s, install_at,
                                      signing_certificate, signature)
        if signing_certificate or signature:
            logger.warning("UpdateFirmware %s rejected: a signature needs its signing certificate and the "
                           "other way round", request_id)
            return REJECTED
        problem = transfer.location_problem(location)
        if problem is not None:
            logger.warning("UpdateFirmware %s rejected: %s", request_id, problem)
            return REJECTED
        if self._installing:
            logger.warning("UpdateFirmware %s rejected: a firmware is being installed", request_id)
            return REJECTED
        logger.warning("UpdateFirmware %s carries no signature: the firmware will be installed unverified "
                       "(OCPP 2.0.1 L02)", request_id)
        replaced = self.busy
        self._start(_Job(location, retrieve_at, _retries(retries), _interval(retry_interval_s), request_id,
                         install_at))
        return ACCEPTED_CANCELED if replaced else ACCEPTED

    # -- what the charger asks -------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while an update is under way (scheduled, downloading, waiting or installing)."""
        return self._task is not None and not self._task.done()

    @property
    def status(self) -> str:
        """For TriggerMessage FirmwareStatusNotification (OCPP 1.6 §4.5): the last status sent
        while an update is under way, Idle otherwise."""
        return self._last_status if self.busy else IDLE

    @property
    def signed_status(self) -> tuple[str, int | None]:
        """For ExtendedTriggerMessage (whitepaper ed.2 SignedFirmwareStatusNotification): the
        last status sent with its requestId, or (Idle, None) when that was Installed or no
        signed update ran."""
        if not self._last_signed or (self._last_status == INSTALLED and not self.busy):
            return IDLE, None
        return self._last_status, self._last_request_id

    async def join(self) -> None:
        """Return once no update is under way."""
        while self.busy:
            await asyncio.wait({self._task})

    async def close(self) -> None:
        """Cancel the update under way (at shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- the process -----------------------------------------------------------------------------

    def _start(self, job: _Job) -> None:
        previous = self._task
        if previous is not None and not previous.done():
            logger.info("firmware update replaced by a new request; cancelling the one under way")
            previous.cancel()
        self._last_signed = job.signed
        self._last_request_id = job.request_id
        self._task = asyncio.get_running_loop().create_task(self._run(job, previous), name="firmware-update")

    async def _run(self, job: _Job, previous: asyncio.Task | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        holding_gate = False
        installed = False
        firmware: Path | None = None
        downloaded = False
        try:
            firmware = await self._download(job)
            if firmware is None:
                return
            downloaded = True
            if job.check_signature and not await self._signature_verified(job, firmware):
                return
            if job.install_at is not None and job.install_at > self._now():
                await self._send(INSTALL_SCHEDULED, job)
                await self._wait_until(job.install_at)
            if self._install_command is None:
                logger.error("firmware %s downloaded but NOT installed: no firmware install command is "
                             "configured", firmware.name)
                await self._send(INSTALLATION_FAILED, job)
                return
            self._gate.hold("firmware update")
            holding_gate = True
            logger.info("firmware %s ready; waiting until no transaction runs before installing", firmware.name)
            await self._gate.wait_idle()
            self._installing = True
            await self._send(INSTALLING, job)
            if not await self._install(firmware):
                await self._send(INSTALLATION_FAILED, job)
                return
            installed = True
            await self._send(INSTALLED, job)
            logger.info("firmware %s installed; handing over for the restart", firmware.name)
            try:
                await self._on_installed()
            except Exception:
                logger.exception("firmware installed but the restart that activates it failed")
                self._gate.release()
        except asyncio.CancelledError:
            logger.info("firmware update cancelled")
            raise
        except Exception:
            logger.exception("firmware update failed unexpectedly")
            if not installed:
                await self._send(INSTALLATION_FAILED if downloaded else DOWNLOAD_FAILED, job)
        finally:
            self._installing = False
            if holding_gate and not installed:
                self._gate.release()
            if firmware is not None:
                firmware.unlink(missing_ok=True)

    async def _download(self, job: _Job) -> Path | None:
        """The downloaded firmware file, or None after DownloadFailed was sent."""
        problem = transfer.location_problem(job.location)
        if problem is not None:
            logger.error("firmware download impossible: %s", problem)
            await self._send(DOWNLOAD_FAILED, job)
            return None
        if job.signed and job.retrieve_at > self._now():
            await self._send(DOWNLOAD_SCHEDULED, job)
        await self._wait_until(job.retrieve_at)
        await self._send(DOWNLOADING, job)
        self._work_dir.mkdir(parents=True, exist_ok=True)
        firmware = self._work_dir / firmware_file_name(job.location)
        attempts = 1 + job.retries
        for attempt in range(1, attempts + 1):
            try:
                await transfer.download(job.location, firmware, self._transfer_timeout_s,
                                        tls_context=self._tls_context)
            except transfer.TransferError as error:
                logger.warning("firmware download attempt %d of %d failed: %s", attempt, attempts, error)
                if attempt < attempts:
                    await self._sleep(job.retry_interval_s)
                continue
            await self._send(DOWNLOADED, job)
            return firmware
        await self._send(DOWNLOAD_FAILED, job)
        return None

    async def _signature_verified(self, job: _Job, firmware: Path) -> bool:
        reason = await asyncio.to_thread(self._verify_signature, firmware, job.signature, job.signing_certificate)
        if reason is None:
            await self._send(SIGNATURE_VERIFIED, job)
            return True
        # Whitepaper L01: InvalidSignature is reported, with the security event
        # InvalidFirmwareSignature (OCTT TC_081), and the firmware is not installed.
        logger.error("firmware %s NOT installed: invalid signature: %s", firmware.name, reason)
        await self._send(INVALID_SIGNATURE, job)
        await self._report_security_event(INVALID_FIRMWARE_SIGNATURE, reason)
        return False

    async def _install(self, firmware: Path) -> bool:
        argv = [*self._install_command, str(firmware)]
        logger.info("installing firmware: %s", shlex.join(argv))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
        except OSError as error:
            logger.error("cannot run the firmware install command %s: %s", argv[0], error)
            return False
        try:
            async with asyncio.timeout(self._install_timeout_s):
                output, _ = await process.communicate()
        except TimeoutError:
            logger.error("firmware install command did not finish within %g s; stopped it", self._install_timeout_s)
            await _kill(process)
            return False
        except asyncio.CancelledError:
            await _kill(process)
            raise
        tail = "\n".join(output.decode("utf-8", "replace").strip().splitlines()[-OUTPUT_LINES_LOGGED:])
        if process.returncode != 0:
            logger.error("firmware install command failed (exit status %s): %s", process.returncode, tail)
            return False
        logger.info("firmware install command succeeded: %s", tail)
        return True

    async def _wait_until(self, moment: float) -> None:
        while (remaining := moment - self._now()) > 0:
            await self._sleep(min(remaining, LONGEST_SLEEP_S))

    async def _send(self, status: str, job: _Job) -> None:
        self._last_status = status
        try:
            await self._notify_callback(status, job.request_id)
        except Exception:
            logger.exception("could not report firmware status %s", status)

    async def _report_security_event(self, event_type: str, tech_info: str) -> None:
        if self._security_event is None:
            return
        try:
            result = self._security_event(event_type, tech_info)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("could not report the security event %s", event_type)


def _retries(retries: int | None) -> int:
    return DEFAULT_RETRIES if retries is None else max(0, int(retries))


def _interval(retry_interval_s: float | None) -> float:
    return DEFAULT_RETRY_INTERVAL_S if retry_interval_s is None else max(0.0, float(retry_interval_s))


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()
