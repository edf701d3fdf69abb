"""A small file server for the bench: HTTP and FTP over one directory, in-process (asyncio).

It plays the central system's file server of OCPP 1.6 §5.8 (GetDiagnostics), §5.19
(UpdateFirmware) and the security whitepaper ed.2 use cases L01 and N01: firmware to download,
a place to upload logs to. Embed it::

    server = FileServer(root)
    await server.start()
    ... server.http_url, server.ftp_url (ftp://user:password@127.0.0.1:PORT/) ...
    await server.stop()

HTTP/1.1 (one request per connection): GET and HEAD of a file (404 when missing), PUT of a
file (parent directories created; 201), POST of ``multipart/form-data`` with the file in the
field ``file``, stored under its own name in the directory the URL names (201).

FTP (RFC 959, passive mode only, binary-safe whatever TYPE says): USER, PASS, SYST, FEAT,
OPTS, NOOP, TYPE, MODE, STRU, PASV, EPSV (RFC 2428), PWD, CWD, CDUP, MKD, SIZE (RFC 3659),
RETR, STOR, QUIT. With a TLS context it also accepts explicit FTPS (RFC 4217): AUTH TLS, PBSZ,
PROT P protects the data connections.

Test verbs: :meth:`fail_next` (the next transfers fail: HTTP 503 / FTP 451), ``allow_put =
False`` (PUT answered 405, as servers that only take forms do). History: :attr:`uploads` (what
arrived, where) and :attr:`requests` (every transfer request and its answer).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.message
import logging
import os
import posixpath
import ssl
import tempfile
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

logger = logging.getLogger("evcp.bench.files")

BLOCK_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_FORM_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Upload:
    """A file that arrived: ``protocol`` is "HTTP PUT", "HTTP POST", "FTP" or "FTPS"."""

    protocol: str
    path: Path
    size: int


@dataclass(frozen=True)
class Served:
    """One transfer request and the status it got (HTTP status, or FTP reply code).

    ``user`` is the HTTP Basic or FTP user name the client gave, if any.
    """

    protocol: str
    command: str
    path: str
    status: int
    user: str | None = None


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 body_unread: bool = False):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body_unread = body_unread


class FileServer:
    """Serves ``root`` over HTTP and FTP on ``host`` (ports chosen freely unless given)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", *, http_port: int = 0, ftp_port: int = 0,
                 user: str = "user", password: str = "password", tls: ssl.SSLContext | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        """``tls``: a server context; FTP clients may then switch to TLS (explicit FTPS).
        ``timeout_s`` bounds every wait for a client (a request, a data connection, a block)."""
        self.root = Path(root).resolve()
        self.host = host
        self.user = user
        self.password = password
        self.tls = tls
        self.timeout_s = timeout_s
        self.allow_put = True
        self.uploads: list[Upload] = []
        self.requests: list[Served] = []
        self._ports = (http_port, ftp_port)
        self._failures: list[int] = []
        self._http: asyncio.Server | None = None
        self._ftp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle and addresses ------------------------------------------------------------

    async def start(self) -> None:
        """Listen on both ports; returns once clients can connect."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._http = await asyncio.start_server(self._track(self._serve_http), self.host, self._ports[0],
                                                limit=MAX_HEADER_BYTES)
        self._ftp = await asyncio.start_server(self._track(self._serve_ftp), self.host, self._ports[1])
        logger.info("file server for %s at %s and %s", self.root, self.http_url, self.ftp_url)

    async def stop(self) -> None:
        """Stop listening and end the connections still open."""
        for server in (self._http, self._ftp):
            if server is not None:
                server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in (self._http, self._ftp):
            if server is not None:
                await server.wait_closed()
        self._http = self._ftp = None

    async def __aenter__(self) -> "FileServer":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    @property
    def http_port(self) -> int:
        return _bound_port(self._http)

    @property
    def ftp_port(self) -> int:
        return _bound_port(self._ftp)

    @property
    def http_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def ftp_url(self) -> str:
        """``ftp://USER:PASSWORD@HOST:PORT/``: the login directory is :attr:`root`."""
        return f"ftp://{self.user}:{self.password}@{self.host}:{self.ftp_port}/"

    # -- test verbs ----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next ``count`` transfers (GET, PUT, POST, RETR, STOR) fail: HTTP ``status``,
        FTP 451."""
        self._failures.extend([status] * count)

    # -- shared internals ----------------------------------------------------------------------

    def _track(self, handler):
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            self._tasks.add(task)
            try:
                await handler(reader, writer)
            except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            except Exception:
                logger.exception("file server connection failed")
            finally:
                self._tasks.discard(task)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        return tracked

    def _take_failure(self) -> int | None:
        return self._failures.pop(0) if self._failures else None

    def _local(self, virtual: str) -> Path:
        """The file for an absolute virtual path, which may not leave the root."""
        relative = posixpath.normpath("/" + virtual).lstrip("/")
        local = (self.root / relative).resolve()
        if local != self.root and not local.is_relative_to(self.root):
            raise _Refused(403, f"{virtual} is outside the served directory")
        return local

    async def _receive_file(self, dest: Path, chunks) -> int:
        """Store what ``chunks`` (async iterator of bytes) yields as ``dest``, atomically."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            os.replace(temporary, dest)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return size

    # -- HTTP ------------------------------------------------------------------------------------

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _http_answer(writer, 431, b"header too large\n")
            return
        method, path, headers = _parse_http_head(head)
        user = _basic_user(headers.get("authorization"))
        try:
            status, body, extra = await self._http_dispatch(method, path, headers, reader, writer)
        except _Refused as refused:
            status, body, extra = refused.status, f"{refused}\n".encode(), refused.headers
            if refused.body_unread:
                await self._discard_body(reader, headers)
        if body is not None:
            await _http_answer(writer, status, body, extra, head_only=method == "HEAD")
        self.requests.append(Served("HTTP", method, path, status, user))

    async def _http_dispatch(self, method: str, path: str, headers: dict[str, str],
                             reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        # Refused before the body was read: it is read and dropped before the answer, so a client
        # still sending it is not reset (RFC 9112 §9.6).
        if method not in ("GET", "HEAD", "PUT", "POST"):
            raise _Refused(501, f"{method} is not supported", {"Allow": "GET, HEAD, PUT, POST"}, body_unread=True)
        failure = self._take_failure()
        if failure is not None:
            raise _Refused(failure, "failing as asked (fail_next)", body_unread=True)
        try:
            local = self._local(path)
        except _Refused as refused:
            refused.body_unread = True
            raise
        if method in ("GET", "HEAD"):
            if not local.is_file():
                raise _Refused(404, f"no such file: {path}")
            await self._http_send_file(writer, local, head_only=method == "HEAD")
            return 200, None, {}
        if method == "PUT":
            if not self.allow_put:
                raise _Refused(405, "PUT is not allowed here; POST a form", {"Allow": "GET, HEAD, POST"},
                               body_unread=True)
            size = await self._receive_file(local, self._http_body(reader, headers))
            self.uploads.append(Upload("HTTP PUT", local, size))
            return 201, b"stored\n", {}
        name, content = await self._http_form_file(reader, headers)
        dest = self._local(posixpath.join(path, name))
        size = await self._receive_file(dest, _one_chunk(content))
        self.uploads.append(Upload("HTTP POST", dest, size))
        return 201, b"stored\n", {}

    async def _http_send_file(self, writer: asyncio.StreamWriter, local: Path, head_only: bool) -> None:
        size = local.stat().st_size
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode())
        if not head_only:
            with open(local, "rb") as source:
                while block := source.read(BLOCK_BYTES):
                    writer.write(block)
                    async with asyncio.timeout(self.timeout_s):
                        await writer.drain()
        async with asyncio.timeout(self.timeout_s):
            await writer.drain()

    async def _http_body(self, reader: asyncio.StreamReader, headers: dict[str, str]):
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                async with asyncio.timeout(self.timeout_s):
                    size_line = await reader.readline()
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise _Refused(400, f"bad chunk size line {size_line[:40]!r}") from None
                if size == 0:
                    async with asyncio.timeout(self.timeout_s):
                        await reader.readuntil(b"\r\n")
                    return
                remaining = size
                while remaining:
                    async with asyncio.timeout(self.timeout_s):
                        block = await reader.readexactly(min(remaining, BLOCK_BYTES))
                    remaining -= len(block)
                    yield block
                async with asyncio.timeout(self.timeout_s):
                    await reader.readexactly(2)
        length_text = headers.get("content-length")
        if length_text is None or not length_text.isdigit():
            raise _Refused(411, "a body needs Content-Length or chunked encoding")
        remaining = int(length_text)
        while remaining:
            async with asyncio.timeout(self.timeout_s):
                block = await reader.readexactly(min(remaining, BLOCK_BYTES))
            remaining -= len(block)
            yield block

    async def _discard_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
        if "content-length" not in headers and "transfer-encoding" not in headers:
            return
        dropped = 0
        with contextlib.suppress(_Refused, ValueError):
            async for block in self._http_body(reader, headers):
                dropped += len(block)
                if dropped > MAX_FORM_BYTES:
                    return

    async def _http_form_file(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[str, bytes]:
        form = email.message.Message()
        form["Content-Type"] = headers.get("content-type", "")
        boundary = form.get_param("boundary")
        if form.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
            raise _Refused(415, "POST needs multipart/form-data with a boundary")
        body = bytearray()
        async for block in self._http_body(reader, headers):
            body += block
            if len(body) > MAX_FORM_BYTES:
                raise _Refused(413, f"form over {MAX_FORM_BYTES} bytes")
        found = _form_file(bytes(body), boundary.encode())
        if found is None:
            raise _Refused(400, 'no file in the form field "file"')
        return found

    # -- FTP -------------------------------------------------------------------------------------

    async def _serve_ftp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _FtpControl(self, reader, writer).run()


class _FtpControl:
    """One FTP control connection."""

    def __init__(self, server: FileServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.user: str | None = None
        self.logged_in = False
        self.cwd = "/"
        self.secure_control = False
        self.protect_data = False
        self._passive: asyncio.Server | None = None
        self._data: asyncio.Future | None = None

    @property
    def protocol(self) -> str:
        return "FTPS" if self.secure_control else "FTP"

    async def reply(self, text: str) -> None:
        self.writer.write(text.encode("utf-8") + b"\r\n")
        async with asyncio.timeout(self.server.timeout_s):
            await self.writer.drain()

    async def run(self) -> None:
        await self.reply("220 evcp bench FTP server ready")
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    return
                command, _, argument = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
                command = command.upper()
                if not await self.handle(command, argument):
                    return
        finally:
            await self._close_passive()

    async def handle(self, command: str, argument: str) -> bool:
        """Answer one command; False closes the control connection."""
        before_login = {"USER", "PASS", "AUTH", "PBSZ", "PROT", "QUIT", "FEAT", "SYST", "NOOP", "OPTS"}
        if command not in before_login and not self.logged_in:
            await self.reply("530 Please log in with USER and PASS")
            return True
        handler = getattr(self, f"ftp_{command.lower()}", None) if command.isalpha() else None
        if handler is None:
            await self.reply(f"502 {command} not implemented")
            return True
        try:
            return await handler(argument) is not False
        except _Refused as refused:
            await self.reply(f"550 {refused}")
        except OSError as error:
            await self.reply(f"451 local error: {error.strerror or error}")
        return True

    def local(self, argument: str) -> Path:
        return self.server._local(posixpath.join(self.cwd, argument))

    async def ftp_user(self, argument: str) -> None:
        self.user, self.logged_in = argument, False
        await self.reply(f"331 Password required for {argument}")

    async def ftp_pass(self, argument: str) -> None:
        if self.user == self.server.user and argument == self.server.password:
            self.logged_in = True
            await self.reply("230 Logged in")
        else:
            await self.reply("530 Login incorrect")

    async def ftp_auth(self, argument: str) -> None:
        # RFC 4217 §4: AUTH TLS upgrades the control connection before login.
        if self.server.tls is None or argument.upper() not in ("TLS", "TLS-C", "SSL"):
            await self.reply("504 AUTH not available")
            return
        await self.reply("234 Proceed with TLS negotiation")
        async with asyncio.timeout(self.server.timeout_s):
            await self.writer.start_tls(self.server.tls)
        self.secure_control = True

    async def ftp_pbsz(self, argument: str) -> None:
        await self.reply("200 PBSZ=0")

    async def ftp_prot(self, argument: str) -> None:
        # RFC 4217 §9: P protects the data connections, C leaves them clear.
        level = argument.strip().upper()
        if level not in ("P", "C") or (level == "P" and not self.secure_control):
            await self.reply(f"536 protection level {level} not available")
            return
        self.protect_data = level == "P"
        await self.reply(f"200 Protection level {level}")

    async def ftp_syst(self, argument: str) -> None:
        await self.reply("215 UNIX Type: L8")

    async def ftp_feat(self, argument: str) -> None:
        features = ["EPSV", "PASV", "SIZE", "UTF8"]
        if self.server.tls is not None:
            features += ["AUTH TLS", "PBSZ", "PROT"]
        await self.reply("211-Features:\r\n" + "".join(f" {f}\r\n" for f in features) + "211 End")

    async def ftp_opts(self, argument: str) -> None:
        await self.reply("200 OK")

    async def ftp_noop(self, argument: str) -> None:
        await self.reply("200 OK")

    async def ftp_type(self, argument: str) -> None:
        # Files always go as they are (image); ASCII conversion is never done.
        await self.reply(f"200 Type set to {argument.strip().upper() or 'I'}")

    async def ftp_mode(self, argument: str) -> None:
        await self.reply("200 Mode S" if argument.strip().upper() == "S" else "504 Only mode S")

    async def ftp_stru(self, argument: str) -> None:
        await self.reply("200 Structure F" if argument.strip().upper() == "F" else "504 Only structure F")

    async def ftp_pwd(self, argument: str) -> None:
        await self.reply(f'257 "{self.cwd}" is the current directory')

    async def ftp_cwd(self, argument: str) -> None:
        target = posixpath.normpath(posixpath.join(self.cwd, argument or "/"))
        if not self.server._local(target).is_dir():
            await self.reply(f"550 {argument}: no such directory")
            return
        self.cwd = "/" + target.lstrip("/")
        await self.reply(f'250 Directory is now "{self.cwd}"')

    async def ftp_cdup(self, argument: str) -> None:
        await self.ftp_cwd("..")

    async def ftp_mkd(self, argument: str) -> None:
        self.local(argument).mkdir(parents=True, exist_ok=True)
        await self.reply(f'257 "{argument}" created')

    async def ftp_size(self, argument: str) -> None:
        local = self.local(argument)
        if not local.is_file():
            await self.reply(f"550 {argument}: no such file")
            return
        await self.reply(f"213 {local.stat().st_size}")

    async def ftp_pasv(self, argument: str) -> None:
        port = await self._open_passive()
        host = ",".join(self.writer.get_extra_info("sockname")[0].split("."))
        await self.reply(f"227 Entering Passive Mode ({host},{port >> 8},{port & 0xFF})")

    async def ftp_epsv(self, argument: str) -> None:
        port = await self._open_passive()
        await self.reply(f"229 Entering Extended Passive Mode (|||{port}|)")

    async def ftp_retr(self, argument: str) -> None:
        local = self.local(argument)
        failure = self.server._take_failure()
        if failure is not None:
            return await self._transfer_refused("RETR", argument, 451, "failing as asked (fail_next)")
        if not local.is_file():
            return await self._transfer_refused("RETR", argument, 550, f"{argument}: no such file")
        data = await self._data_connection("RETR", argument)
        if data is None:
            return
        _, data_writer = data
        with open(local, "rb") as source:
            while block := source.read(BLOCK_BYTES):
                data_writer.write(block)
                async with asyncio.timeout(self.server.timeout_s):
                    await data_writer.drain()
        await _close_data(data_writer, self.server.timeout_s)
        self.server.requests.append(Served(self.protocol, "RETR", self._virtual(argument), 226, self.user))
        await self.reply("226 Transfer complete")

    async def ftp_stor(self, argument: str) -> None:
        local = self.local(argument)
        failure = self.server._take_failure()
        if failure is not None:
            return await self._transfer_refused("STOR", argument, 451, "failing as asked (fail_next)")
        if not local.parent.is_dir():
            return await self._transfer_refused("STOR", argument, 553, f"{argument}: no such directory")
        data = await self._data_connection("STOR", argument)
        if data is None:
            return
        data_reader, data_writer = data

        async def blocks():
            while True:
                async with asyncio.timeout(self.server.timeout_s):
                    block = await data_reader.read(BLOCK_BYTES)
                if not block:
                    return
                yield block

        size = await self.server._receive_file(local, blocks())
        await _close_data(data_writer, self.server.timeout_s)
        self.server.uploads.append(Upload(self.protocol, local, size))
        self.server.requests.append(Served(self.protocol, "STOR", self._virtual(argument), 226, self.user))
        await self.reply("226 Transfer complete")

    async def ftp_quit(self, argument: str) -> bool:
        await self.reply("221 Goodbye")
        return False

    def _virtual(self, argument: str) -> str:
        return posixpath.normpath(posixpath.join(self.cwd, argument))

    async def _transfer_refused(self, command: str, argument: str, code: int, text: str) -> None:
        await self._close_passive()
        self.server.requests.append(Served(self.protocol, command, self._virtual(argument), code, self.user))
        await self.reply(f"{code} {text}")

    async def _open_passive(self) -> int:
        await self._close_passive()
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future = loop.create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if accepted.done():
                writer.close()
                return
            accepted.set_result((reader, writer))

        self._data = accepted
        self._passive = await asyncio.start_server(
            on_connect, self.server.host, 0, ssl=self.server.tls if self.protect_data else None,
            ssl_handshake_timeout=self.server.timeout_s if self.protect_data else None)
        return _bound_port(self._passive)

    async def _data_connection(self, command: str, argument: str):
        """The data connection of a PASV/EPSV, after the 150 that lets a TLS client handshake."""
        if self._data is None:
            await self._transfer_refused(command, argument, 425, "use PASV or EPSV first")
            return None
        await self.reply("150 Opening BINARY mode data connection")
        try:
            async with asyncio.timeout(self.server.timeout_s):
                connection = await self._data
        except TimeoutError:
            await self._transfer_refused(command, argument, 425, "no data connection")
            return None
        finally:
            await self._close_passive(keep_connection=True)
        return connection

    async def _close_passive(self, keep_connection: bool = False) -> None:
        if self._data is not None and not keep_connection and self._data.done() and not self._data.cancelled():
            _, writer = self._data.result()
            writer.close()
        if self._data is not None and not self._data.done():
            self._data.cancel()
        self._data = None
        if self._passive is not None:
            self._passive.close()
            self._passive = None


# --------------------------------------------------------------------------------------------
# Small pure functions


def _bound_port(server: asyncio.Server | None) -> int:
    if server is None:
        raise RuntimeError("FileServer is not started")
    return server.sockets[0].getsockname()[1]


async def _one_chunk(content: bytes):
    yield content


async def _close_data(writer: asyncio.StreamWriter, timeout_s: float) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await writer.wait_closed()


def _parse_http_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ConnectionError("malformed request line")
    method, target, _version = parts
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return method.upper(), unquote(urlsplit(target).path) or "/", headers


def _basic_user(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(authorization[6:].strip()).decode("utf-8").partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None


def _form_file(body: bytes, boundary: bytes) -> tuple[str, bytes] | None:
    """The (file name, content) of the form field ``file`` in a multipart/form-data body
    (RFC 7578), or None."""
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        headers = email.message.Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip()] = value.strip()
        if headers.get_param("name", header="content-disposition") != "file":
            continue
        name = posixpath.basename((headers.get_filename() or "upload.bin").replace("\\", "/"))
        return name or "upload.bin", content.removesuffix(b"\r\n")
    return None


async def _http_answer(writer: asyncio.StreamWriter, status: int, body: bytes,
                       headers: dict[str, str] | None = None, head_only: bool = False) -> None:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body))
    await writer.drain()
