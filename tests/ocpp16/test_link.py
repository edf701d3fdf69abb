"""OCPP-J 1.6 framing: CALLERROR codes, unknown and unsupported actions, unparsable frames."""

from __future__ import annotations

import asyncio
import json

import pytest

from evcp.ocpp.trace import FrameTrace, redact
from evcp.ocpp.framing import OCPP_J_1_6
from evcp.ocpp16.link import ChargePointLink
from tests.receiver import OCPP_J_1_6_CODES, Wire, assert_valid_answer


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
    assert json.loads(OCPP_J_1_6.callerror('[4,"a","FormatViolation","",{}]'))[2] == "FormationViolation"
    assert json.loads(OCPP_J_1_6.callerror('[4,"a","OccurrenceConstraintViolation","",{}]'))[2] == \
        "OccurenceConstraintViolation"
    untouched = '[4,"a","GenericError","",{}]'
    assert OCPP_J_1_6.callerror(untouched) == untouched
    call = '[2,"a","FormatViolation",{}]'
    assert OCPP_J_1_6.callerror(call) == call


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


# --- hostile frames: one valid answer per CALL, never an exception (OCPP-J 1.6 §4) -------------

@pytest.mark.parametrize("frame, unique_id, code", [
    ('[2,17,"Heartbeat",{}]', "-1", "FormationViolation"),                # a number is not a uniqueId
    ('[2,1' + "0" * 5000 + ',"Heartbeat",{}]', "-1", "FormationViolation"),  # not even a Python int
    ('[2,null,"Heartbeat",{}]', "-1", "FormationViolation"),
    ('[2,"' + "x" * 37 + '","Heartbeat",{}]', "x" * 37, "FormationViolation"),  # §4.1.4: 36 at most
    ('[2,"a1",17,{}]', "a1", "FormationViolation"),
    ('[2,"a2","Heartbeat",[]]', "a2", "FormationViolation"),
    ('[2,"a3","Heartbeat"]', "a3", "FormationViolation"),
    ('[2,"a4","Heartbeat",{},{}]', "a4", "FormationViolation"),
    ('[2,"a5","DataTransfer",{"vendorId":' + "[" * 20 + "]" * 20 + '}]', "a5", "FormationViolation"),
    ('[2,"a6","DataTransfer",{"vendorId":' + "[" * 100_000 + "]" * 100_000 + '}]', "a6", "FormationViolation"),
    ('[2,"a7","Heartbeat",{' + "x" * 1_000_000, "a7", "FormationViolation"),
    ("[" * 100_000, "-1", "FormationViolation"),
    ('"just a string"', "-1", "ProtocolError"),
    ("[]", "-1", "ProtocolError"),
    ('[true,"a8","Heartbeat",{}]', "a8", "PropertyConstraintViolation"),
    ('[2.0,"a9","Heartbeat",{}]', "a9", "PropertyConstraintViolation"),
    ('[5,"a10"]', "a10", "PropertyConstraintViolation"),
    ("\udcff", "-1", "FormationViolation"),
])
async def test_every_hostile_call_gets_one_valid_callerror(frame, unique_id, code):
    [answer] = await exchange(frame)
    assert_valid_answer(answer, OCPP_J_1_6_CODES)
    assert answer[:3] == [4, unique_id, code]


async def test_a_binary_frame_is_read_as_utf_8_text():
    wire = Wire()
    link = ChargePointLink("CP-1", wire, FrameTrace(), response_timeout=1)
    await link.route_message(b'[2,"b1","BrewCoffee",{}]')
    await link.route_message(b'\xff\xfe')
    assert [json.loads(f)[:3] for f in wire.sent] == [[4, "b1", "NotImplemented"], [4, "-1", "FormationViolation"]]


@pytest.mark.parametrize("frame", [
    '[3,"nobody-asked",{}]', '[4,"nobody-asked","GenericError","",{}]', '[3,17,{}]', '[3,"x",[]]',
    '[4,"x","NoSuchCode"]', '[3,"x",{' + "[" * 50_000,
])
async def test_answers_to_no_outstanding_call_are_dropped_unanswered(frame):
    wire = Wire()
    link = ChargePointLink("CP-1", wire, FrameTrace(), response_timeout=1)
    await link.route_message(frame)
    assert wire.sent == []
    assert link._response_queue.empty(), "nothing is queued for a later call"


