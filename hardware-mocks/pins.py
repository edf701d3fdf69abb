"""gpiozero's mock pins, set up for the charger's real GPIO drivers.

``use_mock_pins()`` installs ``MockFactory(pin_class=MockPWMPin)`` as the
default pin factory, so ``GpioRelay`` and ``GpioPilot`` run unchanged over
simulated pins. The simulators (``SimulatedEv``, ``ContactorModel``) then
drive the lines the way the charger's other circuits would.

The GPIOPinInUse trap: a MockFactory remembers every pin reservation until
the device that made it is closed. A test that forgets ``release()`` makes
the next test's ``GpioRelay(...)`` fail with ``GPIOPinInUse``. Wrap each test
in ``mock_pins()`` (or call ``reset_mock_pins()``), which forgets every pin
and reservation.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from gpiozero import Device
from gpiozero.exc import PinFixedPull, PinInvalidPull
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin


def use_mock_pins() -> MockFactory:
    """Install a fresh ``MockFactory(pin_class=MockPWMPin)`` as ``Device.pin_factory`` and return it."""
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    return factory


def reset_mock_pins() -> None:
    """Forget every mock pin and reservation of the installed MockFactory (see GPIOPinInUse above)."""
    factory = Device.pin_factory
    if isinstance(factory, MockFactory):
        factory.reset()


@contextmanager
def mock_pins() -> Iterator[MockFactory]:
    """Mock pins for the duration of a ``with`` block; the previous factory is restored after."""
    previous = Device.pin_factory
    factory = use_mock_pins()
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous


def mock_factory(pin_factory: MockFactory | None = None) -> MockFactory:
    """``pin_factory``, else the installed factory; TypeError unless it is a MockFactory."""
    factory = pin_factory if pin_factory is not None else Device.pin_factory
    if not isinstance(factory, MockFactory):
        raise TypeError(
            "simulated hardware needs gpiozero's MockFactory: call "
            "evcp.mocks.pins.use_mock_pins() first"
        )
    return factory


def energised(pin: MockPin | None, active_high: bool = True) -> bool:
    """True while a driver holds ``pin`` as an output at its active level."""
    return pin is not None and pin.function == "output" and bool(pin.state) == active_high


def existing_pin(factory: MockFactory, number: int) -> MockPin | None:
    """The mock pin for GPIO ``number`` if something created it already, without creating it."""
    for _header, info in factory.board_info.find_pin(number):
        return factory.pins.get(info)
    return None


class _ExternallyDriven:
    """A line driven push-pull by a circuit outside the Pi: the Pi's pull resistor cannot move it."""

    held: bool | None = None

    def hold(self, level: bool) -> None:
        """Drive the line to ``level`` and keep it there whatever pull the Pi selects."""
        self.held = level
        if level:
            self.drive_high()
        else:
            self.drive_low()

    def _set_pull(self, value):
        if self.held is None:
            super()._set_pull(value)
            return
        if self.info.pull and value != self.info.pull:
            raise PinFixedPull(f"{self!r} has a fixed pull resistor")
        if value not in ("floating", "up", "down"):
            raise PinInvalidPull("pull must be floating, up, or down")
        self._pull = value


class HeldPin(_ExternallyDriven, MockPin):
    """A MockPin that an outside circuit holds at a level."""


class HeldPWMPin(_ExternallyDriven, MockPWMPin):
    """A MockPWMPin that an outside circuit holds at a level."""


class _Watched:
    """An output whose changes of level or function call listeners (in the changing thread)."""

    def __init__(self, factory, info):
        self.listeners: list[Callable[[], None]] = []
        super().__init__(factory, info)

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            self._notify()
        return changed

    def _set_function(self, value):
        super()._set_function(value)
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()


class WatchedPin(_Watched, MockPin):
    """A MockPin that tells listeners when it changes."""


class WatchedPWMPin(_Watched, MockPWMPin):
    """A MockPWMPin that tells listeners when it changes."""


def held_pin(factory: MockFactory, number: int) -> MockPin:
    """The pin for GPIO ``number``, created as a held pin if nothing created it yet.

    A pin that already exists is returned as it is: ``drive()`` still sets
    it, but a device opened on it later resets it to its pull level.
    """
    pin_class = HeldPWMPin if _pwm_factory(factory) else HeldPin
    return factory.pin(number, pin_class=pin_class)


def drive(pin: MockPin, level: bool) -> None:
    """Set an input line's level from outside the Pi."""
    if isinstance(pin, _ExternallyDriven):
        pin.hold(level)
    elif level:
        pin.drive_high()
    else:
        pin.drive_low()


def watched_pin(factory: MockFactory, number: int) -> WatchedPin | WatchedPWMPin:
    """The pin for GPIO ``number`` as a watched pin; RuntimeError if a plain pin exists already.

    Create the watcher before the device that drives the pin (a watcher
    cannot be attached to a pin object a device already holds).
    """
    pin_class = WatchedPWMPin if _pwm_factory(factory) else WatchedPin
    pin = factory.pin(number, pin_class=pin_class)
    if not isinstance(pin, _Watched):
        raise RuntimeError(
            f"GPIO{number} already exists as a plain mock pin: create the simulator "
            "before the driver that uses this pin"
        )
    return pin


def _pwm_factory(factory: MockFactory) -> bool:
    return issubclass(factory.pin_class, MockPWMPin)
