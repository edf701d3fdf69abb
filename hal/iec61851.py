"""IEC 61851-1 Annex A / SAE J1772 control-pilot facts, as pure functions.

No clock, no I/O: the pilot drivers and the core call these with plain numbers.

Two layers: ``classify`` maps a CP high and low level to a state;
``find_plateaus`` and ``read_plateaus`` get those levels from a burst of
unsynchronised ADC samples of the 1 kHz PWM, as the sampling ADC pilot takes
them (the duty is known, the phase is not).

The standard itself is paywalled; the numbers below are the ones open charger
firmware cites from it (OpenEVSE, EVerest, Pionix Yeti, Tinkerforge, SmartEVSE)
and the Fluke FEV300 manual quotes.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Sequence

MIN_CURRENT_A = 6.0
MAX_CURRENT_A = 80.0
#: Above this current the second duty-cycle formula applies (Table A.7).
LOW_RANGE_MAX_A = 51.0

#: Nominal CP high level per state while the EV is connected (IEC 61851-1
#: Annex A; SAE J1772 Table A1 as copied into OpenEVSE).
NOMINAL_HIGH_V = {"A": 12.0, "B": 9.0, "C": 6.0, "D": 3.0}
#: Nominal CP low level while PWM runs and the EV's diode is present.
NOMINAL_LOW_V = -12.0
#: Half-width of every classification window, as in the Pionix Yeti firmware.
#: The SAE J1772 ranges (A 11.40-12.60, B 8.36-9.56, C 5.48-6.49, D 2.62-3.25,
#: negative -11.40..-12.60) all lie inside these windows; readings between two
#: windows are "unstable" rather than rounded to the nearer state.
WINDOW_V = 1.1
#: Absorbs float noise so that the documented window edges are inside.
_EDGE_EPSILON_V = 1e-9


def duty_for_current(amps: float) -> float:
    """The PWM duty cycle (fraction 0..1) that offers ``amps`` to the EV.

    IEC 61851-1 Table A.7: 6 A <= I <= 51 A gives I / 0.6 %; 51 A < I <= 80 A
    gives I / 2.5 + 64 %. Raises ValueError outside 6..80 A (and for NaN):
    an invalid offer is rejected here, never clamped into a valid one.

    The two formulas do not meet: 51 A is 85 % but 51.5 A is 84.6 %. For
    51 A < I < 52.5 A the EV reads (via the 10..85 % band) slightly less
    than ``amps``, never more, so the offer stays on the safe side.
    """
    if not MIN_CURRENT_A <= amps <= MAX_CURRENT_A:
        raise ValueError(
            f"pilot current must be {MIN_CURRENT_A:g}..{MAX_CURRENT_A:g} A (got {amps!r})"
        )
    if amps <= LOW_RANGE_MAX_A:
        return amps / 60.0
    return (amps / 2.5 + 64.0) / 100.0


def current_for_duty(duty: float) -> float:
    """The current in amps an EV may draw when it reads ``duty`` (fraction 0..1).

    The EV-side bands of IEC/EN 61851-1 as quoted in the Fluke FEV300 manual:
    8..10 % means 6 A; 10..85 % means duty x 0.6; 85..96 % means
    (duty - 64) x 2.5; 96..97 % means 80 A. Every other duty is no current
    offer (state E/F, digital communication, error, or 100 % = no charging)
    and raises ValueError.
    """
    percent = duty * 100.0
    if not 8.0 <= percent <= 97.0:
        raise ValueError(f"duty {duty!r} does not offer a current (valid 0.08..0.97)")
    if percent < 10.0:
        return MIN_CURRENT_A
    if percent <= 85.0:
        return percent * 0.6
    if percent <= 96.0:
        return (percent - 64.0) * 2.5
    return MAX_CURRENT_A


def classify(v_high: float, v_low: float | None = None) -> str | None:
    """Map the CP high and low levels (volts) to a state "A".."F", or None if unstable.

    ``v_high`` is the most positive level seen over at least one PWM period,
    ``v_low`` the most negative one; ``v_low`` is None when the hardware
    cannot measure it (then no diode check is possible).

    Windows are nominal +-1.1 V around 12/9/6/3 V and -12 V (Pionix Yeti
    ``ControlPilot.cpp``; IEC 61851-1 Annex A nominal levels):

    - high ~ -12 V: F, the EVSE drives a constant -12 V.
    - high ~ 0 V: E, CP shorted to PE or the EVSE unpowered.
    - high in the A/B/C/D window: that letter when the low level is ~ -12 V
      (PWM running, diode present) or in the same window (DC, no PWM).
    - high in a window but low neither ~ -12 V nor in that window: the PWM
      runs and the EV's diode is missing or shorted. Reported as "F": the
      states have no diode-fault letter, the EVSE must react as in F (relay
      open, no charging), and SAE J1772 asks the EVSE to go to F on a failed
      diode check (OpenEVSE ``J1772EvseController.cpp``).
      ``is_diode_fault`` tells the two apart for logs.
    - anything else (between windows, low above high, below -13.1 V): None.
    """
    if v_low is not None and v_low > v_high:
        return None
    if _near(v_high, NOMINAL_LOW_V):
        return "F" if v_low is None or _near(v_low, NOMINAL_LOW_V) else None
    if _near(v_high, 0.0):
        return "E"
    letter = _letter_for_high(v_high)
    if letter is None:
        return None
    if v_low is None or _near(v_low, NOMINAL_LOW_V) or _letter_for_high(v_low) == letter:
        return letter
    if is_diode_fault(v_high, v_low):
        return "F"
    return None


def is_diode_fault(v_high: float, v_low: float | None) -> bool:
    """True when the PWM runs but the low level is not ~ -12 V (missing/shorted EV diode).

    The signature OpenEVSE, esp32-evse and Yeti check for: the high level is a
    valid B..D level (an EV is connected), the low level lies above the -12 V
    window, at most about 0 V, and is not a DC reading of a positive state.
    """
    if v_low is None or v_low > v_high or _letter_for_high(v_high) in (None, "A"):
        return False  # in A no EV is connected: there is no diode to check
    above_negative_window = v_low > NOMINAL_LOW_V + WINDOW_V + _EDGE_EPSILON_V
    # Without the diode the EV's resistor loads the negative half too: the low level is
    # about minus the high level; with no -12 V supply it is about 0 V. A low level
    # above that is samples of an edge, not a level.
    at_most_zero = v_low <= WINDOW_V + _EDGE_EPSILON_V
    return above_negative_window and at_most_zero and _letter_for_high(v_low) is None


def _letter_for_high(volts: float) -> str | None:
    for letter, nominal in NOMINAL_HIGH_V.items():
        if _near(volts, nominal):
            return letter
    return None


def _near(volts: float, nominal: float) -> bool:
    return math.isfinite(volts) and abs(volts - nominal) <= WINDOW_V + _EDGE_EPSILON_V


# ---------------------------------------------------------------------------
# Levels from a burst of unsynchronised samples
# ---------------------------------------------------------------------------

#: A sample belongs to a plateau when it lies within this of the plateau's median.
PLATEAU_HALF_WIDTH_V = 0.5
#: Stability test, after the Pionix Yeti firmware (``ControlPilot_HAL.cpp`` calls a
#: reading unstable when either side's variance exceeds (0.1 V)^2). Wider here: a
#: 10-bit MCP3008 behind a 24 V divider has 23 mV steps, and the Pi has no
#: hardware trigger that samples each plateau at a fixed point.
MAX_PLATEAU_STDEV_V = 0.2
#: A plateau needs this many samples; fewer is one outlier or an edge, not a level.
MIN_PLATEAU_SAMPLES = 3
#: The share of a burst that may lie on neither plateau: edge samples taken while
#: the CP slews, and outliers. More means the level moved during the burst.
MAX_OUTSIDE_FRACTION = 0.15


@dataclass(frozen=True)
class Plateau:
    """One flat level of the CP waveform, from the samples that lie on it."""

    level_v: float
    """The median of its samples."""
    count: int
    stdev_v: float


@dataclass(frozen=True)
class Plateaus:
    """The high and low plateau of one burst of samples.

    ``low`` is None when the burst shows one level only (a constant CP, or a
    PWM phase too short to be sampled); ``high`` is None when no level holds
    ``MIN_PLATEAU_SAMPLES`` samples.
    """

    high: Plateau | None
    low: Plateau | None
    samples: int
    negative: Plateau | None = None
    """The samples in the -12 V window, wherever the plateaus are: at 96 % duty the 40 us
    low phase holds a few samples, some of them still on the falling edge."""

    @property
    def outside(self) -> int:
        """Samples on neither plateau (edges, outliers)."""
        on = sum(p.count for p in (self.high, self.low) if p is not None)
        return self.samples - on


@dataclass(frozen=True)
class PilotReading:
    """What one burst says: the state (None: unstable), why it is E/F/D, the levels seen."""

    state: str | None
    diagnosis: str | None = None
    high_v: float | None = None
    low_v: float | None = None


def find_plateaus(volts: Sequence[float]) -> Plateaus:
    """Sort a burst of CP samples (volts, any order) into its high and low plateau.

    The kernel PWM gives the duty but not the phase, so samples are sorted by
    value: the high plateau is the highest level that holds at least
    ``MIN_PLATEAU_SAMPLES`` samples within ``PLATEAU_HALF_WIDTH_V`` of its
    median, the low plateau the lowest one. Single outliers and the samples
    taken on an edge belong to neither.
    """
    values = sorted(v for v in volts if math.isfinite(v))
    in_window = values[bisect_left(values, NOMINAL_LOW_V - WINDOW_V):bisect_right(values, NOMINAL_LOW_V + WINDOW_V)]
    negative = _summary(in_window) if in_window else None
    top = _plateau(values, from_top=True)
    bottom = _plateau(values, from_top=False)
    if top is None or bottom is None:
        return Plateaus(None, None, len(values), negative)
    high, low = _summary(values[top[0]:top[1]]), _summary(values[bottom[0]:bottom[1]])
    if top[0] < bottom[1] or high.level_v - low.level_v <= 2 * PLATEAU_HALF_WIDTH_V:
        # one level, found from both ends
        return Plateaus(_summary(values[bottom[0]:top[1]]), None, len(values), negative)
    return Plateaus(high, low, len(values), negative)


def read_plateaus(plateaus: Plateaus, duty: float | None, last_low_v: float | None = None) -> PilotReading:
    """The state that a burst's plateaus show while the EVSE drives ``duty`` (0..1).

    ``duty`` 0 or 1 (or None) is a constant level: one plateau is expected.
    With 0 < duty < 1 the PWM runs: the high plateau gives the state and the
    low plateau must be about -12 V (the EV's diode check, SAE J1772 /
    OpenEVSE ``DIODE_CHK_FAILED``, Yeti ``DiodeFault``); a missing or shorted
    diode is "F". When the low phase was too short to be sampled (96 % duty
    leaves 40 us of each period), ``last_low_v``, the low level of an earlier
    burst of the same PWM, stands in for it; without one, B, C and D are
    unstable until a burst checks the diode (A has no EV, hence no diode).

    Samples in the -12 V window (``plateaus.negative``) prove the diode even when the
    low plateau found is not at -12 V: a short low phase holds edge samples.

    Unstable (state None): no plateau, a plateau that spreads more than
    ``MAX_PLATEAU_STDEV_V``, more than ``MAX_OUTSIDE_FRACTION`` of the samples
    on no plateau, two levels under a constant drive, or levels in no window.
    """
    high, low = plateaus.high, plateaus.low
    if high is None:
        return PilotReading(None)
    high_v, low_v = high.level_v, low.level_v if low is not None else None
    unsteady = any(p is not None and p.stdev_v > MAX_PLATEAU_STDEV_V for p in (high, low))
    allowed_outside = max(MIN_PLATEAU_SAMPLES, MAX_OUTSIDE_FRACTION * plateaus.samples)
    if unsteady or plateaus.outside > allowed_outside:
        return PilotReading(None, None, high_v, low_v)
    pwm_running = duty is not None and 0.0 < duty < 1.0
    if not pwm_running:
        if low is not None:
            return PilotReading(None, None, high_v, low_v)
        state = classify(high_v, high_v)
        return PilotReading(state, _diagnosis(state, high_v, high_v, duty), high_v, None)
    if low is None:
        if _near(high_v, 0.0):
            state = "E"
            return PilotReading(state, _diagnosis(state, high_v, high_v, duty), high_v, None)
        letter = _letter_for_high(high_v)
        if letter is None:
            return PilotReading(None, None, high_v, None)  # the high phase was not sampled
        if last_low_v is None and letter != "A":
            return PilotReading(None, None, high_v, None)  # an EV, and its diode not yet checked
        state = classify(high_v, last_low_v)
        return PilotReading(state, _diagnosis(state, high_v, last_low_v, duty), high_v, None)
    state = classify(high_v, low_v)
    letter = _letter_for_high(high_v)
    if (state is None or is_diode_fault(high_v, low_v)) and letter is not None and plateaus.negative is not None:
        # The CP reached -12 V, so the EV's diode blocks; the low "plateau" is samples of a
        # falling edge that did not settle within a short low phase (85..96 % duty).
        return PilotReading(letter, _diagnosis(letter, high_v, plateaus.negative.level_v, duty),
                            high_v, plateaus.negative.level_v)
    return PilotReading(state, _diagnosis(state, high_v, low_v, duty), high_v, low_v)


def _diagnosis(state: str | None, high_v: float, low_v: float | None, duty: float | None) -> str | None:
    if state == "D":
        return f"EV requests ventilation (state D, CP high level {high_v:+.1f} V)"
    if state == "E":
        if low_v is not None and not _near(low_v, 0.0):
            return (f"CP high level {high_v:+.1f} V while the low level is {low_v:+.1f} V: "
                    "the CP is held at PE during the positive half")
        return f"CP at {high_v:+.1f} V: CP shorted to PE, or the CP driver has no supply"
    if state != "F":
        return None
    if is_diode_fault(high_v, low_v):
        return (f"EV diode missing or shorted: low level {low_v:+.1f} V while the PWM runs "
                "(expected -12 V; a CP driver without its -12 V supply looks the same)")
    if duty == 0.0:
        return "the charger holds the CP at constant -12 V (state F, EVSE not available)"
    return (f"CP at {high_v:+.1f} V although the charger drives +12 V: "
            "the CP driver, its supply or the PWM output is faulty")


def _plateau(values: list[float], *, from_top: bool) -> tuple[int, int] | None:
    """[start, end) of the highest (or lowest) plateau in sorted ``values``, or None."""
    width = 2 * PLATEAU_HALF_WIDTH_V
    indices = range(len(values) - 1, -1, -1) if from_top else range(len(values))
    for index in indices:
        if from_top:
            start, end = bisect_left(values, values[index] - width), index + 1
        else:
            start, end = index, bisect_right(values, values[index] + width)
        if end - start >= MIN_PLATEAU_SAMPLES:
            for _ in range(2):  # centre the plateau on its median; twice removes the scan's bias
                median = statistics.median(values[start:end])
                start = bisect_left(values, median - PLATEAU_HALF_WIDTH_V)
                end = bisect_right(values, median + PLATEAU_HALF_WIDTH_V)
            return start, end
    return None


def _summary(values: list[float]) -> Plateau:
    return Plateau(statistics.median(values), len(values), statistics.pstdev(values))
