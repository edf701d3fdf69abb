"""The power-fail input over gpiozero's MockFactory: a level counts only after its hold time."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from evcp.config import ConfigError
from evcp.hal.power import DEFAULT_HOLD_S, PowerFailInput, debounced_level

PIN = 4


def test_debounced_level_changes_only_after_the_hold():
    assert debounced_level(False, True, raw_since=10.0, now=10.05, hold_s=0.1) is False
    assert debounced_level(False, True, raw_since=10.0, now=10.11, hold_s=0.1) is True
    assert debounced_level(True, False, raw_since=10.0, now=10.09, hold_s=0.1) is True
    assert debounced_level(True, False, raw_since=10.0, now=10.2, hold_s=0.1) is False
    assert debounced_level(True, True, raw_since=10.0, now=10.0, hold_s=0.1) is True
    assert debounced_level(False, True, raw_since=10.0, now=10.0, hold_s=0.0) is True  # no hold


def test_default_hold_is_100_ms(pins):
    assert DEFAULT_HOLD_S == 0.1
    assert PowerFailInput(PIN, pin_factory=pins).hold_s == 0.1


def test_asserted_counts_after_the_hold_and_released_after_it_again(pins):
    now = [0.0]
    line = pins.pin(PIN)
    line.drive_high()  # active low, pulled up: mains good
    power = PowerFailInput(PIN, active_high=False, pin_factory=pins, hold_s=0.1, clock=lambda: now[0])
    assert not power.failing
    line.drive_low()
    now[0] = 0.01
    assert not power.failing
    now[0] = 0.109
    assert not power.failing
    now[0] = 0.111
    assert power.failing
    line.drive_high()
    now[0] = 0.15
    assert power.failing, "mains back for 39 ms only: still failing"
    now[0] = 0.25
    assert not power.failing
    power.release()


def test_a_glitch_shorter_than_the_hold_is_never_failing(pins):
    line = pins.pin(PIN)
    line.drive_high()
    power = PowerFailInput(PIN, active_high=False, pin_factory=pins, hold_s=0.1)
    seen: list[bool] = []
    calls = threading.Event()

    def on_change():
        seen.append(power.failing)
        calls.set()

    power.watch(on_change)
    line.drive_low()
    time.sleep(0.03)  # a 30 ms glitch
    line.drive_high()
    time.sleep(0.3)  # the hold timers of both edges have run out
    assert seen and not any(seen), seen
    assert not power.failing
    power.release()


def test_a_real_failure_is_reported_once_the_hold_has_passed(pins):
    line = pins.pin(PIN)
    line.drive_high()
    power = PowerFailInput(PIN, active_high=False, pin_factory=pins, hold_s=0.1)
    seen: list[tuple[float, bool]] = []
    power.watch(lambda: seen.append((time.monotonic(), power.failing)))
    started = time.monotonic()
    line.drive_low()
    time.sleep(0.3)
    assert power.failing
    assert seen[0][1] is False, "at the edge itself: not yet"
    failing_at = min(t for t, failing in seen if failing)
    assert 0.1 <= failing_at - started < 0.25, "told again as soon as the hold has passed"
    power.release()


def test_an_input_that_cannot_be_read_raises_a_hardware_error_naming_it_and_still_reports_edges(pins):
    from evcp.hal import HardwareError

    line = pins.pin(PIN)
    line.drive_high()
    power = PowerFailInput(PIN, active_high=False, pin_factory=pins, hold_s=0.1)
    told = threading.Event()
    power.watch(told.set)

    def unreadable():
        raise OSError("lgpio error: bad handle")

    line._get_state = unreadable
    with pytest.raises(HardwareError, match=f"power-fail input: cannot read GPIO{PIN}: lgpio error: bad handle"):
        power.failing
    line.drive_low()  # an edge while the line cannot be read: the watcher is told all the same, and hears
    assert told.wait(1.0)  # the error when it reads
    del line._get_state
    assert not power.failing, "the hold time starts at the first reading of the new level"
    time.sleep(0.15)
    assert power.failing
    power.release()


def test_power_fail_hold_is_range_checked(tmp_path):
    from evcp.config import load

    base = ('[charge_point]\nid = "CP-1"\ncable = "tethered"\n[ocpp]\ncsms_url = "ws://127.0.0.1:9/ocpp"\n'
            '[hardware]\nbackend = "mock"\n')
    path = tmp_path / "evcp.toml"
    path.write_text(base + "power_fail_hold_s = 0.25\n")
    assert load(path).hardware.power_fail_hold_s == 0.25
    assert load_default(tmp_path, base) == 0.1
    path.write_text(base + "power_fail_hold_s = 3\n")
    with pytest.raises(ConfigError, match=r"hardware.power_fail_hold_s: must be 0..2 s \(got 3\)"):
        load(path)


def load_default(tmp_path, text: str) -> float:
    from evcp.config import load

    path = tmp_path / "default.toml"
    path.write_text(text)
    return load(path).hardware.power_fail_hold_s


async def test_a_charger_ignores_a_glitch_and_stops_on_a_real_power_failure(tmp_path):
    from tests.runtime.test_controller import charging

    charger, task, csms = await charging(tmp_path)
    bench = charger.hardware.bench
    station = charger.controller.station
    bench.set_power_failing(True)
    await asyncio.sleep(0.03)
    bench.set_power_failing(False)
    await asyncio.sleep(0.4)
    assert station.connectors[1].transaction is not None, "a 30 ms glitch stops nothing"
    assert charger.hardware.connectors[0].relay.is_closed
    bench.set_power_failing(True)
    for _ in range(40):
        await asyncio.sleep(0.05)
        if station.connectors[1].transaction is None:
            break
    assert station.connectors[1].transaction is None, "a failure held for longer than 100 ms stops it"
    assert not charger.hardware.connectors[0].relay.is_closed
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await csms.stop()
