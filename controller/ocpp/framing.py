"""The OCPP-J framing of both versions on top of the ``ocpp`` library: reading a frame, whatever
the central system sends, answering every CALL exactly once, and matching answers to our calls.

The library is right about messages and wrong about framing, fixed here for OCPP-J 1.6 and 2.0.1
alike, each with its own CALLERROR vocabulary (``OcppJ``: ``OCPP_J_1_6``, ``OCPP_J_2_0_1``):
* every frame is read by ``parse_frame`` first: whatever it is (not JSON, not an array, elements
  of the wrong type, deep nesting, unknown message types), nothing raises, and every CALL gets
  exactly one answer;
* answers are matched to the one call of ours outstanding (OCPP-J §4.1.1: one at a time); an
  answer to no outstanding call (an unknown, repeated or late id) is dropped, never queued;
* CALLERROR codes are spelled as the version spells them (1.6 §4.2.3: FormationViolation,
  OccurenceConstraintViolation; 2.0.1 §4.3: FormatViolation, OccurrenceConstraintViolation),
  and a CALLERROR carries a bounded description and ``{"cause": ...}`` only, never the
  request echoed back; a schema error quotes a value up to MAX_CHECKED_STRING characters only;
* an action the version knows but the charger does not handle is NotSupported, an action the
  version does not know is NotImplemented (the library swaps them);
* a bug in handling a frame is logged with the frame's id and answered InternalError if the
  frame was a CALL; the link goes on;
* frames go to the trace log (secrets redacted), never to the main log.

What is answered (``parse_frame``), the answer's id in brackets; the codes as 1.6 / 2.0.1 name them:

* a CALL: its CALLRESULT, or the CALLERROR of its handler or its schema [its id];
* a CALL whose id has more than 36 characters, is not a string (a number, null...), or whose
  Action is not a string, or that has not 4 elements: FormationViolation / RpcFrameworkError
  [its id; "-1" when it is not a string or longer than MAX_ECHOED_ID_LENGTH];
* a CALL whose payload is not an object or is nested deeper than MAX_NESTING:
  FormationViolation / FormatViolation [its id];
* not UTF-8 text, not JSON: FormationViolation / RpcFrameworkError [the id if the text starts
  like a CALL, ``[2,"id",``, else "-1"]; not an array, or an empty one: ProtocolError /
  RpcFrameworkError ["-1"];
* an unknown MessageTypeId: PropertyConstraintViolation / MessageTypeNotSupported [its id];
  without a readable id: PropertyConstraintViolation / RpcFrameworkError ["-1"];
* a CALLRESULT or CALLERROR, well formed or not: nothing.

A frame without a usable id cannot be matched to anything by the central system (a CALLERROR
carries "the exact same id" as its CALL). It is still answered, with "-1" (OCPP-J 2.0.1 §4.2.3
makes this the rule for an unreadable messageId; 1.6 allows a CALLERROR for "content of the
call [that does] not meet the requirements for a proper message"), so the central system's log
shows that the charger could not read what it sent. Answers are never answered: two peers that
did so could trade CALLERRORs forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import websockets
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import FormatViolationError, GenericError, InternalError
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, CallResult, _validate_payload, validate_payload
from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201

from evcp.ocpp.trace import FrameTrace, RedactingLogger, shorten, trace_log
from evcp.timestamps import parse_timestamp

log = logging.getLogger("evcp.ocpp")

MAX_UNIQUE_ID_LENGTH = 36
"""OCPP-J 1.6 §4.1.4 and 2.0.1: a uniqueId (messageId) has at most 36 characters (a GUID)."""
UNREADABLE_ID = "-1"
"""The id of a CALLERROR answering a frame whose own id cannot be read."""
MAX_ECHOED_ID_LENGTH = 255
"""An over-long id is echoed in the CALLERROR up to this length, so the central system can
still match it; a longer one (a megabyte, say) counts as unreadable."""
MAX_NESTING = 16
"""Arrays and objects nested deeper than this are refused unparsed any further: no OCPP 1.6
message goes beyond 6 levels (SetChargingProfile, MeterValues), no 2.0.1 message the charger
takes beyond 11 (SetChargingProfile with a sales tariff), and a library walking a deeper one
recursively could exhaust the stack."""
MAX_ERROR_TEXT = 255
"""Characters of a CALLERROR's errorDescription and of its cause: a CALLERROR never echoes a
large request back."""
MAX_CHECKED_STRING = 10_001
"""Strings (and object keys) of a message are cut to this length before its schema check: no
OCPP 1.6 or 2.0.1 schema allows a string this long (the longest maxLength is 10,000) nor has a
pattern, so the cut message breaks exactly the rules the message breaks, and the error text,
which quotes the values, stays small however large they are."""


class RpcFrameworkError(OCPPError):
    """OCPP-J 2.0.1 §4.3: "Content of the call is not a valid RPC Request, for example: MessageId
    could not be read." (not in the ``ocpp`` library)"""

    code = "RpcFrameworkError"
    default_description = "Content of the call is not a valid RPC Request"


