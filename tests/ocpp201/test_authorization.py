"""OCPP 2.0.1 local authorization (Part 2 C10-C15, D01, D02): the list, the cache, the variables
that govern them, and what survives a restart. The scenarios over a real CSMS are in
test_adapter_authorization.py."""

from __future__ import annotations

import json

import pytest

from evcp.ocpp201.authorization import (
    AUTHORIZATION_CACHE,
    LOCAL_LIST,
    StationAuthorization,
    TokenInfo,
    authorization_data,
    token_name,
)
from evcp.ocpp201.device_model import DeviceModel, settings_from, station_variables
from evcp.core.model import Settings
from evcp.storage import StateStore, StoreError
from evcp.timestamps import parse_timestamp, timestamp

NOW = 1_780_000_000.0
RFID = {"idToken": "04A1B2C3", "type": "ISO14443"}
EMAID = {"idToken": "DE-EVC-C12345678-9", "type": "eMAID"}


def listed(token: dict, status: str = "Accepted", **info) -> dict:
    """An AuthorizationData as the ocpp library gives it to a handler (snake_case)."""
    return {"id_token": {"id_token": token["idToken"], "type": token["type"]},
            "id_token_info": {"status": status, **info}}


def deleted(token: dict) -> dict:
    return {"id_token": {"id_token": token["idToken"], "type": token["type"]}}


def model(**values: str) -> DeviceModel:
    """The station's device model with ``Component__Variable="value"`` set."""
    m = DeviceModel(station_variables(1, "evcp", "bench", None, "test"))
    for name, value in values.items():
        component, variable = name.split("__")
        result = m.set_variable({"name": component}, {"name": variable}, value, None)
        assert result.status == "Accepted", (name, result)
    return m


def station(store: StateStore | None = None, **values: str) -> StationAuthorization:
    return StationAuthorization(model(**values), store)


def decide(auth: StationAuthorization, token: dict = RFID, online: bool = True, now: float = NOW):
    return auth.decide(token, now, online=online)


# ----------------------------------------------------------------------------- IdToken and IdTokenInfo


@pytest.mark.parametrize("kind", ["Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress"])
def test_every_id_token_type_is_a_name_of_its_own(kind):
    assert token_name({"idToken": "ABC", "type": kind}) == f"{kind}:ABC"
    assert token_name({"id_token": "ABC", "type": kind}) == f"{kind}:ABC"


@pytest.mark.parametrize("token, why", [
    ({"idToken": "", "type": "NoAuthorization"}, "NoAuthorization"),
    ({"idToken": "X", "type": "Barcode"}, "unknown idToken type"),
    ({"idToken": "", "type": "ISO14443"}, "1 to 36"),
    ({"idToken": "A" * 37, "type": "ISO14443"}, "1 to 36"),
])
def test_tokens_a_list_cannot_hold_are_refused_with_the_reason(token, why):
    with pytest.raises(ValueError, match=why):
        token_name(token)


def test_id_token_info_from_a_response_and_back_from_storage():
    info = TokenInfo.from_ocpp({"status": "Accepted", "cacheExpiryDateTime": "2026-12-01T00:00:00Z",
                                "groupIdToken": {"idToken": "FLEET", "type": "Central"}, "language1": "de"})
    assert info.cache_expiry == parse_timestamp("2026-12-01T00:00:00Z") and info.group_id == "FLEET"
    assert TokenInfo.from_saved(info.to_saved()) == info
    assert TokenInfo.from_ocpp({"status": "NotAtThisTime"}).status == "NotAtThisTime"
    with pytest.raises(ValueError, match="unknown authorization status"):
        TokenInfo.from_ocpp({"status": "Maybe"})


def test_cache_expiry_date_time_makes_a_token_expired_from_then_on():
    info = TokenInfo("Accepted", cache_expiry=NOW + 10)
    assert info.as_of(NOW + 9.9).status == "Accepted"
    assert info.as_of(NOW + 10).status == "Expired"


def test_authorization_data_without_info_is_a_deletion():
    assert authorization_data(deleted(RFID)) == ("ISO14443:04A1B2C3", None)
    name, info = authorization_data(listed(EMAID, "Blocked"))
    assert (name, info.status) == ("eMAID:DE-EVC-C12345678-9", "Blocked")


# ----------------------------------------------------------------------------- D01 SendLocalList, D02 version


