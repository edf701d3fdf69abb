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
lines of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLOOR = """
import asyncio, sys
import evcp.runtime.app, evcp.mocks.station, evcp.bench.csms  # what `evcp run` with mock hardware loads
print("ready", flush=True)
asyncio.run(asyncio.Event().wait())
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def report(name: str, start: Sample, end: Sample) -> str:
    elapsed = end.at - start.at
    share = (end.cpu - start.cpu) / elapsed * 100
    wakeups = (end.wakeups - start.wakeups) / elapsed
    return f"  {name:<34} CPU {share:5.2f} % of a core   {wakeups:6.1f} wakeups/s   RSS {end.rss_kb / 1024:5.1f} MB"


def start_csms() -> tuple[subprocess.Popen, str, str]:
    csms = subprocess.Popen([sys.executable, "-m", "evcp.bench.csms", "--listen", "127.0.0.1:0",
                             "--control", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    match = re.search(r"(ws://\S+) control (http://\S+)", csms.stdout.readline())
    return csms, match.group(1), match.group(2)


def start_charger(ws_url: str, work: Path, keys: str) -> tuple[subprocess.Popen, str]:
    api = f"127.0.0.1:{_free_port()}"
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
    floor = subprocess.Popen([sys.executable, "-c", FLOOR], stdout=subprocess.PIPE, text=True)
    try:
        floor.stdout.readline()
        wait_registered(api, charger)
        time.sleep(3)  # the start-up StatusNotifications and the first meter reading are not idle
        before = Sample(charger.pid), Sample(floor.pid)
        time.sleep(args.seconds)
        after = Sample(charger.pid), Sample(floor.pid)
        print(f"idle for {args.seconds:.0f} s (mock hardware, connected to the bench central system, "
              "nothing plugged in):")
        print(report("evcp run", before[0], after[0]))
        print(report("floor (imports + idle asyncio loop)", before[1], after[1]))
        net = ((after[0].cpu - before[0].cpu) - (after[1].cpu - before[1].cpu)) / (after[0].at - before[0].at) * 100
        print(f"  evcp run above the floor: {net:.2f} % of a core")
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
