"""OCPP-J 2.0.1 framing: every hostile frame gets exactly the answer OCPP-J 2.0.1 §4 allows, in
the 2.0.1 vocabulary (§4.3), with a string id; answers go to the one call outstanding or nowhere."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from evcp.ocpp.framing import OCPP_J_2_0_1
from evcp.ocpp.trace import FrameTrace
from evcp.ocpp201.link import StationLink
from tests.receiver import OCPP_J_2_0_1_CODES, Wire, assert_valid_answer

class Station(StationLink):
    """A link with a handler for DataTransfer, as the station's own (``CsmsRequests``) has."""

    @on(Action.data_transfer)
    def _data_transfer(self, vendor_id: str, **_):
        if vendor_id == "bug":
            raise RuntimeError("a bug in a handler")
        return call_result.DataTransfer(status="UnknownVendorId")

    @after(Action.data_transfer)
    def _after_data_transfer(self, vendor_id: str, **_):
        if vendor_id == "bug-after":
            raise RuntimeError("a bug after the answer went out")


def station(timeout: float = 1.0) -> tuple[Wire, Station]:
    wire = Wire()
    return wire, Station("CS-1", wire, FrameTrace(), response_timeout=timeout)


async def exchange(frame: str | bytes) -> list:
    wire, link = station()
    await link.route_message(frame)
    return [json.loads(f) for f in wire.sent]


async def test_call_for_an_action_2_0_1_does_not_know_is_not_implemented():
    [answer] = await exchange('[2,"id-1","BrewCoffee",{}]')
    assert answer[:3] == [4, "id-1", "NotImplemented"]


async def test_call_for_a_2_0_1_action_this_station_does_not_handle_is_not_supported():
    [answer] = await exchange('[2,"id-2","GetDisplayMessages",{"requestId":1}]')
    assert answer[:3] == [4, "id-2", "NotSupported"]


async def test_a_handled_call_gets_its_callresult():
    [answer] = await exchange('[2,"id-3","DataTransfer",{"vendorId":"com.example"}]')
    assert answer == [3, "id-3", {"status": "UnknownVendorId"}]


@pytest.mark.parametrize("frame, unique_id, code", [
    ('[2,17,"Heartbeat",{}]', "-1", "RpcFrameworkError"),                  # a number is not a messageId
    ('[2,1' + "0" * 5000 + ',"Heartbeat",{}]', "-1", "RpcFrameworkError"),  # not even a Python int
    ('[2,null,"Heartbeat",{}]', "-1", "RpcFrameworkError"),
    ('[2,{"id":1},"Heartbeat",{}]', "-1", "RpcFrameworkError"),
    ('[2,"' + "x" * 37 + '","Heartbeat",{}]', "x" * 37, "RpcFrameworkError"),  # 36 characters at most
    ('[2,"' + "x" * 500_000 + '","Heartbeat",{}]', "-1", "RpcFrameworkError"),  # too long to echo
    ('[2,"a1",17,{}]', "a1", "RpcFrameworkError"),
    ('[2,"a3","Heartbeat"]', "a3", "RpcFrameworkError"),
    ('[2,"a4","Heartbeat",{},{}]', "a4", "RpcFrameworkError"),
    ('[2,"a2","Heartbeat",[]]', "a2", "FormatViolation"),
    ('[2,"a5","DataTransfer",{"vendorId":' + "[" * 20 + "]" * 20 + '}]', "a5", "FormatViolation"),
    ('[2,"a6","DataTransfer",{"vendorId":' + "[" * 100_000 + "]" * 100_000 + '}]', "a6", "RpcFrameworkError"),
    ('[2,"a7","Heartbeat",{' + "x" * 1_000_000, "a7", "RpcFrameworkError"),
    ("[" * 100_000, "-1", "RpcFrameworkError"),
    ("not json at all", "-1", "RpcFrameworkError"),
    ("\udcff", "-1", "RpcFrameworkError"),
    ('"just a string"', "-1", "RpcFrameworkError"),
    ("[]", "-1", "RpcFrameworkError"),
    ("{}", "-1", "RpcFrameworkError"),
    ('[true,"a8","Heartbeat",{}]', "a8", "MessageTypeNotSupported"),
    ('[2.0,"a9","Heartbeat",{}]', "a9", "MessageTypeNotSupported"),
    ('["2","a10","Heartbeat",{}]', "a10", "MessageTypeNotSupported"),
    ('[5,"a11"]', "a11", "MessageTypeNotSupported"),                     # 2.1's CALLRESULTERROR: not 2.0.1
    ('[6,"a12","NotifyPeriodicEventStream",{}]', "a12", "MessageTypeNotSupported"),
    ("[7]", "-1", "RpcFrameworkError"),
    ('[7,17,"Heartbeat",{}]', "-1", "RpcFrameworkError"),
])
async def test_every_hostile_call_gets_one_valid_callerror_with_a_string_id(frame, unique_id, code):
    [answer] = await exchange(frame)
    assert_valid_answer(answer, OCPP_J_2_0_1_CODES)
    assert answer[:3] == [4, unique_id, code]


