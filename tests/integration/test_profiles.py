"""The OCPP 1.6 feature profiles beside Core, over a real websocket: `evcp run` (mock hardware)
against the bench central system. Each test reads like the OCTT charge-point case it covers."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.integration


def in_seconds(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def statuses(csms, connector: int = 1) -> list[str]:
    return [s["status"] for s in csms.sent_by_charger("StatusNotification") if s["connectorId"] == connector]


# --- Reservation ---------------------------------------------------------------------------------


def test_tc_046_2_reserved_connector_remote_start_carries_the_reservation_id(csms, start_charger, wait_until):
    charger = start_charger()
    answer = csms.call("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": "RES00001",
                                      "reservationId": 17})
    assert answer["payload"] == {"status": "Accepted"}
    charger.wait_status("Reserved")
    wait_until(lambda: "Reserved" in statuses(csms), 5, "StatusNotification Reserved")
    other = csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "OTHER001"})
    assert other["payload"] == {"status": "Rejected"}
    assert csms.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "RES00001"})["payload"] == {
        "status": "Accepted"}
    charger.pilot("C")
    charger.wait_status("Charging")
    [tx] = csms.transactions()
    assert (tx["id_tag"], tx["reservation_id"]) == ("RES00001", 17)


def test_tc_047_reservation_expires_and_survives_nothing_after(csms, start_charger, wait_until):
    charger = start_charger()
    csms.call("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(2), "idTag": "RES00001",
                             "reservationId": 3})
    charger.wait_status("Reserved")
    charger.wait_status("Available", timeout=6)
    charger.start_charging("OTHER001")
    [tx] = csms.transactions()
    assert tx["reservation_id"] is None


def test_tc_048_2_and_tc_052_occupied_and_unknown_cancel(csms, start_charger):
    charger = start_charger()
    charger.pilot("B")
    charger.wait_status("Preparing")
    reserve = {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": "RES00001", "reservationId": 4}
    assert csms.call("ReserveNow", reserve)["payload"] == {"status": "Occupied"}
    assert csms.call("CancelReservation", {"reservationId": 4})["payload"] == {"status": "Rejected"}


def test_reservation_survives_a_restart(csms, start_charger, wait_until):
    charger = start_charger()
    csms.call("ReserveNow", {"connectorId": 1, "expiryDate": in_seconds(600), "idTag": "RES00001",
                             "reservationId": 9})
    charger.wait_status("Reserved")
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(10)
    charger = start_charger()
    charger.wait_status("Reserved")
    assert csms.call("CancelReservation", {"reservationId": 9})["payload"] == {"status": "Accepted"}
    charger.wait_status("Available")
