"""Hardware abstraction layer: the charger's devices behind small interfaces.

Every device has a real backend (gpiozero, pymodbus, spidev for the RC522,
sysfs PWM) and a simulated one in ``evcp.mocks``; ``evcp.hal.factory`` picks
them from the installer config. Nothing here decides anything: the controller
core does.

Each method's docstring is its promise to the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

#: Control-pilot states of IEC 61851-1 Annex A (see ``evcp.hal.iec61851``).
PILOT_STATES = ("A", "B", "C", "D", "E", "F")


class HardwareError(Exception):
    """A device could not be set up or did not answer; the message says which."""


class MeterError(HardwareError):
    """The energy meter did not answer or answered nonsense."""


@runtime_checkable
class Relay(Protocol):
    """The contactor that connects the EV to the mains."""

    def close(self) -> None:
        """Energise the contactor. Only the core's CloseRelay action calls this."""

    def open(self) -> None:
        """De-energise the contactor. Idempotent, never raises, safe from any state."""

    @property
    def is_closed(self) -> bool:
        """The commanded state (True after close(), False after open())."""

    def feedback_closed(self) -> bool | None:
        """What the mirror contact says (True = contacts closed); None without feedback input."""

    def release(self) -> None:
        """Open the contactor and free the GPIO lines. The relay stays open afterwards."""


@runtime_checkable
class Pilot(Protocol):
    """The control-pilot line (IEC 61851-1): reads the EV's state, signals the current limit."""

    def read_state(self) -> str | None:
        """The CP state now: "A".."F", or None while the reading is unstable.

        Never blocks the event loop for long (an ADC pilot samples in a thread of its
        own and returns its latest reading); never debounces (the core does, with time
        passed in).
        """

    @property
    def diagnosis(self) -> str | None:
        """Why the last reading is D, E or F, in words (e.g. "EV diode missing: low level
        -8.8 V while the PWM runs"); None otherwise."""

    def note_contactor_switched(self) -> None:
        """The runtime calls this right after the contactor moved: a pilot that samples the
        CP ignores it for a short blanking time (the switching spike is no state)."""

    def offer_current(self, amps: float) -> None:
        """Run the 1 kHz PWM with the duty cycle for ``amps`` (6..80 A, IEC 61851-1 Table A.7)."""

    def stop_offer(self) -> None:
        """Constant +12 V: the EV may not draw current (states A1/B1/C1)."""

    def signal_fault(self) -> None:
        """Constant -12 V: state F, EVSE not available."""

    @property
    def offered_current(self) -> float | None:
        """The current now offered by PWM in amps, or None when no PWM runs."""

    def release(self) -> None:
        """Stop the PWM (constant +12 V where possible) and free the lines."""


@runtime_checkable
class WatchableInputs(Protocol):
    """A device whose inputs raise edge events, so the shell need not poll it fast.

    Backends without edges (an ADC) simply do not have ``watch``; they are polled.
    """

    def watch(self, on_change: ChangeCallback) -> None:
        """Call ``on_change`` (from any thread) whenever one of the inputs changes level."""


#: Called from any thread when an input line changes; it must only schedule work.
ChangeCallback = Callable[[], None]

#: Called from the reader's own thread with the tag id as upper-case hex.
TagCallback = Callable[[str], None]
#: Called from the reader's own thread as ``(False, why)`` when the reader fails and
#: ``(True, "")`` when it works again; ``why`` is short enough for a status's info.
HealthCallback = Callable[[bool, str], None]


@runtime_checkable
class TagReader(Protocol):
    """An RFID/NFC reader. One tap per card presentation, not one per poll."""

    def start(self, on_tag: TagCallback, on_health: HealthCallback) -> None:
        """Begin polling in a thread of its own; never blocks the caller.

        A device that is missing or broken is not an exception: it is reported
        through ``on_health(False, why)`` and tried again.
        """

    def stop(self) -> None:
        """Stop polling and free the device. Idempotent."""


@runtime_checkable
class CableSensor(Protocol):
    """The proximity pilot of a socket outlet: which cable is plugged in (IEC 61851-1 Annex B)."""

    def read(self):
        """Measure now (milliseconds): an ``evcp.hal.proximity.ProximityReading``. Raises HardwareError."""

    def release(self) -> None:
        """Free the input. Idempotent."""


@runtime_checkable
class SocketLock(Protocol):
    """The actuator holding the plug in a socket outlet, with a feedback contact."""

    def lock(self) -> bool:
        """Lock; blocks until the feedback confirms or a timeout. Returns the measured position (True = locked).
        Raises HardwareError when the actuator cannot be driven or its feedback cannot be read."""

    def unlock(self) -> bool:
        """Unlock; blocks until the feedback confirms or a timeout. Returns the measured position (True = locked).
        Raises HardwareError when the actuator cannot be driven or its feedback cannot be read."""

    @property
    def is_locked(self) -> bool:
        """What the feedback contact says now."""

    def release(self) -> None:
        """Stop driving the actuator and free its lines. Idempotent."""


@dataclass(frozen=True)
class MeterSample:
    """One reading of an energy meter; per-phase tuples have one entry per wired phase."""

    energy_wh: float
    power_w: float
    current_a: tuple[float, ...] = ()
    voltage_v: tuple[float, ...] = ()


@runtime_checkable
class EnergyMeter(Protocol):
    """An energy meter on the connector's supply."""

    async def read(self) -> MeterSample:
        """Read the meter now. Raises MeterError after its own short timeout; never hangs."""

    async def close(self) -> None:
        """Close the connection. Idempotent."""
