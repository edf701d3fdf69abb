"""Blocks A, M, L and N of the OCPP 2.0.1 station against the loopback 2.0.1 CSMS (every message
schema-checked on both sides) over the bench's simulated hardware: security events, firmware
update and log upload over a real local HTTP file server, certificates made here with their own
keys, security profiles over real TLS. Named after the OCPP 2.0.1 test cases they follow."""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import sys
import tarfile
from dataclasses import replace

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from evcp.bench import bench_config
from evcp.bench.files import FileServer
from evcp.ocpp.security import basic_authorization, parse_basic_authorization
from evcp.runtime.app import Charger

from tests.ocpp.test_certificates import Keyed
from tests.ocpp.test_certificates import make_certificate as make_certificate_at

from .csms import Csms

STATION = "CP-BENCH-01"
FIRMWARE = b"\x7fELF evcp firmware image " * 4000
PASSWORD = "installer-password-1"
NEW_PASSWORD = "a-new-password-from-the-csms"


# --- certificates made for the tests (valid around the real clock: the station's is real) -----


def make_certificate(common_name: str, **options) -> Keyed:
    """A certificate valid around the real clock (the station's clock is real)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return make_certificate_at(common_name, not_before=now - datetime.timedelta(days=1),
                               not_after=now + datetime.timedelta(days=30), **options)


@pytest.fixture(scope="module")
def manufacturer():
    root = make_certificate("Manufacturer Root CA")
    signer = make_certificate("Firmware Signer", issuer=root, ca=False,
                              key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return root, signer


def signature(signer: Keyed, data: bytes) -> str:
    return base64.b64encode(signer.key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


# --- the station, the CSMS and the file server ----------------------------------------------


@pytest.fixture
async def files(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "fw.bin").write_bytes(FIRMWARE)
    (root / "logs").mkdir()
    async with FileServer(root) as server:
        yield server


@pytest.fixture
async def start_station(tmp_path):
    """``await start_station(url, **ocpp)``: a bench station speaking 2.0.1 to ``url``, its state in
    tmp_path/state (shared by successive starts), firmware installed by copying it to
    tmp_path/installed.bin; ``ocpp`` replaces [ocpp] settings."""
    running: list[asyncio.Task] = []
    installed = tmp_path / "installed.bin"
    copy = "import shutil, sys; shutil.copyfile(sys.argv[2], sys.argv[1])"

    async def start(url: str, **ocpp) -> Charger:
        config = bench_config(tmp_path / "state", csms_url=url, api_port=0, version="2.0.1")
        config = replace(config, ocpp=replace(config.ocpp, reconnect_min_s=0.2,
                                              reconnect_max_s=1.0, **ocpp),
                         firmware=replace(config.firmware,
                                          install_command=(sys.executable, "-c", copy, str(installed))))
        charger = Charger(config)
        charger.task = asyncio.create_task(charger.run())
        running.append(charger.task)
        await asyncio.wait_for(charger.started.wait(), 10)
        return charger

    start.installed = installed
    yield start
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def registered(charger, csms: Csms) -> None:
    await csms.wait_for(lambda: charger.controller and charger.controller.adapter.registration == "Accepted"
                        or None)


async def stop(charger) -> None:
    charger.task.cancel()
    await asyncio.gather(charger.task, return_exceptions=True)


def security_events(csms: Csms, kind: str | None = None) -> list[dict]:
    return [e for e in csms.messages("SecurityEventNotification") if kind is None or e["type"] == kind]


def statuses(csms: Csms, action: str) -> list[tuple[str, int | None]]:
    return [(m["status"], m.get("requestId")) for m in csms.messages(action)]


async def unused_url() -> str:
    closed = Csms()
    await closed.start()
    url = closed.url
    await closed.stop()
    return url


# --- A04 SecurityEventNotification -------------------------------------------------------------


async def test_tc_a_04_security_events_of_an_offline_station_survive_a_restart_and_arrive_in_order(
        csms, start_station):
    offline = await start_station(await unused_url())
    await asyncio.sleep(0.3)
    offline.controller.adapter.security_event("TamperDetectionActivated", "enclosure opened")
    await stop(offline)
    queued_at = datetime.datetime.now(datetime.timezone.utc)

    charger = await start_station(csms.url)
    await registered(charger, csms)
    events = await csms.wait_for(lambda: len(security_events(csms)) >= 3 and security_events(csms))
    assert [e["type"] for e in events] == ["StartupOfTheDevice", "TamperDetectionActivated", "StartupOfTheDevice"]
    assert events[1]["techInfo"] == "enclosure opened"
    assert datetime.datetime.fromisoformat(events[1]["timestamp"].replace("Z", "+00:00")) < queued_at
    queue = charger.controller.adapter.security.events.queue
    async with asyncio.timeout(5):
        while len(queue):  # the last answer is on its way back
            await asyncio.sleep(0.02)


async def test_tc_a_04_security_event_while_the_connection_is_down_is_delivered_after_reconnecting(
        csms, start_station):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    await csms.wait_for(lambda: security_events(csms, "StartupOfTheDevice"))
    adapter = charger.controller.adapter
    async with asyncio.timeout(5):
        while len(adapter.security.events.queue):
            await asyncio.sleep(0.02)
    await csms.session._connection.close()
    async with asyncio.timeout(5):
        while adapter.online:
            await asyncio.sleep(0.01)
    adapter.security_event("SettingSystemTime", "clock corrected by +3.0 s")
    assert len(adapter.security.events.queue) == 1
    delivered = await csms.wait_for(lambda: security_events(csms, "SettingSystemTime"))
    assert csms.connections == 2 and len(delivered) == 1
    assert "+3.0 s" in delivered[0]["techInfo"]


async def test_security_events_are_written_to_the_security_log(csms, start_station, tmp_path):
    charger = await start_station(csms.url)
    charger.controller.adapter.security_event("TamperDetectionActivated", "enclosure opened")
    log = (tmp_path / "state" / "security.log").read_text()
    assert "StartupOfTheDevice" in log and "TamperDetectionActivated enclosure opened" in log


# --- L01/L02 UpdateFirmware ----------------------------------------------------------------------


async def install_manufacturer_root(csms: Csms, root: Keyed) -> None:
    answer = await csms.session.send("InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                                            "certificate": root.pem})
    assert answer == {"status": "Accepted"}


def firmware_request(files: FileServer, request_id: int, **firmware) -> dict:
    return {"requestId": request_id, "retries": 1, "retryInterval": 1,
            "firmware": {"location": f"{files.http_url}/fw.bin", "retrieveDateTime": "2020-01-01T00:00:00Z",
                         **firmware}}


async def test_tc_l_01_secure_firmware_update_is_verified_installed_and_the_station_restarts(
        csms, start_station, files, manufacturer):
    root, signer = manufacturer
    charger = await start_station(csms.url)
    await registered(charger, csms)
    await install_manufacturer_root(csms, root)
    answer = await csms.session.send("UpdateFirmware", firmware_request(
        files, 7, signingCertificate=signer.pem, signature=signature(signer, FIRMWARE)))
    assert answer == {"status": "Accepted"}
    await csms.wait_for(lambda: ("Installed", 7) in statuses(csms, "FirmwareStatusNotification"))
    assert statuses(csms, "FirmwareStatusNotification") == [
        ("Downloading", 7), ("Downloaded", 7), ("SignatureVerified", 7), ("Installing", 7), ("Installed", 7)]
    assert start_station.installed.read_bytes() == FIRMWARE
    await asyncio.wait_for(charger.task, 15)  # the controller restarts into the new program
    assert charger.controller.new_program
    assert not charger.hardware.connectors[0].relay.is_closed

    boots = len(csms.messages("BootNotification"))
    restarted = await start_station(csms.url)
    await registered(restarted, csms)
    assert csms.messages("BootNotification")[boots]["reason"] == "FirmwareUpdate"
    await csms.wait_for(lambda: security_events(csms, "FirmwareUpdated"))


async def test_tc_l_01_firmware_with_an_invalid_signature_is_not_installed(csms, start_station, files, manufacturer):
    root, signer = manufacturer
    charger = await start_station(csms.url)
    await registered(charger, csms)
    await install_manufacturer_root(csms, root)
    answer = await csms.session.send("UpdateFirmware", firmware_request(
        files, 8, signingCertificate=signer.pem, signature=signature(signer, b"another image")))
    assert answer == {"status": "Accepted"}
    await csms.wait_for(lambda: ("InvalidSignature", 8) in statuses(csms, "FirmwareStatusNotification"))
    assert statuses(csms, "FirmwareStatusNotification") == [("Downloading", 8), ("Downloaded", 8),
                                                             ("InvalidSignature", 8)]
    await csms.wait_for(lambda: security_events(csms, "InvalidFirmwareSignature"))
    assert not start_station.installed.exists()
    assert not charger.task.done()


async def test_tc_l_01_untrusted_signing_certificate_is_invalid_certificate(csms, start_station, files, manufacturer):
    _, signer = manufacturer
    charger = await start_station(csms.url)
    await registered(charger, csms)
    answer = await csms.session.send("UpdateFirmware", firmware_request(
        files, 9, signingCertificate=signer.pem, signature=signature(signer, FIRMWARE)))
    assert answer == {"status": "InvalidCertificate"}  # no ManufacturerRootCertificate installed
    await csms.wait_for(lambda: security_events(csms, "InvalidFirmwareSigningCertificate"))
    assert files.requests == [] and not csms.messages("FirmwareStatusNotification")


async def test_tc_l_01_download_retried_then_download_failed(csms, start_station, files):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    request = firmware_request(files, 10)
    request["firmware"]["location"] = f"{files.http_url}/missing.bin"
    assert (await csms.session.send("UpdateFirmware", request)) == {"status": "Accepted"}
    await csms.wait_for(lambda: ("DownloadFailed", 10) in statuses(csms, "FirmwareStatusNotification"), timeout=15)
    assert statuses(csms, "FirmwareStatusNotification") == [("Downloading", 10), ("DownloadFailed", 10)]
    assert [served.status for served in files.requests] == [404, 404]  # 1 + retries attempts


async def test_tc_l_02_firmware_without_signature_is_installed_with_request_ids(csms, start_station, files):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    assert (await csms.session.send("UpdateFirmware", firmware_request(files, 11))) == {"status": "Accepted"}
    await csms.wait_for(lambda: ("Installed", 11) in statuses(csms, "FirmwareStatusNotification"))
    assert statuses(csms, "FirmwareStatusNotification") == [
        ("Downloading", 11), ("Downloaded", 11), ("Installing", 11), ("Installed", 11)]
    assert start_station.installed.read_bytes() == FIRMWARE


async def test_tc_l_signature_without_signing_certificate_is_rejected(csms, start_station, files):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    answer = await csms.session.send("UpdateFirmware", firmware_request(files, 12, signature="c2lnbmF0dXJl"))
    assert answer == {"status": "Rejected"}
    assert files.requests == []


async def test_tc_l_firmware_waits_for_the_transaction_to_end_before_installing(csms, start_station, files):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag("04A1B2C3")
    relay = charger.hardware.connectors[0].relay
    async with asyncio.timeout(5):
        while not relay.is_closed:
            await asyncio.sleep(0.02)
    assert (await csms.session.send("UpdateFirmware", firmware_request(files, 13))) == {"status": "Accepted"}
    await csms.wait_for(lambda: ("Downloaded", 13) in statuses(csms, "FirmwareStatusNotification"))
    await asyncio.sleep(1.5)
    assert ("Installing", 13) not in statuses(csms, "FirmwareStatusNotification") and relay.is_closed
    bench.set_pilot(1, "A")
    await csms.wait_for(lambda: ("Installed", 13) in statuses(csms, "FirmwareStatusNotification"), timeout=15)
    ended = [e for e in csms.messages("TransactionEvent") if e["eventType"] == "Ended"]
    assert ended and ended[0]["transactionInfo"]["stoppedReason"] == "EVDisconnected"


# --- N01 GetLog ----------------------------------------------------------------------------------


def uploaded_members(files: FileServer) -> dict[str, bytes]:
    upload = files.uploads[-1]
    with tarfile.open(fileobj=io.BytesIO(upload.path.read_bytes()), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


async def test_tc_n_01_security_log_is_uploaded_with_the_request_id(csms, start_station, files):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    answer = await csms.session.send("GetLog", {"logType": "SecurityLog", "requestId": 21,
                                                "log": {"remoteLocation": f"{files.http_url}/logs"}})
    assert answer["status"] == "Accepted" and answer["filename"].startswith(f"{STATION}-SecurityLog-")
    await csms.wait_for(lambda: ("Uploaded", 21) in statuses(csms, "LogStatusNotification"))
    assert statuses(csms, "LogStatusNotification") == [("Uploading", 21), ("Uploaded", 21)]
    assert files.uploads[-1].path.name == answer["filename"]
    assert b"StartupOfTheDevice" in uploaded_members(files)["security.log"]


async def test_tc_n_01_diagnostics_log_holds_the_frame_trace(csms, start_station, files):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    answer = await csms.session.send("GetLog", {"logType": "DiagnosticsLog", "requestId": 22,
                                                "log": {"remoteLocation": f"{files.http_url}/logs"}})
    assert answer["status"] == "Accepted"
    await csms.wait_for(lambda: ("Uploaded", 22) in statuses(csms, "LogStatusNotification"))
    members = uploaded_members(files)
    assert b"BootNotification" in members["ocpp-trace.log"] and "manifest.txt" in members


async def test_tc_n_01_upload_that_keeps_failing_is_upload_failure(csms, start_station, files):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    files.fail_next(2, status=503)
    answer = await csms.session.send("GetLog", {"logType": "SecurityLog", "requestId": 23, "retries": 1,
                                                "retryInterval": 1,
                                                "log": {"remoteLocation": f"{files.http_url}/logs"}})
    assert answer["status"] == "Accepted"
    await csms.wait_for(lambda: ("UploadFailure", 23) in statuses(csms, "LogStatusNotification"), timeout=15)
    assert statuses(csms, "LogStatusNotification") == [("Uploading", 23), ("UploadFailure", 23)]
    assert files.uploads == []


async def test_tc_n_get_log_to_an_unsupported_location_is_rejected(csms, start_station):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    answer = await csms.session.send("GetLog", {"logType": "SecurityLog", "requestId": 24,
                                                "log": {"remoteLocation": "gopher://example.com/logs"}})
    assert answer == {"status": "Rejected"}


# --- F06 TriggerMessage of the statuses ---------------------------------------------------------


async def test_tc_f_06_triggered_firmware_and_log_status_are_idle_without_request_id(csms, start_station):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    for message in ("FirmwareStatusNotification", "LogStatusNotification"):
        assert (await csms.session.send("TriggerMessage", {"requestedMessage": message})) == {"status": "Accepted"}
        await csms.wait_for(lambda: csms.messages(message))
        assert csms.messages(message) == [{"status": "Idle"}]


# --- M03-M05 certificates -------------------------------------------------------------------------


async def test_tc_m_05_m_03_m_04_install_list_and_delete_a_csms_root(csms, start_station):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    send = csms.session.send
    root = make_certificate("CSMS Root CA")
    assert (await send("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                              "certificate": root.pem})) == {"status": "Accepted"}
    assert (await send("InstallCertificate", {"certificateType": "V2GRootCertificate",
                                              "certificate": root.pem})) == {"status": "Rejected"}
    listed = await send("GetInstalledCertificateIds", {"certificateType": ["CSMSRootCertificate"]})
    assert listed["status"] == "Accepted"
    [entry] = listed["certificateHashDataChain"]
    assert entry["certificateType"] == "CSMSRootCertificate"
    assert entry["certificateHashData"]["serialNumber"] == format(root.certificate.serial_number, "x")
    assert (await send("GetInstalledCertificateIds", {"certificateType": ["ManufacturerRootCertificate"]})) \
        == {"status": "NotFound"}
    count = await send("GetVariables", {"getVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "CertificateEntries"}}]})
    assert count["getVariableResult"][0]["attributeValue"] == "1"
    assert (await send("DeleteCertificate", {"certificateHashData": entry["certificateHashData"]})) \
        == {"status": "Accepted"}
    assert (await send("DeleteCertificate", {"certificateHashData": entry["certificateHashData"]})) \
        == {"status": "NotFound"}
    assert (await send("GetInstalledCertificateIds", {})) == {"status": "NotFound"}


# --- A02/A03 the Charging Station certificate ---------------------------------------------------


async def test_tc_a_02_triggered_signing_request_and_signed_certificate(csms, start_station):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    send = csms.session.send
    assert (await send("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})) \
        == {"status": "Rejected"}  # no OrganizationName for the CSR yet
    answer = await send("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "OrganizationName"},
         "attributeValue": "Example CPO"}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert (await send("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})) \
        == {"status": "Accepted"}
    [request] = await csms.wait_for(lambda: csms.messages("SignCertificate"))
    assert request["certificateType"] == "ChargingStationCertificate"
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CPO"
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == STATION

    root = make_certificate("CSMS Root CA")
    assert (await send("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                              "certificate": root.pem})) == {"status": "Accepted"}
    stranger = make_certificate(STATION, issuer=make_certificate("Other CA"), public_key=csr.public_key(), ca=False)
    assert (await send("CertificateSigned", {"certificateChain": stranger.pem})) == {"status": "Rejected"}
    await csms.wait_for(lambda: security_events(csms, "InvalidChargingStationCertificate"))
    signed = make_certificate(STATION, issuer=root, public_key=csr.public_key(), ca=False)
    assert (await send("CertificateSigned", {"certificateChain": signed.pem,
                                             "certificateType": "ChargingStationCertificate"})) \
        == {"status": "Accepted"}
    client = charger.controller.adapter.security.certificates.client_certificate()
    assert client is not None and signed.pem in client[0].read_text()
    assert charger.controller.adapter.security.settings().client_cert_file == client[0]


async def test_tc_a_02_signing_request_without_answer_is_sent_again_with_a_doubled_wait(csms, start_station):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    answer = await csms.session.send("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": name}, "attributeValue": value}
        for name, value in (("OrganizationName", "Example CPO"), ("CertSigningWaitMinimum", "1"),
                            ("CertSigningRepeatTimes", "2"))]})
    assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
    loop = asyncio.get_running_loop()
    arrivals = []

    def requests():
        while len(arrivals) < len(csms.messages("SignCertificate")):
            arrivals.append(loop.time())
        return len(arrivals) >= 3

    assert (await csms.session.send("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})) \
        == {"status": "Accepted"}
    await csms.wait_for(requests, timeout=10)
    await asyncio.sleep(4.5)  # no fourth one: CertSigningRepeatTimes is 2
    requests()
    assert len(arrivals) == 3
    first, second = arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]
    assert first >= 0.9 and second >= 1.9, (first, second)  # CertSigningWaitMinimum, then doubled
    csrs = {m["csr"] for m in csms.messages("SignCertificate")}
    assert len(csrs) == 3, "each one with a new key"


# --- A00/A01 security profiles and the password -------------------------------------------------


class CheckingCsms(Csms):
    """A CSMS that answers the websocket upgrade 401 unless the Basic credentials are ``password``
    (A00 profile 1/2), or with a client certificate, and records each attempt's credentials."""

    def __init__(self, password: str | None = None, tls=None):
        super().__init__()
        self.password = password
        self.tls = tls
        self.attempts: list[tuple[str, bytes] | None] = []

    async def start(self) -> None:
        self._server = await websockets.serve(self._serve, "127.0.0.1", 0, subprotocols=self.subprotocols,
                                              process_request=self._check, ssl=self.tls)

    @property
    def url(self) -> str:
        port = self._server.sockets[0].getsockname()[1]
        return f"{'wss' if self.tls else 'ws'}://localhost:{port}/ocpp"

    def _check(self, connection, request):
        credentials = parse_basic_authorization(request.headers.get("Authorization"))
        self.attempts.append(credentials)
        if self.password is not None and credentials != (STATION, self.password.encode()):
            return connection.respond(401, "wrong credentials\n")
        return None


