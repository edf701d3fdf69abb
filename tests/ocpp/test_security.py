"""Security whitepaper (OCPP 1.6, edition 2): connection parameters per profile, the security
keys (SecurityProfile, AuthorizationKey), and secrets kept out of the trace and the logs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from evcp.config import loads
from evcp.core.model import Settings
from evcp.ocpp16 import adapter as adapter_module
from evcp.ocpp16.adapter import Ocpp16Adapter
from evcp.ocpp16.configuration import Configuration, apply_installer_settings
from evcp.ocpp.trace import FrameTrace, RedactingLogger, redact
from evcp.ocpp.outbox import MAX_QUEUED_SECURITY_EVENTS
from evcp.ocpp.security import (
    SecuritySettings,
    SecuritySettingsError,
    authorization_key_problem,
    basic_auth_password,
    basic_authorization,
    classify_failure,
    connection_parameters,
    parse_basic_authorization,
)

URL = "ws://csms.example:9000/ocpp/CP-1"
TLS_URL = "wss://csms.example:9000/ocpp/CP-1"
#: OCTT TC_073's AuthorizationKey: the hex of "OCA_OCTT_admin_test".
TC_073_KEY = "4F43415F4F4354545F61646D696E5F74657374"
PLAIN_KEY = "s3cr3t-password-16"


# --- the AuthorizationKey -------------------------------------------------------------------


@pytest.mark.parametrize("key", [
    TC_073_KEY, TC_073_KEY.lower(), "00" * 16, "ff" * 20,          # hex of 16..20 bytes
    "a" * 16, "0123456789abcdef0123", "pass:word with sp",           # 16..20 characters
])
def test_authorization_key_forms_of_the_whitepaper_are_accepted(key):
    assert authorization_key_problem(key) is None


@pytest.mark.parametrize("key", ["x" * 15, "x" * 21, "0" * 31, "0" * 33, "0" * 42, ""])
def test_authorization_key_of_another_length_is_refused(key):
    assert "16 to 20 characters, or 32 to 40 hexadecimal digits" in authorization_key_problem(key)


def test_hex_key_is_the_password_bytes_and_plain_key_the_password_itself():
    assert basic_auth_password(TC_073_KEY) == b"OCA_OCTT_admin_test"
    assert basic_auth_password("ab" * 20) == bytes([0xAB] * 20)
    assert basic_auth_password(PLAIN_KEY) == PLAIN_KEY.encode()


def test_basic_header_is_charge_point_id_colon_password_in_base64():
    header = basic_authorization("CP-1", TC_073_KEY)
    assert header == "Basic " + base64.b64encode(b"CP-1:OCA_OCTT_admin_test").decode()
    assert parse_basic_authorization(header) == ("CP-1", b"OCA_OCTT_admin_test")
    binary = basic_authorization("CP-1", "00ff" * 8)
    assert parse_basic_authorization(binary) == ("CP-1", bytes([0, 255] * 8))
    assert parse_basic_authorization("Bearer abc") is None
    assert parse_basic_authorization("Basic !!!") is None


# --- connection parameters per profile -------------------------------------------------------


def test_profile_0_sends_no_credentials():
    parameters = connection_parameters(URL, "CP-1", SecuritySettings(0, PLAIN_KEY))
    assert parameters.ssl_context is None and parameters.headers == {}


def test_profile_1_is_basic_auth_over_ws():
    parameters = connection_parameters(URL, "CP-1", SecuritySettings(1, PLAIN_KEY))
    assert parameters.ssl_context is None
    assert parameters.headers == {"Authorization": basic_authorization("CP-1", PLAIN_KEY)}
    assert PLAIN_KEY not in repr(parameters)


def test_profile_2_is_verified_tls_1_2_or_later_and_basic_auth():
    parameters = connection_parameters(TLS_URL, "CP-1", SecuritySettings(2, TC_073_KEY))
    context = parameters.ssl_context
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.check_hostname is True and context.verify_mode == ssl.CERT_REQUIRED
    assert parameters.headers["Authorization"] == basic_authorization("CP-1", TC_073_KEY)


def test_certificate_verification_cannot_be_turned_off():
    names = {field.name for field in dataclasses.fields(SecuritySettings)}
    assert names == {"profile", "authorization_key", "ca_file", "client_cert_file", "client_key_file", "extra_ca_file",
                     "plain_password"}
    for profile in (0, 1, 2):
        context = connection_parameters(TLS_URL, "CP-1", SecuritySettings(profile, PLAIN_KEY)).ssl_context
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("settings, url, names", [
    (SecuritySettings(2, PLAIN_KEY), URL, ["security profile 2", "wss://", "ocpp.csms_url"]),
    (SecuritySettings(3), URL, ["security profile 3", "wss://", "ocpp.csms_url"]),
    (SecuritySettings(1), URL, ["security profile 1", "ocpp.authorization_key", "AuthorizationKey"]),
    (SecuritySettings(2), TLS_URL, ["security profile 2", "ocpp.authorization_key"]),
    (SecuritySettings(1, "short"), URL, ["AuthorizationKey", "16 to 20 characters"]),
    (SecuritySettings(3), TLS_URL, ["ocpp.client_cert_file", "ocpp.client_key_file"]),
    (SecuritySettings(2, PLAIN_KEY, ca_file=Path("/nonexistent/ca.pem")), TLS_URL, ["ocpp.ca_file"]),
    (SecuritySettings(4), URL, ["SecurityProfile 4"]),
])
def test_inconsistent_settings_are_errors_naming_the_setting(settings, url, names):
    with pytest.raises(SecuritySettingsError) as raised:
        connection_parameters(url, "CP-1", settings)
    for name in names:
        assert name in str(raised.value)
    assert "short" not in str(raised.value), "the password is never shown"


# --- with certificates -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(make_pki):
    return make_pki("CP-1")


def test_profile_3_loads_the_client_certificate_and_sends_no_password(pki):
    settings = SecuritySettings(3, PLAIN_KEY, pki.ca, pki.client_cert, pki.client_key)
    parameters = connection_parameters(TLS_URL, "CP-1", settings)
    assert parameters.headers == {}
    assert parameters.ssl_context.get_ca_certs()[0]["subject"] == ((("commonName", "evcp test CA"),),)


def test_client_key_that_does_not_match_its_certificate_is_named(pki):
    settings = SecuritySettings(3, "", pki.ca, pki.client_cert, pki.other_key)
    with pytest.raises(SecuritySettingsError, match="ocpp.client_cert_file / ocpp.client_key_file"):
        connection_parameters(TLS_URL, "CP-1", settings)


def test_unreadable_client_key_is_named(pki, tmp_path):
    settings = SecuritySettings(3, "", pki.ca, pki.client_cert, tmp_path / "missing.key")
    with pytest.raises(SecuritySettingsError, match="ocpp.client_key_file: cannot read"):
        connection_parameters(TLS_URL, "CP-1", settings)


async def _handshake_error(pki, cert: Path, key: Path) -> BaseException:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    async def handler(websocket):
        await websocket.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"wss://localhost:{port}/ocpp/CP-1"
        parameters = connection_parameters(url, "CP-1", SecuritySettings(2, PLAIN_KEY, pki.ca))
        try:
            async with connect(url, ssl=parameters.ssl_context, additional_headers=parameters.headers,
                               proxy=None, open_timeout=5):
                return AssertionError("connected")
        except Exception as error:  # noqa: BLE001 - the error is the result
            return error


async def test_tls_failures_are_told_by_their_reason(pki):
    mismatch = classify_failure(await _handshake_error(pki, pki.other_cert, pki.other_key), 2)
    assert mismatch.event_type == "InvalidCentralSystemCertificate"
    assert "hostname mismatch" in mismatch.reason and "localhost" in mismatch.reason
    unknown = classify_failure(await _handshake_error(pki, pki.self_cert, pki.self_key), 2)
    assert unknown.event_type == "InvalidCentralSystemCertificate"
    assert "self-signed certificate" in unknown.reason
    assert isinstance(await _handshake_error(pki, pki.localhost_cert, pki.localhost_key), AssertionError)


def test_refused_credentials_are_failed_authentication():
    error = websockets.InvalidStatus(Response(401, "Unauthorized", Headers()))
    failure = classify_failure(error, 1)
    assert failure.event_type == "FailedToAuthenticateAtCsms"
    assert "HTTP 401 (credentials refused)" in failure.reason
    assert classify_failure(websockets.InvalidStatus(Response(503, "Unavailable", Headers())), 1).event_type is None


# --- the keys ----------------------------------------------------------------------------------


@pytest.fixture
def keys() -> Configuration:
    return Configuration(number_of_connectors=1)


def test_security_keys_and_their_accessibility(keys):
    entries = {entry["key"]: entry for entry in keys.get_configuration()[0]}
    assert entries["SecurityProfile"] == {"key": "SecurityProfile", "readonly": False, "value": "0"}
    assert entries["AuthorizationKey"]["readonly"] is False
    assert entries["CpoName"]["readonly"] is False
    assert entries["AdditionalRootCertificateCheck"] == {
        "key": "AdditionalRootCertificateCheck", "readonly": True, "value": "false"}


def test_tc_083_higher_security_profile_accepted(keys):
    assert keys.change("SecurityProfile", "1") == "Accepted"
    assert keys.change("SecurityProfile", "3") == "Accepted"
    assert keys.get("SecurityProfile") == 3


def test_tc_084_lower_security_profile_rejected(keys):
    keys.change("SecurityProfile", "2")
    assert keys.change("SecurityProfile", "1") == "Rejected"
    assert keys.change("SecurityProfile", "0") == "Rejected"
    assert keys.change("SecurityProfile", "2") == "Accepted", "the same profile again is no downgrade"
    assert keys.change("SecurityProfile", "4") == "Rejected"
    assert keys.get("SecurityProfile") == 2


def test_authorization_key_is_write_only(keys):
    assert keys.change("AuthorizationKey", TC_073_KEY) == "Accepted"
    everything, _ = keys.get_configuration()
    asked, _ = keys.get_configuration(["authorizationkey"])
    for entries in (everything, asked):
        [entry] = [e for e in entries if e["key"] == "AuthorizationKey"]
        assert entry["value"] == ""
    assert keys.get("AuthorizationKey") == TC_073_KEY


def test_invalid_authorization_key_rejected_without_showing_it(keys):
    assert keys.change("AuthorizationKey", "tooshort") == "Rejected"
    keys.change("SecurityProfile", "1")
    keys.change("AuthorizationKey", PLAIN_KEY)
    assert keys.change("AuthorizationKey", "") == "Rejected", "profile 1 cannot do without a password"
    with pytest.raises(ValueError) as raised:
        keys.set_internal("AuthorizationKey", "not-a-good-key-because-too-long")
    assert "not-a-good-key" not in str(raised.value)


def test_authorization_key_survives_a_restart(keys):
    keys.change("AuthorizationKey", TC_073_KEY)
    saved = keys.snapshot()
    assert saved["AuthorizationKey"] == TC_073_KEY
    restarted = Configuration(1)
    assert restarted.restore(saved) == []
    assert restarted.get("AuthorizationKey") == TC_073_KEY


@pytest.mark.parametrize("key, where", [("SecurityProfile", "ocpp.security_profile"),
                                        ("AuthorizationKey", "ocpp.authorization_key")])
def test_security_keys_come_from_their_own_config_keys(key, where):
    with pytest.raises(ValueError, match=f"set {where} instead"):
        Configuration(1, {key: "1"})


def test_new_security_values_on_trial_until_confirmed_or_put_back(keys):
    keys.change("SecurityProfile", "1")
    keys.confirm_trial()
    keys.change("AuthorizationKey", PLAIN_KEY)
    keys.change("SecurityProfile", "2")
    assert keys.on_trial() == ["AuthorizationKey", "SecurityProfile"]
    assert keys.fall_back() == ["AuthorizationKey", "SecurityProfile"]
    assert (keys.get("SecurityProfile"), keys.get("AuthorizationKey")) == (1, "")
    assert keys.snapshot() == {"SecurityProfile": "1"}, "the value the central system had set stays saved"
    assert keys.on_trial() == []
    keys.change("SecurityProfile", "2")
    assert keys.confirm_trial() == ["SecurityProfile"]
    assert keys.fall_back() == [] and keys.get("SecurityProfile") == 2


def _ocpp(**settings) -> SimpleNamespace:
    return SimpleNamespace(**{"security_profile": 0, "authorization_key": None, "client_key_file": None,
                              **settings})


def test_installer_settings_fill_the_keys_the_central_system_did_not_set(keys):
    assert apply_installer_settings(keys, _ocpp(security_profile=1, authorization_key=PLAIN_KEY)) == []
    assert (keys.get("SecurityProfile"), keys.get("AuthorizationKey")) == (1, PLAIN_KEY)
    assert keys.snapshot() == {}, "installer values are not the central system's"


def test_central_system_values_win_but_the_installer_may_raise_the_profile(keys):
    keys.change("SecurityProfile", "2")
    keys.change("AuthorizationKey", TC_073_KEY)
    apply_installer_settings(keys, _ocpp(security_profile=1, authorization_key=PLAIN_KEY))
    assert (keys.get("SecurityProfile"), keys.get("AuthorizationKey")) == (2, TC_073_KEY)
    apply_installer_settings(keys, _ocpp(security_profile=3))
    assert keys.get("SecurityProfile") == 3


def test_bad_installer_key_is_reported_without_its_value(keys):
    [problem] = apply_installer_settings(keys, _ocpp(security_profile=0, authorization_key="bad-key-x"))
    assert problem.startswith("ocpp.authorization_key:") and "bad-key-x" not in problem
    assert keys.get("AuthorizationKey") == ""


# --- secrets stay out of the trace and the logs ------------------------------------------------


@pytest.mark.parametrize("frame", [
    f'[2,"x","ChangeConfiguration",{{"key":"AuthorizationKey","value":"{TC_073_KEY}"}}]',
    f'[2,"x","ChangeConfiguration",{{"value" : "{TC_073_KEY}", "key" : "authorizationKEY"}}]',
    f'[3,"x",{{"configurationKey":[{{"key":"AuthorizationKey","readonly":false,"value":"{TC_073_KEY}"}}]}}]',
    f'[4,"x","FormationViolation","",{{"cause":"{{\'key\': \'AuthorizationKey\', \'value\': \'{TC_073_KEY}\'}}"}}]',
    f"<Call - action=ChangeConfiguration, payload={{'key': 'AuthorizationKey', 'value': '{TC_073_KEY}'}}>",
    f'[2,"x","ChangeConfiguration",{{"key":"\\u0041uthorizationKey","value":"{TC_073_KEY}"}}]',
])
def test_authorization_key_values_never_reach_the_trace(frame):
    trace = FrameTrace()
    trace.record("in", frame)
    _, [recorded] = trace.since(0)
    assert TC_073_KEY not in recorded["frame"] and "********" in recorded["frame"]


def test_other_frames_are_traced_unchanged():
    frame = '[2, "x", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}]'
    assert redact(frame) == frame


def test_library_log_lines_are_redacted_and_lose_their_traceback(caplog):
    logger = RedactingLogger(logging.getLogger("ocpp.test"), {})
    with caplog.at_level(logging.INFO, logger="ocpp.test"):
        try:
            raise ValueError(f"payload {TC_073_KEY}")
        except ValueError:
            logger.exception("Error while handling request '%s'",
                             f"{{'key': 'AuthorizationKey', 'value': '{TC_073_KEY}'}}")
        logger.info("%s: send %s", "CP-1", '[3,"x",{}]')
    assert TC_073_KEY not in caplog.text
    assert caplog.records[0].exc_info is None
    assert caplog.records[1].getMessage() == 'CP-1: send [3,"x",{}]'


# --- the adapter -------------------------------------------------------------------------------


def adapter_for(tmp_path, ocpp: str, url: str = "ws://csms.example:9000/ocpp") -> Ocpp16Adapter:
    config = loads(f"""
