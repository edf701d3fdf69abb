"""Security profiles 1-3 of the OCPP 1.6 security whitepaper between real processes: the charger
(`evcp run`) and the bench central system with TLS and HTTP Basic authentication, certificates
from a CA made by the test (OCTT TC_073, TC_078, TC_083, TC_084, TC_086, TC_087)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .conftest import free_port, stop_csms

pytestmark = pytest.mark.integration

CP = "CP-IT-01"
PASSWORD = "evcp-bench-pass-01"
#: OCTT TC_073's new AuthorizationKey: the hex of "OCA_OCTT_admin_test".
TC_073_KEY = "4F43415F4F4354545F61646D696E5F74657374"
TC_073_PASSWORD = "OCA_OCTT_admin_test"


@pytest.fixture(scope="module")
def pki(make_pki):
    return make_pki(CP)


def security(profile: int, key: str | None = None, ca: Path | None = None,
             cert: Path | None = None, cert_key: Path | None = None) -> str:
    """The [ocpp] lines of a charger with this security profile."""
    lines = [f"security_profile = {profile}"]
    for name, value in (("authorization_key", key), ("ca_file", ca), ("client_cert_file", cert),
                        ("client_key_file", cert_key)):
        if value is not None:
            lines.append(f'{name} = "{value}"')
    return "\n".join(lines)


def tls_server(pki, name: str, *more: str) -> list[str]:
    return ["--tls-cert", str(getattr(pki, f"{name}_cert")), "--tls-key", str(getattr(pki, f"{name}_key")), *more]


def url_of(bench) -> str:
    """The charger's URL for ``bench``: by name, so the certificate for localhost matches."""
    return bench.url.replace("127.0.0.1", "localhost") + "/ocpp"


def record(bench) -> dict:
    """The central system's record of the charger; KeyError before it was ever heard of."""
    for charger in bench.get("/chargers")["chargers"]:
        if charger["id"] == CP:
            return charger
    raise KeyError(CP)


def events(bench) -> dict[str, dict]:
    return {event["type"]: event for event in record(bench)["security_events"]}


def registered(charger) -> bool:
    return charger.status()["ocpp"]["registration"] == "Accepted" and charger.status()["ocpp"]["connected"]


def stop(charger) -> None:
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(10)


def assert_no_secret_written(charger, *secrets: str) -> None:
    trace = charger.get("/api/trace?since=0")["frames"]
    files = [charger.log_path.read_text(), (charger.config_path.parent / "state" / "ocpp-trace.log").read_text()]
    for secret in secrets:
        assert not any(secret in frame["frame"] for frame in trace), "secret in the trace API"
        assert not any(secret in text for text in files), "secret in a log file"


# --- profile 1: HTTP Basic authentication -------------------------------------------------------


def test_profile_1_wrong_password_is_refused_and_retried_the_right_one_connects(start_csms, start_charger,
                                                                                 wait_until):
    bench = start_csms("--basic-auth")
    bench.post("/policy", {"passwords": {CP: "not-the-password-1"}})
    charger = start_charger(ocpp=security(1, PASSWORD), csms_url=bench.url + "/ocpp", wait_online=False)
    wait_until(lambda: len(record(bench)["refused_handshakes"]) >= 2, 10, "two refused attempts")
    assert "refused the connection: HTTP 401 (credentials refused); check the AuthorizationKey (security " \
           "profile 1)" in charger.log_path.read_text()
    assert charger.process.poll() is None and not charger.status()["ocpp"]["connected"]

    bench.post("/policy", {"passwords": {CP: PASSWORD}})
    wait_until(lambda: registered(charger), 15, "connected with the right password")
    assert record(bench)["authenticated_by"] == "basic"
    failed = wait_until(lambda: events(bench).get("FailedToAuthenticateAtCsms"), 10, "the failure reported")
    assert "HTTP 401" in failed["tech_info"]
    assert "StartupOfTheDevice" in events(bench)
    assert_no_secret_written(charger, PASSWORD)


