"""GpioRelay over gpiozero's MockFactory: open by default, open on release, at exit and on errors."""

import subprocess
import sys
import textwrap

import pytest
from gpiozero.pins.mock import MockPWMPin

from evcp.config import RelayConfig
from evcp.hal import HardwareError, Relay
from evcp.hal.relay import GpioRelay, open_all_relays
from evcp.mocks.ev import ContactorModel
from evcp.mocks.pins import energised

COIL = 17
FEEDBACK = 27




def test_implements_the_relay_protocol(pins):
    assert isinstance(GpioRelay(RelayConfig(pin=COIL)), Relay)


@pytest.mark.parametrize("active_high", [True, False])
def test_open_at_construction(pins, active_high):
    relay = GpioRelay(RelayConfig(pin=COIL, active_high=active_high))
    coil = pins.pin(COIL)
    assert coil.function == "output"
    assert not energised(coil, active_high)
    assert not relay.is_closed
    # initial_value=False: the coil never saw the energising level
    assert all(bool(s.state) != active_high for s in coil.states[1:])


@pytest.mark.parametrize("active_high", [True, False])
def test_close_energises_and_open_de_energises(pins, active_high):
    relay = GpioRelay(RelayConfig(pin=COIL, active_high=active_high))
    coil = pins.pin(COIL)
    relay.close()
    assert relay.is_closed and energised(coil, active_high)
    relay.open()
    assert not relay.is_closed and not energised(coil, active_high)
    relay.open()
    assert not relay.is_closed and not energised(coil, active_high)


def test_release_leaves_the_relay_open_and_frees_the_pins(pins):
    relay = GpioRelay(RelayConfig(pin=COIL, feedback_pin=FEEDBACK))
    coil = pins.pin(COIL)
    relay.close()
    relay.release()
    assert not relay.is_closed
    assert coil.function == "input"
    assert not bool(coil.states[-1].state), "the last level driven must be de-energised"
    assert relay.feedback_closed() is None
    relay.release()
    relay.open()
    with pytest.raises(HardwareError, match="released"):
        relay.close()
    # the lines are free again: a new relay can claim them
    GpioRelay(RelayConfig(pin=COIL, feedback_pin=FEEDBACK)).release()


def test_a_pin_in_use_is_a_hardware_error(pins):
    first = GpioRelay(RelayConfig(pin=COIL))
    with pytest.raises(HardwareError, match="GPIO17"):
        GpioRelay(RelayConfig(pin=COIL))
    assert not first.is_closed


class FailingPin(MockPWMPin):
    """A pin whose writes fail once ``failing`` is set (a broken GPIO driver)."""

    failing = False

    def _set_state(self, value):
        if self.failing:
            raise OSError("GPIO write failed")
        super()._set_state(value)


def test_open_never_raises_and_close_reports_write_errors(pins):
    pin = pins.pin(COIL, pin_class=FailingPin)
    relay = GpioRelay(RelayConfig(pin=COIL))
    relay.close()
    pin.failing = True
    relay.open()
    assert not relay.is_closed
    with pytest.raises(HardwareError, match="cannot energise"):
        relay.close()
    assert not relay.is_closed


def test_exit_hook_opens_every_live_relay(pins):
    first = GpioRelay(RelayConfig(pin=COIL))
    second = GpioRelay(RelayConfig(pin=22, active_high=False))
    first.close()
    second.close()
    open_all_relays()
    assert not first.is_closed and not second.is_closed
    assert not energised(pins.pin(COIL))
    assert not energised(pins.pin(22), active_high=False)


CRASHING_PROGRAM = textwrap.dedent(
    """
    import atexit
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    coil = Device.pin_factory.pin(17)
    # registered before the relay module: runs after its exit hook, before gpiozero's
    atexit.register(lambda: print("levels", [bool(s.state) for s in coil.states]))

    from evcp.config import RelayConfig
    from evcp.hal.relay import GpioRelay

    relay = GpioRelay(RelayConfig(pin=17))
    relay.close()
    raise RuntimeError("crash while charging")
    """
)


def test_a_crash_leaves_the_relay_open():
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_PROGRAM], capture_output=True, text=True, timeout=30
    )
    assert "crash while charging" in result.stderr
    assert result.returncode != 0
    assert "levels [False, True, False]" in result.stdout


def test_without_feedback_input_feedback_is_none(pins):
    assert GpioRelay(RelayConfig(pin=COIL)).feedback_closed() is None


@pytest.mark.parametrize("feedback_active_high", [True, False])
def test_feedback_follows_the_mirror_contact(pins, feedback_active_high):
    config = RelayConfig(pin=COIL, feedback_pin=FEEDBACK, feedback_active_high=feedback_active_high)
    ContactorModel(config)
    relay = GpioRelay(config)
    assert relay.feedback_closed() is False
    relay.close()
    assert relay.feedback_closed() is True
    relay.open()
    assert relay.feedback_closed() is False


@pytest.mark.parametrize("feedback_active_high", [True, False])
def test_a_welded_contactor_reads_closed_while_commanded_open(pins, feedback_active_high):
    config = RelayConfig(pin=COIL, feedback_pin=FEEDBACK, feedback_active_high=feedback_active_high)
    contactor = ContactorModel(config)
    relay = GpioRelay(config)
    relay.close()
    contactor.weld()
    relay.open()
    assert not relay.is_closed
    assert relay.feedback_closed() is True
    contactor.unweld()
    assert relay.feedback_closed() is False


