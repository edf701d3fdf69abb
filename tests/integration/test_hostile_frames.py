"""A central system that sends hostile frames to a charging `evcp run` (mock hardware).

Bursts of malformed frames arrive over the real websocket while a session charges: every CALL
gets exactly one valid OCPP-J 1.6 answer (OCPP-J §4.2) with its uniqueId, or "-1" where it has
none that can be echoed; answers to nothing are dropped unanswered; the process stays up, the
contactor stays closed, meter values keep flowing, memory does not grow from burst to burst,
and the session then stops cleanly.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CP = "CP-IT-01"
OCPP_J_1_6_CODES = {"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
                    "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                    "TypeConstraintViolation", "GenericError"}
MEGABYTE_TEXT = "X" * 1_000_000
"""Fits the charger's websocket max_size (1 MiB) with the rest of a frame."""
BURSTS = 5
ENDS_A_SESSION_WHEN_VALID = {"Reset"}
"""Of tests/conftest.py's examples, only a valid Reset stops the session: it is sent broken only."""


def call(action: str, payload, unique_id: str | None = None) -> tuple[str, str]:
    unique_id = unique_id or str(uuid.uuid4())
    return json.dumps([2, unique_id, action, payload]), unique_id


def fuzzed_calls(examples: dict[str, dict]) -> list[tuple[str, str, set[str] | None]]:
    """(frame, uniqueId of its answer, the CALLERROR codes allowed or None for any answer)."""
    cases = []
    for action, example in sorted(examples.items()):
        for field in example:
            wrong_type = {**example, field: {"not": ["what", "the", "schema", "says"]}}
            cases.append((*call(action, wrong_type), {"TypeConstraintViolation", "FormationViolation"}))
            missing = {k: v for k, v in example.items() if k != field}
            cases.append((*call(action, missing), None))
            huge = {**example, field: MEGABYTE_TEXT}
            cases.append((*call(action, huge), None))
        if action not in ENDS_A_SESSION_WHEN_VALID:
            cases.append((*call(action, {**example, "vendorExtension": [1, 2, 3]}), None))
    reset_kind, reset_id = call("Reset", {"type": "Sideways"})
    cases.append((reset_kind, reset_id, {"PropertyConstraintViolation", "TypeConstraintViolation",
                                         "FormationViolation"}))
    return cases


def malformed_frames(answered_ids: list[str]) -> list[tuple[str, str | None, set[str] | None]]:
    """(frame, uniqueId of the one answer it gets or None for none, the codes allowed)."""
    formation = {"FormationViolation"}
    deep = "[" * 100_000 + "]" * 100_000
    duplicate = str(uuid.uuid4())
    frames = [
        ('[2,17,"Heartbeat",{}]', "-1", formation),                     # a number is not a uniqueId
        ('[2,null,"Heartbeat",{}]', "-1", formation),
        ('[2,{"id":1},"Heartbeat",{}]', "-1", formation),
        ('[2,"' + "i" * 37 + '","Heartbeat",{}]', "i" * 37, formation),  # §4.1.4: at most 36 characters
        ('[2,"' + "i" * 500_000 + '","Heartbeat",{}]', "-1", formation),
        ('[2,"t1",17,{}]', "t1", formation),
        ('[2,"t2","Heartbeat",[]]', "t2", formation),
        ('[2,"t3","Heartbeat"]', "t3", formation),
        ('[2,"t4","DataTransfer",{"vendorId":' + deep + '}]', "t4", formation),
        ('[2,"t5","Heartbeat",{"unterminated', "t5", formation),
        ("[" * 200_000, "-1", formation),
        ("not json at all", "-1", formation),
        ('"a string"', "-1", {"ProtocolError"}),
        ("[]", "-1", {"ProtocolError"}),
        ("{}", "-1", {"ProtocolError"}),
        ('[7,"t6",{}]', "t6", {"PropertyConstraintViolation"}),
        ('["2","t7","Heartbeat",{}]', "t7", {"PropertyConstraintViolation"}),
        ('[2,"t8","BrewCoffee",{}]', "t8", {"NotImplemented"}),
        ('[2,"t9","BootNotification",{"chargePointVendor":"x","chargePointModel":"y"}]', "t9", {"NotSupported"}),
        (f'[2,"{duplicate}","GetLocalListVersion",{{}}]', duplicate, None),
        (f'[2,"{duplicate}","GetLocalListVersion",{{}}]', duplicate, None),   # the same id again
        ('[3,"nobody-asked",{}]', None, None),
        ('[4,"nobody-asked","GenericError","",{}]', None, None),
        ('[3,17,{}]', None, None),
        ('[4,"x","NoSuchCode"]', None, None),
        ('[3,"x",{' + deep, None, None),
    ]
    for answered in answered_ids:  # late and repeated answers to the charger's own calls
        frames.append((json.dumps([3, answered, {"idTagInfo": {"status": "Blocked"}, "transactionId": 666}]),
                       None, None))
        frames.append((json.dumps([4, answered, "InternalError", "late", {}]), None, None))
    return frames


def answers_from(csms, since: int) -> list[list]:
    """CALLRESULTs and CALLERRORs the charger sent after ``since``, in order."""
    found = []
    for message in csms.messages(since):
        if message["direction"] != "received":
            continue
        frame = json.loads(message["raw"])
        if frame[0] in (3, 4):
            found.append(frame)
    return found