class MessageTypeNotSupportedError(OCPPError):
    """OCPP-J 2.0.1 §4.3: "A message with a Message Type Id received that is not supported by
    this implementation." (not in the ``ocpp`` library)"""

    code = "MessageTypeNotSupported"
    default_description = "A message with a MessageTypeId that is not supported"


@dataclass(frozen=True)
class OcppJ:
    """What differs between the OCPP-J versions in framing: the CALLERROR codes, and which code
    answers which kind of unusable frame."""

    version: str
    """As the ``ocpp`` library names it: "1.6", "2.0.1"."""
    codes: frozenset[str]
    """The only codes a CALLERROR may carry."""
    spellings: Mapping[str, str]
    """Codes of the library or of the other version that this version spells differently."""
    actions: frozenset[str]
    """Every action of the version: one outside it is NotImplemented, one in it NotSupported."""
    id_name: str
    """What the version calls the id of a message."""
    sections: Mapping[str, str]
    """Where the version states the rule a broken frame breaks: json, type, id, call, answer."""
    unparsable: str
    """The code answering a frame that is not UTF-8 text or not JSON,"""
    not_a_message: str
    """... JSON that is not an array of at least one element,"""
    unknown_type: str
    """... an unknown MessageTypeId with a readable id,"""
    unknown_type_without_id: str
    """... an unknown MessageTypeId without one,"""
    malformed_call: str
    """... a CALL with an unusable id or Action, or with other than 4 elements,"""
    malformed_payload: str
    """... and a CALL or an answer whose payload is not an object or is nested too deep."""

    def callerror(self, frame: str) -> str:
        """A CALLERROR frame as this version wants it; other frames pass unchanged.

        The code is spelled this version's way (a code it does not have becomes GenericError),
        the description is cut to MAX_ERROR_TEXT, and errorDetails keeps only its ``cause`` (cut
        too): the library puts the whole request there, which could be megabytes.
        """
        if not frame.startswith("[4"):
            return frame
        try:
            message = json.loads(frame)
            unique_id, code, description, details = message[1:5]
        except (ValueError, TypeError, RecursionError):
            return frame
        code = self.spellings.get(code, code)
        if code not in self.codes:
            description, code = f"{code}: {description}", GenericError.code
        cause = details.get("cause") if isinstance(details, dict) else None
        answer = CallError(unique_id, code, shorten(str(description or ""), MAX_ERROR_TEXT),
                           {"cause": shorten(str(cause), MAX_ERROR_TEXT)} if cause else {})
        return answer.to_json()

    def error_of(self, answer: CallError) -> OCPPError:
        """The exception a CALLERROR answer to one of our calls raises; a code this version does
        not define (or the other version's spelling of one it has) is understood too."""
        code = self.spellings.get(answer.error_code, answer.error_code)
        description = answer.error_description
        if code not in self.codes:
            description = f"{shorten(str(code), 40)}: {description}"
        error = next((e for e in _ERROR_CLASSES if e.code == code and code in self.codes), GenericError)
        return error(description=shorten(str(description), MAX_ERROR_TEXT), details=answer.error_details)

    def cite(self, rule: str) -> str:
        return f" ({self.sections[rule]})" if rule in self.sections else ""


_ERROR_CLASSES = tuple(OCPPError.__subclasses__())

