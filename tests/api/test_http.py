"""HttpServer (aiohttp) over real loopback sockets: routing, JSON errors, limits, stopping."""

import asyncio
import json
import logging
import socket
import urllib.error
import urllib.request

import pytest
from aiohttp import web

from evcp.api.http import (
    MAX_JSON_DEPTH,
    HttpError,
    HttpServer,
    ListenError,
    html_response,
    json_response,
    read_json,
    read_json_object,
    server_stopping,
    text_response,
)


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return json_response({
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "content_type": request.headers.get("Content-Type"),
        "body": await read_json(request) if body else None,
    })


async def echo_object(request: web.Request) -> web.Response:
    return json_response(await read_json_object(request))


async def page(request):
    return html_response("<h1>charger</h1>")


async def plain(request):
    return text_response("ok")


async def teapot(request):
    raise HttpError(418, "no coffee here")


async def broken(request):
    raise RuntimeError("handler bug")


async def not_a_response(request):
    return {"oops": True}


ROUTES = {
    ("GET", "/echo"): echo,
    ("POST", "/echo"): echo,
    ("POST", "/object"): echo_object,
    ("GET", "/"): page,
    ("GET", "/text"): plain,
    ("DELETE", "/teapot"): teapot,
    ("GET", "/broken"): broken,
    ("GET", "/bad-return"): not_a_response,
}


@pytest.fixture
async def server():
    server = HttpServer(ROUTES, "127.0.0.1", 0, max_body_bytes=1024, idle_timeout_s=0.5)
    await server.start()
    yield server
    await server.stop()


def _urlopen(request):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def fetch(server, method, path, body=None, headers=None):
    """One request with urllib in a thread; returns (status, headers, body bytes)."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers or {})
    return await asyncio.to_thread(_urlopen, request)


async def test_port_zero_binds_a_real_port(server):
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_get_with_query(server):
    status, headers, body = await fetch(server, "GET", "/echo?cp=CP-1&since=4")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"method": "GET", "path": "/echo", "query": {"cp": "CP-1", "since": "4"},
                                "content_type": None, "body": None}


async def test_post_json_body(server):
    status, _, body = await fetch(server, "POST", "/echo", {"cp": "CP-1"}, {"Content-Type": "application/json"})
    assert status == 200
    assert json.loads(body)["body"] == {"cp": "CP-1"}


async def test_html_and_text_helpers(server):
    status, headers, body = await fetch(server, "GET", "/")
    assert (status, body) == (200, b"<h1>charger</h1>")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    status, headers, body = await fetch(server, "GET", "/text")
    assert (status, headers["Content-Type"], body) == (200, "text/plain; charset=utf-8", b"ok")


async def test_unknown_path_is_404_with_json_error(server):
    status, _, body = await fetch(server, "GET", "/nowhere")
    assert status == 404
    assert json.loads(body) == {"error": "no such path: /nowhere"}


async def test_wrong_method_is_405_with_allow_header(server):
    status, headers, body = await fetch(server, "PUT", "/echo", b"{}")
    assert status == 405
    assert headers["Allow"] == "GET, POST"
    assert "PUT" in json.loads(body)["error"]


@pytest.mark.parametrize("body, says", [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"a": NaN}', "NaN is not a JSON number"),
    (b'{"a": Infinity}', "Infinity is not a JSON number"),
    (b"[1, 2]", "must be a JSON object"),
])
async def test_bad_bodies_are_400_saying_why(server, body, says):
    status, _, answer = await fetch(server, "POST", "/object", body)
    assert status == 400
    assert says in json.loads(answer)["error"]


@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b'{"a":', b"}")])
async def test_deep_nesting_is_400_not_500(opening, closing):
    """5,000 levels deep: the JSON decoder's recursion limit, caught and answered as a bad body."""
    deep = HttpServer(ROUTES, "127.0.0.1", 0, max_body_bytes=64 * 1024)
    await deep.start()
    try:
        status, _, answer = await fetch(deep, "POST", "/echo", opening * 5000 + b"1" + closing * 5000)
        assert status == 400
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in json.loads(answer)["error"]
        just_too_deep = opening * (MAX_JSON_DEPTH + 1) + b"1" + closing * (MAX_JSON_DEPTH + 1)
        assert (await fetch(deep, "POST", "/echo", just_too_deep))[0] == 400
        deep_enough = opening * MAX_JSON_DEPTH + b"1" + closing * MAX_JSON_DEPTH
        assert (await fetch(deep, "POST", "/echo", deep_enough))[0] == 200
        status, _, answer = await fetch(deep, "POST", "/echo", b"9" * 5000)  # Python's int limit: 4300 digits
        assert status == 400 and "not usable JSON" in json.loads(answer)["error"]
    finally:
        await deep.stop()


