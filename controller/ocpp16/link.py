"""The OCPP-J 1.6 framing layer on top of the ``ocpp`` library.

The library is right about messages and wrong about a few 1.6 details, fixed here:
* CALLERROR codes are spelled as OCPP-J 1.6 §4.2.3 spells them
  (FormationViolation, OccurenceConstraintViolation);
* an action 1.6 knows but this charger does not handle is NotSupported, an
  action 1.6 does not know is NotImplemented (§4.2.3; the library swaps them);
* a frame that cannot be parsed is answered with a CALLERROR instead of being
  dropped silently;
* frames go to the trace log (secrets redacted), never to the main log; the library's
  own log lines, which quote messages, have their secrets redacted too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from typing import Any, Callable

from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, MessageType, _validate_payload, unpack
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import Action

trace_log = logging.getLogger("evcp.ocpp.trace")

#: The ``ocpp`` library's codes that OCPP-J 1.6 spells differently.
CALLERROR_CODES_1_6 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}

#: Configuration keys whose values are secrets (matched in any letter case: key names are CiString).
SECRET_KEYS = frozenset({"authorizationkey"})
MASK = "********"

_NAMES_A_SECRET_KEY = re.compile("|".join(re.escape(key) for key in SECRET_KEYS), re.IGNORECASE)
#: A ``value`` field in JSON or in a Python repr: "value": "...", 'value': '...'.
_VALUE_FIELD = re.compile(r"""(["']value["']\s*:\s*)(["'])(?:\\.|(?!\2).)*\2""")


_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@\"']*:)[^/\s@\"']+@")


def redact(frame: str) -> str:
    """The frame (or log text) with the values of secret configuration keys replaced by ********.

    A ``{"key": "AuthorizationKey", "value": ...}`` object has its value masked wherever it is
    in the message (ChangeConfiguration.req, GetConfiguration.conf), in any letter case and
    field order. Text that is not JSON but names a secret key (a library log line with a
    Python repr) has every value field masked. A password in a URL (the FTP location of
    UpdateFirmware, GetDiagnostics, GetLog) is masked too.
    """
    frame = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", frame)
    if not _NAMES_A_SECRET_KEY.search(frame) and "\\u" not in frame:
        return frame
    try:
        message = json.loads(frame)
    except ValueError:
        return _VALUE_FIELD.sub(lambda m: m.group(1) + m.group(2) + MASK + m.group(2), frame)
    masked = _masked(message)
    if masked == message:
        return frame
    return json.dumps(masked, separators=(",", ":"))


def _masked(item: Any) -> Any:
    if isinstance(item, list):
        return [_masked(element) for element in item]
    if not isinstance(item, dict):
        if isinstance(item, str) and _NAMES_A_SECRET_KEY.search(item):
            return _VALUE_FIELD.sub(lambda m: m.group(1) + m.group(2) + MASK + m.group(2), item)
        return item
    key = item.get("key")
    secret = isinstance(key, str) and key.lower() in SECRET_KEYS
    return {name: (MASK if secret and name == "value" and value else _masked(value))
            for name, value in item.items()}


class RedactingLogger(logging.LoggerAdapter):
    """A logger for the ``ocpp`` library, which logs whole messages (and, on an error, the
    request with its payload): secrets are masked, and a traceback that could quote one is
    left out."""

    def log(self, level, msg, *args, exc_info=None, **kwargs):
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        shown = redact(text)
        if shown != text:
            exc_info = None
        self.logger.log(level, "%s", shown, exc_info=exc_info, **kwargs)


def to_1_6_callerror(frame: str) -> str:
    """Rewrite a CALLERROR frame's code to its OCPP 1.6 spelling; other frames pass unchanged."""
    if not frame.startswith("[4"):
        return frame
    try:
        message = json.loads(frame)
    except ValueError:
        return frame
    if len(message) >= 3 and message[2] in CALLERROR_CODES_1_6:
        message[2] = CALLERROR_CODES_1_6[message[2]]
        return json.dumps(message, separators=(",", ":"))
    return frame


