"""Fixtures shared by the unit and the integration tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pins():
    """gpiozero's MockFactory as the default pin factory for one test, every pin forgotten after."""
    from evcp.mocks.pins import mock_pins

    with mock_pins() as factory:
        yield factory


@pytest.fixture
def frames_in_log() -> Callable:
    """``frames_in_log(store)``: the frames of a StateStore's write-ahead log not yet checkpointed
    into its main file (what a damaged log could take)."""
    from evcp.storage import read_wal_layout

    def frames(store) -> int:
        layout = read_wal_layout(store.path.with_name(store.path.name + "-wal"))
        return layout.frames if layout is not None else 0

    return frames


@pytest.fixture(scope="session")
def make_pki(tmp_path_factory) -> Callable[[str], SimpleNamespace]:
    """``make_pki(charger_id)``: a test CA, certificates it signed for localhost, for another
    host and for the charger (CN = its id), and self-signed ones it does not know for localhost
    ("self") and the charger ("rogue"). Each attribute is ``<name>_cert`` / ``<name>_key``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: no test certificates")
    made: dict[str, SimpleNamespace] = {}

    def make(charger_id: str) -> SimpleNamespace:
        if charger_id in made:
            return made[charger_id]
        d = tmp_path_factory.mktemp("pki")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days",
                 "2", "-subj", "/CN=evcp test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

        def issue(name: str, common_name: str) -> None:
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                     "-subj", f"/CN={common_name}", cwd=d)
            (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{common_name}\nbasicConstraints=CA:FALSE\n")
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)

        def self_signed(name: str, common_name: str) -> None:
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                     f"{name}.pem", "-days", "2", "-subj", f"/CN={common_name}",
                     "-addext", f"subjectAltName=DNS:{common_name}", cwd=d)

        issue("localhost", "localhost")
        issue("other", "other.example")
        issue("client", charger_id)
        self_signed("self", "localhost")
        self_signed("rogue", charger_id)
        names = ("localhost", "other", "client", "self", "rogue")
        made[charger_id] = SimpleNamespace(dir=d, ca=d / "ca.pem", **{
            f"{name}_{part}": d / f"{name}.{ext}" for name in names for part, ext in (("cert", "pem"), ("key", "key"))})
        return made[charger_id]

    return make


#: One well-formed request of every action a central system sends to a charge point (OCPP 1.6
#: §6 and the security whitepaper): the material hostile frames are made of (wrong types,
#: missing and extra fields, huge strings).
CSMS_REQUEST_EXAMPLES: dict[str, dict] = {
    "CancelReservation": {"reservationId": 1},
    "CertificateSigned": {"certificateChain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
    "ChangeAvailability": {"connectorId": 2, "type": "Operative"},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "300"},
    "ClearCache": {},
    "ClearChargingProfile": {"id": 99},
    "DataTransfer": {"vendorId": "com.example", "messageId": "m", "data": "d"},
    "DeleteCertificate": {"certificateHashData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a",
                                                  "issuerKeyHash": "b", "serialNumber": "1"}},
    "ExtendedTriggerMessage": {"requestedMessage": "StatusNotification", "connectorId": 1},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 60},
    "GetConfiguration": {"key": ["HeartbeatInterval"]},
    "GetDiagnostics": {"location": "ftp://127.0.0.1:9/"},
    "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
    "GetLocalListVersion": {},
    "GetLog": {"log": {"remoteLocation": "ftp://127.0.0.1:9/"}, "logType": "SecurityLog", "requestId": 1},
    "InstallCertificate": {"certificateType": "ManufacturerRootCertificate", "certificate": "not a certificate"},
    "RemoteStartTransaction": {"idTag": "OTHER001", "connectorId": 1},
    "RemoteStopTransaction": {"transactionId": 999999},
    "ReserveNow": {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "OTHER001", "reservationId": 7},
    "Reset": {"type": "Soft"},
    "SendLocalList": {"listVersion": 1, "updateType": "Differential",
                      "localAuthorizationList": [{"idTag": "OTHER001", "idTagInfo": {"status": "Accepted"}}]},
    "SetChargingProfile": {"connectorId": 2, "csChargingProfiles": {
        "chargingProfileId": 5, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {
            "chargingRateUnit": "A", "startSchedule": "2030-01-01T00:00:00Z",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}},
    "SignedUpdateFirmware": {"requestId": 1, "firmware": {
        "location": "ftp://127.0.0.1:9/fw", "retrieveDateTime": "2030-01-01T00:00:00Z",
        "signingCertificate": "not a certificate", "signature": "c2ln"}},
    "TriggerMessage": {"requestedMessage": "Heartbeat"},
    "UnlockConnector": {"connectorId": 2},
    "UpdateFirmware": {"location": "ftp://127.0.0.1:9/fw", "retrieveDate": "2030-01-01T00:00:00Z"},
}
"""Sent as they are to a charger charging on connector 1 of 1, only Reset stops the session (as
it must): RemoteStopTransaction names another transaction, and UnlockConnector,
ChangeAvailability and SetChargingProfile a connector that does not exist."""


@pytest.fixture
def csms_request_examples() -> dict[str, dict]:
    import copy

    return copy.deepcopy(CSMS_REQUEST_EXAMPLES)
