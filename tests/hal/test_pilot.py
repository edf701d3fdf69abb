"""GpioPilot and AdcPilot over mock pins, signalling through SysfsPwm on a fake sysfs tree."""

import math

import pytest

from evcp.config import PilotConfig, RelayConfig
from evcp.hal import HardwareError, Pilot
from evcp.hal.pilot import AdcPilot, GpioPilot, PwmOutput, SysfsPwm
from evcp.mocks.ev import SimulatedEv
from evcp.mocks.pins import mock_pins
from evcp.mocks.sysfs_pwm import FakeSysfsPwm

PERIOD = 1_000_000


@pytest.fixture
def pins():
    with mock_pins() as factory:
        yield factory


@pytest.fixture
def sysfs(tmp_path):
    with FakeSysfsPwm(tmp_path) as fake:
        yield fake


@pytest.fixture
def pwm(sysfs):
    return SysfsPwm(0, 0, root=sysfs.root)


def board(active_high=True, **pins):
    return PilotConfig(backend="gpio", short_pin=25, inputs_active_high=active_high, **pins)


# --- GpioPilot -------------------------------------------------------------


def test_gpio_pilot_implements_the_pilot_protocol(pins, pwm):
    assert isinstance(GpioPilot(board(), pwm), Pilot)


@pytest.mark.parametrize("active_high", [True, False])
def test_gpio_pilot_reads_every_state_the_ev_presents(pins, pwm, active_high):
    config = board(active_high)
    ev = SimulatedEv(config, RelayConfig())
    pilot = GpioPilot(config, pwm)
    for letter in "ABCEFBA":
        ev.set_pilot(letter)
        assert pilot.read_state() == letter


@pytest.mark.parametrize("active_high", [True, False])
def test_gpio_pilot_follows_the_ev_verbs(pins, pwm, active_high):
    config = board(active_high)
    pilot = GpioPilot(config, pwm)
    ev = SimulatedEv(config, RelayConfig())
    seen = [pilot.read_state()]
    for verb in (ev.plug, ev.request_charge, ev.stop_charge, ev.inject_short, ev.clear_short, ev.unplug):
        verb()
        seen.append(pilot.read_state())
    assert seen == ["A", "B", "C", "B", "E", "B", "A"]


@pytest.mark.parametrize("active_high", [True, False])
def test_a_disconnected_board_reads_a(pins, pwm, active_high):
    assert GpioPilot(board(active_high), pwm).read_state() == "A"


def test_charge_without_vehicle_is_unstable(pins, pwm):
    pilot = GpioPilot(board(), pwm)
    pins.pin(23).drive_high()
    assert pilot.read_state() is None
    pins.pin(22).drive_high()
    assert pilot.read_state() == "C"


def test_short_wins_over_fault_and_fault_over_vehicle(pins, pwm):
    pilot = GpioPilot(board(), pwm)
    pins.pin(22).drive_high()
    pins.pin(24).drive_high()
    assert pilot.read_state() == "F"
    pins.pin(25).drive_high()
    assert pilot.read_state() == "E"


def test_a_board_without_fault_and_short_outputs(pins, pwm):
    config = PilotConfig(fault_pin=None, short_pin=None)
    pilot = GpioPilot(config, pwm)
    pins.pin(24).drive_high()
    assert pilot.read_state() == "A"


def test_gpio_pilot_release_frees_the_inputs_and_leaves_plus_12_volts(pins, pwm, sysfs):
    config = board()
    pilot = GpioPilot(config, pwm)
    pilot.offer_current(16)
    pilot.release()
    pilot.release()
    assert sysfs.channel(0).duty_cycle_ns == PERIOD
    assert pilot.offered_current is None
    GpioPilot(config, pwm).release()


# --- signalling (shared by both pilots) --------------------------------------


def test_a_new_pilot_signals_state_f(pins, pwm, sysfs):
    pilot = GpioPilot(board(), pwm)
    channel = sysfs.channel(0)
    assert channel.enabled and channel.period_ns == PERIOD and channel.duty_cycle_ns == 0
    assert pilot.offered_current is None


