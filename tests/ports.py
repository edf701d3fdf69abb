"""Ports for processes that must be told theirs before they start (``api.listen`` of evcp run,
``--listen`` of the central system).

A port found by binding port 0 and closing the socket can be taken by anyone before the process
binds it: by another test worker (pytest-xdist) doing the same, or by the kernel for a process
that binds port 0 itself. So each worker takes its ports from a block of its own just below the
kernel's ephemeral range, which the kernel never hands out for port 0.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

PORTS_PER_WORKER = 400
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ... (one process each)
    return int(name[2:]) if name[2:].isdigit() else 0


def _block() -> range:
    try:
        first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768  # Linux's default
    end = first_ephemeral - _worker_index() * PORTS_PER_WORKER
    return range(max(1024, end - PORTS_PER_WORKER), end)


_candidates = itertools.cycle(_block())


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now and that no other worker will pick."""
    for _ in range(PORTS_PER_WORKER):
        port = next(_candidates)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # still held by an earlier test's process
            return port
    raise RuntimeError(f"no free port left in {_block()}")
