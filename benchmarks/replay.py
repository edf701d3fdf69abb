"""Replay rate of the charger's durable outbox after a long outage. Prints numbers; asserts nothing.

    python benchmarks/replay.py [--messages 10000] [--timeout 900]

A charger that was offline for hours during a transaction (MeterValueSampleInterval = 1) comes
back with thousands of transaction messages queued. Waiting hours for them is no benchmark, so
the script writes them itself into a fresh state database, through evcp's own StateStore, as
the charger would have: one transaction (started and stopped), its StartTransaction, then
N - 2 MeterValues (one a second, the energy register rising) and the StopTransaction, all with
transactionId null, which the charger fills in from the StartTransaction.conf.

Then it starts the bench central system and the charger (`evcp run`, mock hardware) and measures
the time from the charger's process start until the central system has received the
StopTransaction (the last message; the outbox is strictly ordered), and prints: messages,
seconds, messages/s (also counted from the StartTransaction's arrival, without the boot), the
charger's RSS at the end (from /proc), and whether the central system's record of the
transaction is complete (closed, N - 2 meter values) and in order (timestamps increasing).
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
from pathlib import Path

from evcp.ocpp16.meter_values import timestamp
from measure import epoch, free_port, proc_kb  # this folder is on sys.path when a script runs
from evcp.storage import FILENAME, StateStore

CP_ID = "CP-REPLAY-01"
TAG = "REPLAY01"
WH_PER_SAMPLE = 2  # about 7.4 kW, sampled every second


def get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=60) as response:
        return json.loads(response.read())


def follow_replay(control: str, seq: int, deadline: float, charger: subprocess.Popen):
    """Follow the central system's frame log from ``seq`` (cheap, incremental) until the
    StopTransaction arrives: (first StartTransaction at, StopTransaction at, transaction
    messages received), times in seconds since the epoch, None when not seen by ``deadline``."""
    first_at = stop_at = None
    received = 0
    while stop_at is None and time.time() < deadline and charger.poll() is None:
        answer = get(control, f"/messages?since={seq}&cp={CP_ID}")
        for m in answer["messages"]:
            if m["direction"] == "received" and m["message_type"] == "CALL":
                if m["action"] in ("StartTransaction", "MeterValues", "StopTransaction"):
                    received += 1
                if m["action"] == "StartTransaction" and first_at is None:
                    first_at = epoch(m["time"])
                elif m["action"] == "StopTransaction":
                    stop_at = epoch(m["time"])
        seq = answer["last_seq"]
        time.sleep(0.1)
    return first_at, stop_at, received


def prefill(state_dir: Path, messages: int, meter_start: int = 1000) -> None:
    """One stopped transaction and its `messages` queued messages, as a long outage leaves them."""
    samples = messages - 2
    began = time.time() - samples - 2  # the outage started that many seconds ago
    # One commit for the whole queue (the charger commits each message as it comes; only the
    # time to prepare the benchmark differs).
    with StateStore(state_dir / FILENAME) as store, store._transaction():
        local_id = store.next_local_id()
        store.transaction_started(local_id, 1, TAG, meter_start, began)
        store.outbox_put("StartTransaction", {"connectorId": 1, "idTag": TAG, "meterStart": meter_start,
                                              "timestamp": timestamp(began)}, local_id)
        for i in range(1, samples + 1):
            store.outbox_put("MeterValues", {"connectorId": 1, "transactionId": None, "meterValue": [{
                "timestamp": timestamp(began + i),
                "sampledValue": [{"value": str(meter_start + WH_PER_SAMPLE * i), "context": "Sample.Periodic",
                                  "measurand": "Energy.Active.Import.Register", "unit": "Wh",
                                  "format": "Raw", "location": "Outlet"}]}]}, local_id)
        meter_stop = meter_start + WH_PER_SAMPLE * (samples + 1)
        store.outbox_put("StopTransaction", {"transactionId": None, "meterStop": meter_stop,
                                             "timestamp": timestamp(began + samples + 1), "reason": "Local"},
                         local_id)
        store.transaction_stopped(local_id)  # stopped: not an interrupted (PowerLoss) transaction
    # The simulated meter keeps its count in the state directory, as a real meter would.
    (state_dir / "simulated-meter-1.wh").write_text(repr(float(meter_stop)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="queued messages, at least 3")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = parser.parse_args()
    if args.messages < 3:
        parser.error("--messages must be at least 3 (a start, a meter value and a stop)")
    work = Path(tempfile.mkdtemp(prefix="evcp-replay-"))
    state = work / "state"

    t = time.monotonic()
    prefill(state, args.messages)
    prefill_s = time.monotonic() - t

    with open(work / "csms.log", "w") as log:
        csms = subprocess.Popen([sys.executable, "-m", "evcp.bench.csms", "--listen", "127.0.0.1:0",
                                 "--control", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=log, text=True)
    charger = None
    try:
        match = re.search(r"(ws://\S+) control (http://\S+)", csms.stdout.readline())
        if match is None:
            raise RuntimeError("the central system did not start")
        ws_url, control = match.group(1), match.group(2)
        config = work / "evcp.toml"
        config.write_text(f'[charge_point]\nid = "{CP_ID}"\n[ocpp]\ncsms_url = "{ws_url}/ocpp"\n'
                          f'[ocpp.keys]\nMeterValueSampleInterval = 1\n[hardware]\nbackend = "mock"\n'
                          f'[api]\nlisten = "127.0.0.1:{free_port()}"\n[storage]\nstate_dir = "{state}"\n'
                          f'[logging]\nlevel = "WARNING"\n')
        started = time.time()
        charger = subprocess.Popen([sys.executable, "-m", "evcp", "run", "--config", str(config)],
                                   stdout=open(work / "charger.log", "w"), stderr=subprocess.STDOUT)

        # Follow the central system's frame log incrementally (cheap) until the StopTransaction arrives.
        first_at, stop_at, received = follow_replay(control, 0, started + args.timeout, charger)
        rss_kb, peak_kb = (proc_kb(charger.pid, "VmRSS"), proc_kb(charger.pid, "VmHWM")) \
            if charger.poll() is None else (0, 0)

        txs = get(control, f"/transactions?cp={CP_ID}")["transactions"]
        tx = txs[0] if txs else None
        stamps = [epoch(mv["meter_value"][0]["timestamp"]) for mv in tx["meter_values"]] if tx else []
        values = [float(mv["meter_value"][0]["sampled_value"][0]["value"]) for mv in tx["meter_values"]] if tx else []
        in_order = all(a < b for a, b in zip(stamps, stamps[1:])) and all(a < b for a, b in zip(values, values[1:]))
        anomalies = get(control, "/anomalies")["anomalies"]
        stray = sum(len(c["meter_values_outside_transactions"]) for c in get(control, "/chargers")["chargers"])

        print(f"replay: {args.messages} queued messages (1 StartTransaction, {args.messages - 2} MeterValues, "
              f"1 StopTransaction); prefilled in {prefill_s:.1f} s")
        if stop_at is None:
            print(f"  NOT DONE: {received} of {args.messages} transaction messages received in "
                  f"{time.time() - started:.0f} s (charger {'running' if charger.poll() is None else 'exited'}; "
                  f"log {work / 'charger.log'})")
        else:
            seconds = stop_at - started
            print(f"  charger start -> StopTransaction received   {seconds:8.2f} s   {args.messages / seconds:8.1f} "
                  f"messages/s")
            if first_at is not None and stop_at > first_at:
                print(f"  StartTransaction -> StopTransaction        {stop_at - first_at:8.2f} s   "
                      f"{(args.messages - 1) / (stop_at - first_at):8.1f} messages/s")
        print(f"  charger RSS at the end                     {rss_kb / 1024:8.1f} MB  (peak {peak_kb / 1024:.1f} MB)")
        print(f"  central system: {len(txs)} transaction(s); "
              + (f"closed: {not tx['open']}, reason {(tx['stop'] or {}).get('reason')}, "
                 f"meter values {tx['meter_values_count']} of {args.messages - 2}, "
                 f"duplicate stops {len(tx['duplicate_stops'])}" if tx else "none"))
        complete = bool(tx) and not tx["open"] and tx["meter_values_count"] == args.messages - 2
        print(f"  in order (timestamps and register increasing): {in_order}; "
              f"anomalies {len(anomalies)}; meter values outside the transaction {stray}")
        print(f"replay: {args.messages} messages, "
              + (f"{stop_at - started:.2f} s, {args.messages / (stop_at - started):.1f} messages/s"
                 if stop_at else "not finished")
              + f", RSS {rss_kb / 1024:.1f} MB, complete: {complete}, in order: {in_order}", flush=True)
    finally:
        for process in (charger, csms):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