@pytest.mark.parametrize(("amps", "duty_ns"), [(6, 100_000), (16, 266_667), (32, 533_333), (63, 892_000), (80, 960_000)])
def test_offer_current_writes_the_duty_in_nanoseconds(pins, pwm, sysfs, amps, duty_ns):
    pilot = GpioPilot(board(), pwm)
    pilot.offer_current(amps)
    assert sysfs.channel(0).duty_cycle_ns == duty_ns
    assert pilot.offered_current == amps


def test_stop_offer_and_signal_fault_are_constant_levels(pins, pwm, sysfs):
    pilot = GpioPilot(board(), pwm)
    pilot.offer_current(16)
    pilot.stop_offer()
    assert sysfs.channel(0).duty_cycle_ns == PERIOD
    assert pilot.offered_current is None
    pilot.offer_current(10)
    pilot.signal_fault()
    assert sysfs.channel(0).duty_cycle_ns == 0
    assert pilot.offered_current is None


@pytest.mark.parametrize("amps", [0, 5.9, 80.5, math.nan])
def test_an_invalid_offer_is_rejected_and_leaves_the_line_alone(pins, pwm, sysfs, amps):
    pilot = GpioPilot(board(), pwm)
    pilot.offer_current(16)
    with pytest.raises(ValueError):
        pilot.offer_current(amps)
    assert sysfs.channel(0).duty_cycle_ns == 266_667
    assert pilot.offered_current == 16


def test_inverted_driver_flips_the_duty(pins, sysfs):
    pilot = GpioPilot(board(), SysfsPwm(0, 0, invert=True, root=sysfs.root))
    assert sysfs.channel(0).duty_cycle_ns == PERIOD
    pilot.offer_current(16)
    assert sysfs.channel(0).duty_cycle_ns == 733_333
    pilot.stop_offer()
    assert sysfs.channel(0).duty_cycle_ns == 0


# --- SysfsPwm ----------------------------------------------------------------


def test_sysfs_pwm_implements_pwm_output(pwm):
    assert isinstance(pwm, PwmOutput)


def test_sysfs_pwm_exports_the_channel_and_sets_1_khz(sysfs):
    assert not sysfs.channel(1).exported
    pwm = SysfsPwm(0, 1, root=sysfs.root)
    assert sysfs.export_requests == ["1"]
    channel = sysfs.channel(1)
    assert channel.exported and channel.period_ns == PERIOD
    assert not channel.enabled, "nothing is enabled before the first duty"
    assert pwm.duty is None
    pwm.set_duty(0.5)
    channel = sysfs.channel(1)
    assert channel.enabled and channel.duty_cycle_ns == 500_000
    assert pwm.duty == 0.5


def test_an_exported_channel_is_not_exported_again(tmp_path):
    with FakeSysfsPwm(tmp_path, exported=(0,)) as fake:
        SysfsPwm(0, 0, root=fake.root)
        assert fake.export_requests == []
        assert fake.channel(0).period_ns == PERIOD


def test_a_longer_old_period_is_replaced_without_an_invalid_duty(tmp_path):
    with FakeSysfsPwm(tmp_path, exported=(0,)) as fake:
        fake.poke(0, "period", "20000000\n")
        fake.poke(0, "duty_cycle", "5000000\n")
        SysfsPwm(0, 0, root=fake.root)
        channel = fake.channel(0)
        assert channel.period_ns == PERIOD
        assert channel.duty_cycle_ns <= PERIOD


def test_sysfs_pwm_writes_only_changes(pwm, sysfs):
    pwm.set_duty(0.5)
    sysfs.poke(0, "duty_cycle", "123\n")
    sysfs.poke(0, "enable", "0\n")
    pwm.set_duty(0.5)
    assert sysfs.channel(0).duty_cycle_ns == 123
    assert not sysfs.channel(0).enabled
    pwm.set_duty(0.6)
    assert sysfs.channel(0).duty_cycle_ns == 600_000


@pytest.mark.parametrize("duty", [-0.01, 1.01, math.nan])
def test_sysfs_pwm_rejects_duties_outside_0_to_1(pwm, duty):
    with pytest.raises(ValueError):
        pwm.set_duty(duty)


def test_sysfs_pwm_without_a_chip_names_the_fix(tmp_path):
    with pytest.raises(HardwareError, match="dtoverlay=pwm"):
        SysfsPwm(3, 0, root=tmp_path)


