"""What the status page and /metrics show beyond the core's state: the last authorization, the
central-system link's last error and next attempt, and counters since the process started.

The observers only watch; nothing here decides anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from evcp.core import actions as act
from evcp.core import events as ev

PROCESS_STARTED_MONOTONIC = time.monotonic()
"""Uptime counts from here (the controller itself restarts on a reset; the process does not)."""


@dataclass
class ProcessCounters:
    """Monotonic counts since the process started (Prometheus counters: they survive a reset)."""

    transactions_started: int = 0
    transactions_stopped: int = 0
    connections: int = 0
    """Websocket connections to the central system established."""
    connection_failures: int = 0
    """Attempts that failed and established connections that were lost."""

    @property
    def reconnects(self) -> int:
        return max(self.connections - 1, 0)


PROCESS_COUNTERS = ProcessCounters()


class AuthorizationObserver:
    """The last card decision: which tag, what the central system (or the local list) said.

    OCPP 1.6 §4.1 Authorize / §4.8 StartTransaction: the idTagInfo status is the answer; a tap
    whose answer has not come yet is "Pending", no answer at all (offline, timeout) "NoAnswer".
    """

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None

    def event(self, event: object, now: float) -> None:
        if isinstance(event, ev.TagPresented):
            self.last = {"id_tag": event.id_tag, "status": "Pending", "at": now, "source": "card"}
        elif isinstance(event, ev.RemoteStartRequested):
            self.last = {"id_tag": event.id_tag, "status": "Pending", "at": now, "source": "remote"}
        elif isinstance(event, ev.AuthorizationResult):
            status = event.status.value if event.status is not None else "NoAnswer"
            self.last = {"id_tag": event.id_tag, "status": status, "at": now,
                         "source": "local" if event.offline else "central system"}
        elif isinstance(event, ev.TransactionStartConfirmed) and self.last is not None:
            status = event.status.value if event.status is not None else "NoAnswer"
            self.last = {**self.last, "status": status, "at": now,
                         "source": "StartTransaction"}


def count_transactions(actions: list) -> None:
    for action in actions:
        if isinstance(action, act.ReportTransactionStart):
            PROCESS_COUNTERS.transactions_started += 1
        elif isinstance(action, act.ReportTransactionStop):
            PROCESS_COUNTERS.transactions_stopped += 1


class LinkObserver:
    """The websocket link as a person wants to see it: why it is down and when the next attempt is.

    The adapter keeps these to itself; this wraps the four points of its reconnect loop where
    they are known (a failed attempt, a lost connection, the backoff delay, a handshake that
    succeeded) without changing what they do.
    """

    def __init__(self, adapter, wall_clock=time.time) -> None:
        self.error: str | None = None
        self.error_at: float | None = None
        self.next_attempt_at: float | None = None
        self._clock = wall_clock
        self._wrap(adapter, "_count_attempt_on_trial", self._failed)
        self._wrap(adapter, "_connection_lost", self._failed)
        self._wrap(adapter, "_handshake_succeeded", self._connected)
        backoff = getattr(adapter, "_backoff", None)
        if backoff is not None:
            def timed_backoff(failures: int) -> float:
                delay = backoff(failures)
                self.next_attempt_at = self._clock() + delay
                return delay
            adapter._backoff = timed_backoff

    @staticmethod
    def _wrap(adapter, name: str, observer) -> None:
        original = getattr(adapter, name, None)
        if original is None:
            return

        def observed(*args, **kwargs):
            observer(*args)
            return original(*args, **kwargs)
        setattr(adapter, name, observed)

    def _failed(self, reason: object = None, *_: object) -> None:
        text = str(reason) if reason is not None and str(reason) else type(reason).__name__
        self.error, self.error_at = text, self._clock()
        PROCESS_COUNTERS.connection_failures += 1

    def _connected(self, *_: object) -> None:
        self.error = self.error_at = self.next_attempt_at = None
        PROCESS_COUNTERS.connections += 1

    def status(self, connected: bool) -> dict[str, Any]:
        return {
            "last_error": self.error,
            "last_error_at": self.error_at,
            "next_attempt_at": None if connected else self.next_attempt_at,
            "connections": PROCESS_COUNTERS.connections,
            "reconnects": PROCESS_COUNTERS.reconnects,
            "connection_failures": PROCESS_COUNTERS.connection_failures,
        }
