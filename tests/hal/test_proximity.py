"""The proximity pilot: resistor coding (IEC 61851-1 Annex B) and AdcProximity over a simulated ADC."""

import pytest

from evcp.config import ProximityConfig
from evcp.hal import CableSensor, HardwareError
from evcp.hal.proximity import AdcProximity, classify, resistance
from evcp.mocks.socket import OUT_OF_BAND_OHMS, RATING_OHMS, SimulatedCable, SimulatedPpAdc


@pytest.mark.parametrize("ohms, rating", [(100, 63), (220, 32), (680, 20), (1500, 13),
                                          (76, 63), (149, 63), (151, 32), (329, 32), (331, 20),
                                          (999, 20), (1001, 13), (2199, 13)])
def test_each_band_codes_its_rating(ohms, rating):
    reading = classify(ohms)
    assert (reading.rating_a, reading.problem) == (rating, "")
    assert reading.cable == f"{rating}A"


@pytest.mark.parametrize("ohms, words", [(40, "shorted"), (2500, "no valid cable rating"),
                                         (OUT_OF_BAND_OHMS, "3.30 kOhm"), (9_000, "no valid cable rating")])
def test_out_of_band_and_short_are_problems_with_the_value(ohms, words):
    reading = classify(ohms)
    assert reading.rating_a is None and words in reading.problem
    assert reading.cable == "fault"


@pytest.mark.parametrize("ohms", [None, 10_001, 1e9])
def test_open_line_is_no_cable(ohms):
    reading = classify(ohms)
    assert (reading.rating_a, reading.problem, reading.cable) == (None, "", "none")


def test_resistance_inverts_the_divider():
    pullup = 1000.0
    for rc in (100.0, 220.0, 680.0, 1500.0):
        fraction = rc / (rc + pullup)
        assert resistance(fraction, pullup) == pytest.approx(rc)
    assert resistance(1.0, pullup) is None, "the supply itself: open"
    # A 5 V pull-up read by a 3.3 V ADC: the supply is above full scale.
    assert resistance(0.5, pullup, supply_fraction=5 / 3.3) == pytest.approx(pullup * 0.5 / (5 / 3.3 - 0.5))


@pytest.mark.parametrize("chip", ["mcp3008", "mcp3208"])
@pytest.mark.parametrize("rating", sorted(RATING_OHMS))
def test_adc_proximity_reads_the_simulated_cable(chip, rating):
    config = ProximityConfig(backend="adc", adc_chip=chip)
    cable = SimulatedCable(rating)
    pp = AdcProximity(config, adc=SimulatedPpAdc(cable, config))
    assert isinstance(pp, CableSensor)
    assert pp.read().rating_a is None, "not in the socket yet"
    cable.insert()
    assert pp.read().rating_a == rating
    cable.damage()
    assert pp.read().problem
    cable.damage(False)
    cable.remove()
    assert pp.read().cable == "none"


def test_a_5v_pull_up_with_a_3v3_adc():
    config = ProximityConfig(backend="adc", supply_v=5.0, adc_vref_v=3.3, pullup_ohm=330.0)
    cable = SimulatedCable(20.0)
    cable.insert()
    assert AdcProximity(config, adc=SimulatedPpAdc(cable, config)).read().rating_a == 20


class FlakyAdc:
    bits = 10

    def __init__(self, values):
        self.values = iter(values)

    @property
    def raw_value(self):
        value = next(self.values)
        if isinstance(value, Exception):
            raise value
        return value


def test_one_disturbed_sample_does_not_change_the_rating():
    # 220 Ohm behind 1 kOhm reads 0.18 of full scale; one sample at full scale (open) is outvoted.
    good = round(220 / 1220 * 1023)
    pp = AdcProximity(ProximityConfig(backend="adc", samples=5), adc=FlakyAdc([good, good, 1023, good, good]))
    assert pp.read().rating_a == 32


def test_an_adc_that_fails_raises_hardware_error():
    pp = AdcProximity(ProximityConfig(backend="adc"), adc=FlakyAdc([OSError("spi gone")]))
    with pytest.raises(HardwareError, match="spi gone"):
        pp.read()


def test_released_proximity_refuses_to_read():
    pp = AdcProximity(ProximityConfig(backend="adc"), adc=FlakyAdc([]))
    pp.release()
    pp.release()
    with pytest.raises(HardwareError):
        pp.read()
