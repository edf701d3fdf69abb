"""A charging station whose central-system link is fed frame by frame: the harness of both
protocols' receive-path fuzz tests (tests/ocpp16/test_adapter.py, tests/ocpp201/test_adapter_receive.py).

A real adapter, controller and core over fake relay and pilot (``charging_devices`` in
tests/conftest.py); what the link sends goes to a ``Wire`` instead of a websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from typing import Any, Callable, Iterator

from evcp.bench import bench_config
from evcp.core import events as ev
from evcp.core.model import AuthStatus
from evcp.runtime.controller import Controller, station_configuration
from evcp.runtime.hardware import StationHardware


OCPP_J_1_6_CODES = frozenset({"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
                              "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                              "TypeConstraintViolation", "GenericError"})
"""OCPP-J 1.6 §4.2.3 errorCodes, spelled as 1.6 spells them."""
OCPP_J_2_0_1_CODES = frozenset({"FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported",
                                "NotImplemented", "NotSupported", "OccurrenceConstraintViolation",
                                "PropertyConstraintViolation", "ProtocolError", "RpcFrameworkError", "SecurityError",
                                "TypeConstraintViolation"})
"""OCPP-J 2.0.1 §4.3, "RPC Framework Error Codes"."""


class Wire:
    """A connection whose sent frames are kept; received frames are fed in by the test."""

    def __init__(self):
        self.sent: list[str] = []
        self.inbox: asyncio.Queue[str] = asyncio.Queue()

    async def send(self, frame: str) -> None:
        self.sent.append(frame)

    async def recv(self) -> str:
        return await self.inbox.get()


class Receiver:
    """``build()`` makes a station charging on connector 1 (again, after a frame ended the
    session); ``feed(frame)`` routes one frame and returns what the link sent back."""

    def __init__(self, tmp_path, loop: asyncio.AbstractEventLoop, devices: Callable, version: str,
                 link: Callable[[Wire], Any], transaction_id: int | None = None,
                 prepare: Callable[[Any], None] | None = None):
        self.tmp_path, self.loop, self.devices = tmp_path, loop, devices
        self.version, self.make_link, self.transaction_id, self.prepare = version, link, transaction_id, prepare
        self.builds = 0
        self.build()

    def build(self) -> None:
        self.builds += 1
        config = bench_config(self.tmp_path / f"state-{self.builds}", csms_url="ws://127.0.0.1:9/ocpp")
        config = replace(config, ocpp=replace(config.ocpp, version=self.version))
        config.storage.state_dir.mkdir()
        connector = self.devices()
        self.relay = connector.relay
        self.controller = Controller(config, StationHardware([connector], reader=None),
                                     station_configuration(config))
        adapter = self.controller.adapter
        if self.prepare is not None:
            self.prepare(adapter)
        self.wire = Wire()
        self.link = self.make_link(self.wire)
        self.link.adapter = adapter
        self.loop.run_until_complete(self._charge())

    async def _charge(self) -> None:
        c = self.controller
        c._loop = asyncio.get_running_loop()
        c._perform(c.station.start(c.clock()))
        c.dispatch(ev.RemoteStartRequested(1, "FUZZ0001", None))
        c.dispatch(ev.PilotChanged(1, "B"))
        local_id = c.station.connectors[1].transaction.local_id
        c.dispatch(ev.TransactionStartConfirmed(1, local_id, self.transaction_id or local_id, AuthStatus.ACCEPTED))
        c.dispatch(ev.PilotChanged(1, "C"))
        assert self.relay.is_closed

    def feed(self, frame: str) -> list[list]:
        self.wire.sent.clear()

        async def route():
            await self.link.route_message(frame)
            await asyncio.sleep(0)  # what the answer scheduled (an after-handler) runs too

        self.loop.run_until_complete(route())
        return [json.loads(sent) for sent in self.wire.sent]


@contextlib.contextmanager
def charging_receiver(tmp_path, devices: Callable, **kwargs) -> Iterator[Receiver]:
    """A ``Receiver`` on a loop of its own, every task it left cancelled afterwards."""
    loop = asyncio.new_event_loop()
    try:
        yield Receiver(tmp_path, loop, devices, **kwargs)
    finally:
        async def cancel_the_rest():
            pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        loop.run_until_complete(cancel_the_rest())
        loop.close()


def read_frame(frame: str):
    """The frame's JSON, or None when it has none."""
    try:
        return json.loads(frame)
    except (ValueError, RecursionError):
        return None


def assert_valid_answer(answer: list, codes: frozenset[str] | set[str]) -> None:
    """A CALLRESULT or CALLERROR as OCPP-J (1.6 and 2.0.1 §4.2.2 / §4.2.3) defines them, its
    errorCode one of ``codes`` (the version's)."""
    assert isinstance(answer[1], str), answer
    if answer[0] == 3:
        assert len(answer) == 3 and isinstance(answer[2], dict), answer
    else:
        assert answer[0] == 4 and len(answer) == 5, answer
        assert answer[2] in codes, answer
        assert isinstance(answer[3], str) and isinstance(answer[4], dict), answer
        assert len(json.dumps(answer)) < 2_000, "a CALLERROR never echoes the request"
