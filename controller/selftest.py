"""``evcp check-hardware``: test each device of the charger once, for the installer at the charger.

``check_hardware(config, ...)`` builds the devices exactly as the charger does
(``evcp.runtime.app.build_hardware``, so ``backend = "mock"`` checks the
simulated charger), runs one short check per device and prints ``ok``,
``skipped`` or ``FAILED`` with what was seen:

- relay: the contactor closes for 1 s; with a mirror contact, its feedback must
  follow within 250 ms each way (the time the charger itself allows before it
  calls a contactor welded); without one nothing proves it moved, and the check
  is not verified (skipped). It is switched only after the installer confirmed
  and only while the pilot reads state A (no EV); a pilot that cannot be read,
  or reads E or F, proves nothing, and the check is skipped.
- pilot: the CP state now, with what it means; 6 A offered through the PWM and
  the duty read back, then constant +12 V again.
- reader: the RC522's version register.
- meter: one reading of every register the charger uses, with units.
- power: the level of the UPS / supply-monitor input.
- pp: the proximity pilot of a socket outlet: the cable in it and its rating (with no cable
  in the socket nothing is verified: an unwired PP reads open too).
- lock: the socket's lock actuator moves to locked and back, as its feedback confirms.

On a real charger each device is set up on its own: one that cannot be opened fails its
check and the others still run. A check that could not be run (not confirmed, nothing to
read) is "skipped", which is not a pass: the exit status is 0 only when every check that
applies passed, 1 when one failed, 2 when none failed but some were skipped. A device the
charger does not have (no meter, a tethered cable) is shown as "none" and counts as neither.

Whatever happens (a failure, an exception, Ctrl-C), every contactor is open
when ``check_hardware`` returns or raises.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from evcp.config import Config, ConnectorHardware, MeterConfig
from evcp.hal import HardwareError, MeterSample, iec61851
from evcp.hal.rc522 import CLONE_VERSIONS
from evcp.hal.reader import RC522_VERSIONS
from evcp.runtime.app import build_hardware
from evcp.runtime.hardware import ConnectorDevices, StationHardware

EXIT_PASSED, EXIT_FAILED, EXIT_NOT_VERIFIED = 0, 1, 2

#: The checks ``only`` can select, in the order they are explained.
CHECKS = ("relay", "pilot", "pp", "lock", "reader", "meter", "power")

RELAY_CLOSED_S = 1.0
"""How long the contactor stays closed."""
FEEDBACK_TIMEOUT_S = 0.25
"""How long the mirror contact may take to follow the coil: the 250 ms after which the
charger calls a contactor welded (feedback closed while commanded open)."""
FEEDBACK_POLL_S = 0.005
PILOT_SETTLE_S = 0.05
"""Time for the CP line and the pilot board to settle after the PWM output changed."""
TEST_CURRENT_A = iec61851.MIN_CURRENT_A
"""The current offered to check the PWM: 6 A, the lowest IEC 61851-1 allows (duty 10 %)."""
PWM_BURSTS = 5
"""Bursts of ADC samples taken to see the CP toggle: at 10 % duty the high plateau lasts 100 µs,
and one burst may hold too few samples of it; a CP that does not toggle fails every one."""
METER_READ_MARGIN_S = 1.0
"""Added to the meter's own read deadline, in case a driver does not keep it."""

#: What each CP state means (IEC 61851-1 Annex A, with the EVSE's CP at constant +12 V).
PILOT_STATE_MEANINGS = {
    "A": "+12 V, no EV connected",
    "B": "+9 V, EV connected, not ready to charge",
    "C": "+6 V, EV connected, ready to charge",
    "D": "+3 V, EV connected, ready to charge, ventilation required",
    "E": "0 V, CP shorted to PE or no supply",
    "F": "-12 V, EVSE not available or fault",
}
#: States in which an EV is plugged in: the contactor is then not switched by this check.
EV_CONNECTED_STATES = ("B", "C", "D")
#: The one state that shows no EV is connected: only then is the contactor switched.
NO_EV_STATE = "A"


