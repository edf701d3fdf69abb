"""The transaction outbox: order, transactionIds filled in from the start's confirmation, the queue
paged from the state database, deletions committed in batches; the security event queue."""

import asyncio
import logging

import pytest

from evcp.ocpp import outbox as outbox_module
from ocpp.exceptions import NotSupportedError

from evcp.ocpp.outbox import DELETE_BATCH, WINDOW, Outbox, SecurityEventQueue, SecurityEvents
from evcp.storage import FILENAME, StateStore


async def test_stop_decided_before_the_start_conf_carries_the_real_transaction_id():
    box = Outbox()
    start = box.put("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "t"}, 7)
    stop = box.put("StopTransaction", {"transactionId": None, "meterStop": 5, "timestamp": "t"}, 7)
    assert box.head() is start
    assert box.resolved_payload(stop) is None, "unknown until the StartTransaction.conf"
    box.confirm_start(start, 4711)
    assert box.head() is stop
    assert box.resolved_payload(stop)["transactionId"] == 4711
    assert stop.payload["transactionId"] is None, "the stored entry is not rewritten"


async def test_entries_leave_in_the_order_they_came():
    box = Outbox()
    entries = [box.put("MeterValues", {"connectorId": 1, "meterValue": [], "transactionId": 1}, 1) for _ in range(3)]
    seen = []
    while box.head() is not None:
        seen.append(box.head())
        box.done(box.head())
    assert seen == entries and len(box) == 0


async def test_messages_stamped_by_an_untrusted_clock_are_shifted_once_it_is_corrected():
    trusted = [False]
    box = Outbox(clock_trusted=lambda: trusted[0])
    early = box.put("MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": [
        {"timestamp": "2020-01-01T00:00:00.000Z", "sampledValue": []}]}, 1)
    trusted[0] = True
    later = box.put("StopTransaction", {"transactionId": 1, "meterStop": 5, "timestamp": "2023-11-14T22:13:20.000Z"}, 1)
    assert box.retime(3600.5) == 1
    assert early.payload["meterValue"][0]["timestamp"] == "2020-01-01T01:00:00.500Z"
    assert later.payload["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert box.retime(10) == 0, "shifted once only"


# With the state database: the queue lives there, a window of it in memory.


@pytest.fixture
def store(tmp_path):
    with StateStore(tmp_path / FILENAME) as s:
        s.transaction_started(1, 1, "TAG", 0, 1000.0)
        yield s


def meter_value(n: int) -> dict:
    return {"connectorId": 1, "transactionId": None, "meterValue": [
        {"timestamp": f"2020-01-01T00:00:{n % 60:02d}.000Z", "sampledValue": [{"value": str(n)}]}]}


def queue_directly(store, count: int) -> None:
    """What a long outage leaves: ``count`` MeterValues in the state database (one commit)."""
    with store._transaction():
        for n in range(count):
            store.outbox_put("MeterValues", meter_value(n), 1)


def drain(box, store=None) -> list[int]:
    seen = []
    while (entry := box.head()) is not None:
        assert len(box._window) <= WINDOW, "memory holds a window, not the queue"
        seen.append(int(entry.payload["meterValue"][0]["sampledValue"][0]["value"]))
        box.done(entry)
    return seen


async def test_a_long_queue_is_read_a_window_at_a_time_in_order(store):
    queue_directly(store, 5 * WINDOW + 3)
    box = Outbox(store)
    assert len(box) == 5 * WINDOW + 3
    assert len(box._window) == 0, "nothing read before it is needed"
    assert drain(box) == list(range(5 * WINDOW + 3))
    assert len(box) == 0 and store.outbox_count() == 0


async def test_messages_put_while_a_queue_waits_in_the_store_come_after_it(store):
    queue_directly(store, WINDOW + 5)
    box = Outbox(store)
    box.head()
    for n in range(WINDOW + 5, WINDOW + 10):
        box.put("MeterValues", meter_value(n), 1)
    assert len(box) == WINDOW + 10 and len(box._window) == WINDOW
    assert drain(box) == list(range(WINDOW + 10))


async def test_delivered_meter_values_are_deleted_in_batches_and_at_the_end(store):
    queue_directly(store, DELETE_BATCH + 10)
    box = Outbox(store)
    for _ in range(DELETE_BATCH - 1):
        box.done(box.head())
    assert store.outbox_count() == DELETE_BATCH + 10, "not committed yet"
    box.done(box.head())
    assert store.outbox_count() == 10, "a batch is committed at once"
    box.done(box.head())
    assert store.outbox_count() == 10
    await box.wait(0)
    assert store.outbox_count() == 9, "committed before waiting"
    drain(box)
    assert store.outbox_count() == 0, "committed when the queue is empty"


async def test_after_a_crash_delivered_meter_values_come_again_never_a_start_or_a_stop(store):
    start = Outbox(store).put("StartTransaction", {"connectorId": 1, "idTag": "TAG", "meterStart": 0,
                                                   "timestamp": "2020-01-01T00:00:00.000Z"}, 1)
    box = Outbox(store)
    for n in range(3):
        box.put("MeterValues", meter_value(n), 1)
    box.put("StopTransaction", {"transactionId": None, "meterStop": 5, "timestamp": "2020-01-01T00:01:00.000Z",
                                "reason": "Local"}, 1)
    box.put("MeterValues", meter_value(99), 1)
    box.confirm_start(box.head(), 4711)
    assert store.transaction_ids() == {1: 4711}, "the id is stored with the start's deletion"
    box.done(box.head())
    box.done(box.head())
    # The process dies here (nothing committed since the start's confirmation).
    after_crash = Outbox(store)
    assert [e.action for e in iter_all(after_crash)] == ["MeterValues", "MeterValues", "MeterValues",
                                                         "StopTransaction", "MeterValues"]
    assert after_crash.transaction_id(1) == 4711
    assert start.seq not in [e.seq for e in iter_all(Outbox(store))]
    box.done(box.head())
    box.done(box.head())  # the StopTransaction: committed at once, with everything before it
    assert [e.action for e in iter_all(Outbox(store))] == ["MeterValues"]


async def test_starts_and_ends_are_checkpointed_at_once_meter_values_never(store, frames_in_log):
    # A damaged write-ahead log may take what is not checkpointed: samples, never a start or an end.
    box = Outbox(store)
    assert frames_in_log(store) == 0
    frames = []

    def put(action, payload):
        box.put(action, payload, 1)
        frames.append((action, payload.get("eventType"), "queued", frames_in_log(store)))

    def deliver():
        entry = box.head()
        box.done(entry) if entry.action != "StartTransaction" else box.confirm_start(entry, 4711)
        frames.append((entry.action, entry.payload.get("eventType"), "delivered", frames_in_log(store)))

    put("MeterValues", meter_value(1))
    put("StartTransaction", {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": "t"})
    put("MeterValues", meter_value(2))
    deliver()  # the MeterValues queued before the start: the queue is not empty, not committed yet
    deliver()
    deliver()  # the queue is empty: the deletion is committed
    put("TransactionEvent", {"eventType": "Updated"})
    deliver()
    for kind in ("Started", "Ended"):
        put("TransactionEvent", {"eventType": kind})
        deliver()
    put("StopTransaction", {"transactionId": None, "meterStop": 5, "timestamp": "t", "reason": "Local"})
    deliver()
    checkpointed = [(action, kind, what) for action, kind, what, left in frames if left == 0]
    assert checkpointed == [
        ("StartTransaction", None, "queued"), ("StartTransaction", None, "delivered"),
        ("TransactionEvent", "Started", "queued"), ("TransactionEvent", "Started", "delivered"),
        ("TransactionEvent", "Ended", "queued"), ("TransactionEvent", "Ended", "delivered"),
        ("StopTransaction", None, "queued"), ("StopTransaction", None, "delivered")], frames


def iter_all(box):
    """Every queued entry, without delivering any."""
    entries = list(box._window)
    if box.store is not None:
        entries = [outbox_module.Entry(m.seq, m.action, m.payload, m.local_id, m.attempts)
                   for m in box.store.outbox_entries()]
    return entries


async def test_the_final_reading_of_a_stop_beyond_the_window_is_kept(store):
    queue_directly(store, WINDOW)
    box = Outbox(store)
    reading = asyncio.get_running_loop().create_future()
    box.put("StopTransaction", {"transactionId": None, "meterStop": 5, "timestamp": "2020-01-01T00:01:00.000Z",
                                "reason": "Local"}, 1, final_reading=reading)
    for _ in range(WINDOW):
        box.done(box.head())
    assert box.head().action == "StopTransaction" and box.head().final_reading is reading


async def test_retime_shifts_every_untrusted_message_of_this_process_in_the_store(store):
    trusted = [True]
    queue_directly(store, 3)  # from before a restart: that clock's error is not this one's
    box = Outbox(store, clock_trusted=lambda: trusted[0])
    trusted[0] = False
    for n in range(3 * WINDOW):
        box.put("MeterValues", meter_value(0), 1)
    trusted[0] = True
    box.put("MeterValues", meter_value(0), 1)
    box.head()
    assert box.retime(3600) == 3 * WINDOW
    stamps = [m.payload["meterValue"][0]["timestamp"] for m in store.outbox_entries()]
    assert stamps == ["2020-01-01T00:00:00.000Z", "2020-01-01T00:00:01.000Z", "2020-01-01T00:00:02.000Z"] \
        + ["2020-01-01T01:00:00.000Z"] * (3 * WINDOW) + ["2020-01-01T00:00:00.000Z"]
    assert box.head().payload["meterValue"][0]["timestamp"] == "2020-01-01T00:00:00.000Z"
    for _ in range(3):
        box.done(box.head())
    assert box.head().payload["meterValue"][0]["timestamp"] == "2020-01-01T01:00:00.000Z", "the window too"
    assert box.retime(10) == 0, "shifted once only"


async def test_only_the_oldest_message_leaves(store):
    box = Outbox(store)
    box.put("MeterValues", meter_value(0), 1)
    second = box.put("MeterValues", meter_value(1), 1)
    with pytest.raises(ValueError):
        box.done(second)


# Security events.

async def test_security_events_survive_a_restart_in_order(store):
    SecurityEventQueue(store).put("StartupOfTheDevice", "2020-01-01T00:00:00.000Z", "started")
    queue = SecurityEventQueue(store)
    queue.put("SettingSystemTime", "2020-01-01T00:00:01.000Z", None)
    again = SecurityEventQueue(store)
    assert len(again) == 2
    assert [e["type"] for e in again] == ["StartupOfTheDevice", "SettingSystemTime"]
    again.done(again.head())
    assert [e["type"] for e in SecurityEventQueue(store)] == ["SettingSystemTime"]


async def test_security_events_beyond_the_bound_drop_the_oldest(store, caplog):
    queue = SecurityEventQueue(store, limit=3)
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            queue.put("SettingSystemTime", f"2020-01-01T00:00:0{n}.000Z", str(n))
    assert len(queue) == 3 and [e["tech_info"] for e in SecurityEventQueue(store)] == ["2", "3", "4"]
    assert caplog.text.count("security event SettingSystemTime dropped: 3 events wait already") == 2


async def test_waiting_for_a_security_event_returns_when_one_is_put(store):
    queue = SecurityEventQueue(store)
    waiter = asyncio.ensure_future(queue.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.put("SettingSystemTime", "2020-01-01T00:00:00.000Z", None)
    await asyncio.wait_for(waiter, 1)


async def test_reported_security_event_is_logged_and_queued_truncated(store, tmp_path):
    events = SecurityEvents(SecurityEventQueue(store), tmp_path / "security.log")
    events.report("TamperDetectionActivated", "x" * 300, at=1_577_836_800.0)
    [queued] = list(SecurityEventQueue(store))
    assert queued == {"type": "TamperDetectionActivated", "timestamp": "2020-01-01T00:00:00.000Z",
                      "tech_info": "x" * 255}
    assert (tmp_path / "security.log").read_text() == f"2020-01-01T00:00:00.000Z TamperDetectionActivated {'x' * 255}\n"


async def test_security_events_delivered_in_order_refused_dropped_unanswered_sent_again(store, tmp_path):
    events = SecurityEvents(SecurityEventQueue(store), tmp_path / "security.log")
    for kind in ("A", "B", "C"):
        events.report(kind)
    sent, answers = [], [None, NotSupportedError(), asyncio.TimeoutError(), None]

    async def send(payload):
        sent.append(payload["type"])
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    delivering = asyncio.create_task(events.deliver(send, lambda: 0.0))
    async with asyncio.timeout(5):
        while len(events.queue):
            await asyncio.sleep(0.01)
    delivering.cancel()
    assert sent == ["A", "B", "C", "C"]


async def test_security_event_stays_queued_when_the_connection_is_lost(store, tmp_path):
    events = SecurityEvents(SecurityEventQueue(store), tmp_path / "security.log")
    events.report("A")

    async def send(payload):
        raise ConnectionError("not connected")

    with pytest.raises(ConnectionError):
        await events.deliver(send, lambda: 0.0)
    assert [e["type"] for e in SecurityEventQueue(store)] == ["A"]


# Over connections that come and go, whichever protocol sends the queue.

class ScriptedLink:
    """A connection to the central system that answers queued messages as told: "answer",
    "CALLERROR", "no answer" (the call times out) or "lost" (the call is under way when the
    connection goes)."""

    def __init__(self, answer: str):
        self.answer = answer
        self.calls = 0

    async def call_payload(self, action, payload):
        self.calls += 1
        if self.answer == "no answer":
            raise asyncio.TimeoutError
        if self.answer == "CALLERROR":
            raise NotSupportedError(description="scripted")
        if self.answer == "lost":
            await asyncio.Event().wait()
        return {}


class Sender:
    """A protocol adapter's queue of transaction messages, sent over one connection after another
    (OCPP 1.6 MeterValues or OCPP 2.0.1 TransactionEvent Updated, the retry interval at its
    default of 60 s)."""

    def __init__(self, version: str, tmp_path, devices):
        from evcp.bench import bench_config
        from evcp.runtime.controller import Controller, station_configuration
        from evcp.runtime.hardware import StationHardware

        config = bench_config(tmp_path, csms_url="ws://127.0.0.1:9/ocpp", version=version)
        self.store = StateStore(tmp_path / FILENAME)
        controller = Controller(config, StationHardware([devices()], reader=None), station_configuration(config),
                                store=self.store)
        self.adapter = controller.adapter
        self.version = version
        self.entry = self.queue_one()
        self.sending: asyncio.Task | None = None

    def queue_one(self):
        if self.version == "1.6":
            return self.adapter.outbox.put("MeterValues", {"connectorId": 1, "transactionId": 4711,
                                                           "meterValue": []}, None)
        return self.adapter.outbox.put("TransactionEvent", {
            "eventType": "Updated", "timestamp": "2027-01-15T08:00:00.000Z", "triggerReason": "MeterValuePeriodic",
            "seqNo": 1, "transactionInfo": {"transactionId": "tx-1"}}, None)

    async def connect(self, link: ScriptedLink, within_s: float = 5.0) -> None:
        """A new connection: its own sender, as the adapter starts one per connection; returns once
        the message was sent on it and its answer handled, or after ``within_s``."""
        await self.disconnect()
        self.adapter.link = link
        self.sending = asyncio.create_task(self.adapter._drain_outbox())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while link.calls == 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)

    async def disconnect(self) -> None:
        if self.sending is not None:
            self.sending.cancel()
            await asyncio.gather(self.sending, return_exceptions=True)
        self.adapter.link = None

    def waits(self) -> float:
        return self.entry.not_before - asyncio.get_running_loop().time()

    def stored_attempts(self) -> int:
        return self.store.outbox_entries()[0].attempts


@pytest.fixture(params=["1.6", "2.0.1"])
async def sender(request, tmp_path, charging_devices):
    made = Sender(request.param, tmp_path, charging_devices)
    yield made
    await made.disconnect()
    made.store.close()


async def test_a_message_unanswered_on_a_connection_since_lost_goes_at_once_on_the_next_uncounted(sender):
    silent = ScriptedLink("no answer")
    await sender.connect(silent)
    assert sender.entry.attempts == 1 and sender.waits() > 55, "no answer on a live link: the interval"
    await asyncio.sleep(0.3)
    assert silent.calls == 1, "not sent again on the same connection before its interval"
    await sender.disconnect()
    answering = ScriptedLink("answer")
    await sender.connect(answering)
    assert answering.calls == 1 and len(sender.adapter.outbox) == 0, "sent at once on the new connection"


async def test_the_attempt_lost_with_its_connection_is_not_counted(sender):
    await sender.connect(ScriptedLink("no answer"))
    again = ScriptedLink("no answer")
    await sender.connect(again)
    assert again.calls == 1
    assert sender.entry.attempts == 1 and sender.stored_attempts() == 1
    assert 55 < sender.waits() <= 60, "the first interval again: one attempt counted so far"


async def test_a_message_refused_keeps_its_interval_over_a_new_connection(sender):
    await sender.connect(ScriptedLink("CALLERROR"))
    assert sender.entry.attempts == 1 and sender.waits() > 55
    later = ScriptedLink("answer")
    await sender.connect(later, within_s=0.5)
    assert later.calls == 0 and sender.entry.attempts == 1 and sender.waits() > 55


async def test_a_call_cut_short_by_the_end_of_its_connection_is_not_an_attempt(sender):
    await sender.connect(ScriptedLink("lost"))
    await sender.disconnect()
    assert sender.entry.attempts == 0 and sender.stored_attempts() == 0
    answering = ScriptedLink("answer")
    await sender.connect(answering)
    assert answering.calls == 1 and len(sender.adapter.outbox) == 0


async def test_a_silence_its_connection_outlived_stays_counted(sender):
    silent = ScriptedLink("no answer")
    await sender.connect(silent)
    silent.answer = "lost"
    sender.entry.not_before = 0.0  # its interval over on the same connection (not waited out here)
    sender.queue_one()  # wakes the sender
    while silent.calls < 2:
        await asyncio.sleep(0.01)
    await sender.disconnect()  # the second call is cut short: not an attempt
    assert sender.entry.attempts == 1
    await sender.connect(ScriptedLink("no answer"))
    assert sender.entry.attempts == 2 and sender.stored_attempts() == 2, \
        "the silence on the connection that stayed up counts, like the one on the new connection"
    assert 115 < sender.waits() <= 120


@pytest.mark.parametrize("stored", [True, False], ids=["state-database", "memory"])
def test_holds_says_whether_a_message_of_an_action_or_with_a_value_waits(tmp_path, stored):
    """What GetTransactionStatus (2.0.1 E14) asks: read from the store, a delivered message no
    longer counts even before its deletion is committed."""
    db = StateStore(tmp_path / FILENAME) if stored else None
    box = Outbox(db)
    event = {"eventType": "Ended", "transactionInfo": {"transactionId": "tx-1"}}
    assert not box.holds("TransactionEvent")
    box.put("MeterValues", meter_value(1), 1)
    box.put("TransactionEvent", event, None)
    assert box.holds("TransactionEvent") and box.holds("MeterValues")
    assert box.holds("TransactionEvent", "$.transactionInfo.transactionId", "tx-1")
    assert not box.holds("TransactionEvent", "$.transactionInfo.transactionId", "tx-2")
    assert not box.holds("TransactionEvent", "$.transactionInfo.stoppedReason", "tx-1")
    box.done(box.head())
    assert not box.holds("MeterValues") and box.holds("TransactionEvent")
    box.done(box.head())
    assert not box.holds("TransactionEvent", "$.transactionInfo.transactionId", "tx-1")
    if db is not None:
        db.close()
