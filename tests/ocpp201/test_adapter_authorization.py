"""OCPP 2.0.1 local authorization over a real 2.0.1 CSMS on loopback (every message schema-checked
on both sides), the real core and the bench's simulated hardware: the local list (D01, D02), the
cache (C10-C12), ClearCache (C11), offline authorization (C13, C15), and the relay rule: the
contactor closes only after the CSMS accepted the IdToken, or when the list or cache allows it as
the standard says, and never on an entry that is not Accepted."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from .csms import Csms
from .test_adapter import events, registered, relay_closed

TAG = "04A1B2C3"
RFID = {"idToken": TAG, "type": "ISO14443"}


@pytest.fixture
def start_charger(start_station):
    """``await start_charger(csms, allow_offline_start=..., state_dir=...)``: a bench charger speaking
    OCPP 2.0.1 to ``csms``; ``allow_offline_start`` is the installer's ocpp.allow_offline_start."""
    def start(server, allow_offline_start: bool = False, state_dir=None):
        return start_station(server, state_dir=state_dir, allow_offline_start=allow_offline_start)

    return start


async def set_variables(csms: Csms, **values: str) -> None:
    """``Component__Variable="value"``, each Accepted."""
    data = []
    for name, value in values.items():
        component, variable = name.split("__")
        data.append({"component": {"name": component}, "variable": {"name": variable}, "attributeValue": value})
    answer = await csms.session.send("SetVariables", {"setVariableData": data})
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Accepted"] * len(data)


def entry(token: dict, status: str | None = "Accepted") -> dict:
    data = {"idToken": token}
    if status is not None:
        data["idTokenInfo"] = {"status": status}
    return data


async def send_list(csms: Csms, version: int, update_type: str, *entries: dict) -> str:
    payload = {"versionNumber": version, "updateType": update_type}
    if entries:
        payload["localAuthorizationList"] = list(entries)
    return (await csms.session.send("SendLocalList", payload))["status"]


async def list_version(csms: Csms) -> int:
    return (await csms.session.send("GetLocalListVersion", {}))["versionNumber"]


def contactor_closed(charger) -> bool:
    return charger.hardware.connectors[0].relay.is_closed


def closings(charger) -> int:
    """How often the simulated contactor's main contacts closed so far (its recorded history)."""
    return sum(1 for _, event in charger.hardware.bench.simulated[0].contactor.history if event == "closed")


async def contactor_stays_open(charger, seconds: float = 1.5, closings_before: int = 0) -> bool:
    """True when, ``seconds`` from now, the contacts have not closed once more than
    ``closings_before`` times since the start and are open."""
    await asyncio.sleep(seconds)
    return closings(charger) == closings_before and not contactor_closed(charger)


async def go_offline(charger, csms: Csms) -> int:
    """The CSMS goes away; returns its port, to come back on."""
    port = int(csms.url.rsplit(":", 1)[1].split("/")[0])
    await csms.stop()
    async with asyncio.timeout(5):
        while charger.controller.adapter.online:
            await asyncio.sleep(0.02)
    return port


async def come_back(port: int) -> Csms:
    again = Csms()
    again._server = await websockets.serve(again._serve, "127.0.0.1", port, subprotocols=again.subprotocols)
    return again


# ----------------------------------------------------------------------------- D01, D02