def test_d01_full_replaces_the_list_and_d02_reports_its_version():
    auth = station()
    assert auth.list_version() == 0
    assert auth.send_local_list(3, "Full", [listed(RFID), listed(EMAID, "Blocked")]) == "Accepted"
    assert auth.list_version() == 3
    assert auth.device_model.get("LocalAuthListCtrlr", "Entries") == "2"
    assert int(auth.device_model.get("LocalAuthListCtrlr", "Storage")) > 0
    assert auth.send_local_list(4, "Full", [listed(EMAID)]) == "Accepted"
    assert [name for name, _ in auth.local.local_list.items()] == ["eMAID:DE-EVC-C12345678-9"]


def test_d01_differential_adds_updates_and_deletes_with_a_higher_version():
    auth = station()
    auth.send_local_list(1, "Full", [listed(RFID)])
    assert auth.send_local_list(2, "Differential", [listed(EMAID), listed(RFID, "Blocked")]) == "Accepted"
    assert auth.local.local_list.get("ISO14443:04a1b2c3").status == "Blocked"  # values compare without case
    assert auth.send_local_list(3, "Differential", [deleted(RFID)]) == "Accepted"
    assert "ISO14443:04A1B2C3" not in auth.local.local_list and auth.list_version() == 3


@pytest.mark.parametrize("version", [1, 2])
def test_d01_differential_not_above_the_current_version_is_a_version_mismatch_and_changes_nothing(version):
    auth = station()
    auth.send_local_list(2, "Full", [listed(RFID)])
    before = auth.local.local_list.to_saved()
    assert auth.send_local_list(version, "Differential", [listed(EMAID)]) == "VersionMismatch"
    assert auth.local.local_list.to_saved() == before


@pytest.mark.parametrize("entries, why", [
    ([deleted(RFID)], "a Full update without the info of a token"),
    ([listed(RFID), listed({"idToken": "04a1b2c3", "type": "ISO14443"})], "the same token twice"),
    ([{"id_token": {"id_token": "X", "type": "NoAuthorization"}, "id_token_info": {"status": "Accepted"}}],
     "a NoAuthorization token"),
    ([listed(RFID, "Maybe")], "an unknown status"),
])
def test_d01_malformed_updates_fail_and_change_nothing(entries, why):
    auth = station()
    auth.send_local_list(5, "Full", [listed(EMAID)])
    before = auth.local.local_list.to_saved()
    assert auth.send_local_list(6, "Full", entries) == "Failed", why
    assert auth.local.local_list.to_saved() == before and auth.list_version() == 5


def test_d01_version_zero_fails_and_an_empty_full_list_reports_version_zero():
    auth = station()
    assert auth.send_local_list(0, "Full", [listed(RFID)]) == "Failed"
    auth.send_local_list(7, "Full", [listed(RFID)])
    assert auth.send_local_list(8, "Full", []) == "Accepted"
    assert auth.list_version() == 0 and auth.device_model.get("LocalAuthListCtrlr", "Entries") == "0"


def test_d01_more_items_or_bytes_than_one_message_may_carry_fail():
    auth = station()
    items = auth.device_model.number("LocalAuthListCtrlr", "ItemsPerMessage")
    many = [listed({"idToken": f"TAG{n}", "type": "Local"}) for n in range(items + 1)]
    assert auth.send_local_list(1, "Full", many) == "Failed"
    assert auth.send_local_list(1, "Full", many[:items]) == "Accepted"
    limit = auth.device_model.number("LocalAuthListCtrlr", "BytesPerMessage")
    message = {"format": "UTF8", "content": "Welcome! " * 20}
    wordy = [listed({"idToken": f"TAG{n}", "type": "Local"}, personal_message=message) for n in range(items)]
    assert len(json.dumps(wordy)) > limit
    assert auth.send_local_list(2, "Full", wordy) == "Failed"
    assert auth.list_version() == 1


def test_d01_the_list_never_grows_past_its_entries_max_limit():
    auth = station()
    limit = auth.device_model._index[next(k for k in auth.device_model._index
                                          if k.variable == "Entries")].max_value
    version = 1
    for start in range(0, limit, 100):
        batch = [listed({"idToken": f"T{n}", "type": "Local"}) for n in range(start, start + 100)]
        assert auth.send_local_list(version, "Full" if start == 0 else "Differential", batch) == "Accepted"
        version += 1
    assert len(auth.local.local_list) == limit
    assert auth.send_local_list(version, "Differential", [listed({"idToken": "ONE-MORE", "type": "Local"})]) \
        == "Failed"
    assert len(auth.local.local_list) == limit


def test_d01_disabled_list_fails_and_d02_reports_zero():
    auth = station(LocalAuthListCtrlr__Enabled="false")
    assert auth.send_local_list(1, "Full", [listed(RFID)]) == "Failed"
    assert auth.list_version() == 0


