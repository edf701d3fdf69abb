"""SimulatedCable, SimulatedPpAdc and SimulatedLockActuator under the real AdcProximity and
GpioLock drivers (gpiozero mock pins)."""

import threading

import pytest

from evcp.config import LockConfig, ProximityConfig
from evcp.hal.lock import GpioLock
from evcp.hal.proximity import AdcProximity
from evcp.mocks.pins import mock_pins
from evcp.mocks.socket import RATING_OHMS, SimulatedCable, SimulatedLockActuator, SimulatedPpAdc

PP = ProximityConfig(backend="adc")
SOLENOID = LockConfig(backend="gpio", actuator="solenoid", lock_pin=10, unlock_pin=None, feedback_pin=11,
                      pulse_s=0.2, timeout_s=0.5)
MOTOR = LockConfig(backend="gpio", actuator="motor", lock_pin=5, unlock_pin=6, feedback_pin=16,
                   pulse_s=0.2, timeout_s=0.5)


@pytest.fixture
def pins():
    with mock_pins() as factory:
        yield factory


def proximity_of(cable, config=PP):
    return AdcProximity(config, adc=SimulatedPpAdc(cable, config))


@pytest.mark.parametrize("rating_a", [13, 20, 32, 63])
@pytest.mark.parametrize("chip", ["mcp3008", "mcp3208"])
def test_the_real_pp_driver_reads_the_rating_of_the_cable_in_the_socket(rating_a, chip):
    config = ProximityConfig(backend="adc", adc_chip=chip)
    cable = SimulatedCable(rating_a)
    reading = proximity_of(cable, config).read()
    assert reading.rating_a is None and reading.cable == "none", "not in the socket yet"
    cable.insert()
    reading = proximity_of(cable, config).read()
    assert reading.rating_a == rating_a and not reading.problem
    assert reading.ohms == pytest.approx(RATING_OHMS[rating_a], rel=0.05)
    cable.remove()
    assert proximity_of(cable, config).read().cable == "none"


def test_a_damaged_cable_reads_out_of_band_and_can_be_repaired():
    cable = SimulatedCable(32)
    cable.insert()
    cable.damage()
    reading = proximity_of(cable).read()
    assert reading.cable == "fault" and "no valid cable rating" in reading.problem
    cable.damage(False)
    assert proximity_of(cable).read().rating_a == 32


def test_a_socket_without_a_cable_of_the_driver_is_open():
    cable = SimulatedCable(None)
    cable.insert()
    assert cable.ohms is None and proximity_of(cable).read().cable == "none"


@pytest.mark.parametrize("rating_a", [10, 16, 0, 70])
def test_only_the_ratings_of_the_standard_exist(rating_a):
    with pytest.raises(ValueError, match="13, 20, 32 or 63"):
        SimulatedCable(32).choose(rating_a)


def test_the_cable_keeps_a_history():
    cable = SimulatedCable(20)
    cable.insert()
    cable.choose(13)
    cable.remove()
    assert [event for _, event in cable.history] == ["insert", "cable 13", "remove"]


@pytest.mark.parametrize("config", [SOLENOID, MOTOR], ids=["solenoid", "motor"])
def test_the_real_lock_driver_moves_the_actuator_and_reads_its_feedback(pins, config):
    moves = []
    actuator = SimulatedLockActuator(config, pins, travel_s=0.02, on_move=moves.append)
    lock = GpioLock(config)
    assert not lock.is_locked
    assert lock.lock() is True and actuator.locked and lock.is_locked
    assert lock.unlock() is False and not actuator.locked and not lock.is_locked
    assert moves == [True, False]
    lock.release()
    actuator.detach()


def test_a_motor_is_never_driven_both_ways_at_once(pins):
    both = []
    actuator = SimulatedLockActuator(MOTOR, pins, travel_s=0.02)

    def watch():
        if pins.pin(5).state and pins.pin(6).state:
            both.append(True)

    for n in (5, 6):
        pins.pin(n).listeners.append(watch)  # the actuator's pins tell every change of level
    lock = GpioLock(MOTOR)
    for _ in range(3):
        lock.lock()
        lock.unlock()
    assert both == [] and not actuator.locked
    assert not pins.pin(5).state and not pins.pin(6).state, "the motor rests between moves"
    lock.release()
    actuator.detach()


@pytest.mark.parametrize("config", [SOLENOID, MOTOR], ids=["solenoid", "motor"])
def test_a_jammed_actuator_never_confirms_and_the_driver_says_so_after_its_timeout(pins, config):
    actuator = SimulatedLockActuator(config, pins, travel_s=0.02)
    lock = GpioLock(config)
    actuator.jam()
    assert lock.lock() is False and not actuator.locked
    actuator.jam(False)
    assert lock.lock() is True
    actuator.jam()
    assert lock.unlock() is True, "jammed locked: the plug stays held"
    lock.release()
    actuator.detach()


def test_the_actuator_is_thread_safe_under_concurrent_moves(pins):
    actuator = SimulatedLockActuator(SOLENOID, pins, travel_s=0.005)
    lock = GpioLock(SOLENOID)
    errors = []

    def move(locked):
        try:
            for _ in range(5):
                lock.lock() if locked else lock.unlock()
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=move, args=(n % 2 == 0,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = lock.unlock()
    assert final is False and not actuator.locked
    lock.release()
    actuator.detach()
