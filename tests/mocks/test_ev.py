"""SimulatedEv and ContactorModel, wired to the real GpioRelay and GpioPilot over mock pins."""

import threading

import pytest

from evcp.config import PilotConfig, RelayConfig
from evcp.hal.iec61851 import duty_for_current
from evcp.hal.pilot import GpioPilot
from evcp.hal.relay import GpioRelay
from evcp.mocks.ev import ContactorModel, SimulatedEv

BOARD = PilotConfig(vehicle_pin=22, charge_pin=23, fault_pin=24, short_pin=25)
RELAY = RelayConfig(pin=17, feedback_pin=27)


class NullPwm:
    duty = None

    def set_duty(self, fraction):
        self.duty = fraction

    def release(self):
        pass



def levels(factory, active_high=True):
    """Which board outputs are asserted: (vehicle, charge, fault, short)."""
    return tuple(bool(factory.pin(n).state) == active_high for n in (22, 23, 24, 25))


@pytest.mark.parametrize("active_high", [True, False])
def test_verbs_drive_the_board_outputs(pins, active_high):
    ev = SimulatedEv(PilotConfig(short_pin=25, inputs_active_high=active_high), RELAY)
    assert ev.state == "A" and levels(pins, active_high) == (False, False, False, False)
    ev.plug()
    assert ev.state == "B" and levels(pins, active_high) == (True, False, False, False)
    ev.request_charge()
    assert ev.state == "C" and levels(pins, active_high) == (True, True, False, False)
    ev.stop_charge()
    assert ev.state == "B"
    ev.inject_fault()
    assert ev.state == "F" and levels(pins, active_high) == (False, False, True, False)
    ev.clear_fault()
    ev.inject_short()
    assert ev.state == "E" and levels(pins, active_high) == (False, False, False, True)
    ev.clear_short()
    assert ev.state == "B"
    ev.unplug()
    assert ev.state == "A" and levels(pins, active_high) == (False, False, False, False)


def test_unplug_ends_the_charge_request(pins):
    ev = SimulatedEv(BOARD, RELAY)
    ev.plug()
    ev.request_charge()
    ev.unplug()
    ev.plug()
    assert ev.state == "B"


def test_request_charge_needs_a_plug(pins):
    with pytest.raises(RuntimeError, match="plugged"):
        SimulatedEv(BOARD, RELAY).request_charge()


def test_set_pilot_rejects_what_the_board_cannot_report(pins):
    ev = SimulatedEv(PilotConfig(fault_pin=None, short_pin=None), RELAY)
    for letter in ("D", "X", "E", "F"):
        with pytest.raises(ValueError):
            ev.set_pilot(letter)
    with pytest.raises(ValueError, match="short_pin"):
        ev.inject_short()


def test_set_pilot_then_verbs_continue_from_that_state(pins):
    ev = SimulatedEv(BOARD, RELAY)
    ev.set_pilot("C")
    ev.stop_charge()
    assert ev.state == "B"
    ev.set_pilot("F")
    ev.set_pilot("B")
    assert ev.state == "B"


def test_ev_levels_survive_a_pilot_opened_later(pins):
    ev = SimulatedEv(PilotConfig(inputs_active_high=False), RELAY)
    ev.plug()
    pilot = GpioPilot(PilotConfig(inputs_active_high=False), NullPwm())
    assert pilot.read_state() == "B"


def test_an_ev_wired_after_the_pilot_works_too(pins):
    pilot = GpioPilot(BOARD, NullPwm())
    ev = SimulatedEv(BOARD, RELAY)
    ev.plug()
    ev.request_charge()
    assert pilot.read_state() == "C"


@pytest.mark.parametrize("active_high", [True, False])
def test_power_flows_only_in_c_with_the_relay_energised(pins, active_high):
    config = RelayConfig(pin=17, active_high=active_high)
    ev = SimulatedEv(BOARD, config, max_power_w=11000)
    assert ev.power_w == 0 and not ev.relay_energised
    relay = GpioRelay(config)
    ev.plug()
    relay.close()
    assert ev.relay_energised and ev.power_w == 0, "B draws nothing"
    ev.request_charge()
    assert ev.power_w == 11000
    relay.open()
    assert ev.power_w == 0
    relay.close()
    ev.stop_charge()
    assert ev.power_w == 0
    ev.request_charge()
    ev.unplug()
    assert ev.power_w == 0
    ev.plug()
    ev.request_charge()
    relay.release()
    assert ev.power_w == 0


def test_the_ev_needs_mock_pins():
    with pytest.raises(TypeError, match="use_mock_pins"):
        SimulatedEv(BOARD, RELAY, pin_factory=object())


def test_the_ev_needs_a_gpio_board(pins):
    with pytest.raises(ValueError, match="gpio"):
        SimulatedEv(PilotConfig(backend="adc"), RELAY)


def test_history_records_each_verb_in_time_order(pins):
    ev = SimulatedEv(BOARD, RELAY)
    ev.plug()
    ev.request_charge()
    events = [event for _, event in ev.history]
    assert events == ["wired -> A", "plug -> B", "request_charge -> C"]
    times = [t for t, _ in ev.history]
    assert times == sorted(times)


