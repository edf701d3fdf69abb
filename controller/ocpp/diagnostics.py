"""Diagnostics and logs for the central system: gathered into one archive, then uploaded.

- OCPP 1.6 §5.8 GetDiagnostics: the answer names the file that will be uploaded (no name when
  there is nothing to send); DiagnosticsStatusNotification (§4.4) Uploading, then Uploaded or
  UploadFailed.
- Security whitepaper ed.2 use case N01 GetLog (logType DiagnosticsLog or SecurityLog): the
  answer is Accepted, Rejected or AcceptedCanceled (an upload under way was cancelled) with the
  file name; LogStatusNotification Uploading, then Uploaded, UploadFailure or PermissionDenied,
  each with the GetLog requestId (OCTT TC_079).

The archive is a ``.tar.gz`` named ``<charge point id>-<log type>-<UTC yyyymmddThhmmssZ>.tar.gz``
holding the log files that exist (with their rotated siblings ``name.1``, ``name.2``…,
compressed or not), for diagnostics the service's journal over the requested period when
``journalctl`` is there, and a ``manifest.txt`` saying what is in it and what could not be read.
Uploads go through :mod:`evcp.ocpp.transfer`, ``1 + retries`` attempts ``retry_interval_s``
apart, in background tasks; the archive is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from evcp.ocpp import transfer

logger = logging.getLogger("evcp.ocpp.diagnostics")

# LogEnumType (whitepaper ed.2 GetLog.req).
DIAGNOSTICS_LOG = "DiagnosticsLog"
SECURITY_LOG = "SecurityLog"
LOG_TYPES = (DIAGNOSTICS_LOG, SECURITY_LOG)

# GetLog.conf LogStatusEnumType.
ACCEPTED = "Accepted"
REJECTED = "Rejected"
ACCEPTED_CANCELED = "AcceptedCanceled"

IDLE = "Idle"
UPLOADING = "Uploading"
UPLOADED = "Uploaded"
# DiagnosticsStatus (OCPP 1.6 §7.24) and UploadLogStatusEnumType (whitepaper ed.2) name failure differently.
DIAGNOSTICS_UPLOAD_FAILED = "UploadFailed"
LOG_UPLOAD_FAILURE = "UploadFailure"
LOG_PERMISSION_DENIED = "PermissionDenied"

JOURNAL_UNIT = "evcp"
JOURNAL_TIMEOUT_S = 15.0
DEFAULT_RETRIES = 1
DEFAULT_RETRY_INTERVAL_S = 60.0
DEFAULT_TRANSFER_TIMEOUT_S = 60.0
MANIFEST = "manifest.txt"
JOURNAL_MEMBER = "journal.txt"

_ROTATED_SUFFIX = re.compile(r"\.(\d+)(\.gz)?$")


def archive_name(charge_point_id: str, kind: str, at: float) -> str:
    """``<charge point id>-<kind>-<UTC yyyymmddThhmmssZ>.tar.gz``, safe as a file name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", charge_point_id) or "charger"
    return f"{safe_id}-{kind}-{stamp}.tar.gz"


def rotated_files(source: Path) -> list[Path]:
    """``source`` if it exists, then its rotated siblings ``name.1``, ``name.2``… (also
    ``name.N.gz``), newest first."""
    found = [source] if source.is_file() else []
    if source.parent.is_dir():
        siblings = []
        for sibling in source.parent.iterdir():
            if not sibling.name.startswith(source.name + "."):
                continue
            match = _ROTATED_SUFFIX.fullmatch(sibling.name[len(source.name):])
            if match and sibling.is_file():
                siblings.append((int(match.group(1)), sibling.name, sibling))
        found += [path for _, _, path in sorted(siblings)]
    return found


def log_files(log_type: str, trace_file: Path, security_log: Path) -> list[Path]:
    """What an upload of ``log_type`` holds (with the journal ``collect`` adds): the OCPP frame
    trace and the security log for DiagnosticsLog, the security log alone for SecurityLog."""
    if log_type == DIAGNOSTICS_LOG:
        return [trace_file, security_log]
    return [security_log]


