"""The power-fail input: a UPS or supply monitor saying the mains is failing.

The line is debounced by a hold time: a new level counts only once it has lasted ``hold_s``
(``hardware.power_fail_hold_s``, default 100 ms), so a glitch while the line is read does not
stop every transaction with reason PowerLoss (hal-realism #11).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from gpiozero import DigitalInputDevice

from evcp.hal import HardwareError

DEFAULT_HOLD_S = 0.1


def debounced_level(accepted: bool, raw: bool, raw_since: float, now: float, hold_s: float) -> bool:
    """The level to believe: the raw one once it has been stable for ``hold_s``, else the old one."""
    if raw != accepted and now - raw_since >= hold_s:
        return raw
    return accepted


class PowerFailInput:
    """``failing`` is True once the input has been asserted for ``hold_s`` (and False once it has
    been released for as long); ``watch`` reports its edges and the moment a hold completes."""

    def __init__(self, pin: int, active_high: bool = False, pin_factory=None, hold_s: float = DEFAULT_HOLD_S,
                 clock: Callable[[], float] = time.monotonic):
        try:
            self._input = DigitalInputDevice(pin, pull_up=not active_high, pin_factory=pin_factory)
        except Exception as exc:
            raise HardwareError(f"power-fail input: cannot read GPIO{pin}: {exc}") from exc
        self._pin = pin
        self.hold_s = hold_s
        self._clock = clock
        self._lock = threading.Lock()
        self._accepted = False
        self._raw = False
        self._raw_since = clock()
        self._sample()
        self._on_change: Callable[[], None] | None = None
        self._timer: threading.Timer | None = None

    def _sample(self) -> bool:
        try:
            raw = bool(self._input.is_active)
        except Exception as exc:
            raise HardwareError(f"power-fail input: cannot read GPIO{self._pin}: {exc}") from exc
        now = self._clock()
        with self._lock:
            if raw != self._raw:
                self._raw, self._raw_since = raw, now
            self._accepted = debounced_level(self._accepted, self._raw, self._raw_since, now, self.hold_s)
            return self._accepted

    @property
    def failing(self) -> bool:
        """Whether the mains is failing (the debounced level). Raises HardwareError when the input
        cannot be read."""
        return self._sample()

    def watch(self, on_change) -> None:
        """Call ``on_change`` (from gpiozero's callback thread or a timer thread) on every edge and
        again when the hold time after it has run out, so the new level can be believed."""
        self._on_change = on_change
        self._input.when_activated = self._input.when_deactivated = lambda *_: self._edge()

    def _edge(self) -> None:
        try:
            self._sample()
        except HardwareError:
            pass  # the watcher, told below, reads the input again and hears the error
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self.hold_s + 0.005, self._held)
        self._timer.daemon = True
        self._timer.start()
        if self._on_change is not None:
            self._on_change()

    def _held(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._input.close()
