"""The firmware update process against the bench file server, with a real install command and an
injected clock (dates and retry intervals pass without waiting)."""

import asyncio
import logging
import sys

import pytest

from evcp.bench.files import FileServer
from evcp.ocpp.firmware import LONGEST_SLEEP_S, FirmwareUpdater, firmware_file_name
from tests.clock import SteppingClock

FIRMWARE = bytes(range(256)) * 400
T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z


class Gate:
    """The charger's transactions: ``busy`` means one runs until :meth:`end_transactions`."""

    def __init__(self, busy=False):
        self.history = []
        self.waiting = asyncio.Event()
        self._idle = asyncio.Event()
        if not busy:
            self._idle.set()

    def hold(self, reason):
        self.history.append("hold")

    def release(self):
        self.history.append("release")

    async def wait_idle(self):
        self.waiting.set()
        await self._idle.wait()

    def end_transactions(self):
        self._idle.set()


class Harness:
    def __init__(self, tmp_path, server, clock, gate):
        self.server = server
        self.clock = clock
        self.gate = gate
        self.work_dir = tmp_path / "work"
        self.installed_copy = tmp_path / "installed.bin"
        self.sent = []
        self.sent_at = {}
        self.security_events = []
        self.restarts = 0
        self.verified = []

    async def notify(self, status, request_id):
        self.sent.append((status, request_id))
        self.sent_at[status] = self.clock.now()

    async def on_installed(self):
        self.restarts += 1

    def security_event(self, event_type, tech_info):
        self.security_events.append((event_type, tech_info))

    def copying_installer(self):
        """An install command that copies the firmware it is given to ``installed_copy``."""
        code = "import shutil, sys; shutil.copyfile(sys.argv[2], sys.argv[1]); print('flashed')"
        return [sys.executable, "-c", code, str(self.installed_copy)]

    def verifier(self, reason=None):
        def verify(path, signature, certificate):
            self.verified.append((path.read_bytes() == FIRMWARE, signature, certificate))
            return reason
        return verify

    def updater(self, install_command="copy", **options):
        command = self.copying_installer() if install_command == "copy" else install_command
        return FirmwareUpdater(self.work_dir, command, self.notify, self.gate, on_installed=self.on_installed,
                               security_event=self.security_event, now=self.clock.now, sleep=self.clock.sleep,
                               transfer_timeout_s=5, **options)

    def statuses(self):
        return [status for status, _ in self.sent]


@pytest.fixture
async def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "fw.bin").write_bytes(FIRMWARE)
    async with FileServer(root) as running:
        yield running


@pytest.fixture
def harness(tmp_path, server):
    return Harness(tmp_path, server, SteppingClock(T0), Gate())


def test_firmware_file_name_is_the_last_segment_made_safe():
    assert firmware_file_name("ftp://u:p@h/dir/evcp-1.2.tar.gz") == "evcp-1.2.tar.gz"
    assert firmware_file_name("http://h/a/..%2F..%2Fetc%2Fpasswd") == "_.._etc_passwd"
    assert firmware_file_name("http://h/fw%20new.bin?x=1") == "fw_new.bin"
    assert firmware_file_name("http://h/") == "firmware.bin"
    assert firmware_file_name("http://h/.hidden") == "hidden"


async def test_tc_044_1_download_and_install(harness):
    updater = harness.updater()
    assert updater.status == "Idle"
    updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0 - 60, retries=1, retry_interval_s=10)
    await updater.join()
    assert harness.sent == [("Downloading", None), ("Downloaded", None), ("Installing", None), ("Installed", None)]
    assert harness.installed_copy.read_bytes() == FIRMWARE
    assert harness.restarts == 1
    assert harness.gate.history == ["hold"], "the gate stays held for the restart"
    assert list(harness.work_dir.iterdir()) == []
    assert updater.status == "Idle"