@pytest.mark.parametrize("feedback_active_high, pull", [(True, "up"), (False, "down")])
def test_a_broken_wire_to_the_mirror_contact_reads_not_proven_open(pins, feedback_active_high, pull):
    """hal-realism #8: nothing drives the input, so its pull decides; by default towards "closed"."""
    config = RelayConfig(pin=COIL, feedback_pin=FEEDBACK, feedback_active_high=feedback_active_high)
    relay = GpioRelay(config)
    assert pins.pin(FEEDBACK).pull == pull
    assert relay.feedback_closed() is True, "a broken wire must not read as open contacts"


class NormallyClosedMirror:
    """The documented wiring (docs/wiring.md): an NC mirror contact between the input and GND.
    Closed (contactor open) it holds the line low; open (contactor closed) it leaves the line to
    the pull resistor."""

    def __init__(self, pin):
        self.pin = pin

    def contactor(self, closed: bool) -> None:
        if not closed:
            self.pin.drive_low()
        elif self.pin.pull == "up":
            self.pin.drive_high()
        else:
            self.pin.drive_low()


def test_the_documented_nc_mirror_contact_needs_no_external_pull_up(pins):
    relay = GpioRelay(RelayConfig(pin=COIL, feedback_pin=FEEDBACK, feedback_active_high=True))
    mirror = NormallyClosedMirror(pins.pin(FEEDBACK))
    mirror.contactor(closed=False)
    assert relay.feedback_closed() is False
    mirror.contactor(closed=True)
    assert relay.feedback_closed() is True


@pytest.mark.parametrize("pull, level", [("down", False), ("up", True)])
def test_an_explicit_feedback_pull_is_used_as_given(pins, pull, level):
    """E.g. a normally open auxiliary contact to 3.3 V needs the pull down (a broken wire then reads
    open: the installer's choice, which ``evcp config check`` does not hide)."""
    config = RelayConfig(pin=COIL, feedback_pin=FEEDBACK, feedback_active_high=True, feedback_pull=pull)
    relay = GpioRelay(config)
    assert pins.pin(FEEDBACK).pull == pull and relay.feedback_closed() is level


def test_without_a_pull_the_input_floats(pins):
    config = RelayConfig(pin=COIL, feedback_pin=FEEDBACK, feedback_pull="none")
    GpioRelay(config)
    assert pins.pin(FEEDBACK).pull == "floating"


# --- evcp relays-off and the relay heartbeat ---

from evcp.hal.relay import RelayHeartbeat, force_relays_off  # noqa: E402

HEARTBEAT = 26


@pytest.mark.parametrize("active_high", [True, False])
def test_force_relays_off_drives_a_left_energised_coil_off_and_keeps_it_driven(pins, active_high):
    coil = pins.pin(COIL)
    coil.output_with_state(active_high)  # what a killed charger leaves behind
    assert energised(coil, active_high)
    held, failures = force_relays_off([RelayConfig(pin=COIL, active_high=active_high)])
    assert failures == [] and len(held) == 1
    assert coil.function == "output" and not energised(coil, active_high)
    # initial_value=False: never a pulse at the energising level on the way
    assert all(bool(s.state) != active_high for s in coil.states[-1:])


def test_force_relays_off_goes_on_after_a_pin_it_cannot_drive(pins):
    from gpiozero import OutputDevice

    busy = OutputDevice(COIL, pin_factory=pins)
    other = pins.pin(FEEDBACK)
    other.output_with_state(True)
    held, failures = force_relays_off([RelayConfig(pin=COIL), RelayConfig(pin=FEEDBACK)])
    assert len(failures) == 1 and failures[0].startswith(f"GPIO{COIL}: cannot drive it")
    assert len(held) == 1 and not other.state
    busy.close()


def test_heartbeat_starts_low_toggles_and_stops_low(pins):
    beat = RelayHeartbeat(HEARTBEAT)
    line = pins.pin(HEARTBEAT)
    assert line.function == "output" and not line.state
    for expected in (True, False, True):
        beat.toggle()
        assert bool(line.state) is expected
    beat.stop()
    assert not line.state
    beat.release()
    beat.toggle()  # after release: nothing, no error
    assert line.function == "input"


def test_heartbeat_on_a_claimed_pin_is_a_hardware_error(pins):
    relay = GpioRelay(RelayConfig(pin=COIL))
    with pytest.raises(HardwareError, match=f"relay heartbeat: cannot drive GPIO{COIL}"):
        RelayHeartbeat(COIL)
    relay.release()


async def test_the_charger_toggles_the_heartbeat_only_while_a_contactor_is_closed(tmp_path):
    import asyncio

    from gpiozero import Device

    from tests.runtime.test_controller import charging

    charger, task, csms = await charging(tmp_path)
    charger.hardware.heartbeat = RelayHeartbeat(HEARTBEAT, pin_factory=Device.pin_factory)
    line = Device.pin_factory.pin(HEARTBEAT)
    line.clear_states()
    await asyncio.sleep(1.0)
    edges = len(line.states) - 1
    # The pilot loop runs at least every 0.1 s while the contactor is closed: ~10 edges a second.
    assert 7 <= edges <= 40, edges
    gaps = [b.timestamp - a.timestamp for a, b in zip(line.states[1:], line.states[2:])]
    assert max(gaps) < 0.25, gaps  # well inside a ~0.5 s monostable
    charger.hardware.bench.present_tag("CRASH001")  # the same card: the session ends
    for _ in range(40):
        await asyncio.sleep(0.05)
        if not charger.hardware.connectors[0].relay.is_closed:
            break
    assert not charger.hardware.connectors[0].relay.is_closed
    await asyncio.sleep(0.2)
    assert not line.state, "held low once the contactor is open"
    line.clear_states()
    await asyncio.sleep(0.8)
    assert len(line.states) == 1, "no edges while every contactor is open"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await csms.stop()