async def test_tc_d_01_send_local_list_full_and_d_02_get_local_list_version(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    assert await list_version(csms) == 0
    assert await send_list(csms, 4, "Full", entry(RFID), entry({"idToken": "DE-EVC-C1", "type": "eMAID"})) \
        == "Accepted"
    assert await list_version(csms) == 4
    answer = await csms.session.send("GetVariables", {"getVariableData": [
        {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Entries"}}]})
    assert answer["getVariableResult"][0]["attributeValue"] == "2"
    assert await send_list(csms, 5, "Full") == "Accepted"  # an empty Full list clears it
    assert await list_version(csms) == 0
    assert not contactor_closed(charger)


async def test_tc_d_01_send_local_list_differential_and_version_mismatch(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    key_code = {"idToken": "K1", "type": "KeyCode"}
    assert await send_list(csms, 2, "Full", entry(RFID)) == "Accepted"
    assert await send_list(csms, 2, "Differential", entry(key_code)) == "VersionMismatch"
    assert await send_list(csms, 3, "Differential", entry(key_code), entry(RFID, None)) == "Accepted"
    assert await list_version(csms) == 3
    local_list = charger.controller.adapter.authorization.local.local_list
    assert [name for name, _ in local_list.items()] == ["KeyCode:K1"]  # no idTokenInfo: deleted


async def test_tc_d_01_send_local_list_while_the_list_is_disabled_fails(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, LocalAuthListCtrlr__Enabled="false")
    assert await send_list(csms, 1, "Full", entry(RFID)) == "Failed"
    assert await list_version(csms) == 0


# ----------------------------------------------------------------------------- online: C12, C14, C01


async def test_tc_c_14_local_pre_authorize_listed_token_closes_the_contactor_without_authorize(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    assert await send_list(csms, 1, "Full", entry(RFID)) == "Accepted"
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await relay_closed(charger)
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    assert started[0]["idToken"] == RFID
    assert not csms.messages("Authorize")


async def test_tc_c_12_local_pre_authorize_cached_token_closes_the_contactor_without_authorize(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)  # not known yet: the CSMS is asked, and its answer is cached
    assert await relay_closed(charger)
    assert len(csms.messages("Authorize")) == 1
    bench.set_pilot(1, "A")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert not contactor_closed(charger)
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await relay_closed(charger)
    await csms.wait_for(lambda: len([e for e in events(csms) if e["eventType"] == "Started"]) == 2)
    assert len(csms.messages("Authorize")) == 1  # the second start came from the cache


async def test_tc_c_14_listed_token_refused_by_the_transaction_event_response_opens_the_contactor(csms,
                                                                                                  start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    assert await send_list(csms, 1, "Full", entry(RFID)) == "Accepted"
    csms.policy.transaction_id_token = "Blocked"
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert closings(charger) == 1  # allowed by the list at once, without an AuthorizeRequest
    assert not csms.messages("Authorize")
    assert (ended[0]["triggerReason"], ended[0]["transactionInfo"]["stoppedReason"]) == ("Deauthorized",
                                                                                         "DeAuthorized")
    assert not contactor_closed(charger)
    assert "ISO14443:04A1B2C3" not in charger.controller.adapter.authorization.local.cache  # listed: never cached


async def test_tc_c_14_listed_token_refused_later_with_stop_tx_on_invalid_id_false_keeps_no_energy(csms,
                                                                                                   start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true", TxCtrlr__StopTxOnInvalidId="false")
    assert await send_list(csms, 1, "Full", entry(RFID)) == "Accepted"
    csms.policy.transaction_id_token = "Blocked"
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    async with asyncio.timeout(5):
        while closings(charger) == 0 or contactor_closed(charger):
            await asyncio.sleep(0.02)
    assert await contactor_stays_open(charger, 1.0, closings_before=1)
    assert not [e for e in events(csms) if e["eventType"] == "Ended"]  # the transaction stays, without energy


async def test_tc_c_12_cached_token_refused_by_the_transaction_event_response_is_cached_as_refused(csms,
                                                                                                   start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    csms.policy.transaction_id_token = "NoCredit"  # AuthorizeResponse Accepted, then the CSMS changes its mind
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert closings(charger) == 1 and not contactor_closed(charger)
    cached = charger.controller.adapter.authorization.local.cache.stored("ISO14443:04A1B2C3")
    assert cached.status == "NoCredit"  # C10: learned from the TransactionEventResponse


@pytest.mark.parametrize("status", ["Blocked", "Expired"])
async def test_tc_c_14_listed_token_not_accepted_asks_the_csms_and_never_closes(csms, start_charger, status):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    assert await send_list(csms, 1, "Full", entry(RFID, status)) == "Accepted"
    csms.policy.authorize = status
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    await csms.wait_for(lambda: csms.messages("Authorize"))
    assert await contactor_stays_open(charger)
    assert not events(csms) or all("idToken" not in e for e in events(csms))


async def test_tc_c_14_listed_token_not_accepted_starts_once_the_csms_accepts_it(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    assert await send_list(csms, 1, "Full", entry(RFID, "Blocked")) == "Accepted"
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await relay_closed(charger)
    assert len(csms.messages("Authorize")) == 1  # the CSMS, not the list, accepted it


async def test_tc_c_12_disable_post_authorize_refuses_a_cached_blocked_token_without_authorize(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true", AuthCacheCtrlr__DisablePostAuthorize="true")
    csms.policy.authorize = "Blocked"
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    await csms.wait_for(lambda: csms.messages("Authorize"))
    assert await contactor_stays_open(charger, 1.0)
    csms.policy.authorize = "Accepted"  # would accept now, but is not asked
    bench.present_tag(TAG)
    assert await contactor_stays_open(charger)
    assert len(csms.messages("Authorize")) == 1


async def test_tc_c_11_clear_cache_then_the_csms_is_asked_again(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await relay_closed(charger)
    bench.set_pilot(1, "A")
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert (await csms.session.send("ClearCache", {}))["status"] == "Accepted"
    csms.policy.authorize = "Invalid"
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    await csms.wait_for(lambda: len(csms.messages("Authorize")) == 2)
    assert await contactor_stays_open(charger, closings_before=1)


async def test_tc_c_11_clear_cache_is_rejected_while_the_cache_is_disabled(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCacheCtrlr__Enabled="false")
    assert (await csms.session.send("ClearCache", {}))["status"] == "Rejected"


async def test_tc_f_01_remote_start_with_authorize_remote_start_uses_the_local_list(csms, start_charger):
    charger = await start_charger(csms)
    await registered(charger, csms)
    central = {"idToken": "APP-USER-1", "type": "Central"}
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true", AuthCtrlr__AuthorizeRemoteStart="true")
    assert await send_list(csms, 1, "Full", entry(central)) == "Accepted"
    charger.hardware.bench.set_pilot(1, "C")
    answer = await csms.session.send("RequestStartTransaction", {"idToken": central, "remoteStartId": 5, "evseId": 1})
    assert answer["status"] == "Accepted"
    assert await relay_closed(charger)
    assert not csms.messages("Authorize")


# ----------------------------------------------------------------------------- offline: C13, C15


async def charging_offline_on_a_listed_token(start_charger):
    """Listed Accepted with LocalAuthorizeOffline; the CSMS goes away, the card is tapped, the
    contactor closes, and the CSMS comes back: (charger, the CSMS come back)."""
    csms = Csms()
    await csms.start()
    charger = await start_charger(csms, allow_offline_start=True)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalAuthorizeOffline="true")
    assert await send_list(csms, 1, "Full", entry(RFID)) == "Accepted"
    port = await go_offline(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await relay_closed(charger)
    return charger, await come_back(port)


async def test_tc_c_15_offline_listed_token_closes_the_contactor_and_started_goes_out_offline(start_charger):
    charger, again = await charging_offline_on_a_listed_token(start_charger)
    started = await again.wait_for(lambda: [e for e in events(again) if e["eventType"] == "Started"], timeout=30)
    assert started[0]["offline"] is True and started[0]["idToken"] == RFID
    await asyncio.sleep(0.5)
    assert contactor_closed(charger)  # the CSMS accepted it in the TransactionEventResponse
    await again.stop()


async def test_tc_c_15_offline_listed_token_refused_later_by_the_csms_opens_the_contactor(start_charger):
    charger, again = await charging_offline_on_a_listed_token(start_charger)
    again.policy.transaction_id_token = "Invalid"
    ended = await again.wait_for(lambda: [e for e in events(again) if e["eventType"] == "Ended"], timeout=30)
    assert ended[0]["transactionInfo"]["stoppedReason"] == "DeAuthorized"
    assert not contactor_closed(charger)
    await again.stop()


@pytest.mark.parametrize("listed_status", ["Blocked", "Expired", None])
async def test_tc_c_15_offline_token_not_accepted_or_unknown_never_closes_the_contactor(start_charger, listed_status):
    csms = Csms()
    await csms.start()
    charger = await start_charger(csms, allow_offline_start=True)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalAuthorizeOffline="true")
    entries = [entry(RFID, listed_status)] if listed_status else [entry({"idToken": "OTHER", "type": "Local"})]
    assert await send_list(csms, 1, "Full", *entries) == "Accepted"
    await go_offline(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await contactor_stays_open(charger)


async def test_tc_c_15_offline_tx_for_unknown_id_enabled_starts_an_unknown_token(start_charger):
    csms = Csms()
    await csms.start()
    charger = await start_charger(csms, allow_offline_start=True)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalAuthorizeOffline="true", AuthCtrlr__OfflineTxForUnknownIdEnabled="true")
    assert await send_list(csms, 1, "Full", entry({"idToken": "BLOCKED1", "type": "Local"}, "Blocked")) == "Accepted"
    await go_offline(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag("BLOCKED1")  # known as Blocked: not "unknown", never starts
    assert await contactor_stays_open(charger, 1.0)
    bench.present_tag(TAG)
    assert await relay_closed(charger)


async def test_tc_c_13_offline_without_local_authorize_offline_the_list_does_not_start(start_charger):
    csms = Csms()
    await csms.start()
    charger = await start_charger(csms, allow_offline_start=True)
    await registered(charger, csms)
    assert await send_list(csms, 1, "Full", entry(RFID)) == "Accepted"  # LocalAuthorizeOffline stays false
    await go_offline(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await contactor_stays_open(charger)


async def test_offline_local_authorization_needs_the_installers_allow_offline_start(start_charger):
    csms = Csms()
    await csms.start()
    charger = await start_charger(csms)  # ocpp.allow_offline_start = false
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalAuthorizeOffline="true")
    assert await send_list(csms, 1, "Full", entry(RFID)) == "Accepted"
    await go_offline(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await contactor_stays_open(charger)


# ----------------------------------------------------------------------------- restart


async def test_the_local_list_cache_and_their_variables_survive_a_restart(csms, start_charger, tmp_path):
    charger = await start_charger(csms)
    await registered(charger, csms)
    await set_variables(csms, AuthCtrlr__LocalPreAuthorize="true")
    assert await send_list(csms, 7, "Full", entry(RFID)) == "Accepted"
    charger.task.cancel()
    await asyncio.gather(charger.task, return_exceptions=True)
    again = await start_charger(csms, state_dir=tmp_path)
    await csms.wait_for(lambda: again.controller and again.controller.adapter.registration == "Accepted" or None)
    assert await list_version(csms) == 7
    before = len(csms.messages("Authorize"))
    bench = again.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    assert await relay_closed(again)  # LocalPreAuthorize (persisted) with the list (persisted)
    assert len(csms.messages("Authorize")) == before


# ----------------------------------------------------------------------------- E05, TxCtrlr.MaxEnergyOnInvalidId


async def refused_while_charging(charger, csms: Csms):
    """An AuthorizeResponse Accepted closes the contactor; the TransactionEventResponse of the
    Started event then refuses the token (Blocked). Returns the core's transaction once refused."""
    csms.policy.transaction_id_token = "Blocked"
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag(TAG)
    connector = charger.controller.station.connectors[1]
    async with asyncio.timeout(5):
        while connector.transaction is None or connector.transaction.accepted or not closings(charger):
            await asyncio.sleep(0.02)
    return connector.transaction


async def test_tc_e_05_refused_token_without_stop_tx_on_invalid_id_gets_no_energy_whatever_the_1_6_key_says(
        csms, start_station):
    """Part 2 E05 with TxCtrlr.StopTxOnInvalidId false: the energy after a refusal is TxCtrlr.MaxEnergyOnInvalidId
    (0: none); an OCPP 1.6 MaxEnergyOnInvalidId of 5 kWh left in the config never applies to 2.0.1."""
    charger = await start_station(csms, keys={"MaxEnergyOnInvalidId": "5000"})
    await registered(charger, csms)
    await set_variables(csms, TxCtrlr__StopTxOnInvalidId="false")
    answer = await csms.session.send("GetVariables", {"getVariableData": [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "MaxEnergyOnInvalidId"}}]})
    assert answer["getVariableResult"][0]["attributeValue"] == "0"
    await refused_while_charging(charger, csms)
    async with asyncio.timeout(5):
        while contactor_closed(charger):
            await asyncio.sleep(0.02)
    assert await contactor_stays_open(charger, 1.0, closings_before=1)
    assert not [e for e in events(csms) if e["eventType"] == "Ended"]  # the transaction stays, without energy


async def test_tc_e_05_max_energy_on_invalid_id_set_by_the_csms_keeps_the_contactor_closed_up_to_it(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await set_variables(csms, TxCtrlr__StopTxOnInvalidId="false", TxCtrlr__MaxEnergyOnInvalidId="100000")
    tx = await refused_while_charging(charger, csms)
    assert tx.energy_limit_wh is not None and tx.energy_limit_wh >= 100000
    await asyncio.sleep(1.0)
    assert contactor_closed(charger) and closings(charger) == 1
