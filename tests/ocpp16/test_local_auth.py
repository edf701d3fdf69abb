"""Local authorization: the Local Authorization List, the Authorization Cache and the keys that
govern them (OCPP 1.6 §3.5, §5.4, §5.10, §5.15)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evcp.ocpp16.local_auth import (
    AuthorizationCache,
    Decision,
    IdTagInfo,
    LocalAuthList,
    LocalAuthorization,
)
from evcp.timestamps import parse_timestamp as parse_datetime
from evcp.timestamps import timestamp as format_datetime

NOW = 1_780_000_000.0  # 2026-05-28
DEC_2026 = parse_datetime("2026-12-01T00:00:00Z")
LIMITS = {"max_length": 10, "max_send_length": 5}

ONLINE_PRE_AUTHORIZE = dict(online=True, list_enabled=True, cache_enabled=True, pre_authorize=True,
                            authorize_offline=False)
OFFLINE_LOCAL = dict(online=False, list_enabled=True, cache_enabled=True, pre_authorize=False,
                     authorize_offline=True)


def entry(id_tag, status="Accepted", **info):
    return {"id_tag": id_tag, "id_tag_info": {"status": status, **info}}


def deletion(id_tag):
    return {"id_tag": id_tag}


def contents(local_list):
    return {id_tag: info.status for id_tag, info in local_list.items()}


def local_auth(list_entries=(), cached=()):
    local_list = LocalAuthList()
    if list_entries:
        assert local_list.apply("Full", 1, list(list_entries), **LIMITS) == "Accepted"
    cache = AuthorizationCache()
    for id_tag, info in cached:
        cache.remember(id_tag, info)
    return LocalAuthorization(local_list, cache)


# ----------------------------------------------------------------------------- IdTagInfo


def test_id_tag_info_from_the_ocpp_library_payload():
    info = IdTagInfo.from_ocpp({"status": "Accepted", "expiry_date": "2026-12-01T00:00:00Z", "parent_id_tag": "P"})
    assert info == IdTagInfo("Accepted", DEC_2026, "P")


def test_id_tag_info_accepts_camel_case_and_offsets():
    info = IdTagInfo.from_ocpp({"status": "Blocked", "expiryDate": "2026-12-01T01:00:00+01:00",
                                "parentIdTag": "FLEET"})
    assert info == IdTagInfo("Blocked", DEC_2026, "FLEET")


def test_id_tag_info_round_trips_through_ocpp_and_saved_forms():
    info = IdTagInfo("Accepted", DEC_2026 + 0.25, "P")
    assert info.to_ocpp() == {"status": "Accepted", "expiry_date": "2026-12-01T00:00:00.250Z", "parent_id_tag": "P"}
    assert IdTagInfo.from_ocpp(info.to_ocpp()) == info
    assert IdTagInfo.from_saved(json.loads(json.dumps(info.to_saved()))) == info
    assert IdTagInfo("Invalid").to_ocpp() == {"status": "Invalid"}


@pytest.mark.parametrize("payload", [
    {}, {"status": "Maybe"}, {"status": "Accepted", "expiry_date": "next tuesday"},
    {"status": "Accepted", "parent_id_tag": "P" * 21}, "Accepted",
])
def test_id_tag_info_refuses_malformed_payloads(payload):
    with pytest.raises(ValueError):
        IdTagInfo.from_ocpp(payload)


def test_expiry_turns_the_status_to_expired():
    info = IdTagInfo("Accepted", expiry=DEC_2026)
    assert info.effective_status(DEC_2026 - 1) == "Accepted"
    assert info.effective_status(DEC_2026) == "Expired"
    assert info.as_of(DEC_2026 + 1) == IdTagInfo("Expired", DEC_2026)
    assert IdTagInfo("Blocked", DEC_2026).effective_status(DEC_2026 - 1) == "Blocked"
    assert IdTagInfo("Accepted").effective_status(DEC_2026 * 2) == "Accepted"


def test_datetime_parsing_and_formatting_agree():
    assert format_datetime(parse_datetime("2026-12-01T00:00:00.500Z")) == "2026-12-01T00:00:00.500Z"
    assert parse_datetime("2026-12-01T00:00:00") == DEC_2026  # no offset: UTC


# ------------------------------------------------------------------- Local Authorization List


def test_tc_042_2_full_update_without_entries_reports_version_zero():
    local_list = LocalAuthList()
    assert local_list.apply("Full", 1, None, **LIMITS) == "Accepted"
    assert local_list.version == 0 and len(local_list) == 0


def test_tc_042_1_disabled_list_reports_minus_one():
    auth = local_auth([entry("A")])
    assert auth.list_version(list_enabled=False) == -1
    assert auth.list_version(list_enabled=True) == 1


def test_an_empty_full_update_empties_a_filled_list():
    local_list = LocalAuthList()
    local_list.apply("Full", 3, [entry("A"), entry("B")], **LIMITS)
    assert local_list.apply("Full", 4, [], **LIMITS) == "Accepted"
    assert local_list.version == 0 and local_list.get("A") is None


def test_tc_043_full_then_differential_both_accepted():
    local_list = LocalAuthList()
    assert local_list.apply("Full", 1, [entry("A"), entry("B", "Blocked"), entry("C")], **LIMITS) == "Accepted"
    assert local_list.apply("Differential", 2, [entry("B"), deletion("C"), entry("D", "Invalid")],
                            **LIMITS) == "Accepted"
    assert local_list.version == 2
    assert contents(local_list) == {"A": "Accepted", "B": "Accepted", "D": "Invalid"}


def test_a_full_update_replaces_everything_even_with_a_lower_version():
    local_list = LocalAuthList()
    local_list.apply("Full", 7, [entry("A"), entry("B")], **LIMITS)
    assert local_list.apply("Full", 2, [entry("C", "Blocked")], **LIMITS) == "Accepted"
    assert local_list.version == 2 and contents(local_list) == {"C": "Blocked"}


def test_tc_043_2_three_rounds_end_in_version_mismatch():
    local_list = LocalAuthList()
    assert local_list.apply("Full", 2, [entry("A")], **LIMITS) == "Accepted"
    assert local_list.version == 2
    assert local_list.apply("Differential", 5, [entry("B")], **LIMITS) == "Accepted"
    assert local_list.version == 5
    for stale in (5, 4):
        assert local_list.apply("Differential", stale, [entry("C")], **LIMITS) == "VersionMismatch"
    assert local_list.version == 5 and contents(local_list) == {"A": "Accepted", "B": "Accepted"}


def test_a_differential_without_entries_moves_only_the_version():
    local_list = LocalAuthList()
    local_list.apply("Full", 1, [entry("A")], **LIMITS)
    assert local_list.apply("Differential", 2, None, **LIMITS) == "Accepted"
    assert local_list.version == 2 and contents(local_list) == {"A": "Accepted"}


def test_a_differential_deleting_the_last_entry_reports_version_zero():
    local_list = LocalAuthList()
    local_list.apply("Full", 1, [entry("A")], **LIMITS)
    assert local_list.apply("Differential", 2, [deletion("A"), deletion("never there")], **LIMITS) == "Accepted"
    assert local_list.version == 0 and len(local_list) == 0
    assert local_list.apply("Differential", 1, [entry("B")], **LIMITS) == "Accepted"
    assert local_list.version == 1


@pytest.mark.parametrize("update_type, version, entries", [
    ("Full", 2, [entry(f"T{n}") for n in range(6)]),              # above SendLocalListMaxLength
    ("Differential", 9, [entry(f"N{n}") for n in range(5)]),      # list would exceed LocalAuthListMaxLength
    ("Full", 2, [entry("X"), entry("Y", "Blocked"), entry("X")]),  # duplicate idTag
    ("Full", 2, [entry("X"), entry("y"), entry("x")]),            # duplicate, idTags ignore case
    ("Full", 2, [entry("X"), deletion("Y")]),                     # Full entry without idTagInfo
    ("Full", 0, [entry("X")]),                                    # invalid version
    ("Differential", -3, [entry("X")]),
    ("Full", 2, [entry("X", "Maybe")]),                           # unknown status
    ("Full", 2, [entry("X", expiry_date="soon")]),
    ("Full", 2, [{"id_tag_info": {"status": "Accepted"}}]),       # no idTag
    ("Full", 2, [entry("X" * 21)]),                               # idTag too long
    ("Partial", 2, [entry("X")]),
])
def test_tc_043_3_failed_updates_leave_the_old_list_intact(update_type, version, entries):
    local_list = LocalAuthList()
    old = [entry(f"OLD{n}") for n in range(7)]
    assert local_list.apply("Full", 1, old, max_length=10, max_send_length=10) == "Accepted"
    before = local_list.to_saved()
    assert local_list.apply(update_type, version, entries, **LIMITS) == "Failed"
    assert local_list.to_saved() == before and local_list.version == 1


def test_list_limits_are_inclusive():
    local_list = LocalAuthList()
    assert local_list.apply("Full", 1, [entry(f"T{n}") for n in range(5)], max_length=5,
                            max_send_length=5) == "Accepted"
    assert len(local_list) == 5


def test_list_entries_accept_camel_case_and_keep_expiry_and_parent():
    local_list = LocalAuthList()
    status = local_list.apply("Full", 1, [{"idTag": "04A1B2C3", "idTagInfo": {
        "status": "Accepted", "expiryDate": "2026-12-01T00:00:00Z", "parentIdTag": "FLEET"}}], **LIMITS)
    assert status == "Accepted"
    assert local_list.get("04a1b2c3") == IdTagInfo("Accepted", DEC_2026, "FLEET")


def test_list_survives_save_and_restore():
    local_list = LocalAuthList()
    local_list.apply("Full", 4, [entry("A", expiry_date="2026-12-01T00:00:00Z"), entry("b", "Blocked")], **LIMITS)
    restored = LocalAuthList(json.loads(json.dumps(local_list.to_saved())))
    assert restored.version == 4 and restored.to_saved() == local_list.to_saved()
    assert restored.get("B") == IdTagInfo("Blocked")
    assert restored.apply("Differential", 4, [entry("C")], **LIMITS) == "VersionMismatch"


def test_damaged_saved_list_is_refused():
    with pytest.raises(ValueError):
        LocalAuthList({"version": 3, "entries": {"A": {"status": "Sometimes"}}})


# ----------------------------------------------------------------------- Authorization Cache


def test_cache_forgets_the_least_recently_used_entry_when_full():
    cache = AuthorizationCache(capacity=2)
    cache.remember("A", IdTagInfo("Accepted"))
    cache.remember("B", IdTagInfo("Accepted"))
    assert cache.get("A", NOW) is not None  # A is now more recent than B
    cache.remember("C", IdTagInfo("Blocked"))
    assert cache.get("B", NOW) is None
    assert cache.get("A", NOW) == IdTagInfo("Accepted") and cache.get("C", NOW) == IdTagInfo("Blocked")
    assert len(cache) == 2


def test_cache_replaces_an_entry_and_reports_real_changes_only():
    cache = AuthorizationCache()
    assert cache.remember("A", IdTagInfo("Accepted")) is True
    assert cache.remember("A", IdTagInfo("Accepted")) is False
    assert cache.remember("a", IdTagInfo("Blocked")) is True
    assert len(cache) == 1 and cache.get("A", NOW) == IdTagInfo("Blocked")


def test_cached_entry_reads_as_expired_after_its_expiry_date():
    cache = AuthorizationCache()
    cache.remember("A", IdTagInfo("Accepted", DEC_2026))
    assert cache.get("A", DEC_2026 - 60).status == "Accepted"
    assert cache.get("A", DEC_2026 + 60).status == "Expired"


def test_cache_survives_save_and_restore_in_recency_order():
    cache = AuthorizationCache(capacity=3)
    for id_tag in ("A", "B", "C"):
        cache.remember(id_tag, IdTagInfo("Accepted", DEC_2026, "P"))
    cache.get("A", NOW)
    restored = AuthorizationCache(3, json.loads(json.dumps(cache.to_saved())))
    assert restored.to_saved() == cache.to_saved()
    restored.remember("D", IdTagInfo("Invalid"))
    assert "B" not in restored and "A" in restored and restored.get("D", NOW) == IdTagInfo("Invalid")


def test_restoring_into_a_smaller_cache_keeps_the_most_recent():
    cache = AuthorizationCache(capacity=3)
    for id_tag in ("A", "B", "C"):
        cache.remember(id_tag, IdTagInfo("Accepted"))
    restored = AuthorizationCache(2, cache.to_saved())
    assert [id_tag for id_tag, _ in restored.to_saved()] == ["B", "C"]


def test_cache_clear_reports_whether_anything_went():
    cache = AuthorizationCache()
    assert cache.clear() is False
    cache.remember("A", IdTagInfo("Accepted"))
    assert cache.clear() is True and len(cache) == 0


# ------------------------------------------------------------------- deciding on an idTag


def test_tc_007_cached_accepted_id_starts_without_authorize_request():
    auth = local_auth(cached=[("CACHED", IdTagInfo("Accepted"))])
    assert auth.decide("CACHED", NOW, **ONLINE_PRE_AUTHORIZE) == Decision(IdTagInfo("Accepted"), "cache", False)


def test_tc_008_listed_accepted_id_starts_without_authorize_request():
    auth = local_auth([entry("LISTED")])
    decision = auth.decide("listed", NOW, **{**ONLINE_PRE_AUTHORIZE, "cache_enabled": False})
    assert decision.accepted and decision.source == "local list" and not decision.ask_central_system


@pytest.mark.parametrize("id_tag", ["BLOCKED", "EXPIRED_BY_DATE", "UNKNOWN"])
def test_online_anything_but_a_valid_entry_asks_the_central_system(id_tag):
    auth = local_auth([entry("BLOCKED", "Blocked"), entry("EXPIRED_BY_DATE", expiry_date="2026-01-01T00:00:00Z")])
    assert auth.decide(id_tag, NOW, **ONLINE_PRE_AUTHORIZE) == Decision(None, None, True)


def test_online_without_local_pre_authorize_always_asks():
    auth = local_auth([entry("LISTED")], cached=[("CACHED", IdTagInfo("Accepted"))])
    for id_tag in ("LISTED", "CACHED"):
        decision = auth.decide(id_tag, NOW, **{**ONLINE_PRE_AUTHORIZE, "pre_authorize": False})
        assert decision.ask_central_system and decision.info is None


def test_offline_local_authorization_accepts_refuses_or_knows_nothing():
    auth = local_auth([entry("LISTED"), entry("BLOCKED", "Blocked")],
                      cached=[("CACHED", IdTagInfo("Accepted")), ("OLD", IdTagInfo("Accepted", DEC_2026))])
    assert auth.decide("LISTED", NOW, **OFFLINE_LOCAL) == Decision(IdTagInfo("Accepted"), "local list", False)
    assert auth.decide("CACHED", NOW, **OFFLINE_LOCAL).accepted
    refused = auth.decide("BLOCKED", NOW, **OFFLINE_LOCAL)
    assert refused.info.status == "Blocked" and not refused.accepted and not refused.ask_central_system
    expired = auth.decide("OLD", DEC_2026 + 1, **OFFLINE_LOCAL)
    assert expired == Decision(IdTagInfo("Expired", DEC_2026), "cache", False)
    assert auth.decide("STRANGER", NOW, **OFFLINE_LOCAL) == Decision(None, None, False)


def test_offline_without_local_authorize_offline_knows_nothing():
    auth = local_auth([entry("LISTED")], cached=[("CACHED", IdTagInfo("Accepted"))])
    for id_tag in ("LISTED", "CACHED"):
        assert auth.decide(id_tag, NOW, **{**OFFLINE_LOCAL, "authorize_offline": False}) == Decision(None, None, False)


def test_the_list_takes_precedence_over_the_cache():
    auth = local_auth([entry("SHARED", "Blocked")], cached=[("SHARED", IdTagInfo("Accepted"))])
    assert auth.decide("SHARED", NOW, **OFFLINE_LOCAL).info.status == "Blocked"
    assert auth.decide("SHARED", NOW, **ONLINE_PRE_AUTHORIZE).ask_central_system


def test_disabled_list_and_cache_are_ignored():
    auth = local_auth([entry("SHARED", "Blocked"), entry("LISTED")], cached=[("SHARED", IdTagInfo("Accepted"))])
    assert auth.decide("SHARED", NOW, **{**OFFLINE_LOCAL, "list_enabled": False}).accepted
    assert auth.decide("LISTED", NOW, **{**OFFLINE_LOCAL, "list_enabled": False}).info is None
    nothing = dict(OFFLINE_LOCAL, list_enabled=False, cache_enabled=False)
    assert auth.decide("SHARED", NOW, **nothing) == Decision(None, None, False)


# ------------------------------------------------------------ learning from central-system answers


def test_every_central_system_answer_is_cached_with_its_expiry():
    auth = local_auth()
    assert auth.learn("A", IdTagInfo("Accepted", DEC_2026), list_enabled=True, cache_enabled=True) is True
    assert auth.learn("B", IdTagInfo("Blocked"), list_enabled=True, cache_enabled=True) is True
    assert auth.cache.get("A", NOW) == IdTagInfo("Accepted", DEC_2026)
    assert auth.decide("B", NOW, **OFFLINE_LOCAL).info == IdTagInfo("Blocked")


def test_a_disabled_cache_learns_nothing():
    auth = local_auth()
    assert auth.learn("A", IdTagInfo("Accepted"), list_enabled=True, cache_enabled=False) is False
    assert len(auth.cache) == 0


def test_answers_about_listed_ids_touch_neither_list_nor_cache():
    auth = local_auth([entry("LISTED")])
    assert auth.learn("listed", IdTagInfo("Blocked"), list_enabled=True, cache_enabled=True) is False
    assert "LISTED" not in auth.cache
    assert auth.local_list.get("LISTED") == IdTagInfo("Accepted") and auth.local_list.version == 1


def test_with_the_list_disabled_its_ids_are_cached_like_any_other():
    auth = local_auth([entry("LISTED")])
    assert auth.learn("LISTED", IdTagInfo("Blocked"), list_enabled=False, cache_enabled=True) is True
    assert auth.cache.get("LISTED", NOW) == IdTagInfo("Blocked")


def test_tc_061_clear_cache_forces_an_authorize_request_and_spares_the_list():
    auth = local_auth([entry("LISTED")])
    auth.learn("CARD", IdTagInfo("Accepted"), list_enabled=True, cache_enabled=True)
    assert not auth.decide("CARD", NOW, **ONLINE_PRE_AUTHORIZE).ask_central_system
    assert auth.cache.clear() is True
    assert auth.decide("CARD", NOW, **ONLINE_PRE_AUTHORIZE).ask_central_system
    assert auth.decide("LISTED", NOW, **ONLINE_PRE_AUTHORIZE).accepted
    assert auth.local_list.version == 1


# ---------------------------------------------------------------- the list against a plain model

ID_TAGS = ["A", "a", "B", "C", "d"]
MAX_LENGTH, MAX_SEND = 3, 4

updates = st.lists(st.tuples(
    st.sampled_from(["Full", "Differential"]),
    st.integers(min_value=-1, max_value=8),
    st.none() | st.lists(st.tuples(st.sampled_from(ID_TAGS),
                                   st.none() | st.sampled_from(["Accepted", "Blocked", "Invalid"])), max_size=5),
), max_size=12)


def model_step(model, version, update_type, new_version, pairs):
    """The rules of §5.15 spelled out plainly: (status, model, version) after one update."""
    pairs = pairs or []
    names = [id_tag.lower() for id_tag, _ in pairs]
    if (new_version < 1 or len(pairs) > MAX_SEND or len(set(names)) != len(names)
            or (update_type == "Full" and any(status is None for _, status in pairs))):
        return "Failed", model, version
    if update_type == "Differential" and new_version <= version:
        return "VersionMismatch", model, version
    result = {} if update_type == "Full" else dict(model)
    for id_tag, status in pairs:
        if status is None:
            result.pop(id_tag.lower(), None)
        else:
            result[id_tag.lower()] = status
    if len(result) > MAX_LENGTH:
        return "Failed", model, version
    return "Accepted", result, new_version if result else 0


@settings(max_examples=200, deadline=None)
@given(updates)
def test_random_updates_agree_with_a_plain_model(sequence):
    local_list = LocalAuthList()
    model, version = {}, 0
    for update_type, new_version, pairs in sequence:
        entries = None if pairs is None else [
            {"id_tag": id_tag} if status is None else entry(id_tag, status) for id_tag, status in pairs]
        expected, model, version = model_step(model, version, update_type, new_version, pairs)
        assert local_list.apply(update_type, new_version, entries, max_length=MAX_LENGTH,
                                max_send_length=MAX_SEND) == expected
        assert local_list.version == version
        assert {id_tag.lower(): info.status for id_tag, info in local_list.items()} == model
        assert (local_list.version == 0) == (len(local_list) == 0)
        assert LocalAuthList(local_list.to_saved()).to_saved() == local_list.to_saved()
