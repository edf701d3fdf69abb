"""The OCPP-J 2.0.1 framing layer on top of the ``ocpp`` library's v201 messages.

As for 1.6 (``evcp.ocpp16.link``; the trace is the shared ``evcp.ocpp.trace``), with the 2.0.1 spelling of things:
* an action OCPP 2.0.1 does not know is NotImplemented, one it knows but this station does not
  handle is NotSupported (OCPP-J 2.0.1 §4.3 "CALLERROR"; the library swaps them);
* a frame that cannot be parsed is answered with a CALLERROR (RpcFrameworkError or
  FormatViolation) instead of being dropped;
* frames go to the frame trace, never to the main log.
The CALLERROR codes of the library are 2.0.1's own spelling (FormatViolation,
OccurrenceConstraintViolation): nothing is rewritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, MessageType, _validate_payload, unpack
from ocpp.v201 import ChargePoint
from ocpp.v201.enums import Action

from evcp.ocpp.trace import FrameTrace, RedactingLogger

OCPP_VERSION = "2.0.1"
SUBPROTOCOL = "ocpp2.0.1"


class StationLink(ChargePoint):
    """``ocpp.v201.ChargePoint`` with a frame trace and the framing fixes above."""

    def __init__(self, station_id: str, connection, trace: FrameTrace, response_timeout: float,
                 on_frame: Callable[[], None] | None = None):
        super().__init__(station_id, connection, response_timeout=response_timeout,
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
                raise OcppNotImplemented(details={"cause": f"{msg.action} is not an OCPP 2.0.1 action"})
            raise NotSupportedError(details={"cause": f"{msg.action} is not supported by this charging station"})
        return await super()._handle_call(msg)

    async def call_payload(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A CALL of ``action`` with a camelCase ``payload``, request and answer checked against the
        OCPP 2.0.1 schemas; returns the CALLRESULT's camelCase payload. One CALL at a time
        (OCPP-J 2.0.1 §4.1.1). Raises the CALLERROR or a broken answer as an OCPPError, and
        TimeoutError without an answer in time."""
        request = Call(unique_id=str(self._unique_id_generator()), action=action, payload=payload)
        _validate_payload(request, OCPP_VERSION)
        async with self._call_lock:
            await self._send(request.to_json())
            async with asyncio.timeout(self._response_timeout):
                while (response := await self._response_queue.get()).unique_id != request.unique_id:
                    self.logger.error("Ignoring response with unknown unique id: %s", response)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        response.action = action
        _validate_payload(response, OCPP_VERSION)
        return response.payload

    async def _send(self, message: str) -> None:
        self._trace.record("out", message)
        await self._connection.send(message)
