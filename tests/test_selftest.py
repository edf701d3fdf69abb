"""``evcp check-hardware`` against the simulated charger (backend "mock")."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from evcp.bench import bench_config
from evcp.config import loads
from evcp.hal import HardwareError
from evcp.hal.meter import ModbusMeter
from evcp.hal.reader import Mfrc522Reader
from evcp.mocks.meter_server import SimulatedMeter
from evcp.mocks.rc522_chip import SimulatedRc522
from evcp.runtime.app import build_hardware
from evcp.selftest import CHECKS, EXIT_NOT_VERIFIED, check_hardware, confirmation_question

def mock_config(state_dir: Path, extra: str = ""):
    """A one-connector simulated charger; ``extra`` adds TOML tables."""
    text = f"""
[charge_point]
id = "CP-SELFTEST"
[ocpp]
csms_url = "ws://127.0.0.1:9/ocpp"
[hardware]
backend = "mock"
[storage]
state_dir = "{state_dir}"
{extra}
"""
    return loads(text, state_dir / "evcp.toml")


class Console:
    """Stands in for input() and print(): scripted answers, captured lines."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.questions: list[str] = []
        self.lines: list[str] = []

    def ask(self, question: str) -> str:
        self.questions.append(question)
        return self.answers.pop(0)

    def out(self, line: str) -> None:
        self.lines.append(line)

    def line(self, start: str) -> str:
        found = [line for line in self.lines if line.startswith(start)]
        assert len(found) == 1, f"expected one line starting {start!r} in:\n" + "\n".join(self.lines)
        return found[0]

    def has(self, start: str) -> bool:
        return any(line.startswith(start) for line in self.lines)


@pytest.fixture
def config(tmp_path):
    return bench_config(tmp_path, api_port=0)


@pytest.fixture
async def hardware(config):
    """The simulated charger of ``config``, a 32 A cable in its socket (no EV at the other end), as
    an installer checks it; the test reaches its devices through ``.bench``."""
    hardware = await build_hardware(config)
    hardware.bench.simulated[0].cable.insert()
    try:
        yield hardware
    finally:
        await hardware.release()


def spy_on_close(relay, also=None):
    """Count relay.close() calls (and run ``also`` after each)."""
    calls = []
    original = relay.close

    def close():
        calls.append(True)
        original()
        if also is not None:
            also()

    relay.close = close
    return calls


def closed_intervals(contactor):
    """(closed at, opened at) pairs from the simulated contactor's history."""
    intervals, closed_at = [], None
    for at, event in contactor.history:
        if event == "closed":
            closed_at = at
        elif event == "open" and closed_at is not None:
            intervals.append((closed_at, at))
            closed_at = None
    return intervals


async def test_every_check_passes_on_the_simulated_charger(config, hardware):
    console = Console()
    status = await check_hardware(config, yes=True, only=None, ask=console.ask, out=console.out, hardware=hardware)
    assert status == 0, "\n".join(console.lines)
    assert console.questions == []
    assert console.line("connector 1 pilot: ok (state A: +12 V, no EV connected; PWM 6 A: duty 10.0 % at 1 kHz")
    assert console.line("connector 1 relay: ok (the mirror contact on GPIO5 followed: closed after")
    assert console.line("connector 1 meter: ok (register map sdm630)")
    assert console.line("    energy   0.000 kWh")
    assert console.line("    power    0 W")
    assert console.line("    voltage  L1 230.0 V   L2 230.0 V   L3 230.0 V")
    assert console.line("    current  L1 0.00 A   L2 0.00 A   L3 0.00 A")
    assert console.line("    sdm630 meter at 127.0.0.1:")
    assert console.line("connector 1 PP: ok (MCP3008 channel 1: a 32 A cable (Rc ")
    assert console.line("connector 1 lock: ok (solenoid lock, feedback on GPIO11: locked after")
    assert console.line('reader: none (hardware.reader.backend = "none")')
    assert console.line("power-fail input: ok (not asserted: mains present)")
    assert console.lines[-1] == "Result: all checks passed (6 ok, 0 skipped, 0 failed, 1 none)"