async def test_a_binary_frame_is_read_as_utf_8_text():
    wire, link = station()
    await link.route_message(b'[2,"b1","BrewCoffee",{}]')
    await link.route_message(b"\xff\xfe")
    assert [json.loads(f)[:3] for f in wire.sent] == [[4, "b1", "NotImplemented"], [4, "-1", "RpcFrameworkError"]]


@pytest.mark.parametrize("payload, code", [
    ({"vendorId": "V" * 1_000_000}, "TypeConstraintViolation"),         # maxLength 255
    ({"vendorId": "v", "data": "D" * 1_000_000, "extra": 1}, "FormatViolation"),
    ({"vendorId": "v", "X" * 1_000_000: 1}, "FormatViolation"),          # a megabyte property name
    ({"vendorId": 17, "messageId": "M" * 1_000_000}, "TypeConstraintViolation"),
])
async def test_a_callerror_never_echoes_a_large_request(payload, code):
    [answer] = await exchange(json.dumps([2, "big", "DataTransfer", payload]))
    assert_valid_answer(answer, OCPP_J_2_0_1_CODES)
    assert answer[:3] == [4, "big", code]


async def test_a_large_value_the_schema_allows_is_handled_whole():
    [answer] = await exchange(json.dumps([2, "data", "DataTransfer", {"vendorId": "v", "data": "D" * 1_000_000}]))
    assert answer == [3, "data", {"status": "UnknownVendorId"}]


@pytest.mark.parametrize("frame", [
    '[3,"nobody-asked",{}]', '[4,"nobody-asked","GenericError","",{}]', '[3,17,{}]', '[3,"x",[]]',
    '[4,"x","NoSuchCode"]', '[3,"x",{' + "[" * 50_000, '[4,null,"RpcFrameworkError","",{}]', "[3]",
])
async def test_answers_to_no_outstanding_call_are_dropped_unanswered(frame):
    wire, link = station()
    await link.route_message(frame)
    assert wire.sent == []
    assert link._response_queue.empty(), "nothing is queued for a later call"


async def test_a_handler_that_fails_gets_one_internal_error_and_the_link_goes_on(caplog):
    wire, link = station()
    receiver = asyncio.create_task(link.start())
    await wire.inbox.put('[2,"h1","DataTransfer",{"vendorId":"bug"}]')
    await wire.inbox.put('[2,"h2","DataTransfer",{"vendorId":"bug-after"}]')
    await wire.inbox.put('[2,"h3","DataTransfer",{"vendorId":"fine"}]')
    while len(wire.sent) < 3:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    answers = [json.loads(f) for f in wire.sent]
    assert [a[:3] for a in answers] == [[4, "h1", "InternalError"], [3, "h2", {"status": "UnknownVendorId"}],
                                        [3, "h3", {"status": "UnknownVendorId"}]], "one answer each"
    assert not receiver.done()
    assert "frame h2 from the central system not handled" in caplog.text
    receiver.cancel()


async def test_a_bug_in_reading_a_frame_is_logged_with_its_id_answered_and_survived(caplog, monkeypatch):
    wire, link = station()

    def broken(*_):
        raise RecursionError("a bug in the link itself")

    monkeypatch.setattr(link, "_handle_call", broken)
    with caplog.at_level(logging.ERROR, "evcp.ocpp"):
        await link.route_message('[2,"r1","DataTransfer",{"vendorId":"v"}]')
    [answer] = [json.loads(f) for f in wire.sent]
    assert answer == [4, "r1", "InternalError", "the charging station failed to handle it",
                      {"cause": "RecursionError"}]
    assert "frame r1 from the central system not handled" in caplog.text


