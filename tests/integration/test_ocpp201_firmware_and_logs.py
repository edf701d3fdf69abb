"""OCPP 2.0.1 firmware updates and log uploads over real processes: ``evcp run`` (mock hardware,
``ocpp.version = "2.0.1"``), the bench central system and the bench file server (HTTP).
Part 2 L02 (UpdateFirmware without a signature), N01 (GetLog); every status notification
carries the request's requestId."""

from __future__ import annotations

import json
import sys
import tarfile
from datetime import datetime, timezone

from .conftest import wait_until
from .test_ocpp201 import start_201


def statuses(csms, action: str, request_id: int) -> list[str]:
    return [m["status"] for m in csms.sent_by_charger(action) if m.get("requestId") == request_id]


def test_tc_n_01_cs_get_log_diagnostics_log_uploaded_to_the_file_server(csms, start_charger, file_server):
    charger = start_201(start_charger)
    charger.tap("04A1B2C3")  # something in the OCPP trace beyond the boot
    wait_until(lambda: csms.sent_by_charger("Authorize"), 10, "Authorize")
    answer = csms.call("GetLog", {"logType": "DiagnosticsLog", "requestId": 31,
                                  "log": {"remoteLocation": file_server.http_url + "/logs"}})
    assert answer["payload"]["status"] == "Accepted", answer
    filename = answer["payload"]["filename"]
    wait_until(lambda: "Uploaded" in statuses(csms, "LogStatusNotification", 31), 15, "LogStatusNotification Uploaded")
    assert statuses(csms, "LogStatusNotification", 31) == ["Uploading", "Uploaded"]
    [upload] = file_server.uploads
    assert upload.path.name == filename
    with tarfile.open(upload.path) as archive:
        trace = next(m for m in archive.getmembers() if m.name.endswith("ocpp-trace.log"))
        text = archive.extractfile(trace).read()
    assert b"BootNotification" in text and b"Authorize" in text


def test_tc_l_02_cs_update_firmware_without_a_signature_downloaded_installed_then_booted_for_it(
        csms, start_charger, file_server, tmp_path):
    firmware = b"evcp firmware for 2.0.1 " * 500
    (file_server.root / "fw.bin").write_bytes(firmware)
    installed = tmp_path / "installed.bin"
    # The firmware's path is appended to the command: the script copies it (argv[2]) to argv[1].
    command = json.dumps([sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[2], sys.argv[1])",
                          str(installed)])
    charger = start_201(start_charger, extra=f"[firmware]\ninstall_command = {command}\n")
    pid = charger.process.pid
    now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    answer = csms.call("UpdateFirmware", {"requestId": 41, "firmware": {
        "location": file_server.http_url + "/fw.bin", "retrieveDateTime": now}})
    assert answer["payload"]["status"] == "Accepted", answer
    wait_until(lambda: "Installed" in statuses(csms, "FirmwareStatusNotification", 41), 20, "Installed")
    assert statuses(csms, "FirmwareStatusNotification", 41) == ["Downloading", "Downloaded", "Installing",
                                                                 "Installed"]
    assert installed.read_bytes() == firmware
    boots = wait_until(lambda: len(b := csms.sent_by_charger("BootNotification")) == 2 and b, 20,
                       "the new program boots")
    assert boots[1]["reason"] == "FirmwareUpdate"
    assert charger.process.pid == pid and charger.process.poll() is None, "the same process, the same unit"
    assert not charger.connector()["relay_closed"]