def _iso(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _journal_argv(journalctl: str, unit: str, since: float | None, until: float | None) -> list[str]:
    # "@<seconds>" is an absolute UNIX time for journalctl (systemd.time(7)).
    argv = [journalctl, "--unit", unit, "--no-pager", "--output", "short-iso-precise"]
    if since is not None:
        argv += ["--since", f"@{int(since)}"]
    if until is not None:
        argv += ["--until", f"@{int(until) + 1}"]
    return argv


def collect(kind: str, sources: Sequence[Path], work_dir: Path, charge_point_id: str,
            since: float | None, until: float | None, *, at: float | None = None,
            journal_unit: str | None = JOURNAL_UNIT, journalctl: str | None = "journalctl",
            journal_timeout_s: float = JOURNAL_TIMEOUT_S) -> Path:
    """Write the archive of ``kind`` (see the module docstring) into ``work_dir``; returns it.

    ``since``/``until`` (UNIX seconds, None: open) bound the journal; log files go whole.
    ``at`` stamps the name (default: now). ``journalctl`` is the command to run (looked up on
    PATH; None or not found: no journal); ``journal_unit`` None leaves the journal out. Blocking:
    run it in a thread.
    """
    at = time.time() if at is None else at
    work_dir.mkdir(parents=True, exist_ok=True)
    archive = work_dir / archive_name(charge_point_id, kind, at)
    manifest = [f"charge point: {charge_point_id}", f"log: {kind}", f"created: {_iso(at)}",
                f"period: {_iso(since)} .. {_iso(until)}", "files:"]
    problems: list[str] = []
    fd, temporary_name = tempfile.mkstemp(dir=work_dir, prefix=f".{archive.name}.", suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            used: set[str] = {MANIFEST, JOURNAL_MEMBER}
            for source in sources:
                for path in rotated_files(Path(source)):
                    member = _unique(path.name, used)
                    try:
                        size = _add_file(tar, path, member, problems)
                    except OSError as error:
                        problems.append(f"{path}: {error.strerror or error}")
                        continue
                    manifest.append(f"  {member} ({size} bytes, from {path})")
            manifest.append(_add_journal(tar, work_dir, journalctl, journal_unit, since, until,
                                         journal_timeout_s, problems))
            if problems:
                manifest += ["problems:"] + [f"  {problem}" for problem in problems]
            _add_text(tar, MANIFEST, "\n".join(manifest) + "\n", at)
        os.replace(temporary, archive)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return archive


class _ExactLength(io.RawIOBase):
    """Reads ``size`` bytes of ``source``, padding with NULs if it shrank meanwhile (a log
    truncated by rotation), so a member never breaks the archive."""

    def __init__(self, source: io.BufferedReader, size: int):
        self._source = source
        self._remaining = size
        self.shrank = False

    def read(self, size: int = -1) -> bytes:
        wanted = self._remaining if size < 0 else min(size, self._remaining)
        data = self._source.read(wanted)
        if len(data) < wanted:
            self.shrank = True
            data += b"\0" * (wanted - len(data))
        self._remaining -= len(data)
        return data


def _add_file(tar: tarfile.TarFile, path: Path, member: str, problems: list[str]) -> int:
    """Add the file as it is now (a log may grow meanwhile); returns the bytes added."""
    with open(path, "rb") as source:
        info = tar.gettarinfo(arcname=member, fileobj=source)
        reader = _ExactLength(source, info.size)
        tar.addfile(info, reader)
    if reader.shrank:
        problems.append(f"{path}: shrank while being read (rotated?); padded with NUL bytes")
    return info.size


def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 1
    while candidate in used:
        number += 1
        candidate = f"{number}-{name}"
    used.add(candidate)
    return candidate


def _add_text(tar: tarfile.TarFile, name: str, text: str, at: float) -> None:
    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(at)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_journal(tar: tarfile.TarFile, work_dir: Path, journalctl: str | None, unit: str | None,
                 since: float | None, until: float | None, timeout_s: float, problems: list[str]) -> str:
    """Add the journal of ``unit`` if it can be read; returns the manifest line about it."""
    command = shutil.which(journalctl) if journalctl and unit else None
    if command is None:
        return "journal: not included" if not unit else "journal: not available (no journalctl)"
    argv = _journal_argv(command, unit, since, until)
    with tempfile.TemporaryFile(dir=work_dir) as output:
        try:
            finished = subprocess.run(argv, stdout=output, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                      timeout=timeout_s, check=False)
            outcome = f"exit status {finished.returncode}"
            if finished.returncode != 0:
                problems.append(f"journalctl: {finished.stderr.decode('utf-8', 'replace').strip()[:500]}")
        except subprocess.TimeoutExpired:
            outcome = f"stopped after {timeout_s:g} s, truncated"
            problems.append(f"journalctl did not finish within {timeout_s:g} s")
        except OSError as error:
            problems.append(f"journalctl: {error.strerror or error}")
            return "journal: not available"
        size = output.tell()
        output.seek(0)
        info = tarfile.TarInfo(JOURNAL_MEMBER)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o644
        tar.addfile(info, output)
    return f"journal: {JOURNAL_MEMBER} ({size} bytes, unit {unit}, {outcome})"


class LogUploads:
    """GetDiagnostics and GetLog: one upload of each kind at a time, in the background."""

    def __init__(
        self,
        work_dir: Path,
        charge_point_id: str,
        sources: Callable[[str], Sequence[Path]],
        notify_diagnostics: Callable[[str], Awaitable[None]],
        notify_log: Callable[[str, int], Awaitable[None]],
        *,
        journal_unit: str | None = JOURNAL_UNIT,
        journalctl: str | None = "journalctl",
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transfer_timeout_s: float = DEFAULT_TRANSFER_TIMEOUT_S,
        tls_context: ssl.SSLContext | None = None,
    ):
        """``sources(log_type)``: the log files of DiagnosticsLog or SecurityLog.
        ``notify_diagnostics(status)``: send DiagnosticsStatusNotification.
        ``notify_log(status, request_id)``: send LogStatusNotification. ``journal_unit``: the
        service whose journal goes with diagnostics (None: none). ``tls_context``: trusted CAs
        for https/ftps (default: the system's)."""
        self._work_dir = Path(work_dir)
        self._charge_point_id = charge_point_id
        self._sources = sources
        self._notify_diagnostics = notify_diagnostics
        self._notify_log = notify_log
        self._journal_unit = journal_unit
        self._journalctl = journalctl
        self._now = now
        self._sleep = sleep
        self._transfer_timeout_s = transfer_timeout_s
        self._tls_context = tls_context
        self._diagnostics_task: asyncio.Task | None = None
        self._log_task: asyncio.Task | None = None
        self._log_request_id: int | None = None

    # -- what the central system asks ------------------------------------------------------------

    def get_diagnostics(self, location: str, start: float | None = None, stop: float | None = None,
                        retries: int | None = None, retry_interval_s: float | None = None) -> str | None:
        """GetDiagnostics.req (OCPP 1.6 §5.8): the file name for GetDiagnostics.conf, None when
        there is no diagnostic information (then nothing is uploaded)."""
        if not self._has_content(DIAGNOSTICS_LOG):
            logger.warning("GetDiagnostics: no diagnostic information available")
            return None
        at = self._now()
        name = archive_name(self._charge_point_id, DIAGNOSTICS_LOG, at)
        previous = self._diagnostics_task
        if _running(previous):
            logger.info("GetDiagnostics replaces the diagnostics upload under way")
            previous.cancel()

        async def report(status: str, permission_denied: bool = False) -> None:
            await _quietly(self._notify_diagnostics(status), "DiagnosticsStatusNotification", status)

        self._diagnostics_task = asyncio.get_running_loop().create_task(self._upload(
            previous, DIAGNOSTICS_LOG, "diagnostics", location, start, stop, at, retries, retry_interval_s,
            report, DIAGNOSTICS_UPLOAD_FAILED), name="diagnostics-upload")
        return name

    def get_log(self, log_type: str, request_id: int, location: str, oldest: float | None = None,
                latest: float | None = None, retries: int | None = None,
                retry_interval_s: float | None = None) -> tuple[str, str | None]:
        """GetLog.req (whitepaper ed.2 N01): GetLog.conf's (status, filename)."""
        if log_type not in LOG_TYPES:
            logger.warning("GetLog %s rejected: unknown log type %r", request_id, log_type)
            return REJECTED, None
        problem = transfer.location_problem(location)
        if problem is not None:
            logger.warning("GetLog %s rejected: %s", request_id, problem)
            return REJECTED, None
        if not self._has_content(log_type):
            logger.warning("GetLog %s: no %s information available", request_id, log_type)
            return ACCEPTED, None
        at = self._now()
        name = archive_name(self._charge_point_id, log_type, at)
        previous = self._log_task
        status = ACCEPTED
        if _running(previous):
            # Whitepaper N01: a new GetLog cancels the upload under way: AcceptedCanceled.
            logger.info("GetLog %s cancels the log upload %s under way", request_id, self._log_request_id)
            previous.cancel()
            status = ACCEPTED_CANCELED
        self._log_request_id = request_id

        async def report(upload_status: str, permission_denied: bool = False) -> None:
            if permission_denied and upload_status == LOG_UPLOAD_FAILURE:
                upload_status = LOG_PERMISSION_DENIED
            await _quietly(self._notify_log(upload_status, request_id), "LogStatusNotification", upload_status)

        self._log_task = asyncio.get_running_loop().create_task(self._upload(
            previous, log_type, "log", location, oldest, latest, at, retries, retry_interval_s,
            report, LOG_UPLOAD_FAILURE), name="log-upload")
        return status, name

    # -- what the charger asks -------------------------------------------------------------------

    @property
    def diagnostics_status(self) -> str:
        """For TriggerMessage DiagnosticsStatusNotification (OCPP 1.6 §4.4): Uploading or Idle."""
        return UPLOADING if _running(self._diagnostics_task) else IDLE

    @property
    def log_status(self) -> str:
        """For ExtendedTriggerMessage LogStatusNotification: Uploading or Idle."""
        return UPLOADING if _running(self._log_task) else IDLE

    @property
    def log_request_id(self) -> int | None:
        """The requestId of the log upload under way (None when Idle)."""
        return self._log_request_id if _running(self._log_task) else None

    async def join(self) -> None:
        """Return once no upload is under way."""
        while _running(self._diagnostics_task) or _running(self._log_task):
            await asyncio.wait({task for task in (self._diagnostics_task, self._log_task) if _running(task)})

    async def close(self) -> None:
        """Cancel the uploads under way (at shutdown)."""
        tasks = [task for task in (self._diagnostics_task, self._log_task) if _running(task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the uploads -----------------------------------------------------------------------------

    def _source_files(self, log_type: str) -> list[Path]:
        try:
            return [Path(source) for source in self._sources(log_type)]
        except Exception:
            logger.exception("could not list the %s files", log_type)
            return []

    def _journal_for(self, log_type: str) -> str | None:
        return self._journal_unit if log_type == DIAGNOSTICS_LOG else None

    def _has_content(self, log_type: str) -> bool:
        if any(rotated_files(source) for source in self._source_files(log_type)):
            return True
        unit = self._journal_for(log_type)
        return bool(unit and self._journalctl and shutil.which(self._journalctl))

    async def _upload(self, previous: asyncio.Task | None, log_type: str, subdirectory: str, location: str,
                      since: float | None, until: float | None, at: float, retries: int | None,
                      retry_interval_s: float | None, report, failed: str) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await report(UPLOADING)
        archive: Path | None = None
        try:
            archive = await asyncio.to_thread(
                collect, log_type, self._source_files(log_type), self._work_dir / subdirectory,
                self._charge_point_id, since, until, at=at, journal_unit=self._journal_for(log_type),
                journalctl=self._journalctl)
            error = await self._send_with_retries(archive, location, retries, retry_interval_s)
            if error is None:
                await report(UPLOADED)
            else:
                await report(failed, error.permission_denied)
        except asyncio.CancelledError:
            logger.info("%s upload cancelled", log_type)
            raise
        except Exception:
            logger.exception("%s upload failed unexpectedly", log_type)
            await report(failed)
        finally:
            if archive is not None:
                archive.unlink(missing_ok=True)

    async def _send_with_retries(self, archive: Path, location: str, retries: int | None,
                                 retry_interval_s: float | None) -> transfer.TransferError | None:
        """None once uploaded, else the last error."""
        problem = transfer.location_problem(location)
        if problem is not None:
            logger.error("cannot upload %s: %s", archive.name, problem)
            return transfer.TransferError(problem)
        attempts = 1 + (DEFAULT_RETRIES if retries is None else max(0, int(retries)))
        interval = DEFAULT_RETRY_INTERVAL_S if retry_interval_s is None else max(0.0, float(retry_interval_s))
        last: transfer.TransferError | None = None
        for attempt in range(1, attempts + 1):
            try:
                ended_at = await transfer.upload(archive, location, self._transfer_timeout_s,
                                                 tls_context=self._tls_context)
            except transfer.TransferError as error:
                last = error
                logger.warning("upload of %s, attempt %d of %d, failed: %s", archive.name, attempt, attempts, error)
                if attempt < attempts:
                    await self._sleep(interval)
                continue
            logger.info("uploaded %s to %s", archive.name, ended_at)
            return None
        return last


def _running(task: asyncio.Task | None) -> bool:
    return task is not None and not task.done()


async def _quietly(notification: Awaitable[None], message: str, status: str) -> None:
    try:
        await notification
    except Exception:
        logger.exception("could not send %s %s", message, status)
