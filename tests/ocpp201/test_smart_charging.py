"""OCPP 2.0.1 smart charging (Part 2 K): the translation to the core's profiles, and the adapter
against the loopback 2.0.1 CSMS (every message schema-checked), with the pilot's offer on the
bench's simulated hardware as the proof."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from evcp.core import smart_charging as sc
from evcp.ocpp201.smart_charging import (
    Refused,
    composite_to_ocpp,
    from_core,
    matches,
    overlaps,
    report_parts,
    significant,
    to_core,
)

from .test_adapter import charging_session, events, registered, relay_closed


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc).timestamp()


def profile(profile_id=1, purpose="TxDefaultProfile", stack=0, kind="Absolute", periods=((0, 10.0),),
            unit="A", start: float | None = None, duration=None, transaction_id=None, valid_from=None,
            valid_to=None, schedule_id=None, **period_extra):
    """A ChargingProfileType, camelCase as the CSMS sends it."""
    schedule = {"id": schedule_id if schedule_id is not None else profile_id, "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim, **period_extra} for s, lim in periods]}
    if kind != "Relative":
        schedule["startSchedule"] = iso(time.time() - 5 if start is None else start)
    if duration is not None:
        schedule["duration"] = duration
    out = {"id": profile_id, "stackLevel": stack, "chargingProfilePurpose": purpose, "chargingProfileKind": kind,
           "chargingSchedule": [schedule]}
    for name, value in (("transactionId", transaction_id), ("validFrom", valid_from), ("validTo", valid_to)):
        if value is not None:
            out[name] = iso(value) if name != "transactionId" else value
    return out


def snake(payload):
    """What the ocpp library hands a handler."""
    from ocpp.charge_point import camel_to_snake_case
    return camel_to_snake_case(payload)


# --- translation ------------------------------------------------------------------------------


def test_station_max_profile_becomes_the_core_charge_point_maximum_with_its_schedule():
    core = to_core(snake(profile(7, "ChargingStationMaxProfile", stack=2, start=T0, duration=3600,
                                    schedule_id=70, numberPhases=1)))
    assert core == {"chargingProfileId": 7, "stackLevel": 2, "chargingProfilePurpose": "ChargePointMaxProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {"id": 70, "startSchedule": iso(T0), "duration": 3600, "chargingRateUnit": "A",
                                         "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0,
                                                                     "numberPhases": 1}]}}
    installed = sc.profile_from_ocpp(0, core)
    assert (installed.purpose, installed.schedule.id, installed.schedule.periods[0].number_phases) == \
        ("ChargePointMaxProfile", 70, 1)


def test_tx_profile_carries_the_core_transaction_and_comes_back_with_the_2_0_1_id():
    tx_id = str(uuid.uuid4())
    sent = profile(3, "TxProfile", kind="Relative", periods=((0, 16.0), (600, 8.0)), transaction_id=tx_id,
                   valid_from=T0, valid_to=T0 + 86400)
    core = to_core(snake(sent), core_transaction_id=12)
    assert core["transactionId"] == 12
    installed = sc.profile_from_ocpp(1, core)
    assert installed.transaction_id == 12
    assert from_core(installed, tx_id) == sent


def test_what_the_core_cannot_take_is_refused_with_a_reason_code():
    with pytest.raises(Refused) as external:
        to_core(snake(profile(purpose="ChargingStationExternalConstraints")))
    assert external.value.reason_code == "InvalidValue"
    two = profile()
    two["chargingSchedule"].append(dict(two["chargingSchedule"][0], id=2))
    with pytest.raises(Refused, match="ISO 15118") as many:
        to_core(snake(two))
    assert many.value.reason_code == "UnsupportedParam"
    with pytest.raises(Refused, match="phaseToUse"):
        to_core(snake(profile(numberPhases=1, phaseToUse=2)))
    info = Refused("InvalidSchedule", "x" * 600).status_info
    assert info["reason_code"] == "InvalidSchedule" and len(info["additional_info"]) == 512


def test_composite_schedule_in_2_0_1_shape():
    composite = sc.CompositeSchedule(1, T0, 120, "A", (sc.SchedulePeriod(0, 10.0), sc.SchedulePeriod(60, 16.0, 1)))
    assert composite_to_ocpp(composite, 1) == {
        "evseId": 1, "duration": 120, "scheduleStart": iso(T0), "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0},
                                   {"startPeriod": 60, "limit": 16.0, "numberPhases": 1}]}


def test_get_charging_profiles_criteria():
    p = sc.profile_from_ocpp(1, to_core(snake(profile(5, stack=3))))
    assert matches(p, None, {}) and matches(p, 1, {}) and not matches(p, 0, {})
    assert matches(p, 1, {"charging_profile_purpose": "TxDefaultProfile", "stack_level": 3,
                          "charging_profile_id": [4, 5], "charging_limit_source": ["CSO"]})
    assert not matches(p, None, {"charging_profile_purpose": "TxProfile"})
    assert not matches(p, None, {"stack_level": 2})
    assert not matches(p, None, {"charging_profile_id": [6]})
    assert not matches(p, None, {"charging_limit_source": ["EMS", "SO"]})


def test_reports_are_one_per_evse_and_all_but_the_last_are_to_be_continued():
    parts = report_parts(9, [(1, {"id": 1}), (0, {"id": 2}), (1, {"id": 3})])
    assert [(p["evseId"], [c["id"] for c in p["chargingProfile"]], p["tbc"]) for p in parts] == \
        [(0, [2], True), (1, [1, 3], False)]
    assert all(p["requestId"] == 9 and p["chargingLimitSource"] == "CSO" for p in parts)


def test_limit_change_significance():
    assert significant(None, 16.0, 10) and significant(16.0, None, 10)
    assert not significant(16.0, 16.0, 0)
    assert not significant(16.0, 15.0, 10)  # 6.25 % of 16 A
    assert significant(16.0, 14.0, 10)  # 12.5 %


def test_validity_overlap():
    def valid(since, until):
        return sc.profile_from_ocpp(1, to_core(snake(profile(valid_from=since, valid_to=until))))
    assert overlaps(valid(T0, T0 + 10), valid(T0 + 5, None))
    assert not overlaps(valid(T0, T0 + 10), valid(T0 + 10, T0 + 20))  # validTo is exclusive
    assert overlaps(valid(None, None), valid(T0, T0 + 1))


# --- against the CSMS -------------------------------------------------------------------------


async def offered(charger, amps: float | None, timeout: float = 10.0) -> float | None:
    """The pilot's offer once it is ``amps`` (a limit change may wait for the 5 s PWM interval),
    else what it is at the timeout."""
    pilot = charger.hardware.connectors[0].pilot
    try:
        async with asyncio.timeout(timeout):
            while pilot.offered_current != amps:
                await asyncio.sleep(0.05)
    except TimeoutError:
        pass
    return pilot.offered_current


async def set_profile(csms, evse_id: int, charging_profile: dict) -> dict:
    return await csms.session.send("SetChargingProfile", {"evseId": evse_id, "chargingProfile": charging_profile})


async def test_tc_k_01_station_max_profile_limits_the_pilot_of_a_running_transaction(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    await charging_session(charger, csms)
    hardware_max = charger.controller.settings.max_current_a
    assert await offered(charger, hardware_max) == hardware_max
    refused = await set_profile(csms, 1, profile(1, "ChargingStationMaxProfile"))
    assert refused["status"] == "Rejected" and refused["statusInfo"]["reasonCode"] == "InvalidValue"
    assert (await set_profile(csms, 0, profile(1, "ChargingStationMaxProfile", periods=((0, 10.0),))))["status"] \
        == "Accepted"
    assert await offered(charger, 10.0) == 10.0
    changed = await csms.wait_for(lambda: [e for e in events(csms) if e["triggerReason"] == "ChargingRateChanged"])
    offered_values = [v for v in changed[0]["meterValue"][0]["sampledValue"] if v["measurand"] == "Current.Offered"]
    assert changed[0]["eventType"] == "Updated" and offered_values[0]["value"] == 10.0
    assert charger.hardware.connectors[0].relay.is_closed  # a lower limit, not a stop


async def test_tc_k_01_tx_profile_only_for_the_running_transaction(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    idle = await set_profile(csms, 1, profile(2, "TxProfile", transaction_id=str(uuid.uuid4())))
    assert (idle["status"], idle["statusInfo"]["reasonCode"]) == ("Rejected", "TxNotFound")
    tx_id = await charging_session(charger, csms)
    without_id = await set_profile(csms, 1, profile(2, "TxProfile"))
    assert (without_id["status"], without_id["statusInfo"]["reasonCode"]) == ("Rejected", "TxNotFound")
    other = await set_profile(csms, 1, profile(2, "TxProfile", transaction_id=str(uuid.uuid4())))
    assert other["status"] == "Rejected"
    on_station = await set_profile(csms, 0, profile(2, "TxProfile", transaction_id=tx_id))
    assert on_station["status"] == "Rejected"
    assert (await set_profile(csms, 1, profile(2, "TxProfile", periods=((0, 8.0),), transaction_id=tx_id)))["status"] \
        == "Accepted"
    assert await offered(charger, 8.0) == 8.0
    answer = await csms.session.send("GetChargingProfiles", {"requestId": 1, "chargingProfile":
                                                             {"chargingProfilePurpose": "TxProfile"}})
    assert answer["status"] == "Accepted"
    report = await csms.wait_for(lambda: csms.messages("ReportChargingProfiles"))
    assert report[0]["chargingProfile"][0]["transactionId"] == tx_id
    charger.hardware.bench.set_pilot(1, "A")  # the transaction ends, and its TxProfile with it
    await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    answer = await csms.session.send("GetChargingProfiles", {"requestId": 2, "chargingProfile":
                                                             {"chargingProfilePurpose": "TxProfile"}})
    assert answer["status"] == "NoProfiles"


async def test_tc_k_01_refusals_external_constraints_duplicates_stack_level(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    external = await set_profile(csms, 0, profile(1, "ChargingStationExternalConstraints"))
    assert external["status"] == "Rejected"
    assert (await set_profile(csms, 1, profile(1, stack=1, unit="W", periods=((0, 4600.0),))))["status"] == "Accepted"
    duplicate = await set_profile(csms, 1, profile(2, stack=1))
    assert (duplicate["status"], duplicate["statusInfo"]["reasonCode"]) == ("Rejected", "DuplicateProfile")
    later = time.time() + 3600
    same_id = await set_profile(csms, 1, profile(1, stack=1, valid_to=later))
    assert same_id["status"] == "Accepted"  # it replaces profile 1
    assert (await set_profile(csms, 1, profile(2, stack=1, valid_from=later)))["status"] == "Accepted"  # no overlap
    too_high = await set_profile(csms, 1, profile(3, stack=11))
    assert (too_high["status"], too_high["statusInfo"]["reasonCode"]) == ("Rejected", "InvalidStackLevel")
    bad = await set_profile(csms, 1, profile(3, periods=((10, 6.0),)))
    assert (bad["status"], bad["statusInfo"]["reasonCode"]) == ("Rejected", "InvalidSchedule")
    assert "startPeriod" in bad["statusInfo"]["additionalInfo"]
    assert sorted(p.id for p in charger.controller.station.charging.profiles) == [1, 2]


async def test_tc_k_10_clear_charging_profile_by_id_and_by_criteria(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    for evse, body in ((1, profile(1, stack=0)), (0, profile(2, stack=1)),
                       (0, profile(3, "ChargingStationMaxProfile", periods=((0, 12.0),)))):
        assert (await set_profile(csms, evse, body))["status"] == "Accepted"
    clear = csms.session.send
    assert (await clear("ClearChargingProfile", {"chargingProfileId": 99}))["status"] == "Unknown"
    assert (await clear("ClearChargingProfile", {"chargingProfileId": 1}))["status"] == "Accepted"
    by_criteria = {"chargingProfileCriteria": {"evseId": 0, "chargingProfilePurpose": "TxDefaultProfile"}}
    assert (await clear("ClearChargingProfile", by_criteria))["status"] == "Accepted"
    assert (await clear("ClearChargingProfile", by_criteria))["status"] == "Unknown"
    external = {"chargingProfileCriteria": {"chargingProfilePurpose": "ChargingStationExternalConstraints"}}
    assert (await clear("ClearChargingProfile", external))["status"] == "Unknown"
    assert [p.id for p in charger.controller.station.charging.profiles] == [3]
    assert (await clear("ClearChargingProfile", {}))["status"] == "Accepted"  # no criteria: every profile
    assert charger.controller.station.charging.profiles == ()


async def test_tc_k_09_get_charging_profiles_reported_in_parts(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    assert (await set_profile(csms, 0, profile(1, "ChargingStationMaxProfile", schedule_id=11)))["status"] == "Accepted"
    assert (await set_profile(csms, 1, profile(2, stack=4)))["status"] == "Accepted"
    answer = await csms.session.send("GetChargingProfiles", {"requestId": 7, "chargingProfile": {}})
    assert answer["status"] == "Accepted"
    reports = await csms.wait_for(lambda: [r for r in csms.messages("ReportChargingProfiles") if not r["tbc"]] and
                                  csms.messages("ReportChargingProfiles"))
    assert [(r["requestId"], r["evseId"], r["tbc"], r["chargingLimitSource"]) for r in reports] == \
        [(7, 0, True, "CSO"), (7, 1, False, "CSO")]
    station_max = reports[0]["chargingProfile"][0]
    assert (station_max["chargingProfilePurpose"], station_max["chargingSchedule"][0]["id"]) == \
        ("ChargingStationMaxProfile", 11)
    only_evse_0 = await csms.session.send("GetChargingProfiles", {"requestId": 8, "evseId": 0, "chargingProfile": {}})
    assert only_evse_0["status"] == "Accepted"
    await csms.wait_for(lambda: [r for r in csms.messages("ReportChargingProfiles") if r["requestId"] == 8])
    assert [r["evseId"] for r in csms.messages("ReportChargingProfiles") if r["requestId"] == 8] == [0]
    none = await csms.session.send("GetChargingProfiles", {"requestId": 9, "chargingProfile": {"stackLevel": 9}})
    assert none["status"] == "NoProfiles"
    await asyncio.sleep(0.3)
    assert not [r for r in csms.messages("ReportChargingProfiles") if r["requestId"] == 9]


async def test_tc_k_08_get_composite_schedule(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    relative = profile(1, kind="Relative", periods=((0, 10.0), (60, 16.0)))
    assert (await set_profile(csms, 1, relative))["status"] == "Accepted"
    answer = await csms.session.send("GetCompositeSchedule", {"duration": 120, "evseId": 1, "chargingRateUnit": "A"})
    assert answer["status"] == "Accepted"
    schedule = answer["schedule"]
    assert (schedule["evseId"], schedule["duration"], schedule["chargingRateUnit"]) == (1, 120, "A")
    assert [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]] == [(0, 10.0), (60, 16.0)]
    watts = await csms.session.send("GetCompositeSchedule", {"duration": 30, "evseId": 1, "chargingRateUnit": "W"})
    settings = charger.controller.settings
    assert watts["schedule"]["chargingSchedulePeriod"][0]["limit"] == 10.0 * settings.voltage_v * settings.phases
    station = await csms.session.send("GetCompositeSchedule", {"duration": 30, "evseId": 0})
    assert station["status"] == "Accepted"
    assert station["schedule"]["chargingSchedulePeriod"][0]["limit"] == settings.max_current_a  # hardware only
    unknown = await csms.session.send("GetCompositeSchedule", {"duration": 30, "evseId": 7})
    assert (unknown["status"], unknown["statusInfo"]["reasonCode"]) == ("Rejected", "UnknownEvse")


async def test_tc_k_05_request_start_transaction_with_a_tx_profile(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    charger.hardware.bench.set_pilot(1, "C")
    start = {"idToken": {"idToken": "APP-USER-1", "type": "Central"}, "remoteStartId": 5, "evseId": 1}
    not_tx = await csms.session.send("RequestStartTransaction", {**start, "chargingProfile": profile(1)})
    assert not_tx["status"] == "Rejected"
    answer = await csms.session.send("RequestStartTransaction", {
        **start, "chargingProfile": profile(1, "TxProfile", kind="Relative", periods=((0, 12.0),))})
    assert answer["status"] == "Accepted"
    assert await offered(charger, 12.0) == 12.0
    assert await relay_closed(charger)
    assert [p.purpose for p in charger.controller.station.charging.profiles] == ["TxProfile"]


async def test_tc_k_profiles_survive_a_restart(csms, start_station, tmp_path):
    charger = await start_station(csms)
    await registered(charger, csms)
    assert (await set_profile(csms, 0, profile(4, periods=((0, 9.0),), schedule_id=40)))["status"] == "Accepted"
    saved = charger.controller.store.load_document("charging-profiles")
    assert json.dumps(saved)  # stored as the core keeps it
    charger.task.cancel()
    await asyncio.gather(charger.task, return_exceptions=True)
    again = await start_station(csms)
    await csms.wait_for(lambda: again.controller and again.controller.adapter.registration == "Accepted" or None)
    answer = await csms.session.send("GetChargingProfiles", {"requestId": 3, "chargingProfile": {}})
    assert answer["status"] == "Accepted"
    report = await csms.wait_for(lambda: [r for r in csms.messages("ReportChargingProfiles") if r["requestId"] == 3])
    restored = report[0]["chargingProfile"][0]
    assert (report[0]["evseId"], restored["id"], restored["chargingSchedule"][0]["id"]) == (0, 4, 40)
    await charging_session(again, csms)
    assert await offered(again, 9.0) == 9.0


async def test_smart_charging_ctrlr_variables(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    names = ["Enabled", "Available", "ProfileStackLevel", "PeriodsPerSchedule", "RateUnit",
             "LimitChangeSignificance", "ExternalControlSignalsEnabled"]
    wanted = [{"name": n} for n in names] + [{"name": "Entries", "instance": "ChargingProfiles"}]
    answer = await csms.session.send("GetVariables", {"getVariableData": [
        {"component": {"name": "SmartChargingCtrlr"}, "variable": variable} for variable in wanted]})
    values = [r.get("attributeValue") for r in answer["getVariableResult"]]
    assert values == ["true", "true", "10", "24", "A,W", "1.0", "false", "20"]
    results = (await csms.session.send("SetVariables", {"setVariableData": [
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "LimitChangeSignificance"},
         "attributeValue": value} for value in ("abc", "150", "5.5")]}))["setVariableResult"]
    assert [r["attributeStatus"] for r in results] == ["Rejected", "Rejected", "Accepted"]
    assert charger.controller.adapter.device_model.get("SmartChargingCtrlr", "LimitChangeSignificance") == "5.5"