class RefusingStore:
    def load_document(self, name):
        return None

    def save_document(self, name, body):
        raise StoreError("disk full")


def test_d01_a_list_that_cannot_be_stored_fails_and_stays_as_it_was():
    auth = station(RefusingStore())
    assert auth.send_local_list(1, "Full", [listed(RFID)]) == "Failed"
    assert auth.list_version() == 0 and len(auth.local.local_list) == 0


# ----------------------------------------------------------------------------- C10 cache, C11 ClearCache


def test_c10_verdicts_are_cached_but_not_for_a_listed_token():
    auth = station()
    auth.learn(RFID, {"status": "Blocked"}, NOW)
    assert auth.local.cache.stored("ISO14443:04A1B2C3").status == "Blocked"
    auth.send_local_list(1, "Full", [listed(EMAID)])
    auth.learn(EMAID, {"status": "Accepted"}, NOW)
    assert "eMAID:DE-EVC-C12345678-9" not in auth.local.cache


def test_c10_a_disabled_cache_stores_nothing():
    auth = station(AuthCacheCtrlr__Enabled="false")
    auth.learn(RFID, {"status": "Accepted"}, NOW)
    assert len(auth.local.cache) == 0


def test_c10_life_time_drops_an_entry_not_used_for_that_long_and_use_renews_it():
    auth = station(AuthCtrlr__LocalPreAuthorize="true", AuthCacheCtrlr__LifeTime="100")
    auth.learn(RFID, {"status": "Accepted"}, NOW)
    assert decide(auth, now=NOW + 99).accepted  # used: the lifetime counts from here
    assert decide(auth, now=NOW + 198).accepted
    assert decide(auth, now=NOW + 298).ask_central_system
    assert "ISO14443:04A1B2C3" not in auth.local.cache


def test_c10_cache_expiry_date_time_turns_a_cached_token_expired():
    auth = station(AuthCtrlr__LocalPreAuthorize="true")
    auth.learn(RFID, {"status": "Accepted", "cacheExpiryDateTime": timestamp(NOW + 60)}, NOW)
    assert decide(auth, now=NOW + 59).accepted
    assert decide(auth, now=NOW + 60).ask_central_system


def test_c11_clear_cache_empties_the_cache_only_when_enabled():
    auth = station()
    auth.send_local_list(1, "Full", [listed(EMAID)])
    auth.learn(RFID, {"status": "Accepted"}, NOW)
    assert auth.clear_cache() == "Accepted"
    assert len(auth.local.cache) == 0 and len(auth.local.local_list) == 1
    assert station(AuthCacheCtrlr__Enabled="false").clear_cache() == "Rejected"


# ----------------------------------------------------------------------------- C12-C15 the decision


def test_c12_c14_online_without_local_pre_authorize_the_csms_is_always_asked():
    auth = station()
    auth.send_local_list(1, "Full", [listed(RFID)])
    assert decide(auth).ask_central_system


def test_c14_online_local_pre_authorize_a_listed_accepted_token_starts_at_once():
    auth = station(AuthCtrlr__LocalPreAuthorize="true")
    auth.send_local_list(1, "Full", [listed(RFID, groupIdToken={"idToken": "FLEET", "type": "Central"})])
    decision = decide(auth)
    assert decision.accepted and not decision.ask_central_system and decision.source == "local list"
    assert decision.info.group_id == "FLEET"


def test_c12_online_local_pre_authorize_a_cached_accepted_token_starts_at_once():
    auth = station(AuthCtrlr__LocalPreAuthorize="true")
    auth.learn(RFID, {"status": "Accepted"}, NOW)
    decision = decide(auth)
    assert decision.accepted and decision.source == "cache"


@pytest.mark.parametrize("status", ["Blocked", "Expired", "Invalid", "NoCredit", "NotAtThisTime"])
def test_c12_c14_an_entry_that_is_not_accepted_never_starts_online_the_csms_decides(status):
    auth = station(AuthCtrlr__LocalPreAuthorize="true")
    auth.send_local_list(1, "Full", [listed(RFID, status)])
    auth.learn(EMAID, {"status": status}, NOW)
    assert decide(auth).ask_central_system and not decide(auth).accepted
    assert decide(auth, EMAID).ask_central_system


