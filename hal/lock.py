"""The actuator that locks the plug in a socket outlet, with its feedback contact.

IEC 61851-1 (mode 3, case B) asks a socket outlet to hold the plug while it is live; the core
locks before the contactor may close and unlocks once it is open. Two kinds of actuator:

- ``motor``: a geared motor behind an H-bridge (the Type 2 socket actuators of Mennekes, Phoenix
  Contact, ...): ``lock_pin`` drives it one way, ``unlock_pin`` the other, each for at most
  ``pulse_s``; the two inputs are never driven at once (that shorts the bridge).
- ``solenoid``: a coil held energised (``lock_pin``) as long as the plug is locked.

Only the feedback contact says where the pin is: ``lock()`` and ``unlock()`` return what it
measures once it confirmed the move or ``timeout_s`` passed. Its input is pulled towards "not
locked", so a broken feedback wire reads unlocked, which keeps the contactor open.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from evcp.hal import HardwareError

if TYPE_CHECKING:
    from evcp.config import LockConfig

log = logging.getLogger("evcp.hal.lock")

FEEDBACK_POLL_S = 0.01


class GpioLock:
    """A socket lock on GPIO outputs with a feedback input; implements ``evcp.hal.SocketLock``.

    Blocking (up to ``timeout_s``): the runtime calls ``lock``/``unlock`` in a worker thread.
    """

    def __init__(self, config: LockConfig, pin_factory=None):
        self._config = config
        self._move = threading.Lock()
        self._devices: list = []
        try:
            self._lock_out = self._output(config.lock_pin, pin_factory)
            self._unlock_out = (self._output(config.unlock_pin, pin_factory)
                                if config.actuator == "motor" else None)
            try:
                self._feedback = DigitalInputDevice(config.feedback_pin, pull_up=not config.feedback_active_high,
                                                    pin_factory=pin_factory)
            except Exception as exc:
                raise HardwareError(f"socket lock: cannot read feedback GPIO{config.feedback_pin}: {exc}") from exc
            self._devices.append(self._feedback)
        except Exception:
            self.release()
            raise

    @property
    def is_locked(self) -> bool:
        """What the feedback contact says now. Raises HardwareError when it cannot be read."""
        feedback = self._feedback
        try:
            return bool(feedback.is_active)
        except Exception as exc:
            raise HardwareError(f"socket lock: cannot read feedback GPIO{self._config.feedback_pin}: {exc}") from exc

    def watch(self, on_change) -> None:
        """Call ``on_change`` (from gpiozero's callback thread) on every edge of the feedback contact."""
        self._feedback.when_activated = self._feedback.when_deactivated = lambda *_: on_change()

    def lock(self) -> bool:
        """Move the pin to locked; returns the measured position (True = locked). Raises
        HardwareError when an output cannot be driven or the feedback cannot be read."""
        return self._go(locked=True)

    def unlock(self) -> bool:
        """Move the pin to unlocked; returns the measured position (True = still locked). Raises
        HardwareError when an output cannot be driven or the feedback cannot be read."""
        return self._go(locked=False)

    def _go(self, locked: bool) -> bool:
        try:
            return self._drive(locked)
        except HardwareError:
            raise
        except Exception as exc:  # a GPIO write failed: the driver's promise is HardwareError
            config = self._config
            pins = "/".join(f"GPIO{pin}" for pin in (config.lock_pin, config.unlock_pin) if pin is not None)
            raise HardwareError(f"socket lock: cannot drive the actuator on {pins}: {exc}") from exc

    def _drive(self, locked: bool) -> bool:
        config = self._config
        with self._move:
            deadline = time.monotonic() + config.timeout_s
            if config.actuator == "solenoid":
                self._lock_out.value = locked
                return self._wait_for(locked, deadline)
            drive, other = (self._lock_out, self._unlock_out) if locked else (self._unlock_out, self._lock_out)
            other.off()
            drive.on()
            try:
                reached = self._wait_for(locked, min(deadline, time.monotonic() + config.pulse_s))
            finally:
                drive.off()
            return reached if reached == locked else self._wait_for(locked, deadline)

    def _wait_for(self, locked: bool, deadline: float) -> bool:
        while True:
            position = self.is_locked
            if position == locked or time.monotonic() >= deadline:
                return position
            time.sleep(FEEDBACK_POLL_S)

    def release(self) -> None:
        """Stop driving the actuator and free the lines; a motor lock stays where it is. Idempotent."""
        for device in self._devices:
            try:
                device.close()
            except Exception:
                log.exception("socket lock: could not free %r", device)
        self._devices.clear()

    def _output(self, pin: int | None, pin_factory) -> DigitalOutputDevice:
        if pin is None:
            raise HardwareError("socket lock: a motor actuator needs both lock_pin and unlock_pin")
        try:
            device = DigitalOutputDevice(pin, active_high=self._config.outputs_active_high, initial_value=False,
                                         pin_factory=pin_factory)
        except Exception as exc:
            raise HardwareError(f"socket lock: cannot drive GPIO{pin}: {exc}") from exc
        self._devices.append(device)
        return device

    def __repr__(self) -> str:
        return f"<GpioLock {self._config.actuator} GPIO{self._config.lock_pin}>"
