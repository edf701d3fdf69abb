"""GpioLock over gpiozero's MockFactory, moved by a SimulatedLockActuator: feedback decides."""

import time

import pytest

from evcp.config import LockConfig
from evcp.hal import SocketLock
from evcp.hal.lock import GpioLock
from evcp.mocks.pins import energised
from evcp.mocks.socket import SimulatedLockActuator

MOTOR = LockConfig(backend="gpio", actuator="motor", lock_pin=5, unlock_pin=6, feedback_pin=16,
                   pulse_s=0.2, timeout_s=0.5)
SOLENOID = LockConfig(backend="gpio", actuator="solenoid", lock_pin=5, unlock_pin=None, feedback_pin=16,
                      timeout_s=0.5)




@pytest.mark.parametrize("config", [MOTOR, SOLENOID], ids=["motor", "solenoid"])
def test_lock_and_unlock_report_what_the_feedback_measures(pins, config):
    actuator = SimulatedLockActuator(config, pins, travel_s=0.03)
    lock = GpioLock(config, pin_factory=pins)
    assert isinstance(lock, SocketLock)
    assert lock.is_locked is False
    assert lock.lock() is True and actuator.locked
    assert lock.unlock() is False and not actuator.locked
    lock.release()


def test_a_motor_is_driven_one_way_at_a_time_and_never_left_driven(pins):
    actuator = SimulatedLockActuator(MOTOR, pins, travel_s=0.03)
    both = []
    forward, back = pins.pin(5), pins.pin(6)
    for pin in (forward, back):
        pin.listeners.append(lambda: both.append(energised(forward) and energised(back)))
    lock = GpioLock(MOTOR, pin_factory=pins)
    lock.lock()
    lock.unlock()
    assert not any(both), "both H-bridge inputs were driven at once"
    assert not energised(forward) and not energised(back), "the motor rests after each move"
    assert not actuator.locked


def test_a_jammed_lock_is_reported_after_the_timeout(pins):
    actuator = SimulatedLockActuator(SOLENOID, pins, travel_s=0.03)
    lock = GpioLock(SOLENOID, pin_factory=pins)
    actuator.jam()
    started = time.monotonic()
    assert lock.lock() is False, "the feedback never confirmed: not locked (OCTT TC_024)"
    assert time.monotonic() - started >= SOLENOID.timeout_s * 0.9
    actuator.jam(False)
    assert lock.lock() is True
    actuator.jam()
    assert lock.unlock() is True, "jammed locked: the unlock fails (OCTT TC_030)"


def test_every_edge_of_the_feedback_is_watched(pins):
    """The runtime hears a lock that opens by itself without polling it."""
    actuator = SimulatedLockActuator(SOLENOID, pins, travel_s=0.01)
    lock = GpioLock(SOLENOID, pin_factory=pins)
    edges = []
    lock.watch(lambda: edges.append(lock.is_locked))
    assert lock.lock() is True
    actuator.give_way()
    assert edges == [True, False] and lock.is_locked is False
    lock.release()


def test_a_broken_feedback_wire_reads_unlocked(pins):
    """The input is pulled towards "not locked" (no simulator drives it here)."""
    for active_high in (True, False):
        config = LockConfig(backend="gpio", actuator="solenoid", unlock_pin=None, feedback_pin=16,
                            feedback_active_high=active_high, timeout_s=0.1)
        lock = GpioLock(config, pin_factory=pins)
        assert lock.is_locked is False
        assert lock.lock() is False
        lock.release()


def test_a_motor_without_its_unlock_pin_is_refused(pins):
    from evcp.hal import HardwareError

    with pytest.raises(HardwareError, match="unlock_pin"):
        GpioLock(LockConfig(backend="gpio", actuator="motor", unlock_pin=None), pin_factory=pins)
    GpioLock(MOTOR, pin_factory=pins).release()  # nothing was left claimed


@pytest.mark.parametrize("config", [MOTOR, SOLENOID], ids=["motor", "solenoid"])
def test_an_actuator_that_cannot_be_driven_is_a_hardware_error_and_the_motor_rests(pins, config):
    from evcp.hal import HardwareError

    SimulatedLockActuator(config, pins, travel_s=0.03)
    lock = GpioLock(config, pin_factory=pins)
    forward = pins.pin(5)

    def unwritable(value):
        raise OSError("lgpio error: bad handle")

    forward._set_state = unwritable
    with pytest.raises(HardwareError, match="socket lock: cannot drive the actuator on GPIO5.*: lgpio error"):
        lock.lock()
    del forward._set_state
    assert not energised(forward) and not energised(pins.pin(6))
    assert lock.lock() is True, "driven again once the output can be written"
    lock.release()
