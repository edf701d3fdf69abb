"""Collecting logs into an archive, and GetDiagnostics / GetLog uploads to the bench file server."""

import asyncio
import gzip
import io
import sys
import tarfile

import pytest

from evcp.bench.files import FileServer
from evcp.ocpp.diagnostics import LogUploads, archive_name, collect, rotated_files
from tests.clock import SteppingClock

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z


def _members(archive):
    with tarfile.open(archive, "r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


@pytest.fixture
def logs(tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    (directory / "evcp.log").write_text("10:00 charging started\n")
    (directory / "evcp.log.1").write_text("09:00 booted\n")
    (directory / "evcp.log.2.gz").write_bytes(gzip.compress(b"08:00 older\n"))
    (directory / "evcp.log.old").write_text("not a rotation\n")
    (directory / "security.log").write_text("10:00 SettingSystemTime\n")
    return directory


def _fake_journalctl(tmp_path, body="import sys; print(' '.join(sys.argv[1:]))"):
    script = tmp_path / "journalctl"
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_archive_name_is_id_kind_and_utc_time():
    assert archive_name("CP-1", "DiagnosticsLog", T0) == "CP-1-DiagnosticsLog-20240501T100000Z.tar.gz"
    assert archive_name("site/CP 2", "SecurityLog", T0 + 61.9) == "site_CP_2-SecurityLog-20240501T100101Z.tar.gz"


def test_rotated_files_are_the_file_then_its_numbered_siblings(logs):
    assert [p.name for p in rotated_files(logs / "evcp.log")] == ["evcp.log", "evcp.log.1", "evcp.log.2.gz"]
    (logs / "gone.log.1").write_text("x")
    assert [p.name for p in rotated_files(logs / "gone.log")] == ["gone.log.1"]
    assert rotated_files(logs / "missing.log") == []


def test_collect_archives_the_logs_with_their_rotations(logs, tmp_path):
    archive = collect("DiagnosticsLog", [logs / "evcp.log", logs / "absent.log"], tmp_path / "work", "CP-1",
                      since=None, until=None, at=T0, journalctl=None)
    assert archive == tmp_path / "work" / "CP-1-DiagnosticsLog-20240501T100000Z.tar.gz"
    members = _members(archive)
    assert sorted(members) == ["evcp.log", "evcp.log.1", "evcp.log.2.gz", "manifest.txt"]
    assert members["evcp.log"] == b"10:00 charging started\n"
    assert gzip.decompress(members["evcp.log.2.gz"]) == b"08:00 older\n"
    manifest = members["manifest.txt"].decode()
    assert "charge point: CP-1" in manifest and "log: DiagnosticsLog" in manifest
    assert "journal: not available" in manifest
    assert [p.name for p in (tmp_path / "work").iterdir()] == [archive.name]


def test_collect_adds_the_journal_of_the_period(logs, tmp_path):
    journalctl = _fake_journalctl(tmp_path)
    archive = collect("DiagnosticsLog", [logs / "evcp.log"], tmp_path / "work", "CP-1",
                      since=T0 - 3600, until=T0, at=T0, journalctl=journalctl)
    journal = _members(archive)["journal.txt"].decode()
    assert "--unit evcp" in journal
    assert f"--since @{int(T0 - 3600)}" in journal and f"--until @{int(T0) + 1}" in journal


def test_collect_without_journalctl_or_unit_leaves_the_journal_out(logs, tmp_path):
    missing = collect("DiagnosticsLog", [logs / "evcp.log"], tmp_path / "a", "CP-1", None, None, at=T0,
                      journalctl="no-such-journalctl-here")
    not_asked = collect("SecurityLog", [logs / "security.log"], tmp_path / "b", "CP-1", None, None, at=T0,
                        journalctl=_fake_journalctl(tmp_path), journal_unit=None)
    assert "journal.txt" not in _members(missing)
    assert sorted(_members(not_asked)) == ["manifest.txt", "security.log"]


def test_collect_stops_a_journalctl_that_hangs(logs, tmp_path):
    hanging = _fake_journalctl(tmp_path, "import time; print('partial', flush=True); time.sleep(30)")
    archive = collect("DiagnosticsLog", [logs / "evcp.log"], tmp_path / "work", "CP-1", None, None, at=T0,
                      journalctl=hanging, journal_timeout_s=0.5)
    members = _members(archive)
    assert members["journal.txt"] == b"partial\n"
    assert "did not finish within 0.5 s" in members["manifest.txt"].decode()


# --- GetDiagnostics and GetLog ----------------------------------------------------------------------


@pytest.fixture
async def server(tmp_path):
    root = tmp_path / "served"
    (root / "diagnostics").mkdir(parents=True)
    async with FileServer(root) as running:
        yield running


class Uploads:
    def __init__(self, tmp_path, logs, **options):
        self.clock = SteppingClock(T0)
        self.diagnostics = []
        self.log = []
        self.work_dir = tmp_path / "work"
        sources = {"DiagnosticsLog": [logs / "evcp.log"], "SecurityLog": [logs / "security.log"]}
        options.setdefault("journalctl", None)
        self.uploads = LogUploads(self.work_dir, "CP-1", lambda kind: sources[kind], self.notify_diagnostics,
                                  self.notify_log, now=self.clock.now, sleep=self.clock.sleep,
                                  transfer_timeout_s=5, **options)

    async def notify_diagnostics(self, status):
        self.diagnostics.append(status)

    async def notify_log(self, status, request_id):
        self.log.append((status, request_id))

    def archives_left(self):
        return [p for p in self.work_dir.rglob("*") if p.is_file()]


async def test_tc_045_1_get_diagnostics_uploads_the_archive_to_the_location(server, logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    name = uploads.uploads.get_diagnostics(f"{server.ftp_url}diagnostics/", start=T0 - 86400, stop=T0)
    assert name == "CP-1-DiagnosticsLog-20240501T100000Z.tar.gz"
    assert uploads.uploads.diagnostics_status == "Uploading"
    await uploads.uploads.join()
    assert uploads.diagnostics == ["Uploading", "Uploaded"]
    assert uploads.uploads.diagnostics_status == "Idle"
    [upload] = server.uploads
    assert upload.path == server.root / "diagnostics" / name
    members = _members(upload.path)
    assert members["evcp.log"] == b"10:00 charging started\n" and "evcp.log.1" in members
    assert uploads.archives_left() == []


async def test_tc_045_2_failed_upload_is_retried_then_reported(server, logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    server.fail_next(3)
    uploads.uploads.get_diagnostics(f"{server.ftp_url}diagnostics/", retries=2, retry_interval_s=20)
    await uploads.uploads.join()
    assert uploads.diagnostics == ["Uploading", "UploadFailed"]
    assert [(r.command, r.status) for r in server.requests] == [("STOR", 451)] * 3
    assert uploads.clock.sleeps == [20, 20]
    assert server.uploads == [] and uploads.archives_left() == []


async def test_get_diagnostics_succeeds_on_a_retry(server, logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    server.fail_next(1)
    uploads.uploads.get_diagnostics(f"{server.http_url}/diagnostics/", retries=1, retry_interval_s=5)
    await uploads.uploads.join()
    assert uploads.diagnostics == ["Uploading", "Uploaded"]
    assert [(r.command, r.status) for r in server.requests] == [("PUT", 503), ("PUT", 201)]


async def test_get_diagnostics_without_any_information_names_no_file(logs, tmp_path):
    uploads = Uploads(tmp_path, tmp_path / "no-logs-here")
    assert uploads.uploads.get_diagnostics("ftp://127.0.0.1:1/") is None
    await uploads.uploads.join()
    assert uploads.diagnostics == []


async def test_tc_079_get_security_log(server, logs, tmp_path):
    uploads = Uploads(tmp_path, logs, journalctl=_fake_journalctl(tmp_path))
    status, name = uploads.uploads.get_log("SecurityLog", 42, f"{server.http_url}/diagnostics", oldest=T0 - 60)
    assert (status, name) == ("Accepted", "CP-1-SecurityLog-20240501T100000Z.tar.gz")
    assert (uploads.uploads.log_status, uploads.uploads.log_request_id) == ("Uploading", 42)
    await uploads.uploads.join()
    assert uploads.log == [("Uploading", 42), ("Uploaded", 42)]
    [upload] = server.uploads
    assert upload.path == server.root / "diagnostics" / name
    assert sorted(_members(upload.path)) == ["manifest.txt", "security.log"], "no journal in the security log"
    assert (uploads.uploads.log_status, uploads.uploads.log_request_id) == ("Idle", None)


async def test_get_log_refused_credentials_are_permission_denied(server, logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    wrong = server.ftp_url.replace(":password@", ":wrong@")
    assert uploads.uploads.get_log("DiagnosticsLog", 5, f"{wrong}diagnostics/", retries=0)[0] == "Accepted"
    await uploads.uploads.join()
    assert uploads.log == [("Uploading", 5), ("PermissionDenied", 5)]


async def test_get_log_unreachable_server_is_upload_failure(logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    assert uploads.uploads.get_log("SecurityLog", 6, "ftp://127.0.0.1:1/", retries=0)[0] == "Accepted"
    await uploads.uploads.join()
    assert uploads.log == [("Uploading", 6), ("UploadFailure", 6)]


async def test_get_log_rejects_unknown_types_and_unusable_locations(logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    assert uploads.uploads.get_log("DebugLog", 1, "ftp://files.example/") == ("Rejected", None)
    assert uploads.uploads.get_log("SecurityLog", 2, "sftp://files.example/") == ("Rejected", None)
    await uploads.uploads.join()
    assert uploads.log == []


async def test_new_get_log_cancels_the_upload_under_way(server, logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    first_uploading = asyncio.Event()
    go_on = asyncio.Event()

    async def notify_log(status, request_id):
        uploads.log.append((status, request_id))
        if (status, request_id) == ("Uploading", 1):
            first_uploading.set()
            await go_on.wait()

    uploads.uploads._notify_log = notify_log
    assert uploads.uploads.get_log("SecurityLog", 1, f"{server.ftp_url}diagnostics/")[0] == "Accepted"
    await first_uploading.wait()
    uploads.clock.time += 1
    status, name = uploads.uploads.get_log("DiagnosticsLog", 2, f"{server.ftp_url}diagnostics/")
    assert (status, name) == ("AcceptedCanceled", "CP-1-DiagnosticsLog-20240501T100001Z.tar.gz")
    await uploads.uploads.join()
    assert uploads.log == [("Uploading", 1), ("Uploading", 2), ("Uploaded", 2)]
    assert [u.path.name for u in server.uploads] == [name]


async def test_close_cancels_uploads(server, logs, tmp_path):
    uploads = Uploads(tmp_path, logs)
    started = asyncio.Event()

    async def notify_diagnostics(status):
        uploads.diagnostics.append(status)
        started.set()
        await asyncio.Event().wait()

    uploads.uploads._notify_diagnostics = notify_diagnostics
    uploads.uploads.get_diagnostics(f"{server.ftp_url}diagnostics/")
    await started.wait()
    await uploads.uploads.close()
    assert uploads.uploads.diagnostics_status == "Idle"
    assert uploads.diagnostics == ["Uploading"] and server.uploads == []


def test_a_log_that_shrinks_while_archived_is_padded_to_its_announced_size():
    from evcp.ocpp.diagnostics import _ExactLength

    reader = _ExactLength(io.BytesIO(b"12345"), 8)
    assert reader.read(6) + reader.read(6) + reader.read(6) == b"12345\0\0\0"
    assert reader.shrank is True
    growing = _ExactLength(io.BytesIO(b"1234567890"), 4)
    assert growing.read() == b"1234" and growing.read() == b"" and growing.shrank is False
