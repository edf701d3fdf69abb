"""GpioPilot and AdcPilot over mock pins, signalling through SysfsPwm on a fake sysfs tree."""

import collections
import math
import random
import time

import pytest

from evcp.config import PilotConfig, RelayConfig
from evcp.hal import HardwareError, Pilot
from evcp.hal.iec61851 import PilotReading
from evcp.hal.pilot import (
    CONTACTOR_BLANKING_S, DUTY_CHANGE_BLANKING_S, MIN_BURST_SAMPLES, NOT_TOGGLING_S, STALE_AFTER_S, AdcPilot,
    GpioPilot, PwmOutput, SysfsPwm, locate_pwm, overlay_for,
)
from evcp.mocks.cp_adc import EV_RESISTANCE_OHM, SimulatedCpAdc
from evcp.mocks.ev import SimulatedEv
from evcp.mocks.pins import mock_pins
from evcp.mocks.sysfs_pwm import RASPBERRY_PI_TREES, FakeBoard, FakeChip, FakeSysfsPwm

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


# --- Finding the PWM chip on a Raspberry Pi 4 and 5 --------------------------


@pytest.fixture(params=[("pi4", "6.6"), ("pi4", "6.12"), ("pi5", "6.6"), ("pi5", "6.12")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def raspberry_pi(request, tmp_path):
    board, kernel = request.param
    with FakeSysfsPwm.raspberry_pi(tmp_path, board, kernel) as fake:
        yield board, kernel, fake


# The chip of the header PWM and GPIO18's channel (hal-realism.md §2; raspberrypi/linux #6818).
EXPECTED_GPIO18 = {("pi4", "6.6"): (0, 0), ("pi4", "6.12"): (0, 0), ("pi5", "6.6"): (2, 2), ("pi5", "6.12"): (0, 2)}
DEVICE_NODE = {"pi4": "fe20c000.pwm", "pi5": "1f00098000.pwm"}


def test_auto_finds_gpio18s_chip_and_channel_by_the_device_tree_node(raspberry_pi):
    board, kernel, fake = raspberry_pi
    location = locate_pwm(18, "auto", "auto", root=fake.root, device_tree=fake.device_tree)
    assert (location.chip, location.channel) == EXPECTED_GPIO18[board, kernel]
    assert location.device is not None and location.device.name == DEVICE_NODE[board]
    assert location.board.startswith("Raspberry Pi 4" if board == "pi4" else "Raspberry Pi 5")


@pytest.mark.parametrize(("board", "pin", "channel"), [
    ("pi4", 12, 0), ("pi4", 13, 1), ("pi4", 19, 1),
    ("pi5", 12, 0), ("pi5", 13, 1), ("pi5", 18, 2), ("pi5", 19, 3),
])
def test_each_pwm_pin_has_its_channel_on_each_model(tmp_path, board, pin, channel):
    with FakeSysfsPwm.raspberry_pi(tmp_path, board, "6.6") as fake:
        location = locate_pwm(pin, "auto", "auto", root=fake.root, device_tree=fake.device_tree)
        assert location.channel == channel


def test_for_pilot_drives_the_located_channel_and_no_other(raspberry_pi):
    board, kernel, fake = raspberry_pi
    pwm = SysfsPwm.for_pilot(PilotConfig(pwm_pin=18), root=fake.root, device_tree=fake.device_tree)
    pwm.set_duty(0.266667)
    chip, channel = EXPECTED_GPIO18[board, kernel]
    assert fake.channel(channel, chip=chip).duty_cycle_ns == 266_667
    assert fake.channel(channel, chip=chip).enabled
    assert pwm.path == fake.root / f"pwmchip{chip}" / f"pwm{channel}"
    others = [(c, n) for c, n in fake.exports if (c, n) != (chip, str(channel))]
    assert others == []


def test_explicit_numbers_are_kept_on_a_raspberry_pi(tmp_path):
    with FakeSysfsPwm.raspberry_pi(tmp_path, "pi5", "6.6") as fake:
        location = locate_pwm(18, 6, 1, root=fake.root, device_tree=fake.device_tree)
        assert (location.chip, location.channel) == (6, 1)
        assert location.device.name == "1f0009c000.pwm"  # the fan PWM: what check-hardware shows


def test_a_channel_that_is_not_the_pins_is_warned_about(tmp_path, caplog):
    with FakeSysfsPwm.raspberry_pi(tmp_path, "pi5", "6.12") as fake:
        locate_pwm(18, 0, 0, root=fake.root, device_tree=fake.device_tree)  # Pi 4 numbers on a Pi 5
    assert "not GPIO18's channel on a Raspberry Pi 5 (that is channel 2)" in caplog.text


def test_a_pi5_without_the_pwm_overlay_names_the_config_txt_line(tmp_path):
    # Without dtoverlay=pwm the RP1's PWM0 has no pwmchip; only the fan PWM is there.
    pi5 = RASPBERRY_PI_TREES["pi5", "6.12"]
    no_overlay = FakeBoard(pi5.compatible, pi5.model, (FakeChip(1, 4, "platform/axi/1000120000.pcie/1f0009c000.pwm"),),
                           header_chip=1)
    with FakeSysfsPwm(tmp_path, board=no_overlay) as fake:
        with pytest.raises(HardwareError) as error:
            locate_pwm(18, "auto", "auto", root=fake.root, device_tree=fake.device_tree)
    message = str(error.value)
    assert "1f00098000.pwm" in message and "pwmchip1 -> 1f0009c000.pwm" in message
    assert "dtoverlay=pwm,pin=18,func=2" in message and "pwm-2chan" in message


def test_auto_on_another_board_asks_for_numbers(tmp_path):
    other = FakeBoard(("raspberrypi,3-model-b", "brcm,bcm2837"), "Raspberry Pi 3 Model B",
                      (FakeChip(0, 2, "platform/soc/3f20c000.pwm"),), header_chip=0)
    with FakeSysfsPwm(tmp_path, board=other) as fake:
        with pytest.raises(HardwareError, match="Raspberry Pi 3 Model B.*set pilot.pwm_chip and pilot.pwm_channel"):
            locate_pwm(18, "auto", "auto", root=fake.root, device_tree=fake.device_tree)


def test_auto_without_a_device_tree_is_a_hardware_error(tmp_path):
    with pytest.raises(HardwareError, match="compatible"):
        locate_pwm(18, "auto", "auto", root=tmp_path, device_tree=tmp_path / "none")


def test_a_pin_without_pwm_is_refused(tmp_path):
    with FakeSysfsPwm.raspberry_pi(tmp_path, "pi4", "6.6") as fake:
        with pytest.raises(HardwareError, match="GPIO17 has no hardware PWM on a Raspberry Pi 4"):
            locate_pwm(17, "auto", "auto", root=fake.root, device_tree=fake.device_tree)


def test_a_channel_the_chip_lacks_is_refused(tmp_path):
    with FakeSysfsPwm.raspberry_pi(tmp_path, "pi4", "6.6") as fake:
        with pytest.raises(HardwareError, match="2 channels"):
            SysfsPwm(0, 2, root=fake.root)


def test_the_overlay_line_per_pin():
    assert overlay_for(18) == "dtoverlay=pwm,pin=18,func=2"
    assert overlay_for(12) == "dtoverlay=pwm,pin=12,func=4"
    assert overlay_for(19) == "dtoverlay=pwm,pin=19,func=2"


def test_two_pilots_on_one_pi4_channel_are_refused_when_built(tmp_path, pins, monkeypatch):
    from evcp.config import ConnectorHardware
    from evcp.hal import factory, pilot as pilot_module

    with FakeSysfsPwm.raspberry_pi(tmp_path, "pi4", "6.12") as fake:
        monkeypatch.setattr(pilot_module, "SYSFS_PWM_ROOT", fake.root)
        monkeypatch.setattr(pilot_module, "DEVICE_TREE", fake.device_tree)
        first = factory.pilot_for(ConnectorHardware(pilot=PilotConfig(pwm_pin=18)))
        other_pin = factory.pilot_for(ConnectorHardware(pilot=PilotConfig(
            pwm_pin=19, vehicle_pin=5, charge_pin=6, fault_pin=7)))
        factory.refuse_shared_pwm_channels([first, other_pin])  # channels 0 and 1: fine
        shared = factory.pilot_for(ConnectorHardware(pilot=PilotConfig(
            pwm_pin=12, vehicle_pin=8, charge_pin=9, fault_pin=10)))
        with pytest.raises(HardwareError, match=r"connectors\[3\].pilot.pwm_pin: GPIO12 is channel 0 of pwmchip0, "
                                                r"the channel of connector 1's pilot"):
            factory.refuse_shared_pwm_channels([first, other_pin, shared])
        for pilot in (first, other_pin, shared):
            pilot.release()


# --- AdcPilot against the simulated CP ---------------------------------------

ADC = PilotConfig(backend="adc", samples=100)


def simulated(fake, ev_state=None, *, diode=True, shorted=False, spacing=(80e-6, 120e-6), seed=1, **adc_options):
    """A SimulatedCpAdc on ``fake``'s channel 0 and an AdcPilot on it, both on simulated time."""
    rng = random.Random(seed)
    state = {"ev": ev_state, "diode": diode, "shorted": shorted}
    adc = SimulatedCpAdc(
        fake, ev_resistance_ohm=lambda: EV_RESISTANCE_OHM.get(state["ev"]),
        diode_present=lambda: state["diode"], cp_shorted=lambda: state["shorted"],
        sample_spacing_s=lambda: rng.uniform(*spacing), seed=seed, **adc_options)
    pilot = AdcPilot(ADC, SysfsPwm(0, 0, root=fake.root), adc=adc,
                     clock=adc.clock, sleep=adc.advance, sampling=False)
    return pilot, adc, state


def settle(pilot, adc):
    adc.advance(1.0)  # past every blanking time
    return pilot


def bursts(pilot, n=100):
    return collections.Counter(pilot.measure().state for _ in range(n))


OFFERS = [None, 6, 16, 32, 63]


@pytest.mark.parametrize("amps", OFFERS, ids=lambda a: "constant" if a is None else f"{a}A")
@pytest.mark.parametrize("ev_state", ["A", "B", "C", "D"])
def test_adc_pilot_reads_each_state_at_each_offer(sysfs, ev_state, amps):
    pilot, adc, _ = simulated(sysfs, None if ev_state == "A" else ev_state)
    pilot.offer_current(amps) if amps else pilot.stop_offer()
    settle(pilot, adc)
    seen = bursts(pilot)
    assert seen[ev_state] >= 97, seen
    assert set(seen) <= {ev_state, None}, seen


@pytest.mark.parametrize("ev_state", ["A", "B", "C"])
def test_at_80_a_the_short_low_phase_gives_no_false_diode_fault(sysfs, ev_state):
    # 96 % duty: 40 us of -12 V a period, partly on the falling edge (hal-realism.md §3).
    pilot, adc, _ = simulated(sysfs, None if ev_state == "A" else ev_state)
    pilot.offer_current(80)
    settle(pilot, adc)
    seen = bursts(pilot, 300)
    assert seen[ev_state] >= 240, seen
    assert set(seen) <= {ev_state, None}, seen


@pytest.mark.parametrize(("ev_state", "low_v"), [("B", -8.8), ("C", -5.6), ("D", -2.4)])
def test_a_missing_diode_while_the_pwm_runs_reads_f_with_a_diagnosis(sysfs, ev_state, low_v):
    pilot, adc, _ = simulated(sysfs, ev_state, diode=False)
    pilot.offer_current(16)
    settle(pilot, adc)
    first, second = pilot.measure(), pilot.measure()
    assert first.state is None  # believed on the second burst (DIODE_FAULT_BURSTS)
    assert second.state == "F"
    assert pilot.read_state() == "F"
    assert "diode missing" in pilot.diagnosis and f"{low_v:+.1f} V" in pilot.diagnosis
    assert bursts(pilot)["F"] >= 97


def test_a_missing_diode_is_no_fault_without_pwm(sysfs):
    # Constant +12 V (B1): the negative half is never driven, so there is nothing to check.
    pilot, adc, _ = simulated(sysfs, "B", diode=False)
    pilot.stop_offer()
    settle(pilot, adc)
    assert bursts(pilot)["B"] >= 97


def test_a_diode_that_fails_during_charging_is_caught(sysfs):
    pilot, adc, ev = simulated(sysfs, "C")
    pilot.offer_current(32)
    settle(pilot, adc)
    assert pilot.measure().state == "C"
    ev["diode"] = False
    states = [pilot.measure().state for _ in range(3)]
    assert states[-1] == "F" and "C" not in states[1:]


def test_cp_shorted_to_pe_reads_e(sysfs):
    pilot, adc, _ = simulated(sysfs, "C", shorted=True)
    pilot.offer_current(16)
    settle(pilot, adc)
    assert pilot.measure().state == "E"
    assert "shorted to PE" in pilot.diagnosis


def test_the_boot_state_is_f_evse_not_available(sysfs):
    pilot, adc, _ = simulated(sysfs, "B")
    assert pilot.measure().state == "F"
    assert "EVSE not available" in pilot.diagnosis


def test_d_has_a_diagnosis_and_a_and_c_have_none(sysfs):
    pilot, adc, ev = simulated(sysfs, "D")
    pilot.offer_current(16)
    settle(pilot, adc)
    assert pilot.measure().state == "D" and "ventilation" in pilot.diagnosis
    ev["ev"] = "C"
    assert pilot.measure().state == "C" and pilot.diagnosis is None


@pytest.mark.parametrize("outlier_v", [9.4, -3.0, 12.0, 0.0])
def test_a_single_outlier_sample_does_not_change_the_state(sysfs, outlier_v):
    # hal-realism.md §3: max/min over 100 samples read one 9.4 V sample in C as B, every time.
    pilot, adc, _ = simulated(sysfs, "C")
    pilot.offer_current(32)
    settle(pilot, adc)
    for _ in range(50):
        adc.glitch(outlier_v)
        assert pilot.measure().state == "C"


def test_a_run_of_outliers_is_unstable_not_another_state(sysfs):
    pilot, adc, _ = simulated(sysfs, "C")
    pilot.offer_current(32)
    settle(pilot, adc)
    adc.glitch(9.2, count=20)  # a spike that lasts a fifth of the burst
    assert pilot.measure().state is None


def test_a_noisy_plateau_fails_the_stability_test(sysfs):
    pilot, adc, _ = simulated(sysfs, "C", noise_v=0.6)
    pilot.offer_current(32)
    settle(pilot, adc)
    seen = bursts(pilot, 20)
    assert seen[None] >= 18 and "B" not in seen and "F" not in seen, seen


@pytest.mark.parametrize("spacing", [(245e-6, 255e-6), (333e-6, 333e-6), (250e-6, 250e-6), (100e-6, 100e-6)],
                         ids=["250us-jitter", "333us-locked", "250us-locked", "100us-locked"])
def test_sample_spacing_that_aliases_the_pwm_gives_no_false_f(sysfs, spacing):
    # hal-realism.md §3: at 10 % duty, 250 us spacing read F a third of the time, 333 us two thirds.
    pilot, adc, _ = simulated(sysfs, "C", spacing=spacing)
    pilot.offer_current(6)
    settle(pilot, adc)
    seen = bursts(pilot)
    assert "F" not in seen and "B" not in seen, seen
    assert seen["C"] >= 90, seen


def test_readings_are_blanked_after_the_contactor_switched(sysfs):
    pilot, adc, _ = simulated(sysfs, "C")
    pilot.offer_current(16)
    settle(pilot, adc)
    assert pilot.measure().state == "C"
    pilot.note_contactor_switched()
    switched_at = adc.clock()
    while adc.clock() - switched_at < CONTACTOR_BLANKING_S - 0.02:
        assert pilot.measure().state is None
        assert pilot.read_state() is None and pilot.diagnosis is None
        adc.advance(0.01)
    adc.advance(0.03)
    assert pilot.measure().state == "C"


def test_readings_are_blanked_after_a_duty_change_only(sysfs):
    pilot, adc, _ = simulated(sysfs, "C")
    pilot.offer_current(16)
    settle(pilot, adc)
    pilot.offer_current(16)  # the same duty: nothing changed on the CP
    assert pilot.measure().state == "C"
    pilot.offer_current(32)
    changed_at = adc.clock()
    blanked = 0
    while adc.clock() - changed_at < DUTY_CHANGE_BLANKING_S - 0.02:
        assert pilot.measure().state is None
        blanked += 1
        adc.advance(0.02)
    assert blanked >= 10
    adc.advance(0.03)
    assert pilot.measure().state == "C"


@pytest.mark.parametrize(("change", "state"), [("ev", "A"), ("shorted", "E"), ("diode", "F")])
def test_unplug_and_faults_are_not_blanked_after_a_duty_change(sysfs, change, state):
    # The contactor must open within 100 ms of these (IEC 61851-1 Table A.6), blanking or not.
    pilot, adc, ev = simulated(sysfs, "C")
    pilot.offer_current(16)
    settle(pilot, adc)
    pilot.offer_current(32)
    changed_at = adc.clock()
    ev.update({"ev": None} if change == "ev" else {change: change == "shorted"})
    seen = [pilot.measure().state for _ in range(2)]
    assert seen[-1] == state
    assert adc.clock() - changed_at < DUTY_CHANGE_BLANKING_S  # still inside the blanking time


def test_a_burst_during_which_the_duty_changed_is_dropped(sysfs):
    pilot, adc, _ = simulated(sysfs, "C")
    pilot.offer_current(16)
    settle(pilot, adc)
    changes = iter([lambda: pilot.stop_offer()])

    def sleep_and_change(seconds):
        adc.advance(seconds)
        next(changes, lambda: None)()

    pilot._sleep = sleep_and_change
    assert pilot.measure() == PilotReading(None)


def test_a_cp_that_does_not_toggle_reads_f_after_a_second(sysfs, tmp_path):
    # The PWM runs, but the CP driver follows another output that holds +12 V (a wrong
    # pilot.pwm_pin or chip, a missing overlay: hal-realism.md finding #5).
    with FakeSysfsPwm(tmp_path / "other", exported=(0,)) as other:
        for attribute, value in (("period", "1000000"), ("duty_cycle", "1000000"), ("enable", "1")):
            other.poke(0, attribute, value + "\n")
        rng = random.Random(2)
        adc = SimulatedCpAdc(other, ev_resistance_ohm=lambda: EV_RESISTANCE_OHM["B"],
                             sample_spacing_s=lambda: rng.uniform(80e-6, 120e-6), seed=2)
        pilot = AdcPilot(ADC, SysfsPwm(0, 0, root=sysfs.root), adc=adc, clock=adc.clock, sleep=adc.advance,
                         sampling=False)
        pilot.offer_current(32)
        adc.advance(1.0)  # past the blanking
        assert pilot.measure().state is None  # one level where two were due: no state yet
        adc.advance(NOT_TOGGLING_S)
        assert pilot.measure().state == "F"
        assert "does not toggle" in pilot.diagnosis and "53.3 %" in pilot.diagnosis
        pilot.release()


def test_read_state_returns_the_published_reading_without_sampling(sysfs):
    pilot, adc, _ = simulated(sysfs, "B")
    pilot.stop_offer()
    assert pilot.read_state() is None  # nothing measured yet
    pilot.measure()
    reads = adc.reads
    assert [pilot.read_state() for _ in range(10)] == ["B"] * 10
    assert adc.reads == reads


def test_read_state_raises_when_no_burst_succeeds(sysfs):
    pilot, adc, _ = simulated(sysfs, "B")
    pilot.measure()
    adc.advance(STALE_AFTER_S + 0.1)
    with pytest.raises(HardwareError, match="no measurement for"):
        pilot.read_state()


class BrokenAdc:
    raw_value = property(lambda self: (_ for _ in ()).throw(OSError("SPI transfer failed")))


def test_an_adc_that_cannot_be_read_is_a_hardware_error(pwm):
    pilot = AdcPilot(ADC, pwm, adc=BrokenAdc(), sampling=False)
    with pytest.raises(HardwareError, match="SPI transfer failed"):
        pilot.measure()


def test_the_sampling_thread_publishes_readings_and_reports_failures(sysfs):
    adc = SimulatedCpAdc(sysfs, ev_resistance_ohm=lambda: EV_RESISTANCE_OHM["C"], seed=3)
    pilot = AdcPilot(ADC, SysfsPwm(0, 0, root=sysfs.root), adc=adc)
    try:
        pilot.stop_offer()
        assert wait_until(lambda: pilot.read_state() == "C")
        pilot._adc = BrokenAdc()
        with pytest.raises(HardwareError, match="SPI transfer failed"):
            wait_until(lambda: pilot.read_state() is None and False, timeout_s=3.0)
    finally:
        pilot.release()
    assert not pilot._thread.is_alive()
    assert sysfs.channel(0).duty_cycle_ns == PERIOD  # released at constant +12 V


def wait_until(condition, timeout_s=3.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_a_12_bit_adc_reads_the_states(sysfs):
    config = PilotConfig(backend="adc", adc_chip="mcp3208", volts_per_count=24.0 / 4095)
    rng = random.Random(4)
    adc = SimulatedCpAdc(sysfs, ev_resistance_ohm=lambda: EV_RESISTANCE_OHM["C"], bits=12,
                         volts_per_count=config.volts_per_count, sample_spacing_s=lambda: rng.uniform(80e-6, 120e-6))
    pilot = AdcPilot(config, SysfsPwm(0, 0, root=sysfs.root), adc=adc, clock=adc.clock, sleep=adc.advance,
                     sampling=False)
    pilot.offer_current(20)
    adc.advance(1.0)
    reading = pilot.measure()
    assert reading.state == "C"
    assert reading.high_v == pytest.approx(6.0, abs=0.15) and reading.low_v == pytest.approx(-12.0, abs=0.1)


def test_few_configured_samples_are_raised_to_the_minimum(sysfs):
    pilot, adc, _ = simulated(sysfs, "B")
    pilot._config = PilotConfig(backend="adc", samples=5)
    pilot.offer_current(6)
    adc.advance(1.0)
    before = adc.reads
    assert pilot.measure().state == "B"
    assert adc.reads - before >= MIN_BURST_SAMPLES


@pytest.mark.parametrize("chip", ["mcp3008", "mcp3004", "mcp3208"])
def test_adc_pilot_builds_its_chip_through_gpiozero(pins, pwm, chip):
    config = PilotConfig(backend="adc", adc_chip=chip)
    pilot = AdcPilot(config, pwm, sampling=False)
    # gpiozero's mock SPI bus with no device answers raw 0, i.e. -12 V: the pilot's own boot level
    reading = pilot.measure()
    assert reading.state == "F" and reading.high_v == pytest.approx(-12.0)
    pilot.release()
    pilot.release()


def test_an_invalid_adc_channel_is_a_hardware_error(pins, pwm):
    with pytest.raises(HardwareError, match="mcp3004"):
        AdcPilot(PilotConfig(backend="adc", adc_chip="mcp3004", adc_channel=5), pwm)


def test_adc_pilot_signals_through_the_pwm(sysfs):
    pilot, adc, _ = simulated(sysfs, "B")
    assert isinstance(pilot, Pilot)
    assert sysfs.channel(0).duty_cycle_ns == 0
    pilot.offer_current(32)
    assert sysfs.channel(0).duty_cycle_ns == 533_333
    pilot.release()
    assert sysfs.channel(0).duty_cycle_ns == PERIOD


def test_gpio_pilot_has_no_blanking_and_names_its_inputs(pins, pwm):
    config = board(fault_pin=24)
    ev = SimulatedEv(config, RelayConfig())
    pilot = GpioPilot(config, pwm)
    ev.set_pilot("C")
    pilot.note_contactor_switched()
    assert pilot.read_state() == "C" and pilot.diagnosis is None
    ev.set_pilot("E")
    assert pilot.read_state() == "E" and "GPIO25" in pilot.diagnosis
    ev.set_pilot("F")
    assert pilot.read_state() == "F" and "GPIO24" in pilot.diagnosis
