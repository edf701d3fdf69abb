"""OCPP 2.0.1 smart charging over real processes: ``evcp run`` (mock hardware, ``ocpp.version =
"2.0.1"``) and the bench central system (Part 2 K01 SetChargingProfile, K10 ClearChargingProfile,
K08 GetCompositeSchedule). The composite limit is the pilot's offer: it changes at most every 5 s
(IEC 61851-1: the EV has 5 s to follow), so these waits are that long."""

from __future__ import annotations

import pytest

from .conftest import wait_until
from .test_ocpp201 import events, start_201, started_transaction

PILOT_CHANGE_S = 5.0


def tx_default_profile(profile_id: int, limit_a: float) -> dict:
    return {"id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": profile_id, "chargingRateUnit": "A",
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}]}]}


def offered_in_updates(csms, transaction_id: str) -> list[float]:
    """Current.Offered of the TransactionEvent Updated events with triggerReason ChargingRateChanged."""
    return [float(v["value"]) for e in events(csms, transaction_id) if e["triggerReason"] == "ChargingRateChanged"
            for mv in e.get("meterValue", []) for v in mv["sampledValue"] if v.get("measurand") == "Current.Offered"]


def test_tc_k_01_cs_tx_default_profile_lowers_the_offer_of_a_running_transaction_and_k_10_clearing_restores_it(
        csms, start_charger):
    charger = start_201(start_charger)
    connector = charger.start_charging("04A1B2C3")
    tx_id = started_transaction(csms)
    assert connector["current_limit_a"] == 32.0
    answer = csms.call("SetChargingProfile", {"evseId": 0, "chargingProfile": tx_default_profile(8, 10.0)})
    assert answer["payload"]["status"] == "Accepted", answer
    lowered = wait_until(lambda: (c := charger.connector())["current_limit_a"] == 10.0 and c, PILOT_CHANGE_S + 3,
                         "the pilot offers 10 A")
    assert lowered["relay_closed"] and lowered["status"] == "Charging"
    assert charger.status()["bench"]["ev"][0]["offered_a"] == pytest.approx(10.0, abs=0.1), \
        "the simulated EV reads 10 A off the pilot's duty cycle"
    wait_until(lambda: 10.0 in offered_in_updates(csms, tx_id), 5, "TransactionEvent ChargingRateChanged 10 A")
    composite = csms.call("GetCompositeSchedule", {"evseId": 1, "duration": 300, "chargingRateUnit": "A"})["payload"]
    assert composite["status"] == "Accepted"
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 10.0

    assert csms.call("ClearChargingProfile", {"chargingProfileId": 8})["payload"]["status"] == "Accepted"
    wait_until(lambda: charger.connector()["current_limit_a"] == 32.0, PILOT_CHANGE_S + 3, "the full offer again")
    assert charger.connector()["relay_closed"]
    assert csms.call("ClearChargingProfile", {"chargingProfileId": 8})["payload"]["status"] == "Unknown"
