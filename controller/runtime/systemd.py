"""systemd integration without a dependency: sd_notify(3) and journald-friendly logging.

``Notifier`` speaks the notify protocol over the datagram socket systemd passes in
``NOTIFY_SOCKET`` (READY=1, STATUS=, WATCHDOG=1, STOPPING=1). Outside systemd every
call is a no-op, so the charger runs the same on a laptop.
"""

from __future__ import annotations

import logging
import os
import socket
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


def under_journald(environ: Mapping[str, str] = os.environ) -> bool:
    """True when stderr goes to the journal (systemd sets JOURNAL_STREAM for the service)."""
    return bool(environ.get("JOURNAL_STREAM"))


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
