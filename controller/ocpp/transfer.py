"""Moving files to and from the URLs a central system gives: firmware in, logs out.

OCPP 1.6 §5.8 (GetDiagnostics), §5.19 (UpdateFirmware) and the security whitepaper ed.2 (use
cases L01 SignedUpdateFirmware, N01 GetLog) leave the transfer protocol to the charge point,
which lists what it supports in the key ``SupportedFileTransferProtocols``
(:data:`SUPPORTED_PROTOCOLS`). Locations are URLs:

- ``http://`` / ``https://``: a download is a GET (redirects followed); an upload is a PUT of
  ``<location>/<file name>`` (the location is a directory), and when the server answers 405 or
  501 to that, a POST of ``multipart/form-data`` with the file in the field ``file`` to the
  location itself. ``user:password@`` in the URL becomes HTTP Basic authentication, not sent
  again after a redirect.
- ``ftp://`` / ``ftps://`` (explicit FTPS, RFC 4217: AUTH TLS on the control connection, port
  21 unless given, protected data connections): passive mode, binary. Path segments are relative to the login directory
  (RFC 1738 §3.2.2); an upload changes into the location's directory and stores the file under
  its own name. Without ``user:password@`` the login is anonymous.

TLS (https, ftps) always verifies the server's certificate and host name, against the given
context's CAs or the system store. Connections go straight to the URL's host: proxies from the
environment are not used.

Every blocking operation runs in a worker thread so the event loop never waits; each connect,
read and write has ``timeout_s`` (a transfer that makes no progress for that long fails). A
cancelled transfer stops at its next block. A download is written to a hidden temporary file
next to its destination and renamed only when complete, so a failure leaves nothing
half-written. Failures raise :class:`TransferError` with a message naming the URL (password
masked), the server's status and its reason.
"""

from __future__ import annotations

import asyncio
import base64
import ftplib
import http.client
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from evcp.ocpp.trace import MASK, shorten

logger = logging.getLogger("evcp.ocpp.transfer")

#: What this module can move: the value of the OCPP key SupportedFileTransferProtocols (OCPP 1.6 §9).
SUPPORTED_PROTOCOLS = ("FTP", "FTPS", "HTTP", "HTTPS")

BLOCK_BYTES = 64 * 1024
HTTP_CLIENT_NAME = "evcp"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ftps": 21}
MAX_QUOTED_URL = 512
"""Characters of a location quoted in logs and errors (the longest an OCPP 2.0.1 location may
be; 1.6 sets no limit): a central system sending a megabyte there does not get it into the log."""
_AUTHORITY_WITH_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")


def transfer_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Trusted CAs of firmware and log servers: the system's, and the installer's ocpp.ca_file."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as error:
            logger.error("ocpp.ca_file %s not usable for file transfers: %s", ca_file, error)
    return context


class TransferError(Exception):
    """A download or upload failed; the message says where and why, without passwords.

    ``permission_denied`` is true when the server refused the credentials or the access
    (HTTP 401/403, FTP 530/532), which GetLog reports as PermissionDenied.
    """

    def __init__(self, message: str, *, permission_denied: bool = False):
        super().__init__(message)
        self.permission_denied = permission_denied


class TransferCancelled(Exception):
    """Raised inside the worker thread when the awaiting task was cancelled."""


