"""Pilot level: raw control-pilot readings in, debounced IEC 61851-1 states out.

Asymmetric on purpose. Leaving C must open the contactor within 100 ms
(IEC 61851-1 Table A.6 sequence 8.1, as quoted by EVerest), so a state other
than C is believed after ``leave_charge_s``. Entering C may take up to 3 s
(sequence 4), so C is believed only after ``enter_charge_s`` of stable
readings, as Tinkerforge and SmartEVSE do with 500 ms. An unstable reading
(None: between the voltage windows) keeps the current state, as the Pionix
Yeti firmware does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PilotFilter:
    """Debounces one connector's pilot readings. Feed it every sample with its time."""

    enter_charge_s: float = 0.5
    leave_charge_s: float = 0.0
    settle_s: float = 0.05
    """How long A or B must be stable when coming from a state other than C."""
    state: str = "A"
    _candidate: str | None = field(default=None, repr=False)
    _since: float = field(default=0.0, repr=False)

    @property
    def settling(self) -> bool:
        """A new reading is waiting to become stable: keep sampling fast."""
        return self._candidate is not None

    def feed(self, reading: str | None, now: float) -> str | None:
        """Take one raw reading; returns the new debounced state when it changes, else None."""
        if reading is None or reading == self.state:
            self._candidate = None
            return None
        if reading != self._candidate:
            self._candidate, self._since = reading, now
        if now - self._since >= self._hold_time(reading):
            self.state, self._candidate = reading, None
            return reading
        return None

    def _hold_time(self, reading: str) -> float:
        if reading == "C":
            return self.enter_charge_s
        if self.state == "C" or reading in ("D", "E", "F"):
            return self.leave_charge_s
        return self.settle_s