async def test_tc_a_01_basic_auth_password_is_write_only_and_checked(csms, start_station):
    charger = await start_station(csms.url)
    await registered(charger, csms)
    send = csms.session.send
    variable = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
    got = await send("GetVariables", {"getVariableData": [variable]})
    assert got["getVariableResult"][0]["attributeStatus"] == "Rejected"
    short = await send("SetVariables", {"setVariableData": [{**variable, "attributeValue": "too-short"}]})
    assert short["setVariableResult"][0]["attributeStatus"] == "Rejected"
    profile = await send("SetVariables", {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "SecurityProfile"}, "attributeValue": "3"}]})
    assert profile["setVariableResult"][0]["attributeStatus"] == "Rejected"  # ReadOnly


async def test_tc_a_01_new_password_is_used_from_a_new_connection_and_survives_a_restart(start_station):
    csms = CheckingCsms(PASSWORD)
    await csms.start()
    try:
        charger = await start_station(csms.url, security_profile=1, authorization_key=PASSWORD)
        await registered(charger, csms)
        csms.password = NEW_PASSWORD
        answer = await csms.session.send("SetVariables", {"setVariableData": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
             "attributeValue": NEW_PASSWORD}]})
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
        await csms.wait_for(lambda: csms.connections == 2 or None)
        assert csms.attempts[0] == (STATION, PASSWORD.encode()) and csms.attempts[-1] == (STATION, NEW_PASSWORD.encode())
        await csms.wait_for(lambda: security_events(csms, "ReconfigurationOfSecurityParameters"))
        await stop(charger)
        again = await start_station(csms.url, security_profile=1, authorization_key=PASSWORD)
        await csms.wait_for(lambda: csms.connections == 3 or None)
        assert csms.attempts[-1] == (STATION, NEW_PASSWORD.encode())
        await registered(again, csms)
    finally:
        await csms.stop()


