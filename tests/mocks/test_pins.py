"""The mock-pin helpers: installing MockFactory, the GPIOPinInUse trap, held and watched lines."""

import pytest
from gpiozero import Device, DigitalInputDevice, OutputDevice, PWMOutputDevice
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPWMPin

from evcp.mocks.pins import (
    drive,
    existing_pin,
    held_pin,
    mock_pins,
    reset_mock_pins,
    use_mock_pins,
    watched_pin,
)


def test_mock_pins_installs_a_pwm_capable_factory_and_restores_the_previous_one():
    before = Device.pin_factory
    with mock_pins() as factory:
        assert Device.pin_factory is factory
        assert isinstance(factory, MockFactory)
        pwm = PWMOutputDevice(18, frequency=1000)
        pwm.value = 0.2667
        assert factory.pin(18).state == pytest.approx(0.2667)
    assert Device.pin_factory is before


def test_reset_mock_pins_clears_forgotten_reservations():
    with mock_pins():
        forgotten = OutputDevice(17)
        with pytest.raises(GPIOPinInUse):
            OutputDevice(17)
        reset_mock_pins()
        OutputDevice(17).close()
        forgotten.close()


def test_use_mock_pins_returns_the_installed_factory():
    previous = Device.pin_factory
    try:
        factory = use_mock_pins()
        assert Device.pin_factory is factory
        assert issubclass(factory.pin_class, MockPWMPin)
    finally:
        Device.pin_factory = previous


def test_a_held_line_keeps_its_level_against_the_pull_resistor():
    with mock_pins() as factory:
        pin = held_pin(factory, 22)
        drive(pin, False)
        device = DigitalInputDevice(22, pull_up=True)
        assert pin.state is False
        assert device.is_active
        drive(pin, True)
        assert not device.is_active


def test_a_plain_line_is_reset_by_a_later_pull_resistor():
    with mock_pins() as factory:
        pin = factory.pin(22)
        drive(pin, False)
        DigitalInputDevice(22, pull_up=True)
        assert pin.state is True


def test_existing_pin_does_not_create_pins():
    with mock_pins() as factory:
        assert existing_pin(factory, 17) is None
        assert existing_pin(factory, 17) is None
        created = factory.pin(17)
        assert existing_pin(factory, 17) is created


def test_a_watched_line_reports_level_and_function_changes():
    with mock_pins() as factory:
        pin = watched_pin(factory, 17)
        calls = []
        pin.listeners.append(lambda: calls.append((pin.function, bool(pin.state))))
        device = OutputDevice(17)
        device.on()
        device.close()
        assert ("output", True) in calls
        assert calls[-1][0] == "input"


def test_a_plain_pin_cannot_be_watched_afterwards():
    with mock_pins() as factory:
        factory.pin(17)
        with pytest.raises(RuntimeError, match="before the driver"):
            watched_pin(factory, 17)
