"""The charger idle and with a long outage's backlog, side by side in one run. Prints numbers; asserts nothing.

    python benchmarks/backlog.py [--messages 10000] [--large 100000] [--settle 5] [--idle 30]

Machines are shared and noisy: compare the figures of one run with each other (ratios), not
with another run's. Printed, each measured on a fresh `evcp run` (mock hardware) with its own
state directory, against the bench central system (`python -m evcp.bench.csms`):

  * import floor: a Python that imported what `evcp run` with mock hardware loads and idles in
    an asyncio loop (`benchmarks/idle.py`'s floor): RSS, and its CPU share and wakeups/s over
    the same --idle window as the idle charger;
  * idle: the charger with an empty queue, offline (the central system refusing connections):
    RSS; then online, registered and idle for --idle seconds: RSS, CPU share of one core and
    wakeups/s (voluntary context switches, all threads; `benchmarks/idle.py`'s measurement),
    and its CPU above the floor's (target <= 0.5 % of a core);
  * RSS with --messages and with --large messages queued (written as `benchmarks/replay.py`
    writes them: one transaction, its StartTransaction, MeterValues, StopTransaction), offline so
    that the queue stays; each after --settle seconds;
  * replay of the --messages queue once the central system accepts the connection: messages/s
    (one message in flight, OCPP-J), the charger's and the central system's CPU per message
    (user + system, from /proc), the charger's peak RSS, and whether the central system's record
    is complete and in order;
  * the websocket round trip floor: a bare websockets echo between two processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from idle import AFTER_REGISTRATION_S, measure, start_floor, wait_registered  # noqa: E402
from measure import cpu_seconds, free_port, proc_kb  # noqa: E402
from replay import CP_ID, follow_replay, get, prefill  # noqa: E402


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


ECHO = """
import asyncio, sys, time
from websockets.asyncio.server import serve
from websockets.asyncio.client import connect
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    if sys.argv[1] == "server":
        async with serve(echo, "127.0.0.1", int(sys.argv[2])):
            print("ready", flush=True)
            await asyncio.Future()
    async with connect(f"ws://127.0.0.1:{sys.argv[2]}") as ws:
        frame = "x" * 400
        for _ in range(200):
            await ws.send(frame); await ws.recv()
        started = time.perf_counter()
        for _ in range(3000):
            await ws.send(frame); await ws.recv()
        print((time.perf_counter() - started) / 3000)
