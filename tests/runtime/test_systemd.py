"""sd_notify over a real datagram socket, and journald priority prefixes."""

from __future__ import annotations

import logging
import os
import socket

from evcp.runtime.systemd import JournalFormatter, Notifier, under_journald


def test_ready_status_watchdog_and_stopping_reach_the_socket(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_interval_s == 30.0
        notifier.ready("1: Available; CSMS offline")
        notifier.status("1: Available; CSMS offline")  # unchanged: not sent again
        notifier.status("1: Charging 7.4 kW; CSMS connected")
        notifier.watchdog()
        notifier.stopping()
        received = [server.recv(4096).decode() for _ in range(4)]
    assert received[0] == "READY=1\nSTATUS=1: Available; CSMS offline"
    assert received[1] == "STATUS=1: Charging 7.4 kW; CSMS connected"
    assert received[2] == "WATCHDOG=1"
    assert received[3].startswith("STOPPING=1")


def test_without_systemd_nothing_is_sent_and_no_watchdog():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.ready("x")  # no socket: a no-op, no exception


def test_watchdog_meant_for_another_process_is_ignored():
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None


def test_journal_lines_carry_syslog_priorities_and_no_timestamp():
    formatter = JournalFormatter("%(name)s: %(message)s")
    record = logging.LogRecord("evcp.core", logging.WARNING, __file__, 1, "contactor %s", ("OPEN",), None)
    assert formatter.format(record) == "<4>evcp.core: contactor OPEN"


def journal_stream_of(fd: int) -> str:
    """JOURNAL_STREAM as systemd sets it for the stream it connects (systemd.exec(5))."""
    status = os.fstat(fd)
    return f"{status.st_dev}:{status.st_ino}"


def test_stderr_is_the_journal_when_it_is_the_stream_journal_stream_names():
    service_end, journald_end = socket.socketpair()  # journald hands the service one end of a stream socket
    with service_end, journald_end:
        environ = {"JOURNAL_STREAM": journal_stream_of(service_end.fileno())}
        assert under_journald(environ, stream_fd=service_end.fileno())


def test_an_inherited_journal_stream_with_stderr_elsewhere_is_not_the_journal(tmp_path):
    """A terminal of a systemd user session inherits JOURNAL_STREAM from the session's manager."""
    service_end, journald_end = socket.socketpair()
    with service_end, journald_end, open(tmp_path / "terminal", "w") as terminal:
        inherited = {"JOURNAL_STREAM": journal_stream_of(service_end.fileno())}
        assert not under_journald(inherited, stream_fd=terminal.fileno())
        assert not under_journald({"JOURNAL_STREAM": "not a stream"}, stream_fd=service_end.fileno())
    assert not under_journald({}) and not under_journald({"JOURNAL_STREAM": ""})


# --- evcp relays-off (the unit's ExecStopPost=+) ---

RELAYS_OFF_CONFIG = """
[charge_point]
id = "CP-RELAYS-OFF"
cable = "tethered"
connectors = 2

[ocpp]
csms_url = "ws://127.0.0.1:9/ocpp"

[hardware]
backend = "pi"
relay_heartbeat_pin = 26

[[hardware.connectors]]
[hardware.connectors.relay]
pin = 17
[hardware.connectors.pilot]
pwm_chip = 0
pwm_channel = 0

[[hardware.connectors]]
[hardware.connectors.relay]
pin = 5
active_high = false
[hardware.connectors.pilot]
vehicle_pin = 6
charge_pin = 13
fault_pin = 19
pwm_chip = 0
pwm_channel = 1
"""


def test_relays_off_drives_every_relay_pin_off_and_the_pilot_to_plus_12_v(tmp_path, pins):
    from evcp.mocks.pins import energised
    from evcp.mocks.sysfs_pwm import FakeSysfsPwm
    from evcp.runtime.systemd import force_safe_outputs

    config = tmp_path / "evcp.toml"
    config.write_text(RELAYS_OFF_CONFIG)
    pins.pin(17).output_with_state(True)
    pins.pin(5).output_with_state(False)  # active low: energised
    pins.pin(26).output_with_state(True)
    lines: list[str] = []
    with FakeSysfsPwm(tmp_path / "pwm", npwm=2) as sysfs:
        status, held = force_safe_outputs(config, pin_factory=pins, pwm_root=tmp_path / "pwm", report=lines.append)
        assert status == 0, lines
        assert not energised(pins.pin(17), active_high=True) and pins.pin(17).function == "output"
        assert not energised(pins.pin(5), active_high=False) and pins.pin(5).state
        assert pins.pin(26).function == "output" and not pins.pin(26).state
        for channel in (0, 1):
            state = sysfs.channel(channel)
            assert state.enabled and state.duty == 1.0, state  # constant +12 V: no current offered
    assert len(held) == 3
    assert any("GPIO5 driven high" in line for line in lines), lines


def test_relays_off_with_a_broken_config_still_uses_its_relay_pins(tmp_path, pins):
    from evcp.runtime.systemd import force_safe_outputs

    config = tmp_path / "evcp.toml"
    config.write_text(RELAYS_OFF_CONFIG.replace('cable = "tethered"', 'cable = "tethered"\nbogus_key = 1'))
    pins.pin(17).output_with_state(True)
    pins.pin(5).output_with_state(False)
    lines: list[str] = []
    status, _ = force_safe_outputs(config, pin_factory=pins, pwm_root=tmp_path / "no-pwm", report=lines.append)
    assert status == 0, lines
    assert not pins.pin(17).state and pins.pin(5).state
    assert any("config not valid" in line and "bogus_key" in line for line in lines), lines
    assert any("pilot PWM pwmchip0/pwm0 not set" in line for line in lines), lines


def test_relays_off_without_a_config_drives_the_default_relay_pin(tmp_path, pins):
    from evcp.runtime.systemd import force_safe_outputs

    pins.pin(17).output_with_state(True)
    lines: list[str] = []
    status, _ = force_safe_outputs(tmp_path / "missing.toml", pin_factory=pins, pwm_root=tmp_path, report=lines.append)
    assert status == 0 and not pins.pin(17).state
    assert any("config unreadable" in line for line in lines), lines


def test_relays_off_reports_a_pin_it_cannot_drive_and_still_drives_the_others(tmp_path, pins):
    from gpiozero import OutputDevice

    from evcp.runtime.systemd import force_safe_outputs

    config = tmp_path / "evcp.toml"
    config.write_text(RELAYS_OFF_CONFIG)
    busy = OutputDevice(17, initial_value=True, pin_factory=pins)  # still claimed by someone
    pins.pin(5).output_with_state(False)
    lines: list[str] = []
    status, _ = force_safe_outputs(config, pin_factory=pins, pwm_root=tmp_path, report=lines.append)
    assert status == 1
    assert any(line.startswith("relays-off: GPIO17: cannot drive it") for line in lines), lines
    assert pins.pin(5).state, "the other relay is still driven off"
    busy.close()


def test_relays_off_command_with_the_mock_backend_touches_nothing(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "evcp.toml"
    config.write_text('[charge_point]\nid = "CP-X"\ncable = "tethered"\n[ocpp]\ncsms_url = "ws://127.0.0.1:9/ocpp"\n'
                      '[hardware]\nbackend = "mock"\n')
    result = subprocess.run([sys.executable, "-m", "evcp", "relays-off", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'hardware.backend is "mock": no real relay to switch off' in result.stdout
