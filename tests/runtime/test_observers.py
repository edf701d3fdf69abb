"""What the observers make of the events and of the link's reconnect loop."""

from __future__ import annotations

from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core.model import AuthStatus, StopReason
from evcp.runtime.observers import PROCESS_COUNTERS, AuthorizationObserver, LinkObserver, count_transactions


def test_a_card_is_pending_until_its_answer_and_a_blocked_card_says_blocked():
    observer = AuthorizationObserver()
    assert observer.last is None
    observer.event(ev.TagPresented("DEADBEEF"), 10.0)
    assert observer.last == {"id_tag": "DEADBEEF", "status": "Pending", "at": 10.0, "source": "card"}
    observer.event(ev.AuthorizationResult("DEADBEEF", AuthStatus.BLOCKED), 10.2)
    assert observer.last["status"] == "Blocked" and observer.last["source"] == "central system"
    observer.event(ev.AuthorizationResult("04A1B2C3", None), 11.0)
    assert observer.last["status"] == "NoAnswer"
    observer.event(ev.AuthorizationResult("04A1B2C3", AuthStatus.ACCEPTED, offline=True), 12.0)
    assert observer.last["source"] == "local"
    observer.event(ev.TransactionStartConfirmed(1, 1, 7, AuthStatus.INVALID), 13.0)
    assert observer.last == {"id_tag": "04A1B2C3", "status": "Invalid", "at": 13.0, "source": "StartTransaction"}
    observer.event(ev.RemoteStartRequested(1, "REMOTE01"), 14.0)
    assert observer.last["source"] == "remote" and observer.last["status"] == "Pending"


class Link:
    """The four points of the adapter's reconnect loop the observer hooks."""

    def __init__(self):
        self.calls = []

    def _count_attempt_on_trial(self, reason):
        self.calls.append(("attempt", reason))

    def _connection_lost(self, error):
        self.calls.append(("lost", error))

    def _handshake_succeeded(self, parameters):
        self.calls.append(("ok", parameters))

    def _backoff(self, failures):
        return 2.0 ** failures


def test_the_link_observer_sees_errors_and_the_next_attempt_without_changing_the_link():
    link = Link()
    observer = LinkObserver(link, wall_clock=lambda: 100.0)
    failures, connections = PROCESS_COUNTERS.connection_failures, PROCESS_COUNTERS.connections
    link._count_attempt_on_trial(ConnectionRefusedError(111, "Connect call failed"))
    assert link._backoff(3) == 8.0
    status = observer.status(connected=False)
    assert "Connect call failed" in status["last_error"] and status["last_error_at"] == 100.0
    assert status["next_attempt_at"] == 108.0
    assert PROCESS_COUNTERS.connection_failures == failures + 1
    link._handshake_succeeded("parameters")
    assert observer.status(connected=True)["last_error"] is None
    assert observer.status(connected=True)["next_attempt_at"] is None
    link._connection_lost(OSError("reset by peer"))
    assert observer.status(connected=False)["last_error"] == "reset by peer"
    assert [kind for kind, _ in link.calls] == ["attempt", "ok", "lost"]  # the originals still run
    assert PROCESS_COUNTERS.connections == connections + 1


def test_transactions_are_counted_from_the_core_actions():
    started, stopped = PROCESS_COUNTERS.transactions_started, PROCESS_COUNTERS.transactions_stopped
    count_transactions([act.OpenRelay(1, "x")])
    assert (PROCESS_COUNTERS.transactions_started, PROCESS_COUNTERS.transactions_stopped) == (started, stopped)
    count_transactions([act.ReportTransactionStart(1, 1, "04A1B2C3", 0, 1.0), act.OpenRelay(1, "x"),
                        act.ReportTransactionStop(1, 1, 7, "04A1B2C3", 10, 2.0, StopReason.REBOOT)])
    assert (PROCESS_COUNTERS.transactions_started, PROCESS_COUNTERS.transactions_stopped) == (started + 1, stopped + 1)
