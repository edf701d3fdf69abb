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


@pytest.mark.parametrize("feedback_active_high", [True, False])
def test_an_unconnected_feedback_input_reads_open(pins, feedback_active_high):
    config = RelayConfig(pin=COIL, feedback_pin=FEEDBACK, feedback_active_high=feedback_active_high)
    assert GpioRelay(config).feedback_closed() is False