def shown_url(url: str) -> str:
    """``url`` as logs and messages show it: its password masked (``redact_url``), cut to
    MAX_QUOTED_URL characters."""
    return shorten(redact_url(url), MAX_QUOTED_URL)


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ********."""

    def mask(match: re.Match) -> str:
        user, colon, _password = match.group(2).partition(":")
        return f"{match.group(1)}{user}{':' + MASK if colon else ''}@"

    return _AUTHORITY_WITH_USERINFO.sub(mask, url, count=1)


def location_problem(url: str) -> str | None:
    """Why ``url`` cannot be used for a transfer (unsupported scheme, no host), or None."""
    try:
        _Target.parse(url)
    except TransferError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class _Target:
    """A parsed transfer URL; ``shown`` is the URL as it may appear in logs and messages (``shown_url``)."""

    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    path: str
    """Percent-decoded, without the leading "/" (relative to the FTP login directory)."""
    query: str
    shown: str
    redacted: str = field(repr=False)
    """The whole URL, password masked."""

    @classmethod
    def parse(cls, url: str) -> "_Target":
        redacted = redact_url(url)
        shown = shorten(redacted, MAX_QUOTED_URL)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise TransferError(f"{shown}: not a valid URL ({error})") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise TransferError(
                f"unsupported scheme {shorten(parts.scheme, 20) or '(none)'!r} in {shown}; "
                f"supported: {', '.join(p.lower() for p in SUPPORTED_PROTOCOLS)}"
            )
        if not parts.hostname:
            raise TransferError(f"{shown}: no host in the URL")
        try:
            parts.hostname.encode("idna")
        except UnicodeError as error:
            raise TransferError(f"{shown}: not a valid host name ({error})") from None
        raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port or _DEFAULT_PORTS[scheme],
            user=None if parts.username is None else unquote(parts.username),
            password=None if parts.password is None else unquote(parts.password),
            path=unquote(raw_path),
            query=parts.query,
            shown=shown,
            redacted=redacted,
        )

    @property
    def shown_host(self) -> str:
        """The host as messages show it (cut to MAX_QUOTED_URL characters)."""
        return shorten(self.host, MAX_QUOTED_URL)

    @property
    def address(self) -> str:
        """host:port as messages show it."""
        return f"{self.shown_host}:{self.port}"

    @property
    def is_ftp(self) -> bool:
        return self.scheme in ("ftp", "ftps")

    def http_url(self, path: str | None = None) -> str:
        """The URL without credentials, with ``path`` (decoded) instead of its own if given."""
        netloc = self.host if ":" not in self.host else f"[{self.host}]"
        if self.port != _DEFAULT_PORTS[self.scheme]:
            netloc = f"{netloc}:{self.port}"
        return urlunsplit((self.scheme, netloc, "/" + quote(self.path if path is None else path), self.query, ""))

    def shown_with_path(self, path: str) -> str:
        """The URL as messages show it (``shown_url``), with its path replaced by ``path`` (the file a
        transfer ended at)."""
        parts = urlsplit(self.redacted)
        return shorten(urlunsplit((parts.scheme, parts.netloc, "/" + quote(path), parts.query, "")), MAX_QUOTED_URL)


# --------------------------------------------------------------------------------------------
# The asyncio side


async def download(url: str, dest: Path, timeout_s: float, *,
                   tls_context: ssl.SSLContext | None = None) -> None:
    """Fetch ``url`` into ``dest``: complete, or not at all (TransferError)."""
    target = _Target.parse(url)
    await _in_thread(_download, target, Path(dest), timeout_s, tls_context)


async def upload(path: Path, location: str, timeout_s: float, *,
                 tls_context: ssl.SSLContext | None = None) -> str:
    """Send the file ``path`` to the directory ``location``; returns the URL it ended at
    (password masked). Raises TransferError."""
    target = _Target.parse(location)
    path = Path(path)
    if not path.is_file():
        raise TransferError(f"nothing to upload: {path} is not a file")
    return await _in_thread(_upload, target, path, timeout_s, tls_context)


async def _in_thread(function, *args):
    cancelled = threading.Event()
    try:
        return await asyncio.to_thread(function, *args, cancelled)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    except TransferCancelled:
        raise asyncio.CancelledError() from None


# --------------------------------------------------------------------------------------------
# The worker-thread side


def _download(target: _Target, dest: Path, timeout_s: float, tls_context: ssl.SSLContext | None,
              cancelled: threading.Event) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(fd, "wb") as out:
            received = _fetch_ftp if target.is_ftp else _fetch_http
            size = received(target, out, timeout_s, tls_context, cancelled)
            out.flush()
            os.fsync(out.fileno())
        if cancelled.is_set():
            raise TransferCancelled()
        os.replace(temporary, dest)
        logger.info("downloaded %s to %s (%d bytes)", target.shown, dest, size)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _upload(target: _Target, path: Path, timeout_s: float, tls_context: ssl.SSLContext | None,
            cancelled: threading.Event) -> str:
    send = _store_ftp if target.is_ftp else _send_http
    ended_at = send(target, path, timeout_s, tls_context, cancelled)
    logger.info("uploaded %s to %s (%d bytes)", path.name, ended_at, path.stat().st_size)
    return ended_at


class _Reader:
    """Reads ``parts`` (bytes, or files to read) one after the other, as one body; stops the
    transfer once the task was cancelled."""

    def __init__(self, parts: list[bytes | Path], cancelled: threading.Event):
        self._parts = list(parts)
        self._current: BinaryIO | None = None
        self._cancelled = cancelled

    def read(self, size: int = BLOCK_BYTES) -> bytes:
        if self._cancelled.is_set():
            raise TransferCancelled()
        size = BLOCK_BYTES if size is None or size < 0 else size
        while self._parts or self._current is not None:
            if self._current is None:
                part = self._parts.pop(0)
                if isinstance(part, bytes):
                    if part:
                        return part
                    continue
                self._current = open(part, "rb")
            block = self._current.read(size)
            if block:
                return block
            self._current.close()
            self._current = None
        return b""

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


def _copy(source, out: BinaryIO, cancelled: threading.Event) -> int:
    total = 0
    while block := source.read(BLOCK_BYTES):
        if cancelled.is_set():
            raise TransferCancelled()
        _store(out, block)
        total += len(block)
    return total


def _store(out: BinaryIO, block: bytes) -> None:
    """Write a received block; a local failure (disk full) is not the server's fault."""
    try:
        out.write(block)
    except OSError as error:
        raise TransferError(f"cannot store the download locally: {error.strerror or error}") from None