def assert_valid_answer(answer: list) -> None:
    assert isinstance(answer[1], str), answer
    if answer[0] == 3:
        assert len(answer) == 3 and isinstance(answer[2], dict), answer
    else:
        assert len(answer) == 5 and answer[2] in OCPP_J_1_6_CODES, answer
        assert isinstance(answer[3], str) and isinstance(answer[4], dict), answer
        assert len(json.dumps(answer)) < 2_000, "a CALLERROR never echoes the request back"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def meter_values_count(csms) -> int:
    return sum(t["meter_values_count"] for t in csms.transactions())


def send_burst(csms, charger, wait_until, examples: dict[str, dict]) -> None:
    """One burst of every kind of hostile frame; checks the answers."""
    own_calls = [m["unique_id"] for m in csms.messages()
                 if m["direction"] == "received" and m["message_type"] == "CALL"][-5:]
    cases = fuzzed_calls(examples) + malformed_frames(own_calls)
    since = csms.get("/messages?since=0")["last_seq"]
    for start in range(0, len(cases), 5):  # several 1 MB frames a request
        reply = csms.post("/raw", {"cp": CP, "frames": [frame for frame, _, _ in cases[start:start + 5]]})
        assert "last_seq" in reply, reply
    expected = [(unique_id, codes) for _, unique_id, codes in cases if unique_id is not None]
    answers = wait_until(lambda: len(a := answers_from(csms, since)) >= len(expected) and a, 60,
                         f"{len(expected)} answers")
    assert charger.process.poll() is None, "the charger is still running"
    for answer in answers:
        assert_valid_answer(answer)
    assert [a[1] for a in answers] == [unique_id for unique_id, _ in expected], \
        "each CALL answered exactly once, in order, nothing else answered"
    for answer, (_, codes) in zip(answers, expected):
        if codes is not None:
            assert answer[0] == 4 and answer[2] in codes, answer


def test_a_burst_of_hostile_frames_while_charging_leaves_the_session_charging(csms, start_charger, wait_until,
                                                                              csms_request_examples):
    charger = start_charger(keys={"MeterValueSampleInterval": 1})
    charger.start_charging("04A1B2C3")
    tx_id = charger.connector()["transaction_id"]
    wait_until(lambda: meter_values_count(csms) >= 1, 15, "meter values")
    rss_idle = rss_mb(charger.process.pid)
    rss = []
    for _ in range(BURSTS):
        send_burst(csms, charger, wait_until, csms_request_examples)
        rss.append(rss_mb(charger.process.pid))
    # Each 1 MB frame costs ~12 MB for a moment (schema errors quote the value), and the allocator
    # keeps what it freed: RSS settles well above idle, then stays there. A leak of only 100 kB per
    # frame would add ~25 MB a burst.
    assert max(rss) < rss_idle + 80, f"RSS {rss_idle:.1f} MB idle, {rss} after the bursts"
    assert rss[-1] < rss[0] + 25, f"RSS grows from burst to burst: {rss}"

    connector = charger.connector()
    assert connector["status"] == "Charging" and connector["relay_closed"] is True
    assert connector["transaction_id"] == tx_id
    assert charger.status()["ocpp"]["connected"]
    flowing = meter_values_count(csms)
    wait_until(lambda: meter_values_count(csms) >= flowing + 2, 15, "meter values still flowing")

    assert csms.call("RemoteStopTransaction", {"transactionId": tx_id})["payload"] == {"status": "Accepted"}
    charger.wait_status("Finishing")
    assert charger.connector()["relay_closed"] is False
    [tx] = wait_until(lambda: [t for t in csms.transactions() if not t["open"]], 10, "StopTransaction")
    assert tx["transaction_id"] == tx_id and tx["stop"]["reason"] == "Remote"
    assert csms.get("/anomalies")["anomalies"] == []
    charger.process.send_signal(signal.SIGTERM)
    assert charger.process.wait(30) == 0
    log = charger.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a_frame_over_the_size_limit_closes_the_connection_and_the_session_goes_on(csms, start_charger,
                                                                                   wait_until):
    """RFC 6455 §7.4.1 1009: the charger refuses a message over 1 MiB by closing, then reconnects."""
    charger = start_charger(keys={"MeterValueSampleInterval": 1})
    charger.start_charging("04A1B2C3")
    connections = csms.get("/chargers")["chargers"][0]["connection_count"]
    oversize, _ = call("DataTransfer", {"vendorId": "v", "data": "X" * 1_100_000})
    csms.post("/raw", {"cp": CP, "frames": [oversize]})
    wait_until(lambda: csms.get("/chargers")["chargers"][0]["connection_count"] > connections, 20, "reconnected")
    wait_until(lambda: charger.status()["ocpp"]["connected"], 10, "charger online again")
    assert charger.process.poll() is None
    connector = charger.connector()
    assert connector["status"] == "Charging" and connector["relay_closed"] is True
    flowing = meter_values_count(csms)
    wait_until(lambda: meter_values_count(csms) >= flowing + 2, 15, "meter values flowing after the reconnection")
