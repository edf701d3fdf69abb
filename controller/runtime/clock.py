"""Wall-clock time for OCPP timestamps on a Raspberry Pi, which has no real-time clock.

After a power cut the system clock starts wherever the last shutdown left it (or at the
image's build date) until NTP synchronises it. Billing needs true timestamps, so:
* while the kernel says the clock is synchronised (adjtimex), it is trusted as it is;
* otherwise the central system's currentTime (BootNotification.conf, Heartbeat.conf)
  corrects it by an offset;
* timestamps taken before either source was available are *untrusted*; transaction
  messages still queued get them shifted once the correction is known.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from typing import Callable

from evcp.timestamps import parse_timestamp

log = logging.getLogger("evcp.clock")

TIME_ERROR = 5
"""adjtimex(2): the clock is not synchronised."""
STEP_S = 2.0
"""A correction smaller than this is network latency, not a wrong clock."""


def kernel_clock_synchronised() -> bool | None:
    """adjtimex(2) read-only query; None where it cannot be asked (not Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    return state != -1 and state != TIME_ERROR


class ChargerClock:
    def __init__(self, synchronised: Callable[[], bool | None] = kernel_clock_synchronised,
                 system_time: Callable[[], float] = time.time):
        self._synchronised = synchronised
        self._system_time = system_time
        self.offset_s = 0.0
        self._corrected_by_central_system = False

    def now(self) -> float:
        return self._system_time() + self.offset_s

    @property
    def trusted(self) -> bool:
        """The time is right: NTP-synchronised, or corrected by the central system."""
        return bool(self._synchronised()) or self._corrected_by_central_system

    def central_system_time(self, current_time: str) -> float:
        """Take the central system's currentTime; returns the correction applied now (s)."""
        if self._synchronised():
            correction, self.offset_s = -self.offset_s, 0.0
            return correction
        try:
            theirs = parse_timestamp(current_time)
        except ValueError:
            log.warning("central system sent an unreadable currentTime %r", current_time)
            return 0.0
        wanted = theirs - self._system_time()
        correction = wanted - self.offset_s
        self._corrected_by_central_system = True
        if abs(correction) < STEP_S:
            return 0.0
        self.offset_s = wanted
        log.warning("system clock not synchronised: using the central system's time (%+.1f s)", wanted)
        return correction
