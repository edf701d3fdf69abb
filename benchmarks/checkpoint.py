"""What keeping transactions out of reach of a damaged write-ahead log costs. Prints numbers; asserts nothing.

    python benchmarks/checkpoint.py [--sessions 200] [--samples 60] [--dir DIR]

The state database checkpoints (``PRAGMA wal_checkpoint(TRUNCATE)``) after each write of a
transaction fact, never after a meter sample (evcp.storage). This writes --sessions charging
sessions through evcp's own StateStore as the charger does: the transaction started, its
StartTransaction queued then confirmed, --samples meter samples (the reading and its
MeterValues queued, then deleted once delivered, as online), the StopTransaction queued then
delivered. Printed, p50 / p99 in ms: a meter sample's writes, a transaction fact's write with
its checkpoint, the bare checkpoint of a session's samples (the log holding them, before the
stop), and per session the time in transaction facts beside the time in all writes.

--dir puts the database on the storage to measure (the SD card of a Pi); default: a temporary
directory. Figures depend on the storage's fsync: compare lines of one run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from evcp.storage import FILENAME, StateStore
from measure import percentiles  # this folder is on sys.path when a script runs


def ms(samples_s: list[float]) -> str:
    return percentiles([s * 1000 for s in samples_s])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--samples", type=int, default=60, help="meter samples per session")
    parser.add_argument("--dir", type=Path, default=None, help="where the database is made (default: a temp dir)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="evcp-checkpoint-", dir=args.dir))
    sample_writes: list[float] = []
    fact_writes: list[float] = []
    bare_checkpoints: list[float] = []
    sessions: list[tuple[float, float]] = []

    def timed(into: list[float], write) -> float:
        began = time.perf_counter()
        result = write()
        into.append(time.perf_counter() - began)
        return result

    with StateStore(directory / FILENAME) as store:
        for session in range(args.sessions):
            facts_before, samples_before = len(fact_writes), len(sample_writes)
            local_id = store.next_local_id()
            timed(fact_writes, lambda: store.transaction_started(local_id, 1, "BENCH001", 1000, time.time()))
            start = timed(fact_writes, lambda: store.outbox_put("StartTransaction", {"connectorId": 1}, local_id))
            timed(fact_writes, lambda: store.outbox_start_confirmed(start, local_id, 1000 + session))
            for n in range(args.samples):
                def sample() -> None:
                    store.meter_reading(1, 1000.0 + n, time.time())
                    seq = store.outbox_put("MeterValues", {"connectorId": 1, "transactionId": 1000 + session,
                                                           "meterValue": [{"n": n}]}, local_id, checkpoint=False)
                    store.outbox_done_through(seq, checkpoint=False)
                timed(sample_writes, sample)
            timed(bare_checkpoints, store._checkpoint)
            stop = timed(fact_writes, lambda: store.outbox_put_stop({"transactionId": 1000 + session,
                                                                      "meterStop": 2000}, local_id))
            timed(fact_writes, lambda: store.outbox_done_through(stop))
            sessions.append((sum(fact_writes[facts_before:]), sum(sample_writes[samples_before:])))
    shutil.rmtree(directory)
    facts_per_session = len(fact_writes) // args.sessions
    in_facts = statistics.median(facts for facts, _ in sessions)
    in_writes = statistics.median(facts + samples for facts, samples in sessions)
    rows = [("a meter sample's writes (reading, MeterValues; no checkpoint)", ms(sample_writes)),
            (f"a transaction fact's write with its checkpoint ({facts_per_session} a session)", ms(fact_writes)),
            ("bare checkpoint (TRUNCATE) of a session's samples", ms(bare_checkpoints))]
    width = max(len(label) for label, _ in rows)
    print(f"state database checkpoints ({args.sessions} sessions of {args.samples} samples, in {directory.parent}):")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print(f"  per session (p50): {in_facts * 1000:.2f} ms in transaction facts of {in_writes * 1000:.2f} ms in all writes")

if __name__ == "__main__":
    main()
