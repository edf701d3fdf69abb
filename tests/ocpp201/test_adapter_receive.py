"""The 2.0.1 adapter's receive path under hostile frames.

The fuzz test feeds generated frames to the CSMS link of a real 2.0.1 adapter, controller and
core (fake relay and pilot) while a transaction charges on EVSE 1: each frame gets the answers
OCPP-J 2.0.1 §4 allows, with a string id, nothing raises, and the contactor only opens when a
well-formed request that may end a transaction was accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evcp.ocpp.framing import MAX_ECHOED_ID_LENGTH, OCPP_J_2_0_1
from evcp.ocpp.trace import FrameTrace
from evcp.ocpp201.adapter import CsmsRequests
from tests.receiver import assert_valid_answer, charging_receiver, read_frame

MAY_END_A_TRANSACTION = {"Reset", "RequestStopTransaction", "ChangeAvailability", "SetChargingProfile",
                         "ClearChargingProfile", "SetVariables", "UnlockConnector"}
"""Well-formed and accepted, these may open the contactor; nothing else may."""


@pytest.fixture
def receiver(tmp_path, charging_devices):
    with charging_receiver(tmp_path, charging_devices, version="2.0.1",
                           link=lambda wire: CsmsRequests("CS-FUZZ", wire, FrameTrace(size=20),
                                                          response_timeout=0.1)) as receiver:
        yield receiver


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_every_frame_gets_the_answers_ocpp_j_2_0_1_allows_and_the_contactor_obeys_only_the_core(
        receiver, csms_request_examples_2_0_1, hostile_frames, data):
    frame = data.draw(hostile_frames(csms_request_examples_2_0_1))
    was_closed = receiver.relay.is_closed
    sent = receiver.feed(frame)

    answers = [f for f in sent if f[0] in (3, 4)]
    for answer in answers:
        assert_valid_answer(answer, OCPP_J_2_0_1.codes)
    assert all(f[0] in (2, 3, 4) for f in sent)
    message = read_frame(frame)
    is_list = isinstance(message, list) and message
    if is_list and type(message[0]) is int and message[0] == 2:
        unique_id = message[1] if len(message) > 1 else None
        readable = isinstance(unique_id, str) and len(unique_id) <= MAX_ECHOED_ID_LENGTH
        assert [a[1] for a in answers] == [unique_id if readable else "-1"], \
            "a CALL gets exactly one answer, with its messageId or -1"
    elif is_list and type(message[0]) is int and message[0] in (3, 4):
        assert answers == [], "an answer is never answered"
    else:
        text_of_an_answer = re.match(r"\s*\[\s*[34]\s*[,\]]", frame) is not None
        assert [a[0] for a in answers] == ([] if text_of_an_answer else [4]), "anything else is one CALLERROR"

    station = receiver.controller.station.connectors[1]
    assert receiver.relay.is_closed == station.relay_closed, "the contactor is what the core says"
    if was_closed and not receiver.relay.is_closed:
        assert is_list and message[2] in MAY_END_A_TRANSACTION and answers[0][0] == 3, \
            f"only an accepted request may end the transaction: {frame[:200]}"
        receiver.build()  # charge again for the next frame


def test_the_examples_sent_as_they_are_leave_the_transaction_charging_but_reset(receiver, csms_request_examples_2_0_1):
    """The fuzz test's material: each example is answered with a CALLRESULT (a valid request),
    and of them only Reset opens the contactor."""
    for action, payload in sorted(csms_request_examples_2_0_1.items()):
        [answer] = [a for a in receiver.feed(json.dumps([2, action, action, payload])) if a[0] in (3, 4)]
        assert answer[0] == 3, answer
        assert receiver.relay.is_closed == (action != "Reset"), action
        if action == "Reset":
            receiver.build()


# --- over a real websocket: the station goes on, and closes cleanly ----------------------------------


async def _registered(charger, csms) -> None:
    await csms.wait_for(lambda: charger.controller and charger.controller.adapter.registration == "Accepted"
                        or None)


async def test_a_bug_while_receiving_is_answered_internal_error_and_the_link_goes_on(csms, start_station, caplog):
    charger = await start_station(csms)
    await _registered(charger, csms)
    link = charger.controller.adapter.link
    touch = link._on_frame

    def fails_once():
        link._on_frame = touch
        raise RuntimeError("a bug while receiving")

    link._on_frame = fails_once
    request = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}
    with caplog.at_level(logging.ERROR, "evcp.ocpp"):
        assert await csms.session.send("GetVariables", request) == {"error": "InternalError"}
    assert "from the central system not handled" in caplog.text
    answer = await csms.session.send("GetVariables", request)
    assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted"
    assert csms.connections == 1 and charger.controller.adapter.link is link, "the same link goes on"
    assert not charger.task.done()


async def test_a_clean_stop_closes_the_websocket_with_1001_going_away(csms, start_station):
    """RFC 6455 §7.4.1: 1001 "going away", not 1011 (internal error)."""
    charger = await start_station(csms)
    await _registered(charger, csms)
    charger.task.cancel()
    await asyncio.gather(charger.task, return_exceptions=True)
    await csms.wait_for(lambda: csms.close_codes)
    assert csms.close_codes == [1001]


async def test_the_hand_over_to_ocpp_1_6_closes_the_websocket_with_1000(start_station):
    """ocpp.version "auto" and a CSMS that picks ocpp1.6: the 2.0.1 connection ends normally
    (1000), and the 1.6 adapter connects anew."""
    from .csms import Csms

    csms = Csms(subprotocols=("ocpp1.6",))
    await csms.start()
    try:
        charger = await start_station(csms, version="auto")
        await csms.wait_for(lambda: csms.connections >= 2)
        assert charger.controller.protocol == "1.6"
        assert csms.close_codes[0] == 1000
    finally:
        await csms.stop()
