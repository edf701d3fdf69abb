"""A link that goes half-open while charging: the central system stops answering, TCP stays up.

A TCP proxy between `evcp run` and the bench central system freezes its connection: bytes are
no longer carried either way, nothing is closed, as when a NAT or mobile link drops its state.
Only the websocket's own pings (WebSocketPingInterval, OCPP 1.6 §9.1.34; RFC 6455 §5.5.2) can
tell. The charger must give the connection up within about 2 x the interval (a ping at most one
interval after the last pong, its pong due one interval later, then CLOSE_TIMEOUT_S for the
closing handshake), reconnect, and keep charging throughout; the central system serves the new
connection at once, whatever the old one does. Over OCPP 1.6 and 2.0.1 alike (one websocket
policy, evcp.connection).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from evcp.connection import CLOSE_TIMEOUT_S

pytestmark = pytest.mark.integration

PING_INTERVAL_S = 3
POLL_SLACK_S = 1.0
"""The status is polled every 50 ms over HTTP; on a loaded machine a reading may lag this much."""


class FreezingProxy:
    """A TCP proxy on loopback, run in a thread of its own; ``freeze()`` stops every connection
    open now from carrying bytes (they stay open); later connections are carried normally."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port: int | None = None
        self.connections = 0
        self._frozen: list[asyncio.Event] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._carry, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        def freeze_all():
            for flowing in self._frozen:
                flowing.clear()
        self._loop.call_soon_threadsafe(freeze_all)

    def stop(self) -> None:
        async def close():
            self._server.close()
            carrying = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in carrying:
                task.cancel()
            await asyncio.gather(*carrying, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _carry(self, client_reader, client_writer) -> None:
        self.connections += 1
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        flowing = asyncio.Event()
        flowing.set()
        self._frozen.append(flowing)

        async def pump(reader, writer):
            while True:
                data = await reader.read(65536)
                await flowing.wait()  # frozen: what was read is held, nothing more is read
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer),
                             return_exceptions=True)


@pytest.fixture
def proxy(csms):
    port = int(csms.url.rsplit(":", 1)[1])
    proxy = FreezingProxy(port)
    proxy.start()
    yield proxy
    proxy.stop()


def meter_values_count(csms) -> int:
    """MeterValues of 1.6 transactions, TransactionEvents with a meterValue of 2.0.1 ones."""
    return sum(t.get("meter_values_count", 0) + sum(1 for e in t.get("events", []) if e.get("meter_value"))
               for t in csms.transactions())


def answered_after(csms, seq: int) -> list[dict]:
    """The CALLs the charger sent after message ``seq`` that the central system answered."""
    messages = csms.messages(seq)
    answered = {m["unique_id"] for m in messages if m["direction"] == "sent" and m["message_type"] != "CALL"}
    return [m for m in messages if m["direction"] == "received" and m["message_type"] == "CALL"
            and m["unique_id"] in answered]


def given_up_and_reconnected(csms, proxy, charger, wait_until) -> None:
    """Freezes the link while charging; the charger gives it up within about two ping intervals,
    reconnects and goes on charging, and the central system answers it at once. A meter value
    sent into the frozen link gets no answer: it goes out again at once on the new connection,
    not after the transaction message retry interval (left at its default of 60 s)."""
    tx_id = charger.connector()["transaction_id"]
    connections = proxy.connections
    proxy.freeze()
    frozen_at = time.monotonic()
    wait_until(lambda: not charger.status()["ocpp"]["connected"], 4 * PING_INTERVAL_S + 10, "link given up")
    detected_after = time.monotonic() - frozen_at
    print(f"half-open link detected after {detected_after:.2f} s (WebSocketPingInterval {PING_INTERVAL_S} s)")
    assert detected_after <= 2 * PING_INTERVAL_S + CLOSE_TIMEOUT_S + POLL_SLACK_S, detected_after

    assert charger.connector()["relay_closed"] is True, "charging goes on while offline"
    seq = csms.get("/messages?since=0")["last_seq"]
    wait_until(lambda: charger.status()["ocpp"]["connected"], 15, "reconnected")
    assert proxy.connections == connections + 1
    # The central system serves the new connection at once, while the frozen one still closes: the
    # charger's first calls are answered well within its call timeout, and meter values flow.
    wait_until(lambda: answered_after(csms, seq), 3, "the charger's first call on the new connection answered")
    flowing = meter_values_count(csms)
    wait_until(lambda: meter_values_count(csms) >= flowing + 2, 5, "meter values answered after the reconnect")
    connector = charger.connector()
    assert connector["status"] == "Charging" and connector["transaction_id"] == tx_id
    assert connector["relay_closed"] is True


def test_a_half_open_link_is_given_up_within_two_ping_intervals_and_charging_goes_on(csms, proxy, start_charger,
                                                                                  wait_until):
    charger = start_charger(keys={"WebSocketPingInterval": PING_INTERVAL_S, "MeterValueSampleInterval": 1},
                            csms_url=f"ws://127.0.0.1:{proxy.port}/ocpp")
    charger.start_charging("04A1B2C3")
    assert proxy.connections == 1
    given_up_and_reconnected(csms, proxy, charger, wait_until)


def test_ocpp_2_0_1_a_half_open_link_is_given_up_within_two_ping_intervals_and_charging_goes_on(
        csms, proxy, start_charger, wait_until):
    """The same over OCPP 2.0.1, OCPPCommCtrlr.WebSocketPingInterval set by the CSMS (in force from
    the next connection, which the CSMS then asks for)."""
    charger = start_charger(ocpp='version = "2.0.1"', csms_url=f"ws://127.0.0.1:{proxy.port}/ocpp")
    settings = [("OCPPCommCtrlr", "WebSocketPingInterval", None, PING_INTERVAL_S),
                ("SampledDataCtrlr", "TxUpdatedInterval", None, 1)]
    answer = csms.call("SetVariables", {"setVariableData": [
        {"attributeValue": str(value), "component": {"name": component},
         "variable": {"name": variable, **({"instance": instance} if instance else {})}}
        for component, variable, instance, value in settings]})
    assert {r["attributeStatus"] for r in answer["payload"]["setVariableResult"]} == {"Accepted"}
    csms.post("/disconnect", {"cp": "CP-IT-01"})
    wait_until(lambda: proxy.connections == 2 and charger.status()["ocpp"]["connected"], 15, "reconnected")
    charger.start_charging("04A1B2C3")
    wait_until(lambda: meter_values_count(csms) >= 1, 10, "meter values")
    given_up_and_reconnected(csms, proxy, charger, wait_until)
