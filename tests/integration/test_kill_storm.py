"""Kill storm: the charger SIGKILLed (a power cut) at random moments of its sessions, over and
over, real processes only, in OCPP 1.6 and in OCPP 2.0.1. Seeded and bounded (8 kills): the seed
is EVCP_KILL_STORM_SEED (default 20240611) and a failing run prints it, to be replayed with
``EVCP_KILL_STORM_SEED=<seed> pytest tests/integration/test_kill_storm.py``.

Phases struck: authorizing (just after the card tap), starting (the Authorize answered, the
start on its way), charging, stopping (just after the stopping tap), and the replay of a queue
filled while the central system was away. After the storm, at the central system: every
transaction closed exactly once, none lost or stopped twice, no anomaly; 1.6: meterStop >=
meterStart, a MeterValues sent again after a kill is an identical copy; 2.0.1: one Started and
one Ended per transactionId, seqNo from 0 without gaps. And in the charger's own state
database, which the central system's record is checked against: 1.6: every transaction it
recorded reached the central system (its transactionId) and was stopped there exactly once;
2.0.1: none left open, nothing left queued.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from contextlib import closing

import pytest

from evcp.storage import FILENAME

from .test_ocpp201 import start_201

pytestmark = pytest.mark.integration

PHASES = ("authorizing", "starting", "charging", "stopping", "replaying")
KILLS = 8
SEED = int(os.environ.get("EVCP_KILL_STORM_SEED", "20240611"))
KEYS = {"MeterValueSampleInterval": 1}


def kill(charger) -> None:
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(5)


def asked_about(csms) -> set[str]:
    """The id tags the charger sent an Authorize for, either protocol."""
    return {p["idTag"] if "idTag" in p else p["idToken"]["idToken"] for p in csms.sent_by_charger("Authorize")}


def strike(phase: str, charger, csms, tag: str, rng: random.Random, wait_until) -> None:
    """Run one session on connector 1 and kill the charger in ``phase``."""
    charger.pilot("C")
    if phase == "authorizing":
        charger.tap(tag)
        time.sleep(rng.uniform(0, 0.05))
    elif phase == "starting":
        charger.tap(tag)
        wait_until(lambda: tag in asked_about(csms), 10, "Authorize")
        time.sleep(rng.uniform(0.4, 0.6))  # about 0.5 s later the start is made, sent, answered
    elif phase == "charging":
        charger.start_charging(tag)
        time.sleep(rng.uniform(0.2, 1.2))
    elif phase == "stopping":
        charger.start_charging(tag)
        time.sleep(rng.uniform(0.2, 0.6))
        charger.tap(tag)
        time.sleep(rng.uniform(0, 0.05))
    elif phase == "replaying":
        charger.start_charging(tag)
        csms.post("/policy", {"accept_connections": False})
        csms.post("/disconnect", {"cp": "CP-IT-01"})
        wait_until(lambda: not charger.status()["ocpp"]["connected"], 5, "disconnect seen")
        wait_until(lambda: charger.status()["ocpp"]["queued_messages"] >= 2, 10, "samples queued offline")
        charger.tap(tag)
        charger.wait_status("Finishing")
        connections = csms.get("/chargers")["chargers"][0]["connection_count"]
        csms.post("/policy", {"accept_connections": True})
        wait_until(lambda: csms.get("/chargers")["chargers"][0]["connection_count"] > connections, 10,
                   "reconnected")
        time.sleep(rng.uniform(0, 0.05))
    kill(charger)


def storm(charger, start, csms, wait_until):
    """Strike every phase, and random ones up to KILLS; returns the charger running after the
    last restart, with its queue delivered."""
    print(f"kill storm seed {SEED}: replay with EVCP_KILL_STORM_SEED={SEED}")
    rng = random.Random(SEED)
    plan = list(PHASES) + [rng.choice(PHASES) for _ in range(KILLS - len(PHASES))]
    rng.shuffle(plan)
    print("phases struck:", ", ".join(plan))
    for n, phase in enumerate(plan):
        strike(phase, charger, csms, f"STORM{n:03d}", rng, wait_until)
        charger = start()
        assert charger.connector()["relay_closed"] is False, "the contactor is open after a power cut"
        charger.pilot("A")
    wait_until(lambda: charger.status()["ocpp"]["queued_messages"] == 0, 30, "the queue delivered")
    return charger


def stopped_state(charger) -> sqlite3.Connection:
    """The charger stopped (SIGTERM: its state database closed cleanly), that database opened read-only."""
    charger.process.send_signal(signal.SIGTERM)
    assert charger.process.wait(15) == 0
    path = charger.config_path.parent / "state" / FILENAME
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def test_kill_storm_loses_no_transaction_and_stops_none_twice(csms, start_charger, wait_until):
    def start():
        return start_charger(keys=KEYS)

    charger = storm(start(), start, csms, wait_until)
    transactions = csms.transactions()
    assert transactions, "the storm started transactions"
    tags = Counter(tx["id_tag"] for tx in transactions)
    assert max(tags.values()) == 1, f"one transaction per session at the central system: {tags}"
    for tx in transactions:
        assert not tx["open"], f"transaction {tx['transaction_id']} ({tx['id_tag']}) was never stopped"
        assert tx["duplicate_stops"] == [], "stopped once"
        assert tx["stop"]["meter_stop"] >= tx["meter_start"]
        copies: dict[str, list] = {}
        for sample in tx["meter_values"]:
            for mv in sample["meter_value"]:
                copies.setdefault(mv["timestamp"], []).append(mv["sampled_value"])
        for stamp, values in copies.items():
            assert all(v == values[0] for v in values), f"a MeterValues sent again is the same ({stamp})"
    assert csms.get("/anomalies")["anomalies"] == []
    assert {tx["stop"]["reason"] for tx in transactions} <= {"PowerLoss", "Local"}
    assert any(tx["stop"]["reason"] == "PowerLoss" for tx in transactions)

    at_csms = {tx["transaction_id"]: tx for tx in transactions}
    with closing(stopped_state(charger)) as state:
        recorded = state.execute("SELECT local_id, id_tag, transaction_id, stopped FROM transactions").fetchall()
        queued = state.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert recorded and queued == 0
    for local_id, tag, transaction_id, stopped in recorded:
        assert transaction_id in at_csms, \
            f"the charger's transaction {local_id} ({tag}) never reached the central system (id {transaction_id})"
        assert at_csms[transaction_id]["id_tag"] == tag and stopped, f"transaction {local_id} ({tag})"
    assert sorted(row[2] for row in recorded) == sorted(at_csms), \
        "every transaction at the central system is one the charger recorded, once"


def test_kill_storm_ocpp201_ends_every_transaction_once_with_seq_nos_without_gaps(csms, start_charger, wait_until):
    def start():
        return start_201(start_charger)

    charger = start()
    answer = csms.call("SetVariables", {"setVariableData": [{
        "component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"},
        "attributeValue": "1"}]})  # kept across the restarts, like every variable the CSMS sets
    assert answer["payload"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
    charger = storm(charger, start, csms, wait_until)

    transactions = [tx for tx in csms.transactions() if tx.get("protocol") == "2.0.1"]
    assert transactions, "the storm started transactions"
    tokens = Counter(tx["id_token"]["id_token"] for tx in transactions)
    assert max(tokens.values()) == 1, f"one transaction per session at the central system: {tokens}"
    for tx in transactions:
        kinds = [event["event_type"] for event in tx["events"]]
        assert (kinds.count("Started"), kinds.count("Ended")) == (1, 1), f"{tx['transaction_id']}: {kinds}"
        assert not tx["open"]
        assert tx["seq_nos"] == list(range(len(tx["seq_nos"]))), f"{tx['transaction_id']}: {tx['seq_nos']}"
    assert csms.get("/anomalies")["anomalies"] == []
    assert {tx["stopped_reason"] for tx in transactions} <= {"PowerLoss", "Local"}
    assert any(tx["stopped_reason"] == "PowerLoss" for tx in transactions)

    with closing(stopped_state(charger)) as state:
        running = state.execute("SELECT local_id, id_tag FROM transactions WHERE NOT stopped").fetchall()
        tags = {row[0] for row in state.execute("SELECT id_tag FROM transactions")}
        queued = state.execute("SELECT count(*) FROM outbox").fetchone()[0]
        [open_201] = state.execute("SELECT body FROM documents WHERE name = 'ocpp201-transactions'").fetchone()
    assert running == [] and queued == 0 and json.loads(open_201) == {}, "nothing left open or queued"
    assert set(tokens) <= tags, "every transaction at the central system is a session the charger recorded"
