"""The deadman: a thread that opens the contactors when the control loop stops advancing.

Everything of the charger runs in one asyncio loop; a callback that blocks it (a stuck driver
call, a long computation, a swap storm) also stops the pilot supervision, which IEC 61851-1
expects to react within 100 ms (hardware.md §1.4). The systemd watchdog reacts in tens of seconds
and only restarts the process. This thread does not need the loop: when a contactor is commanded
closed and the pilot loop has not advanced for more than ``STALL_LIMIT_S``, it opens every relay
itself (``Relay.open`` is safe from any thread). The loop hears of it when it runs again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("evcp.deadman")

STALL_LIMIT_S = 0.5
"""A closed contactor is opened when the pilot loop has not advanced for longer than this."""
CHECK_PERIOD_S = 0.05
"""How often the thread looks; the contactor opens at most this much after the limit."""


def must_open(now: float, loop_advanced_at: float, contactor_closed: bool,
              limit_s: float = STALL_LIMIT_S) -> bool:
    """True when the contactors must be opened: one is closed and the loop stalled beyond the limit."""
    return contactor_closed and now - loop_advanced_at > limit_s


class Deadman:
    """``advanced_at()``: when the pilot loop last ran (monotonic); ``contactor_closed()``: whether
    any relay is commanded closed; ``open_relays()``: open them all. All three are called from the
    deadman's thread. ``tripped`` counts the stalls it acted on; ``take_trip()`` reads and clears
    the flag the loop checks once it runs again."""

    def __init__(self, advanced_at: Callable[[], float], contactor_closed: Callable[[], bool],
                 open_relays: Callable[[], None], limit_s: float = STALL_LIMIT_S,
                 period_s: float = CHECK_PERIOD_S, clock: Callable[[], float] = time.monotonic):
        self._advanced_at = advanced_at
        self._contactor_closed = contactor_closed
        self._open_relays = open_relays
        self.limit_s = limit_s
        self._period_s = period_s
        self._clock = clock
        self._stop = threading.Event()
        self._armed = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_trip: float | None = None
        self.tripped = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="deadman", daemon=True)
            self._thread.start()

    def arm(self) -> None:
        """A contactor has just closed: watch again (without one closed the thread sleeps). Call
        it after the close, so the thread's second look in ``_idle`` cannot miss it."""
        self._armed.set()

    def stop(self) -> None:
        self._stop.set()
        self._armed.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def take_trip(self) -> float | None:
        """How long the loop had stalled when the deadman last opened the contactors, or None;
        cleared by reading."""
        stalled, self._pending_trip = self._pending_trip, None
        return stalled

    def check(self) -> bool:
        """One look (the thread's body; tests call it directly). True when it opened the relays."""
        advanced_at = self._advanced_at()
        now = self._clock()
        try:
            closed = self._contactor_closed()
        except Exception:  # noqa: BLE001 - a state that cannot be read is treated as closed
            closed = True
        if not must_open(now, advanced_at, closed, self.limit_s):
            return False
        self._open_relays()
        self.tripped += 1
        self._pending_trip = now - advanced_at
        log.critical("control loop stalled for %.2f s with a contactor closed: every contactor OPENED by the "
                     "deadman", now - advanced_at)
        return True

    def _idle(self) -> bool:
        """Nothing closed: sleep until ``arm()`` (no periodic wakeups on an idle charger)."""
        try:
            closed = self._contactor_closed()
        except Exception:  # noqa: BLE001
            return False
        if closed:
            return False
        self._armed.clear()
        if not self._contactor_closed():
            self._armed.wait()
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                if self._idle():
                    continue
                self.check()
            except Exception:  # noqa: BLE001 - the deadman must keep watching
                log.exception("deadman check failed; opening every contactor")
                try:
                    self._open_relays()
                except Exception:  # noqa: BLE001
                    log.exception("deadman could not open the contactors")
