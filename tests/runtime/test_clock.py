"""The charger's wall clock: NTP when synchronised, else the central system's currentTime."""

from evcp.runtime.clock import ChargerClock, kernel_clock_synchronised


def test_an_unsynchronised_clock_takes_the_central_systems_time():
    clock = ChargerClock(synchronised=lambda: False, system_time=lambda: 1_000_000.0)
    assert not clock.trusted
    correction = clock.central_system_time("2023-11-14T22:13:20Z")  # 1_700_000_000
    assert correction == 1_699_000_000.0
    assert clock.now() == 1_700_000_000.0 and clock.trusted


def test_latency_sized_differences_are_not_corrections():
    clock = ChargerClock(synchronised=lambda: False, system_time=lambda: 1_700_000_000.5)
    assert clock.central_system_time("2023-11-14T22:13:20Z") == 0.0
    assert clock.offset_s == 0.0 and clock.trusted


def test_a_synchronised_clock_is_never_overridden():
    clock = ChargerClock(synchronised=lambda: True, system_time=lambda: 1_000_000.0)
    assert clock.central_system_time("2023-11-14T22:13:20Z") == 0.0
    assert clock.now() == 1_000_000.0 and clock.trusted


def test_garbage_current_time_changes_nothing():
    clock = ChargerClock(synchronised=lambda: False, system_time=lambda: 5.0)
    assert clock.central_system_time("yesterday") == 0.0 and clock.now() == 5.0


def test_the_kernel_can_be_asked_here():
    assert kernel_clock_synchronised() in (True, False, None)
