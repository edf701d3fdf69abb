"""The bench file server, driven by the standard library's own HTTP and FTP clients."""

import asyncio
import ftplib
import http.client
import io
import socket
import ssl
import urllib.request

import pytest

from evcp.bench.files import FileServer

CONTENT = bytes(range(256)) * 100 + b"\r\n\r\n\x00"


@pytest.fixture
async def server(tmp_path):
    root = tmp_path / "root"
    (root / "logs").mkdir(parents=True)
    (root / "fw.bin").write_bytes(CONTENT)
    async with FileServer(root) as running:
        yield running


def _http(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


async def test_http_get_serves_the_file_and_404s_what_is_missing(server):
    status, headers, body = await asyncio.to_thread(_http, server, "GET", "/fw.bin")
    assert (status, headers["Content-Length"], body) == (200, str(len(CONTENT)), CONTENT)
    status, headers, body = await asyncio.to_thread(_http, server, "HEAD", "/fw.bin")
    assert (status, headers["Content-Length"], body) == (200, str(len(CONTENT)), b"")
    status, _, _ = await asyncio.to_thread(_http, server, "GET", "/does_not_exist_fw.bin")
    assert status == 404
    assert [(r.command, r.path, r.status) for r in server.requests] == [
        ("GET", "/fw.bin", 200), ("HEAD", "/fw.bin", 200), ("GET", "/does_not_exist_fw.bin", 404)]


async def test_http_never_serves_outside_its_root(server, tmp_path):
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT")
    status, _, body = await asyncio.to_thread(_http, server, "GET", "/../secret.txt")
    assert b"TOP-SECRET-CONTENT" not in body
    assert status in (403, 404)
    status, _, _ = await asyncio.to_thread(_http, server, "PUT", "/../../escape.txt", b"x")
    assert status == 201 and (server.root / "escape.txt").exists(), "dot-dot stops at the root"
    assert not (tmp_path / "escape.txt").exists()
    (server.root / "link").symlink_to(tmp_path)
    status, _, body = await asyncio.to_thread(_http, server, "GET", "/link/secret.txt")
    assert status == 403 and b"TOP-SECRET-CONTENT" not in body


async def test_http_put_stores_the_body(server):
    status, _, _ = await asyncio.to_thread(_http, server, "PUT", "/logs/new/a.tar.gz", CONTENT)
    assert status == 201
    [upload] = server.uploads
    assert (upload.protocol, upload.path, upload.size) == ("HTTP PUT", server.root / "logs/new/a.tar.gz", len(CONTENT))
    assert upload.path.read_bytes() == CONTENT


async def test_http_put_chunked_body(server):
    def chunks():
        yield CONTENT[:1000]
        yield CONTENT[1000:]

    # http.client sends a generator body with Transfer-Encoding: chunked.
    status, _, _ = await asyncio.to_thread(_http, server, "PUT", "/logs/chunked.bin", chunks())
    assert status == 201
    assert (server.root / "logs/chunked.bin").read_bytes() == CONTENT


async def test_http_post_form_stores_the_file_field(server):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../diag.tar.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + CONTENT + f"\r\n--{boundary}--\r\n".encode()
    status, _, _ = await asyncio.to_thread(_http, server, "POST", "/logs/", body,
                                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 201
    [upload] = server.uploads
    assert (upload.protocol, upload.path) == ("HTTP POST", server.root / "logs" / "diag.tar.gz")
    assert upload.path.read_bytes() == CONTENT


async def test_http_post_without_a_file_field_is_400(server):
    body = b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--x--\r\n"
    status, _, _ = await asyncio.to_thread(_http, server, "POST", "/logs/", body,
                                           {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and server.uploads == []


async def test_refusing_put_answers_405_with_the_methods_allowed(server):
    server.allow_put = False
    status, headers, _ = await asyncio.to_thread(_http, server, "PUT", "/logs/a.bin", CONTENT * 20)
    assert (status, headers["Allow"]) == (405, "GET, HEAD, POST")
    assert server.uploads == []


async def test_fail_next_fails_that_many_transfers(server):
    server.fail_next(2, status=502)
    statuses = [(await asyncio.to_thread(_http, server, "GET", "/fw.bin"))[0] for _ in range(3)]
    assert statuses == [502, 502, 200]


def _ftp_login(server, password="password"):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", server.ftp_port, timeout=5)
    try:
        ftp.login("user", password)
    except BaseException:
        ftp.close()
        raise
    return ftp


async def test_ftp_login_navigates_retrieves_and_stores(server):
    def exchange():
        ftp = _ftp_login(server)
        try:
            pwd = ftp.pwd()
            size = ftp.size("fw.bin")
            received = io.BytesIO()
            ftp.retrbinary("RETR fw.bin", received.write)
            ftp.cwd("logs")
            in_logs = ftp.pwd()
            ftp.storbinary("STOR up.tar.gz", io.BytesIO(CONTENT))
            ftp.mkd("deeper")
            ftp.cwd("deeper")
            ftp.cwd("..")
            with pytest.raises(ftplib.error_perm, match="550"):
                ftp.cwd("missing")
            with pytest.raises(ftplib.error_perm, match="550"):
                ftp.retrbinary("RETR nothing.bin", received.write)
            return pwd, size, received.getvalue(), in_logs
        finally:
            ftp.quit()

    pwd, size, received, in_logs = await asyncio.to_thread(exchange)
    assert (pwd, size, received, in_logs) == ("/", len(CONTENT), CONTENT, "/logs")
    [upload] = server.uploads
    assert (upload.protocol, upload.path) == ("FTP", server.root / "logs" / "up.tar.gz")
    assert upload.path.read_bytes() == CONTENT
    assert [(r.command, r.path, r.status, r.user) for r in server.requests] == [
        ("RETR", "/fw.bin", 226, "user"), ("STOR", "/logs/up.tar.gz", 226, "user"),
        ("RETR", "/logs/nothing.bin", 550, "user")]


async def test_ftp_extended_passive_mode(server):
    def epsv_retrieve():
        ftp = _ftp_login(server)
        try:
            ftp.voidcmd("TYPE I")
            host, port = ftplib.parse229(ftp.sendcmd("EPSV"), ftp.sock.getpeername())
            with socket.create_connection((host, port), timeout=5) as data:
                assert ftp.sendcmd("RETR fw.bin").startswith("150")
                chunks = []
                while chunk := data.recv(65536):
                    chunks.append(chunk)
            ftp.voidresp()
            return b"".join(chunks)
        finally:
            ftp.quit()

    assert await asyncio.to_thread(epsv_retrieve) == CONTENT


async def test_ftp_requires_the_right_password(server):
    def wrong_login():
        with pytest.raises(ftplib.error_perm, match="530"):
            _ftp_login(server, password="wrong")

    def command_before_login():
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", server.ftp_port, timeout=5)
        try:
            with pytest.raises(ftplib.error_perm, match="530"):
                ftp.sendcmd("PWD")
        finally:
            ftp.close()

    await asyncio.to_thread(wrong_login)
    await asyncio.to_thread(command_before_login)


async def test_ftp_fail_next_answers_451(server):
    def retrieve():
        ftp = _ftp_login(server)
        try:
            with pytest.raises(ftplib.error_temp, match="451"):
                ftp.retrbinary("RETR fw.bin", lambda block: None)
            received = io.BytesIO()
            ftp.retrbinary("RETR fw.bin", received.write)
            return received.getvalue()
        finally:
            ftp.quit()

    server.fail_next(1)
    assert await asyncio.to_thread(retrieve) == CONTENT


async def test_ftps_protects_control_and_data(tmp_path, make_pki):
    pki = make_pki("CP-1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.localhost_cert, pki.localhost_key)
    root = tmp_path / "root"
    root.mkdir()
    (root / "fw.bin").write_bytes(CONTENT)

    def exchange(port):
        ftp = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=pki.ca))
        ftp.connect("localhost", port, timeout=5)
        try:
            ftp.login("user", "password")
            ftp.prot_p()
            received = io.BytesIO()
            ftp.retrbinary("RETR fw.bin", received.write)
            ftp.storbinary("STOR back.bin", io.BytesIO(CONTENT))
            return isinstance(ftp.sock, ssl.SSLSocket), received.getvalue()
        finally:
            ftp.quit()

    async with FileServer(root, tls=context) as server:
        control_protected, received = await asyncio.to_thread(exchange, server.ftp_port)
    assert control_protected and received == CONTENT
    assert [(u.protocol, u.path.name) for u in server.uploads] == [("FTPS", "back.bin")]
    assert (root / "back.bin").read_bytes() == CONTENT


async def test_auth_tls_is_refused_without_a_tls_context(server):
    def try_tls():
        ftp = ftplib.FTP_TLS()
        ftp.connect("127.0.0.1", server.ftp_port, timeout=5)
        try:
            with pytest.raises(ftplib.error_perm, match="504"):
                ftp.auth()
        finally:
            ftp.close()

    await asyncio.to_thread(try_tls)


async def test_urls_name_the_bound_ports(server):
    assert server.http_url == f"http://127.0.0.1:{server.http_port}"
    assert server.ftp_url == f"ftp://user:password@127.0.0.1:{server.ftp_port}/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with await asyncio.to_thread(opener.open, f"{server.http_url}/fw.bin", None, 5) as response:
        assert response.read() == CONTENT


async def test_stop_ends_open_connections_and_listening(tmp_path):
    server = FileServer(tmp_path / "root")
    await server.start()
    http_port = server.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ftp_port)
    assert (await reader.readline()).startswith(b"220")
    await server.stop()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", http_port)
