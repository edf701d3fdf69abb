"""A simulated socket outlet: the cable in it (its PP resistor) and the actuator that locks it.

``SimulatedCable`` is the driver's cable: its rating resistor Rc between PP and PE
(IEC 61851-1 Annex B), present while the cable is in the socket. ``SimulatedPpAdc`` is the
MCP3xxx channel behind the charger's PP pull-up: ``AdcProximity`` reads it exactly as it reads
a real chip (``raw_value``). ``SimulatedLockActuator`` watches the lock outputs that
``GpioLock`` drives (gpiozero mock pins) and moves its feedback contact after ``travel_s``,
unless it is jammed (a plug pushed in halfway, a broken actuator: OCTT TC_024, TC_030).

All three are thread-safe and keep a ``history`` of ``(monotonic time, event)``.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable

from evcp.mocks.pins import drive, energised, held_pin, mock_factory, watched_pin

if TYPE_CHECKING:
    from gpiozero.pins.mock import MockFactory

    from evcp.config import LockConfig, ProximityConfig

#: The nominal Rc of each rating (IEC 61851-1 Annex B).
RATING_OHMS = {13.0: 1500.0, 20.0: 680.0, 32.0: 220.0, 63.0: 100.0}
OUT_OF_BAND_OHMS = 3300.0
"""What a damaged cable reads when the bench injects a PP fault: between every band and "open"."""


class SimulatedCable:
    """The cable in a socket outlet, seen through its PP resistor."""

    def __init__(self, rating_a: float | None = 32.0):
        self._lock = threading.Lock()
        self._rating_a = _checked(rating_a)
        self._in_socket = False
        self._damaged = False
        self.history: list[tuple[float, str]] = []

    @property
    def rating_a(self) -> float | None:
        return self._rating_a

    @property
    def in_socket(self) -> bool:
        return self._in_socket

    @property
    def damaged(self) -> bool:
        return self._damaged

    def choose(self, rating_a: float | None) -> None:
        """Use a cable of another rating (13, 20, 32 or 63 A), or none at all (None)."""
        with self._lock:
            self._rating_a = _checked(rating_a)
            self._event(f"cable {rating_a}")

    def insert(self) -> None:
        with self._lock:
            self._in_socket = True
            self._event("insert")

    def remove(self) -> None:
        with self._lock:
            self._in_socket = False
            self._event("remove")

    def damage(self, damaged: bool = True) -> None:
        """A broken rating resistor: PP reads out of every band until ``damage(False)``."""
        with self._lock:
            self._damaged = damaged
            self._event("damage" if damaged else "repair")

    @property
    def ohms(self) -> float | None:
        """Rc between PP and PE now; None = open (no cable, or a socket without one)."""
        with self._lock:
            if not self._in_socket or self._rating_a is None:
                return None
            return OUT_OF_BAND_OHMS if self._damaged else RATING_OHMS[self._rating_a]

    def _event(self, text: str) -> None:
        self.history.append((time.monotonic(), text))


class SimulatedPpAdc:
    """The ADC channel on the PP line: ``raw_value`` from the divider pull-up / Rc."""

    def __init__(self, cable: SimulatedCable, config: ProximityConfig):
        self._cable = cable
        self._config = config
        self.bits = 12 if config.adc_chip.startswith("mcp32") else 10
        self.max_raw = (1 << self.bits) - 1

    @property
    def raw_value(self) -> int:
        config = self._config
        supply = config.supply_v / config.adc_vref_v
        ohms = self._cable.ohms
        fraction = supply if ohms is None else supply * ohms / (ohms + config.pullup_ohm)
        return max(0, min(self.max_raw, round(fraction * self.max_raw)))

    def close(self) -> None:
        pass


class SimulatedLockActuator:
    """The lock of a socket outlet, on the pins ``GpioLock`` drives; create it before the driver.

    A solenoid is locked while its coil is energised; a motor moves while one of its two
    inputs is driven. Either way the pin arrives ``travel_s`` later and the feedback follows,
    unless ``jam()`` froze it where it is.
    """

    def __init__(self, config: LockConfig, pin_factory: MockFactory | None = None, travel_s: float = 0.05,
                 on_move: Callable[[bool], None] | None = None):
        self._factory = mock_factory(pin_factory)
        self._config = config
        self.travel_s = travel_s
        self._on_move = on_move
        self._lock = threading.RLock()
        self._locked = False
        self._jammed = False
        self._timer: threading.Timer | None = None
        self.history: list[tuple[float, str]] = []
        self._lock_out = watched_pin(self._factory, config.lock_pin)
        self._unlock_out = (watched_pin(self._factory, config.unlock_pin)
                            if config.actuator == "motor" and config.unlock_pin is not None else None)
        self._feedback = held_pin(self._factory, config.feedback_pin)
        for pin in (self._lock_out, self._unlock_out):
            if pin is not None:
                pin.listeners.append(self._driven)
        with self._lock:
            self._show()

    @property
    def locked(self) -> bool:
        return self._locked

    @property
    def jammed(self) -> bool:
        return self._jammed

    def jam(self, jammed: bool = True) -> None:
        """Freeze the pin where it is (True) or free it again (False)."""
        with self._lock:
            self._jammed = jammed
            self.history.append((time.monotonic(), "jam" if jammed else "free"))
            if not jammed:
                self._driven()

    def give_way(self) -> None:
        """The pin falls back to unlocked with nothing driving it (a worn actuator, a plug forced
        out): the feedback reads unlocked while the outputs still say locked."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._locked = False
            self.history.append((time.monotonic(), "gave way"))
            self._show()
        if self._on_move is not None:
            self._on_move(False)

    def detach(self) -> None:
        """Stop following the outputs. Idempotent."""
        for pin in (self._lock_out, self._unlock_out):
            if pin is not None and self._driven in pin.listeners:
                pin.listeners.remove(self._driven)
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _target(self) -> bool | None:
        """Where the outputs push the pin: True (lock), False (unlock), None (nowhere: a motor at rest)."""
        active_high = self._config.outputs_active_high
        forward = energised(self._lock_out, active_high)
        if self._config.actuator == "solenoid":
            return forward
        back = energised(self._unlock_out, active_high)
        if forward == back:
            return None
        return forward

    def _driven(self) -> None:
        with self._lock:
            target = self._target()
            if target is None or target == self._locked or self._jammed:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.travel_s, self._arrive, args=(target,))
            self._timer.daemon = True
            self._timer.start()

    def _arrive(self, target: bool) -> None:
        with self._lock:
            if self._jammed or target == self._locked:
                return
            # A motor's pulse may already be over: the pin arrives all the same (it is a geared drive).
            if self._config.actuator == "solenoid" and self._target() != target:
                return
            self._locked = target
            self.history.append((time.monotonic(), "locked" if target else "unlocked"))
            self._show()
        if self._on_move is not None:
            self._on_move(target)

    def _show(self) -> None:
        drive(self._feedback, self._locked == self._config.feedback_active_high)


def _checked(rating_a: float | None) -> float | None:
    if rating_a is not None and float(rating_a) not in RATING_OHMS:
        raise ValueError(f"a cable is rated 13, 20, 32 or 63 A (got {rating_a!r})")
    return None if rating_a is None else float(rating_a)