def test_tc_073_new_authorization_key_reconnects_with_the_new_password_and_survives_a_restart(
        start_csms, start_charger, wait_until):
    bench = start_csms("--basic-auth")
    bench.post("/policy", {"passwords": {CP: PASSWORD}})
    charger = start_charger(ocpp=security(1, PASSWORD), csms_url=bench.url + "/ocpp")

    bench.post("/policy", {"passwords": {CP: TC_073_PASSWORD}})
    answer = bench.call("ChangeConfiguration", {"key": "AuthorizationKey", "value": TC_073_KEY})
    assert answer["payload"] == {"status": "Accepted"}
    wait_until(lambda: (r := record(bench))["connection_count"] == 2 and r["connected"], 10, "reconnected")
    wait_until(lambda: registered(charger), 10, "online again")
    assert record(bench)["refused_handshakes"] == [], "the reconnect used the new password at once"
    wait_until(lambda: "ReconfigurationOfSecurityParameters" in events(bench), 10, "change reported")

    [entry] = bench.call("GetConfiguration", {"key": ["AuthorizationKey"]})["payload"]["configurationKey"]
    assert entry == {"key": "AuthorizationKey", "readonly": False, "value": ""}, "write-only"
    assert_no_secret_written(charger, TC_073_KEY, TC_073_PASSWORD, PASSWORD)

    stop(charger)
    restarted = start_charger(ocpp=security(1, PASSWORD), csms_url=bench.url + "/ocpp")
    assert registered(restarted)
    assert record(bench)["refused_handshakes"] == [], "the saved key, not the installer's, after a restart"


# --- profile 2: TLS and HTTP Basic authentication -------------------------------------------------


def test_tc_086_profile_2_trusts_a_certificate_for_its_host_signed_by_the_ca_file(pki, start_csms,
                                                                                  start_charger, wait_until):
    bench = start_csms(*tls_server(pki, "localhost", "--basic-auth"))
    bench.post("/policy", {"passwords": {CP: PASSWORD}})
    assert bench.url.startswith("wss://")
    charger = start_charger(ocpp=security(2, PASSWORD, ca=pki.ca), csms_url=url_of(bench))
    assert registered(charger)
    assert record(bench)["authenticated_by"] == "basic"
    wait_until(lambda: "StartupOfTheDevice" in events(bench), 10, "startup event")


def test_tc_078_certificate_for_another_host_is_refused_then_reported(pki, start_csms, start_charger, wait_until):
    port = free_port()
    impostor = start_csms(*tls_server(pki, "other", "--basic-auth"), listen=f"127.0.0.1:{port}")
    impostor.post("/policy", {"passwords": {CP: PASSWORD}})
    charger = start_charger(ocpp=security(2, PASSWORD, ca=pki.ca), csms_url=f"wss://localhost:{port}/ocpp",
                            wait_online=False)
    wait_until(lambda: "hostname mismatch" in charger.log_path.read_text(), 10, "mismatch logged")
    assert "TLS certificate verification failed: hostname mismatch (certificate is not valid for " \
           "'localhost')" in charger.log_path.read_text()
    assert impostor.get("/chargers")["chargers"] == [], "nothing was sent to it"
    stop_csms(impostor)

    genuine = start_csms(*tls_server(pki, "localhost", "--basic-auth"), listen=f"127.0.0.1:{port}")
    genuine.post("/policy", {"passwords": {CP: PASSWORD}})
    wait_until(lambda: registered(charger), 15, "connected to the genuine central system")
    event = wait_until(lambda: events(genuine).get("InvalidCentralSystemCertificate"), 10, "event")
    assert "hostname mismatch" in event["tech_info"]


def test_self_signed_certificate_missing_from_the_ca_file_is_refused(pki, start_csms, start_charger, wait_until):
    bench = start_csms(*tls_server(pki, "self", "--basic-auth"))
    bench.post("/policy", {"passwords": {CP: PASSWORD}})
    charger = start_charger(ocpp=security(2, PASSWORD, ca=pki.ca), csms_url=url_of(bench), wait_online=False)
    wait_until(lambda: "self-signed certificate" in charger.log_path.read_text(), 10, "refusal logged")
    assert not charger.status()["ocpp"]["connected"]
    assert bench.get("/chargers")["chargers"] == []


# --- migrating between profiles -------------------------------------------------------------------


