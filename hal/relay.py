"""The contactor on a GPIO output, with an optional mirror-contact input.

The relay is open from the moment the object exists, and it is opened again
when the interpreter exits (normal exit or an uncaught exception), before
gpiozero's own exit hook frees the pins. A SIGTERM only reaches that hook if
the process turns it into ``SystemExit``; a SIGKILL, the watchdog's SIGABRT
or a kernel crash never does. Raspberry Pi kernels then keep the output at its
last level (raspberrypi/linux PR #6117) unless ``dtparam=strict_gpiod`` is set,
so a closed contactor would stay closed: ``force_relays_off`` (``evcp
relays-off``, run by the unit's ``ExecStopPost=``) drives every coil pin to its
off level after any exit, and a ``RelayHeartbeat`` lets a retriggerable
monostable on the driver drop the contactor on its own when the pulses stop.
The boot state matters too: at power-on GPIO9-27 are inputs with a pull-down,
which holds an active-high driver off and energises an active-low one.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Iterable

from gpiozero import DigitalInputDevice, OutputDevice

from evcp.hal import HardwareError

if TYPE_CHECKING:
    from evcp.config import RelayConfig

log = logging.getLogger("evcp.hal.relay")

#: Every relay not yet released; ``open_all_relays`` opens them at exit.
_live_relays: "weakref.WeakSet[GpioRelay]" = weakref.WeakSet()

#: How long ``open()`` waits for a concurrent ``close()`` before acting anyway.
_OPEN_LOCK_TIMEOUT_S = 0.5


def open_all_relays() -> None:
    """Open every relay that has not been released. Never raises.

    Registered with ``atexit`` when this module is imported, so a crash that
    unwinds the interpreter leaves every contactor open.
    """
    for relay in list(_live_relays):
        relay.open()


atexit.register(open_all_relays)


class GpioRelay:
    """A contactor driven by ``OutputDevice``; implements ``evcp.hal.Relay``.

    ``config.active_high`` says which level energises the coil. With
    ``config.feedback_pin`` set, a mirror contact is read through a
    ``DigitalInputDevice``; ``config.feedback_active_high`` says which level
    means "main contacts closed". The input's pull resistor is
    ``config.feedback_pull_resistor``: by default towards "closed", so a broken
    wire to the normally closed mirror contact (IEC 60947-4-1 Annex F) reads
    "not proven open", which the charger takes for a welded contactor.
    """

    def __init__(self, config: RelayConfig, pin_factory=None):
        self._config = config
        self._lock = threading.RLock()
        self._closed = False
        try:
            self._coil: OutputDevice | None = OutputDevice(
                config.pin,
                active_high=config.active_high,
                initial_value=False,
                pin_factory=pin_factory,
            )
        except Exception as exc:
            raise HardwareError(f"relay: cannot drive GPIO{config.pin}: {exc}") from exc
        self._feedback: DigitalInputDevice | None = None
        if config.feedback_pin is not None:
            try:
                # The pull and the active level are set apart: gpiozero ties them together otherwise.
                self._feedback = DigitalInputDevice(
                    config.feedback_pin,
                    pull_up=None,
                    active_state=config.feedback_active_high,
                    pin_factory=pin_factory,
                )
                pull = config.feedback_pull_resistor
                if pull != "none":
                    self._feedback.pin.pull = pull
            except Exception as exc:
                if self._feedback is not None:
                    self._feedback.close()
                    self._feedback = None
                self._coil.close()
                self._coil = None
                raise HardwareError(
                    f"relay: cannot read feedback GPIO{config.feedback_pin} "
                    f"(pull {config.feedback_pull_resistor}): {exc}"
                ) from exc
        _live_relays.add(self)

    def close(self) -> None:
        """Energise the coil. Raises HardwareError after release() or if the GPIO write fails."""
        with self._lock:
            if self._coil is None:
                raise HardwareError(f"relay on GPIO{self._config.pin} was released; it cannot close")
            try:
                self._coil.on()
            except Exception as exc:
                self.open()
                raise HardwareError(f"relay: cannot energise GPIO{self._config.pin}: {exc}") from exc
            self._closed = True

    def open(self) -> None:
        """De-energise the coil. Idempotent, never raises, safe from any thread and state.

        A concurrent close() holds the lock for microseconds; if it does not
        let go within half a second the coil is switched off regardless.
        """
        locked = self._lock.acquire(timeout=_OPEN_LOCK_TIMEOUT_S)
        try:
            self._closed = False
            coil = self._coil
            if coil is not None:
                coil.off()
        except Exception:
            log.exception("relay: could not de-energise GPIO%s", self._config.pin)
        finally:
            if locked:
                self._lock.release()

    @property
    def is_closed(self) -> bool:
        """The commanded state: True after close(), False after open() or release()."""
        return self._closed

    def feedback_closed(self) -> bool | None:
        """True when the mirror contact says the main contacts are closed.

        None without a feedback input, or after release(). Compare it with
        ``is_closed`` to detect a welded (closed while commanded open) or
        stuck-open contactor; the core decides what a mismatch means.
        """
        feedback = self._feedback
        if feedback is None:
            return None
        try:
            return bool(feedback.is_active)
        except Exception as exc:
            raise HardwareError(
                f"relay: cannot read feedback GPIO{self._config.feedback_pin}: {exc}"
            ) from exc

    def watch(self, on_change) -> None:
        """Call ``on_change`` (from gpiozero's callback thread) on every edge of the mirror contact."""
        if self._feedback is not None:
            self._feedback.when_activated = self._feedback.when_deactivated = lambda *_: on_change()

    def release(self) -> None:
        """Open the relay, then free both GPIO lines. Idempotent; the relay stays open."""
        self.open()
        with self._lock:
            for device in (self._feedback, self._coil):
                if device is not None:
                    try:
                        device.close()
                    except Exception:
                        log.exception("relay: could not free %r", device)
            self._coil = None
            self._feedback = None
        _live_relays.discard(self)

    def __repr__(self) -> str:
        state = "released" if self._coil is None else ("closed" if self._closed else "open")
        return f"<GpioRelay GPIO{self._config.pin} {state}>"


def force_relays_off(relays: Iterable[RelayConfig], pin_factory=None) -> tuple[list[OutputDevice], list[str]]:
    """Drive each coil pin to its de-energising level, without anything else of the charger.

    For ``evcp relays-off`` after the charger has exited (however it ended). Returns the devices
    driven, still claimed as outputs at the off level (the caller ends the process without
    closing them: gpiozero's close turns a pin into a floating input, whereas the kernel keeps the
    off level, or with ``dtparam=strict_gpiod`` returns the line to its pulled default), and one
    message per pin that could not be driven; a failure does not stop the other pins.
    """
    held: list[OutputDevice] = []
    failures: list[str] = []
    for config in relays:
        try:
            held.append(OutputDevice(config.pin, active_high=config.active_high, initial_value=False,
                                     pin_factory=pin_factory))
        except Exception as exc:  # noqa: BLE001 - the other relays are still forced off
            failures.append(f"GPIO{config.pin}: cannot drive it: {exc}")
    return held, failures


class RelayHeartbeat:
    """A GPIO toggled while a contactor is closed, for a retriggerable monostable that gates the
    relay driver (as on nsayer's OpenEVSE Pi HAT): no edges for the monostable's period, and the
    driver drops the contactor whatever the relay pin says. Starts (and is released) low."""

    def __init__(self, pin: int, pin_factory=None):
        self._pin = pin
        try:
            self._output: OutputDevice | None = OutputDevice(pin, initial_value=False, pin_factory=pin_factory)
        except Exception as exc:
            raise HardwareError(f"relay heartbeat: cannot drive GPIO{pin}: {exc}") from exc

    def toggle(self) -> None:
        """One edge. Never raises (a failed write only means the monostable times out: open)."""
        output = self._output
        if output is None:
            return
        try:
            output.toggle()
        except Exception:
            log.exception("relay heartbeat: could not toggle GPIO%s", self._pin)

    def stop(self) -> None:
        """Hold the line low: the monostable runs out and the driver releases."""
        output = self._output
        if output is not None:
            try:
                output.off()
            except Exception:
                log.exception("relay heartbeat: could not drive GPIO%s low", self._pin)

    def release(self) -> None:
        self.stop()
        if self._output is not None:
            try:
                self._output.close()
            except Exception:
                log.exception("relay heartbeat: could not free GPIO%s", self._pin)
        self._output = None
