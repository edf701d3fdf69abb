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
    assert under_journald({"JOURNAL_STREAM": "8:1234"}) and not under_journald({})
