"""Smart Charging (OCPP 1.6 §3.13, §5.5, §5.7, §5.16): profile store, stacking, composite schedule.

Every expected schedule is worked out by hand next to the test. Times are POSIX seconds; T0 is
2026-11-21T10:00:00Z, a Saturday.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evcp.core.smart_charging import (
    LOOKAHEAD_S,
    ChargingProfile,
    ChargingProfiles,
    ChargingSchedule,
    Limits,
    ProfileError,
    SchedulePeriod,
    Transaction,
    format_time,
    parse_time,
    profile_from_ocpp,
)


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


T0 = utc(2026, 11, 21, 10, 0)
HOUR, DAY = 3600, 86400
THREE_PHASE = Limits(connectors=2, max_current_a=32.0, phases=3, voltage_v=230.0)
TX_ON_1 = {1: Transaction(transaction_id=42, started_at=T0)}


def payload(profile_id=1, stack=0, purpose="TxDefaultProfile", kind="Absolute", periods=((0, 6.0),),
            start=T0, duration=None, unit="A", recurrency=None, valid_from=None, valid_to=None,
            transaction_id=None, phases=None):
    """csChargingProfiles as the ocpp library hands it over: snake_case, times as RFC 3339."""
    return {
        "charging_profile_id": profile_id,
        "stack_level": stack,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "recurrency_kind": recurrency,
        "valid_from": None if valid_from is None else format_time(valid_from),
        "valid_to": None if valid_to is None else format_time(valid_to),
        "transaction_id": transaction_id,
        "charging_schedule": {
            "duration": duration,
            "start_schedule": None if start is None else format_time(start),
            "charging_rate_unit": unit,
            "charging_schedule_period": [
                {"start_period": s, "limit": lim, "number_phases": phases} for s, lim in periods
            ],
            "min_charging_rate": None,
        },
    }


def install(store, connector=1, transactions=None, **fields):
    accepted, why = store.set(profile_from_ocpp(connector, payload(**fields)), transactions or {})
    assert accepted, why


def steps(composite):
    return [(p.start_s, p.limit) for p in composite.periods]


# --- composite schedules (GetCompositeSchedule, §5.7) -----------------------------------------


def test_tc_066_composite_of_max_default_and_tx_profiles():
    store = ChargingProfiles(THREE_PHASE)
    # ChargePointMaxProfile: 10 A all day (started a little before, like the OCTT's "now - deviation").
    install(store, connector=0, profile_id=1, purpose="ChargePointMaxProfile", start=T0 - 5, duration=DAY + 5,
            periods=((0, 10.0),))
    # TxDefaultProfile: 8 A, 16 A from 200 s.
    install(store, profile_id=2, purpose="TxDefaultProfile", periods=((0, 8.0), (200, 16.0)), duration=400)
    # TxProfile of the running transaction: 12 A, 6 A from 100 s, for 300 s.
    install(store, profile_id=3, purpose="TxProfile", periods=((0, 12.0), (100, 6.0)), duration=300,
            transactions=TX_ON_1, transaction_id=42)

    composite = store.composite(1, T0, 400, "A", TX_ON_1)

    #   0-100: TxProfile 12 overrides TxDefault 8; capped by the max profile -> 10
    # 100-300: TxProfile 6 -> 6
    # 300-400: TxProfile over, TxDefault's 200 s period (16) applies again; capped -> 10
    assert steps(composite) == [(0, 10.0), (100, 6.0), (300, 10.0)]
    assert composite.to_ocpp() == {
        "duration": 400,
        "startSchedule": "2026-11-21T10:00:00Z",
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 10.0},
            {"startPeriod": 100, "limit": 6.0},
            {"startPeriod": 300, "limit": 10.0},
        ],
    }


def test_connector_0_composite_holds_only_the_charge_point_maximum():
    store = ChargingProfiles(THREE_PHASE)
    install(store, connector=0, profile_id=1, purpose="ChargePointMaxProfile", periods=((0, 10.0),), duration=300)
    install(store, connector=0, profile_id=2, purpose="TxDefaultProfile", periods=((0, 6.0),))
    # 0-300: max profile 10 A; after it: hardware 32 A. The 6 A TxDefaultProfile is a connector's matter.
    assert steps(store.composite(0, T0, 400, "A", {})) == [(0, 10.0), (300, 32.0)]


def test_tc_072_lower_stack_level_takes_over_when_the_higher_one_ends():
    store = ChargingProfiles(THREE_PHASE)
    validity = dict(valid_from=T0, valid_to=T0 + 401)
    install(store, profile_id=1, stack=0, duration=400, periods=((0, 6.0), (100, 8.0), (200, 10.0)), **validity)
    install(store, profile_id=2, stack=1, duration=150, periods=((0, 7.0), (50, 9.0)), **validity)

    composite = store.composite(1, T0, 402, None, {})

    #   0-50 : stack 1 -> 7;  50-150: stack 1 -> 9
    # 150-200: stack 1 is over, stack 0's 100 s period -> 8;  200-400: stack 0 -> 10
    # 400-402: both schedules over -> hardware 32 (validTo at 401 changes nothing and is merged)
    assert steps(composite) == [(0, 7.0), (50, 9.0), (150, 8.0), (200, 10.0), (400, 32.0)]
    assert composite.unit == "A"


def test_period_boundaries_exactly_on_the_window_edges():
    store = ChargingProfiles(THREE_PHASE)
    install(store, periods=((0, 6.0), (100, 8.0)), duration=200)
    # Starting exactly on the 100 s step and ending exactly where the schedule ends: one period.
    assert steps(store.composite(1, T0 + 100, 100, "A", {})) == [(0, 8.0)]
    # The last second before the step still belongs to the first period.
    assert steps(store.composite(1, T0 + 99, 1, "A", {})) == [(0, 6.0)]
    # A window that ends exactly where the profile starts sees none of it.
    assert steps(store.composite(1, T0 - 50, 50, "A", {})) == [(0, 32.0)]
    # And one that starts where it ends sees only the hardware.
    assert steps(store.composite(1, T0 + 200, 60, "A", {})) == [(0, 32.0)]


def test_valid_from_and_valid_to_cut_a_profile():
    store = ChargingProfiles(THREE_PHASE)
    install(store, profile_id=1, stack=0, periods=((0, 10.0),))
    install(store, profile_id=2, stack=1, periods=((0, 6.0),), valid_from=T0 + 60, valid_to=T0 + 120)
    # Stack 1 counts only in [60, 120); around it stack 0's 10 A.
    assert steps(store.composite(1, T0, 200, "A", {})) == [(0, 10.0), (60, 6.0), (120, 10.0)]


def test_connector_default_wins_over_connector_0_default_of_the_same_stack_level():
    store = ChargingProfiles(THREE_PHASE)
    install(store, connector=0, profile_id=1, stack=1, periods=((0, 10.0),))
    install(store, connector=1, profile_id=2, stack=1, periods=((0, 6.0),))
    install(store, connector=2, profile_id=3, stack=0, periods=((0, 8.0),))
    assert store.limit_a(1, T0) == 6.0  # same stack level: connector 1's own profile
    assert store.limit_a(2, T0) == 10.0  # connector 0's stack 1 beats connector 2's stack 0


def test_daily_profile_across_midnight():
    store = ChargingProfiles(THREE_PHASE)
    # Every day from 22:00 for 4 h: 6 A, then 10 A from midnight (7200 s in).
    first = utc(2026, 11, 20, 22, 0)
    install(store, kind="Recurring", recurrency="Daily", start=first, duration=4 * HOUR,
            periods=((0, 6.0), (2 * HOUR, 10.0)))

    window = utc(2026, 11, 21, 21, 0)
    composite = store.composite(1, window, 6 * HOUR, "A", {})
    # 21:00 hardware 32 | 22:00 (+1 h) 6 | 00:00 (+3 h) 10 | 02:00 (+5 h) schedule over: 32
    assert steps(composite) == [(0, 32.0), (HOUR, 6.0), (3 * HOUR, 10.0), (5 * HOUR, 32.0)]
    assert store.limit_a(1, utc(2026, 11, 22, 1, 0)) == 10.0
    assert store.next_change(1, utc(2026, 11, 21, 23, 0)) == utc(2026, 11, 22, 0, 0)
    # Before the first startSchedule the profile does not apply yet.
    assert store.limit_a(1, utc(2026, 11, 20, 23, 0) - DAY) == 32.0


def test_daily_profile_without_duration_lasts_until_the_next_day():
    store = ChargingProfiles(THREE_PHASE)
    install(store, kind="Recurring", recurrency="Daily", start=T0, periods=((0, 6.0), (HOUR, 10.0)))
    # 100 s before the next recurrence the 10 A period still runs; then it restarts at 6 A.
    assert steps(store.composite(1, T0 + DAY - 100, 200, "A", {})) == [(0, 10.0), (100, 6.0)]


def test_weekly_profile():
    store = ChargingProfiles(THREE_PHASE)
    monday = utc(2026, 11, 16, 8, 0)
    install(store, kind="Recurring", recurrency="Weekly", start=monday, duration=HOUR, periods=((0, 6.0),))
    assert store.limit_a(1, monday + 7 * DAY + 1800) == 6.0  # the next Monday, 08:30
    assert store.limit_a(1, monday + 3 * DAY) == 32.0  # Thursday: not covered
    assert store.limit_a(1, monday + 14 * DAY + HOUR) == 32.0  # 09:00: the hour is over
    assert store.next_change(1, monday + HOUR) == monday + 7 * DAY


def test_relative_profile_starts_with_the_transaction():
    store = ChargingProfiles(THREE_PHASE)
    install(store, kind="Relative", start=None, duration=300, periods=((0, 6.0), (120, 12.0)))
    tx = {1: Transaction(transaction_id=7, started_at=T0 + 50)}
    # Anchored at T0+50:  0-50 nothing (32) | 50 -> 6 | 50+120=170 -> 12 | 50+300=350 -> 32
    assert steps(store.composite(1, T0, 400, "A", tx)) == [(0, 32.0), (50, 6.0), (170, 12.0), (350, 32.0)]
    assert store.limit_a(1, T0 + 200, tx) == 12.0
    assert store.next_change(1, T0 + 60, tx) == T0 + 170


def test_relative_profile_without_a_transaction_starts_now():
    store = ChargingProfiles(THREE_PHASE)
    install(store, kind="Relative", start=None, duration=300, periods=((0, 6.0), (120, 12.0)))
    # The composite counts from its own start: 6 | 120 -> 12 | 300 -> 32
    assert steps(store.composite(1, T0, 400, "A", {})) == [(0, 6.0), (120, 12.0), (300, 32.0)]
    # Without a transaction every instant is the start: always the first period, never a change.
    assert store.limit_a(1, T0 + 1000) == 6.0
    assert store.next_change(1, T0 + 1000) is None


# --- units --------------------------------------------------------------------------------------


def test_watts_to_amps_on_three_phases():
    store = ChargingProfiles(THREE_PHASE)
    install(store, unit="W", phases=3, periods=((0, 11040.0), (100, 11000.0)))
    assert store.limit_a(1, T0) == 16.0  # 11040 W / (230 V x 3) = 16.0 A
    assert store.limit_a(1, T0 + 100) == 15.9  # 11000 / 690 = 15.94..., rounded down
    amps = store.composite(1, T0, 200, "A", {})
    assert [(p.start_s, p.limit, p.number_phases) for p in amps.periods] == [(0, 16.0, 3), (100, 15.9, 3)]
    watts = store.composite(1, T0, 200, "W", {})
    assert steps(watts) == [(0, 11040.0), (100, 11000.0)]  # reported as written, not round-tripped


def test_watts_to_amps_on_one_phase():
    store = ChargingProfiles(THREE_PHASE)
    install(store, unit="W", phases=1, periods=((0, 3680.0),))
    assert store.limit_a(1, T0) == 16.0  # 3680 W / (230 V x 1) = 16 A
    assert store.composite(1, T0, 60, "A", {}).periods == (SchedulePeriod(0, 16.0, 1),)


def test_single_phase_charger_converts_with_one_phase():
    single = Limits(connectors=1, max_current_a=32.0, phases=1, voltage_v=230.0)
    store = ChargingProfiles(single)
    # No numberPhases: 3 assumed, but the charger has 1 -> 6900 W / 230 V = 30 A.
    install(store, unit="W", periods=((0, 6900.0),), duration=100)
    assert store.limit_a(1, T0) == 30.0
    # After the profile, the hardware 32 A on one phase = 32 x 230 = 7360 W.
    assert store.composite(1, T0, 200, "W", {}).periods == (
        SchedulePeriod(0, 6900.0, 1), SchedulePeriod(100, 7360.0, 1))


def test_amps_profile_reported_in_watts_and_unit_defaults():
    store = ChargingProfiles(THREE_PHASE)
    install(store, periods=((0, 10.0),), duration=100)
    # 10 A x 230 V x 3 = 6900 W; then hardware 32 x 690 = 22080 W.
    assert steps(store.composite(1, T0, 200, "W", {})) == [(0, 6900.0), (100, 22080.0)]
    assert store.composite(1, T0, 200, None, {}).unit == "A"
    watts = ChargingProfiles(THREE_PHASE)
    install(watts, unit="W", periods=((0, 6900.0),))
    assert watts.composite(1, T0, 200, None, {}).unit == "W"  # the profile's own unit
    assert ChargingProfiles(THREE_PHASE).composite(1, T0, 200, None, {}).unit == "A"  # nothing: amperes


def test_limit_never_exceeds_the_hardware_maximum():
    store = ChargingProfiles(THREE_PHASE)
    install(store, periods=((0, 40.0),))
    assert store.limit_a(1, T0) == 32.0


# --- SetChargingProfile (§5.16) ---------------------------------------------------------------


def test_tc_058_1_tx_profile_without_a_transaction_is_rejected():
    store = ChargingProfiles(THREE_PHASE)
    accepted, why = store.set(profile_from_ocpp(1, payload(purpose="TxProfile", transaction_id=42)), {})
    assert not accepted and "running transaction" in why
    assert store.profiles == ()


def test_tc_058_2_tx_profile_with_a_wrong_transaction_id_is_rejected():
    store = ChargingProfiles(THREE_PHASE)
    accepted, why = store.set(profile_from_ocpp(1, payload(purpose="TxProfile", transaction_id=41)), TX_ON_1)
    assert not accepted and "transactionId 41" in why
    assert store.set(profile_from_ocpp(1, payload(purpose="TxProfile", transaction_id=42)), TX_ON_1) == (True, "")


def test_tx_profile_without_transaction_id_binds_to_the_running_transaction():
    store = ChargingProfiles(THREE_PHASE)
    install(store, purpose="TxProfile", periods=((0, 6.0),), transactions=TX_ON_1)
    assert store.profiles[0].transaction_id == 42
    # A later transaction on the same connector is not governed by it.
    assert store.limit_a(1, T0, {1: Transaction(transaction_id=43, started_at=T0)}) == 32.0
    assert store.limit_a(1, T0, TX_ON_1) == 6.0


@pytest.mark.parametrize("connector, purpose, reason", [
    (1, "ChargePointMaxProfile", "connectorId 0"),
    (0, "TxProfile", "connectorId > 0"),
    (3, "TxDefaultProfile", "no connector 3"),
])
def test_purpose_on_the_wrong_connector_is_rejected(connector, purpose, reason):
    store = ChargingProfiles(THREE_PHASE)
    transactions = {c: Transaction(1, T0) for c in (0, 1, 2, 3)}
    accepted, why = store.set(profile_from_ocpp(connector, payload(purpose=purpose)), transactions)
    assert not accepted and reason in why


@pytest.mark.parametrize("limits, fields, reason", [
    (dict(max_stack_level=3), dict(stack=4), "ChargeProfileMaxStackLevel"),
    (dict(max_periods=2), dict(periods=((0, 6.0), (10, 7.0), (20, 8.0))), "ChargingScheduleMaxPeriods"),
    (dict(allowed_units=("Current",)), dict(unit="W"), "W is not allowed"),
])
def test_profile_beyond_the_charger_limits_is_rejected(limits, fields, reason):
    store = ChargingProfiles(Limits(connectors=1, max_current_a=32.0, phases=3, voltage_v=230.0, **limits))
    accepted, why = store.set(profile_from_ocpp(1, payload(**fields)), {})
    assert not accepted and reason in why
    assert store.profiles == ()


def test_profile_memory_is_full_unless_the_new_one_replaces():
    store = ChargingProfiles(Limits(connectors=1, max_current_a=32.0, phases=3, voltage_v=230.0, max_profiles=2))
    install(store, profile_id=1, stack=0)
    install(store, profile_id=2, stack=1)
    accepted, why = store.set(profile_from_ocpp(1, payload(profile_id=3, stack=2)), {})
    assert not accepted and "MaxChargingProfilesInstalled" in why
    install(store, profile_id=3, stack=1)  # replaces id 2 (same stack level and purpose)
    assert [p.id for p in store.profiles] == [1, 3]


@pytest.mark.parametrize("change, field", [
    (lambda p: p["charging_schedule"]["charging_schedule_period"][0].update(start_period=5), "startPeriod"),
    (lambda p: p["charging_schedule"]["charging_schedule_period"].append({"start_period": 0, "limit": 6}),
     "chargingSchedulePeriod[1].startPeriod"),
    (lambda p: p["charging_schedule"]["charging_schedule_period"][0].update(limit=-1), "limit"),
    (lambda p: p["charging_schedule"]["charging_schedule_period"][0].update(number_phases=4), "numberPhases"),
    (lambda p: p["charging_schedule"].update(charging_schedule_period=[]), "chargingSchedulePeriod"),
    (lambda p: p["charging_schedule"].update(start_schedule=None), "startSchedule"),
    (lambda p: p["charging_schedule"].update(start_schedule="tomorrow"), "startSchedule"),
    (lambda p: p["charging_schedule"].update(charging_rate_unit="kW"), "chargingRateUnit"),
    (lambda p: p.update(charging_profile_kind="Recurring"), "recurrencyKind"),
    (lambda p: p.update(charging_profile_purpose="Other"), "chargingProfilePurpose"),
    (lambda p: p.update(stack_level=-1), "stackLevel"),
    (lambda p: p.update(stack_level="1"), "stackLevel"),
    (lambda p: p.update(valid_from="2026-11-21T11:00:00Z", valid_to="2026-11-21T10:00:00Z"), "validTo"),
    (lambda p: p.pop("charging_profile_id"), "chargingProfileId"),
])
def test_malformed_profile_names_the_field(change, field):
    raw = payload()
    change(raw)
    with pytest.raises(ProfileError, match=re.escape(field)):
        profile_from_ocpp(1, raw)


def test_set_checks_a_profile_built_in_code_too():
    schedule = ChargingSchedule(unit="A", periods=(SchedulePeriod(10, 6.0),), duration_s=None, start=T0, min_rate=None)
    profile = ChargingProfile(1, 1, 0, "TxDefaultProfile", "Absolute", None, None, None, None, schedule)
    accepted, why = ChargingProfiles(THREE_PHASE).set(profile, {})
    assert not accepted and "startPeriod" in why


def test_same_id_replaces_the_old_profile():
    store = ChargingProfiles(THREE_PHASE)
    install(store, profile_id=1, stack=0, periods=((0, 6.0),))
    install(store, connector=2, profile_id=1, stack=3, periods=((0, 8.0),))
    assert [(p.id, p.connector, p.stack_level) for p in store.profiles] == [(1, 2, 3)]
    assert store.limit_a(1, T0) == 32.0


def test_same_stack_level_and_purpose_on_the_same_connector_replaces():
    store = ChargingProfiles(THREE_PHASE)
    install(store, profile_id=1, stack=2, periods=((0, 6.0),))
    install(store, connector=2, profile_id=2, stack=2, periods=((0, 7.0),))  # other connector: stays
    install(store, profile_id=3, stack=2, periods=((0, 8.0),))
    assert sorted(p.id for p in store.profiles) == [2, 3]
    assert store.limit_a(1, T0) == 8.0


def test_without_replace_same_stack_only_the_same_id_replaces():
    # OCPP 2.0.1 K01: two profiles of one stack level and purpose may coexist (valid at other times).
    store = ChargingProfiles(THREE_PHASE)
    install(store, profile_id=1, stack=2, periods=((0, 6.0),), valid_from=T0, valid_to=T0 + HOUR)
    accepted, why = store.set(profile_from_ocpp(1, payload(profile_id=2, stack=2, periods=((0, 8.0),),
                                                           valid_from=T0 + HOUR)), {}, replace_same_stack=False)
    assert accepted, why
    assert sorted(p.id for p in store.profiles) == [1, 2]
    assert (store.limit_a(1, T0 + 10), store.limit_a(1, T0 + HOUR + 10)) == (6.0, 8.0)
    accepted, _ = store.set(profile_from_ocpp(1, payload(profile_id=2, stack=2, periods=((0, 9.0),))), {},
                            replace_same_stack=False)
    assert accepted and [(p.id, p.schedule.periods[0].limit) for p in store.profiles] == [(1, 6.0), (2, 9.0)]


def test_restoring_keeps_profiles_of_one_stack_level_with_other_ids():
    store = ChargingProfiles(THREE_PHASE)
    for profile_id, since in ((1, T0), (2, T0 + HOUR)):
        store.set(profile_from_ocpp(1, payload(profile_id=profile_id, stack=2, valid_from=since,
                                               valid_to=since + HOUR)), {}, replace_same_stack=False)
    restored = ChargingProfiles(THREE_PHASE, saved=json.loads(json.dumps(store.to_saved())))
    assert restored.profiles == store.profiles and len(restored.profiles) == 2


def test_schedule_id_is_kept_and_absent_when_not_given():
    with_id = payload(profile_id=4)
    with_id["charging_schedule"]["id"] = 17
    store = ChargingProfiles(THREE_PHASE)
    store.set(profile_from_ocpp(1, with_id), {})
    install(store, profile_id=5, stack=1)
    first, second = store.to_saved()
    assert first["csChargingProfiles"]["chargingSchedule"]["id"] == 17
    assert "id" not in second["csChargingProfiles"]["chargingSchedule"]  # OCPP 1.6 has no schedule id
    restored = ChargingProfiles(THREE_PHASE, saved=json.loads(json.dumps(store.to_saved())))
    assert [p.schedule.id for p in restored.profiles] == [17, None]
    with_id["charging_schedule"]["id"] = "x"
    with pytest.raises(ProfileError, match="chargingSchedule.id"):
        profile_from_ocpp(1, with_id)


# --- ClearChargingProfile (§5.5) and the end of a transaction ------------------------------------


def three_profiles() -> ChargingProfiles:
    store = ChargingProfiles(THREE_PHASE)
    install(store, connector=0, profile_id=1, purpose="ChargePointMaxProfile", periods=((0, 10.0),))
    install(store, connector=1, profile_id=2, stack=1)
    install(store, connector=2, profile_id=3, stack=1)
    return store


def test_clear_by_id_ignores_the_other_criteria():
    store = three_profiles()
    assert store.clear(profile_id=2, connector=2, purpose="TxProfile")
    assert [p.id for p in store.profiles] == [1, 3]
    assert not store.clear(profile_id=99)


def test_clear_by_criteria_removes_every_match():
    store = three_profiles()
    assert store.clear(purpose="TxDefaultProfile", stack_level=1)
    assert [p.id for p in store.profiles] == [1]
    assert not store.clear(connector=1)  # nothing left there: Unknown
    assert store.clear(connector=0)
    assert store.profiles == ()


def test_clear_without_criteria_removes_all():
    store = three_profiles()
    assert store.clear()
    assert store.profiles == ()
    assert not store.clear()


def test_transaction_end_drops_that_connectors_tx_profiles_only():
    store = ChargingProfiles(THREE_PHASE)
    both = {1: Transaction(42, T0), 2: Transaction(43, T0)}
    install(store, connector=1, profile_id=1, purpose="TxProfile", transactions=both)
    install(store, connector=2, profile_id=2, purpose="TxProfile", transactions=both)
    install(store, connector=1, profile_id=3, purpose="TxDefaultProfile", stack=1)
    store.transaction_ended(1)
    assert sorted(p.id for p in store.profiles) == [2, 3]


# --- persistence and the wire format ----------------------------------------------------------


def test_saved_profiles_restore_the_same_store():
    store = ChargingProfiles(THREE_PHASE)
    install(store, connector=0, profile_id=1, purpose="ChargePointMaxProfile", periods=((0, 10.0),))
    install(store, profile_id=2, kind="Recurring", recurrency="Weekly", duration=HOUR, unit="W", phases=1,
            periods=((0, 3000.0), (600, 4000.5)), valid_from=T0 - 0.25, valid_to=T0 + 30 * DAY)
    install(store, profile_id=3, purpose="TxProfile", kind="Relative", start=None, transactions=TX_ON_1)

    saved = json.loads(json.dumps(store.to_saved()))
    restored = ChargingProfiles(THREE_PHASE, saved=saved)

    assert restored.profiles == store.profiles
    assert restored.dropped == []
    assert restored.composite(1, T0, DAY, "W", TX_ON_1) == store.composite(1, T0, DAY, "W", TX_ON_1)


def test_unreadable_saved_entry_is_dropped_with_a_reason():
    good = {"connectorId": 1, "csChargingProfiles": payload(profile_id=5)}
    restored = ChargingProfiles(THREE_PHASE, saved=[{"connectorId": 1, "csChargingProfiles": {}}, good])
    assert [p.id for p in restored.profiles] == [5]
    assert len(restored.dropped) == 1 and "chargingSchedule" in restored.dropped[0]


def test_camel_case_and_snake_case_read_the_same_and_to_ocpp_round_trips():
    snake = profile_from_ocpp(1, payload(profile_id=9, stack=2, duration=400, valid_from=T0, phases=3,
                                         periods=((0, 6.0), (100, 8.0))))
    camel = profile_from_ocpp(1, snake.to_ocpp())
    assert camel == snake
    assert "charging_schedule" not in snake.to_ocpp() and "chargingSchedule" in snake.to_ocpp()
    assert None not in snake.to_ocpp().values()


def test_times_with_offsets_and_fractions():
    assert parse_time("2026-11-21T12:00:00.250+02:00") == T0 + 0.25
    assert parse_time("2026-11-21T10:00:00.123456789Z") == pytest.approx(T0 + 0.123456, abs=1e-6)
    assert parse_time("2026-11-21T10:00:00") == T0  # no offset: UTC
    assert format_time(T0 + 0.5) == "2026-11-21T10:00:00.5Z"
    assert parse_time(format_time(T0 + 0.5)) == T0 + 0.5


# --- limit_a and next_change at and around boundaries --------------------------------------------


def stacked() -> ChargingProfiles:
    """The TC_072 pair: stack 0 6/8/10 A over 400 s, stack 1 7/9 A over 150 s, valid until 401 s."""
    store = ChargingProfiles(THREE_PHASE)
    validity = dict(valid_from=T0, valid_to=T0 + 401)
    install(store, profile_id=1, stack=0, duration=400, periods=((0, 6.0), (100, 8.0), (200, 10.0)), **validity)
    install(store, profile_id=2, stack=1, duration=150, periods=((0, 7.0), (50, 9.0)), **validity)
    return store


def test_limit_a_at_and_around_boundaries():
    store = stacked()
    assert store.limit_a(1, T0 - 0.001) == 32.0
    assert store.limit_a(1, T0) == 7.0
    assert store.limit_a(1, T0 + 49.999) == 7.0
    assert store.limit_a(1, T0 + 50) == 9.0
    assert store.limit_a(1, T0 + 149.999) == 9.0
    assert store.limit_a(1, T0 + 150) == 8.0
    assert store.limit_a(1, T0 + 399.999) == 10.0
    assert store.limit_a(1, T0 + 400) == 32.0


def test_next_change_walks_the_boundaries():
    store = stacked()
    assert store.next_change(1, T0 - 10) == T0
    assert store.next_change(1, T0) == T0 + 50
    assert store.next_change(1, T0 + 49.5) == T0 + 50
    assert store.next_change(1, T0 + 50) == T0 + 150
    # At 100 s stack 0 steps to 8 A, but stack 1 (9 A) decides until 150 s: no change at 100 s.
    assert store.next_change(1, T0 + 90) == T0 + 150
    assert store.next_change(1, T0 + 200) == T0 + 400
    # validTo at 401 s changes nothing (hardware already): never again.
    assert store.next_change(1, T0 + 400) is None


def test_next_change_skips_steps_hidden_under_the_maximum_profile():
    store = ChargingProfiles(THREE_PHASE)
    install(store, connector=0, profile_id=1, purpose="ChargePointMaxProfile", periods=((0, 10.0),), duration=500)
    install(store, profile_id=2, periods=((0, 16.0), (100, 20.0)))
    # 16 -> 20 A at 100 s stays under the 10 A maximum; the next real change is when it ends.
    assert store.next_change(1, T0) == T0 + 500


def test_next_change_far_ahead_asks_again_after_the_lookahead():
    store = ChargingProfiles(THREE_PHASE)
    install(store, periods=((0, 6.0),), valid_from=T0 + 30 * DAY)
    assert store.next_change(1, T0) == T0 + LOOKAHEAD_S
    assert store.next_change(1, T0 + 29 * DAY) == T0 + 30 * DAY
    assert ChargingProfiles(THREE_PHASE).next_change(1, T0) is None


# --- property: the composite and limit_a tell the same story ---------------------------------------

WINDOW_START, WINDOW_S = T0 - 600, 2500


@st.composite
def profile_sets(draw):
    has_tx = draw(st.booleans())
    tx = {1: Transaction(transaction_id=7, started_at=T0 + draw(st.integers(-300, 300)))} if has_tx else {}
    purposes = ["ChargePointMaxProfile", "TxDefaultProfile"] + (["TxProfile"] if has_tx else [])
    payloads = []
    for profile_id in range(1, draw(st.integers(0, 5)) + 1):
        purpose = draw(st.sampled_from(purposes))
        # Relative schedules start at the transaction; without one each instant would be its own
        # start, which the composite (counting from its window start) cannot show.
        kinds = ["Absolute", "Recurring"] + (["Relative"] if has_tx and purpose != "ChargePointMaxProfile" else [])
        kind = draw(st.sampled_from(kinds))
        unit = draw(st.sampled_from(["A", "W"]))
        starts = [0]
        for _ in range(draw(st.integers(0, 3))):
            starts.append(starts[-1] + draw(st.integers(1, 400)))
        scale = 1 if unit == "A" else 230
        periods = tuple((s, draw(st.integers(0, 40)) * scale) for s in starts)
        valid_from = draw(st.none() | st.integers(-700, 1500).map(lambda d: T0 + d))
        valid_to = draw(st.none() | st.integers(1, 1500).map(lambda d: (valid_from or T0 - 700) + d))
        connectors = {"ChargePointMaxProfile": [0], "TxDefaultProfile": [0, 1], "TxProfile": [1]}[purpose]
        connector = draw(st.sampled_from(connectors))
        payloads.append((connector, payload(
            profile_id=profile_id, stack=draw(st.integers(0, 3)), purpose=purpose, kind=kind, unit=unit,
            periods=periods, phases=draw(st.sampled_from([None, 1, 3])),
            recurrency="Daily" if kind == "Recurring" else None,
            # A daily run that began the day before and restarts inside the window.
            start=None if kind == "Relative" else T0 + draw(st.integers(-700, 1500)) - DAY * (kind == "Recurring"),
            duration=draw(st.none() | st.integers(0, 1200)),
            valid_from=valid_from, valid_to=valid_to,
        )))
    return draw(st.sampled_from([1, 3])), tx, payloads


@settings(max_examples=60, deadline=None)
@given(profile_sets())
def test_limit_a_matches_the_composite_and_respects_the_hardware(case):
    phases, tx, payloads = case
    store = ChargingProfiles(Limits(connectors=1, max_current_a=32.0, phases=phases, voltage_v=230.0))
    instants = set(range(int(WINDOW_START), int(WINDOW_START) + WINDOW_S, 37))
    for connector, raw in payloads:
        store.set(profile_from_ocpp(connector, raw), tx)
    # Every instant where a profile may start, step or stop (from the inputs, not the code under
    # test), and the second before it.
    for profile in store.profiles:
        runs = [profile.schedule.start, (profile.schedule.start or 0) + DAY] if profile.kind != "Relative" \
            else [tx[1].started_at]
        edges = [profile.valid_from, profile.valid_to]
        for run in runs:
            edges += [run + p.start_s for p in profile.schedule.periods]
            edges += [run + (profile.schedule.duration_s or 0)]
        for edge in edges:
            if edge is not None and WINDOW_START <= edge - 1 and edge < WINDOW_START + WINDOW_S:
                instants |= {edge - 1, edge}

    composite = store.composite(1, WINDOW_START, WINDOW_S, "A", tx)
    for t in sorted(instants):
        limit = store.limit_a(1, t, tx)
        assert 0 <= limit <= 32.0
        assert limit == composite.period_at(t).limit, t - WINDOW_START

    # next_change names the first instant the limit moves, and nothing moves before it.
    for t in sorted(instants)[::5]:
        change = store.next_change(1, t, tx)
        if change is not None and change < t + LOOKAHEAD_S:
            assert store.limit_a(1, change, tx) != store.limit_a(1, t, tx)
        assert all(store.limit_a(1, u, tx) == store.limit_a(1, t, tx)
                   for u in instants if t < u < (change if change is not None else float("inf")))


def test_decimal_numbers_as_the_ocpp_library_parses_them_are_read():
    from decimal import Decimal
    payload = {"charging_profile_id": 1, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
               "charging_profile_kind": "Relative",
               "charging_schedule": {"charging_rate_unit": "A", "min_charging_rate": Decimal("6.0"),
                                     "charging_schedule_period": [{"start_period": Decimal("0"),
                                                                   "limit": Decimal("10.5")}]}}
    profile = profile_from_ocpp(1, payload)
    assert profile.schedule.periods[0].limit == 10.5 and profile.schedule.periods[0].start_s == 0


def test_charge_point_limit_is_the_max_profile_in_force_or_none():
    store = ChargingProfiles(THREE_PHASE)
    assert store.charge_point_limit_a(T0) is None
    install(store, connector=0, purpose="ChargePointMaxProfile", periods=((0, 20.0), (600, 13800.0 / 230 / 3)),
            duration=1200)
    install(store, connector=0, profile_id=2, stack=1, purpose="ChargePointMaxProfile", periods=((0, 11040.0),),
            unit="W", start=T0 + 300, duration=100)
    assert store.charge_point_limit_a(T0 + 10) == 20.0
    assert store.charge_point_limit_a(T0 + 350) == 16.0  # 11040 W / (230 V x 3), stack level 1 wins
    assert store.charge_point_limit_a(T0 + 700) == 20.0  # 13800 / 230 / 3 = 20 A, in A
    assert store.charge_point_limit_a(T0 + 1300) is None  # both schedules over
    install(store, connector=1, profile_id=3, periods=((0, 8.0),))
    assert store.charge_point_limit_a(T0 + 10) == 20.0, "a TxDefaultProfile does not limit the charge point"