def test_verbs_from_many_threads_leave_a_consistent_model(pins):
    ev = SimulatedEv(BOARD, RELAY)
    pilot = GpioPilot(BOARD, NullPwm())
    ev.plug()
    errors = []

    def toggle():
        try:
            for _ in range(200):
                ev.request_charge()
                ev.stop_charge()
                assert ev.power_w == 0
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=toggle) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ev.history) == 2 + 4 * 200 * 2
    assert ev.state == "B" and pilot.read_state() == "B"


# --- ContactorModel ----------------------------------------------------------


@pytest.mark.parametrize("feedback_active_high", [True, False])
def test_contactor_feedback_pin_follows_the_coil(pins, feedback_active_high):
    config = RelayConfig(pin=17, feedback_pin=27, feedback_active_high=feedback_active_high)
    contactor = ContactorModel(config)
    relay = GpioRelay(config)
    feedback = pins.pin(27)
    assert bool(feedback.state) != feedback_active_high
    relay.close()
    assert contactor.contacts_closed
    assert bool(feedback.state) == feedback_active_high
    relay.open()
    assert not contactor.contacts_closed
    assert bool(feedback.state) != feedback_active_high


def test_a_welded_contactor_stays_closed(pins):
    contactor = ContactorModel(RELAY)
    relay = GpioRelay(RELAY)
    relay.close()
    contactor.weld()
    relay.open()
    assert contactor.welded and contactor.contacts_closed and not contactor.coil_energised
    relay.release()
    assert contactor.contacts_closed
    contactor.unweld()
    assert not contactor.contacts_closed
    assert [event for _, event in contactor.history] == ["open", "closed", "weld", "unweld", "open"]


def test_releasing_the_relay_opens_the_contacts(pins):
    contactor = ContactorModel(RELAY)
    relay = GpioRelay(RELAY)
    relay.close()
    relay.release()
    assert not contactor.contacts_closed


def test_a_detached_contactor_no_longer_follows(pins):
    contactor = ContactorModel(RELAY)
    relay = GpioRelay(RELAY)
    contactor.detach()
    contactor.detach()
    relay.close()
    assert relay.feedback_closed() is False


def test_the_contactor_must_be_wired_before_the_relay(pins):
    GpioRelay(RELAY)
    with pytest.raises(RuntimeError, match="before the driver"):
        ContactorModel(RELAY)


def test_the_contactor_needs_a_feedback_pin(pins):
    with pytest.raises(ValueError, match="feedback_pin"):
        ContactorModel(RelayConfig(pin=17))


# -- the EV obeys the pilot PWM (IEC 61851-1 Annex A, Table A.8) ------------------------------


def charging_ev(pins, max_power_w=22000.0, phases=3):
    ev = SimulatedEv(BOARD, RELAY, max_power_w=max_power_w, phases=phases, waits_for_pwm=True)
    relay = GpioRelay(RELAY)
    ev.plug()
    ev.request_charge()
    relay.close()
    return ev, relay


def test_an_ev_that_waits_for_the_pwm_stays_in_b_until_a_current_is_offered(pins):
    ev, _ = charging_ev(pins)
    assert ev.requesting and ev.state == "B" and ev.power_w == 0, "B1: no PWM, no charge"
    ev.pwm_changed(duty_for_current(16))
    assert ev.state == "C" and ev.offered_a == pytest.approx(16)
    ev.pwm_changed(1.0)  # constant +12 V again: the offer is withdrawn
    assert ev.state == "B" and ev.offered_a is None and ev.power_w == 0


@pytest.mark.parametrize("amps, phases, expected_w", [
    (6, 3, 6 * 230 * 3), (16, 3, 16 * 230 * 3), (16, 1, 16 * 230), (32, 3, 22000), (40, 1, 40 * 230)])
def test_its_power_follows_the_offered_current_up_to_its_own_maximum(pins, amps, phases, expected_w):
    ev, _ = charging_ev(pins, max_power_w=22000.0, phases=phases)
    ev.pwm_changed(duty_for_current(amps))
    assert ev.power_w == pytest.approx(expected_w, rel=1e-6)
    assert ev.current_a == pytest.approx(expected_w / 230 / phases, rel=1e-6)
    assert ev.current_a <= ev.offered_a + 1e-9, "never more per phase than the pilot offers"


def test_below_6_a_it_stops_drawing(pins):
    ev, _ = charging_ev(pins)
    ev.pwm_changed(duty_for_current(10))
    assert ev.power_w > 0
    ev.pwm_changed(0.07)  # 7 % is no valid offer (Table A.8): no current allowed
    assert ev.offered_a is None and ev.state == "B" and ev.power_w == 0
    ev.pwm_changed(0.0)  # constant -12 V, state F from the charger
    assert ev.power_w == 0


def test_it_draws_nothing_while_the_contactor_is_open_whatever_is_offered(pins):
    ev, relay = charging_ev(pins)
    ev.pwm_changed(duty_for_current(32))
    relay.open()
    assert ev.state == "C" and ev.power_w == 0 and ev.current_a == 0