def test_tc_083_tc_084_profile_raised_from_2_to_3_never_lowered(pki, start_csms, start_charger, wait_until):
    bench = start_csms(*tls_server(pki, "localhost", "--tls-client-ca", str(pki.ca), "--basic-auth"))
    bench.post("/policy", {"passwords": {CP: PASSWORD}})
    charger = start_charger(ocpp=security(2, PASSWORD, ca=pki.ca, cert=pki.client_cert, cert_key=pki.client_key),
                            csms_url=url_of(bench))
    assert record(bench)["authenticated_by"] == "basic"

    def change(value: str) -> str:
        return bench.call("ChangeConfiguration", {"key": "SecurityProfile", "value": value})["payload"]["status"]

    assert change("1") == "Rejected"  # TC_084
    assert change("3") == "Accepted"  # TC_083, then a hard reset right away as the OCTT sends it
    assert bench.call("Reset", {"type": "Hard"})["payload"] == {"status": "Accepted"}
    wait_until(lambda: len(bench.sent_by_charger("BootNotification")) == 2, 15, "BootNotification after the reset")
    wait_until(lambda: registered(charger), 10, "online after the reset")
    assert record(bench)["authenticated_by"] == "client-certificate"

    bench.post("/policy", {"passwords": {}})  # a connection with profile 2 would now be refused
    connections = record(bench)["connection_count"]
    bench.post("/disconnect", {"cp": CP})
    wait_until(lambda: (r := record(bench))["connection_count"] > connections and r["connected"], 10, "reconnected")
    assert record(bench)["authenticated_by"] == "client-certificate"
    assert record(bench)["refused_handshakes"] == [], "never back to profile 2"
    [entry] = bench.call("GetConfiguration", {"key": ["SecurityProfile"]})["payload"]["configurationKey"]
    assert entry["value"] == "3"
    assert change("2") == "Rejected"  # TC_084
    assert {"ResetOrReboot", "ReconfigurationOfSecurityParameters"} <= set(events(bench))


def test_raised_profile_that_cannot_connect_falls_back_to_the_previous_one(pki, start_csms, start_charger,
                                                                             wait_until):
    bench = start_csms(*tls_server(pki, "localhost", "--tls-client-ca", str(pki.ca), "--basic-auth"))
    bench.post("/policy", {"passwords": {CP: PASSWORD}})
    # The client certificate is one the central system's CA did not sign.
    charger = start_charger(ocpp=security(2, PASSWORD, ca=pki.ca, cert=pki.rogue_cert, cert_key=pki.rogue_key),
                            csms_url=url_of(bench))
    answer = bench.call("ChangeConfiguration", {"key": "SecurityProfile", "value": "3"})
    assert answer["payload"] == {"status": "Accepted"}
    wait_until(lambda: "back to the previous ones, SecurityProfile 2" in charger.log_path.read_text(), 15,
               "fallback")
    wait_until(lambda: registered(charger), 10, "connected with profile 2 again")
    assert record(bench)["authenticated_by"] == "basic"
    [entry] = bench.call("GetConfiguration", {"key": ["SecurityProfile"]})["payload"]["configurationKey"]
    assert entry["value"] == "2"
    event = wait_until(lambda: [e for e in record(bench)["security_events"]
                                if "set back" in (e.get("tech_info") or "")], 10, "fallback reported")
    assert event[0]["type"] == "ReconfigurationOfSecurityParameters"


# --- profile 3: TLS with a client certificate -----------------------------------------------------


def test_tc_087_profile_3_needs_its_client_certificate(pki, start_csms, start_charger, wait_until, tmp_path):
    bench = start_csms(*tls_server(pki, "localhost", "--tls-client-ca", str(pki.ca)))
    with pytest.raises(AssertionError):  # refused at start (exit 78): the config names what is missing
        start_charger(ocpp=security(3, ca=pki.ca), csms_url=url_of(bench), wait_online=False)
    refusal = (tmp_path / "charger.log").read_text()
    assert "ocpp.client_cert_file: required with ocpp.security_profile = 3" in refusal
    assert bench.get("/chargers")["chargers"] == [], bench.get("/chargers")

    with_password_only = start_charger(ocpp=security(2, PASSWORD, ca=pki.ca), csms_url=url_of(bench),
                                       wait_online=False)
    wait_until(lambda: "HTTP 401 (credentials refused)" in with_password_only.log_path.read_text(), 10,
               "refused without a client certificate")
    assert record(bench)["refused_handshakes"][0]["reason"] == "no client certificate"
    stop(with_password_only)

    charger = start_charger(ocpp=security(3, ca=pki.ca, cert=pki.client_cert, cert_key=pki.client_key),
                            csms_url=url_of(bench))
    assert registered(charger)
    assert record(bench)["authenticated_by"] == "client-certificate"
