"""Ports for processes that must be told theirs before they start (``api.listen`` of evcp run,
``--listen`` of the central system).

A port found by binding port 0 and closing the socket can be taken by anyone before the process
binds it: by another test worker (pytest-xdist) doing the same, by another test run on the same
machine, or by the kernel for a process that binds port 0 itself. So ports come from a range
below the kernel's ephemeral range, which the kernel never hands out for port 0, and each one is
reserved with a lock file that its test process holds until it exits: no other worker or run
takes it meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

RANGE_SIZE = 12_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOCK_DIR = Path(tempfile.gettempdir()) / "evcp-test-ports"

_held: list = []
"""The lock files of the ports this process took: held (and the ports reserved) until it exits."""


def _range() -> range:
    try:
        first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768  # Linux's default
    return range(max(1024, first_ephemeral - RANGE_SIZE), first_ephemeral)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now and that no other test process will take."""
    LOCK_DIR.mkdir(exist_ok=True)
    ports = _range()
    start = random.randrange(len(ports))
    for offset in range(len(ports)):
        port = ports[(start + offset) % len(ports)]
        lock = open(LOCK_DIR / str(port), "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()  # reserved by another test process (or by this one, earlier)
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                lock.close()  # in use by something outside the tests
                continue
        _held.append(lock)
        return port
    raise RuntimeError(f"no free port left in {ports} (pid {os.getpid()})")