# HTTP(S) ------------------------------------------------------------------------------------


def _opener(tls_context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    context = tls_context or ssl.create_default_context()
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )


def _http_request(target: _Target, url: str, method: str, data=None,
                  headers: dict[str, str] | None = None) -> urllib.request.Request:
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"User-Agent": HTTP_CLIENT_NAME, **(headers or {})})
    if target.user is not None:
        token = base64.b64encode(f"{target.user}:{target.password or ''}".encode()).decode()
        # Not copied to the request a redirect leads to: the password is for this host only.
        request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _fetch_http(target: _Target, out: BinaryIO, timeout_s: float,
                tls_context: ssl.SSLContext | None, cancelled: threading.Event) -> int:
    request = _http_request(target, target.http_url(), "GET")
    try:
        with _opener(tls_context).open(request, timeout=timeout_s) as response:
            announced = response.headers.get("Content-Length")
            received = _copy(response, out, cancelled)
    except urllib.error.HTTPError as error:
        error.close()
        raise _http_status_error("GET", target.shown, error.code, error.reason) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _connection_error("GET", target, error, timeout_s) from None
    # http.client returns what it got when the server closes early; the length tells.
    if announced is not None and announced.isdigit() and received != int(announced):
        raise TransferError(f"GET {target.shown}: {target.address} closed the connection after "
                            f"{received} of {announced} bytes")
    return received


def _send_http(target: _Target, path: Path, timeout_s: float, tls_context: ssl.SSLContext | None,
               cancelled: threading.Event) -> str:
    directory = target.path if not target.path or target.path.endswith("/") else target.path + "/"
    file_path = directory + path.name
    size = path.stat().st_size
    opener = _opener(tls_context)
    put = _http_request(target, target.http_url(file_path), "PUT", _Reader([path], cancelled), {
        "Content-Type": "application/octet-stream", "Content-Length": str(size)})
    shown = target.shown_with_path(file_path)
    try:
        with opener.open(put, timeout=timeout_s):
            return shown
    except urllib.error.HTTPError as error:
        error.close()
        if error.code not in (405, 501):
            raise _http_status_error("PUT", shown, error.code, error.reason) from None
        logger.info("%s answered PUT with HTTP %s; posting the file as a form instead",
                    target.address, error.code)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _connection_error("PUT", target, error, timeout_s) from None
    return _post_form(opener, target, path, size, timeout_s, cancelled)


def _post_form(opener: urllib.request.OpenerDirector, target: _Target, path: Path, size: int,
               timeout_s: float, cancelled: threading.Event) -> str:
    boundary = uuid.uuid4().hex
    quoted_name = path.name.replace("\\", "\\\\").replace('"', '\\"')
    head = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{quoted_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    post = _http_request(target, target.http_url(), "POST", _Reader([head, path, tail], cancelled), {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail))})
    try:
        with opener.open(post, timeout=timeout_s):
            return target.shown
    except urllib.error.HTTPError as error:
        error.close()
        raise _http_status_error("POST", target.shown, error.code, error.reason) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _connection_error("POST", target, error, timeout_s) from None


def _http_status_error(method: str, shown: str, code: int, reason: object) -> TransferError:
    return TransferError(f"{method} {shown}: HTTP {code} {reason}".rstrip(),
                         permission_denied=code in (401, 403))