def confirmation_question(connector: int) -> str:
    return (
        f"The contactor of connector {connector} will close for {RELAY_CLOSED_S:g} s. "
        "Make sure no EV is connected and nobody touches the outlet. Continue? [y/N] "
    )


async def check_hardware(
    config: Config,
    *,
    yes: bool,
    only: set[str] | None,
    ask: Callable[[str], str] = input,
    out: Callable[[str], None] = print,
    hardware: StationHardware | None = None,
) -> int:
    """Check each device once and print what was found: EXIT_PASSED when every check that
    applies passed, EXIT_FAILED when one failed, EXIT_NOT_VERIFIED when some were skipped.

    ``only`` selects some of ``CHECKS`` (None: all); an unknown name raises
    ValueError listing the known ones, before anything is printed or touched.
    Unless ``yes``, ``ask`` is asked before each contactor is switched; any
    answer but y/yes skips that relay check (a skip is not a failure).

    ``hardware`` is for tests: devices built by the caller, who releases them.
    Without it the devices are built from ``config`` like the charger's and
    released at the end. Either way every contactor is open on return, on an
    exception and on cancellation (Ctrl-C).
    """
    selected = _selected_checks(only)
    checker = _Checker(config, selected, out)
    checker.explain()
    confirmed = {
        number: yes or _confirmed(ask, confirmation_question(number))
        for number in range(1, len(config.hardware.connectors) + 1)
        if "relay" in selected
    }

    owns_hardware = hardware is None
    if hardware is None:
        try:
            hardware = await _build_each_device(config, checker.setup_failures)
        except Exception as error:  # noqa: BLE001 - a driver boundary: say what failed, check nothing
            out(f"FAILED: the devices could not be set up: {_describe_error(error)}")
            return EXIT_FAILED
    interrupted = True
    try:
        await checker.run(hardware, confirmed)
        interrupted = False
    finally:
        hardware.open_all_relays()
        if owns_hardware:
            await hardware.release()
        if interrupted:
            out("Stopped early: every contactor is open.")
    return checker.exit_status()


async def _build_each_device(config: Config, failures: dict[str, str]) -> StationHardware:
    """The devices of ``config``; on a real charger each on its own, a device that cannot be set
    up is left out and its error kept in ``failures`` under its check's label."""
    if config.hardware.backend != "pi":
        return await build_hardware(config)
    from evcp.hal import factory

    def built(label: str, build, *args):
        try:
            return build(*args)
        except Exception as error:  # noqa: BLE001 - a driver boundary: that device's failure
            failures[label] = _describe_error(error)
            return None

    hardware = StationHardware(connectors=[], reader=None)
    serial_links: dict = {}  # serial port -> its ModbusLink: meters on one RS-485 bus share it
    for number, wiring in enumerate(config.hardware.connectors, start=1):
        hardware.connectors.append(ConnectorDevices(
            relay=built(f"connector {number} relay", factory.relay_for, wiring),
            pilot=built(f"connector {number} pilot", factory.pilot_for, wiring),
            meter=built(f"connector {number} meter", factory.meter_for, wiring, serial_links),
            cable=built(f"connector {number} PP", factory.cable_sensor_for, wiring),
            lock=built(f"connector {number} lock", factory.lock_for, wiring),
        ))
    for number, problem in factory.shared_pwm_channels([d.pilot for d in hardware.connectors]).items():
        failures[f"connector {number} pilot"] = problem
    hardware.reader = built("reader", factory.reader_for, config.hardware)
    hardware.power_fail = built("power-fail input", factory.power_fail_for, config.hardware)
    return hardware


def _selected_checks(only: set[str] | None) -> tuple[str, ...]:
    if only is None:
        return CHECKS
    unknown = sorted(set(only) - set(CHECKS))
    if unknown or not only:
        what = "unknown check " + ", ".join(repr(name) for name in unknown) if unknown else "no check selected"
        raise ValueError(f"{what}; known checks: {', '.join(CHECKS)}")
    return tuple(name for name in CHECKS if name in only)