OCPP_J_1_6 = OcppJ(
    version="1.6",
    # OCPP-J 1.6 §4.2.3, "Valid Error Codes".
    codes=frozenset({"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
                     "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                     "TypeConstraintViolation", "GenericError"}),
    spellings={"FormatViolation": "FormationViolation",
               "OccurrenceConstraintViolation": "OccurenceConstraintViolation"},
    actions=frozenset(action.value for action in Action16),
    id_name="UniqueId",
    sections={"json": "§4.1.2", "type": "§4.1.3", "id": "§4.1.4", "call": "§4.2.1", "answer": "§4.2"},
    unparsable="FormationViolation",
    not_a_message="ProtocolError",
    unknown_type="PropertyConstraintViolation",
    unknown_type_without_id="PropertyConstraintViolation",
    malformed_call="FormationViolation",
    malformed_payload="FormationViolation",
)

OCPP_J_2_0_1 = OcppJ(
    version="2.0.1",
    # OCPP-J 2.0.1 §4.3, "RPC Framework Error Codes".
    codes=frozenset({"FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported",
                     "NotImplemented", "NotSupported", "OccurrenceConstraintViolation",
                     "PropertyConstraintViolation", "ProtocolError", "RpcFrameworkError", "SecurityError",
                     "TypeConstraintViolation"}),
    spellings={"FormationViolation": "FormatViolation",
               "OccurenceConstraintViolation": "OccurrenceConstraintViolation"},
    actions=frozenset(action.value for action in Action201),
    id_name="MessageId",
    sections={"json": "§4.1", "type": "§4.1", "id": "§4.1", "call": "§4.2.1", "answer": "§4.2"},
    unparsable=RpcFrameworkError.code,
    not_a_message=RpcFrameworkError.code,
    unknown_type=MessageTypeNotSupportedError.code,
    unknown_type_without_id=RpcFrameworkError.code,
    malformed_call=RpcFrameworkError.code,
    malformed_payload="FormatViolation",
)


# ---------------------------------------------------------------------------------- reading frames


@dataclass(frozen=True)
class Unusable:
    """A frame that is not a well-formed CALL, CALLRESULT or CALLERROR (OCPP-J §4.2)."""

    code: str
    """The error code of the CALLERROR that answers it (or fails the call it was meant to answer)."""
    description: str
    reply_to: str | None
    """The id to answer with that CALLERROR; None: not answered (it is an answer itself)."""
    answers: str | None = None
    """For a broken CALLRESULT or CALLERROR: the id of our call it was meant to answer."""


_LOOKS_LIKE_A_CALL = re.compile(r'\s*\[\s*2\s*,\s*"([^"\\]{0,%d})"' % MAX_UNIQUE_ID_LENGTH)
_LOOKS_LIKE_AN_ANSWER = re.compile(r"\s*\[\s*[34]\s*[,\]]")


def parse_frame(raw: str | bytes, ocpp_j: OcppJ) -> Call | CallResult | CallError | Unusable:
    """What one websocket frame from the central system is (OCPP-J §4.1, §4.2). Never raises."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")  # a message is JSON text in UTF-8
        except UnicodeDecodeError:
            return Unusable(ocpp_j.unparsable, "frame is not UTF-8 text", UNREADABLE_ID)
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return _unparsable(raw, ocpp_j)
    if not isinstance(message, list) or not message:
        return Unusable(ocpp_j.not_a_message, f"a message is a JSON array [MessageTypeId, {ocpp_j.id_name}, ...]",
                        UNREADABLE_ID)
    kind = message[0]
    unique_id = message[1] if len(message) > 1 and isinstance(message[1], str) else None
    if type(kind) is not int or kind not in (2, 3, 4):
        description = f"MessageTypeId {_shown(kind)} is not 2, 3 or 4{ocpp_j.cite('type')}"
        if unique_id is not None and len(unique_id) <= MAX_ECHOED_ID_LENGTH:
            return Unusable(ocpp_j.unknown_type, description, unique_id)
        return Unusable(ocpp_j.unknown_type_without_id, description, UNREADABLE_ID)
    if kind != 2:
        return _parse_answer(kind, message, unique_id, ocpp_j)
    if unique_id is None:
        return Unusable(ocpp_j.malformed_call,
                        f"{ocpp_j.id_name} {_shown(message[1:2])} is not a string{ocpp_j.cite('id')}", UNREADABLE_ID)
    if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        return Unusable(ocpp_j.malformed_call,
                        f"{ocpp_j.id_name} longer than {MAX_UNIQUE_ID_LENGTH} characters{ocpp_j.cite('id')}",
                        unique_id if len(unique_id) <= MAX_ECHOED_ID_LENGTH else UNREADABLE_ID)
    if len(message) != 4:
        return Unusable(ocpp_j.malformed_call, f"a CALL has 4 elements, not {len(message)}{ocpp_j.cite('call')}",
                        unique_id)
    _, _, action, payload = message
    if not isinstance(action, str):
        return Unusable(ocpp_j.malformed_call, f"Action {_shown(action)} is not a string{ocpp_j.cite('call')}",
                        unique_id)
    if not isinstance(payload, dict):
        return Unusable(ocpp_j.malformed_payload, f"the payload of {shorten(action, 40)} is not a JSON object",
                        unique_id)
    if _deeper_than(payload, MAX_NESTING):
        return Unusable(ocpp_j.malformed_payload, f"the payload is nested deeper than {MAX_NESTING} levels",
                        unique_id)
    return Call(unique_id, action, payload)


def _parse_answer(kind: int, message: list, unique_id: str | None,
                  ocpp_j: OcppJ) -> CallResult | CallError | Unusable:
    name = "CALLRESULT" if kind == 3 else "CALLERROR"
    if kind == 3 and len(message) == 3 and isinstance(message[2], dict):
        if not _deeper_than(message[2], MAX_NESTING):
            return CallResult(unique_id, message[2])
    elif (kind == 4 and len(message) == 5 and isinstance(message[2], str) and isinstance(message[3], str)
          and isinstance(message[4], dict) and not _deeper_than(message[4], MAX_NESTING)):
        return CallError(unique_id, message[2], message[3], message[4])
    return Unusable(ocpp_j.malformed_payload, f"malformed {name}{ocpp_j.cite('answer')}", None, answers=unique_id)


def _unparsable(raw: str, ocpp_j: OcppJ) -> Unusable:
    head = raw[:128]
    if _LOOKS_LIKE_AN_ANSWER.match(head):
        return Unusable(ocpp_j.unparsable, "answer that is not valid JSON", None)
    call = _LOOKS_LIKE_A_CALL.match(head)
    return Unusable(ocpp_j.unparsable, f"message is not valid JSON{ocpp_j.cite('json')}",
                    call.group(1) if call else UNREADABLE_ID)


def _deeper_than(item: Any, limit: int) -> bool:
    """Whether ``item`` (from json.loads) nests arrays or objects more than ``limit`` deep; no recursion."""
    pending = [(item, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False


def _shown(value: Any) -> str:
    return shorten(json.dumps(value) if not isinstance(value, str) else repr(value), 40)


# ---------------------------------------------------------------------------------- schema checks


def check_payload(message: Call | CallResult, ocpp_j: OcppJ) -> None:
    """The library's schema check of a message of the central system (a CALL, or a CALLRESULT
    with its ``action`` set); raises its OCPPError with a bounded description and cause.

    The check runs on a copy with strings cut to MAX_CHECKED_STRING, which breaks the same rules:
    the library's error text quotes the offending value (and sometimes the whole payload) several
    times over, which for a megabyte string would cost megabytes of memory for each such frame.
    """
    cut = _strings_cut(message.payload, MAX_CHECKED_STRING)
    copy = Call(message.unique_id, message.action, cut) if isinstance(message, Call) \
        else CallResult(message.unique_id, cut, message.action)
    try:
        _validate_payload(copy, ocpp_j.version)
    except OCPPError as error:
        cause = error.details.get("cause") if isinstance(error.details, dict) else None
        raise type(error)(description=shorten(str(error.description), MAX_ERROR_TEXT),
                          details={"cause": shorten(str(cause), MAX_ERROR_TEXT)} if cause else {}) from None


def _strings_cut(item: Any, limit: int) -> Any:
    """``item`` (from json.loads, nested at most MAX_NESTING deep) with every string and key longer
    than ``limit`` cut to ``limit`` characters."""
    if isinstance(item, str):
        return item[:limit]
    if isinstance(item, dict):
        return {key[:limit]: _strings_cut(value, limit) for key, value in item.items()}
    if isinstance(item, list):
        return [_strings_cut(value, limit) for value in item]
    return item


# ---------------------------------------------------------------------------------- the link


class OcppJLink:
    """The receive path and our calls, one at a time, for the ``ocpp`` library's ChargePoint of a
    version: ``class ChargePointLink(OcppJLink, ocpp.v16.ChargePoint)`` with ``ocpp_j = OCPP_J_1_6``.

    The library's receive queue is never used: an answer goes to the call it answers or nowhere.
    """

    ocpp_j: ClassVar[OcppJ]
    station: ClassVar[str] = "charger"
    """What the version calls the charger, in the causes of NotSupported."""

    def __init__(self, identity: str, connection, trace: FrameTrace, response_timeout: float,
                 on_frame: Callable[[], None] | None = None):
        super().__init__(identity, connection, response_timeout=response_timeout,
                         logger=RedactingLogger(logging.getLogger("ocpp"), {}))
        self._trace = trace
        self._on_frame = on_frame
        self._awaiting: tuple[str, asyncio.Future] | None = None
        """The id of our call outstanding and the future its answer goes to."""
        self._unanswered: str | None = None
        """The id of the CALL being handled until its answer is sent."""
        self.answers_ignored = 0
        """CALLRESULTs and CALLERRORs that answered no call outstanding (unknown, repeated or late)."""

    async def start(self) -> None:
        """Read frames until the connection closes (its ConnectionClosed is all this raises)."""
        while True:
            await self.route_message(await self._connection.recv())

    async def route_message(self, raw_msg) -> None:
        """Answer a CALL exactly once, hand an answer to the call it answers; never raises but
        for a connection that closed."""
        message = None
        try:
            message = parse_frame(raw_msg, self.ocpp_j)
            self._unanswered = message.unique_id if isinstance(message, Call) \
                else message.reply_to if isinstance(message, Unusable) else None
            self._trace.record("in", raw_msg)
            if self._on_frame:
                self._on_frame()
            if isinstance(message, Call):
                await self._answer(message)
            elif isinstance(message, Unusable):
                if message.answers is not None:
                    self._settle(message.answers, self.ocpp_j.error_of(CallError(
                        message.answers, message.code, message.description, {"cause": "the central system's answer"})))
                if message.reply_to is not None:
                    await self._send(CallError(message.reply_to, message.code, message.description, {}).to_json())
            else:
                self._settle(message.unique_id, message)
        except websockets.ConnectionClosed:
            raise
        except Exception as error:  # noqa: BLE001 - a bug must not end the link nor leave a CALL unanswered
            frame_id = getattr(message, "unique_id", None) or getattr(message, "reply_to", None) or "?"
            log.exception("frame %s from the central system not handled", shorten(str(frame_id), 40))
            if self._unanswered is not None:
                await self._send(CallError(self._unanswered, InternalError.code, f"the {self.station} failed to handle it",
                                           {"cause": type(error).__name__}).to_json())
        finally:
            self._unanswered = None

    async def _answer(self, request: Call) -> None:
        try:
            # Sends the CALLRESULT, or the CALLERROR of an exception its handler raised.
            await self._handle_call(request)
        except OCPPError as error:
            if self._unanswered is None:
                raise  # the answer is out: an after-handler failed
            cause = error.details.get("cause") if isinstance(error.details, dict) else None
            await self._send(CallError(request.unique_id, error.code, error.description,
                                       {"cause": str(cause)} if cause else {}).to_json())

    async def _handle_call(self, msg):
        if msg.action not in self.route_map:
            if msg.action not in self.ocpp_j.actions:
                raise OcppNotImplemented(
                    details={"cause": f"{shorten(msg.action, 40)} is not an OCPP {self.ocpp_j.version} action"})
            raise NotSupportedError(details={"cause": f"{msg.action} is not supported by this {self.station}"})
        if not self.route_map[msg.action].get("_skip_schema_validation", False):
            check_payload(msg, self.ocpp_j)
        return await super()._handle_call(msg)

    def _settle(self, unique_id: str | None, outcome: CallResult | CallError | OCPPError) -> None:
        awaiting = self._awaiting
        if awaiting is None or awaiting[0] != unique_id or awaiting[1].done():
            self.answers_ignored += 1
            trace_log.debug("answer to no call outstanding ignored: %s", shorten(str(unique_id), 40))
            return
        awaiting[1].set_result(outcome)

    async def call(self, payload, suppress: bool = False, unique_id: str | None = None,
                   skip_schema_validation: bool = False):
        """Send a CALL and return its CALLRESULT as a payload object. A CALLERROR raises its
        OCPPError (never suppressed: ``suppress`` is accepted and ignored), no answer within
        the response timeout raises TimeoutError, an answer that does not fit the action's
        schema raises the schema's OCPPError."""
        action = type(payload).__name__
        request = Call(unique_id or str(uuid.uuid4()), action,
                       remove_nones(snake_to_camel_case(serialize_as_dict(payload))))
        if not skip_schema_validation:
            await validate_payload(request, self.ocpp_j.version)
        response = await self._exchange(request)
        if not skip_schema_validation:
            check_payload(response, self.ocpp_j)
        try:
            return getattr(self._call_result, action)(**camel_to_snake_case(response.payload))
        except TypeError as error:
            raise self.ocpp_j.error_of(CallError(
                request.unique_id, self.ocpp_j.malformed_payload, f"{action} answer does not fit the action",
                {"cause": str(error)})) from None

    async def call_payload(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CALL of ``action`` with a camelCase ``payload``; returns the CALLRESULT's payload.

        What ``call`` does, for messages sent back to back (a queue replayed after an outage):
        the request and the answer are checked against the version's schemas here, in the loop;
        ``call`` turns the payload into a dataclass and back and checks in a worker thread, which
        costs more than the message. Raises as ``call``.
        """
        request = Call(str(self._unique_id_generator()), action, payload)
        _validate_payload(request, self.ocpp_j.version)
        response = await self._exchange(request)
        check_payload(response, self.ocpp_j)
        return response.payload

    async def _exchange(self, request: Call) -> CallResult:
        """Send ``request`` and await the answer with its id, one CALL at a time (OCPP-J §4.1.1).
        A CALLERROR or a broken answer raises its OCPPError, no answer in the response timeout
        TimeoutError."""
        async with self._call_lock:
            answer = asyncio.get_running_loop().create_future()
            self._awaiting = (request.unique_id, answer)
            try:
                await self._send(request.to_json())
                async with asyncio.timeout(self._response_timeout):
                    response = await answer
            except TimeoutError:
                raise TimeoutError(f"no answer to {request.action} within {self._response_timeout:g} s") from None
            finally:
                self._awaiting = None
        if isinstance(response, OCPPError):
            raise response
        if isinstance(response, CallError):
            raise self.ocpp_j.error_of(response)
        response.action = request.action
        return response

    async def close_when_idle(self, reason: str, timeout: float) -> None:
        """Close the connection once no call of ours awaits its answer (at most ``timeout`` s
        from now), so the other side never has an answer of ours or to ours cut off; calls
        started meanwhile wait and then find the connection closed."""
        try:
            async with asyncio.timeout(timeout):
                await self._call_lock.acquire()
        except TimeoutError:
            await self._connection.close(1000, reason)
            return
        try:
            await self._connection.close(1000, reason)
        finally:
            self._call_lock.release()

    async def _send(self, message: str) -> None:
        message = self.ocpp_j.callerror(message)
        if message.startswith(("[3", "[4")):
            self._unanswered = None
        self._trace.record("out", message)
        await self._connection.send(message)


def request_time(text: str, field: str) -> float:
    """POSIX seconds of a dateTime field of a request; a malformed one is the sender's
    FormatViolation (spelled FormationViolation in 1.6, see the spellings above)."""
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise FormatViolationError(details={"cause": f"{field}: {error}"}) from None
