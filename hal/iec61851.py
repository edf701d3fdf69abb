"""IEC 61851-1 Annex A / SAE J1772 control-pilot facts, as pure functions.

No clock, no I/O: the pilot drivers and the core call these with plain numbers.

The standard itself is paywalled; the numbers below are the ones open charger
firmware cites from it (OpenEVSE, EVerest, Pionix Yeti, Tinkerforge, SmartEVSE)
and the Fluke FEV300 manual quotes.
"""

from __future__ import annotations

import math

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
    valid A..D level, the low level lies above the -12 V window and is not a
    DC reading of a positive state.
    """
    if v_low is None or v_low > v_high or _letter_for_high(v_high) is None:
        return False
    above_negative_window = v_low > NOMINAL_LOW_V + WINDOW_V + _EDGE_EPSILON_V
    return above_negative_window and _letter_for_high(v_low) is None


def _letter_for_high(volts: float) -> str | None:
    for letter, nominal in NOMINAL_HIGH_V.items():
        if _near(volts, nominal):
            return letter
    return None


def _near(volts: float, nominal: float) -> bool:
    return math.isfinite(volts) and abs(volts - nominal) <= WINDOW_V + _EDGE_EPSILON_V
