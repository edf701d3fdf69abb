"""The OCPP-J 1.6 framing layer on top of the ``ocpp`` library.

The library is right about messages and wrong about a few 1.6 details, fixed here:
* every frame is read by ``parse_frame`` first: whatever the central system sends (not JSON,
  not an array, elements of the wrong type, deep nesting, unknown message types), nothing
  raises, and every CALL gets exactly one answer (OCPP-J 1.6 §4.2);
* answers are matched to the one call of ours outstanding (§4.1.1: one at a time); an answer
  to no outstanding call (an unknown, repeated or late uniqueId) is dropped, never queued;
* CALLERROR codes are spelled as OCPP-J 1.6 §4.2.3 spells them
  (FormationViolation, OccurenceConstraintViolation), and a CALLERROR carries a bounded
  description and ``{"cause": ...}`` only, never the request echoed back;
* an action 1.6 knows but this charger does not handle is NotSupported, an
  action 1.6 does not know is NotImplemented (§4.2.3; the library swaps them);
* frames go to the trace log (secrets redacted), never to the main log; the library's
  own log lines, which quote messages, have their secrets redacted and their length bounded.

What is answered (``parse_frame``), the answer's uniqueId in brackets:

* a CALL: its CALLRESULT, or the CALLERROR of its handler or its schema [its id];
* a CALL whose uniqueId has more than 36 characters (§4.1.4), whose Action is not a string,
  whose payload is not an object or is nested deeper than MAX_NESTING, or that has not 4
  elements (§4.2.1): CALLERROR FormationViolation [its id; "-1" beyond MAX_ECHOED_ID_LENGTH];
* not JSON (§4.1.2): CALLERROR FormationViolation [the id if the text starts like a CALL,
  ``[2,"id",``, else "-1"]; not an array, or an empty one: ProtocolError ["-1"];
* a CALL whose uniqueId is not a string (a number, null...): FormationViolation ["-1"];
* an unknown MessageTypeId (§4.1.3): PropertyConstraintViolation [its id, or "-1"];
* a CALLRESULT or CALLERROR, well formed or not: nothing.

A frame without a usable uniqueId cannot be matched to anything by the central system (§4.2.3:
a CALLERROR carries "the exact same id" as its CALL). It is still answered, with "-1" (the
value OCPP 2.0.1 §4.2.3 later made the rule for an unreadable messageId), so the central
system's log shows that the charger could not read what it sent; 1.6 allows a CALLERROR for
"content of the call [that does] not meet the requirements for a proper message". Answers are
never answered: two peers that did so could trade CALLERRORs forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import websockets
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import FormationViolationError, GenericError, InternalError, NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, CallResult, _validate_payload, validate_payload
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import Action

from evcp.ocpp.trace import FrameTrace, RedactingLogger, shorten, trace_log

log = logging.getLogger("evcp.ocpp")

ERROR_CODES_1_6 = frozenset({
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError", "FormationViolation",
    "PropertyConstraintViolation", "OccurenceConstraintViolation", "TypeConstraintViolation", "GenericError",
})
"""OCPP-J 1.6 §4.2.3, "Valid Error Codes": the only codes a CALLERROR may carry."""

#: The ``ocpp`` library's codes that OCPP-J 1.6 spells differently.
CALLERROR_CODES_1_6 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}

MAX_UNIQUE_ID_LENGTH = 36
"""OCPP-J 1.6 §4.1.4: a uniqueId has at most 36 characters (a GUID)."""
UNREADABLE_ID = "-1"
"""The uniqueId of a CALLERROR answering a frame whose own uniqueId cannot be read."""
MAX_ECHOED_ID_LENGTH = 255
"""An over-long uniqueId is echoed in the CALLERROR up to this length, so the central system can
still match it; a longer one (a megabyte, say) counts as unreadable."""
MAX_NESTING = 16
"""Arrays and objects nested deeper than this are refused unparsed any further: no OCPP 1.6
message goes beyond 6 levels (SetChargingProfile, MeterValues), and a library walking a deeper
one recursively could exhaust the stack."""
MAX_ERROR_TEXT = 255
"""Characters of a CALLERROR's errorDescription and of its cause: a CALLERROR never echoes a
large request back."""
def to_1_6_callerror(frame: str) -> str:
    """A CALLERROR frame as OCPP-J 1.6 §4.2.3 wants it; other frames pass unchanged.

    The code is spelled the 1.6 way (a code 1.6 does not have becomes GenericError), the
    description is cut to MAX_ERROR_TEXT, and errorDetails keeps only its ``cause`` (cut too):
    the library puts the whole request there, which could be megabytes.
    """
    if not frame.startswith("[4"):
        return frame
    try:
        message = json.loads(frame)
        unique_id, code, description, details = message[1:5]
    except (ValueError, TypeError, RecursionError):
        return frame
    code = CALLERROR_CODES_1_6.get(code, code)
    if code not in ERROR_CODES_1_6:
        description, code = f"{code}: {description}", "GenericError"
    cause = details.get("cause") if isinstance(details, dict) else None
    answer = CallError(unique_id, code, shorten(str(description or ""), MAX_ERROR_TEXT),
                       {"cause": shorten(str(cause), MAX_ERROR_TEXT)} if cause else {})
    return answer.to_json()


# ---------------------------------------------------------------------------------- reading frames


@dataclass(frozen=True)
class Unusable:
    """A frame that is not a well-formed CALL, CALLRESULT or CALLERROR (OCPP-J 1.6 §4.2)."""

    code: str
    """The OCPP-J 1.6 error code of the CALLERROR that answers it."""
    description: str
    reply_to: str | None
    """The uniqueId to answer with that CALLERROR; None: not answered (it is an answer itself)."""
    answers: str | None = None
    """For a broken CALLRESULT or CALLERROR: the uniqueId of our call it was meant to answer."""


_LOOKS_LIKE_A_CALL = re.compile(r'\s*\[\s*2\s*,\s*"([^"\\]{0,%d})"' % MAX_UNIQUE_ID_LENGTH)
_LOOKS_LIKE_AN_ANSWER = re.compile(r"\s*\[\s*[34]\s*[,\]]")


def parse_frame(raw: str | bytes) -> Call | CallResult | CallError | Unusable:
    """What one websocket frame from the central system is (OCPP-J 1.6 §4.1, §4.2). Never raises."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")  # §4.1.2: a message is JSON text in UTF-8
        except UnicodeDecodeError:
            return Unusable("FormationViolation", "frame is not UTF-8 text", UNREADABLE_ID)
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return _unparsable(raw)
    if not isinstance(message, list) or not message:
        return Unusable("ProtocolError", "a message is a JSON array [MessageTypeId, UniqueId, ...]", UNREADABLE_ID)
    kind = message[0]
    unique_id = message[1] if len(message) > 1 and isinstance(message[1], str) else None
    if type(kind) is not int or kind not in (2, 3, 4):
        usable = unique_id is not None and len(unique_id) <= MAX_ECHOED_ID_LENGTH
        return Unusable("PropertyConstraintViolation", f"MessageTypeId {_shown(kind)} is not 2, 3 or 4 (§4.1.3)",
                        unique_id if usable else UNREADABLE_ID)
    if kind != 2:
        return _parse_answer(kind, message, unique_id)
    if unique_id is None:
        return Unusable("FormationViolation", f"UniqueId {_shown(message[1:2])} is not a string (§4.1.4)",
                        UNREADABLE_ID)
    if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        return Unusable("FormationViolation", f"UniqueId longer than {MAX_UNIQUE_ID_LENGTH} characters (§4.1.4)",
                        unique_id if len(unique_id) <= MAX_ECHOED_ID_LENGTH else UNREADABLE_ID)
    if len(message) != 4:
        return Unusable("FormationViolation", f"a CALL has 4 elements, not {len(message)} (§4.2.1)", unique_id)
    _, _, action, payload = message
    if not isinstance(action, str):
        return Unusable("FormationViolation", f"Action {_shown(action)} is not a string (§4.2.1)", unique_id)
    if not isinstance(payload, dict):
        return Unusable("FormationViolation", f"the payload of {shorten(action, 40)} is not a JSON object",
                        unique_id)
    if _deeper_than(payload, MAX_NESTING):
        return Unusable("FormationViolation", f"the payload is nested deeper than {MAX_NESTING} levels", unique_id)
    return Call(unique_id, action, payload)


