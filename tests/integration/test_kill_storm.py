"""Kill storm: the charger SIGKILLed (a power cut) at random moments of its sessions, over and
over, real processes only. Seeded and bounded (8 kills).

Phases struck: authorizing (just after the card tap), starting (the Authorize answered, the
StartTransaction on its way), charging, stopping (just after the stopping tap), and the
replay of a queue filled while the central system was away. After the storm, at the central
system: every transaction closed exactly once, none lost or stopped twice, meterStop >=
meterStart, no anomaly; a MeterValues sent again after a kill is an identical copy.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.integration

PHASES = ("authorizing", "starting", "charging", "stopping", "replaying")
KILLS = 8
SEED = 20240611
KEYS = {"MeterValueSampleInterval": 1}


def received(csms, action: str) -> list[dict]:
    return csms.sent_by_charger(action)


def kill(charger) -> None:
    charger.process.send_signal(signal.SIGKILL)
    charger.process.wait(5)


def strike(phase: str, charger, csms, tag: str, rng: random.Random, wait_until) -> None:
    """Run one session on connector 1 and kill the charger in ``phase``."""
    charger.pilot("C")
    if phase == "authorizing":
        charger.tap(tag)
        time.sleep(rng.uniform(0, 0.05))
    elif phase == "starting":
        charger.tap(tag)
        wait_until(lambda: any(p["idTag"] == tag for p in received(csms, "Authorize")), 10, "Authorize")
        time.sleep(rng.uniform(0.4, 0.6))  # about 0.5 s later the StartTransaction is made, sent, answered
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


def test_kill_storm_loses_no_transaction_and_stops_none_twice(csms, start_charger, wait_until):
    rng = random.Random(SEED)
    plan = list(PHASES) + [rng.choice(PHASES) for _ in range(KILLS - len(PHASES))]
    rng.shuffle(plan)
    charger = start_charger(keys=KEYS)
    for n, phase in enumerate(plan):
        strike(phase, charger, csms, f"STORM{n:03d}", rng, wait_until)
        charger = start_charger(keys=KEYS)
        assert charger.connector()["relay_closed"] is False, "the contactor is open after a power cut"
        charger.pilot("A")

    wait_until(lambda: charger.status()["ocpp"]["queued_messages"] == 0, 30, "the queue delivered")
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
