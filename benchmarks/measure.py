"""What the benchmark scripts measure with, one of each: a free loopback port, a process's CPU
time and memory from /proc, an OCPP timestamp in seconds, and the p50 / p99 / max line they
print. The scripts import it from this folder (on sys.path when one of them runs)."""

from __future__ import annotations

import os
import socket
import statistics
from datetime import datetime
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_kb(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM); 0 when it is missing."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    return proc_kb(pid, "VmRSS") / 1024


def epoch(iso: str) -> float:
    """POSIX seconds of an ISO 8601 time ("Z" allowed)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def percentiles(samples: list[float], unit: str = "ms") -> str:
    """"p50 … p99 … max … (n=…)" of ``samples`` (in ``unit``)."""
    if not samples:
        return "no samples"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"p50 {statistics.median(ordered):7.2f} {unit}   p99 {p99:7.2f} {unit}   "
            f"max {ordered[-1]:7.2f} {unit}   (n={len(ordered)})")
