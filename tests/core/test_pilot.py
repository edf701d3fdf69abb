"""Pilot level: debouncing of raw IEC 61851-1 readings, with time passed in."""

from evcp.core.pilot import PilotFilter


def feed(f: PilotFilter, samples):
    """samples: (time, reading) pairs; returns the (time, new state) changes."""
    return [(t, s) for t, r in samples if (s := f.feed(r, t)) is not None]


def test_entering_c_needs_stable_readings_for_enter_charge_s():
    f = PilotFilter(enter_charge_s=0.5, state="B")
    changes = feed(f, [(t / 100, "C") for t in range(0, 60, 2)])
    assert changes == [(0.5, "C")]


def test_a_glitch_into_c_is_ignored():
    f = PilotFilter(enter_charge_s=0.5, state="B")
    assert feed(f, [(0.0, "C"), (0.1, "C"), (0.2, "B"), (0.3, "C"), (0.6, "C")]) == []


def test_leaving_c_is_believed_at_once_by_default():
    f = PilotFilter(state="C")
    assert feed(f, [(1.0, "B")]) == [(1.0, "B")]


def test_leaving_c_can_require_a_second_sample():
    f = PilotFilter(state="C", leave_charge_s=0.02)
    assert feed(f, [(1.0, "A"), (1.01, "A"), (1.02, "A")]) == [(1.02, "A")]


def test_unstable_reading_keeps_the_state():
    f = PilotFilter(state="C")
    assert feed(f, [(1.0, None), (2.0, None)]) == []
    assert f.state == "C"


def test_error_states_are_believed_fast_from_any_state():
    f = PilotFilter(state="B", settle_s=0.05, leave_charge_s=0.0)
    assert feed(f, [(0.0, "F")]) == [(0.0, "F")]
    f = PilotFilter(state="C")
    assert feed(f, [(0.0, "D")]) == [(0.0, "D")]


def test_plug_in_settles():
    f = PilotFilter(state="A", settle_s=0.05)
    assert feed(f, [(0.0, "B"), (0.03, "B"), (0.05, "B")]) == [(0.05, "B")]