async def linked(timeout: float = 1.0) -> tuple[Wire, Station, asyncio.Task]:
    wire, link = station(timeout)
    return wire, link, asyncio.create_task(link.start())


async def sent_call(wire: Wire) -> list:
    while not wire.sent:
        await asyncio.sleep(0)
    return json.loads(wire.sent[-1])


async def test_only_the_answer_with_the_outstanding_id_completes_a_call():
    wire, link, receiver = await linked()
    pending = asyncio.create_task(link.call_payload("Heartbeat", {}))
    request = await sent_call(wire)
    for stray in ('[3,"late-or-unknown",{"currentTime":"2020-01-01T00:00:00Z"}]', '[3,17,{}]', "not json"):
        await wire.inbox.put(stray)
    await wire.inbox.put(json.dumps([3, request[1], {"currentTime": "2026-01-01T00:00:00Z"}]))
    await wire.inbox.put(json.dumps([3, request[1], {"currentTime": "2027-01-01T00:00:00Z"}]))  # a repeat
    assert await pending == {"currentTime": "2026-01-01T00:00:00Z"}
    await asyncio.sleep(0.01)
    assert link.answers_ignored == 3
    assert link._response_queue.empty()
    receiver.cancel()


@pytest.mark.parametrize("answer, code", [
    ('[4,"{id}","NoSuchCode","what",{{}}]', "GenericError"),
    ('[4,"{id}","RpcFrameworkError","could not read it",{{}}]', "RpcFrameworkError"),
    ('[4,"{id}","FormationViolation","the 1.6 spelling",{{}}]', "FormatViolation"),
    ('[4,"{id}","OccurenceConstraintViolation","the 1.6 spelling",{{}}]', "OccurrenceConstraintViolation"),
    ('[3,"{id}","not an object"]', "FormatViolation"),
    ('[3,"{id}",{{"currentTime":17}}]', "TypeConstraintViolation"),
    ('[3,"{id}",{{"currentTime":"' + "T" * 1_000_000 + '","x":1}}]', "FormatViolation"),
])
async def test_a_broken_answer_fails_the_call_at_once_with_a_2_0_1_error(answer, code):
    wire, link, receiver = await linked(timeout=30)
    pending = asyncio.create_task(link.call_payload("Heartbeat", {}))
    request = await sent_call(wire)
    await wire.inbox.put(answer.format(id=request[1]))
    with pytest.raises(OCPPError) as raised:
        await asyncio.wait_for(pending, 5)
    assert raised.value.code == code
    assert len(str(raised.value)) < 1_000, "the error quotes no megabyte"
    receiver.cancel()


async def test_no_answer_is_a_timeout_and_the_late_answer_is_dropped():
    wire, link, receiver = await linked(timeout=0.05)
    with pytest.raises(TimeoutError):
        await link.call_payload("Heartbeat", {})
    late = json.loads(wire.sent[-1])[1]
    await wire.inbox.put(json.dumps([3, late, {"currentTime": "2026-01-01T00:00:00Z"}]))
    await asyncio.sleep(0.01)
    assert link.answers_ignored == 1
    receiver.cancel()


def test_callerror_codes_are_spelled_as_ocpp_2_0_1_spells_them():
    callerror = OCPP_J_2_0_1.callerror
    assert json.loads(callerror('[4,"a","FormationViolation","",{}]'))[2] == "FormatViolation"
    assert json.loads(callerror('[4,"a","OccurenceConstraintViolation","",{}]'))[2] == "OccurrenceConstraintViolation"
    assert json.loads(callerror('[4,"a","NoSuchCode","why",{}]'))[2:4] == ["GenericError", "NoSuchCode: why"]
    for untouched in ('[4,"a","RpcFrameworkError","",{}]', '[4,"a","MessageTypeNotSupported","",{}]'):
        assert callerror(untouched) == untouched
    call = '[2,"a","FormationViolation",{}]'
    assert callerror(call) == call
