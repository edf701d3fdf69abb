"""A simulated EV and contactor, wired to gpiozero mock pins.

``SimulatedEv`` plays the pilot interface board: it drives the board's
digital outputs (vehicle, charge, fault, short) that ``GpioPilot`` reads,
and it watches the relay output that ``GpioRelay`` drives to know whether
it gets power. It obeys the pilot like a real EV (IEC 61851-1 Annex A): it
closes S2 (state C) only while the PWM offers a current, draws no more than
that current, and opens S2 again when the PWM stops. ``PwmSeenByEv`` shows
it the duty the charger writes. ``ContactorModel`` plays the contactor's mirror contact: it
drives the relay's feedback input to follow the coil, unless welded.

Both are thread-safe and keep a ``history`` of ``(monotonic time, event)``.
Create them after ``use_mock_pins()`` and before the drivers they are wired
to (``ContactorModel`` requires it; ``SimulatedEv`` then owns its lines, so
a pilot opened later cannot pull them away from the EV's levels).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from evcp.hal.iec61851 import current_for_duty
from evcp.mocks.pins import drive, energised, existing_pin, held_pin, mock_factory, watched_pin

if TYPE_CHECKING:
    from gpiozero.pins.mock import MockFactory

    from evcp.config import PilotConfig, RelayConfig


class SimulatedEv:
    """An EV behind a pilot interface board; verbs change what ``GpioPilot`` reads.

    The board reports A (nothing), B (vehicle), C (vehicle + charge),
    E (short) and F (fault); it has no D output. ``request_charge()`` makes
    the EV want to charge; with ``waits_for_pwm`` (as the bench builds it) it
    shows C only while the PWM offers a current (B2 -> C2) and B otherwise;
    without, it shows C at once (tests of the pilot board's lines). ``power_w`` is what it
    draws: min(``max_power_w``, offered A x ``voltage_v`` x ``phases``) in C
    with the relay energised, else 0; ``current_a`` the same per phase in A.
    """

    def __init__(
        self,
        pilot: PilotConfig,
        relay: RelayConfig,
        max_power_w: float = 7400.0,
        pin_factory: MockFactory | None = None,
        phases: int = 3,
        voltage_v: float = 230.0,
        waits_for_pwm: bool = False,
    ):
        if pilot.backend != "gpio":
            raise ValueError(f"SimulatedEv drives a gpio pilot board (pilot.backend is {pilot.backend!r})")
        self._factory = mock_factory(pin_factory)
        self._pilot = pilot
        self._relay = relay
        self.max_power_w = max_power_w
        self.phases = phases
        self.voltage_v = voltage_v
        self.waits_for_pwm = waits_for_pwm
        self._offered_a: float | None = None
        self._lock = threading.RLock()
        self._plugged = False
        self._requesting = False
        self._fault = False
        self._short = False
        self.history: list[tuple[float, str]] = []
        self._vehicle_pin = held_pin(self._factory, pilot.vehicle_pin)
        self._charge_pin = held_pin(self._factory, pilot.charge_pin)
        self._fault_pin = None if pilot.fault_pin is None else held_pin(self._factory, pilot.fault_pin)
        self._short_pin = None if pilot.short_pin is None else held_pin(self._factory, pilot.short_pin)
        with self._lock:
            self._apply("wired")

    def plug(self) -> None:
        """Connect the cable: B (or C if charge is still requested)."""
        with self._lock:
            self._plugged = True
            self._apply("plug")

    def unplug(self) -> None:
        """Pull the cable: A, and the EV no longer requests charge."""
        with self._lock:
            self._plugged = False
            self._requesting = False
            self._apply("unplug")

    def request_charge(self) -> None:
        """Close S2: B -> C. RuntimeError when not plugged."""
        with self._lock:
            if not self._plugged:
                raise RuntimeError("the EV must be plugged before it requests charge")
            self._requesting = True
            self._apply("request_charge")

    def stop_charge(self) -> None:
        """Open S2: C -> B."""
        with self._lock:
            self._requesting = False
            self._apply("stop_charge")

    def inject_short(self) -> None:
        """Short CP to PE: the board reports E until ``clear_short()``."""
        with self._lock:
            self._require(self._short_pin, "short_pin", "E")
            self._short = True
            self._apply("inject_short")

    def clear_short(self) -> None:
        """Remove the CP-PE short."""
        with self._lock:
            self._short = False
            self._apply("clear_short")

    def inject_fault(self) -> None:
        """Make the board report F (e.g. a failed diode check) until ``clear_fault()``."""
        with self._lock:
            self._require(self._fault_pin, "fault_pin", "F")
            self._fault = True
            self._apply("inject_fault")

    def clear_fault(self) -> None:
        """Stop reporting F."""
        with self._lock:
            self._fault = False
            self._apply("clear_fault")

    def set_pilot(self, letter: str) -> None:
        """Present pilot state ``letter`` directly (A, B, C, E or F).

        Sets the whole model: A = unplugged, B = plugged, C = requesting,
        E = short, F = fault (E and F keep the plug as it was). ValueError for
        D or an unknown letter, or for E/F when the board has no such pin.
        """
        with self._lock:
            if letter == "A":
                self._plugged = self._requesting = self._short = self._fault = False
            elif letter in ("B", "C"):
                self._plugged, self._requesting = True, letter == "C"
                self._short = self._fault = False
            elif letter == "E":
                self._require(self._short_pin, "short_pin", "E")
                self._short, self._fault = True, False
            elif letter == "F":
                self._require(self._fault_pin, "fault_pin", "F")
                self._short, self._fault = False, True
            else:
                raise ValueError(f"the pilot board cannot present state {letter!r} (A, B, C, E, F)")
            self._apply(f"set_pilot {letter}")

    def pwm_changed(self, duty: float | None) -> None:
        """The CP duty the charger now signals (fraction, as seen on the CP); None = no PWM."""
        try:
            offered = current_for_duty(duty) if duty is not None else None
        except ValueError:
            offered = None  # constant +12 V (no offer), -12 V (F) or a duty that offers nothing
        with self._lock:
            if offered != self._offered_a:
                self._offered_a = offered
                self._apply(f"pwm {offered:g} A" if offered else "pwm off")

    @property
    def offered_a(self) -> float | None:
        """The current the PWM offers now, as the EV reads it (IEC 61851-1 Table A.8); None = none."""
        return self._offered_a

    @property
    def requesting(self) -> bool:
        """Whether the EV wants to charge (S2 closes as soon as the PWM offers a current)."""
        return self._requesting

    @property
    def state(self) -> str:
        """The pilot state the board presents now."""
        with self._lock:
            if self._short:
                return "E"
            if self._fault:
                return "F"
            if not self._plugged:
                return "A"
            if self._requesting and (self._offered_a is not None or not self.waits_for_pwm):
                return "C"
            return "B"

    @property
    def plugged(self) -> bool:
        """Whether the cable is in (whatever E or F the board reports)."""
        return self._plugged

    @property
    def relay_energised(self) -> bool:
        """True while a driver holds the relay output at its energising level."""
        return energised(existing_pin(self._factory, self._relay.pin), self._relay.active_high)

    @property
    def power_w(self) -> float:
        """What the EV draws now: up to the offered current in C with the relay energised, else 0."""
        with self._lock:
            if self.state != "C" or not self.relay_energised:
                return 0.0
            if self._offered_a is None:
                return self.max_power_w if not self.waits_for_pwm else 0.0
            return min(self.max_power_w, self._offered_a * self.voltage_v * self.phases)

    @property
    def current_a(self) -> float:
        """The current drawn on each phase now (A): ``power_w`` spread over the phases at
        ``voltage_v``, so never more than the PWM offers."""
        return self.power_w / (self.voltage_v * self.phases)

    def _apply(self, event: str) -> None:
        state = self.state
        active = self._pilot.inputs_active_high
        levels = {
            self._vehicle_pin: state in ("B", "C"),
            self._charge_pin: state == "C",
            self._fault_pin: state == "F",
            self._short_pin: state == "E",
        }
        for pin, asserted in levels.items():
            if pin is not None:
                drive(pin, asserted == active)
        self.history.append((time.monotonic(), f"{event} -> {state}"))

    @staticmethod
    def _require(pin, name: str, letter: str) -> None:
        if pin is None:
            raise ValueError(f"the pilot board has no {name}, so it cannot report {letter}")


class ContactorModel:
    """The contactor's mirror contact: the relay feedback input follows the coil output.

    ``weld()`` sticks the main contacts closed: the feedback then reports
    "closed" whatever the coil does, as a welded contactor would.
    """

    def __init__(self, relay: RelayConfig, pin_factory: MockFactory | None = None):
        if relay.feedback_pin is None:
            raise ValueError("ContactorModel needs relay.feedback_pin")
        self._factory = mock_factory(pin_factory)
        self._relay = relay
        self._lock = threading.RLock()
        self._welded = False
        self._feedback_level: bool | None = None
        self.history: list[tuple[float, str]] = []
        self._coil = watched_pin(self._factory, relay.pin)
        self._feedback = held_pin(self._factory, relay.feedback_pin)
        self._coil.listeners.append(self._follow)
        self._follow()

    @property
    def coil_energised(self) -> bool:
        """True while a driver holds the coil output at its energising level."""
        return energised(self._coil, self._relay.active_high)

    @property
    def contacts_closed(self) -> bool:
        """Whether the main contacts are closed (coil energised, or welded)."""
        with self._lock:
            return self._welded or self.coil_energised

    @property
    def welded(self) -> bool:
        """Whether ``weld()`` stuck the contacts closed."""
        return self._welded

    def weld(self) -> None:
        """Weld the main contacts closed; the feedback says "closed" from now on."""
        with self._lock:
            self._welded = True
            self.history.append((time.monotonic(), "weld"))
            self._follow()

    def unweld(self) -> None:
        """Free the contacts; they follow the coil again."""
        with self._lock:
            self._welded = False
            self.history.append((time.monotonic(), "unweld"))
            self._follow()

    def detach(self) -> None:
        """Stop following the coil. Idempotent."""
        if self._follow in self._coil.listeners:
            self._coil.listeners.remove(self._follow)

    def _follow(self) -> None:
        with self._lock:
            closed = self.contacts_closed
            level = closed == self._relay.feedback_active_high
            if self._feedback_level != level:
                drive(self._feedback, level)
                self._feedback_level = level
                self.history.append((time.monotonic(), "closed" if closed else "open"))


class PwmSeenByEv:
    """A ``PwmOutput`` that shows the simulated EV every duty the charger writes to the real one.

    It wraps the real driver (``SysfsPwm`` over a fake sysfs tree), so the charger's PWM code
    runs unchanged and the EV reacts at once, without polling the files.
    """

    def __init__(self, pwm, ev: SimulatedEv):
        self._pwm = pwm
        self._ev = ev

    def set_duty(self, fraction: float) -> None:
        self._pwm.set_duty(fraction)
        self._ev.pwm_changed(fraction)

    @property
    def duty(self) -> float | None:
        return self._pwm.duty

    def release(self) -> None:
        self._pwm.release()
        self._ev.pwm_changed(self._pwm.duty)

    def __getattr__(self, name):
        return getattr(self._pwm, name)