def _confirmed(ask: Callable[[str], str], question: str) -> bool:
    try:
        answer = ask(question)
    except EOFError:  # no terminal: nobody confirmed
        return False
    return answer.strip().lower() in ("y", "yes")


@dataclass
class _Tally:
    passed: int = 0
    skipped: int = 0
    failed: int = 0
    absent: int = 0


class _Checker:
    def __init__(self, config: Config, selected: tuple[str, ...], out: Callable[[str], None]):
        self.config = config
        self.selected = selected
        self.out = out
        self.tally = _Tally()
        self.mock = config.hardware.backend == "mock"
        self.setup_failures: dict[str, str] = {}
        """Check label -> why its device could not be set up."""

    # -- printing ------------------------------------------------------------

    def ok(self, label: str, detail: str = "") -> None:
        self.tally.passed += 1
        self.out(f"{label}: ok" + (f" ({detail})" if detail else ""))

    def skip(self, label: str, reason: str) -> None:
        self.tally.skipped += 1
        self.out(f"{label}: skipped ({reason})")

    def fail(self, label: str, problem: str) -> None:
        self.tally.failed += 1
        self.out(f"{label}: FAILED: {problem}")

    def none(self, label: str, reason: str) -> None:
        """The charger does not have this device: nothing to check, not a skip."""
        self.tally.absent += 1
        self.out(f"{label}: none ({reason})")

    def exit_status(self) -> int:
        if self.tally.failed:
            return EXIT_FAILED
        return EXIT_NOT_VERIFIED if self.tally.skipped else EXIT_PASSED

    def explain(self) -> None:
        hardware = self.config.hardware
        where = 'backend "mock": simulated devices' if self.mock else 'backend "pi"'
        self.out(f"Hardware check of charge point {self.config.charge_point.id} ({where}). It will:")
        for number, wiring in enumerate(hardware.connectors, start=1):
            if "pilot" in self.selected:
                pilot = wiring.pilot
                source = "the pilot board" if pilot.backend == "gpio" else (
                    f"{pilot.adc_chip.upper()} channel {pilot.adc_channel}")
                duty = iec61851.duty_for_current(TEST_CURRENT_A) * 100
                self.out(f"  connector {number} pilot: read the CP state from {source}, offer "
                         f"{TEST_CURRENT_A:g} A (duty {duty:g} % on the PWM of GPIO{pilot.pwm_pin}), "
                         "then constant +12 V")
            if "pp" in self.selected:
                pp = wiring.pp
                action = (f"read the cable's rating from {pp.adc_chip.upper()} channel {pp.adc_channel}"
                          if pp.backend == "adc" else "none (no proximity pilot: a tethered cable)")
                self.out(f"  connector {number} PP: {action}")
            if "lock" in self.selected:
                lock = wiring.lock
                action = (f"move the {lock.actuator} lock (GPIO{lock.lock_pin}) to locked and back, watching its "
                          f"feedback on GPIO{lock.feedback_pin}" if lock.backend == "gpio"
                          else "none (no lock actuator)")
                self.out(f"  connector {number} lock: {action}")
            if "relay" in self.selected:
                feedback = wiring.relay.feedback_pin
                watch = f"watch the mirror contact on GPIO{feedback}" if feedback is not None else (
                    "no mirror contact to watch (switched, not verified)")
                self.out(f"  connector {number} relay: if no EV is plugged in, close the contactor "
                         f"(GPIO{wiring.relay.pin}) for {RELAY_CLOSED_S:g} s, {watch}")
            if "meter" in self.selected:
                meter = (f"the simulated {hardware.mock.meter_model} meter" if self.mock
                         else _meter_description(wiring.meter))
                action = "not configured (meter.backend = \"none\")" if meter is None else f"read {meter} once"
                self.out(f"  connector {number} meter: {action}")
        if "reader" in self.selected:
            reader = hardware.reader
            if reader.backend == "none":
                self.out('  reader: none configured (hardware.reader.backend = "none")')
            elif self.mock:
                self.out("  reader: the simulated reader (no chip to read)")
            else:
                self.out(f"  reader: read the RC522 version register on "
                         f"/dev/spidev{reader.spi_bus}.{reader.spi_device}")
        if "power" in self.selected:
            pin = hardware.power_fail_pin
            if pin is not None:
                self.out(f"  power-fail input: read GPIO{pin}")
            elif self.mock:
                self.out("  power-fail input: read the simulated UPS input")
            else:
                self.out("  power-fail input: none configured (hardware.power_fail_pin is not set)")

    # -- the checks ----------------------------------------------------------

    async def run(self, hardware: StationHardware, confirmed: dict[int, bool]) -> None:
        for number, (devices, wiring) in enumerate(
            zip(hardware.connectors, self.config.hardware.connectors), start=1
        ):
            pilot_state: str | None = None
            if "pilot" in self.selected:
                pilot_state = await self._guarded(f"connector {number} pilot", self.check_pilot,
                                                  devices, wiring)
            elif "relay" in self.selected:
                pilot_state = await _quiet_pilot_state(devices)
            if "pp" in self.selected:
                await self._guarded(f"connector {number} PP", self.check_pp, devices, wiring)
            if "lock" in self.selected:
                await self._guarded(f"connector {number} lock", self.check_lock, devices, wiring)
            if "relay" in self.selected:
                await self._guarded(f"connector {number} relay", self.check_relay,
                                    devices, wiring, confirmed[number], pilot_state)
            if "meter" in self.selected:
                await self._guarded(f"connector {number} meter", self.check_meter, devices)
        if "reader" in self.selected:
            await self._guarded("reader", self.check_reader, hardware)
        if "power" in self.selected:
            await self._guarded("power-fail input", self.check_power_fail, hardware)
        tally = self.tally
        if tally.failed:
            verdict = f"{tally.failed} FAILED"
        elif tally.skipped:
            verdict = f"no failure, but {tally.skipped} not verified"
        else:
            verdict = "all checks passed"
        absent = f", {tally.absent} none" if tally.absent else ""
        self.out(f"Result: {verdict} ({tally.passed} ok, {tally.skipped} skipped, {tally.failed} failed{absent})")

    async def _guarded(self, label: str, check, *args):
        """Run one check; an exception it raises is that check's failure, not the end of all."""
        if label in self.setup_failures:
            self.fail(label, f"could not be set up: {self.setup_failures[label]}")
            return None
        try:
            return await check(label, *args)
        except Exception as error:  # noqa: BLE001 - the installer sees the exact error
            self.fail(label, _describe_error(error))
            return None

    async def check_relay(self, label: str, devices: ConnectorDevices, wiring: ConnectorHardware,
                          confirmed: bool, pilot_state: str | None) -> None:
        relay = devices.relay
        if not confirmed:
            self.skip(label, "not confirmed: the contactor was not switched")
            return
        if pilot_state in EV_CONNECTED_STATES:
            self.fail(label, f"not switched: the pilot reads state {pilot_state}: "
                             f"{PILOT_STATE_MEANINGS[pilot_state]}; unplug the EV and check again")
            return
        if pilot_state != NO_EV_STATE:
            seen = ("the pilot could not be read" if pilot_state is None
                    else f"the pilot reads state {pilot_state}: {PILOT_STATE_MEANINGS[pilot_state]}")
            self.skip(label, f"not verified: {seen}, so nothing shows that no EV is connected; the contactor "
                             f"was not switched (it is only while the pilot reads state {NO_EV_STATE})")
            return
        mirror = f"the mirror contact on GPIO{wiring.relay.feedback_pin}"
        relay.open()
        if relay.feedback_closed():
            self.fail(label, f"welded contactor: {mirror} says closed while the coil is off; not switched "
                             "(if the contactor is really open, check the mirror contact's wiring, "
                             "relay.feedback_active_high and relay.feedback_pull: a broken wire reads closed)")
            return
        has_feedback = relay.feedback_closed() is not None
        closed_after = None
        try:
            switched_at = time.monotonic()
            relay.close()
            if has_feedback:
                closed_after = await _feedback_after(relay, closed=True)
                if closed_after is None:
                    relay.open()
                    self.fail(label, f"the coil is on but {mirror} still says open after "
                                     f"{FEEDBACK_TIMEOUT_S * 1000:g} ms (no coil supply, contactor stuck "
                                     "open, or the mirror contact is not wired)")
                    return
            await asyncio.sleep(max(0.0, RELAY_CLOSED_S - (time.monotonic() - switched_at)))
        finally:
            relay.open()
        if not has_feedback:
            # Software saw the coil commanded, nothing more: skipped is not passed.
            self.skip(label, f"not verified: switched for {RELAY_CLOSED_S:g} s; no feedback input to prove it "
                             "moved: listen for the contactor closing and opening, or measure the voltage at the "
                             "outlet while it is closed (a mirror contact on relay.feedback_pin lets this check "
                             "verify it)")
            return
        opened_after = await _feedback_after(relay, closed=False)
        if opened_after is None:
            self.fail(label, f"welded contactor: {mirror} still says closed "
                             f"{FEEDBACK_TIMEOUT_S * 1000:g} ms after the coil was switched off")
            return
        self.ok(label, f"{mirror} followed: closed after {closed_after * 1000:.0f} ms, "
                       f"open again after {opened_after * 1000:.0f} ms")

    async def check_pilot(self, label: str, devices: ConnectorDevices, wiring: ConnectorHardware) -> str | None:
        pilot = devices.pilot
        # Constant +12 V first: the idle level against which the EV's resistors show
        # its state (IEC 61851-1 Annex A); the pilot starts at -12 V (state F).
        pilot.stop_offer()
        await asyncio.sleep(PILOT_SETTLE_S)
        measure = getattr(pilot, "measure", None)  # the ADC backend measures the levels
        if measure is not None:
            idle = await asyncio.to_thread(measure)
            state = idle.state
            levels = f"CP {idle.high_v:+.1f} V" if idle.high_v is not None else "no steady CP level"
        else:
            state = pilot.read_state()
            levels = ""
        if state is None:
            if measure is not None:
                problem = (f"{levels} fits no state of IEC 61851-1 Annex A "
                           "(check the divider, pilot.volts_per_count and pilot.offset_v)")
            else:
                problem = ("the pilot board reports charge without vehicle, which is no state "
                           "(check its wiring and pilot.inputs_active_high)")
            self.fail(label, problem)
            return None
        reading = f"state {state}: {PILOT_STATE_MEANINGS[state]}" + (f"; {levels}" if levels else "")
        if state in ("E", "F"):
            # With +12 V applied, E or F means a fault on the CP line, not an EV.
            self.fail(label, f"{reading}; the charger applies +12 V, so the CP line or the pilot board is faulty")
            return state
        pwm_problem, pwm_result = self._check_pwm(devices, wiring)
        # The files read back are the driver's own: only the CP itself shows that this chip
        # drives the pin (hal-realism #5), so name the chip's device and, with an ADC, watch the CP.
        location = getattr(getattr(pilot, "pwm", None), "location", None)
        if location is not None:
            device = location.device if location.device is not None else "no device link"
            pwm_result += f"; PWM device {device} (pwmchip{location.chip} channel {location.channel})"
        if measure is not None and not pwm_problem:
            try:
                pilot.offer_current(TEST_CURRENT_A)
                await asyncio.sleep(PILOT_SETTLE_S)
                running = None
                for _ in range(PWM_BURSTS):
                    burst = await asyncio.to_thread(measure)
                    if running is None or (burst.high_v is not None and burst.low_v is not None):
                        running = burst  # the one to judge: the last that saw both plateaus
                    low_ok = (running.low_v is not None
                              and abs(running.low_v - iec61851.NOMINAL_LOW_V) <= iec61851.WINDOW_V)
                    high_ok = running.high_v is not None and abs(running.high_v - idle.high_v) <= iec61851.WINDOW_V
                    if low_ok and high_ok:
                        break
            finally:
                pilot.stop_offer()
            if low_ok and high_ok:
                pwm_result += f"; the CP toggles between {running.high_v:+.1f} V and {running.low_v:+.1f} V"
            else:
                seen = " and ".join(f"{v:+.1f} V" for v in (running.high_v, running.low_v) if v is not None)
                diode = running.high_v is not None and iec61851.is_diode_fault(running.high_v, running.low_v)
                why = ("the EV's diode is missing or shorted, or the CP driver has no -12 V supply" if diode
                       else "check pilot.pwm_pin, the PWM overlay in config.txt and the CP driver's -12 V supply")
                pwm_problem = (f"with {TEST_CURRENT_A:g} A offered the CP shows {seen or 'no steady level'}, "
                               f"not {idle.high_v:+.1f} V and -12 V: {why}")
        if pwm_problem:
            self.fail(label, f"{reading}; PWM: {pwm_problem}")
        else:
            self.ok(label, f"{reading}; {pwm_result}")
        return state

    def _check_pwm(self, devices: ConnectorDevices, wiring: ConnectorHardware) -> tuple[str, str]:
        """Offer TEST_CURRENT_A, read the duty back, return to +12 V: (problem, what was seen)."""
        pilot = devices.pilot
        expected = iec61851.duty_for_current(TEST_CURRENT_A)  # IEC 61851-1 Table A.7: 6 A = 10 %
        # The PwmOutput is not part of the Pilot interface; the drivers keep it here.
        pwm = getattr(pilot, "_pwm", None)
        try:
            pilot.offer_current(TEST_CURRENT_A)
            if pwm is None:
                seen = pilot.offered_current
                if seen != TEST_CURRENT_A:
                    return f"offered {TEST_CURRENT_A:g} A but the pilot reports {seen}", ""
                seen_text = f"offered {TEST_CURRENT_A:g} A (PWM not readable)"
            else:
                problem, seen_text = _read_back(pwm, expected, wiring.pilot.pwm_invert)
                if problem:
                    return f"offered {TEST_CURRENT_A:g} A: {problem}", ""
        finally:
            pilot.stop_offer()
        if pwm is not None:
            problem, _ = _read_back(pwm, 1.0, wiring.pilot.pwm_invert)
            if problem:
                return f"back to constant +12 V: {problem}", ""
        return "", f"PWM {TEST_CURRENT_A:g} A: {seen_text}, then back to constant +12 V"

    async def check_meter(self, label: str, devices: ConnectorDevices) -> None:
        meter = devices.meter
        if meter is None:
            self.none(label, 'meter.backend = "none"')
            return
        name = getattr(meter, "name", "the meter")
        try:
            async with asyncio.timeout(getattr(meter, "read_deadline_s", 5.0) + METER_READ_MARGIN_S):
                sample = await meter.read()
        except Exception as error:  # noqa: BLE001 - MeterError, or a driver that broke its promise
            message = _describe_error(error) if not isinstance(error, TimeoutError) else (
                f"{name}: no answer")
            settings = _serial_settings(getattr(meter, "config", None))
            self.fail(label, message + (f" (settings used: {settings})" if settings else ""))
            return
        register_map = getattr(getattr(meter, "register_map", None), "model", "unknown")
        self.ok(label, f"register map {register_map}")
        for line in [name, *_sample_lines(sample)]:
            self.out("    " + line)

    async def check_reader(self, label: str, hardware: StationHardware) -> None:
        reader_config = self.config.hardware.reader
        if reader_config.backend == "none":
            self.none(label, 'hardware.reader.backend = "none"')
            return
        read_version = getattr(hardware.reader, "read_version", None)
        if read_version is None:
            self.ok(label, "simulated reader: no chip to read" if self.mock
                    else f"{type(hardware.reader).__name__} has no version register to read")
            return
        where = f"RC522 on /dev/spidev{reader_config.spi_bus}.{reader_config.spi_device}"
        version = await asyncio.to_thread(read_version)
        if version in RC522_VERSIONS:
            self.ok(label, f"{where}: version register {version:#04x}, {RC522_VERSIONS[version]}")
            return
        if version in CLONE_VERSIONS:
            self.ok(label, f"{where}: version register {version:#04x}, {CLONE_VERSIONS[version]}; not a "
                           "genuine MFRC522 v1.0/v2.0, it usually reads cards the same (fit a genuine module "
                           "if cards are missed)")
            return
        expected = " or ".join(f"{value:#04x}" for value in RC522_VERSIONS)
        hint = " (nothing answers: check the SPI wiring, the chip select and dtparam=spi=on)" if (
            version in (0x00, 0xFF)) else " (not an MFRC522, nor a clone this charger knows)"
        self.fail(label, f"{where}: version register reads {version:#04x}, expected {expected}{hint}")

    async def check_pp(self, label: str, devices: ConnectorDevices, wiring: ConnectorHardware) -> None:
        sensor = devices.cable
        if sensor is None:
            self.none(label, "no proximity pilot: a tethered cable" if self.config.charge_point.cable == "tethered"
                      else 'hardware.connectors.pp.backend = "none"')
            return
        reading = await asyncio.to_thread(sensor.read)
        where = f"{wiring.pp.adc_chip.upper()} channel {wiring.pp.adc_channel}"
        if reading.problem:
            self.fail(label, f"{where}: {reading.problem} (check the PP pull-up, pp.pullup_ohm and the cable)")
        elif reading.rating_a is None:
            # An unwired or broken PP reads open as well: only a cable's resistor proves the input.
            self.skip(label, f"not verified: no cable in the socket; {where} reads open, as an unwired PP "
                             "would: plug a cable in to read its rating")
        else:
            self.ok(label, f"{where}: a {reading.rating_a:g} A cable (Rc {reading.ohms:.0f} Ohm)")

    async def check_lock(self, label: str, devices: ConnectorDevices, wiring: ConnectorHardware) -> None:
        lock = devices.lock
        if lock is None:
            self.none(label, "no lock actuator" if wiring.lock.backend == "none"
                      else 'hardware.connectors.lock.backend = "none"')
            return
        feedback = f"feedback on GPIO{wiring.lock.feedback_pin}"
        started = time.monotonic()
        locked = await asyncio.to_thread(lock.lock)
        locked_after = time.monotonic() - started
        started = time.monotonic()
        still_locked = await asyncio.to_thread(lock.unlock)
        unlocked_after = time.monotonic() - started
        timeout = f"{wiring.lock.timeout_s:g} s"
        if not locked:
            self.fail(label, f"the {feedback} did not confirm locked within {timeout} (actuator jammed, not "
                             "powered, or the feedback not wired; lock.feedback_active_high?)")
        elif still_locked:
            self.fail(label, f"the {feedback} still says locked {timeout} after unlocking: the plug would "
                             "stay held (actuator jammed or feedback stuck)")
        else:
            self.ok(label, f"{wiring.lock.actuator} lock, {feedback}: locked after {locked_after * 1000:.0f} ms, "
                           f"unlocked after {unlocked_after * 1000:.0f} ms")

    async def check_power_fail(self, label: str, hardware: StationHardware) -> None:
        power_fail = hardware.power_fail
        if power_fail is None:
            self.none(label, "hardware.power_fail_pin is not set")
            return
        pin = self.config.hardware.power_fail_pin
        where = f"GPIO{pin}: " if pin is not None else ""
        power_fail.failing  # a first reading starts the hold time of a level that just changed
        await asyncio.sleep(power_fail.hold_s * 1.1)  # a level is believed once it held this long
        if power_fail.failing:
            self.fail(label, f"{where}asserted: it says the mains is failing; if the mains is on, check the "
                             "wiring and hardware.power_fail_active_high (the charger would stop every "
                             "transaction)")
        else:
            self.ok(label, f"{where}not asserted: mains present")