async def test_http_error_from_handler(server):
    status, _, body = await fetch(server, "DELETE", "/teapot")
    assert status == 418
    assert json.loads(body) == {"error": "no coffee here"}


async def test_handler_exception_is_500_and_logged(server, caplog):
    with caplog.at_level(logging.ERROR, logger="evcp.api"):
        status, _, body = await fetch(server, "GET", "/broken")
    assert status == 500
    assert json.loads(body) == {"error": "internal server error"}
    record = next(r for r in caplog.records if r.name == "evcp.api")
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)


async def test_handler_returning_non_response_is_500(server, caplog):
    with caplog.at_level(logging.ERROR, logger="evcp.api"):
        status, _, _ = await fetch(server, "GET", "/bad-return")
    assert status == 500
    assert any("instead of a response" in r.getMessage() for r in caplog.records)


async def test_body_over_limit_is_413(server):
    status, _, body = await fetch(server, "POST", "/echo", b"x" * 2048)
    assert status == 413
    assert "1024" in json.loads(body)["error"]


async def test_chunked_body_over_limit_is_413(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    chunk = b"x" * 600
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3 + b"0\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_a_busy_port_is_a_listen_error_naming_the_address(server):
    other = HttpServer(ROUTES, "127.0.0.1", server.port, name="API (api.listen)")
    with pytest.raises(ListenError) as raised:
        await other.start()
    assert str(raised.value) == f"API (api.listen): cannot listen on 127.0.0.1:{server.port}: address already in use"


async def test_an_address_not_on_this_machine_is_a_listen_error():
    with pytest.raises(ListenError) as raised:
        await HttpServer(ROUTES, "192.0.2.1", 0, name="API").start()  # TEST-NET-1, never assigned here
    assert str(raised.value) == "API: cannot listen on 192.0.2.1:0: cannot assign requested address"


async def test_a_silent_connection_is_closed():
    server = HttpServer(ROUTES, "127.0.0.1", 0, idle_timeout_s=0.3)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert loop.time() - started < 3
        writer.close()
    finally:
        await server.stop()


async def test_stop_ends_a_hanging_handler_and_event_streams():
    entered = asyncio.Event()
    stream_ended = asyncio.Event()

    async def hang(request):
        entered.set()
        await asyncio.sleep(3600)

    async def stream(request):
        response = web.StreamResponse()
        await response.prepare(request)
        await server_stopping(request).wait()
        stream_ended.set()
        return response

    server = HttpServer({("GET", "/hang"): hang, ("GET", "/stream"): stream}, "127.0.0.1", 0)
    await server.start()
    port = server.port
    _, hanging = await asyncio.open_connection("127.0.0.1", port)
    hanging.write(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(entered.wait(), 5)
    streaming_reader, streaming = await asyncio.open_connection("127.0.0.1", port)
    streaming.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(streaming_reader.readuntil(b"\r\n\r\n"), 5)
    await asyncio.wait_for(server.stop(), 5)
    assert stream_ended.is_set()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    hanging.close()
    streaming.close()
