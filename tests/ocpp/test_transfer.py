"""Downloads and uploads over real loopback servers: the bench file server (HTTP, FTP, FTPS)
and, for HTTPS, the standard library's http.server behind TLS."""

import asyncio
import contextlib
import functools
import http.server
import socket
import ssl
import threading
from pathlib import Path

import pytest

from evcp.bench.files import FileServer
from evcp.ocpp import transfer
from evcp.ocpp.transfer import SUPPORTED_PROTOCOLS, TransferError, location_problem, redact_url

#: Every byte value, CR LF pairs and a line that looks like a multipart boundary.
FIRMWARE = bytes(range(256)) * 800 + b"\r\n--boundary\r\n\x00\xff" * 10


@pytest.fixture
async def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "fw.bin").write_bytes(FIRMWARE)
    (root / "logs").mkdir()
    async with FileServer(root) as running:
        yield running


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@contextlib.asynccontextmanager
async def raw_server(handle):
    """A TCP server on loopback that answers with ``handle(reader, writer)``; yields its port."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def test_supported_protocols_are_what_the_configuration_key_announces():
    from evcp.ocpp16.configuration import FILE_TRANSFER_PROTOCOLS

    assert ",".join(SUPPORTED_PROTOCOLS) == "FTP,FTPS,HTTP,HTTPS"
    assert set(FILE_TRANSFER_PROTOCOLS) <= set(SUPPORTED_PROTOCOLS)


async def test_http_download_is_byte_exact(server, tmp_path):
    dest = tmp_path / "in" / "fw.bin"
    await transfer.download(f"{server.http_url}/fw.bin", dest, timeout_s=5)
    assert dest.read_bytes() == FIRMWARE
    assert _leftovers(dest.parent) == ["fw.bin"]


async def test_ftp_download_is_byte_exact_and_logs_in_with_the_url_credentials(server, tmp_path):
    dest = tmp_path / "fw.bin"
    await transfer.download(f"{server.ftp_url}fw.bin", dest, timeout_s=5)
    assert dest.read_bytes() == FIRMWARE
    [served] = server.requests
    assert (served.protocol, served.command, served.path, served.status, served.user) == \
        ("FTP", "RETR", "/fw.bin", 226, "user")


async def test_missing_file_fails_with_status_and_leaves_the_old_file(server, tmp_path):
    dest = tmp_path / "fw.bin"
    dest.write_bytes(b"old firmware")
    with pytest.raises(TransferError) as http_error:
        await transfer.download(f"{server.http_url}/does_not_exist_fw.bin", dest, timeout_s=5)
    with pytest.raises(TransferError) as ftp_error:
        await transfer.download(f"{server.ftp_url}does_not_exist_fw.bin", dest, timeout_s=5)
    assert f"GET {server.http_url}/does_not_exist_fw.bin: HTTP 404 Not Found" == str(http_error.value)
    assert "RETR does_not_exist_fw.bin" in str(ftp_error.value) and "550" in str(ftp_error.value)
    assert dest.read_bytes() == b"old firmware"
    assert _leftovers(tmp_path) == ["fw.bin", "served"]


async def test_connection_cut_short_leaves_nothing_half_written(tmp_path):
    async def announce_more_than_sent(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        writer.close()

    async with raw_server(announce_more_than_sent) as port:
        with pytest.raises(TransferError, match=r"closed the connection after 1000 of 100000 bytes"):
            await transfer.download(f"http://127.0.0.1:{port}/fw.bin", tmp_path / "fw.bin", timeout_s=5)
    assert _leftovers(tmp_path) == []


async def test_silent_server_times_out(tmp_path):
    async def never_answer(reader, writer):
        await reader.read()
        writer.close()

    async with raw_server(never_answer) as port:
        with pytest.raises(TransferError, match=rf"no answer from 127.0.0.1:{port} within 0.3 s"):
            await transfer.download(f"http://127.0.0.1:{port}/fw.bin", tmp_path / "fw.bin", timeout_s=0.3)
    assert _leftovers(tmp_path) == []


async def test_refused_connection_names_the_address(tmp_path):
    async with raw_server(lambda r, w: None) as port:
        pass  # closed again: nothing listens on ``port`` any more
    with pytest.raises(TransferError, match=rf"127.0.0.1:{port} refused the connection"):
        await transfer.download(f"ftp://127.0.0.1:{port}/fw.bin", tmp_path / "fw.bin", timeout_s=5)


async def test_cancelled_download_stops_and_leaves_nothing(tmp_path):
    first_block_sent = asyncio.Event()
    send_the_rest = asyncio.Event()

    async def slow(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"a" * 100000)
        await writer.drain()
        first_block_sent.set()
        await send_the_rest.wait()
        writer.write(b"b" * 200000)
        await writer.drain()
        writer.close()

    async with raw_server(slow) as port:
        downloading = asyncio.create_task(
            transfer.download(f"http://127.0.0.1:{port}/fw.bin", tmp_path / "fw.bin", timeout_s=5))
        await first_block_sent.wait()
        downloading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await downloading
        send_the_rest.set()
        # The worker thread notices the cancellation at its next block; wait for it to finish.
        await asyncio.get_running_loop().shutdown_default_executor()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("url", ["sftp://host/fw.bin", "file:///etc/passwd", "fw.bin", "tftp://h/x"])
async def test_unsupported_scheme_is_refused_before_any_connection(url, tmp_path):
    assert "unsupported scheme" in location_problem(url)
    with pytest.raises(TransferError, match="unsupported scheme"):
        await transfer.download(url, tmp_path / "fw.bin", timeout_s=5)
    (tmp_path / "log.txt").write_text("x")
    with pytest.raises(TransferError, match="unsupported scheme"):
        await transfer.upload(tmp_path / "log.txt", url, timeout_s=5)


def test_locations_that_can_be_used():
    for url in ("http://h/x", "HTTPS://h:8443/x", "ftp://u:p@h/", "ftps://h/d/"):
        assert location_problem(url) is None, url
    assert "no host" in location_problem("http:///fw.bin")
    assert "not a valid URL" in location_problem("ftp://h:notaport/x")


@pytest.mark.parametrize("url", ["X" * 1_000_000, "ftp://" + "h" * 1_000_000 + ":port/", "http://" + "/" * 1_000_000])
def test_a_megabyte_location_that_cannot_be_used_is_not_quoted_whole(url):
    assert len(location_problem(url)) < 1_000


async def test_a_megabyte_location_that_fails_is_not_quoted_whole(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TransferError) as failed:
        await transfer.download(f"ftp://u:pw@127.0.0.1:{port}/" + "p" * 1_000_000, tmp_path / "fw.bin", timeout_s=5)
    assert len(str(failed.value)) < 1_000 and "pw" not in str(failed.value)
    assert len(transfer.shown_url("ftp://u:pw@h/" + "p" * 1_000_000)) < 1_000


def test_redact_url_masks_only_the_password():
    assert redact_url("ftp://cp:s3cr%40t@files.example:2121/logs/") == "ftp://cp:********@files.example:2121/logs/"
    assert redact_url("https://files.example/a@b/fw.bin") == "https://files.example/a@b/fw.bin"
    assert redact_url("ftp://anonymous@files.example/") == "ftp://anonymous@files.example/"
    assert redact_url("http://files.example/fw.bin") == "http://files.example/fw.bin"


async def test_passwords_never_appear_in_error_messages(server, tmp_path):
    wrong = server.ftp_url.replace(":password@", ":Wrong-Secret-1@")
    with pytest.raises(TransferError) as login:
        await transfer.download(f"{wrong}fw.bin", tmp_path / "fw.bin", timeout_s=5)
    http_with_password = server.http_url.replace("http://", "http://cp:Http-Secret-2@")
    with pytest.raises(TransferError) as missing:
        await transfer.download(f"{http_with_password}/nothing.bin", tmp_path / "fw.bin", timeout_s=5)
    (tmp_path / "log.txt").write_text("log")
    with pytest.raises(TransferError) as refused:
        await transfer.upload(tmp_path / "log.txt", "ftp://cp:Ftp-Secret-3@127.0.0.1:1/logs/", timeout_s=5)
    for error, secret in ((login, "Wrong-Secret-1"), (missing, "Http-Secret-2"), (refused, "Ftp-Secret-3")):
        assert secret not in str(error.value)
        assert "********" in str(error.value)
    assert "530" in str(login.value) and f"127.0.0.1:{server.ftp_port}" in str(login.value)
    assert login.value.permission_denied is True
    assert missing.value.permission_denied is False


async def test_http_credentials_go_as_basic_authentication(server, tmp_path):
    url = server.http_url.replace("http://", "http://cp-1:pw@")
    await transfer.download(f"{url}/fw.bin", tmp_path / "fw.bin", timeout_s=5)
    assert server.requests[-1].user == "cp-1"


async def test_http_upload_puts_the_file_into_the_location_directory(server, tmp_path):
    log = tmp_path / "CP-1-DiagnosticsLog.tar.gz"
    log.write_bytes(FIRMWARE)
    ended_at = await transfer.upload(log, f"{server.http_url}/logs", timeout_s=5)
    assert ended_at == f"{server.http_url}/logs/CP-1-DiagnosticsLog.tar.gz"
    [upload] = server.uploads
    assert (upload.protocol, upload.path) == ("HTTP PUT", server.root / "logs" / log.name)
    assert upload.path.read_bytes() == FIRMWARE


async def test_http_upload_posts_a_form_when_put_is_not_allowed(server, tmp_path):
    server.allow_put = False
    log = tmp_path / "security.tar.gz"
    log.write_bytes(FIRMWARE)
    ended_at = await transfer.upload(log, f"{server.http_url}/logs/", timeout_s=5)
    assert ended_at == f"{server.http_url}/logs/"
    assert [(r.command, r.path, r.status) for r in server.requests] == [
        ("PUT", "/logs/security.tar.gz", 405), ("POST", "/logs/", 201)]
    [upload] = server.uploads
    assert (upload.protocol, upload.path.name) == ("HTTP POST", "security.tar.gz")
    assert upload.path.read_bytes() == FIRMWARE


async def test_http_upload_other_errors_are_not_retried_as_a_form(server, tmp_path):
    server.fail_next(1, status=500)
    log = tmp_path / "log.tar.gz"
    log.write_bytes(b"log")
    with pytest.raises(TransferError, match=r"PUT .*/logs/log.tar.gz: HTTP 500 Internal Server Error"):
        await transfer.upload(log, f"{server.http_url}/logs/", timeout_s=5)
    assert [r.command for r in server.requests] == ["PUT"]
    assert server.uploads == []


async def test_ftp_upload_stores_into_the_location_directory(server, tmp_path):
    log = tmp_path / "CP-1-SecurityLog.tar.gz"
    log.write_bytes(FIRMWARE)
    ended_at = await transfer.upload(log, f"{server.ftp_url}logs/", timeout_s=5)
    assert ended_at == f"ftp://user:********@127.0.0.1:{server.ftp_port}/logs/CP-1-SecurityLog.tar.gz"
    [upload] = server.uploads
    assert (upload.protocol, upload.path) == ("FTP", server.root / "logs" / log.name)
    assert upload.path.read_bytes() == FIRMWARE


async def test_ftp_upload_to_a_missing_directory_says_so(server, tmp_path):
    log = tmp_path / "log.tar.gz"
    log.write_bytes(b"log")
    with pytest.raises(TransferError, match=r"FTP CWD nowhere .*answered 550"):
        await transfer.upload(log, f"{server.ftp_url}nowhere/", timeout_s=5)


async def test_upload_of_a_missing_file_is_an_error(server, tmp_path):
    with pytest.raises(TransferError, match="not a file"):
        await transfer.upload(tmp_path / "none.tar.gz", server.http_url, timeout_s=5)


# --- TLS -----------------------------------------------------------------------------------------


class _PutHandler(http.server.SimpleHTTPRequestHandler):
    def do_PUT(self):
        target = Path(self.directory) / self.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def https_server(tmp_path, make_pki):
    pki = make_pki("CP-1")
    root = tmp_path / "https"
    root.mkdir()
    (root / "fw.bin").write_bytes(FIRMWARE)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.localhost_cert, pki.localhost_key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_PutHandler, directory=str(root)))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{httpd.server_address[1]}", root, ssl.create_default_context(cafile=pki.ca)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


async def test_https_download_and_upload_with_the_trusted_ca(https_server, tmp_path):
    url, root, trusted = https_server
    await transfer.download(f"{url}/fw.bin", tmp_path / "fw.bin", timeout_s=5, tls_context=trusted)
    assert (tmp_path / "fw.bin").read_bytes() == FIRMWARE
    ended_at = await transfer.upload(tmp_path / "fw.bin", f"{url}/up/", timeout_s=5, tls_context=trusted)
    assert ended_at == f"{url}/up/fw.bin"
    assert (root / "up" / "fw.bin").read_bytes() == FIRMWARE


async def test_https_server_with_an_unknown_certificate_is_refused(https_server, tmp_path):
    url, _, _ = https_server
    with pytest.raises(TransferError, match="TLS certificate of localhost is not trusted"):
        await transfer.download(f"{url}/fw.bin", tmp_path / "fw.bin", timeout_s=5,
                                tls_context=ssl.create_default_context(cafile=None, cadata=None))
    assert _leftovers(tmp_path) == ["https"]


@pytest.fixture
async def ftps_server(tmp_path, make_pki):
    pki = make_pki("CP-1")
    root = tmp_path / "ftps"
    (root / "logs").mkdir(parents=True)
    (root / "fw.bin").write_bytes(FIRMWARE)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.localhost_cert, pki.localhost_key)
    async with FileServer(root, tls=context) as running:
        url = running.ftp_url.replace("ftp://", "ftps://").replace("127.0.0.1", "localhost")
        yield running, url, ssl.create_default_context(cafile=pki.ca)


async def test_ftps_download_and_upload(ftps_server, tmp_path):
    server, url, trusted = ftps_server
    await transfer.download(f"{url}fw.bin", tmp_path / "fw.bin", timeout_s=5, tls_context=trusted)
    assert (tmp_path / "fw.bin").read_bytes() == FIRMWARE
    await transfer.upload(tmp_path / "fw.bin", f"{url}logs/", timeout_s=5, tls_context=trusted)
    assert [(r.protocol, r.command) for r in server.requests] == [("FTPS", "RETR"), ("FTPS", "STOR")]
    assert (server.root / "logs" / "fw.bin").read_bytes() == FIRMWARE


async def test_ftps_with_an_unknown_certificate_is_refused(ftps_server, tmp_path):
    server, url, _ = ftps_server
    with pytest.raises(TransferError, match="TLS certificate of localhost is not trusted"):
        await transfer.download(f"{url}fw.bin", tmp_path / "fw.bin", timeout_s=5,
                                tls_context=ssl.create_default_context(cafile=None, cadata=None))
    assert server.requests == []


async def test_ftps_to_a_server_without_tls_fails_at_the_tls_upgrade(server, tmp_path):
    url = server.ftp_url.replace("ftp://", "ftps://")
    with pytest.raises(TransferError, match=r"FTP log in .*answered 504"):
        await transfer.download(f"{url}fw.bin", tmp_path / "fw.bin", timeout_s=5)


@pytest.mark.parametrize("scheme", ["http", "ftp"])
async def test_a_huge_host_is_refused_in_words_and_not_quoted_whole(tmp_path, scheme):
    with pytest.raises(TransferError) as failed:
        await transfer.download(f"{scheme}://{'h' * 100_000}.invalid/fw.bin", tmp_path / "fw.bin", timeout_s=5)
    assert "not a valid host name" in str(failed.value) and len(str(failed.value)) < 2 * transfer.MAX_QUOTED_URL


async def test_an_upload_to_a_location_with_a_huge_query_is_told_cut(server, tmp_path):
    (tmp_path / "log.txt").write_text("x")
    shown = await transfer.upload(tmp_path / "log.txt", f"{server.http_url}/logs/?{'q' * 2_000}", timeout_s=5)
    assert len(shown) < transfer.MAX_QUOTED_URL + 40 and "more characters" in shown