class FrameTrace:
    """The last frames in memory (for the status page) and every frame in the trace log."""

    def __init__(self, size: int = 500):
        self._frames: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = 0

    def record(self, direction: str, frame: str) -> None:
        self._seq += 1
        shown = redact(frame)
        self._frames.append({"seq": self._seq, "time": time.time(), "direction": direction, "frame": shown})
        trace_log.debug("%s %s", ">>" if direction == "out" else "<<", shown)

    def since(self, seq: int) -> tuple[int, list[dict[str, Any]]]:
        return self._seq, [f for f in self._frames if f["seq"] > seq]


class ChargePointLink(ChargePoint):
    """``ocpp.v16.ChargePoint`` with the 1.6 framing fixes above and a frame trace."""

    def __init__(self, charge_point_id: str, connection, trace: FrameTrace, response_timeout: float,
                 on_frame: Callable[[], None] | None = None):
        super().__init__(charge_point_id, connection, response_timeout=response_timeout,
                         logger=RedactingLogger(logging.getLogger("ocpp"), {}))
        self._trace = trace
        self._on_frame = on_frame

    async def start(self) -> None:
        while True:
            message = await self._connection.recv()
            self._trace.record("in", message)
            if self._on_frame:
                self._on_frame()
            await self.route_message(message)

    async def route_message(self, raw_msg) -> None:
        try:
            unpack(raw_msg)
        except OCPPError as error:
            await self._answer_unparsable(raw_msg, error)
            return
        await super().route_message(raw_msg)

    async def _answer_unparsable(self, raw_msg, error: OCPPError) -> None:
        unique_id = "-1"
        try:
            message = json.loads(raw_msg)
            if isinstance(message, list) and len(message) >= 2 and isinstance(message[1], str):
                if message[0] in (MessageType.CallResult, MessageType.CallError):
                    return  # a broken answer to one of our calls: nothing to answer
                unique_id = message[1]
        except (ValueError, TypeError):
            pass
        details = error.details if isinstance(error.details, dict) else {}
        await self._send(CallError(unique_id, error.code, error.description or "unparsable frame",
                                   {"cause": str(details.get("cause", ""))}).to_json())

    async def _handle_call(self, msg):
        if msg.action not in self.route_map:
            try:
                Action(msg.action)
            except ValueError:
                raise OcppNotImplemented(details={"cause": f"{msg.action} is not an OCPP 1.6 action"})
            raise NotSupportedError(details={"cause": f"{msg.action} is not supported by this charge point"})
        return await super()._handle_call(msg)

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

    async def call_payload(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CALL of ``action`` with a camelCase ``payload``; returns the CALLRESULT's payload.

        What ``call`` does, for messages sent back to back (a queue replayed after an outage):
        the request and the answer are checked against the OCPP 1.6 schemas here, in the
        loop, by the library's own check; ``call`` turns the payload into a dataclass and back
        and checks in a worker thread, which costs more than the message. One CALL at a time
        (OCPP-J §4.1.1). Raises the CALLERROR or a broken answer as an OCPPError, and
        TimeoutError without an answer in time.
        """
        request = Call(unique_id=str(self._unique_id_generator()), action=action, payload=payload)
        _validate_payload(request, "1.6")
        async with self._call_lock:
            await self._send(request.to_json())
            async with asyncio.timeout(self._response_timeout):
                while (response := await self._response_queue.get()).unique_id != request.unique_id:
                    self.logger.error("Ignoring response with unknown unique id: %s", response)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        response.action = action
        _validate_payload(response, "1.6")
        return response.payload

    async def _send(self, message: str) -> None:
        message = to_1_6_callerror(message)
        self._trace.record("out", message)
        await self._connection.send(message)
