"""OCPP-J 1.6 framing: CALLERROR codes, unknown and unsupported actions, unparsable frames."""

from __future__ import annotations

import asyncio
import json

import pytest

from evcp.ocpp16.link import ChargePointLink, FrameTrace, redact, to_1_6_callerror


class Wire:
    """A connection whose sent frames are kept; received frames are fed in by the test."""

    def __init__(self):
        self.sent: list[str] = []
        self.inbox: asyncio.Queue[str] = asyncio.Queue()

    async def send(self, frame: str) -> None:
        self.sent.append(frame)

    async def recv(self) -> str:
        return await self.inbox.get()


async def exchange(frame: str) -> list:
    wire = Wire()
    link = ChargePointLink("CP-1", wire, FrameTrace(), response_timeout=1)
    await link.route_message(frame)
    return [json.loads(f) for f in wire.sent]


async def test_call_for_an_action_1_6_does_not_know_is_not_implemented():
    [answer] = await exchange('[2,"id-1","BrewCoffee",{}]')
    assert answer[:3] == [4, "id-1", "NotImplemented"]


async def test_call_for_a_1_6_action_this_charger_does_not_handle_is_not_supported():
    [answer] = await exchange('[2,"id-2","ReserveNow",{"connectorId":1,"expiryDate":"2030-01-01T00:00:00Z","idTag":"A","reservationId":1}]')
    assert answer[:3] == [4, "id-2", "NotSupported"]


async def test_frame_that_is_not_json_gets_a_formation_violation():
    [answer] = await exchange('[2,"id-3","Heartbeat",{')
    assert answer[0] == 4 and answer[2] == "FormationViolation"


async def test_frame_that_is_not_an_array_gets_a_protocol_error():
    [answer] = await exchange('{"hello": 1}')
    assert answer[:3] == [4, "-1", "ProtocolError"]


async def test_unknown_message_type_keeps_the_unique_id():
    [answer] = await exchange('[7,"id-4","Heartbeat",{}]')
    assert answer[:3] == [4, "id-4", "PropertyConstraintViolation"]


async def test_broken_answer_to_our_own_call_is_not_answered():
    assert await exchange('[3,"id-5"]') == []


def test_callerror_codes_are_spelled_as_ocpp_1_6_spells_them():
    assert json.loads(to_1_6_callerror('[4,"a","FormatViolation","",{}]'))[2] == "FormationViolation"
    assert json.loads(to_1_6_callerror('[4,"a","OccurrenceConstraintViolation","",{}]'))[2] == \
        "OccurenceConstraintViolation"
    untouched = '[4,"a","GenericError","",{}]'
    assert to_1_6_callerror(untouched) == untouched
    call = '[2,"a","FormatViolation",{}]'
    assert to_1_6_callerror(call) == call


@pytest.mark.parametrize("frame", [
    '[2,"x","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cret"}]',
    '[3,"x",{"configurationKey":[{"key":"AuthorizationKey","readonly":false,"value":"s3cret"}]}]',
])
def test_secrets_are_redacted_in_the_trace(frame):
    shown = redact(frame)
    assert "s3cret" not in shown and "********" in shown


def test_trace_keeps_the_newest_frames_with_sequence_numbers():
    trace = FrameTrace(size=2)
    for n in range(3):
        trace.record("out", f'[2,"{n}","Heartbeat",{{}}]')
    last, frames = trace.since(0)
    assert last == 3 and [f["seq"] for f in frames] == [2, 3]
    assert trace.since(3) == (3, [])


def test_passwords_in_file_locations_are_masked():
    frame = '[2,"7","GetDiagnostics",{"location":"ftp://evcp:s3cret-pw@files.example:21/logs/"}]'
    assert redact(frame) == '[2,"7","GetDiagnostics",{"location":"ftp://evcp:********@files.example:21/logs/"}]'
    plain = '[2,"8","UpdateFirmware",{"location":"https://files.example/fw.bin","retrieveDate":"2026-11-21T10:00:00Z"}]'
    assert redact(plain) == plain