[charge_point]
id = "CP-1"
[ocpp]
csms_url = "{url}"
{ocpp}
[hardware]
backend = "mock"
[storage]
state_dir = "{tmp_path / 'state'}"
""", tmp_path / "evcp.toml")
    controller = SimpleNamespace(settings=Settings(), apply_settings=lambda settings: None)
    return Ocpp16Adapter(config, controller=controller, configuration=Configuration(1))


def taken_events(adapter: Ocpp16Adapter) -> list[dict]:
    events = list(adapter.security_events)
    while (queued := adapter.security_events.head()) is not None:
        adapter.security_events.done(queued)
    return events


async def test_startup_is_a_security_event_waiting_for_the_connection(tmp_path):
    adapter = adapter_for(tmp_path, "")
    [event] = taken_events(adapter)
    assert event["type"] == "StartupOfTheDevice" and event["timestamp"].endswith("Z")
    assert len(adapter.outbox) == 0, "transaction messages are not held up by security events"


async def test_security_events_waiting_offline_are_bounded(tmp_path, caplog):
    adapter = adapter_for(tmp_path, "")
    for n in range(MAX_QUEUED_SECURITY_EVENTS + 10):
        adapter.security_event("SettingSystemTime", f"clock set {n}")
    events = list(adapter.security_events)
    assert len(adapter.security_events) == len(events) == MAX_QUEUED_SECURITY_EVENTS
    assert events[0]["tech_info"] == "clock set 10", "the oldest are dropped (StartupOfTheDevice first)"
    assert events[-1]["tech_info"] == f"clock set {MAX_QUEUED_SECURITY_EVENTS + 9}"
    assert "security event StartupOfTheDevice dropped" in caplog.text


async def test_raising_the_profile_needs_its_prerequisites(tmp_path):
    adapter = adapter_for(tmp_path, f'security_profile = 1\nauthorization_key = "{PLAIN_KEY}"')
    assert adapter.change_configuration("SecurityProfile", "2") == "Rejected", "ws:// cannot do TLS"
    assert adapter.change_configuration("SecurityProfile", "0") == "Rejected", "TC_084"
    assert adapter.configuration.get("SecurityProfile") == 1


async def test_accepted_security_change_is_reported_and_reconnects(tmp_path, monkeypatch):
    monkeypatch.setattr(adapter_module, "RECONNECT_GRACE_S", 0)
    adapter = adapter_for(tmp_path, f'security_profile = 1\nauthorization_key = "{PLAIN_KEY}"')
    taken_events(adapter)
    closed = []
    adapter._websocket = object()
    adapter.link = SimpleNamespace(close_when_idle=lambda *args: closed.append(args) or asyncio.sleep(0))
    assert adapter.change_configuration("AuthorizationKey", TC_073_KEY) == "Accepted"
    [event] = taken_events(adapter)
    assert event["type"] == "ReconfigurationOfSecurityParameters"
    assert TC_073_KEY not in str(event)
    await adapter.reconnect_if_security_changed()
    assert closed and adapter._reconnect_requested
    await adapter.reconnect_if_security_changed()
    assert len(closed) == 1, "one change, one reconnect"


async def test_unchanged_value_does_not_reconnect(tmp_path):
    adapter = adapter_for(tmp_path, f'security_profile = 1\nauthorization_key = "{PLAIN_KEY}"')
    assert adapter.change_configuration("SecurityProfile", "1") == "Accepted"
    assert adapter._security_changed is False


async def test_password_the_profile_does_not_send_changes_nothing_on_the_connection(tmp_path):
    adapter = adapter_for(tmp_path, "security_profile = 0")
    assert adapter.change_configuration("AuthorizationKey", TC_073_KEY) == "Accepted"
    assert adapter._security_changed is False
    assert adapter.configuration.on_trial() == [], "nothing to try: it is not used yet"
    assert adapter.change_configuration("SecurityProfile", "1") == "Accepted", "the key is set first"
    assert adapter._security_changed is True
    assert adapter.configuration.on_trial() == ["SecurityProfile"]
