"""systemd integration without a dependency: sd_notify(3) and journald-friendly logging.

``Notifier`` speaks the notify protocol over the datagram socket systemd passes in
``NOTIFY_SOCKET`` (READY=1, STATUS=, WATCHDOG=1, STOPPING=1). Outside systemd every
call is a no-op, so the charger runs the same on a laptop.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Mapping

log = logging.getLogger("evcp.systemd")

#: syslog priorities (sd-daemon(3) "<N>" prefixes) of the logging levels.
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``: journald stores the priority and adds its own timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def under_journald(environ: Mapping[str, str] = os.environ, stream_fd: int = 2) -> bool:
    """True when ``stream_fd`` (stderr) is connected to the journal. systemd.exec(5): JOURNAL_STREAM
    holds the "device:inode" of the stream systemd connected the service's output to, to be compared
    with fstat(2) of stderr; a variable inherited by a process whose stderr is elsewhere (a terminal
    in a systemd user session) names another stream."""
    device, colon, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (colon and device.isdigit() and inode.isdigit()):
        return False
    try:
        stream = os.fstat(stream_fd)
    except OSError:
        return False
    return (stream.st_dev, stream.st_ino) == (int(device), int(inode))


TIMESTAMPED = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", *, stderr_level: str | None = None, log_file: str | None = None) -> None:
    """The log of every evcp process (run, bench, csms): lines on stderr with a timestamp; to
    journald (stderr is the stream JOURNAL_STREAM names) with priority prefixes and no timestamp,
    since the journal adds its own. ``stderr_level`` raises the threshold of stderr alone;
    ``log_file`` also gets every record from ``level`` up, timestamped."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JournalFormatter("%(name)s: %(message)s") if under_journald() else logging.Formatter(TIMESTAMPED))
    stderr.setLevel(stderr_level or level)
    handlers: list[logging.Handler] = [stderr]
    if log_file:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter(TIMESTAMPED))
        handlers.append(to_file)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    for noisy in ("ocpp", "websockets", "pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # aiohttp logs every malformed request a client sends as an ERROR with a traceback; the client
    # gets its 400 and the charger has nothing to do about it. Handler failures are evcp.api's.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ):
        self._address = environ.get("NOTIFY_SOCKET") or None
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        watchdog_for_us = usec and usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s: float | None = int(usec) / 1e6 if watchdog_for_us else None
        """WatchdogSec of the unit, or None when no watchdog is asked for."""
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> None:
        if self._address is None:
            return
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall("\n".join(fields).encode())
        except OSError as error:
            log.warning("cannot notify systemd at %s: %s", self._address, error)

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """STATUS= only when the one-line summary changed."""
        if status != self._last_status:
            self._last_status = status
            self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping: contactors open")


# --------------------------------------------------------------------------- evcp relays-off

def _lenient_wiring(path: Path) -> tuple[str, list, list, int | None, str]:
    """backend, relay configs, (pwm_chip, pwm_channel, pwm_invert) per connector and the
    heartbeat pin of a config file, and what was used; falls back to the raw TOML, then to the
    defaults, because this runs after ANY exit, a broken config's exit 78 included."""
    from evcp.config import ConfigError, PilotConfig, RelayConfig, load

    try:
        config = load(path)
    except ConfigError as error:
        reason = f"config not valid ({error}); using its raw relay and pilot values"
    else:
        connectors = config.hardware.connectors
        return (config.hardware.backend, [c.relay for c in connectors],
                [(c.pilot.pwm_chip, c.pilot.pwm_channel, c.pilot.pwm_invert) for c in connectors],
                config.hardware.relay_heartbeat_pin, f"{path}")
    import tomllib

    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raw, reason = {}, f"config unreadable ({error}); using the default wiring"
    hardware = raw.get("hardware") if isinstance(raw.get("hardware"), dict) else {}
    tables = [t for t in hardware.get("connectors", [{}]) if isinstance(t, dict)] or [{}]
    relays, pwms = [], []
    relay_default, pilot_default = RelayConfig(), PilotConfig()
    for table in tables:
        relay = table.get("relay") if isinstance(table.get("relay"), dict) else {}
        pilot = table.get("pilot") if isinstance(table.get("pilot"), dict) else {}
        pin, active_high = relay.get("pin", relay_default.pin), relay.get("active_high", relay_default.active_high)
        if isinstance(pin, int) and not isinstance(pin, bool) and isinstance(active_high, bool):
            relays.append(RelayConfig(pin=pin, active_high=active_high))
        else:
            relays.append(relay_default)
        pwms.append((pilot.get("pwm_chip", pilot_default.pwm_chip), pilot.get("pwm_channel", pilot_default.pwm_channel),
                     bool(pilot.get("pwm_invert", pilot_default.pwm_invert))))
    heartbeat = hardware.get("relay_heartbeat_pin")
    heartbeat = heartbeat if isinstance(heartbeat, int) and not isinstance(heartbeat, bool) else None
    return str(hardware.get("backend", "pi")), relays, pwms, heartbeat, reason


def force_safe_outputs(path: Path, pin_factory=None, pwm_root: str | os.PathLike = "/sys/class/pwm",
                       report=print) -> tuple[int, list]:
    """``evcp relays-off``: every relay coil pin of ``path``'s wiring to its off level, the
    heartbeat line low and each pilot PWM to constant +12 V (no current offered), without
    building anything else. Returns the exit status (0 when every relay pin was driven off, 1
    otherwise) and the devices holding the pins: the caller ends the process without closing them."""
    from evcp.config import RelayConfig
    from evcp.hal import HardwareError
    from evcp.hal.pilot import SysfsPwm
    from evcp.hal.relay import force_relays_off

    backend, relays, pwms, heartbeat, source = _lenient_wiring(path)
    if backend == "mock":
        report(f"relays-off: {source}: hardware.backend is \"mock\": no real relay to switch off")
        return 0, []
    held, failures = [], []
    for relay in relays:
        driven, failed = force_relays_off([relay], pin_factory=pin_factory)
        held += driven
        failures += failed
        for failure in failed:
            report(f"relays-off: {failure}")
        if driven:
            report(f"relays-off: GPIO{relay.pin} driven {'low' if relay.active_high else 'high'}: contactor coil "
                   f"off (active-{'high' if relay.active_high else 'low'} driver) [{source}]")
    if heartbeat is not None:
        beat, beat_failures = force_relays_off([RelayConfig(pin=heartbeat, active_high=True)], pin_factory)
        held += beat
        report(f"relays-off: heartbeat GPIO{heartbeat} held low" if beat else f"relays-off: heartbeat {beat_failures[0]}")
    for chip, channel, invert in pwms:
        try:
            SysfsPwm(chip, channel, invert, root=pwm_root).release()
        except (HardwareError, OSError, TypeError, ValueError) as error:
            report(f"relays-off: pilot PWM pwmchip{chip}/pwm{channel} not set: {error}")
        else:
            report(f"relays-off: pilot PWM pwmchip{chip}/pwm{channel} at constant +12 V (no current offered)")
    return (1 if failures else 0), held