async def test_tc_a_01_password_that_cannot_connect_falls_back_to_the_previous_one(start_station):
    csms = CheckingCsms(PASSWORD)
    await csms.start()
    try:
        charger = await start_station(csms.url, security_profile=1, authorization_key=PASSWORD)
        await registered(charger, csms)
        answer = await csms.session.send("SetVariables", {"setVariableData": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
             "attributeValue": NEW_PASSWORD}]})  # the CSMS goes on expecting the old one
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
        await csms.wait_for(lambda: csms.connections == 2 or None, timeout=30)
        refused = [a for a in csms.attempts if a == (STATION, NEW_PASSWORD.encode())]
        assert len(refused) == 3 and csms.attempts[-1] == (STATION, PASSWORD.encode())
        await csms.wait_for(lambda: [e for e in security_events(csms, "ReconfigurationOfSecurityParameters")
                                     if "set back" in e.get("techInfo", "")])
        await csms.wait_for(lambda: security_events(csms, "FailedToAuthenticateAtCsms"))
    finally:
        await csms.stop()


def server_context(cert, key, ca=None):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(cafile=ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture(scope="module")
def pki(make_pki):
    return make_pki(STATION)


async def test_tc_a_00_profile_2_tls_with_basic_auth(start_station, pki):
    csms = CheckingCsms(PASSWORD, tls=server_context(pki.localhost_cert, pki.localhost_key))
    await csms.start()
    try:
        charger = await start_station(csms.url, security_profile=2, authorization_key=PASSWORD, ca_file=pki.ca)
        await registered(charger, csms)
        assert csms.attempts == [(STATION, PASSWORD.encode())]
    finally:
        await csms.stop()


async def test_tc_a_00_profile_2_untrusted_csms_gets_no_credentials_and_is_reported_once_trusted(start_station, pki):
    tls = server_context(pki.self_cert, pki.self_key)
    csms = CheckingCsms(PASSWORD, tls=tls)
    await csms.start()
    try:
        charger = await start_station(csms.url, security_profile=2, authorization_key=PASSWORD, ca_file=pki.ca)
        await asyncio.sleep(1.0)
        assert csms.attempts == [] and charger.controller.adapter.registration is None
        tls.load_cert_chain(pki.localhost_cert, pki.localhost_key)  # the CSMS gets a certificate the station trusts
        await registered(charger, csms)
        [event] = await csms.wait_for(lambda: security_events(csms, "InvalidCsmsCertificate"), timeout=20)
        assert "self-signed certificate" in event["techInfo"]
        assert csms.attempts[-1] == (STATION, PASSWORD.encode())
    finally:
        await csms.stop()


async def test_tc_a_00_profile_3_client_certificate_without_password(start_station, pki):
    csms = CheckingCsms(tls=server_context(pki.localhost_cert, pki.localhost_key, ca=pki.ca))
    await csms.start()
    try:
        charger = await start_station(csms.url, security_profile=3, ca_file=pki.ca,
                                      client_cert_file=pki.client_cert, client_key_file=pki.client_key)
        await registered(charger, csms)
        assert csms.attempts == [None]  # no Basic credentials with profile 3
        assert charger.controller.adapter.device_model.get("SecurityCtrlr", "SecurityProfile") == "3"
    finally:
        await csms.stop()


def test_basic_auth_password_is_sent_as_text_never_as_hexadecimal():
    hex_looking = "4F43415F4F4354545F61646D696E5F74657374"
    header = basic_authorization(STATION, hex_looking, plain=True)
    assert parse_basic_authorization(header) == (STATION, hex_looking.encode())


async def test_tc_b_09_set_network_profile_and_its_priority(csms, start_station):
    charger = await start_station(csms.url, security_profile=1, authorization_key=PASSWORD)
    await registered(charger, csms)
    send = csms.session.send

    def data(profile: int, url: str = csms.url) -> dict:
        return {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url, "messageTimeout": 30,
                "securityProfile": profile, "ocppInterface": "Wired0"}

    assert (await send("SetNetworkProfile", {"configurationSlot": 1, "connectionData": data(0)})) \
        == {"status": "Rejected"}  # lower than the profile in use (A05)
    assert (await send("SetNetworkProfile", {"configurationSlot": 0, "connectionData": data(1)})) \
        == {"status": "Rejected"}  # the installer's slot
    assert (await send("SetNetworkProfile", {"configurationSlot": 1, "connectionData": data(2)})) \
        == {"status": "Rejected"}  # profile 2 needs wss://
    assert (await send("SetNetworkProfile", {"configurationSlot": 1, "connectionData": data(1)})) \
        == {"status": "Accepted"}

    def priority(value: str) -> dict:
        return {"setVariableData": [{"component": {"name": "OCPPCommCtrlr"},
                                     "variable": {"name": "NetworkConfigurationPriority"}, "attributeValue": value}]}

    assert (await send("SetVariables", priority("2,0")))["setVariableResult"][0]["attributeStatus"] == "Rejected"
    assert (await send("SetVariables", priority("1,0")))["setVariableResult"][0]["attributeStatus"] == "Accepted"
    stored = charger.controller.store.load_document("ocpp201-network-profiles")
    assert stored == {"1": {"url": csms.url, "securityProfile": 1}}
