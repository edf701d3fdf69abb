"""The bench central system, driven by a minimal OCPP 1.6 charge point over real websockets."""

import asyncio
import base64
import contextlib
import json
import signal
import sys
import urllib.error
import urllib.request

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AvailabilityStatus, RemoteStartStopStatus
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from evcp.bench.csms import CentralSystem, Policy, charge_point_id_from_path, parse_args
from evcp.ocpp.security import basic_authorization
from tests.ports import free_port

METER_SAMPLE = [{"timestamp": "2024-05-01T10:05:00Z",
                 "sampledValue": [{"value": "1500", "measurand": "Energy.Active.Import.Register",
                                   "unit": "Wh"}]}]


class MinimalChargePoint(ChargePoint):
    """Just enough of a charge point to exercise the central system."""

    def __init__(self, cp_id, connection):
        super().__init__(cp_id, connection, response_timeout=5)
        self.remote_starts = []

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag, connector_id=None, **kwargs):
        self.remote_starts.append({"id_tag": id_tag, "connector_id": connector_id})
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.change_availability)
    async def on_change_availability(self, **kwargs):
        await asyncio.sleep(1.0)
        return call_result.ChangeAvailability(status=AvailabilityStatus.accepted)

    async def boot(self):
        return await self.call(
            call.BootNotification(charge_point_model="Bench", charge_point_vendor="evcp"),
            suppress=False,
        )

    async def start_transaction(self, id_tag="TAG1", meter_start=1000):
        return await self.call(
            call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=meter_start,
                                  timestamp="2024-05-01T10:00:00Z"),
            suppress=False,
        )

    async def stop_transaction(self, transaction_id, meter_stop, id_tag=None, reason="Local"):
        return await self.call(
            call.StopTransaction(meter_stop=meter_stop, timestamp="2024-05-01T11:00:00Z",
                                 transaction_id=transaction_id, reason=reason, id_tag=id_tag),
            suppress=False,
        )


@pytest.fixture
async def csms():
    system = CentralSystem(port=0, control_port=0)
    await system.start()
    yield system
    await system.stop()


@contextlib.asynccontextmanager
async def charge_point(url, cp_id="CP-1", prefix="/ocpp"):
    async with connect(f"{url}{prefix}/{cp_id}", subprotocols=["ocpp1.6"], proxy=None) as ws:
        cp = MinimalChargePoint(cp_id, ws)
        receiver = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            receiver.cancel()
            with contextlib.suppress(BaseException):
                await receiver


