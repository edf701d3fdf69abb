"""A tiny asyncio HTTP/1.1 server for small JSON and HTML control APIs.

One request per connection (every response carries ``Connection: close``), bodies only with
``Content-Length``, and a timeout on reading the request so a slow or silent client cannot hold
a task forever. Routes are an exact ``(method, path)`` table; handlers are coroutines taking a
:class:`Request` and returning a :class:`Response`.

Errors are answered as JSON ``{"error": "..."}``: 400 malformed request or bad JSON body,
404 unknown path, 405 known path with another method (with ``Allow``), 408 request not received
in time, 411 body without ``Content-Length``, 413 body over the limit, 431 header too large,
505 not HTTP/1.x, and 500 for a handler that raised anything but :class:`HttpError` (the
traceback goes to the ``evcp.api`` logger, never to the client).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

logger = logging.getLogger("evcp.api")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_WRITE_TIMEOUT_S = 10.0


class HttpError(Exception):
    """Raise from a handler to answer ``status`` with the JSON body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request.

    ``path`` is percent-decoded and has no query string; ``query`` maps each parameter to its
    first value; ``headers`` keys are lower case.
    """

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body decoded as JSON; raises ``HttpError(400)`` saying what is wrong with it."""
        if not self.body:
            raise HttpError(400, "request body is empty; expected JSON")
        try:
            return json.loads(self.body)
        except UnicodeDecodeError:
            raise HttpError(400, "request body is not UTF-8 text; expected JSON") from None
        except json.JSONDecodeError as error:
            raise HttpError(400, f"request body is not valid JSON: {error}") from None

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; raises ``HttpError(400)`` for anything else."""
        data = self.json()
        if not isinstance(data, dict):
            raise HttpError(400, f"request body must be a JSON object (got {type(data).__name__})")
        return data


@dataclass(frozen=True)
class Response:
    """A complete response; ``Content-Length`` and ``Connection`` are added when sent."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``data`` serialised as a JSON response."""
    body = json.dumps(data, separators=(",", ":"), default=str).encode()
    return Response(status, body, "application/json", dict(headers or {}))


def html_response(html: str, status: int = 200) -> Response:
    """An HTML page as a response."""
    return Response(status, html.encode(), "text/html; charset=utf-8")


def text_response(text: str, status: int = 200) -> Response:
    """Plain text as a response."""
    return Response(status, text.encode(), "text/plain; charset=utf-8")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error body every failure uses: ``{"error": message}``."""
    return json_response({"error": message}, status, headers)


Handler = Callable[[Request], Awaitable[Response]]
Routes = Mapping[tuple[str, str], Handler]


class HttpServer:
    """Serves ``routes`` (``{(method, path): handler}``) on ``host:port``.

    ``port=0`` picks a free port; :attr:`port` is the bound one after :meth:`start`.
    """

    def __init__(
        self,
        routes: Routes,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT_S,
    ):
        self._routes = {
            (method.upper(), path): handler for (method, path), handler in routes.items()
        }
        self.host = host
        self._requested_port = port
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.request_timeout = request_timeout
        self.write_timeout = write_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        """The bound TCP port; only valid after :meth:`start`."""
        if self._server is None:
            raise RuntimeError("HttpServer is not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and start accepting connections; returns once the socket listens."""
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self._requested_port, limit=self.max_header_bytes
        )

    async def stop(self) -> None:
        """Stop listening and cancel requests still in progress."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            response = await self._respond(reader)
            if response is not None:
                await self._write(writer, response)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    async def _respond(self, reader: asyncio.StreamReader) -> Response | None:
        """The response to the request on ``reader``; None if the client sent nothing at all."""
        try:
            async with asyncio.timeout(self.request_timeout):
                request = await self._read_request(reader)
        except HttpError as error:
            return error_response(error.status, error.message, error.headers)
        except TimeoutError:
            return error_response(408, f"request not received within {self.request_timeout:g} s")
        if request is None:
            return None
        return await self._dispatch(request)

    async def _dispatch(self, request: Request) -> Response:
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            allowed = sorted(method for method, path in self._routes if path == request.path)
            if allowed:
                return error_response(
                    405,
                    f"method {request.method} not allowed on {request.path}",
                    {"Allow": ", ".join(allowed)},
                )
            return error_response(404, f"no such path: {request.path}")
        try:
            response = await handler(request)
        except HttpError as error:
            return error_response(error.status, error.message, error.headers)
        except Exception:
            logger.exception("handler for %s %s failed", request.method, request.path)
            return error_response(500, "internal server error")
        if not isinstance(response, Response):
            logger.error(
                "handler for %s %s returned %r instead of a Response",
                request.method, request.path, type(response).__name__,
            )
            return error_response(500, "internal server error")
        return response

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if error.partial.strip():
                raise HttpError(400, "request header ended before the blank line") from None
            return None
        except asyncio.LimitOverrunError:
            raise HttpError(431, f"request header over {self.max_header_bytes} bytes") from None

        method, target, headers = _parse_head(head)
        body = await self._read_body(reader, headers)
        split = urlsplit(target)
        return Request(
            method=method,
            path=unquote(split.path) or "/",
            query=_first_values(split.query),
            headers=headers,
            body=body,
        )

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise HttpError(411, "chunked bodies are not supported; send Content-Length")
        length_text = headers.get("content-length")
        if length_text is None:
            return b""
        if not length_text.isdigit():
            raise HttpError(400, f"invalid Content-Length (got {length_text!r})")
        length = int(length_text)
        if length > self.max_body_bytes:
            raise HttpError(413, f"request body over {self.max_body_bytes} bytes (got {length})")
        try:
            return await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise HttpError(400, f"request body shorter than Content-Length {length}") from None

    async def _write(self, writer: asyncio.StreamWriter, response: Response) -> None:
        reason = _reason_phrase(response.status)
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Connection: close",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        async with asyncio.timeout(self.write_timeout):
            await writer.drain()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers of a head ending in a blank line; raises HttpError on bad syntax."""
    request_line, *header_lines = head.decode("latin-1")[:-4].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise HttpError(400, f"malformed request line: {request_line[:100]!r}")
    method, target, version = parts
    if not version.startswith("HTTP/"):
        raise HttpError(400, f"malformed request line: {request_line[:100]!r}")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"only HTTP/1.0 and HTTP/1.1 are supported (got {version})")
    if not method.isalpha() or not method.isupper():
        raise HttpError(400, f"malformed method: {method[:20]!r}")

    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"malformed header line: {line[:100]!r}")
        headers[name.lower()] = value.strip()
    return method, target, headers


def _first_values(query: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, value)
    return values


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