def test_c12_disable_post_authorize_refuses_a_cached_token_that_is_not_accepted_without_asking():
    auth = station(AuthCtrlr__LocalPreAuthorize="true", AuthCacheCtrlr__DisablePostAuthorize="true")
    auth.learn(RFID, {"status": "Blocked"}, NOW)
    decision = decide(auth)
    assert not decision.ask_central_system and decision.info.status == "Blocked" and not decision.accepted


def test_the_list_beats_the_cache_for_the_same_token():
    auth = station(AuthCtrlr__LocalPreAuthorize="true")
    auth.learn(RFID, {"status": "Accepted"}, NOW)
    auth.send_local_list(1, "Full", [listed(RFID, "Blocked")])
    assert decide(auth).ask_central_system
    assert decide(auth, online=False).info.status == "Blocked"


def test_the_same_value_with_another_type_is_another_token():
    auth = station(AuthCtrlr__LocalPreAuthorize="true")
    auth.send_local_list(1, "Full", [listed({"idToken": "04A1B2C3", "type": "ISO15693"})])
    assert decide(auth).ask_central_system
    assert decide(auth, {"idToken": "04A1B2C3", "type": "ISO15693"}).accepted


def test_c13_c15_offline_with_local_authorize_offline_the_list_and_cache_decide():
    auth = station(AuthCtrlr__LocalAuthorizeOffline="true")
    auth.send_local_list(1, "Full", [listed(RFID), listed(EMAID, "Blocked")])
    auth.learn({"idToken": "CACHED", "type": "Local"}, {"status": "Accepted"}, NOW)
    assert decide(auth, online=False).accepted
    assert decide(auth, {"idToken": "CACHED", "type": "Local"}, online=False).accepted
    refused = decide(auth, EMAID, online=False)
    assert refused.info.status == "Blocked" and not refused.ask_central_system
    unknown = decide(auth, {"idToken": "NEVER-SEEN", "type": "Local"}, online=False)
    assert unknown.info is None and not unknown.ask_central_system


def test_c15_offline_without_local_authorize_offline_nothing_starts_from_the_list_and_refusals_stay():
    auth = station()
    auth.send_local_list(1, "Full", [listed(RFID), listed(EMAID, "Blocked")])
    assert decide(auth, online=False).info is None  # not authorized locally: the core's unknown-id rule
    assert decide(auth, EMAID, online=False).info.status == "Blocked"  # a refusal is never "unknown"


def test_no_authorization_tokens_are_never_decided_locally():
    auth = station(AuthCtrlr__LocalPreAuthorize="true", AuthCtrlr__LocalAuthorizeOffline="true")
    token = {"idToken": "", "type": "NoAuthorization"}
    assert decide(auth, token).ask_central_system
    assert decide(auth, token, online=False).info is None


def test_offline_tx_for_unknown_id_enabled_is_the_cores_unknown_id_rule():
    assert not settings_from(model(), Settings()).allow_offline_unknown
    assert settings_from(model(AuthCtrlr__OfflineTxForUnknownIdEnabled="true"), Settings()).allow_offline_unknown


# ----------------------------------------------------------------------------- persistence


def test_list_and_cache_survive_a_restart(tmp_path):
    store = StateStore(tmp_path / "evcp.sqlite3")
    auth = station(store, AuthCtrlr__LocalAuthorizeOffline="true")
    auth.send_local_list(9, "Full", [listed(RFID, cacheExpiryDateTime=timestamp(NOW + 3600))])
    auth.learn(EMAID, {"status": "Blocked"}, NOW)
    store.close()
    store = StateStore(tmp_path / "evcp.sqlite3")
    again = station(store, AuthCtrlr__LocalAuthorizeOffline="true")
    assert again.list_version() == 9 and again.device_model.get("LocalAuthListCtrlr", "Entries") == "1"
    assert decide(again, online=False).accepted
    assert decide(again, online=False, now=NOW + 3600).info.status == "Expired"
    assert decide(again, EMAID, online=False).info.status == "Blocked"
    assert again.clear_cache() == "Accepted"
    store.close()
    assert len(station(StateStore(tmp_path / "evcp.sqlite3")).local.cache) == 0


def test_damaged_stored_documents_start_empty_and_say_so(tmp_path, caplog):
    store = StateStore(tmp_path / "evcp.sqlite3")
    store.save_document(LOCAL_LIST, {"version": 3, "entries": {"Barcode:X": {"status": "Accepted"}}})
    store.save_document(AUTHORIZATION_CACHE, [["ISO14443:AB", {"status": "Maybe"}]])
    auth = station(store)
    assert auth.list_version() == 0 and len(auth.local.cache) == 0
    assert "local authorization list unreadable" in caplog.text and "authorization cache unreadable" in caplog.text
