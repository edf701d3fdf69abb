"""Fault-injection soak: charging sessions over real processes while the charger is killed,
stopped, cut off from its central system, and restarted. Prints numbers; asserts nothing.

    python benchmarks/soak.py [--iterations 200] [--seconds 600] [--seed 1] [--verbose]

One bench central system (`python -m evcp.bench.csms`) runs for the whole soak; the charger
(`evcp run`, mock hardware) keeps its state directory across restarts. Each iteration runs one
session on connector 1 (plug in with pilot C, tap a new card, charge 0.2-3 s, tap again,
unplug) and injects one fault, chosen at random together with the moment it strikes (before the
tap, right after it, while charging, right after the stopping tap, during the unplug): SIGKILL
of the charger (a power cut), SIGTERM, the websocket dropped by the central system, the central
system offline for 1-5 s, or nothing. A killed or stopped charger is started again on the same
config and state (with a new API port). The plan is seeded; the timing of real processes is not.

At the end (queue empty, everything unplugged) it prints what the central system saw against
what was done: transactions, open ones, duplicate stops, anomalies, meterStop < meterStart,
billed energy against the simulated meter's own count (and where the meter moved between one
transaction's meterStop and the next meterStart: energy billed to nobody), PowerLoss stops that
did not follow a power cut, contactors closed without an accepted transaction (from the charger
logs), and the time from process start to the PowerLoss StopTransaction reaching the central
system after each SIGKILL. The run stops after --iterations or --seconds, whichever comes first.
Exit status is non-zero only when the soak itself could not run: it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from measure import epoch, free_port, percentiles  # this folder is on sys.path when a script runs

CP_ID = "CP-SOAK-01"
FAULTS = ("sigkill", "sigterm", "drop", "outage", "none")
MOMENTS = ("before_tap", "after_tap", "charging", "after_stop_tap", "during_unplug")
PER_KILL_WH = 7400 * 1.0 / 3600 + 0.5
"""A power cut may lose one meter poll (1 s at the simulated EV's 7.4 kW) of a session's energy."""


class Http:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str):
        return self.post(path, None)

    def post(self, path: str, body: dict | None):
        """POST body as JSON (GET when None); an HTTP error status comes back as {"http_status": N}."""
        request = urllib.request.Request(self.base + path, None if body is None else json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return {"http_status": error.code}


def wait_for(predicate, timeout: float) -> bool:
    """True once predicate() is true; False after timeout seconds (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (OSError, KeyError, IndexError, ValueError):
            pass
        time.sleep(0.05)
    return False


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = Path(tempfile.mkdtemp(prefix="evcp-soak-"))
        self.state = self.work / "state"
        self.charger: subprocess.Popen | None = None
        self.api, self.logs = Http(""), []
        self.plan: dict[str, str] = {}                      # tag -> "fault/moment" of its session
        self.faults: Counter = Counter()                    # (fault, moment) actually injected
        self.tapped, self.recovery_s = [], []  # tags tapped to start; seconds from restart to PowerLoss stop
        self.charged = self.stuck = self.unexpected_exits = self.errors = 0
        with open(self.work / "csms.log", "w") as log:  # its warnings (anomalies) go there, not to stdout
            self.csms = subprocess.Popen([sys.executable, "-m", "evcp.bench.csms", "--listen", "127.0.0.1:0",
                                          "--control", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=log, text=True)
        match = re.search(r"(ws://\S+) control (http://\S+)", self.csms.stdout.readline())
        if match is None:
            raise RuntimeError("the central system did not start")
        self.ws_url, self.control = match.group(1), Http(match.group(2))

    def start_charger(self) -> float:
        """Start `evcp run` on the same state; returns the time just before the process started."""
        port = free_port()
        config = self.work / "evcp.toml"
        config.write_text(f'[charge_point]\nid = "{CP_ID}"\n'
                          f'[ocpp]\ncsms_url = "{self.ws_url}/ocpp"\nreconnect_min_s = 0.2\n'
                          f'reconnect_max_s = 1.0\ncall_timeout_s = 5\n'
                          f'[ocpp.keys]\nMeterValueSampleInterval = 1\nConnectionTimeOut = 10\n'
                          f'[hardware]\nbackend = "mock"\n[api]\nlisten = "127.0.0.1:{port}"\n'
                          f'[storage]\nstate_dir = "{self.state}"\n[logging]\nlevel = "INFO"\n')
        log = self.work / f"charger-{len(self.logs) + 1:04d}.log"
        self.logs.append(log)
        started = time.time()
        with open(log, "w") as out:
            self.charger = subprocess.Popen([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                                            stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.api = Http(f"http://127.0.0.1:{port}")
        if not wait_for(lambda: self.charger.poll() is None and self.status()["ocpp"]["registration"] == "Accepted", 30):
            raise RuntimeError(f"the charger did not come up; see {log}")
        return started

    def status(self) -> dict:
        return self.api.get("/api/status")

    def connector(self) -> dict:
        return self.status()["connectors"][0]

    def restart_after_kill(self) -> None:
        """Start again; time process start -> PowerLoss StopTransaction received by the central system."""
        since = self.control.get("/messages?cp=-")["last_seq"]
        started = self.start_charger()
        deadline = time.monotonic() + 30
        while "with PowerLoss" in self.logs[-1].read_text() and time.monotonic() < deadline:
            for m in self.control.get(f"/messages?since={since}&cp={CP_ID}")["messages"]:
                if (m["direction"], m["message_type"], m["action"]) == ("received", "CALL", "StopTransaction") \
                        and m["payload"].get("reason") == "PowerLoss":
                    self.recovery_s.append(epoch(m["time"]) - started)
                    return
            time.sleep(0.05)

    def inject(self, fault: str, moment: str) -> bool:
        """Inject the fault now; True when the charger process was ended (and started again)."""
        self.faults[(fault, moment)] += 1
        if fault == "sigkill":
            self.charger.send_signal(signal.SIGKILL)
            self.charger.wait(10)
            self.restart_after_kill()
            return True
        if fault == "sigterm":
            self.charger.send_signal(signal.SIGTERM)
            if not wait_for(lambda: self.charger.poll() is not None, 30):
                self.unexpected_exits += 1  # counted as a problem: SIGTERM must end the charger
                self.charger.kill()
                self.charger.wait(10)
            self.start_charger()
            return True
        if fault == "drop":
            self.control.post("/disconnect", {"cp": CP_ID})
        elif fault == "outage":
            self.control.post("/policy", {"accept_connections": False})
            self.control.post("/disconnect", {"cp": CP_ID})
            time.sleep(self.rng.uniform(1.0, 5.0))
            self.control.post("/policy", {"accept_connections": True})
        return False

    def iteration(self, n: int) -> None:
        if self.charger is None or self.charger.poll() is not None:
            self.unexpected_exits += self.charger is not None  # it ended without an injected fault
            self.start_charger()
        wait_for(lambda: self.status()["ocpp"]["connected"], 15)  # no fault carried over from the last one
        fault, moment = self.rng.choice(FAULTS), self.rng.choice(MOMENTS)
        charge_s, split = self.rng.uniform(0.2, 3.0), self.rng.random()
        tag = f"SOAK{self.args.seed % 1000:03d}N{n:05d}"
        self.plan[tag] = f"{fault}/{moment}"

        def at(point: str) -> bool:
            return fault != "none" and point == moment and self.inject(fault, moment)

        pilot = lambda state: self.api.post("/api/bench/pilot", {"connector": 1, "state": state})  # noqa: E731
        self.faults[("none", "-")] += fault == "none"
        pilot("C")
        if at("before_tap"):
            return
        self.api.post("/api/bench/tag", {"id_tag": tag})
        self.tapped.append(tag)
        if at("after_tap"):
            return
        tapped = time.monotonic()
        if wait_for(lambda: (c := self.connector())["status"] == "Charging" or
                    (c["id_tag"] != tag and time.monotonic() - tapped > 2), 15) \
                and self.connector()["status"] == "Charging":
            self.charged += 1
        time.sleep(charge_s * split)
        if at("charging"):
            return
        time.sleep(charge_s * (1 - split))
        if self.connector()["id_tag"] == tag:  # a session (or its authorization) to end
            self.api.post("/api/bench/tag", {"id_tag": tag})
        if at("after_stop_tap"):
            return
        pilot("B")
        if at("during_unplug"):
            return
        pilot("A")
        if not wait_for(lambda: self.connector()["status"] == "Available", 15):
            self.stuck += 1

    def settle(self) -> None:
        """Charger running, everything unplugged, queue empty, central system caught up."""
        self.control.post("/policy", {"accept_connections": True})
        if self.charger is None or self.charger.poll() is not None:
            self.start_charger()
        self.api.post("/api/bench/pilot", {"connector": 1, "state": "A"})
        wait_for(lambda: (s := self.status())["ocpp"]["queued_messages"] == 0 and s["ocpp"]["connected"]
                 and s["connectors"][0]["status"] == "Available", 60)
        wait_for(lambda: not any(t["open"] for t in self.control.get("/transactions")["transactions"]), 15)
        self.charger.send_signal(signal.SIGTERM)  # the simulated meter writes its count on the way out
        self.charger.wait(30)

    def meter_wh(self) -> float:
        path = self.state / "simulated-meter-1.wh"  # the simulated meter's persistent count
        return float(path.read_text()) if path.exists() else 0.0

    def contactor_violations(self, accepted: set[int]) -> list[str]:
        """Each 'contactor CLOSED' must follow 'transaction N accepted' (N not stopped since) in the
        same process's log, with N accepted by the central system."""
        problems = []
        for log in self.logs:
            current = None
            for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
                if m := re.search(r"connector 1: transaction (\d+) accepted", line):
                    current = int(m.group(1))
                elif re.search(r"connector 1: transaction \S+ stopped", line):
                    current = None
                elif "connector 1: contactor CLOSED" in line:
                    if current is None or current not in accepted:
                        problems.append(f"{log.name}:{number}: CLOSED with transaction {current} "
                                        f"{'not accepted by the central system' if current else 'never accepted'}")
        return problems

    def energy_gaps(self, txs: list[dict], before: float, after: float) -> list[tuple[str, int]]:
        """Where the meter moved between a transaction's meterStop and the next meterStart (or the
        final count): no energy flows between sessions, so each gap is energy billed to nobody
        (negative: billed twice). Returns (the earlier transaction and its fault, Wh)."""
        gaps, previous, where = [], round(before), "before the first"
        for t in txs + [None]:
            start = t["meter_start"] if t else round(after)
            if start != previous:
                gaps.append((where, start - previous))
            if t is not None:
                previous = t["stop"]["meter_stop"] if t["stop"] else start
                where = f"tx {t['transaction_id']} ({self.plan.get(t['id_tag'], '?')})"
        return gaps

    def report(self, iterations: int, elapsed: float, meter_before: float, meter_after: float) -> None:
        txs = self.control.get("/transactions")["transactions"]
        anomalies = self.control.get("/anomalies")["anomalies"]
        closed = [t for t in txs if not t["open"]]
        ids = lambda keep: [t["transaction_id"] for t in txs if keep(t)]  # noqa: E731
        open_left, dup_stops = ids(lambda t: t["open"]), ids(lambda t: t["duplicate_stops"])
        negative = ids(lambda t: t["stop"] and t["stop"]["meter_stop"] < t["meter_start"])
        started = Counter(t["id_tag"] for t in txs)
        dup_starts = sorted(tag for tag, count in started.items() if count > 1)
        no_tx = Counter(self.plan[tag] for tag in self.tapped if tag not in started)
        refused = sum(count for plan, count in no_tx.items() if plan.startswith("none/"))
        unexplained = ids(lambda t: t["stop"] and t["stop"]["reason"] == "PowerLoss"
                          and not self.plan.get(t["id_tag"], "").startswith("sigkill/"))
        contactor = self.contactor_violations(set(ids(lambda t: t["id_tag_status"] == "Accepted")))
        billed, counted = sum(t["stop"]["meter_stop"] - t["meter_start"] for t in closed), meter_after - meter_before
        faults = Counter(f for (f, _) in self.faults.elements())
        tolerance = 1.0 + PER_KILL_WH * faults["sigkill"]
        gaps = self.energy_gaps(txs, meter_before, meter_after)
        unexcused = [g for g in gaps if "(sigkill/" not in g[0]]

        print(f"soak: seed {self.args.seed}, {iterations} iterations in {elapsed:.0f} s, work dir {self.work}")
        for t in txs if self.args.verbose else []:
            stop = t["stop"] or {}
            print(f"  tx {t['transaction_id']:4d} {t['id_tag']} {self.plan.get(t['id_tag'], '?')}"
                  f" meter {t['meter_start']} -> {stop.get('meter_stop')} {stop.get('reason')}, "
                  f"{t['meter_values_count']} meter values")
        print("faults injected (fault, moment, count):")
        print("\n".join(f"  {f:8s} {m:15s} {v}" for (f, m), v in sorted(self.faults.items()) if v))
        rows = [
            ("sessions started by taps", f"{len(self.tapped)}  (reached Charging {self.charged}; "
                                         f"not Available 15 s after unplug {self.stuck})"),
            ("  taps that started no transaction", f"{sum(no_tx.values())}  {dict(sorted(no_tx.items())) or ''}"),
            ("  of them in a session without a fault", f"{refused}"),
            ("transactions at the central system", f"{len(txs)}  (stop reasons "
                                                   f"{dict(sorted(Counter(t['stop']['reason'] for t in closed).items()))})"),
            ("open transactions left", f"{len(open_left)}  {open_left or ''}"),
            ("transactions closed more than once", f"{len(dup_stops)}  {dup_stops or ''}"),
            ("stops sent again, answer lost (billed once)", f"{sum(t.get('retransmitted_stops', 0) for t in txs)}"),
            ("cards with more than one start", f"{len(dup_starts)}  {dup_starts or ''}"),
            ("anomalies", f"{len(anomalies)}  {dict(Counter(a['kind'] for a in anomalies)) or ''}"),
            ("meterStop < meterStart", f"{len(negative)}  {negative or ''}"),
            ("energy billed, sum(stop - start)", f"{billed} Wh"),
            ("simulated meter count increase", f"{counted:.3f} Wh  ({meter_before:.3f} -> {meter_after:.3f})"),
            ("difference billed - counted", f"{billed - counted:+.3f} Wh  (tolerance +-{tolerance:.1f} Wh: "
                                            f"1 + {PER_KILL_WH:.1f} per SIGKILL)"),
            ("meter moved between transactions", f"{len(gaps)} times, {sum(g[1] for g in gaps):+d} Wh; "
                                                 f"not after a SIGKILL: {len(unexcused)}"),
        ]
        rows += [(f"  after {where}", f"{wh:+d} Wh") for where, wh in gaps]
        rows += [
            ("PowerLoss stops not after a SIGKILL", f"{len(unexplained)}  {unexplained or ''}"),
            ("contactor CLOSED without acceptance", f"{len(contactor)}  {'; '.join(contactor[:5])}"),
            ("charger exits not injected, SIGTERM ignored", f"{self.unexpected_exits}  (iteration errors {self.errors})"),
            ("SIGKILL: start -> PowerLoss stop received", percentiles(self.recovery_s, "s")),
        ]
        for label, value in rows:
            print(f"{label:44s} {value}")
        violations = (len(open_left) + len(dup_stops) + len(dup_starts) + len(anomalies) + len(negative)
                      + (abs(billed - counted) > tolerance) + len(unexcused) + len(unexplained) + len(contactor)
                      + refused + self.unexpected_exits)
        print(f"soak: {iterations} iterations, {faults['sigkill']} kills, {faults['sigterm']} SIGTERMs, "
              f"{faults['drop']} drops, {faults['outage']} outages, {faults['none']} without fault; "
              f"{len(txs)} transactions, {billed} Wh billed vs {counted:.1f} Wh metered; "
              f"invariant violations: {violations}", flush=True)

    def run(self) -> None:
        started = time.monotonic()
        meter_before = self.meter_wh()
        n = 0
        try:
            while n < self.args.iterations and time.monotonic() - started < self.args.seconds:
                n += 1
                try:
                    self.iteration(n)
                except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:  # counted; the soak goes on
                    self.errors += 1
                    print(f"iteration {n}: {type(error).__name__}: {error}", file=sys.stderr)
                if n % 10 == 0:
                    print(f"... {n} iterations, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            self.settle()
            self.report(n, time.monotonic() - started, meter_before, self.meter_wh())
        finally:
            for process in (self.charger, self.csms):
                if process is not None and process.poll() is None:
                    process.terminate()
                    wait_for(lambda: process.poll() is not None, 15) or process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=600.0, help="time budget for the iterations")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="also print one line per transaction")
    Soak(parser.parse_args()).run()


if __name__ == "__main__":
    main()