async def test_it_explains_each_check_before_asking(config):
    console = Console("n")
    await check_hardware(config, yes=False, only=None, ask=console.ask, out=console.out)
    plan = console.lines[:8]
    assert plan[0] == 'Hardware check of charge point CP-BENCH-01 (backend "mock": simulated devices). It will:'
    assert [line.split(":")[0] for line in plan[1:]] == [
        "  connector 1 pilot", "  connector 1 PP", "  connector 1 lock", "  connector 1 relay", "  connector 1 meter",
        "  reader", "  power-fail input",
    ]
    assert console.questions == [
        "The contactor of connector 1 will close for 1 s. Make sure no EV is connected and "
        "nobody touches the outlet. Continue? [y/N] "
    ]
    assert console.questions == [confirmation_question(1)]


async def test_the_contactor_closes_for_one_second_and_is_open_afterwards(config, hardware):
    contactor = hardware.bench.simulated[0].contactor
    console = Console("y")
    status = await check_hardware(config, yes=False, only={"relay"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 0, "\n".join(console.lines)
    assert len(console.questions) == 1
    [(closed_at, opened_at)] = closed_intervals(contactor)
    assert 0.95 <= opened_at - closed_at < 1.5
    assert not contactor.coil_energised
    assert not hardware.connectors[0].relay.is_closed


@pytest.mark.parametrize("answer", ["n", "", "no", "nope"])
async def test_the_relay_check_is_skipped_unless_the_installer_says_yes(config, hardware, answer):
    closes = spy_on_close(hardware.connectors[0].relay)
    console = Console(answer)
    status = await check_hardware(config, yes=False, only=None, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == EXIT_NOT_VERIFIED, "a skip is neither a failure nor a pass"
    assert console.line("connector 1 relay: skipped (not confirmed: the contactor was not switched)")
    assert console.lines[-1].startswith("Result: no failure, but 1 not verified (")
    assert closes == []
    assert console.line("connector 1 meter: ok")


async def test_no_terminal_to_answer_counts_as_no(config, hardware):
    def no_terminal(question):
        raise EOFError

    console = Console()
    closes = spy_on_close(hardware.connectors[0].relay)
    status = await check_hardware(config, yes=False, only={"relay"}, ask=no_terminal, out=console.out,
                                  hardware=hardware)
    assert status == EXIT_NOT_VERIFIED
    assert console.line("connector 1 relay: skipped")
    assert closes == []


async def test_a_contactor_welded_before_the_check_fails_it_and_is_never_energised(config, hardware):
    contactor = hardware.bench.simulated[0].contactor
    contactor.weld()
    closes = spy_on_close(hardware.connectors[0].relay)
    console = Console()
    status = await check_hardware(config, yes=True, only=None, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    assert console.line(
        "connector 1 relay: FAILED: welded contactor: the mirror contact on GPIO5 says closed while "
        "the coil is off; not switched"
    )
    assert closes == []
    assert not contactor.coil_energised
    assert console.lines[-1] == "Result: 1 FAILED (5 ok, 0 skipped, 1 failed, 1 none)"


async def test_a_contactor_that_welds_while_closed_fails_the_check(config, hardware):
    contactor = hardware.bench.simulated[0].contactor
    spy_on_close(hardware.connectors[0].relay, also=contactor.weld)
    console = Console()
    status = await check_hardware(config, yes=True, only={"relay"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    assert console.line(
        "connector 1 relay: FAILED: welded contactor: the mirror contact on GPIO5 still says closed "
        "250 ms after the coil was switched off"
    )
    assert not contactor.coil_energised


async def test_a_contactor_that_does_not_pull_in_fails_the_check(config, hardware):
    contactor = hardware.bench.simulated[0].contactor
    contactor.detach()  # the mirror contact no longer follows the coil: it stays open
    console = Console()
    status = await check_hardware(config, yes=True, only={"relay"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    assert console.line("connector 1 relay: FAILED: the coil is on but the mirror contact on GPIO5 still "
                        "says open after 250 ms")
    assert not hardware.connectors[0].relay.is_closed


async def test_without_a_feedback_input_the_relay_is_switched_but_not_verified(tmp_path):
    config = mock_config(tmp_path, "[[hardware.connectors]]\n[hardware.connectors.relay]\nfeedback_pin = false\n")
    console = Console()
    hardware = await build_hardware(config)
    try:
        relay = hardware.connectors[0].relay
        closes = spy_on_close(relay)
        status = await check_hardware(config, yes=True, only={"relay"}, ask=console.ask, out=console.out,
                                      hardware=hardware)
        assert closes == [True] and not relay.is_closed, "closed once, and the contactor ends open"
    finally:
        await hardware.release()
    assert status == EXIT_NOT_VERIFIED, "switched but unproven is not passed"
    assert console.line("  connector 1 relay: if no EV is plugged in, close the contactor (GPIO4) for 1 s, "
                        "no mirror contact to watch (switched, not verified)")
    assert console.line("connector 1 relay: skipped (not verified: switched for 1 s; no feedback input to prove "
                        "it moved: listen for the contactor closing and opening, or measure the voltage at the "
                        "outlet while it is closed")
    assert console.lines[-1] == "Result: no failure, but 1 not verified (0 ok, 1 skipped, 0 failed)"


async def test_the_contactor_is_not_switched_while_an_ev_is_plugged_in(config, hardware):
    hardware.bench.set_pilot(1, "B")
    closes = spy_on_close(hardware.connectors[0].relay)
    console = Console()
    status = await check_hardware(config, yes=True, only={"relay"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    assert console.line("connector 1 relay: FAILED: not switched: the pilot reads state B: "
                        "+9 V, EV connected, not ready to charge; unplug the EV and check again")
    assert closes == []


@pytest.mark.parametrize("state", ["E", "F"])
async def test_the_contactor_is_not_switched_while_the_pilot_shows_no_proof_of_no_ev(config, hardware, state):
    """Only state A shows that no EV is connected; a faulty CP line (E, F) proves nothing."""
    hardware.bench.set_pilot(1, state)
    closes = spy_on_close(hardware.connectors[0].relay)
    console = Console()
    status = await check_hardware(config, yes=True, only={"pilot", "relay"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1, "the pilot check fails"
    assert console.line(f"connector 1 relay: skipped (not verified: the pilot reads state {state}: ")
    assert closes == []


async def test_cancelling_while_the_contactor_is_closed_opens_it(config, hardware):
    contactor = hardware.bench.simulated[0].contactor
    console = Console()
    check = asyncio.create_task(check_hardware(config, yes=True, only={"relay"}, ask=console.ask,
                                               out=console.out, hardware=hardware))
    for _ in range(200):
        if contactor.coil_energised:
            break
        await asyncio.sleep(0.01)
    assert contactor.coil_energised
    check.cancel()
    with pytest.raises(asyncio.CancelledError):
        await check
    assert not contactor.coil_energised
    assert console.lines[-1] == "Stopped early: every contactor is open."


async def test_a_silent_meter_fails_the_meter_check_naming_the_meter(config, hardware):
    simulated_meter = hardware.bench.simulated[0].meter
    simulated_meter.fail()
    console = Console()
    status = await check_hardware(config, yes=True, only={"meter"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    failure = console.line("connector 1 meter: FAILED: ")
    assert f"sdm630 meter at 127.0.0.1:{simulated_meter.port} (device 1)" in failure
    assert "no answer" in failure or "no complete answer" in failure
    assert console.lines[-1] == "Result: 1 FAILED (0 ok, 0 skipped, 1 failed)"


async def test_a_silent_rs485_meter_fails_naming_its_port_device_id_and_baud_rate(config, hardware):
    async with SimulatedMeter("sdm120", transport="rtu", device_id=7, baudrate=2400) as rs485_meter:
        serial_port = rs485_meter.serial_port
        rs485_meter.fail()
        hardware.connectors[0].meter = ModbusMeter(rs485_meter.meter_config(timeout_s=0.1))
        console = Console()
        status = await check_hardware(config, yes=True, only={"meter"}, ask=console.ask, out=console.out,
                                      hardware=hardware)
    assert status == 1
    failure = console.line("connector 1 meter: FAILED: ")
    assert f"sdm120 meter on {serial_port} (device 7)" in failure
    assert failure.endswith("(settings used: 2400 baud, 8N1)")


async def test_only_runs_the_checks_it_names(config):
    console = Console()
    status = await check_hardware(config, yes=False, only={"meter"}, ask=console.ask, out=console.out)
    assert status == 0
    assert console.questions == [], "no relay is switched, so nothing is asked"
    checks = [line.split(":")[0].strip() for line in console.lines[1:] if not line.startswith("    ")]
    assert checks == ["connector 1 meter", "connector 1 meter", "Result"]
    assert console.lines[-1] == "Result: all checks passed (1 ok, 0 skipped, 0 failed)"


@pytest.mark.parametrize("only", [{"relay", "contactor"}, {"Meter"}, set()])
async def test_an_unknown_check_name_is_an_error_before_anything_happens(config, only):
    console = Console()
    with pytest.raises(ValueError, match="known checks: relay, pilot, pp, lock, reader, meter, power") as error:
        await check_hardware(config, yes=True, only=only, ask=console.ask, out=console.out)
    assert console.lines == []
    if only:
        assert repr(sorted(only - set(CHECKS))[0]) in str(error.value)


async def test_a_pilot_fault_fails_the_pilot_check(config, hardware):
    hardware.bench.set_pilot(1, "F")
    console = Console()
    status = await check_hardware(config, yes=True, only={"pilot"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    assert console.line("connector 1 pilot: FAILED: state F: -12 V, EVSE not available or fault; "
                        "the charger applies +12 V, so the CP line or the pilot board is faulty")


async def test_the_pilot_returns_to_constant_plus_12_v(config, hardware):
    pwm_tree = hardware.bench.simulated[0].pwm
    console = Console()
    assert await check_hardware(config, yes=True, only={"pilot"}, ask=console.ask, out=console.out,
                                hardware=hardware) == 0
    channel = pwm_tree.channel(config.hardware.connectors[0].pilot.pwm_channel)
    assert channel.enabled and channel.duty == 1.0
    assert hardware.connectors[0].pilot.offered_current is None


async def test_a_failing_mains_input_fails_the_power_check(config, hardware):
    hardware.bench.set_power_failing(True)
    console = Console()
    status = await check_hardware(config, yes=True, only={"power"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    assert console.line("power-fail input: FAILED: asserted: it says the mains is failing")


async def test_devices_that_cannot_be_set_up_fail_the_check(config, monkeypatch):
    async def broken(config):
        raise HardwareError("relay: cannot drive GPIO17: GPIO busy")

    monkeypatch.setattr("evcp.selftest.build_hardware", broken)
    console = Console()
    status = await check_hardware(config, yes=True, only=None, ask=console.ask, out=console.out)
    assert status == 1
    assert console.lines[-1] == "FAILED: the devices could not be set up: relay: cannot drive GPIO17: GPIO busy"


# -- the RC522 version register, read by the real driver over the simulated chip ----------


class BrokenSpi(SimulatedRc522):
    def xfer2(self, data):
        raise OSError(5, "Input/output error")


@pytest.fixture
async def rc522_hardware(tmp_path):
    """(config, hardware, chip): the reader is the real Mfrc522Reader on a SimulatedRc522."""
    config = mock_config(tmp_path, '[hardware.reader]\nbackend = "mfrc522"\n')
    hardware = await build_hardware(config)
    chip = SimulatedRc522()
    hardware.reader = Mfrc522Reader(config.hardware.reader, spi_factory=lambda: chip)
    try:
        yield config, hardware, chip
    finally:
        await hardware.release()


async def check_reader(config, hardware):
    console = Console()
    status = await check_hardware(config, yes=True, only={"reader"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    return status, console


@pytest.mark.parametrize("version, name", [(0x91, "MFRC522 v1.0"), (0x92, "MFRC522 v2.0")])
async def test_a_genuine_rc522_passes(rc522_hardware, version, name):
    config, hardware, chip = rc522_hardware
    chip.version = version
    status, console = await check_reader(config, hardware)
    assert status == 0
    assert console.line(f"reader: ok (RC522 on /dev/spidev0.1: version register {version:#04x}, {name})")


@pytest.mark.parametrize("version, name", [(0x88, "FM17522 (Fudan Semiconductor clone)"),
                                           (0xB2, "FM17522 (Fudan Semiconductor clone, variant)"),
                                           (0x12, "counterfeit MFRC522")])
async def test_a_known_clone_passes_and_is_named(rc522_hardware, version, name):
    config, hardware, chip = rc522_hardware
    chip.version = version
    status, console = await check_reader(config, hardware)
    assert status == 0
    assert console.line(f"reader: ok (RC522 on /dev/spidev0.1: version register {version:#04x}, {name}; "
                        "not a genuine MFRC522 v1.0/v2.0")


@pytest.mark.parametrize("version, hint", [(0x00, "nothing answers"), (0xFF, "nothing answers"),
                                           (0x13, "not an MFRC522, nor a clone this charger knows")])
async def test_an_unexpected_version_fails_with_the_value_read(rc522_hardware, version, hint):
    config, hardware, chip = rc522_hardware
    chip.version = version
    if version in (0x00, 0xFF):
        chip.disconnect(version)
    status, console = await check_reader(config, hardware)
    assert status == 1
    failure = console.line(f"reader: FAILED: RC522 on /dev/spidev0.1: version register reads {version:#04x}, "
                           "expected 0x91 or 0x92")
    assert hint in failure


async def test_a_reader_that_cannot_be_read_fails(rc522_hardware):
    config, hardware, _ = rc522_hardware
    chip = BrokenSpi()
    hardware.reader = Mfrc522Reader(config.hardware.reader, spi_factory=lambda: chip)
    status, console = await check_reader(config, hardware)
    assert status == 1
    assert console.line("reader: FAILED: RC522 on /dev/spidev0.1: cannot read the version register: "
                        "[Errno 5] Input/output error")


async def test_a_missing_spi_device_fails_naming_dtparam(rc522_hardware):
    config, hardware, _ = rc522_hardware
    chip = SimulatedRc522(bus=0, device=0)
    hardware.reader = Mfrc522Reader(config.hardware.reader, spi_factory=lambda: chip)
    status, console = await check_reader(config, hardware)
    assert status == 1
    assert console.line("reader: FAILED: no /dev/spidev0.1: SPI is off (dtparam=spi=on)")


async def test_a_reader_without_spidev_fails_naming_the_package(rc522_hardware, monkeypatch):
    config, hardware, _ = rc522_hardware
    monkeypatch.setitem(sys.modules, "spidev", None)
    hardware.reader = Mfrc522Reader(config.hardware.reader)
    status, console = await check_reader(config, hardware)
    assert status == 1
    assert console.line("reader: FAILED: the spidev package is missing: pip install 'evcp[pi]'")


def tethered_config(state_dir: Path, backend: str, relay_pin: int, hardware: str = ""):
    """One connector with a fixed cable (no PP, no lock) on ``backend``."""
    text = f"""
[charge_point]
id = "CP-T"
cable = "tethered"
[ocpp]
csms_url = "ws://127.0.0.1:9/ocpp"
[hardware]
backend = "{backend}"
{hardware}
[[hardware.connectors]]
[hardware.connectors.relay]
pin = {relay_pin}
[storage]
state_dir = "{state_dir}"
"""
    return loads(text, state_dir / "evcp.toml")


# -- the socket outlet: proximity pilot and lock ---------------------------------------------


@pytest.mark.parametrize("rating_a", [13, 20, 32, 63])
async def test_the_pp_check_reads_the_cable_in_the_socket(config, hardware, rating_a):
    hardware.bench.set_cable(1, rating_a)
    hardware.bench.simulated[0].cable.insert()  # in the socket, no EV at its other end
    console = Console()
    status = await check_hardware(config, yes=True, only={"pp"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 0, "\n".join(console.lines)
    assert console.line(f"connector 1 PP: ok (MCP3008 channel 1: a {rating_a} A cable (Rc ")


async def test_a_pp_without_a_cable_is_not_verified_an_unwired_pp_reads_the_same(config, hardware):
    hardware.bench.simulated[0].cable.remove()
    console = Console()
    status = await check_hardware(config, yes=True, only={"pp", "meter"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == EXIT_NOT_VERIFIED, "skipped is not passed"
    assert console.line("connector 1 PP: skipped (not verified: no cable in the socket; MCP3008 channel 1 reads "
                        "open, as an unwired PP would: plug a cable in to read its rating)")
    assert console.lines[-1] == "Result: no failure, but 1 not verified (1 ok, 1 skipped, 0 failed)"


async def test_a_pp_out_of_band_fails_its_check_and_the_others_still_run(config, hardware):
    hardware.bench.set_fault("pp", True)
    hardware.bench.simulated[0].cable.insert()
    console = Console()
    status = await check_hardware(config, yes=True, only=None, ask=console.ask, out=console.out, hardware=hardware)
    assert status == 1
    assert "no valid cable rating" in console.line("connector 1 PP: FAILED: MCP3008 channel 1: PP reads ")
    assert console.line("connector 1 lock: ok")
    assert console.line("connector 1 meter: ok")
    assert console.lines[-1].startswith("Result: 1 FAILED (")


async def test_a_jammed_lock_fails_its_check_naming_the_feedback_and_is_left_unlocked(config, hardware):
    hardware.bench.set_fault("lock", True)
    console = Console()
    status = await check_hardware(config, yes=True, only={"lock", "meter"}, ask=console.ask, out=console.out,
                                  hardware=hardware)
    assert status == 1
    assert "did not confirm locked within 1 s" in console.line("connector 1 lock: FAILED: the feedback on GPIO11")
    assert console.line("connector 1 meter: ok")
    assert not hardware.connectors[0].lock.is_locked


async def test_a_tethered_charger_has_no_pp_or_lock_to_check(tmp_path):
    config = tethered_config(tmp_path, "mock", relay_pin=4)
    console = Console()
    status = await check_hardware(config, yes=True, only={"pp", "lock"}, ask=console.ask, out=console.out)
    assert status == 0, "\n".join(console.lines)
    assert console.line("connector 1 PP: none (")
    assert console.line("connector 1 lock: none (no lock actuator)")
    assert console.lines[-1] == "Result: all checks passed (0 ok, 0 skipped, 0 failed, 2 none)"


# -- a real charger: each device set up on its own -------------------------------------------


async def test_on_a_pi_a_device_that_cannot_be_set_up_fails_alone(tmp_path, monkeypatch):
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    import evcp.hal.factory as factory

    def no_pwm(wiring):
        raise HardwareError("pilot PWM: /sys/class/pwm/pwmchip0 does not exist (is the PWM overlay loaded?)")

    monkeypatch.setattr(factory, "pilot_for", no_pwm)
    monkeypatch.setattr(Device, "pin_factory", MockFactory())
    config = tethered_config(tmp_path, "pi", relay_pin=17, hardware="power_fail_pin = 26\n")
    console = Console()
    status = await check_hardware(config, yes=True, only=None, ask=console.ask, out=console.out)
    assert status == 1
    assert console.line("connector 1 pilot: FAILED: could not be set up: pilot PWM: /sys/class/pwm/pwmchip0 "
                        "does not exist")
    assert console.line("connector 1 relay: skipped (not verified: the pilot could not be read, so nothing shows "
                        "that no EV is connected; the contactor was not switched (it is only while the pilot "
                        "reads state A))")
    assert console.line("power-fail input: ok (GPIO26: not asserted: mains present)")
    assert console.line('connector 1 meter: none (meter.backend = "none")')
    assert console.lines[-1] == "Result: 1 FAILED (1 ok, 1 skipped, 1 failed, 4 none)"
    assert not any(state for _, state in Device.pin_factory.pin(17).states), "the contactor was never energised"


# -- the ADC pilot: the CP must really toggle between +12 V and -12 V --------------------


@pytest.fixture
def adc_pilot_hardware(tmp_path, monkeypatch):
    """Replaces the simulated station with one connector whose AdcPilot samples a SimulatedCpAdc.

    ``cp_pwm`` is the PWM tree the simulated CP driver follows; ``pwm`` the one the pilot writes.
    Returns a dict to fill in before the check: ev (None, "B", "C"), diode, cp_follows ("pilot"
    or "other": the CP is wired to another chip than the one the pilot drives).
    """
    from evcp.config import PilotConfig, RelayConfig
    from evcp.hal.pilot import AdcPilot, SysfsPwm
    from evcp.hal.relay import GpioRelay
    from evcp.mocks.cp_adc import EV_RESISTANCE_OHM, SimulatedCpAdc
    from evcp.mocks.pins import mock_pins
    from evcp.mocks.sysfs_pwm import FakeSysfsPwm
    from evcp.runtime.hardware import ConnectorDevices, StationHardware

    setup = {"ev": None, "diode": True, "cp_follows": "pilot"}
    trees = []

    async def build(config):
        pins = mock_pins()
        factory = pins.__enter__()
        pilot_tree = FakeSysfsPwm(tmp_path / "pilot")
        other_tree = FakeSysfsPwm(tmp_path / "other", exported=(0,))
        other_tree.poke(0, "period", "1000000\n")
        other_tree.poke(0, "duty_cycle", "1000000\n")
        other_tree.poke(0, "enable", "1\n")
        trees.extend([pilot_tree, other_tree])
        adc = SimulatedCpAdc(pilot_tree if setup["cp_follows"] == "pilot" else other_tree,
                             ev_resistance_ohm=lambda: EV_RESISTANCE_OHM.get(setup["ev"]),
                             diode_present=lambda: setup["diode"], seed=5)
        pilot = AdcPilot(PilotConfig(backend="adc"), SysfsPwm(0, 0, root=pilot_tree.root), adc=adc)
        relay = GpioRelay(RelayConfig(pin=5), pin_factory=factory)
        hardware = StationHardware(connectors=[ConnectorDevices(relay=relay, pilot=pilot, meter=None)], reader=None)

        async def close():
            for tree in trees:
                tree.close()
            pins.__exit__(None, None, None)

        hardware.closers.append(close)
        return hardware

    monkeypatch.setattr("evcp.selftest.build_hardware", build)
    return setup


async def adc_check(config):
    console = Console()
    status = await check_hardware(config, yes=True, only={"pilot"}, ask=console.ask, out=console.out)
    return status, console.line("connector 1 pilot: ")


async def test_the_adc_pilot_check_sees_the_cp_toggle(config, adc_pilot_hardware):
    status, line = await adc_check(config)
    assert status == 0, line
    assert line.startswith("connector 1 pilot: ok (state A: +12 V, no EV connected; CP +12.0 V; PWM 6 A: duty 10.0 %")
    assert "PWM device no device link (pwmchip0 channel 0)" in line
    # The simulated CP is sampled on the real clock, so a plateau's mean may land a tenth off.
    toggle = re.search(r"the CP toggles between ([+-]\d+\.\d) V and ([+-]\d+\.\d) V", line)
    assert toggle is not None, line
    high_v, low_v = map(float, toggle.groups())
    # Compared in the tenths the check prints: 11.7 - 12.0 is 0.30000000000000071 in floating point.
    assert abs(round(high_v - 12.0, 1)) <= 0.3 and abs(round(low_v + 12.0, 1)) <= 0.3, line


async def test_a_cp_that_another_pwm_drives_fails_the_adc_pilot_check(config, adc_pilot_hardware):
    # hal-realism #5: the pilot writes to a chip that does not drive the pin; the sysfs
    # read-back is fine, only the CP shows the fault.
    adc_pilot_hardware["cp_follows"] = "other"
    status, line = await adc_check(config)
    assert status == 1
    assert "duty 10.0 % at 1 kHz, read back from" not in line  # failed lines carry the problem only
    assert "PWM: with 6 A offered the CP shows +12.0 V, not +12.0 V and -12 V" in line
    assert "pilot.pwm_pin" in line


async def test_a_missing_ev_diode_fails_the_adc_pilot_check(config, adc_pilot_hardware):
    adc_pilot_hardware.update(ev="B", diode=False)
    status, line = await adc_check(config)
    assert status == 1
    assert line.startswith("connector 1 pilot: FAILED: state B: ")
    assert "-8.8 V, not +8.8 V and -12 V: the EV's diode is missing or shorted" in line


async def test_on_a_pi_two_pilots_on_one_pwm_channel_fail_the_second_pilot_check(tmp_path, monkeypatch):
    """On a Pi 4 GPIO12 and GPIO18 are both channel 0 of the header PWM: "auto" finds it only once the
    board is known, after the config was checked."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    from evcp.hal import pilot as pilot_module
    from evcp.mocks.sysfs_pwm import FakeSysfsPwm

    text = f"""
[charge_point]
id = "CP-PWM"
cable = "tethered"
connectors = 2
[ocpp]
csms_url = "ws://127.0.0.1:9/ocpp"
[hardware]
backend = "pi"
[[hardware.connectors]]
relay = {{ pin = 17 }}
pilot = {{ pwm_pin = 18, vehicle_pin = 22, charge_pin = 23, fault_pin = 24 }}
[[hardware.connectors]]
relay = {{ pin = 27 }}
pilot = {{ pwm_pin = 12, vehicle_pin = 5, charge_pin = 6, fault_pin = 7 }}
[storage]
state_dir = "{tmp_path}"
"""
    config = loads(text, tmp_path / "evcp.toml")
    monkeypatch.setattr(Device, "pin_factory", MockFactory())
    with FakeSysfsPwm.raspberry_pi(tmp_path / "sys", "pi4", "6.12") as fake:
        monkeypatch.setattr(pilot_module, "SYSFS_PWM_ROOT", fake.root)
        monkeypatch.setattr(pilot_module, "DEVICE_TREE", fake.device_tree)
        console = Console()
        status = await check_hardware(config, yes=True, only={"pilot"}, ask=console.ask, out=console.out)
    assert status == 1
    assert console.line("connector 1 pilot: ok (state A")
    assert console.line("connector 2 pilot: FAILED: could not be set up: hardware.connectors[2].pilot.pwm_pin: "
                        "GPIO12 is channel 0 of pwmchip0, the channel of connector 1's pilot: choose another pin")
