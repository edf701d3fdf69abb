"""The adapter's receive path under hostile frames, and its link settings.

The fuzz test feeds generated frames to the central-system link of a real adapter, controller
and core (fake relay and pilot) while a session charges: each frame gets the answers OCPP-J 1.6
§4 allows, nothing raises, and the contactor only opens when a well-formed request that may
end a session was accepted.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evcp.ocpp.trace import FrameTrace
from evcp.ocpp16 import adapter as adapter_module
from evcp.ocpp16.adapter import CentralSystemLink
from tests.receiver import OCPP_J_1_6_CODES, assert_valid_answer, charging_receiver, read_frame

MAY_END_A_SESSION = {"Reset", "RemoteStopTransaction", "UnlockConnector", "ChangeAvailability",
                     "SetChargingProfile", "ChangeConfiguration"}
"""Well-formed and accepted, these may open the contactor; nothing else may."""
TRANSACTION_ID = 42


def _without_file_transfers(adapter) -> None:
    """File transfers would reach for the network: their requests are taken, not carried out."""
    adapter.firmware = SimpleNamespace(update=lambda *a: None, signed_update=lambda *a: "Accepted",
                                       status="Idle", signed_status=("Idle", None))
    adapter.logs = SimpleNamespace(get_diagnostics=lambda *a: None, get_log=lambda *a: ("Accepted", None),
                                   diagnostics_status="Idle", log_status="Idle", log_request_id=None)


@pytest.fixture
def receiver(tmp_path, monkeypatch, charging_devices):
    monkeypatch.setattr(adapter_module, "RECONNECT_GRACE_S", 0)
    with charging_receiver(tmp_path, charging_devices, version="1.6", transaction_id=TRANSACTION_ID,
                           link=lambda wire: CentralSystemLink("CP-FUZZ", wire, FrameTrace(size=20),
                                                               response_timeout=0.1),
                           prepare=_without_file_transfers) as receiver:
        yield receiver


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_every_frame_gets_the_answers_ocpp_j_allows_and_the_contactor_obeys_only_the_core(
        receiver, csms_request_examples, hostile_frames, data):
    frame = data.draw(hostile_frames(csms_request_examples))
    was_closed = receiver.relay.is_closed
    sent = receiver.feed(frame)

    answers = [f for f in sent if f[0] in (3, 4)]
    for answer in answers:
        assert_valid_answer(answer, OCPP_J_1_6_CODES)
    assert all(f[0] in (2, 3, 4) for f in sent)
    message = read_frame(frame)
    is_list = isinstance(message, list) and message
    if is_list and type(message[0]) is int and message[0] == 2 and len(message) > 1 and isinstance(message[1], str):
        echoed = message[1] if len(message[1]) <= 255 else "-1"  # a megabyte uniqueId is not echoed
        assert [a[1] for a in answers] == [echoed], "a CALL gets exactly one answer, with its uniqueId"
    elif is_list and type(message[0]) is int and message[0] in (3, 4):
        assert answers == [], "an answer is never answered"
    else:
        assert len(answers) <= 1

    station = receiver.controller.station.connectors[1]
    assert receiver.relay.is_closed == station.relay_closed, "the contactor is what the core says"
    if was_closed and not receiver.relay.is_closed:
        assert is_list and message[2] in MAY_END_A_SESSION and answers[0][0] == 3, \
            f"only an accepted request may end the session: {frame[:200]}"
        receiver.build()  # charge again for the next frame


def test_a_trigger_repeated_while_its_message_is_under_way_is_rejected(receiver):
    adapter = receiver.controller.adapter
    answered = asyncio.Event()
    heartbeats = []

    async def unanswered_call(payload):  # the central system takes its time to answer
        heartbeats.append(payload)
        await answered.wait()
        return SimpleNamespace(current_time="2026-01-01T00:00:00Z")

    adapter._call = unanswered_call
    trigger = lambda n: receiver.feed(json.dumps(  # noqa: E731
        [2, f"t{n}", "TriggerMessage", {"requestedMessage": "Heartbeat"}]))[0][2]["status"]
    assert [trigger(n) for n in range(5)] == ["Accepted"] + ["Rejected"] * 4
    assert len(heartbeats) == 1, "one Heartbeat under way, not five"
    answered.set()
    receiver.feed("[3,\"nobody-asked\",{}]")  # lets the loop finish the Heartbeat
    assert trigger(5) == "Accepted" and len(heartbeats) == 2


@pytest.mark.parametrize("interval, expected", [(5, (5, 5)), (30, (30, 30)), (0, (None, None))])
def test_a_pong_is_due_within_the_ping_interval(receiver, interval, expected):
    adapter = receiver.controller.adapter
    adapter.configuration.set_internal("WebSocketPingInterval", str(interval))
    assert adapter._keepalive() == expected
