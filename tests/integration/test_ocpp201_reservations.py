"""OCPP 2.0.1 reservations over real processes: ``evcp run`` (mock hardware, ``ocpp.version =
"2.0.1"``) and the bench central system, whose requests go through its control API. Part 2 H01
(ReserveNow), H02 (CancelReservation), H03 (use a reserved EVSE), H04 (ReservationStatusUpdate)."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta, timezone

from .conftest import wait_until
from .test_ocpp201 import ended, events, start_201, started_transaction
from .test_ocpp201_remote_control import statuses

CARD = "04A1B2C3"


def reserve_now(csms, reservation_id: int = 11, seconds: float = 600, **fields) -> str:
    expiry = (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()
    payload = {"id": reservation_id, "expiryDateTime": expiry, "idToken": {"idToken": CARD, "type": "ISO14443"},
               **fields}
    return csms.call("ReserveNow", payload)["payload"]["status"]


def test_tc_h_01_cs_reserve_a_specific_evse_then_the_reserved_id_token_charges_on_it(csms, start_charger):
    charger = start_201(start_charger)
    assert reserve_now(csms, evseId=1) == "Accepted"
    wait_until(lambda: statuses(csms)[-1] == "Reserved", 5, "StatusNotification Reserved")
    assert charger.connector()["status"] == "Reserved"
    charger.tap("04FFFFFF")
    time.sleep(0.5)
    assert not charger.connector()["relay_closed"]
    charger.start_charging(CARD)
    tx_id = started_transaction(csms)
    wait_until(lambda: charger.connector()["relay_closed"], 10, "contactor closed")
    assert [e["reservationId"] for e in events(csms, tx_id) if "reservationId" in e] == [11]
    assert not csms.sent_by_charger("ReservationStatusUpdate")


def test_tc_h_02_cs_cancel_a_reservation_and_the_evse_is_available_to_anyone(csms, start_charger):
    charger = start_201(start_charger)
    assert reserve_now(csms, evseId=1) == "Accepted"
    wait_until(lambda: statuses(csms)[-1] == "Reserved", 5, "StatusNotification Reserved")
    assert csms.call("CancelReservation", {"reservationId": 11})["payload"]["status"] == "Accepted"
    wait_until(lambda: statuses(csms)[-1] == "Available", 5, "StatusNotification Available")
    assert csms.call("CancelReservation", {"reservationId": 11})["payload"]["status"] == "Rejected"
    charger.start_charging("04FFFFFF")
    tx_id = started_transaction(csms)
    assert all("reservationId" not in e for e in events(csms, tx_id))


def test_tc_h_04_cs_a_reservation_that_expired_while_the_station_was_down_is_reported_after_the_restart(
        csms, start_charger):
    charger = start_201(start_charger)
    assert reserve_now(csms, evseId=1, seconds=3) == "Accepted"
    wait_until(lambda: statuses(csms)[-1] == "Reserved", 5, "StatusNotification Reserved")
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(10)
    time.sleep(3)
    restarted = start_201(start_charger)
    update = wait_until(lambda: csms.sent_by_charger("ReservationStatusUpdate"), 10, "ReservationStatusUpdate")
    assert update == [{"reservationId": 11, "reservationUpdateStatus": "Expired"}]
    assert restarted.connector()["status"] == "Available"


def test_a_reservation_survives_a_restart_and_is_used_after_it(csms, start_charger):
    charger = start_201(start_charger)
    assert reserve_now(csms, evseId=1) == "Accepted"
    charger.process.send_signal(signal.SIGTERM)
    charger.process.wait(15)
    restarted = start_201(start_charger)
    wait_until(lambda: restarted.connector()["status"] == "Reserved", 5, "still Reserved after the restart")
    restarted.start_charging(CARD)
    tx_id = started_transaction(csms)
    assert [e["reservationId"] for e in events(csms, tx_id) if "reservationId" in e] == [11]
    restarted.pilot("A")
    ended(csms, tx_id)