asyncio.run(main())
"""


def websocket_round_trip_ms() -> float:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", ECHO, "server", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()
        out = subprocess.run([sys.executable, "-c", ECHO, "client", str(port)], capture_output=True, text=True,
                             check=True).stdout
        return float(out) * 1000
    finally:
        server.terminate()
        server.wait(10)


class Bench:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="evcp-backlog-"))
        self.csms_log = open(self.work / "csms.log", "w")
        self.csms = subprocess.Popen([sys.executable, "-m", "evcp.bench.csms", "--listen", "127.0.0.1:0",
                                      "--control", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=self.csms_log,
                                     text=True)
        match = re.search(r"(ws://\S+) control (http://\S+)", self.csms.stdout.readline())
        if match is None:
            raise RuntimeError("the central system did not start")
        self.ws_url, self.control = match.group(1), match.group(2)
        self.runs = 0

    def accept(self, yes: bool) -> None:
        post(self.control, "/policy", {"accept_connections": yes})

    def charger(self, state: Path) -> tuple[subprocess.Popen, str]:
        self.runs += 1
        port = free_port()
        config = self.work / f"evcp-{self.runs}.toml"
        config.write_text(f'[charge_point]\nid = "{CP_ID}"\n[ocpp]\ncsms_url = "{self.ws_url}/ocpp"\n'
                          f'reconnect_min_s = 0.2\nreconnect_max_s = 0.5\n'
                          f'[ocpp.keys]\nMeterValueSampleInterval = 1\n[hardware]\nbackend = "mock"\n'
                          f'[api]\nlisten = "127.0.0.1:{port}"\n[storage]\nstate_dir = "{state}"\n'
                          f'[logging]\nlevel = "WARNING"\n')
        process = subprocess.Popen([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                                   stdout=open(self.work / f"charger-{self.runs}.log", "w"), stderr=subprocess.STDOUT)
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the charger exited ({process.returncode}); see {self.work}")
            try:
                get(api, "/api/status")
                return process, api
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the charger's API did not come up")

    def settled_rss_kb(self, process: subprocess.Popen, seconds: float) -> int:
        time.sleep(seconds)
        return proc_kb(process.pid, "VmRSS")

    def stop(self, process: subprocess.Popen) -> None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def close(self) -> None:
        self.csms.terminate()
        self.csms.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="queued messages replayed, at least 3")
    parser.add_argument("--large", type=int, default=100_000, help="queued messages for the RSS figure only")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after start before reading RSS")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle CPU and wakeups window")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up the replay after this long")
    args = parser.parse_args()
    bench = Bench()
    rows: list[tuple[str, str]] = []
    floor = start_floor()
    try:
        bench.accept(False)
        process, api = bench.charger(bench.work / "idle")
        idle_offline = bench.settled_rss_kb(process, args.settle)
        bench.accept(True)
        wait_registered(api, process)
        time.sleep(AFTER_REGISTRATION_S)
        idle, floor_idle = measure([process.pid, floor.pid], args.idle)
        bench.stop(process)
        floor.terminate()
        floor.wait(10)
        rows.append(("import floor (imports of evcp run, idle asyncio loop)", f"{floor_idle.rss_kb / 1024:7.1f} MB   "
                     f"CPU {floor_idle.cpu_percent:.2f} % of a core, {floor_idle.wakeups_per_s:.1f} wakeups/s"))
        rows.append(("RSS idle, offline, nothing queued", f"{idle_offline / 1024:7.1f} MB"))
        rows.append((f"idle, online, nothing queued, over {args.idle:.0f} s", f"{idle.rss_kb / 1024:7.1f} MB   "
                     f"CPU {idle.cpu_percent:.2f} % of a core, {idle.wakeups_per_s:.1f} wakeups/s"))
        rows.append(("  CPU above the import floor (target <= 0.5 %)",
                     f"{idle.cpu_percent - floor_idle.cpu_percent:7.2f} % of a core"))

        queued: dict[int, int] = {}
        for count in (args.messages, args.large):
            if count <= 0:
                continue
            state = bench.work / f"queued-{count}"
            prefill(state, count)
            bench.accept(False)
            process, api = bench.charger(state)
            queued[count] = bench.settled_rss_kb(process, args.settle)
            shown = get(api, "/api/status")["ocpp"]["queued_messages"]
            rows.append((f"RSS offline, {count:,} queued (status says {shown:,})",
                         f"{queued[count] / 1024:7.1f} MB   idle + {(queued[count] - idle_offline) / 1024:.1f} MB"))
            if count != args.messages:
                bench.stop(process)
                continue
            charger_cpu0, csms_cpu0 = cpu_seconds(process.pid), cpu_seconds(bench.csms.pid)
            seq = get(bench.control, f"/messages?cp={CP_ID}&since=0")["last_seq"]
            bench.accept(True)
            accepted = time.time()
            first_at, stop_at, _ = follow_replay(bench.control, seq, accepted + args.timeout, process)
            charger_cpu, csms_cpu = cpu_seconds(process.pid) - charger_cpu0, cpu_seconds(bench.csms.pid) - csms_cpu0
            peak = proc_kb(process.pid, "VmHWM")
            bench.stop(process)
            if stop_at is None or first_at is None:
                rows.append((f"replay of {count:,}", "NOT DONE (see " + str(bench.work) + ")"))
                continue
            seconds = stop_at - first_at
            rows.append((f"replay of {count:,}: StartTransaction -> StopTransaction",
                         f"{seconds:7.2f} s   {(count - 1) / seconds:7.1f} messages/s"))
            rows.append(("  CPU per message: charger / central system",
                         f"{charger_cpu / count * 1000:7.3f} ms / {csms_cpu / count * 1000:.3f} ms"))
            rows.append(("  charger peak RSS (process lifetime)", f"{peak / 1024:7.1f} MB"))
            tx = get(bench.control, f"/transactions?cp={CP_ID}")["transactions"][-1]
            complete = not tx["open"] and tx["meter_values_count"] == count - 2 and not tx["duplicate_stops"]
            stamps = [mv["meter_value"][0]["timestamp"] for mv in tx["meter_values"]]
            rows.append(("  central system's record complete / in order",
                         f"{complete} / {stamps == sorted(stamps)}"))
        rows.append(("websocket round trip floor (bare echo, two processes)",
                     f"{websocket_round_trip_ms():7.3f} ms"))
    finally:
        if floor.poll() is None:
            floor.terminate()
        bench.close()
    width = max(len(label) for label, _ in rows)
    print(f"backlog ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}):")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
