"""Idle footprint of `evcp run` with mock hardware, next to the import floor. Prints numbers.

    python benchmarks/idle.py [--seconds S]

Three processes run side by side over the same window:
  * the bench central system (separate process, not measured);
  * `evcp run` with mock hardware, connected and registered, nothing plugged in;
  * the floor: a Python process that imports what `evcp run` imports and sits in an idle
    asyncio loop (what no timer work at all would cost).
Printed per process: CPU share of one core, voluntary context switches per second (each
one is a wakeup of the process: a timer that fired, a frame, a thread) and RSS.
Target: `evcp run` idle at <= 0.5 % of a core. Machines are shared and noisy: compare the two
lines of one run, not figures across runs. `benchmarks/backlog.py` prints the same measurement
(``measure``, ``start_floor``) beside its backlog figures.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from measure import cpu_seconds, free_port

FLOOR = """
import asyncio, sys
import evcp.runtime.app, evcp.mocks.station, evcp.bench.csms  # what `evcp run` with mock hardware loads
print("ready", flush=True)
asyncio.run(asyncio.Event().wait())
"""
AFTER_REGISTRATION_S = 3.0
"""Not idle yet: the start-up StatusNotifications and the first meter reading."""


def _status_field(pid: int, name: str) -> int:
    """A field of /proc/PID/status summed over the process's threads (context switches, RSS)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(name + ":"):
                total += int(line.split()[1])
        if name == "VmRSS":
            break  # shared by the threads
    return total


class Sample:
    def __init__(self, pid: int):
        self.pid = pid
        self.cpu = cpu_seconds(pid)
        self.wakeups = _status_field(pid, "voluntary_ctxt_switches")
        self.rss_kb = _status_field(pid, "VmRSS")
        self.at = time.monotonic()


@dataclass(frozen=True)
class Usage:
    """One process over a window."""

    cpu_percent: float
    """CPU time (user + system) over the window, in % of one core."""
    wakeups_per_s: float
    """Voluntary context switches per second, all threads: each a wakeup (a timer, a frame, a thread)."""
    rss_kb: int
    """At the end of the window."""

    def __str__(self) -> str:
        return (f"CPU {self.cpu_percent:5.2f} % of a core   {self.wakeups_per_s:6.1f} wakeups/s   "
                f"RSS {self.rss_kb / 1024:5.1f} MB")


def measure(pids: Sequence[int], seconds: float) -> list[Usage]:
    """The usage of each process over the same window of ``seconds``."""
    before = [Sample(pid) for pid in pids]
    time.sleep(seconds)
    after = [Sample(pid) for pid in pids]
    return [Usage((end.cpu - start.cpu) / (end.at - start.at) * 100,
                  (end.wakeups - start.wakeups) / (end.at - start.at), end.rss_kb)
            for start, end in zip(before, after)]


def start_floor() -> subprocess.Popen:
    """The floor process (``FLOOR``), once it has imported everything and idles."""
    floor = subprocess.Popen([sys.executable, "-c", FLOOR], stdout=subprocess.PIPE, text=True)
    floor.stdout.readline()
    return floor


def start_csms() -> tuple[subprocess.Popen, str, str]:
    csms = subprocess.Popen([sys.executable, "-m", "evcp.bench.csms", "--listen", "127.0.0.1:0",
                             "--control", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    match = re.search(r"(ws://\S+) control (http://\S+)", csms.stdout.readline())
    return csms, match.group(1), match.group(2)


def start_charger(ws_url: str, work: Path, keys: str) -> tuple[subprocess.Popen, str]:
    api = f"127.0.0.1:{free_port()}"
    config = work / "evcp.toml"
    config.write_text(f'[charge_point]\nid = "CP-IDLE"\n[ocpp]\ncsms_url = "{ws_url}/ocpp"\n'
                      f'[ocpp.keys]\n{keys}\n'
                      f'[hardware]\nbackend = "mock"\n[api]\nlisten = "{api}"\n'
                      f'[storage]\nstate_dir = "{work}"\n')
    charger = subprocess.Popen([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return charger, f"http://{api}"


def wait_registered(api: str, charger: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if charger.poll() is not None:
            raise SystemExit(f"evcp run exited with status {charger.returncode}")
        try:
            with urllib.request.urlopen(api + "/api/status", timeout=2) as response:
                if json.loads(response.read())["ocpp"]["registration"] == "Accepted":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("evcp run did not register within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (default 60)")
    parser.add_argument("--keys", default="", help='extra [ocpp.keys] lines, e.g. "HeartbeatInterval = 60"')
    args = parser.parse_args()
    csms, ws_url, _ = start_csms()
    work = Path(tempfile.mkdtemp(prefix="evcp-idle-"))
    charger, api = start_charger(ws_url, work, args.keys)
    floor = start_floor()
    try:
        wait_registered(api, charger)
        time.sleep(AFTER_REGISTRATION_S)
        evcp_run, floor_usage = measure([charger.pid, floor.pid], args.seconds)
        print(f"idle for {args.seconds:.0f} s (mock hardware, connected to the bench central system, "
              "nothing plugged in):")
        print(f"  {'evcp run':<34} {evcp_run}")
        print(f"  {'floor (imports + idle asyncio loop)':<34} {floor_usage}")
        print(f"  evcp run above the floor: {evcp_run.cpu_percent - floor_usage.cpu_percent:.2f} % of a core")
    finally:
        for process in (charger, floor, csms):
            process.terminate()
        for process in (charger, floor, csms):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
