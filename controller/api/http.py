"""The HTTP layer of the charger's API and of the bench central system's control API, on aiohttp.

Routes are an exact ``{(method, path): handler}`` table; a handler is a coroutine taking an
``aiohttp.web.Request`` and returning a response (``json_response`` and friends below, or an
``aiohttp.web.StreamResponse`` for a stream of server-sent events).

Every failure is answered as JSON ``{"error": "..."}``: 400 bad JSON body (not UTF-8, not
JSON, nested deeper than ``MAX_JSON_DEPTH``, not an object where one is expected), 404 unknown
path, 405 known path with another method (with ``Allow``), 413 body over ``max_body_bytes``, and
500 for a handler that raised anything but :class:`HttpError` (the traceback goes to the
``evcp.api`` logger, never to the client). A connection that sends nothing for
``idle_timeout_s`` is closed, so a silent client cannot hold it forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

logger = logging.getLogger("evcp.api")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_IDLE_TIMEOUT_S = 10.0
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (the API's bodies are flat)."""
STOP_GRACE_S = 1.0
"""How long stopping waits for requests in progress before it cancels them."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Routes = Mapping[tuple[str, str], Handler]


class HttpError(Exception):
    """Raise from a handler to answer ``status`` with the JSON body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.headers = dict(headers or {})


class ListenError(OSError):
    """The server cannot listen on its address (in use, not on this machine, not allowed)."""

    def __init__(self, what: str, host: str, port: int, error: OSError):
        # The system's words for errno ("address already in use", "cannot assign requested
        # address"), not asyncio's "error while attempting to bind on address (...)" around them.
        known = isinstance(error.errno, int) and error.errno > 0
        reason = os.strerror(error.errno).lower() if known else (error.strerror or str(error))
        super().__init__(error.errno, f"{what}: cannot listen on {_address(host, port)}: {reason}")
        self.host, self.port = host, port

    def __str__(self) -> str:
        return self.strerror


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """``data`` serialised as a JSON response."""
    body = json.dumps(data, separators=(",", ":"), default=str)
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def html_response(html: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


def text_response(text: str, status: int = 200, content_type: str = "text/plain") -> web.Response:
    return web.Response(status=status, text=text, content_type=content_type, charset="utf-8")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """The JSON error body every failure uses: ``{"error": message}``."""
    return json_response({"error": message}, status, headers)


def parse_json(body: bytes) -> Any:
    """``body`` decoded as JSON; raises ``HttpError(400)`` saying what is wrong with it."""
    if not body:
        raise HttpError(400, "request body is empty; expected JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "request body is not UTF-8 text; expected JSON") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise HttpError(400, f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise HttpError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # NaN, Infinity, an integer of more than 4300 digits
        raise HttpError(400, f"request body is not usable JSON: {error}") from None
    if _nesting_depth(data) > MAX_JSON_DEPTH:
        raise HttpError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return data


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (bounded by the server's ``max_body_bytes``: 413 beyond)."""
    return parse_json(await request.read())


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; raises ``HttpError(400)`` for anything else."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise HttpError(400, f"request body must be a JSON object (got {type(data).__name__})")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _nesting_depth(data: Any) -> int:
    deepest, pending = 0, [(data, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


async def wait_any(events: list[asyncio.Event], timeout: float) -> bool:
    """Wait until one of ``events`` is set or ``timeout`` passes; True if one was set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


def server_stopping(request: web.Request) -> asyncio.Event:
    """Set once the server serving ``request`` stops: a long-lived response ends on it."""
    return request.app[STOPPING_KEY]


MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
STOPPING_KEY = web.AppKey("stopping", asyncio.Event)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except HttpError as error:
        return error_response(error.status, error.message, error.headers)
    except web.HTTPMethodNotAllowed as error:
        return error_response(405, f"method {request.method} not allowed on {request.path}",
                              {"Allow": ", ".join(sorted(error.allowed_methods))})
    except web.HTTPNotFound:
        return error_response(404, f"no such path: {request.path}")
    except web.HTTPRequestEntityTooLarge as error:
        return error_response(413, f"request body over {request.app[MAX_BODY_KEY]} bytes ({error.text})")
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, error.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        logger.exception("handler for %s %s failed", request.method, request.path)
        return error_response(500, "internal server error")
    if not isinstance(response, web.StreamResponse):
        logger.error("handler for %s %s returned %r instead of a response",
                     request.method, request.path, type(response).__name__)
        return error_response(500, "internal server error")
    return response


class HttpServer:
    """Serves ``routes`` (``{(method, path): handler}``) on ``host:port``.

    ``port=0`` picks a free port; :attr:`port` is the bound one after :meth:`start`. ``name`` says
    what the server is in a :class:`ListenError` ("API", "control API").
    """

    def __init__(self, routes: Routes, host: str = "127.0.0.1", port: int = 0, *,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 name: str = "HTTP server"):
        self.host = host
        self.name = name
        self._requested_port = port
        self.max_body_bytes = max_body_bytes
        self.stopping = asyncio.Event()
        """Set when :meth:`stop` begins: long-lived responses (event streams) end on it."""
        self._app = web.Application(client_max_size=max_body_bytes, middlewares=[_json_errors],
                                    handler_args={"keepalive_timeout": idle_timeout_s})
        self._app[MAX_BODY_KEY] = max_body_bytes
        self._app[STOPPING_KEY] = self.stopping
        for (method, path), handler in routes.items():
            self._app.router.add_route(method.upper(), path, handler)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound TCP port; only valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError(f"{self.name} is not listening")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{_address(self.host, self.port)}"

    async def start(self) -> None:
        """Bind and start accepting connections; raises :class:`ListenError` naming the address."""
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=STOP_GRACE_S,
                               handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise ListenError(self.name, self.host, self._requested_port, error) from None
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening; requests still in progress get ``STOP_GRACE_S``, then are cancelled."""
        if self._runner is None:
            return
        self.stopping.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        self._port = None


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
