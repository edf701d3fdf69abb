"""The OCPP 2.0.1 adapter against a real 2.0.1 CSMS on loopback (every message schema-checked
on both sides), over the real core and the bench's simulated hardware."""

from __future__ import annotations

import asyncio
import uuid

from .csms import Csms


async def relay_closed(charger, timeout: float = 5.0) -> bool:
    relay = charger.hardware.connectors[0].relay
    try:
        async with asyncio.timeout(timeout):
            while not relay.is_closed:
                await asyncio.sleep(0.02)
    except TimeoutError:
        return False
    return True


async def registered(charger, csms: Csms) -> None:
    await csms.wait_for(lambda: charger.controller and charger.controller.adapter.registration == "Accepted"
                        or None)
    await csms.wait_for(lambda: csms.messages("StatusNotification"))


def events(csms: Csms) -> list[dict]:
    return csms.messages("TransactionEvent")


async def test_tc_b_01_boot_power_up_then_status_of_every_connector(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    boot = csms.messages("BootNotification")[0]
    assert boot["reason"] == "PowerUp"
    assert boot["chargingStation"]["vendorName"] and boot["chargingStation"]["model"]
    status = csms.messages("StatusNotification")[0]
    assert (status["evseId"], status["connectorId"], status["connectorStatus"]) == (1, 1, "Available")


async def test_tc_b_02_pending_then_accepted_nothing_else_before(csms, start_station):
    csms.policy.boot = ["Pending", "Accepted"]
    csms.policy.interval = 1
    charger = await start_station(csms)
    await registered(charger, csms)
    names = [name for name, _ in csms.received]
    assert names[:2] == ["BootNotification", "BootNotification"]
    assert "StatusNotification" in names[2:]


async def test_tc_e_relay_closes_only_after_authorize_accepted_and_events_are_ordered(csms, start_station):
    charger = await start_station(csms)
    await registered(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "B")
    bench.present_tag("04A1B2C3")
    bench.set_pilot(1, "C")
    assert await relay_closed(charger)
    authorize = csms.messages("Authorize")[0]
    assert authorize["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}
    started = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Started"])
    tx_id = started[0]["transactionInfo"]["transactionId"]
    assert uuid.UUID(tx_id)
    bench.set_pilot(1, "A")
    ended = await csms.wait_for(lambda: [e for e in events(csms) if e["eventType"] == "Ended"])
    assert not charger.hardware.connectors[0].relay.is_closed
    assert ended[0]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    mine = [e for e in events(csms) if e["transactionInfo"]["transactionId"] == tx_id]
    assert [e["seqNo"] for e in mine] == list(range(len(mine)))


async def test_tc_c_rejected_id_token_never_closes_the_contactor(csms, start_station):
    csms.policy.authorize = "Invalid"
    charger = await start_station(csms)
    await registered(charger, csms)
    bench = charger.hardware.bench
    bench.set_pilot(1, "C")
    bench.present_tag("04A1B2C3")
    await csms.wait_for(lambda: csms.messages("Authorize"))
    assert not await relay_closed(charger, timeout=1.5)
    assert not [e for e in events(csms) if "idToken" in e]
