"""The OCPP 1.6 feature profiles beside Core, over a real websocket: `evcp run` (mock hardware)
against the bench central system. Each test reads like the OCTT charge-point case it covers."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def in_seconds(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def statuses(csms, connector: int = 1) -> list[str]:
    return [s["status"] for s in csms.sent_by_charger("StatusNotification") if s["connectorId"] == connector]


# --- Reservation ---------------------------------------------------------------------------------


def test_tc_046_2_reserved_connector_remote_start_carries_the_reservation_id(csms, start_charger, wait_until):
    charger = start_charger()
    answer = csms.call("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": "RES00001",
                                      "reservationId": 17})
    assert answer["payload"] == {"status": "Accepted"}
    assert charger.wait_status("Reserved")["reservation_id"] == 17
    wait_until(lambda: "Reserved" in statuses(csms), 5, "StatusNotification Reserved")
    other = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "OTHER001"})
    assert other["payload"] == {"status": "Rejected"}
    assert csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "RES00001"})["payload"] == {
        "status": "Accepted"}
    charger.pilot("C")
    charger.wait_status("Charging")
    [tx] = csms.transactions()
    assert (tx["id_tag"], tx["reservation_id"]) == ("RES00001", 17)


def test_tc_047_reservation_expires_and_survives_nothing_after(csms, start_charger, wait_until):
    charger = start_charger()
    csms.call("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(2), "idTag": "RES00001",
                             "reservationId": 3})
    charger.wait_status("Reserved")
    charger.wait_status("Available", timeout=6)
    charger.start_charging("OTHER001")
    [tx] = csms.transactions()
    assert tx["reservation_id"] is None


def test_tc_048_2_and_tc_052_occupied_and_unknown_cancel(csms, start_charger):
    charger = start_charger()
    charger.pilot("B")
    charger.wait_status("Preparing")
    reserve = {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": "RES00001", "reservationId": 4}
    assert csms.call("ReserveNow", reserve)["payload"] == {"status": "Occupied"}
    assert csms.call("CancelReservation", {"reservationId": 4})["payload"] == {"status": "Rejected"}


def test_reservation_survives_a_restart(csms, start_charger, wait_until):
    charger = start_charger()
    csms.call("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": "RES00001",
                             "reservationId": 9})
    charger.wait_status("Reserved")
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(10)
    charger = start_charger()
    charger.wait_status("Reserved")
    assert csms.call("CancelReservation", {"reservationId": 9})["payload"] == {"status": "Accepted"}
    charger.wait_status("Available")


# --- Local Authorization List and Authorization Cache --------------------------------------------


def local_list(version: int, update_type: str = "Full", **tags: str) -> dict:
    return {"listVersion": version, "updateType": update_type,
            "localAuthorizationList": [{"idTag": tag, "idTagInfo": {"status": status}} for tag, status in tags.items()]}


def test_tc_008_id_in_the_local_list_starts_without_authorize(csms, start_charger, wait_until):
    charger = start_charger(keys={"LocalPreAuthorize": True, "AuthorizationCacheEnabled": False})
    assert csms.call("GetLocalListVersion", {})["payload"] == {"listVersion": 0}
    assert csms.call("SendLocalList", local_list(1, LOCAL0001="Accepted"))["payload"] == {"status": "Accepted"}
    charger.tap("LOCAL0001")
    charger.wait_status("Preparing")
    charger.pilot("C")
    charger.wait_status("Charging")
    assert csms.sent_by_charger("Authorize") == [], "pre-authorized from the Local Authorization List"
    [tx] = csms.transactions()
    assert tx["id_tag"] == "LOCAL0001"


def test_tc_042_and_tc_043_list_versions_and_mismatch(csms, start_charger):
    start_charger()
    send = lambda body: csms.call("SendLocalList", body)["payload"]["status"]  # noqa: E731
    version = lambda: csms.call("GetLocalListVersion", {})["payload"]["listVersion"]  # noqa: E731
    assert send({"listVersion": 1, "updateType": "Full"}) == "Accepted"
    assert version() == 0, "an empty list reports 0 (TC_042_2)"
    assert send(local_list(2, A0000001="Accepted")) == "Accepted" and version() == 2
    assert send(local_list(5, "Differential", B0000002="Blocked")) == "Accepted" and version() == 5
    assert send(local_list(4, "Differential", C0000003="Accepted")) == "VersionMismatch"
    assert version() == 5
    too_many = {"listVersion": 6, "updateType": "Full", "localAuthorizationList": [
        {"idTag": f"T{i:07d}", "idTagInfo": {"status": "Accepted"}} for i in range(251)]}
    assert send(too_many) == "Failed", "more entries than SendLocalListMaxLength, 250 (TC_043_3)"
    assert version() == 5


def test_tc_042_1_list_disabled(csms, start_charger):
    start_charger(keys={"LocalAuthListEnabled": False})
    assert csms.call("GetLocalListVersion", {})["payload"] == {"listVersion": -1}
    assert csms.call("SendLocalList", local_list(1, A0000001="Accepted"))["payload"] == {"status": "NotSupported"}


def test_tc_007_cached_id_then_tc_061_clear_cache(csms, start_charger, wait_until):
    charger = start_charger(keys={"LocalPreAuthorize": True, "AuthorizationCacheEnabled": True})
    charger.tap("CACHED01")  # reusable state Authorized: the answer goes to the cache
    charger.wait_status("Preparing")
    charger.tap("CACHED01")  # presented again: authorization withdrawn
    charger.wait_status("Available")
    assert len(csms.sent_by_charger("Authorize")) == 1
    charger.tap("CACHED01")
    charger.wait_status("Preparing")
    assert len(csms.sent_by_charger("Authorize")) == 1, "pre-authorized from the cache (TC_007)"
    charger.tap("CACHED01")
    charger.wait_status("Available")
    assert csms.call("ClearCache", {})["payload"] == {"status": "Accepted"}
    charger.tap("CACHED01")
    wait_until(lambda: len(csms.sent_by_charger("Authorize")) == 2, 5, "Authorize.req after ClearCache")


def test_local_list_survives_a_restart_and_authorizes_offline(csms, start_charger):
    keys = {"LocalAuthorizeOffline": True}
    charger = start_charger(keys=keys, ocpp="allow_offline_start = true")
    assert csms.call("SendLocalList", local_list(3, LOCAL0001="Accepted", BLOCKED1="Blocked"))["payload"] == {
        "status": "Accepted"}
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(10)
    csms.post("/policy", {"accept_connections": False})
    charger = start_charger(keys=keys, ocpp="allow_offline_start = true", wait_online=False)
    charger.pilot("C")
    charger.tap("BLOCKED1")
    charger.wait_status("Preparing")
    charger.tap("LOCAL0001")
    connector = charger.wait_status("Charging")
    assert connector["id_tag"] == "LOCAL0001" and connector["relay_closed"]
    assert "Authorize LOCAL0001: Accepted from the local list (central system offline)" in charger.log_path.read_text()


# --- SmartCharging ------------------------------------------------------------------------------


def tx_profile(limit: float, profile_id: int = 1, purpose: str = "TxProfile", **extra) -> dict:
    return {"chargingProfileId": profile_id, "stackLevel": 0, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative", **extra,
            "chargingSchedule": {"chargingRateUnit": "A",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}


def test_tc_059_remote_start_with_a_profile_limits_the_pilot_and_the_composite_schedule(csms, start_charger):
    charger = start_charger()
    charger.pilot("C")
    answer = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE01",
                                                  "chargingProfile": tx_profile(10.0)})
    assert answer["payload"] == {"status": "Accepted"}
    connector = charger.wait_status("Charging")
    assert connector["current_limit_a"] == 10.0, "the pilot offers what the profile allows"
    conf = csms.call("GetCompositeSchedule", {"connectorId": 1, "duration": 400, "chargingRateUnit": "A"})["payload"]
    assert conf["status"] == "Accepted" and conf["connectorId"] == 1
    schedule = conf["chargingSchedule"]
    assert schedule["duration"] == 400 and schedule["chargingRateUnit"] == "A"
    assert schedule["chargingSchedulePeriod"][0] == {"startPeriod": 0, "limit": 10.0}


def test_tc_060_and_tc_058_1_profiles_that_do_not_fit_are_rejected(csms, start_charger):
    start_charger()
    answer = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE01",
                                                  "chargingProfile": tx_profile(10.0, purpose="TxDefaultProfile")})
    assert answer["payload"] == {"status": "Rejected"}
    answer = csms.call("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": tx_profile(10.0, transactionId=5)})
    assert answer["payload"] == {"status": "Rejected"}


def test_a_limit_below_6_a_pauses_charging_and_clearing_it_resumes(csms, start_charger, wait_until):
    charger = start_charger()
    charger.start_charging("04A1B2C3")
    profile = tx_profile(3.0, purpose="TxDefaultProfile", profile_id=8)
    assert csms.call("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile})["payload"] == {
        "status": "Accepted"}
    connector = charger.wait_status("SuspendedEVSE", timeout=10)
    assert connector["current_limit_a"] is None and connector["charging_limit_a"] == 3.0
    wait_until(lambda: charger.connector()["relay_closed"] is False, 10, "contactor open 6 s into the pause")
    assert csms.call("ClearChargingProfile", {"id": 8})["payload"] == {"status": "Accepted"}
    connector = charger.wait_status("Charging", timeout=10)
    assert connector["current_limit_a"] == 32.0 and connector["relay_closed"]


# --- FirmwareManagement and diagnostics ----------------------------------------------------------


def firmware_statuses(csms) -> list[str]:
    return [m["status"] for m in csms.sent_by_charger("FirmwareStatusNotification")]


def test_tc_044_1_firmware_downloaded_installed_and_the_new_program_started(csms, start_charger, file_server,
                                                                        tmp_path, wait_until):
    (file_server.root / "evcp-firmware.bin").write_bytes(b"new firmware " * 1000)
    installed = tmp_path / "installed.bin"
    # The firmware's path is appended to the command: the script copies it (argv[2]) to argv[1].
    command = json.dumps([sys.executable, "-c",
                          "import shutil, sys; shutil.copy(sys.argv[2], sys.argv[1])", str(installed)])
    charger = start_charger(extra=f"[firmware]\ninstall_command = {command}\n")
    pid = charger.process.pid
    answer = csms.call("UpdateFirmware", {"location": file_server.http_url + "/evcp-firmware.bin",
                                          "retrieveDate": in_seconds(0)})
    assert answer["status"] == "result"
    wait_until(lambda: "Installed" in firmware_statuses(csms), 20, "FirmwareStatusNotification Installed")
    assert firmware_statuses(csms)[:4] == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert installed.read_bytes() == b"new firmware " * 1000
    wait_until(lambda: len(csms.sent_by_charger("BootNotification")) == 2, 20, "the new program boots")
    assert charger.process.pid == pid and charger.process.poll() is None, "same process, same systemd unit"


def test_tc_044_2_download_failed_keeps_the_old_firmware(csms, start_charger, file_server, wait_until):
    charger = start_charger(extra='[firmware]\ninstall_command = ["/bin/false"]\n')
    csms.call("UpdateFirmware", {"location": file_server.http_url + "/does_not_exist_firmware.bin",
                                 "retrieveDate": in_seconds(0), "retries": 0})
    wait_until(lambda: "DownloadFailed" in firmware_statuses(csms), 15, "DownloadFailed")
    assert "Installing" not in firmware_statuses(csms)
    assert charger.connector()["status"] == "Available"
    assert csms.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})["payload"] == {
        "status": "Accepted"}
    wait_until(lambda: firmware_statuses(csms)[-1] == "Idle", 5, "Idle after a failed update")


def test_tc_045_1_get_diagnostics_uploads_the_logs_over_ftp(csms, start_charger, file_server, wait_until):
    charger = start_charger()
    charger.tap("04A1B2C3")  # something in the OCPP trace
    (file_server.root / "logs").mkdir()
    answer = csms.call("GetDiagnostics", {"location": file_server.ftp_url + "logs/"})
    file_name = answer["payload"]["fileName"]
    assert file_name.startswith("CP-IT-01") and file_name.endswith(".tar.gz")
    wait_until(lambda: [m["status"] for m in csms.sent_by_charger("DiagnosticsStatusNotification")] ==
               ["Uploading", "Uploaded"], 15, "Uploading then Uploaded")
    uploaded = file_server.root / "logs" / file_name
    with tarfile.open(uploaded) as archive:
        names = archive.getnames()
    assert any(name.endswith("ocpp-trace.log") for name in names), names


def test_tc_079_get_security_log(csms, start_charger, file_server, wait_until):
    start_charger()
    answer = csms.call("GetLog", {"logType": "SecurityLog", "requestId": 42,
                                  "log": {"remoteLocation": file_server.http_url + "/upload"}})
    assert answer["payload"]["status"] == "Accepted"
    notifications = wait_until(lambda: len(n := csms.sent_by_charger("LogStatusNotification")) >= 2 and n, 15)
    assert [(n["status"], n["requestId"]) for n in notifications] == [("Uploading", 42), ("Uploaded", 42)]
    [upload] = file_server.uploads
    with tarfile.open(upload.path) as archive:
        [log] = [m for m in archive.getmembers() if m.name.endswith("security.log")]
        assert b"StartupOfTheDevice" in archive.extractfile(log).read()


def test_tc_054_every_trigger_message_is_answered_and_sent(csms, start_charger, wait_until):
    start_charger()
    for message, action in (("DiagnosticsStatusNotification", "DiagnosticsStatusNotification"),
                            ("FirmwareStatusNotification", "FirmwareStatusNotification"),
                            ("Heartbeat", "Heartbeat"), ("MeterValues", "MeterValues"),
                            ("StatusNotification", "StatusNotification"), ("BootNotification", "BootNotification")):
        before = len(csms.sent_by_charger(action))
        assert csms.call("TriggerMessage", {"requestedMessage": message})["payload"] == {"status": "Accepted"}, message
        wait_until(lambda: len(csms.sent_by_charger(action)) > before, 5, f"triggered {message}")
    assert csms.call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 2})["payload"] == {
        "status": "Rejected"}
    for message, action in (("LogStatusNotification", "LogStatusNotification"),
                            ("FirmwareStatusNotification", "SignedFirmwareStatusNotification")):
        before = len(csms.sent_by_charger(action))
        assert csms.call("ExtendedTriggerMessage", {"requestedMessage": message})["payload"] == {
            "status": "Accepted"}
        wait_until(lambda: len(csms.sent_by_charger(action)) > before, 5, f"extended trigger {message}")
    assert csms.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})["payload"] == {
        "status": "Rejected"}, "no CpoName configured: no CSR"


# --- Security whitepaper: certificates and signed firmware ---------------------------------------


def openssl(*args: str, cwd: Path, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, input=data).stdout


def test_tc_075_1_and_tc_076_install_list_and_delete_a_root_certificate(csms, start_charger, make_pki):
    pki = make_pki("CP-IT-01")
    start_charger()
    root = pki.ca.read_text()
    answer = csms.call("InstallCertificate", {"certificateType": "ManufacturerRootCertificate", "certificate": root})
    assert answer["payload"] == {"status": "Accepted"}
    listed = csms.call("GetInstalledCertificateIds", {"certificateType": "ManufacturerRootCertificate"})["payload"]
    assert listed["status"] == "Accepted"
    [hash_data] = listed["certificateHashData"]
    serial = openssl("x509", "-in", str(pki.ca), "-noout", "-serial", cwd=pki.dir).decode().strip().split("=")[1]
    assert hash_data["serialNumber"] == serial.lower().lstrip("0")
    assert csms.call("InstallCertificate", {"certificateType": "CentralSystemRootCertificate",
                                            "certificate": pki.client_cert.read_text()})["payload"] == {
        "status": "Rejected"}, "not a CA certificate"
    assert csms.call("DeleteCertificate", {"certificateHashData": hash_data})["payload"] == {"status": "Accepted"}
    assert csms.call("DeleteCertificate", {"certificateHashData": hash_data})["payload"] == {"status": "NotFound"}
    assert csms.call("GetInstalledCertificateIds", {"certificateType": "ManufacturerRootCertificate"})[
        "payload"]["status"] == "NotFound"


def test_tc_074_and_tc_077_charge_point_certificate_signed_on_request(csms, start_charger, make_pki, wait_until,
                                                                      tmp_path):
    pki = make_pki("CP-IT-01")
    start_charger(keys={"CpoName": "Example CPO"})
    assert csms.call("InstallCertificate", {"certificateType": "CentralSystemRootCertificate",
                                            "certificate": pki.ca.read_text()})["payload"] == {"status": "Accepted"}
    assert csms.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})["payload"] == {
        "status": "Accepted"}
    [request] = wait_until(lambda: csms.sent_by_charger("SignCertificate"), 10, "SignCertificate.req")
    (tmp_path / "cp.csr").write_text(request["csr"])
    subject = openssl("req", "-in", "cp.csr", "-noout", "-subject", cwd=tmp_path).decode()
    assert "CN = CP-IT-01" in subject and "O = Example CPO" in subject
    assert csms.call("CertificateSigned", {"certificateChain": pki.client_cert.read_text()})["payload"] == {
        "status": "Rejected"}, "TC_077: a certificate for another key"
    wait_until(lambda: any(e["type"] == "InvalidChargePointCertificate"
                           for e in csms.sent_by_charger("SecurityEventNotification")), 10, "the security event")
    openssl("x509", "-req", "-in", "cp.csr", "-CA", str(pki.ca), "-CAkey", str(pki.dir / "ca.key"),
            "-CAcreateserial", "-out", "cp.pem", "-days", "2", cwd=tmp_path)
    assert csms.call("CertificateSigned", {"certificateChain": (tmp_path / "cp.pem").read_text()})["payload"] == {
        "status": "Accepted"}, "TC_074"


def test_tc_080_and_tc_081_signed_firmware_update(csms, start_charger, make_pki, file_server, wait_until, tmp_path):
    pki = make_pki("CP-IT-01")
    firmware = file_server.root / "signed.bin"
    firmware.write_bytes(b"signed firmware " * 500)
    signature = base64.b64encode(openssl("dgst", "-sha256", "-sign", str(pki.dir / "ca.key"), str(firmware),
                                         cwd=tmp_path)).decode()
    marker = tmp_path / "installed"
    command = json.dumps([sys.executable, "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()",
                          str(marker)])
    start_charger(extra=f"[firmware]\ninstall_command = {command}\n")
    csms.call("InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                     "certificate": pki.ca.read_text()})

    def update(request_id: int, signature: str) -> dict:
        return csms.call("SignedUpdateFirmware", {"requestId": request_id, "firmware": {
            "location": file_server.http_url + "/signed.bin", "retrieveDateTime": in_seconds(0),
            "signingCertificate": pki.ca.read_text(), "signature": signature}})["payload"]

    def statuses(request_id: int) -> list[str]:
        return [m["status"] for m in csms.sent_by_charger("SignedFirmwareStatusNotification")
                if m["requestId"] == request_id]

    tampered = base64.b64encode(b"\x00" * 256).decode()
    assert update(1, tampered) == {"status": "Accepted"}
    wait_until(lambda: "InvalidSignature" in statuses(1), 15, "TC_081 InvalidSignature")
    assert statuses(1)[:3] == ["Downloading", "Downloaded", "InvalidSignature"]
    wait_until(lambda: any(e["type"] == "InvalidFirmwareSignature"
                           for e in csms.sent_by_charger("SecurityEventNotification")), 10, "the security event")
    assert not marker.exists(), "nothing installed with a bad signature"
    assert update(2, signature) == {"status": "Accepted"}
    wait_until(lambda: "Installed" in statuses(2), 20, "TC_080 Installed")
    assert statuses(2)[:5] == ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"]
    assert marker.exists()