def _urlopen(request):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def control(base_url, method, path, body=None):
    """One control API request in a thread; returns (status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    return await asyncio.to_thread(_urlopen, request)


def test_charge_point_id_is_last_path_segment():
    assert charge_point_id_from_path("/ocpp/CP-1") == "CP-1"
    assert charge_point_id_from_path("/a/b/c/CP%202/") == "CP 2"
    assert charge_point_id_from_path("/CP-3?token=x") == "CP-3"
    assert charge_point_id_from_path("/") == ""


async def test_boot_accepted_and_charger_listed(csms):
    async with charge_point(csms.url) as cp:
        result = await cp.boot()
        assert (result.status, result.interval) == ("Accepted", 300)
        assert result.current_time.endswith("Z")
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError",
                                              status="Available"), suppress=False)
        status, body = await control(csms.control_url, "GET", "/chargers")
    assert status == 200
    [charger] = body["chargers"]
    assert charger["id"] == "CP-1"
    assert charger["connected"] is True
    assert charger["last_boot"]["charge_point_vendor"] == "evcp"
    assert charger["last_boot"]["status"] == "Accepted"
    assert charger["connectors"]["1"]["status"] == "Available"
    assert charger["connectors"]["1"]["error_code"] == "NoError"


async def test_boot_pending_then_accepted(csms):
    status, policy = await control(csms.control_url, "POST", "/policy", {
        "boot_responses": [{"status": "Pending", "interval": 2}], "heartbeat_interval": 60,
    })
    assert status == 200 and policy["boot_responses"] == [{"status": "Pending", "interval": 2}]
    async with charge_point(csms.url) as cp:
        first = await cp.boot()
        second = await cp.boot()
    assert (first.status, first.interval) == ("Pending", 2)
    assert (second.status, second.interval) == ("Accepted", 60)
    assert csms.ledger.chargers["CP-1"].boot_count == 2


async def test_requests_while_rejected_are_recorded_as_anomalies(csms):
    csms.policy.update({"boot_responses": [{"status": "Rejected", "interval": 30}]})
    async with charge_point(csms.url) as cp:
        assert (await cp.boot()).status == "Rejected"
        await cp.call(call.Heartbeat(), suppress=False)
    [anomaly] = csms.ledger.anomalies
    assert (anomaly["kind"], anomaly["action"]) == ("request_while_rejected", "Heartbeat")


async def test_authorize_policy_with_overrides_and_parent(csms):
    status, _ = await control(csms.control_url, "POST", "/policy", {
        "accept_all": False, "tags": ["GOOD"], "authorize_overrides": {"BLOCKED1": "Blocked"},
        "parent_id_tags": {"GOOD": "FLEET"},
    })
    assert status == 200
    async with charge_point(csms.url) as cp:
        good = await cp.call(call.Authorize(id_tag="GOOD"), suppress=False)
        unknown = await cp.call(call.Authorize(id_tag="STRANGER"), suppress=False)
        blocked = await cp.call(call.Authorize(id_tag="BLOCKED1"), suppress=False)
    assert good.id_tag_info == {"status": "Accepted", "parent_id_tag": "FLEET"}
    assert unknown.id_tag_info == {"status": "Invalid"}
    assert blocked.id_tag_info == {"status": "Blocked"}


async def test_invalid_policy_change_is_400_and_changes_nothing(csms):
    status, body = await control(csms.control_url, "POST", "/policy", {
        "accept_all": False, "authorize_overrides": {"X": "Maybe"},
    })
    assert status == 400 and "authorize_overrides" in body["error"]
    assert csms.policy.accept_all is True
    status, body = await control(csms.control_url, "POST", "/policy", {"colour": "red"})
    assert status == 400 and "colour" in body["error"]


async def test_start_override_refuses_a_tag_that_authorize_accepts(csms):
    csms.policy.update({"start_overrides": {"TAG1": "Invalid"}})
    async with charge_point(csms.url) as cp:
        authorized = await cp.call(call.Authorize(id_tag="TAG1"), suppress=False)
        started = await cp.start_transaction("TAG1")
    assert authorized.id_tag_info["status"] == "Accepted"
    assert started.id_tag_info["status"] == "Invalid"
    assert csms.ledger.transactions[started.transaction_id].id_tag_status == "Invalid"


async def test_transaction_recorded_with_meter_values_and_energy(csms):
    async with charge_point(csms.url) as cp:
        await cp.boot()
        first = await cp.start_transaction(meter_start=1000)
        second = await cp.start_transaction(meter_start=0)
        for _ in range(2):
            await cp.call(call.MeterValues(connector_id=1, transaction_id=first.transaction_id,
                                           meter_value=METER_SAMPLE), suppress=False)
        stopped = await cp.stop_transaction(first.transaction_id, 3500, id_tag="TAG1")
        status, body = await control(csms.control_url, "GET", "/transactions")
    assert second.transaction_id == first.transaction_id + 1
    assert stopped.id_tag_info == {"status": "Accepted"}
    assert status == 200
    closed, still_open = body["transactions"]
    assert closed["transaction_id"] == first.transaction_id
    assert closed["open"] is False
    assert closed["energy_wh"] == 2500
    assert closed["meter_values_count"] == 2
    assert closed["stop"]["reason"] == "Local"
    assert closed["stop"]["meter_stop"] == 3500
    assert closed["meter_values"][0]["meter_value"][0]["sampled_value"][0]["value"] == "1500"
    assert (still_open["open"], still_open["energy_wh"]) == (True, None)


async def test_duplicate_and_unknown_stops_are_answered_and_recorded(csms):
    async with charge_point(csms.url) as cp:
        started = await cp.start_transaction(meter_start=100)
        await cp.stop_transaction(started.transaction_id, 200)
        again = await cp.stop_transaction(started.transaction_id, 250)
        unknown = await cp.stop_transaction(999, 10, id_tag="TAG1")
    assert again.id_tag_info is None
    assert unknown.id_tag_info == {"status": "Accepted"}
    transaction = csms.ledger.transactions[started.transaction_id]
    assert transaction.energy_wh == 100
    assert [stop["meter_stop"] for stop in transaction.duplicate_stops] == [250]
    status, body = await control(csms.control_url, "GET", "/anomalies")
    assert status == 200
    assert [(a["kind"], a["transaction_id"]) for a in body["anomalies"]] == [
        ("duplicate_stop", started.transaction_id), ("unknown_transaction", 999),
    ]


async def test_remote_start_via_control_api_reaches_the_charge_point(csms):
    async with charge_point(csms.url) as cp:
        status, body = await control(csms.control_url, "POST", "/call", {
            "cp": "CP-1", "action": "RemoteStartTransaction",
            "payload": {"idTag": "REMOTE1", "connectorId": 1}, "timeout": 5,
        })
        assert cp.remote_starts == [{"id_tag": "REMOTE1", "connector_id": 1}]
    assert (status, body) == (200, {"status": "result", "payload": {"status": "Accepted"}})


async def test_call_error_comes_back_as_error_status(csms):
    async with charge_point(csms.url):
        status, body = await control(csms.control_url, "POST", "/call", {
            "cp": "CP-1", "action": "UnlockConnector", "payload": {"connectorId": 1},
        })
    assert status == 200
    assert body["status"] == "error"
    assert body["code"] == "NotImplemented"
    assert body["description"]
    assert "UnlockConnector" in body["details"]["cause"]


async def test_call_with_invalid_payload_is_400_and_sends_nothing(csms):
    async with charge_point(csms.url):
        before = csms.log.last_seq
        cases = [
            {"cp": "CP-1", "action": "RemoteStartTransaction", "payload": {"idTag": "X" * 21}},
            {"cp": "CP-1", "action": "RemoteStartTransaction", "payload": {"connectorId": 1}},
            {"cp": "CP-1", "action": "RemoteStartTransaction", "payload": {"idTag": "A", "x": 1}},
            {"cp": "CP-1", "action": "NoSuchAction", "payload": {}},
            {"cp": "CP-1", "action": "__class__", "payload": {}},
            {"cp": "CP-1", "action": "Reset", "payload": {"type": "Soft"}, "timeout": -1},
        ]
        for case in cases:
            status, body = await control(csms.control_url, "POST", "/call", case)
            assert status == 400, (case, body)
            assert body["error"]
        assert csms.log.last_seq == before


async def test_call_to_unknown_charge_point_is_404_and_slow_answer_is_504(csms):
    status, _ = await control(csms.control_url, "POST", "/call",
                              {"cp": "CP-9", "action": "Reset", "payload": {"type": "Soft"}})
    assert status == 404
    async with charge_point(csms.url):
        status, body = await control(csms.control_url, "POST", "/call", {
            "cp": "CP-1", "action": "ChangeAvailability",
            "payload": {"connectorId": 0, "type": "Inoperative"}, "timeout": 0.3,
        })
    assert status == 504
    assert "0.3" in body["error"]


async def test_messages_since_cursor_and_cp_filter(csms):
    async with charge_point(csms.url, "CP-1") as one, charge_point(csms.url, "CP-2") as two:
        await one.boot()
        await two.boot()
        status, body = await control(csms.control_url, "GET", "/messages?cp=CP-1")
        assert status == 200
        boot_call, boot_result = body["messages"]
        assert (boot_call["direction"], boot_call["message_type"], boot_call["action"]) == \
            ("received", "CALL", "BootNotification")
        assert boot_call["payload"]["chargePointVendor"] == "evcp"
        assert (boot_result["direction"], boot_result["message_type"], boot_result["action"]) == \
            ("sent", "CALLRESULT", "BootNotification")
        assert boot_result["unique_id"] == boot_call["unique_id"]
        assert boot_result["time"].endswith("Z")
        cursor = body["last_seq"]
        assert cursor == 4

        await one.call(call.Heartbeat(), suppress=False)
        status, body = await control(csms.control_url, "GET", f"/messages?since={cursor}")
        assert [(m["seq"], m["cp"], m["action"]) for m in body["messages"]] == [
            (5, "CP-1", "Heartbeat"), (6, "CP-1", "Heartbeat"),
        ]
        status, body = await control(csms.control_url, "GET", "/messages?since=-1")
        assert status == 400


async def test_disconnect_closes_the_websocket(csms):
    async with charge_point(csms.url) as cp:
        await cp.boot()
        status, body = await control(csms.control_url, "POST", "/disconnect", {"cp": "CP-1"})
        assert (status, body) == (200, {"disconnected": "CP-1"})
        with pytest.raises(ConnectionClosed):
            await cp.call(call.Heartbeat(), suppress=False)
    status, body = await control(csms.control_url, "GET", "/chargers")
    assert body["chargers"][0]["connected"] is False
    status, _ = await control(csms.control_url, "POST", "/disconnect", {"cp": "CP-1"})
    assert status == 404


async def test_reconnect_replaces_the_previous_connection(csms):
    async with charge_point(csms.url) as first:
        await first.boot()
        async with charge_point(csms.url) as second:
            await second.boot()
            assert csms.connected_ids() == ["CP-1"]
            assert csms.ledger.chargers["CP-1"].connection_count == 2
            assert (await second.call(call.Heartbeat(), suppress=False)).current_time


async def test_a_connection_replaced_while_the_old_one_hangs_is_served_at_once(csms):
    """A charge point whose old link went half-open connects again: the old connection never
    answers the closing handshake, the new one is served meanwhile, not after websockets' 10 s
    close timeout."""
    async with connect(f"{csms.url}/ocpp/CP-1", subprotocols=["ocpp1.6"], proxy=None) as frozen:
        await frozen.send('[2,"h1","Heartbeat",{}]')
        assert json.loads(await frozen.recv())[:2] == [3, "h1"]
        frozen.transport.pause_reading()  # half-open: nothing it is sent is read any more
        async with charge_point(csms.url) as second:
            assert (await asyncio.wait_for(second.boot(), 5)).status == "Accepted"
            assert csms.connected_ids() == ["CP-1"]
            closes = csms.ledger.chargers["CP-1"].closes
            for _ in range(100):
                if closes:
                    break
                await asyncio.sleep(0.05)
            assert closes[0]["code"] == 1006, "the old connection is dropped without a close frame"
        frozen.transport.resume_reading()


async def test_how_each_connection_ended_is_recorded(csms):
    async with connect(f"{csms.url}/ocpp/CP-1", subprotocols=["ocpp1.6"], proxy=None) as ws:
        await ws.send('[2,"h1","Heartbeat",{}]')
        assert json.loads(await ws.recv())[:2] == [3, "h1"]
        await ws.close(1001, "charge point stopping")
    for _ in range(100):
        if csms.ledger.chargers["CP-1"].closes:
            break
        await asyncio.sleep(0.05)
    status, body = await control(csms.control_url, "GET", "/chargers")
    [close] = body["chargers"][0]["closes"]
    assert (close["code"], close["reason"]) == (1001, "charge point stopping")


async def test_other_notifications_are_answered_and_recorded(csms):
    async with charge_point(csms.url) as cp:
        transfer = await cp.call(call.DataTransfer(vendor_id="acme", message_id="x", data="1"),
                                 suppress=False)
        await cp.call(call.FirmwareStatusNotification(status="Downloading"), suppress=False)
        await cp.call(call.DiagnosticsStatusNotification(status="Uploaded"), suppress=False)
        await cp.call(call.MeterValues(connector_id=0, meter_value=METER_SAMPLE), suppress=False)
    charger = csms.ledger.chargers["CP-1"]
    assert transfer.status == "UnknownVendorId"
    assert charger.data_transfers[0]["vendor_id"] == "acme"
    assert [s["status"] for s in charger.firmware_statuses] == ["Downloading"]
    assert [s["status"] for s in charger.diagnostics_statuses] == ["Uploaded"]
    assert len(charger.meter_values_outside_transactions) == 1


async def test_connection_without_ocpp_subprotocol_or_id_is_refused(csms):
    with pytest.raises(InvalidStatus) as no_subprotocol:
        async with connect(f"{csms.url}/ocpp/CP-1", proxy=None):
            pass
    with pytest.raises(InvalidStatus) as no_id:
        async with connect(f"{csms.url}/", subprotocols=["ocpp1.6"], proxy=None):
            pass
    assert no_subprotocol.value.response.status_code == 400
    assert no_id.value.response.status_code == 404
    assert csms.ledger.chargers == {}


async def test_embedded_policy_object_is_used():
    system = CentralSystem(port=0, control_port=None,
                           policy=Policy(accept_all=False, tags={"A"}), first_transaction_id=500)
    await system.start()
    try:
        assert system.control_url is None
        async with charge_point(system.url) as cp:
            started = await cp.start_transaction("B")
        assert (started.transaction_id, started.id_tag_info["status"]) == (500, "Invalid")
    finally:
        await system.stop()



async def test_runs_as_a_process_and_stops_on_sigterm(tmp_path):
    ws_port, control_port = free_port(), free_port()
    log_file = tmp_path / "csms.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evcp.bench.csms",
        "--listen", f"127.0.0.1:{ws_port}", "--control", f"127.0.0.1:{control_port}",
        "--tags", "A,B", "--log", str(log_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.decode().strip() == (
            f"csms listening on ws://127.0.0.1:{ws_port} control http://127.0.0.1:{control_port}"
        )
        async with charge_point(f"ws://127.0.0.1:{ws_port}") as cp:
            assert (await cp.boot()).status == "Accepted"
            accepted = await cp.call(call.Authorize(id_tag="A"), suppress=False)
            refused = await cp.call(call.Authorize(id_tag="C"), suppress=False)
            status, body = await control(f"http://127.0.0.1:{control_port}", "GET", "/chargers")
        assert accepted.id_tag_info["status"] == "Accepted"
        assert refused.id_tag_info["status"] == "Invalid"
        assert status == 200 and body["chargers"][0]["id"] == "CP-1"

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        stderr = await process.stderr.read()
        assert b"Traceback" not in stderr
        frames = [line for line in log_file.read_text().splitlines() if ".frames: " in line]
        assert len(frames) == 6
        assert "CP-1 <- [2," in frames[0]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- security whitepaper: HTTP Basic authentication and security events ---------------------------


@contextlib.asynccontextmanager
async def basic_auth_csms():
    system = CentralSystem(port=0, control_port=0, basic_auth=True)
    await system.start()
    try:
        yield system
    finally:
        await system.stop()


async def _handshake_status(url, headers=None):
    try:
        async with connect(url, subprotocols=["ocpp1.6"], proxy=None, additional_headers=headers or {}):
            return 101
    except InvalidStatus as refused:
        assert refused.response.headers["WWW-Authenticate"] == 'Basic realm="OCPP"'
        return refused.response.status_code


async def test_basic_auth_checks_each_charge_points_password():
    async with basic_auth_csms() as csms:
        status, policy = await control(csms.control_url, "POST", "/policy", {"passwords": {
            "CP-1": "right-password-16", "CP-2": "4F43415F4F4354545F61646D696E5F74657374"}})
        assert status == 200 and policy["passwords"] == {"CP-1": "********", "CP-2": "********"}
        url = f"{csms.url}/ocpp"

        def basic(user, password):
            return {"Authorization": basic_authorization(user, password)}

        assert await _handshake_status(f"{url}/CP-1", basic("CP-1", "right-password-16")) == 101
        assert await _handshake_status(f"{url}/CP-1", basic("CP-1", "wrong-password-16")) == 401
        assert await _handshake_status(f"{url}/CP-1") == 401
        assert await _handshake_status(f"{url}/CP-1", basic("CP-2", "right-password-16")) == 401
        # A hex password is the bytes it stands for, as the AuthorizationKey is (OCTT TC_073).
        header = "Basic " + base64.b64encode(b"CP-2:OCA_OCTT_admin_test").decode()
        assert await _handshake_status(f"{url}/CP-2", {"Authorization": header}) == 101
        assert await _handshake_status(f"{url}/CP-3", basic("CP-3", "x" * 16)) == 401
        first = csms.ledger.chargers["CP-1"]
        assert first.authenticated_by == "basic"
        assert [r["reason"] for r in first.refused_handshakes] == [
            "wrong password", "no HTTP Basic credentials", "Basic user 'CP-2' is not the charge point id"]


async def test_security_event_notification_is_recorded(csms):
    async with charge_point(csms.url) as cp:
        await cp.call(call.SecurityEventNotification(type="StartupOfTheDevice", timestamp="2024-05-01T10:00:00Z",
                                                     tech_info="evcp started"), suppress=False)
        await cp.call(call.SecurityEventNotification(type="ResetOrReboot", timestamp="2024-05-01T10:01:00Z",
                                                     tech_info=None), suppress=False)
    status, body = await control(csms.control_url, "GET", "/chargers")
    events = body["chargers"][0]["security_events"]
    assert [(e["type"], e.get("tech_info")) for e in events] == [("StartupOfTheDevice", "evcp started"),
                                                                ("ResetOrReboot", None)]


@pytest.mark.parametrize("argv", [["--tls-cert", "a.pem"], ["--tls-key", "a.key"], ["--tls-client-ca", "ca.pem"]])
def test_tls_options_that_cannot_work_alone_are_refused(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)


# --- security whitepaper: signed firmware, log upload and certificate signing notifications ----------


async def test_signed_firmware_and_log_statuses_are_recorded_with_their_request_id(csms):
    async with charge_point(csms.url) as cp:
        for status in ("Downloading", "Downloaded", "InvalidSignature"):
            await cp.call(call.SignedFirmwareStatusNotification(status=status, request_id=81), suppress=False)
        await cp.call(call.LogStatusNotification(status="Uploading", request_id=79), suppress=False)
        await cp.call(call.LogStatusNotification(status="Uploaded", request_id=79), suppress=False)
    status, body = await control(csms.control_url, "GET", "/chargers")
    [charger] = body["chargers"]
    assert [(s["status"], s["request_id"]) for s in charger["signed_firmware_statuses"]] == [
        ("Downloading", 81), ("Downloaded", 81), ("InvalidSignature", 81)]
    assert [(s["status"], s["request_id"]) for s in charger["log_statuses"]] == [("Uploading", 79), ("Uploaded", 79)]
    assert all(s["received_at"].endswith("Z") for s in charger["log_statuses"])
    assert charger["firmware_statuses"] == [], "signed statuses are kept apart from the 1.6 ones"


async def test_sign_certificate_is_accepted_and_the_csr_recorded(csms):
    csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBfake\n-----END CERTIFICATE REQUEST-----\n"
    async with charge_point(csms.url) as cp:
        result = await cp.call(call.SignCertificate(csr=csr), suppress=False)
    assert result.status == "Accepted"
    status, body = await control(csms.control_url, "GET", "/chargers")
    [request] = body["chargers"][0]["certificate_signing_requests"]
    assert request["csr"] == csr