# FTP(S) -------------------------------------------------------------------------------------


def _ftp_login(target: _Target, timeout_s: float, tls_context: ssl.SSLContext | None) -> ftplib.FTP:
    if target.scheme == "ftps":
        ftp: ftplib.FTP = ftplib.FTP_TLS(context=tls_context or ssl.create_default_context(), timeout=timeout_s)
    else:
        ftp = ftplib.FTP(timeout=timeout_s)
    try:
        ftp.connect(target.host, target.port)
        ftp.login(target.user or "", target.password or "")
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
    except BaseException:
        ftp.close()
        raise
    return ftp


def _split_directory(path: str) -> tuple[str, str]:
    directory, _, name = path.rpartition("/")
    return directory, name


def _fetch_ftp(target: _Target, out: BinaryIO, timeout_s: float,
               tls_context: ssl.SSLContext | None, cancelled: threading.Event) -> int:
    directory, name = _split_directory(target.path)
    if not name:
        raise TransferError(f"{target.shown}: no file name in the URL")
    received = 0

    def write(block: bytes) -> None:
        nonlocal received
        if cancelled.is_set():
            raise TransferCancelled()
        _store(out, block)
        received += len(block)

    command = f"RETR {name}"
    _ftp_run(target, directory, command, lambda ftp: ftp.retrbinary(command, write, BLOCK_BYTES),
             timeout_s, tls_context)
    return received


def _store_ftp(target: _Target, path: Path, timeout_s: float, tls_context: ssl.SSLContext | None,
               cancelled: threading.Event) -> str:
    directory = target.path.rstrip("/")
    command = f"STOR {path.name}"
    reader = _Reader([path], cancelled)

    def store(ftp: ftplib.FTP) -> None:
        ftp.storbinary(command, reader, BLOCK_BYTES)
        ftp.quit()

    try:
        _ftp_run(target, directory, command, store, timeout_s, tls_context)
    finally:
        reader.close()
    return target.shown_with_path(f"{directory}/{path.name}" if directory else path.name)


def _ftp_run(target: _Target, directory: str, command: str, transfer: Callable[[ftplib.FTP], object],
             timeout_s: float, tls_context: ssl.SSLContext | None) -> None:
    """Log in, change to ``directory`` and run ``transfer`` (which sends ``command``); an error
    names the step that failed."""
    step = "log in"
    try:
        ftp = _ftp_login(target, timeout_s, tls_context)
        try:
            if directory:
                step = f"CWD {directory}"
                ftp.cwd(directory)
            step = command
            transfer(ftp)
        finally:
            ftp.close()
    except ftplib.Error as error:
        raise _ftp_error(target, step, error) from None
    except (OSError, EOFError) as error:
        raise _connection_error("FTP " + step, target, error, timeout_s) from None


def _ftp_error(target: _Target, step: str, error: ftplib.Error) -> TransferError:
    reply = str(error).strip()
    return TransferError(f"FTP {step} {target.shown}: {target.address} answered {reply}",
                         permission_denied=reply[:3] in ("530", "532"))


# Connection problems --------------------------------------------------------------------------


def _connection_error(what: str, target: _Target, error: BaseException, timeout_s: float) -> TransferError:
    """A TransferError saying what went wrong with the connection to ``target``, in words."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, ssl.SSLCertVerificationError):
        detail = f"the TLS certificate of {target.shown_host} is not trusted ({reason.verify_message})"
    elif isinstance(reason, ssl.SSLError):
        detail = f"TLS with {target.address} failed ({reason.reason or reason})"
    elif isinstance(reason, (socket.timeout, TimeoutError)):
        detail = f"no answer from {target.address} within {timeout_s:g} s"
    elif isinstance(reason, ConnectionRefusedError):
        detail = f"{target.address} refused the connection"
    elif isinstance(reason, socket.gaierror):
        detail = f"cannot resolve {target.shown_host} ({reason.strerror})"
    elif isinstance(reason, http.client.IncompleteRead):
        detail = f"{target.address} closed the connection after {len(reason.partial)} bytes"
    elif isinstance(reason, EOFError):
        detail = f"{target.address} closed the connection"
    elif isinstance(reason, OSError) and reason.strerror:
        detail = f"{target.address}: {reason.strerror}"
    else:
        detail = f"{target.address}: {reason}"
    return TransferError(f"{what} {target.shown}: {detail}")