async def _quiet_pilot_state(devices: ConnectorDevices) -> str | None:
    """The CP state at constant +12 V, or None when it cannot be read (the relay check is then
    skipped)."""
    try:
        devices.pilot.stop_offer()
        await asyncio.sleep(PILOT_SETTLE_S)
        return devices.pilot.read_state()
    except Exception:  # noqa: BLE001 - only a safety interlock; the pilot check reports errors
        return None


async def _feedback_after(relay, *, closed: bool) -> float | None:
    """Seconds until the mirror contact says ``closed``, or None after FEEDBACK_TIMEOUT_S."""
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if relay.feedback_closed() == closed:
            return elapsed
        if elapsed > FEEDBACK_TIMEOUT_S:
            return None
        await asyncio.sleep(FEEDBACK_POLL_S)


def _read_back(pwm, expected_duty: float, inverted: bool) -> tuple[str, str]:
    """Compare the PWM's duty with ``expected_duty`` (as seen on the CP): (problem, what was seen).

    A sysfs PWM is read back from the kernel's files, so what the hardware holds is checked,
    not only what the driver remembers.
    """
    remembered = pwm.duty
    if remembered is None or abs(remembered - expected_duty) > 1e-9:
        held = "nothing" if remembered is None else _percent(remembered)
        return f"duty should be {_percent(expected_duty)}, the PWM output holds {held}", ""
    path = getattr(pwm, "path", None)
    if path is None:
        return "", f"duty {_percent(remembered)}"
    try:
        period_ns = int((Path(path) / "period").read_text())
        duty_ns = int((Path(path) / "duty_cycle").read_text())
        enabled = (Path(path) / "enable").read_text().strip() == "1"
    except (OSError, ValueError) as error:
        return f"cannot read {path} back: {error}", ""
    pin_duty = duty_ns / period_ns if period_ns else float("nan")
    seen = 1.0 - pin_duty if inverted else pin_duty
    if not enabled or abs(seen - expected_duty) > 1e-6:
        state = "enabled" if enabled else "disabled"
        return (f"duty should be {_percent(expected_duty)}, {path} holds duty_cycle {duty_ns} ns of "
                f"period {period_ns} ns, {state}"), ""
    frequency = f"{1e9 / period_ns:g} Hz" if period_ns != 1_000_000 else "1 kHz"
    return "", f"duty {_percent(seen)} at {frequency}, read back from {path}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"


def _meter_description(meter: MeterConfig) -> str | None:
    if meter.backend == "none":
        return None
    if meter.backend == "modbus-rtu":
        return (f"the {meter.model} meter on {meter.serial_port} (device {meter.device_id}, "
                f"{_serial_settings(meter)})")
    return f"the {meter.model} meter at {meter.host}:{meter.port} (device {meter.device_id})"


def _serial_settings(meter: MeterConfig | None) -> str:
    if meter is None or meter.backend != "modbus-rtu":
        return ""
    return f"{meter.baudrate} baud, 8{meter.parity}{meter.stopbits}"


def _sample_lines(sample: MeterSample) -> list[str]:
    lines = [f"energy   {sample.energy_wh / 1000:.3f} kWh", f"power    {sample.power_w:.0f} W"]
    if sample.voltage_v:
        lines.append("voltage  " + "   ".join(
            f"L{phase} {volts:.1f} V" for phase, volts in enumerate(sample.voltage_v, start=1)))
    if sample.current_a:
        lines.append("current  " + "   ".join(
            f"L{phase} {amps:.2f} A" for phase, amps in enumerate(sample.current_a, start=1)))
    return lines


def _describe_error(error: BaseException) -> str:
    if isinstance(error, HardwareError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
