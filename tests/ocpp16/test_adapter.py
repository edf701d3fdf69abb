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

from evcp.bench import bench_config
from evcp.core import events as ev
from evcp.core.model import AuthStatus
from evcp.ocpp16 import adapter as adapter_module
from evcp.ocpp16.adapter import CentralSystemLink
from evcp.ocpp.trace import FrameTrace
from evcp.runtime.controller import Controller, station_configuration
from evcp.runtime.hardware import StationHardware

VALID_CODES = {"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
               "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
               "TypeConstraintViolation", "GenericError"}
MAY_END_A_SESSION = {"Reset", "RemoteStopTransaction", "UnlockConnector", "ChangeAvailability",
                     "SetChargingProfile", "ChangeConfiguration"}
"""Well-formed and accepted, these may open the contactor; nothing else may."""
TRANSACTION_ID = 42


class Wire:
    def __init__(self):
        self.sent: list[str] = []

    async def send(self, frame: str) -> None:
        self.sent.append(frame)


class Receiver:
    """A charging controller whose central-system link is fed frame by frame."""

    def __init__(self, tmp_path, loop: asyncio.AbstractEventLoop, devices):
        self.tmp_path, self.loop, self.devices = tmp_path, loop, devices
        self.builds = 0
        self.build()

    def build(self) -> None:
        self.builds += 1
        config = bench_config(self.tmp_path / f"state-{self.builds}", csms_url="ws://127.0.0.1:9/ocpp")
        config.storage.state_dir.mkdir()
        connector = self.devices()
        self.relay = connector.relay
        hardware = StationHardware([connector], reader=None)
        self.controller = Controller(config, hardware, station_configuration(config))
        adapter = self.controller.adapter
        # File transfers would reach for the network: their requests are taken, not carried out.
        adapter.firmware = SimpleNamespace(update=lambda *a: None, signed_update=lambda *a: "Accepted",
                                           status="Idle", signed_status=("Idle", None))
        adapter.logs = SimpleNamespace(get_diagnostics=lambda *a: None, get_log=lambda *a: ("Accepted", None),
                                       diagnostics_status="Idle", log_status="Idle", log_request_id=None)
        self.wire = Wire()
        self.link = CentralSystemLink("CP-FUZZ", self.wire, FrameTrace(size=20), response_timeout=0.1)
        self.link.adapter = adapter
        self.loop.run_until_complete(self._charge())

    async def _charge(self) -> None:
        c = self.controller
        c._loop = asyncio.get_running_loop()
        c._perform(c.station.start(c.clock()))
        c.dispatch(ev.RemoteStartRequested(1, "FUZZ0001", None))
        c.dispatch(ev.PilotChanged(1, "B"))
        local_id = c.station.connectors[1].transaction.local_id
        c.dispatch(ev.TransactionStartConfirmed(1, local_id, TRANSACTION_ID, AuthStatus.ACCEPTED))
        c.dispatch(ev.PilotChanged(1, "C"))
        assert self.relay.is_closed

    def feed(self, frame: str) -> list[list]:
        self.wire.sent.clear()

        async def route():
            await self.link.route_message(frame)
            await asyncio.sleep(0)  # what the answer scheduled (an after-handler) runs too

        self.loop.run_until_complete(route())
        return [json.loads(sent) for sent in self.wire.sent]


@pytest.fixture
def receiver(tmp_path, monkeypatch, charging_devices):
    monkeypatch.setattr(adapter_module, "RECONNECT_GRACE_S", 0)
    loop = asyncio.new_event_loop()
    yield Receiver(tmp_path, loop, charging_devices)

    async def cancel_the_rest():
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    loop.run_until_complete(cancel_the_rest())
    loop.close()


def _read(frame: str):
    try:
        return json.loads(frame)
    except (ValueError, RecursionError):
        return None


def assert_valid_answer(answer: list) -> None:
    """A CALLRESULT or CALLERROR as OCPP-J 1.6 §4.2.2 / §4.2.3 define them."""
    assert isinstance(answer[1], str), answer
    if answer[0] == 3:
        assert len(answer) == 3 and isinstance(answer[2], dict), answer
    else:
        assert answer[0] == 4 and len(answer) == 5, answer
        assert answer[2] in VALID_CODES, answer
        assert isinstance(answer[3], str) and isinstance(answer[4], dict), answer
        assert len(json.dumps(answer)) < 2_000, "a CALLERROR never echoes the request"


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
        assert_valid_answer(answer)
    assert all(f[0] in (2, 3, 4) for f in sent)
    message = _read(frame)
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
