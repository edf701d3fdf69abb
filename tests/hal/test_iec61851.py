"""IEC 61851-1 Annex A facts: duty cycle <-> current, CP voltages -> states."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evcp.hal import PILOT_STATES
from evcp.hal.iec61851 import (
    MAX_PLATEAU_STDEV_V, classify, current_for_duty, duty_for_current, find_plateaus, is_diode_fault, read_plateaus,
)

# The examples shared by OpenEVSE, SmartEVSE, esp32-evse, Tinkerforge, EVerest.
DUTY_EXAMPLES = [
    (6, 10.0),
    (10, 16.67),
    (16, 26.67),
    (20, 33.33),
    (32, 53.33),
    (40, 66.67),
    (48, 80.0),
    (51, 85.0),
    (63, 89.2),
    (80, 96.0),
]


@pytest.mark.parametrize(("amps", "percent"), DUTY_EXAMPLES)
def test_duty_for_current_matches_the_published_examples(amps, percent):
    assert duty_for_current(amps) == pytest.approx(percent / 100, abs=0.00005)


def test_duty_has_better_than_whole_percent_resolution():
    assert duty_for_current(16) == pytest.approx(0.266667, abs=1e-6)
    assert duty_for_current(16) != duty_for_current(15.6)


@pytest.mark.parametrize("amps", [5.99, 0, -6, 80.01, 100, math.nan, math.inf, -math.inf])
def test_duty_for_current_rejects_currents_outside_6_to_80_amps(amps):
    with pytest.raises(ValueError):
        duty_for_current(amps)


def test_formula_changes_above_51_amps():
    assert duty_for_current(51) == pytest.approx(0.85)
    assert duty_for_current(52.5) == pytest.approx(0.85)
    assert duty_for_current(51.5) == pytest.approx(0.846)


@pytest.mark.parametrize(
    ("percent", "amps"),
    [
        (8.0, 6.0),
        (9.5, 6.0),
        (10.0, 6.0),
        (26.67, 16.002),
        (50.0, 30.0),
        (85.0, 51.0),
        (86.0, 55.0),
        (89.2, 63.0),
        (96.0, 80.0),
        (96.5, 80.0),
        (97.0, 80.0),
    ],
)
def test_current_for_duty_follows_the_ev_side_bands(percent, amps):
    assert current_for_duty(percent / 100) == pytest.approx(amps)


@pytest.mark.parametrize("percent", [0.0, 2.9, 5.0, 7.5, 7.99, 97.01, 100.0, math.nan])
def test_current_for_duty_rejects_duties_that_offer_no_current(percent):
    with pytest.raises(ValueError):
        current_for_duty(percent / 100)


@given(st.floats(min_value=6.0, max_value=80.0))
def test_the_ev_never_reads_more_than_was_offered(amps):
    duty = duty_for_current(amps)
    assert 0.10 - 1e-12 <= duty <= 0.96 + 1e-12
    read_back = current_for_duty(duty)
    assert read_back <= amps + 1e-9
    if amps <= 51 or amps >= 52.5:
        assert read_back == pytest.approx(amps, abs=1e-9)


CLASSIFY_TABLE = [
    # constant DC, no PWM (A1/B1/C1/D1)
    (12.0, 12.0, "A"),
    (9.0, 9.0, "B"),
    (6.0, 6.0, "C"),
    (3.0, 3.0, "D"),
    # PWM running, EV diode present
    (12.0, -12.0, "A"),
    (9.0, -12.0, "B"),
    (6.0, -12.0, "C"),
    (3.0, -12.0, "D"),
    # no low level measured
    (9.0, None, "B"),
    (6.0, None, "C"),
    # E: CP at 0 V
    (0.0, 0.0, "E"),
    (0.5, -0.5, "E"),
    (0.0, None, "E"),
    (0.3, -12.0, "E"),
    # F: constant -12 V
    (-12.0, -12.0, "F"),
    (-12.0, None, "F"),
    # diode fault: PWM runs, low level not ~ -12 V
    (9.0, -9.0, "F"),
    (6.0, -6.0, "F"),
    (9.0, 0.0, "F"),
    # unstable: between windows, inconsistent, out of range
    (10.5, -12.0, None),
    (7.5, -12.0, None),
    (4.5, -12.0, None),
    (1.5, -12.0, None),
    (-6.0, -6.0, None),
    (9.0, 6.0, None),
    (9.0, -14.0, None),
    (9.0, 10.0, None),
    (-12.0, -14.0, None),
    (math.nan, -12.0, None),
    (9.0, math.nan, None),
]


@pytest.mark.parametrize(("v_high", "v_low", "state"), CLASSIFY_TABLE)
def test_classify(v_high, v_low, state):
    assert classify(v_high, v_low) == state


@pytest.mark.parametrize(
    ("v_high", "state"),
    [
        (13.1, "A"), (10.9, "A"), (13.15, None), (10.85, None),
        (10.1, "B"), (7.9, "B"), (10.15, None), (7.85, None),
        (7.1, "C"), (4.9, "C"), (7.15, None), (4.85, None),
        (4.1, "D"), (1.9, "D"), (4.15, None), (1.85, None),
        (1.1, "E"), (-1.1, "E"), (1.15, None),
        (-10.9, "F"), (-13.1, "F"), (-10.85, None), (-13.15, None),
    ],
)
def test_window_edges_are_nominal_plus_minus_1_1_volt(v_high, state):
    assert classify(v_high, None) == state


@pytest.mark.parametrize(
    ("v_low", "state"),
    [(-10.9, "B"), (-13.1, "B"), (-10.85, "F"), (-13.15, None)],
)
def test_low_level_window_edges(v_low, state):
    assert classify(9.0, v_low) == state


# SAE J1772 ranges (OpenEVSE "TABLE A1"): each lies inside its window.
@pytest.mark.parametrize(
    ("letter", "low", "high"),
    [("A", 11.40, 12.60), ("B", 8.36, 9.56), ("C", 5.48, 6.49), ("D", 2.62, 3.25)],
)
def test_sae_j1772_ranges_classify_as_their_state(letter, low, high):
    for volts in (low, high):
        assert classify(volts, -12.0) == letter
        assert classify(volts, -11.40) == letter
        assert classify(volts, -12.60) == letter


def test_is_diode_fault_tells_a_missing_diode_from_state_f():
    assert is_diode_fault(9.0, -9.0)
    assert is_diode_fault(6.0, -5.6)
    assert is_diode_fault(9.0, 0.5)  # no -12 V supply
    assert not is_diode_fault(12.0, -9.0)  # state A: no EV, no diode to check
    assert not is_diode_fault(9.0, 4.4)  # above 0 V: samples of an edge, not a level
    assert not is_diode_fault(-12.0, -12.0)
    assert not is_diode_fault(9.0, -12.0)
    assert not is_diode_fault(9.0, 9.0)
    assert not is_diode_fault(9.0, None)
    assert not is_diode_fault(0.0, 0.0)


@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_classify_never_raises_and_returns_a_known_state(v_high, v_low):
    assert classify(v_high, v_low) in (*PILOT_STATES, None)


# --- Plateaus of a burst of unsynchronised samples ---------------------------


def burst(high_v, low_v, duty, n=100, noise=0.02, seed=1):
    """``n`` samples of a 1 kHz PWM at random phases (no edges), with Gaussian noise."""
    rng = random.Random(seed)
    return [(high_v if rng.random() < duty else low_v) + rng.gauss(0, noise) for _ in range(n)]


def test_find_plateaus_sorts_a_burst_into_high_and_low():
    plateaus = find_plateaus(burst(6.0, -12.0, 0.5333))
    assert plateaus.high.level_v == pytest.approx(6.0, abs=0.02)
    assert plateaus.low.level_v == pytest.approx(-12.0, abs=0.02)
    assert plateaus.high.count + plateaus.low.count == 100 and plateaus.outside == 0
    assert plateaus.negative.count == plateaus.low.count


def test_single_outliers_belong_to_no_plateau():
    samples = burst(6.0, -12.0, 0.5333) + [9.4, 0.0, -3.0, 12.0]
    plateaus = find_plateaus(samples)
    assert plateaus.high.level_v == pytest.approx(6.0, abs=0.02)
    assert plateaus.low.level_v == pytest.approx(-12.0, abs=0.02)
    assert plateaus.outside == 4
    assert read_plateaus(plateaus, 0.5333).state == "C"


def test_a_constant_level_is_one_plateau():
    plateaus = find_plateaus(burst(9.0, 9.0, 1.0))
    assert plateaus.low is None and plateaus.high.level_v == pytest.approx(9.0, abs=0.02)
    assert read_plateaus(plateaus, 1.0).state == "B"


def test_fewer_samples_than_a_plateau_needs_are_no_plateau():
    assert find_plateaus([9.0, -12.0]).high is None
    assert read_plateaus(find_plateaus([9.0, -12.0]), 0.5).state is None
    assert find_plateaus([math.nan] * 10).high is None


def test_a_short_high_phase_is_found():
    # 10 % duty (6 A): about 10 of 100 samples on the high plateau
    assert read_plateaus(find_plateaus(burst(9.0, -12.0, 0.10)), 0.10).state == "B"


def test_a_spread_plateau_is_unstable():
    plateaus = find_plateaus(burst(6.0, -12.0, 0.5, noise=0.3))
    assert max(plateaus.high.stdev_v, plateaus.low.stdev_v) > MAX_PLATEAU_STDEV_V
    assert read_plateaus(plateaus, 0.5).state is None


def test_many_samples_on_no_plateau_are_unstable():
    samples = burst(6.0, -12.0, 0.5, n=80) + [-3.0 + 0.4 * i for i in range(20)]
    assert read_plateaus(find_plateaus(samples), 0.5).state is None


def test_two_levels_under_a_constant_drive_are_unstable():
    assert read_plateaus(find_plateaus(burst(9.0, 6.0, 0.5)), 1.0).state is None


@pytest.mark.parametrize(("high_v", "low_v"), [(9.0, -8.8), (6.0, -5.6), (3.0, -2.4)])
def test_the_low_plateau_is_the_diode_check(high_v, low_v):
    reading = read_plateaus(find_plateaus(burst(high_v, low_v, 0.5)), 0.5)
    assert reading.state == "F" and reading.low_v == pytest.approx(low_v, abs=0.05)
    assert "diode missing" in reading.diagnosis and f"{low_v:+.1f} V" in reading.diagnosis


def test_samples_at_minus_12_volts_prove_the_diode_when_the_low_plateau_is_an_edge():
    # 96 % duty: four samples in the low phase, three still on the falling edge near -9 V
    samples = burst(9.0, 9.0, 1.0, n=96) + [-8.9, -9.0, -9.1, -11.95]
    plateaus = find_plateaus(samples)
    assert plateaus.low.level_v == pytest.approx(-9.0, abs=0.1)
    reading = read_plateaus(plateaus, 0.96)
    assert reading.state == "B" and reading.low_v == pytest.approx(-11.95)


def test_an_unsampled_low_phase_borrows_the_last_low_level():
    only_high = find_plateaus(burst(6.0, 6.0, 1.0))
    assert read_plateaus(only_high, 0.96).state is None  # the diode not checked yet
    assert read_plateaus(find_plateaus(burst(12.0, 12.0, 1.0)), 0.96).state == "A"  # no EV, no diode
    assert read_plateaus(only_high, 0.96, last_low_v=-12.0).state == "C"
    assert read_plateaus(only_high, 0.96, last_low_v=-5.6).state == "F"


def test_a_cp_at_0_volts_while_the_pwm_runs_is_e():
    reading = read_plateaus(find_plateaus(burst(0.0, 0.0, 1.0)), 0.5)
    assert reading.state == "E" and "shorted to PE" in reading.diagnosis


def test_state_f_at_constant_minus_12_volts_says_so():
    reading = read_plateaus(find_plateaus(burst(-12.0, -12.0, 1.0)), 0.0)
    assert reading.state == "F" and "EVSE not available" in reading.diagnosis


@given(st.lists(st.floats(min_value=-15, max_value=15), max_size=300), st.sampled_from([None, 0.0, 0.1, 0.5, 0.96, 1.0]))
def test_read_plateaus_never_raises(samples, duty):
    assert read_plateaus(find_plateaus(samples), duty).state in (*PILOT_STATES, None)
