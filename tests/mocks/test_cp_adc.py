"""SimulatedCpAdc: the CP levels of IEC 61851-1 Annex A and a 1 kHz waveform that follows the PWM."""

import random

import pytest

from evcp.hal.pilot import SysfsPwm
from evcp.mocks.cp_adc import EV_RESISTANCE_OHM, SimulatedCpAdc, cp_level_v
from evcp.mocks.sysfs_pwm import FakeSysfsPwm

VOLTS_PER_COUNT = 24.0 / 1023


@pytest.fixture
def sysfs(tmp_path):
    with FakeSysfsPwm(tmp_path) as fake:
        yield fake


# SAE J1772 Table A1 ranges (as copied into OpenEVSE) for the high level with the diode.
@pytest.mark.parametrize(("state", "low", "high"), [("B", 8.36, 9.56), ("C", 5.48, 6.49), ("D", 2.62, 3.25)])
def test_the_high_level_of_each_state_lies_in_its_j1772_range(state, low, high):
    assert low <= cp_level_v(12.0, EV_RESISTANCE_OHM[state]) <= high


def test_levels_without_an_ev_with_a_missing_diode_and_with_a_short():
    assert cp_level_v(12.0, None) == 12.0 and cp_level_v(-12.0, None) == -12.0
    assert cp_level_v(-12.0, EV_RESISTANCE_OHM["B"]) == -12.0  # the diode blocks
    assert cp_level_v(-12.0, EV_RESISTANCE_OHM["B"], diode_present=False) == pytest.approx(-8.8, abs=0.05)
    assert cp_level_v(-12.0, EV_RESISTANCE_OHM["C"], diode_present=False) == pytest.approx(-5.6, abs=0.05)
    assert cp_level_v(12.0, EV_RESISTANCE_OHM["C"], cp_shorted=True) == 0.0


def simulated(sysfs, state="C", **options):
    rng = random.Random(7)
    return SimulatedCpAdc(sysfs, ev_resistance_ohm=lambda: EV_RESISTANCE_OHM.get(state),
                          sample_spacing_s=lambda: rng.uniform(80e-6, 120e-6), seed=7, **options)


def volts(adc, n):
    return [adc.raw_value * adc.volts_per_count + adc.offset_v for _ in range(n)]


@pytest.mark.parametrize("duty", [0.1, 0.2667, 0.5333, 0.96])
def test_the_waveform_spends_the_duty_at_the_high_level(sysfs, duty):
    pwm = SysfsPwm(0, 0, root=sysfs.root)
    pwm.set_duty(duty)
    samples = volts(simulated(sysfs, edge_tau_s=1e-9, noise_v=0.0), 20000)
    high = sum(1 for v in samples if abs(v - 6.0) < 0.3) / len(samples)
    low = sum(1 for v in samples if abs(v + 12.0) < 0.3) / len(samples)
    assert high == pytest.approx(duty, abs=0.015)
    assert high + low == pytest.approx(1.0, abs=0.001)


def test_edges_settle_so_some_samples_lie_between_the_levels(sysfs):
    SysfsPwm(0, 0, root=sysfs.root).set_duty(0.5)
    samples = volts(simulated(sysfs, edge_tau_s=5e-6, noise_v=0.0), 20000)
    between = sum(1 for v in samples if -11.0 < v < 5.0) / len(samples)
    # two edges a period, about 2 x 3.5 tau each before they are within 1 V: ~ 3.5 %
    assert 0.01 < between < 0.08


def test_a_pwm_that_is_not_enabled_leaves_the_cp_at_minus_12_volts(sysfs):
    samples = volts(simulated(sysfs, noise_v=0.0), 100)
    assert max(samples) - min(samples) < VOLTS_PER_COUNT and samples[0] == pytest.approx(-12.0, abs=VOLTS_PER_COUNT)


def test_an_inverted_driver_flips_the_waveform(sysfs):
    SysfsPwm(0, 0, root=sysfs.root).set_duty(1.0)  # pin high all the time
    assert max(volts(simulated(sysfs, invert=True, noise_v=0.0), 100)) < -11.9


def test_the_waveform_follows_a_duty_change(sysfs):
    pwm = SysfsPwm(0, 0, root=sysfs.root)
    pwm.set_duty(1.0)
    adc = simulated(sysfs, noise_v=0.0)
    assert min(volts(adc, 50)) > 5.9
    pwm.set_duty(0.0)
    adc.advance(0.002)  # the simulator reads the sysfs files once a simulated millisecond
    assert max(volts(adc, 50)) < -11.9


def test_glitches_replace_the_next_reads(sysfs):
    SysfsPwm(0, 0, root=sysfs.root).set_duty(1.0)
    adc = simulated(sysfs, noise_v=0.0)
    adc.glitch(9.4, count=2)
    first = volts(adc, 3)
    assert first[:2] == [pytest.approx(9.4, abs=VOLTS_PER_COUNT)] * 2
    assert first[2] == pytest.approx(5.95, abs=0.1)


def test_counts_are_clamped_to_the_chips_range(sysfs):
    adc = simulated(sysfs, noise_v=0.0)
    adc.glitch(30.0)
    adc.glitch(-30.0)
    assert (adc.raw_value, adc.raw_value) == (1023, 0)
    twelve_bit = simulated(sysfs, noise_v=0.0, bits=12, volts_per_count=24.0 / 4095)
    twelve_bit.glitch(30.0)
    assert twelve_bit.raw_value == 4095 and twelve_bit.max_raw == 4095


def test_noise_has_the_configured_spread(sysfs):
    SysfsPwm(0, 0, root=sysfs.root).set_duty(1.0)
    samples = volts(simulated(sysfs, noise_v=0.1, bits=12, volts_per_count=24.0 / 4095), 4000)
    mean = sum(samples) / len(samples)
    spread = (sum((v - mean) ** 2 for v in samples) / len(samples)) ** 0.5
    assert spread == pytest.approx(0.1, rel=0.15)


def test_simulated_time_advances_per_read_and_on_request(sysfs):
    adc = simulated(sysfs)
    start = adc.clock()
    adc.raw_value
    assert 80e-6 <= adc.clock() - start <= 120e-6
    adc.advance(0.5)
    assert adc.clock() - start >= 0.5
    assert adc.reads == 1


def test_advance_needs_simulated_time(sysfs):
    with pytest.raises(RuntimeError, match="sample_spacing_s"):
        SimulatedCpAdc(sysfs).advance(0.1)
