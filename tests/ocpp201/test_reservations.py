"""OCPP 2.0.1 reservations (Part 2 H): ``evcp.ocpp201.reservations`` alone, then the adapter
over the real core and simulated hardware against the loopback CSMS (every message
schema-checked on both sides)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from ocpp.exceptions import FormatViolationError, InternalError

from evcp.core.model import ReservationEnd
from evcp.ocpp201.device_model import DeviceModel, station_variables
from evcp.ocpp201.reservations import UPDATES, Refused, StatusUpdates, reserve_now_event

from .csms import Csms
from .test_adapter import events, registered, relay_closed

CARD = {"id_token": "04A1B2C3", "type": "ISO14443"}


def model(evses: int = 2, **values: str) -> DeviceModel:
    m = DeviceModel(station_variables(evses, "evcp", "bench", None, "test"))
    for name, value in values.items():
        m.set_internal("ReservationCtrlr", name, value)
    return m


def in_minutes(minutes: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


def test_reserve_now_of_an_evse_becomes_the_core_s_reservation_of_that_connector():
    event = reserve_now_event(model(), 2, 7, in_minutes(10), CARD, evse_id=2,
                              group_id_token={"id_token": "FLEET", "type": "Central"}, custom_data=None)
    assert (event.connector, event.reservation_id, event.id_tag, event.parent_id_tag) == (2, 7, "04A1B2C3", "FLEET")
    assert abs(event.expires_at - (datetime.now(timezone.utc).timestamp() + 600)) < 5


def test_reserve_now_of_no_evse_in_particular_is_the_core_s_connector_0():
    assert reserve_now_event(model(), 2, 7, in_minutes(10), CARD).connector == 0
    assert reserve_now_event(model(), 2, 7, in_minutes(10), CARD, connector_type="sType2").connector == 0


@pytest.mark.parametrize("m, fields, why", [
    (model(Enabled="false"), {"evse_id": 1}, "H01.FR.01: ReservationCtrlr.Enabled false"),
    (model(NonEvseSpecific="false"), {}, "H01.FR.19: no EVSE named, NonEvseSpecific false"),
    (model(), {"evse_id": 3}, "no such EVSE"),
    (model(), {"evse_id": 0}, "EVSE 0 is the station, not an EVSE"),
    (model(), {"evse_id": 1, "connector_type": "cCCS2"}, "a connector type this EVSE has not"),
    (model(), {"connector_type": "cType2"}, "a connector type no EVSE has"),
])
def test_reserve_now_refused_before_the_core_is_asked(m, fields, why):
    with pytest.raises(Refused) as refused:
        reserve_now_event(m, 2, 7, in_minutes(10), CARD, **fields)
    assert refused.value.status == "Rejected", why


def test_reserve_now_with_a_malformed_expiry_is_a_format_violation():
    with pytest.raises(FormatViolationError, match="expiryDateTime"):
        reserve_now_event(model(), 2, 7, "tomorrow", CARD, evse_id=1)


class Documents:
    def __init__(self):
        self.saved: dict = {}

    def load(self, name):
        return self.saved.get(name)

    def save(self, name, body):
        self.saved[name] = list(body)


async def test_status_updates_only_expired_and_removed_are_reported_and_kept_until_answered():
    docs = Documents()
    updates = StatusUpdates(docs.load, docs.save)
    assert not updates.ended(1, ReservationEnd.USED)
    assert not updates.ended(2, ReservationEnd.CANCELLED)
    assert updates.ended(3, ReservationEnd.EXPIRED) and updates.ended(4, ReservationEnd.REMOVED)
    assert [u["reservationId"] for u in docs.saved[UPDATES]] == [3, 4]
    again = StatusUpdates(docs.load, docs.save)  # a restart before they were sent
    sent = []

    async def call(action, payload):
        sent.append((action, payload))
        return {}

    await again.deliver(call)
    assert sent == [("ReservationStatusUpdate", {"reservationId": 3, "reservationUpdateStatus": "Expired"}),
                    ("ReservationStatusUpdate", {"reservationId": 4, "reservationUpdateStatus": "Removed"})]
    assert docs.saved[UPDATES] == [] and again.pending == []


async def test_status_updates_without_an_answer_wait_for_the_next_connection_a_callerror_drops_one():
    docs = Documents()
    updates = StatusUpdates(docs.load, docs.save)
    updates.ended(3, ReservationEnd.EXPIRED)
    updates.ended(4, ReservationEnd.REMOVED)

    async def lost(action, payload):
        raise ConnectionError("not connected")

    await updates.deliver(lost)
    assert [u["reservationId"] for u in updates.pending] == [3, 4]

    async def refused_first(action, payload):
        if payload["reservationId"] == 3:
            raise InternalError(description="no such reservation")
        return {}

    await updates.deliver(refused_first)
    assert updates.pending == [] and docs.saved[UPDATES] == []


# ----------------------------------------------------------------- the adapter, end to end


async def reserve(csms: Csms, **payload) -> str:
    request = {"id": 7, "expiryDateTime": in_minutes(10), "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
               **payload}
    return (await csms.session.send("ReserveNow", request))["status"]


def statuses(csms: Csms, evse: int = 1) -> list[str]:
    return [s["connectorStatus"] for s in csms.messages("StatusNotification") if s["evseId"] == evse]


async def test_tc_h_01_reserved_evse_only_the_reserved_id_token_charges_and_its_transaction_names_the_reservation(
        csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    assert await reserve(csms, evseId=1) == "Accepted"
    await csms.wait_for(lambda: statuses(csms)[-1] == "Reserved")
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag("04FFFFFF")
    await asyncio.sleep(0.5)
    assert not charger.hardware.connectors[0].relay.is_closed, "another card cannot use the reserved EVSE"
    bench.present_tag("04A1B2C3")
    assert await relay_closed(charger)
    tx_events = await csms.wait_for(lambda: [e for e in events(csms) if e.get("reservationId") == 7])
    assert tx_events[0]["idToken"]["idToken"] == "04A1B2C3"
    assert not charger.controller.station.reservations, "the reservation is used up"
    assert not csms.messages("ReservationStatusUpdate"), "a used reservation is not reported (H01.FR.16)"


async def test_tc_h_01_answers_occupied_faulted_unavailable_rejected(csms, start_station):
    charger = await start_station(csms, connectors=2)
    await registered(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "B")
    await csms.wait_for(lambda: statuses(csms, 1)[-1] == "Occupied")
    assert await reserve(csms, evseId=1) == "Occupied"
    bench.simulated[1].ev.set_pilot("F")
    await csms.wait_for(lambda: statuses(csms, 2)[-1] == "Faulted")
    assert await reserve(csms, evseId=2) == "Faulted"
    bench.simulated[1].ev.set_pilot("A")
    await csms.wait_for(lambda: statuses(csms, 2)[-1] == "Available")
    assert (await csms.session.send("ChangeAvailability", {"operationalStatus": "Inoperative",
                                                           "evse": {"id": 2}}))["status"] == "Accepted"
    assert await reserve(csms, evseId=2) == "Unavailable"
    assert await reserve(csms, evseId=3) == "Rejected"
    assert await reserve(csms, evseId=1, connectorType="cCCS2") == "Rejected"
    assert not charger.controller.station.reservations


async def test_tc_h_02_cancel_reservation_frees_the_evse(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    assert await reserve(csms, evseId=1) == "Accepted"
    await csms.wait_for(lambda: statuses(csms)[-1] == "Reserved")
    assert (await csms.session.send("CancelReservation", {"reservationId": 8}))["status"] == "Rejected"
    assert (await csms.session.send("CancelReservation", {"reservationId": 7}))["status"] == "Accepted"
    await csms.wait_for(lambda: statuses(csms)[-1] == "Available")
    assert not csms.messages("ReservationStatusUpdate"), "the CSMS's own cancel is not reported back"


async def test_tc_h_04_an_expired_reservation_is_reported_expired(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    assert await reserve(csms, evseId=1, expiryDateTime=in_minutes(1.5 / 60)) == "Accepted"
    await csms.wait_for(lambda: statuses(csms)[-1] == "Reserved")
    [update] = await csms.wait_for(lambda: csms.messages("ReservationStatusUpdate"), timeout=10)
    assert update == {"reservationId": 7, "reservationUpdateStatus": "Expired"}
    await csms.wait_for(lambda: statuses(csms)[-1] == "Available")


async def test_tc_h_04_a_reservation_of_an_evse_made_inoperative_is_reported_removed(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    assert await reserve(csms, evseId=1) == "Accepted"
    assert (await csms.session.send("ChangeAvailability", {"operationalStatus": "Inoperative",
                                                           "evse": {"id": 1}}))["status"] == "Accepted"
    [update] = await csms.wait_for(lambda: csms.messages("ReservationStatusUpdate"))
    assert update == {"reservationId": 7, "reservationUpdateStatus": "Removed"}
    await csms.wait_for(lambda: statuses(csms)[-1] == "Unavailable")


async def test_reservation_without_an_evse_follows_reservation_ctrlr_non_evse_specific(csms, start_station):
    charger = await start_station(csms, connectors=2)
    await registered(charger, csms)
    assert await reserve(csms) == "Accepted"
    answer = await csms.session.send("SetVariables", {"setVariableData": [
        {"component": {"name": "ReservationCtrlr"}, "variable": {"name": "NonEvseSpecific"},
         "attributeValue": "false"}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert await reserve(csms, id=8) == "Rejected"
    assert list(charger.controller.station.reservations) == [7], "the one accepted before stays"