async def test_a_callerror_never_echoes_a_large_request():
    huge = "A" * 1_000_000
    [answer] = await exchange(json.dumps([2, "big", "Authorize", {"idTag": huge}]))
    assert_valid_answer(answer, OCPP_J_1_6_CODES)
    assert answer[:2] == [4, "big"] and len(json.dumps(answer)) < 1000


async def linked(timeout: float = 1.0) -> tuple[Wire, ChargePointLink, asyncio.Task]:
    wire = Wire()
    link = ChargePointLink("CP-1", wire, FrameTrace(), response_timeout=timeout)
    return wire, link, asyncio.create_task(link.start())


async def sent_call(wire: Wire) -> list:
    while not wire.sent:
        await asyncio.sleep(0)
    return json.loads(wire.sent[-1])


async def test_only_the_answer_with_the_outstanding_id_completes_a_call():
    from ocpp.v16 import call

    wire, link, receiver = await linked()
    pending = asyncio.create_task(link.call(call.Heartbeat()))
    request = await sent_call(wire)
    for stray in ('[3,"late-or-unknown",{"currentTime":"2020-01-01T00:00:00Z"}]', '[3,17,{}]', "not json"):
        await wire.inbox.put(stray)
    await wire.inbox.put(json.dumps([3, request[1], {"currentTime": "2026-01-01T00:00:00Z"}]))
    await wire.inbox.put(json.dumps([3, request[1], {"currentTime": "2027-01-01T00:00:00Z"}]))  # a repeat
    conf = await pending
    assert conf.current_time == "2026-01-01T00:00:00Z"
    await asyncio.sleep(0.01)
    assert link.answers_ignored == 3
    receiver.cancel()


@pytest.mark.parametrize("answer, code", [
    ('[4,"{id}","NoSuchCode","what",{{}}]', "GenericError"),
    ('[4,"{id}","FormatViolation","lib spelling",{{}}]', "FormationViolation"),
    ('[3,"{id}","not an object"]', "FormationViolation"),
    ('[3,"{id}",{{"currentTime":17}}]', "TypeConstraintViolation"),
])
async def test_a_broken_answer_fails_the_call_at_once_with_an_ocpp_error(answer, code):
    from ocpp.exceptions import OCPPError
    from ocpp.v16 import call

    wire, link, receiver = await linked(timeout=30)
    pending = asyncio.create_task(link.call(call.Heartbeat()))
    request = await sent_call(wire)
    await wire.inbox.put(answer.format(id=request[1]))
    with pytest.raises(OCPPError) as raised:
        await asyncio.wait_for(pending, 5)
    assert raised.value.code == code
    receiver.cancel()


async def test_no_answer_is_a_timeout_and_the_late_answer_is_dropped():
    from ocpp.v16 import call

    wire, link, receiver = await linked(timeout=0.05)
    with pytest.raises(TimeoutError):
        await link.call(call.Heartbeat())
    late = json.loads(wire.sent[-1])[1]
    await wire.inbox.put(json.dumps([3, late, {"currentTime": "2026-01-01T00:00:00Z"}]))
    await asyncio.sleep(0.01)
    assert link.answers_ignored == 1
    receiver.cancel()


def test_the_trace_keeps_a_bounded_copy_of_each_frame():
    trace = FrameTrace(size=3)
    for n in range(5):
        trace.record("in", '[2,"%d","DataTransfer",{"vendorId":"%s"}]' % (n, "v" * 1_000_000))
    _, frames = trace.since(0)
    assert len(frames) == 3 and all(len(f["frame"]) < 17_000 for f in frames)


@pytest.mark.parametrize("text", [
    "a" * 200_000,                                             # the URL pattern tried at every letter
    "x://" + "b" * 200_000,
    'AuthorizationKey "value": "' + "\\" * 200_000 + "x",      # two ways to read every backslash
    'authorizationkey ' + "'value':'" * 50_000,
])
def test_redaction_of_hostile_text_does_not_hang(text):
    import threading

    done = threading.Event()
    worker = threading.Thread(target=lambda: (redact(text), done.set()), daemon=True)
    worker.start()
    # A hang detector, not a timing: the linear scan takes milliseconds, the old patterns hours.
    assert done.wait(30), "redact() is still running"
