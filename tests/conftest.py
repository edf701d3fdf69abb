"""Fixtures shared by the unit and the integration tests."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
from hypothesis import strategies as st


def pytest_make_parametrize_id(config, val, argname):
    """Test ids of hostile input stay short and printable ASCII: a megabyte frame or a lone
    surrogate in an id would be sent to every parallel worker, and a surrogate cannot be."""
    if isinstance(val, (str, bytes)):
        text = val if isinstance(val, str) else val.decode("latin-1")
        if len(text) > 60 or not (text.isascii() and text.isprintable()):
            shown = ascii(val)
            return shown[:48] + (f"...{len(val)}" if len(shown) > 48 else "")
    return None


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
    return copy.deepcopy(CSMS_REQUEST_EXAMPLES)


#: One well-formed request of every action the OCPP 2.0.1 station handles from a CSMS (Part 2),
#: schema-valid: the material of the 2.0.1 hostile frames.
CSMS_REQUEST_EXAMPLES_2_0_1: dict[str, dict] = {
    "CertificateSigned": {"certificateChain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                          "certificateType": "ChargingStationCertificate"},
    "ChangeAvailability": {"operationalStatus": "Inoperative", "evse": {"id": 2}},
    "ClearCache": {},
    "ClearChargingProfile": {"chargingProfileId": 99},
    "DataTransfer": {"vendorId": "com.example", "messageId": "m", "data": "d"},
    "DeleteCertificate": {"certificateHashData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a",
                                                  "issuerKeyHash": "b", "serialNumber": "1"}},
    "GetBaseReport": {"requestId": 1, "reportBase": "SummaryInventory"},
    "GetChargingProfiles": {"requestId": 1, "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}},
    "GetCompositeSchedule": {"duration": 60, "evseId": 1},
    "GetInstalledCertificateIds": {"certificateType": ["CSMSRootCertificate"]},
    "GetLocalListVersion": {},
    "GetLog": {"log": {"remoteLocation": "ftp://127.0.0.1:9/"}, "logType": "SecurityLog", "requestId": 1},
    "GetTransactionStatus": {"transactionId": "no-such-transaction"},
    "GetVariables": {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"},
                                          "variable": {"name": "HeartbeatInterval"}}]},
    "InstallCertificate": {"certificateType": "ManufacturerRootCertificate", "certificate": "not a certificate"},
    "RequestStartTransaction": {"idToken": {"idToken": "OTHER001", "type": "Central"}, "remoteStartId": 7,
                                "evseId": 1},
    "RequestStopTransaction": {"transactionId": "no-such-transaction"},
    "ReserveNow": {"id": 7, "expiryDateTime": "2030-01-01T00:00:00Z",
                   "idToken": {"idToken": "OTHER001", "type": "ISO14443"}, "evseId": 1},
    "CancelReservation": {"reservationId": 7},
    "Reset": {"type": "Immediate"},
    "SendLocalList": {"versionNumber": 1, "updateType": "Differential", "localAuthorizationList": [
        {"idToken": {"idToken": "OTHER001", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}]},
    "SetChargingProfile": {"evseId": 2, "chargingProfile": {
        "id": 5, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "startSchedule": "2030-01-01T00:00:00Z",
                              "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}]}},
    "SetNetworkProfile": {"configurationSlot": 2, "connectionData": {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "ws://127.0.0.1:9/ocpp",
        "messageTimeout": 30, "securityProfile": 1, "ocppInterface": "Wired0"}},
    "SetVariables": {"setVariableData": [{"attributeValue": "300", "component": {"name": "OCPPCommCtrlr"},
                                          "variable": {"name": "HeartbeatInterval"}}]},
    "TriggerMessage": {"requestedMessage": "Heartbeat"},
    "UnlockConnector": {"evseId": 2, "connectorId": 1},
    "UpdateFirmware": {"requestId": 1, "firmware": {"location": "ftp://127.0.0.1:9/fw",
                                                    "retrieveDateTime": "2030-01-01T00:00:00Z"}},
}
"""Sent as they are to a station charging on EVSE 1 of 1, only Reset stops the session (as it
must): RequestStopTransaction names another transaction, and UnlockConnector,
ChangeAvailability and SetChargingProfile an EVSE that does not exist."""


@pytest.fixture
def csms_request_examples_2_0_1() -> dict[str, dict]:
    return copy.deepcopy(CSMS_REQUEST_EXAMPLES_2_0_1)


# --- what a hostile central system may send (hypothesis), for either OCPP-J version -------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
huge_strings = st.sampled_from([21, 51, 256, 10_001, 1_000_000]).map(lambda n: "X" * n)
unique_ids = st.uuids().map(str) | st.text(max_size=40) | st.integers() | huge_strings | json_values


def _places(payload) -> list[tuple[object, object]]:
    """Every (container, key or index) inside a payload."""
    found, pending = [], [payload]
    while pending:
        item = pending.pop()
        keys = list(item) if isinstance(item, dict) else range(len(item))
        for key in keys:
            found.append((item, key))
            if isinstance(item[key], (dict, list)):
                pending.append(item[key])
    return found


@st.composite
def fuzzed_payload(draw, example: dict):
    payload = copy.deepcopy(example)
    for _ in range(draw(st.integers(0, 3))):
        places = _places(payload)
        mutation = draw(st.sampled_from(["value", "huge", "drop", "add"] if places else ["add"]))
        if mutation == "add":
            container = draw(st.sampled_from([payload] + [c for c, _ in places if isinstance(c, dict)]))
            container[draw(st.text(max_size=12))] = draw(json_values)
            continue
        container, key = draw(st.sampled_from(places))
        if mutation == "drop":
            del container[key]
        else:
            container[key] = draw(huge_strings if mutation == "huge" else json_values)
    return payload


@st.composite
def hostile_frames(draw, examples: dict[str, dict]):
    """A frame of a hostile central system: a request of ``examples`` with its payload fuzzed
    (wrong types, missing and extra fields, strings up to 1 MB), a CALL with odd elements, an
    answer to nothing, any JSON, any text, or a CALL nested up to 200,000 deep."""
    kind = draw(st.sampled_from(["call", "call", "call", "odd call", "answer", "json", "text", "deep"]))
    if kind == "call":
        action = draw(st.sampled_from(sorted(examples)))
        return json.dumps([2, draw(st.uuids().map(str)), action, draw(fuzzed_payload(examples[action]))])
    if kind == "odd call":
        action = draw(st.sampled_from(sorted(examples) + ["BootNotification", "Heartbeat", "BrewCoffee"])
                      | json_values)
        elements = [2, draw(unique_ids), action, draw(json_values | st.dictionaries(st.text(max_size=8), json_values))]
        return json.dumps(elements[:draw(st.integers(0, 4))] + draw(st.lists(json_values, max_size=2)))
    if kind == "answer":
        elements = [draw(st.sampled_from([3, 4])), draw(unique_ids | st.just("nobody-asked")),
                    *draw(st.lists(json_values, max_size=4))]
        return json.dumps(elements)
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "deep":
        depth = draw(st.integers(10, 200_000))
        return '[2,"deep","DataTransfer",{"vendorId":"v","data":' + "[" * depth + "]" * depth + "}]"
    return draw(st.text(max_size=300))


@pytest.fixture(name="hostile_frames", scope="session")
def hostile_frames_fixture():
    """``data.draw(hostile_frames(examples))`` in a hypothesis test (see ``hostile_frames``)."""
    return hostile_frames


# --- a connector charging on fakes, for the adapters' receive-path tests ----------------------


class FakeRelay:
    def __init__(self):
        self.is_closed = False

    def open(self):
        self.is_closed = False

    def close(self):
        self.is_closed = True

    def feedback_closed(self):
        return None

    def release(self):
        self.open()


class FakePilot:
    offered = None
    diagnosis = None

    def note_contactor_switched(self):
        pass

    def read_state(self):
        return "C"

    def offer_current(self, amps):
        self.offered = amps

    def stop_offer(self):
        self.offered = None

    def release(self):
        pass


@pytest.fixture(scope="session")
def charging_devices():
    """``charging_devices()``: the ConnectorDevices of a relay that only records its state and a
    pilot in state C (an EV asking for charge), without a meter."""
    from evcp.runtime.hardware import ConnectorDevices

    return lambda: ConnectorDevices(FakeRelay(), FakePilot(), None)
