"""The power-fail input: a UPS or supply monitor saying the mains is failing."""

from __future__ import annotations

from gpiozero import DigitalInputDevice

from evcp.hal import HardwareError


class PowerFailInput:
    """``failing`` is True while the input is asserted; ``watch`` reports its edges."""

    def __init__(self, pin: int, active_high: bool = False, pin_factory=None):
        try:
            self._input = DigitalInputDevice(pin, pull_up=not active_high, pin_factory=pin_factory)
        except Exception as exc:
            raise HardwareError(f"power-fail input: cannot read GPIO{pin}: {exc}") from exc

    @property
    def failing(self) -> bool:
        return bool(self._input.is_active)

    def watch(self, on_change) -> None:
        """Call ``on_change`` (from gpiozero's callback thread) on every edge."""
        self._input.when_activated = self._input.when_deactivated = lambda *_: on_change()

    def release(self) -> None:
        self._input.close()