def _parse_answer(kind: int, message: list, unique_id: str | None) -> CallResult | CallError | Unusable:
    name = "CALLRESULT" if kind == 3 else "CALLERROR"
    if kind == 3 and len(message) == 3 and isinstance(message[2], dict):
        if not _deeper_than(message[2], MAX_NESTING):
            return CallResult(unique_id, message[2])
    elif (kind == 4 and len(message) == 5 and isinstance(message[2], str) and isinstance(message[3], str)
          and isinstance(message[4], dict) and not _deeper_than(message[4], MAX_NESTING)):
        return CallError(unique_id, message[2], message[3], message[4])
    return Unusable("FormationViolation", f"malformed {name} (§4.2)", None, answers=unique_id)


def _unparsable(raw: str) -> Unusable:
    head = raw[:128]
    if _LOOKS_LIKE_AN_ANSWER.match(head):
        return Unusable("FormationViolation", "answer that is not valid JSON", None)
    call = _LOOKS_LIKE_A_CALL.match(head)
    return Unusable("FormationViolation", "message is not valid JSON (§4.1.2)",
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


_ERRORS_BY_CODE = {error.code: error for error in OCPPError.__subclasses__() if error.code in ERROR_CODES_1_6}


def error_of(answer: CallError) -> OCPPError:
    """The exception a CALLERROR answer to one of our calls raises; a code OCPP-J 1.6 does not
    define (or the library's own spellings of the two it misspells) is understood too."""
    code = CALLERROR_CODES_1_6.get(answer.error_code, answer.error_code)
    description = answer.error_description
    if code not in ERROR_CODES_1_6:
        description = f"{shorten(code, 40)}: {description}"
    return _ERRORS_BY_CODE.get(code, GenericError)(description=shorten(description, MAX_ERROR_TEXT),
                                                   details=answer.error_details)


# ---------------------------------------------------------------------------------- the link


class ChargePointLink(ChargePoint):
    """``ocpp.v16.ChargePoint`` with the 1.6 framing fixes above and a frame trace."""

    def __init__(self, charge_point_id: str, connection, trace: FrameTrace, response_timeout: float,
                 on_frame: Callable[[], None] | None = None):
        super().__init__(charge_point_id, connection, response_timeout=response_timeout,
                         logger=RedactingLogger(logging.getLogger("ocpp"), {}))
        self._trace = trace
        self._on_frame = on_frame
        self._awaiting: tuple[str, asyncio.Future] | None = None
        """The uniqueId of our call outstanding and the future its answer goes to."""
        self.answers_ignored = 0
        """CALLRESULTs and CALLERRORs that answered no call outstanding (unknown, repeated or late)."""

    async def start(self) -> None:
        while True:
            message = await self._connection.recv()
            self._trace.record("in", message)
            if self._on_frame:
                self._on_frame()
            await self.route_message(message)

    async def route_message(self, raw_msg) -> None:
        """Answer a CALL exactly once, hand an answer to the call it answers; never raises but
        for a connection that closed."""
        message = parse_frame(raw_msg)
        if isinstance(message, Call):
            await self._answer(message)
        elif isinstance(message, Unusable):
            if message.answers is not None:
                self._settle(message.answers, FormationViolationError(
                    description=message.description, details={"cause": "the central system's answer"}))
            if message.reply_to is not None:
                await self._send(CallError(message.reply_to, message.code, message.description, {}).to_json())
        else:
            self._settle(message.unique_id, message)

    async def _answer(self, request: Call) -> None:
        try:
            # Sends the CALLRESULT, or the CALLERROR of an exception its handler raised.
            await self._handle_call(request)
        except websockets.ConnectionClosed:
            raise
        except OCPPError as error:
            cause = error.details.get("cause") if isinstance(error.details, dict) else None
            await self._send(CallError(request.unique_id, error.code, error.description,
                                       {"cause": str(cause)} if cause else {}).to_json())
        except Exception as error:  # noqa: BLE001 - a bug must not leave the CALL unanswered
            log.exception("%s %s: not handled", shorten(request.action, 40), request.unique_id)
            await self._send(CallError(request.unique_id, InternalError.code, "the charge point failed to handle it",
                                       {"cause": type(error).__name__}).to_json())

    async def _handle_call(self, msg):
        if msg.action not in self.route_map:
            try:
                Action(msg.action)
            except ValueError:
                raise OcppNotImplemented(details={"cause": f"{shorten(msg.action, 40)} is not an OCPP 1.6 action"})
            raise NotSupportedError(details={"cause": f"{msg.action} is not supported by this charge point"})
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
            await validate_payload(request, self._ocpp_version)
        response = await self._exchange(request)
        if not skip_schema_validation:
            await validate_payload(response, self._ocpp_version)
        try:
            return getattr(self._call_result, action)(**camel_to_snake_case(response.payload))
        except TypeError as error:
            raise FormationViolationError(description=f"{action}.conf does not fit the action",
                                          details={"cause": str(error)}) from None

    async def call_payload(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CALL of ``action`` with a camelCase ``payload``; returns the CALLRESULT's payload.

        What ``call`` does, for messages sent back to back (a queue replayed after an outage):
        the request and the answer are checked against the OCPP 1.6 schemas here, in the
        loop, by the library's own check; ``call`` turns the payload into a dataclass and back
        and checks in a worker thread, which costs more than the message. Raises as ``call``.
        """
        request = Call(str(self._unique_id_generator()), action, payload)
        _validate_payload(request, "1.6")
        response = await self._exchange(request)
        _validate_payload(response, "1.6")
        return response.payload

    async def _exchange(self, request: Call) -> CallResult:
        """Send ``request`` and await the answer with its uniqueId, one CALL at a time (OCPP-J
        §4.1.1). A CALLERROR or a broken answer raises its OCPPError, no answer in the response
        timeout TimeoutError."""
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
            raise error_of(response)
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
        message = to_1_6_callerror(message)
        self._trace.record("out", message)
        await self._connection.send(message)