def test_sysfs_pwm_release_leaves_plus_12_volts_enabled(pwm, sysfs):
    pwm.set_duty(0.0)
    pwm.release()
    pwm.release()
    channel = sysfs.channel(0)
    assert channel.enabled and channel.duty_cycle_ns == PERIOD


def test_a_failed_write_is_a_hardware_error(pwm, sysfs):
    (sysfs.chip_dir / "pwm0" / "duty_cycle").unlink()
    with pytest.raises(HardwareError, match="duty_cycle"):
        pwm.set_duty(0.3)


# --- AdcPilot ----------------------------------------------------------------

ADC = PilotConfig(backend="adc", samples=100)


def counts(volts):
    return round((volts - ADC.offset_v) / ADC.volts_per_count)


class FakeAdc:
    """An object with ``raw_value`` that plays a waveform (one level per read)."""

    def __init__(self, *levels_v):
        self.waveform = [counts(v) for v in levels_v]
        self.reads = 0

    def play(self, *levels_v):
        self.waveform = [counts(v) for v in levels_v]

    @property
    def raw_value(self):
        value = self.waveform[self.reads % len(self.waveform)]
        self.reads += 1
        return value


def pwm_wave(high_v, low_v, high_samples=3, low_samples=7):
    return [high_v] * high_samples + [low_v] * low_samples


@pytest.mark.parametrize(
    ("waveform", "state"),
    [
        ([12.0], "A"),
        ([9.0], "B"),
        ([6.0], "C"),
        ([3.0], "D"),
        (pwm_wave(12.0, -12.0), "A"),
        (pwm_wave(9.0, -12.0), "B"),
        (pwm_wave(6.0, -12.0), "C"),
        (pwm_wave(3.0, -12.0), "D"),
        ([0.0], "E"),
        ([-12.0], "F"),
        (pwm_wave(9.0, -9.0), "F"),
        ([10.5], None),
    ],
)
def test_adc_pilot_classifies_the_sampled_levels(pwm, waveform, state):
    pilot = AdcPilot(ADC, pwm, adc=FakeAdc(*waveform))
    assert isinstance(pilot, Pilot)
    assert pilot.read_state() == state


def test_adc_pilot_takes_the_configured_number_of_samples(pwm):
    adc = FakeAdc(9.0, -12.0)
    pilot = AdcPilot(PilotConfig(backend="adc", samples=37), pwm, adc=adc)
    pilot.read_state()
    assert adc.reads == 37


def test_adc_pilot_reports_high_and_low_in_volts(pwm):
    pilot = AdcPilot(ADC, pwm, adc=FakeAdc(*pwm_wave(6.0, -12.0)))
    high, low = pilot.read_voltages()
    assert high == pytest.approx(6.0, abs=ADC.volts_per_count)
    assert low == pytest.approx(-12.0, abs=ADC.volts_per_count)


def test_a_short_high_phase_is_not_missed(pwm):
    # 10 % duty (6 A): one high sample in ten
    adc = FakeAdc(*pwm_wave(9.0, -12.0, high_samples=1, low_samples=9))
    assert AdcPilot(ADC, pwm, adc=adc).read_state() == "B"


def test_adc_pilot_builds_an_mcp3008_through_gpiozero(pins, pwm):
    config = PilotConfig(backend="adc", adc_chip="mcp3008", samples=3)
    pilot = AdcPilot(config, pwm)
    # gpiozero's mock SPI bus with no device answers raw 0, i.e. -12 V
    assert pilot.read_voltages() == (pytest.approx(-12.0), pytest.approx(-12.0))
    assert pilot.read_state() == "F"
    pilot.release()
    AdcPilot(config, pwm).release()


def test_an_invalid_adc_channel_is_a_hardware_error(pins, pwm):
    with pytest.raises(HardwareError, match="mcp3004"):
        AdcPilot(PilotConfig(backend="adc", adc_chip="mcp3004", adc_channel=5), pwm)


def test_adc_pilot_signals_through_the_pwm(pwm, sysfs):
    pilot = AdcPilot(ADC, pwm, adc=FakeAdc(9.0))
    assert sysfs.channel(0).duty_cycle_ns == 0
    pilot.offer_current(32)
    assert sysfs.channel(0).duty_cycle_ns == 533_333
    pilot.release()
    assert sysfs.channel(0).duty_cycle_ns == PERIOD
