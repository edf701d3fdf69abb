"""The deadman opens a closed contactor when the control loop stalls beyond 0.5 s, and only then."""

from __future__ import annotations

import asyncio
import time

from evcp.config import RelayConfig
from evcp.hal.relay import GpioRelay
from evcp.mocks.pins import energised
from evcp.runtime.deadman import STALL_LIMIT_S, Deadman, must_open

from tests.runtime.test_controller import charging

COIL = 17


def test_must_open_only_with_a_closed_contactor_and_a_stall_beyond_the_limit():
    assert must_open(now=10.6, loop_advanced_at=10.0, contactor_closed=True)
    assert not must_open(now=10.5, loop_advanced_at=10.0, contactor_closed=True)  # not *more* than 0.5 s
    assert not must_open(now=10.4, loop_advanced_at=10.0, contactor_closed=True)
    assert not must_open(now=99.0, loop_advanced_at=10.0, contactor_closed=False)
    assert must_open(now=10.3, loop_advanced_at=10.0, contactor_closed=True, limit_s=0.2)


def test_check_opens_once_per_stall_and_reports_it_to_the_loop():
    now = [100.0]
    advanced = [100.0]
    closed = [True]
    opened = []

    def open_relays():
        opened.append(now[0])
        closed[0] = False

    deadman = Deadman(lambda: advanced[0], lambda: closed[0], open_relays, clock=lambda: now[0])
    now[0] = 100.4
    assert not deadman.check() and not opened
    now[0] = 100.51
    assert deadman.check()
    assert opened == [100.51] and deadman.tripped == 1
    assert round(deadman.take_trip(), 2) == 0.51
    assert deadman.take_trip() is None  # cleared by reading
    now[0] = 105.0
    assert not deadman.check(), "nothing closed any more: nothing to do"
    assert deadman.tripped == 1


def test_an_unreadable_contactor_state_counts_as_closed():
    opened = []

    def broken():
        raise RuntimeError("no state")

    deadman = Deadman(lambda: 0.0, broken, lambda: opened.append(True), clock=lambda: 1.0)
    assert deadman.check() and opened


def test_a_blocked_event_loop_gets_the_relay_opened(pins):
    """The thread and a real GpioRelay on mock pins: the loop closes the relay, then blocks."""
    relay = GpioRelay(RelayConfig(pin=COIL))
    coil = pins.pin(COIL)
    advanced = [time.monotonic()]
    deadman = Deadman(lambda: advanced[0], lambda: relay.is_closed, relay.open)

    async def control_loop() -> tuple[float, float]:
        deadman.start()
        relay.close()
        deadman.arm()
        for _ in range(30):  # 0.3 s of a healthy loop: the deadman stays quiet
            advanced[0] = time.monotonic()
            await asyncio.sleep(0.01)
        assert energised(coil) and deadman.tripped == 0
        coil.clear_states()  # the states' timestamps now count from here
        blocked_at = time.monotonic()
        time.sleep(1.2)  # a callback that blocks the loop
        return time.monotonic() - blocked_at, [tuple(state) for state in coil.states]

    try:
        blocked_for, states = asyncio.run(control_loop())
    finally:
        deadman.stop()
        relay.release()
    assert deadman.tripped == 1
    # The coil went to its off level once, while the loop was still blocked, 0.5 s after its last advance.
    assert states[0][1]
    (off_after, level), = states[1:]
    assert not level
    assert STALL_LIMIT_S - 0.02 <= off_after <= STALL_LIMIT_S + 0.3, off_after
    assert off_after < blocked_for


def test_no_trip_while_the_loop_advances_or_nothing_is_closed(pins):
    relay = GpioRelay(RelayConfig(pin=COIL))
    advanced = [time.monotonic()]
    deadman = Deadman(lambda: advanced[0], lambda: relay.is_closed, relay.open)
    deadman.start()
    try:
        time.sleep(0.8)  # nothing closed, the loop "stalled": no reason to act
        relay.close()
        deadman.arm()
        for _ in range(80):
            advanced[0] = time.monotonic()
            time.sleep(0.01)
        assert relay.is_closed and deadman.tripped == 0
    finally:
        deadman.stop()
        relay.release()


async def test_a_charger_whose_loop_blocks_opens_the_contactor_and_the_core_hears_of_it(tmp_path):
    charger, task, csms = await charging(tmp_path)
    coil = charger.hardware.bench.simulated[0].contactor
    assert coil.coil_energised
    time.sleep(1.0)  # blocks the charger's event loop (this test runs in it)
    assert not coil.coil_energised, "the deadman thread opened the contactor while the loop was blocked"
    assert charger.controller.deadman.tripped == 1
    for _ in range(40):
        await asyncio.sleep(0.05)
        if not charger.controller.station.connectors[1].relay_closed:
            break
    assert not charger.controller.station.connectors[1].relay_closed, "the core knows the contactor is open"
    assert not coil.coil_energised
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await csms.stop()