async def test_tc_044_1_over_ftp(harness):
    updater = harness.updater()
    updater.update(f"{harness.server.ftp_url}fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    await updater.join()
    assert harness.statuses() == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert harness.installed_copy.read_bytes() == FIRMWARE


async def test_tc_044_2_missing_firmware_fails_the_download_and_installs_nothing(harness):
    updater = harness.updater()
    updater.update(f"{harness.server.http_url}/does_not_exist_fw.bin", retrieve_at=T0, retries=0,
                   retry_interval_s=30)
    await updater.join()
    assert harness.statuses() == ["Downloading", "DownloadFailed"]
    assert [r.status for r in harness.server.requests] == [404]
    assert harness.clock.sleeps == []
    assert not harness.installed_copy.exists()
    assert harness.gate.history == []
    assert harness.restarts == 0
    assert updater.status == "Idle"


async def test_tc_044_3_failing_installer_reports_installation_failed(harness, caplog):
    failing = [sys.executable, "-c", "import sys; print('image rejected by bootloader'); sys.exit(3)"]
    updater = harness.updater(install_command=failing)
    with caplog.at_level(logging.ERROR, logger="evcp.ocpp.firmware"):
        updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
        await updater.join()
    assert harness.statuses() == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert harness.gate.history == ["hold", "release"]
    assert harness.restarts == 0
    assert "exit status 3" in caplog.text and "image rejected by bootloader" in caplog.text
    assert list(harness.work_dir.iterdir()) == []


async def test_without_install_command_nothing_is_claimed_installed(harness, caplog):
    updater = harness.updater(install_command=None)
    with caplog.at_level(logging.ERROR, logger="evcp.ocpp.firmware"):
        updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
        await updater.join()
    assert harness.statuses() == ["Downloading", "Downloaded", "InstallationFailed"]
    assert "no firmware install command is configured" in caplog.text
    assert harness.gate.history == []
    assert harness.restarts == 0


async def test_hanging_installer_is_stopped_after_its_timeout(harness):
    hanging = [sys.executable, "-c", "import time; time.sleep(60)"]
    updater = harness.updater(install_command=hanging, install_timeout_s=0.5)
    updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    await updater.join()
    assert harness.statuses()[-2:] == ["Installing", "InstallationFailed"]
    assert harness.gate.history == ["hold", "release"]


async def test_download_is_retried_after_the_retry_interval(harness):
    harness.server.fail_next(2)
    updater = harness.updater()
    updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0, retries=2, retry_interval_s=30)
    await updater.join()
    assert [r.status for r in harness.server.requests] == [503, 503, 200]
    assert harness.clock.sleeps == [30, 30]
    assert harness.statuses() == ["Downloading", "Downloaded", "Installing", "Installed"]


async def test_download_gives_up_after_its_retries(harness):
    harness.server.fail_next(5)
    updater = harness.updater()
    updater.update(f"{harness.server.ftp_url}fw.bin", retrieve_at=T0, retries=1, retry_interval_s=45)
    await updater.join()
    assert [r.status for r in harness.server.requests] == [451, 451]
    assert harness.clock.sleeps == [45]
    assert harness.statuses() == ["Downloading", "DownloadFailed"]


async def test_download_waits_for_the_retrieve_date(harness):
    updater = harness.updater()
    updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0 + 3600, retries=0, retry_interval_s=0)
    await updater.join()
    assert harness.sent_at["Downloading"] >= T0 + 3600
    assert sum(harness.clock.sleeps) == 3600
    assert max(harness.clock.sleeps) <= LONGEST_SLEEP_S, "long waits follow the clock in steps"
    assert harness.statuses()[0] == "Downloading", "UpdateFirmware has no DownloadScheduled"


