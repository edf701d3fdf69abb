"""HttpServer over real loopback sockets: routing, errors, limits and timeouts."""

import asyncio
import json
import logging
import urllib.error
import urllib.request

import pytest

from evcp.api.http import (
    HttpError,
    HttpServer,
    Request,
    Response,
    html_response,
    json_response,
    text_response,
)


async def echo(request: Request) -> Response:
    return json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "content_type": request.headers.get("content-type"),
            "body": request.json() if request.body else None,
        }
    )


async def page(request: Request) -> Response:
    return html_response("<h1>charger</h1>")


async def plain(request: Request) -> Response:
    return text_response("ok")


async def teapot(request: Request) -> Response:
    raise HttpError(418, "no coffee here")


async def broken(request: Request) -> Response:
    raise RuntimeError("handler bug")


async def not_a_response(request: Request) -> Response:
    return {"oops": True}


ROUTES = {
    ("GET", "/echo"): echo,
    ("POST", "/echo"): echo,
    ("GET", "/"): page,
    ("GET", "/text"): plain,
    ("DELETE", "/teapot"): teapot,
    ("GET", "/broken"): broken,
    ("GET", "/bad-return"): not_a_response,
}


@pytest.fixture
async def server():
    server = HttpServer(ROUTES, "127.0.0.1", 0, max_body_bytes=1024, request_timeout=0.5)
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
    """Issue one request with urllib in a thread; returns (status, headers, body bytes)."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    request = urllib.request.Request(
        server.url + path, data=data, method=method, headers=headers or {}
    )
    return await asyncio.to_thread(_urlopen, request)


async def raw_exchange(server, payload: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; returns (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


async def test_port_zero_binds_a_real_port(server):
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_get_with_query_and_percent_decoded_path(server):
    status, headers, body = await fetch(server, "GET", "/echo?cp=CP-1&since=4&cp=ignored")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert json.loads(body) == {
        "method": "GET", "path": "/echo", "query": {"cp": "CP-1", "since": "4"},
        "content_type": None, "body": None,
    }


async def test_post_json_body(server):
    status, _, body = await fetch(
        server, "POST", "/echo", {"cp": "CP-1"}, {"Content-Type": "application/json"}
    )
    assert status == 200
    assert json.loads(body)["body"] == {"cp": "CP-1"}
    assert json.loads(body)["content_type"] == "application/json"


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


async def test_bad_json_is_400_with_clear_message(server):
    status, _, body = await fetch(server, "POST", "/echo", b"{not json")
    assert status == 400
    assert json.loads(body)["error"].startswith("request body is not valid JSON")


async def test_http_error_from_handler(server):
    status, _, body = await fetch(server, "DELETE", "/teapot")
    assert status == 418
    assert json.loads(body) == {"error": "no coffee here"}


async def test_handler_exception_is_500_and_logged(server, caplog):
    with caplog.at_level(logging.ERROR, logger="evcp.api"):
        status, _, body = await fetch(server, "GET", "/broken")
    assert status == 500
    assert json.loads(body) == {"error": "internal server error"}
    assert "handler bug" not in body.decode()
    record = next(r for r in caplog.records if r.name == "evcp.api")
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)


async def test_handler_returning_non_response_is_500(server, caplog):
    with caplog.at_level(logging.ERROR, logger="evcp.api"):
        status, _, _ = await fetch(server, "GET", "/bad-return")
    assert status == 500
    assert any("instead of a Response" in r.getMessage() for r in caplog.records)


async def test_body_over_limit_is_413(server):
    status, _, body = await fetch(server, "POST", "/echo", b"x" * 2048)
    assert status == 413
    assert "1024" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "payload, expected_status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /echo\r\n\r\n", 400),
        (b"get /echo HTTP/1.1\r\n\r\n", 400),
        (b"GET /echo HTTP/2.0\r\n\r\n", 505),
        (b"GET /echo HTTP/1.1\r\nno-colon-here\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    ],
)
async def test_malformed_requests(server, payload, expected_status):
    status, headers, body = await raw_exchange(server, payload)
    assert status == expected_status
    assert headers["content-type"] == "application/json"
    assert "error" in json.loads(body)


async def test_header_over_limit_is_431(server):
    payload = b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    status, _, _ = await raw_exchange(server, payload)
    assert status == 431


async def test_body_shorter_than_content_length_is_400(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_slow_client_gets_408_and_is_disconnected(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    loop = asyncio.get_running_loop()
    started = loop.time()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert loop.time() - started < 2


async def test_connection_closed_before_sending_anything_gets_no_response(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_truncated_header_is_400(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_stop_cancels_a_hanging_handler():
    entered = asyncio.Event()

    async def hang(request):
        entered.set()
        await asyncio.sleep(3600)

    server = HttpServer({("GET", "/hang"): hang}, "127.0.0.1", 0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /hang HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