async def test_installation_waits_until_no_transaction_runs(tmp_path, server):
    harness = Harness(tmp_path, server, SteppingClock(T0), Gate(busy=True))
    updater = harness.updater()
    updater.update(f"{server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    await harness.gate.waiting.wait()
    assert harness.statuses() == ["Downloading", "Downloaded"]
    assert harness.gate.history == ["hold"], "no new transaction may start meanwhile"
    assert not harness.installed_copy.exists()
    assert updater.status == "Downloaded"
    harness.gate.end_transactions()
    await updater.join()
    assert harness.statuses() == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert harness.installed_copy.read_bytes() == FIRMWARE


async def test_new_update_replaces_one_waiting_for_transactions_and_releases_the_gate(tmp_path, server):
    harness = Harness(tmp_path, server, SteppingClock(T0), Gate(busy=True))
    updater = harness.updater()
    updater.update(f"{server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    await harness.gate.waiting.wait()
    updater.update(f"{server.http_url}/does_not_exist.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    await updater.join()
    assert harness.statuses() == ["Downloading", "Downloaded", "Downloading", "DownloadFailed"]
    assert harness.gate.history == ["hold", "release"]
    assert not harness.installed_copy.exists()


async def test_unsupported_location_fails_the_download_at_once(harness):
    updater = harness.updater()
    updater.update("sftp://files.example/fw.bin", retrieve_at=T0, retries=3, retry_interval_s=10)
    await updater.join()
    assert harness.statuses() == ["DownloadFailed"]
    assert harness.clock.sleeps == []


# --- security whitepaper: SignedUpdateFirmware ------------------------------------------------------


SIGNATURE = "c2lnbmF0dXJl"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"


def _signed(updater, server, request_id=7, location=None, retrieve_at=T0, install_at=None):
    return updater.signed_update(request_id, location or f"{server.http_url}/fw.bin", retrieve_at, 0, 0,
                                 install_at, CERTIFICATE, SIGNATURE)


async def test_tc_080_signed_update_verifies_then_installs(harness):
    updater = harness.updater(verify_signature=harness.verifier(None), check_signing_certificate=lambda pem: None)
    assert _signed(updater, harness.server) == "Accepted"
    await updater.join()
    assert harness.sent == [(status, 7) for status in
                            ("Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed")]
    assert harness.verified == [(True, SIGNATURE, CERTIFICATE)]
    assert harness.installed_copy.read_bytes() == FIRMWARE
    assert updater.signed_status == ("Idle", None), "after Installed a trigger reports Idle"


async def test_signed_update_schedules_download_and_install(harness):
    updater = harness.updater(verify_signature=harness.verifier(None))
    assert _signed(updater, harness.server, retrieve_at=T0 + 600, install_at=T0 + 7200) == "Accepted"
    await updater.join()
    assert harness.statuses() == ["DownloadScheduled", "Downloading", "Downloaded", "SignatureVerified",
                                  "InstallScheduled", "Installing", "Installed"]
    assert harness.sent_at["DownloadScheduled"] == T0
    assert harness.sent_at["Downloading"] >= T0 + 600
    assert harness.sent_at["Installing"] >= T0 + 7200


async def test_tc_081_invalid_signature_is_reported_and_nothing_installed(harness):
    updater = harness.updater(verify_signature=harness.verifier("signature does not match the firmware"))
    assert _signed(updater, harness.server, request_id=12) == "Accepted"
    await updater.join()
    assert harness.sent == [("Downloading", 12), ("Downloaded", 12), ("InvalidSignature", 12)]
    assert harness.security_events == [("InvalidFirmwareSignature", "signature does not match the firmware")]
    assert not harness.installed_copy.exists()
    assert harness.gate.history == []
    assert list(harness.work_dir.iterdir()) == []
    assert updater.signed_status == ("InvalidSignature", 12)
    assert updater.status == "Idle"


async def test_invalid_signing_certificate_is_answered_and_reported(harness):
    reported = asyncio.Event()

    async def security_event(event_type, tech_info):
        harness.security_events.append((event_type, tech_info))
        reported.set()

    updater = FirmwareUpdater(harness.work_dir, harness.copying_installer(), harness.notify, harness.gate,
                              on_installed=harness.on_installed, verify_signature=harness.verifier(None),
                              check_signing_certificate=lambda pem: "not signed by the manufacturer root",
                              security_event=security_event, now=harness.clock.now, sleep=harness.clock.sleep)
    assert _signed(updater, harness.server) == "InvalidCertificate"
    await asyncio.wait_for(reported.wait(), 5)
    assert harness.security_events == [("InvalidFirmwareSigningCertificate", "not signed by the manufacturer root")]
    assert not updater.busy
    assert harness.sent == [] and harness.server.requests == []


async def test_signed_update_without_a_verifier_or_with_a_bad_location_is_rejected(harness):
    assert _signed(harness.updater(), harness.server) == "Rejected"
    with_verifier = harness.updater(verify_signature=harness.verifier(None))
    assert _signed(with_verifier, harness.server, location="sftp://files.example/fw.bin") == "Rejected"
    assert harness.sent == [] and harness.server.requests == []


async def test_new_signed_update_cancels_the_one_under_way(tmp_path, server):
    harness = Harness(tmp_path, server, SteppingClock(T0), Gate(busy=True))
    updater = harness.updater(verify_signature=harness.verifier(None))
    assert _signed(updater, server, request_id=1) == "Accepted"
    await harness.gate.waiting.wait()
    assert updater.signed_status == ("SignatureVerified", 1)
    assert _signed(updater, server, request_id=2) == "AcceptedCanceled"
    harness.gate.end_transactions()
    await updater.join()
    assert harness.sent == [("Downloading", 1), ("Downloaded", 1), ("SignatureVerified", 1),
                            ("Downloading", 2), ("Downloaded", 2), ("SignatureVerified", 2),
                            ("Installing", 2), ("Installed", 2)]
    assert harness.gate.history == ["hold", "release", "hold"]


async def test_requests_while_installing_never_cut_the_installation_short(harness):
    installing = asyncio.Event()
    finish = asyncio.Event()

    async def notify(status, request_id):
        harness.sent.append((status, request_id))
        if status == "Installing":
            installing.set()
            await finish.wait()

    updater = FirmwareUpdater(harness.work_dir, harness.copying_installer(), notify, harness.gate,
                              on_installed=harness.on_installed, verify_signature=harness.verifier(None),
                              now=harness.clock.now, sleep=harness.clock.sleep)
    assert _signed(updater, harness.server, request_id=3) == "Accepted"
    await installing.wait()
    assert _signed(updater, harness.server, request_id=4) == "Rejected"
    updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    assert updater.status == "Installing"
    finish.set()
    await updater.join()
    assert harness.sent[-2:] == [("Installing", 3), ("Installed", 3)]
    assert {request_id for _, request_id in harness.sent} == {3}
    assert harness.installed_copy.read_bytes() == FIRMWARE


async def test_failed_restart_after_install_releases_the_gate(harness):
    async def restart_fails():
        raise RuntimeError("systemctl not found")

    updater = FirmwareUpdater(harness.work_dir, harness.copying_installer(), harness.notify, harness.gate,
                              on_installed=restart_fails, now=harness.clock.now, sleep=harness.clock.sleep)
    updater.update(f"{harness.server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    await updater.join()
    assert harness.statuses()[-1] == "Installed"
    assert harness.gate.history == ["hold", "release"]


async def test_close_cancels_the_update_and_releases_the_gate(tmp_path, server):
    harness = Harness(tmp_path, server, SteppingClock(T0), Gate(busy=True))
    updater = harness.updater()
    updater.update(f"{server.http_url}/fw.bin", retrieve_at=T0, retries=0, retry_interval_s=0)
    await harness.gate.waiting.wait()
    await updater.close()
    assert harness.gate.history == ["hold", "release"]
    assert not updater.busy and updater.status == "Idle"
    assert list(harness.work_dir.iterdir()) == []


# --- OCPP 2.0.1 UpdateFirmware: the signature is optional (Part 2 L01 / L02) --------------------


async def test_update_by_request_with_a_signature_is_the_signed_update(harness):
    updater = harness.updater(verify_signature=harness.verifier(None), check_signing_certificate=lambda pem: None)
    assert updater.update_by_request(5, f"{harness.server.http_url}/fw.bin", T0, 0, 0, None,
                                     CERTIFICATE, SIGNATURE) == "Accepted"
    await updater.join()
    assert harness.statuses() == ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"]
    assert harness.verified == [(True, SIGNATURE, CERTIFICATE)]


async def test_update_by_request_without_a_signature_installs_unverified_with_the_request_id(harness):
    updater = harness.updater(verify_signature=harness.verifier(None))
    assert updater.update_by_request(6, f"{harness.server.http_url}/fw.bin", T0, 0, 0, None, None, None) \
        == "Accepted"
    await updater.join()
    assert harness.sent == [(status, 6) for status in ("Downloading", "Downloaded", "Installing", "Installed")]
    assert harness.verified == [] and harness.installed_copy.read_bytes() == FIRMWARE


@pytest.mark.parametrize("certificate, signature", [(CERTIFICATE, None), (None, SIGNATURE)])
async def test_update_by_request_with_half_a_signature_is_rejected(harness, certificate, signature):
    updater = harness.updater(verify_signature=harness.verifier(None))
    assert updater.update_by_request(7, f"{harness.server.http_url}/fw.bin", T0, 0, 0, None,
                                     certificate, signature) == "Rejected"
    assert not updater.busy and harness.sent == []


async def test_signed_update_with_an_empty_signature_is_still_verified(harness):
    updater = harness.updater(verify_signature=harness.verifier("the firmware signature is not base64"))
    assert updater.signed_update(8, f"{harness.server.http_url}/fw.bin", T0, 0, 0, None, CERTIFICATE, "") \
        == "Accepted"
    await updater.join()
    assert len(harness.verified) == 1, "an empty signature is checked, not skipped"
    assert harness.statuses()[-1] == "InvalidSignature" and not harness.installed_copy.exists()
