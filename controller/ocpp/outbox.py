"""Messages on their way to the central system, in order, surviving restarts and power cuts.

OCPP 1.6 ("Transaction-related messages"): StartTransaction, StopTransaction and transaction
MeterValues must reach the central system, in order, even when it is away for
a while or the charger loses power. Each entry keeps the core's ``local_id``;
the real transactionId is filled in from the StartTransaction.conf when that
arrives, so a stop or a meter value decided before the conf (or before a
power cut) still carries the right id.

With a ``StateStore`` every entry is written before ``put`` returns, and the
queue lives in the store: only a window of the oldest ``WINDOW`` entries is in
memory, read a page at a time, so a queue of 100,000 messages after a long
outage costs no more memory than an empty one. Without a store (tests) the
entries live in memory.

Deletions of delivered messages are committed:
* at once for a StartTransaction (together with its transactionId) and a
  StopTransaction: resent after a power cut, a StartTransaction would open a
  second transaction at the central system, which cannot tell;
* for MeterValues, together: every ``DELETE_BATCH`` messages, when the queue
  is empty, and whenever the sender stops to wait (``commit_deletions``). A
  power cut or a kill can so resend up to ``DELETE_BATCH`` MeterValues that
  were delivered: the same transactionId, timestamps and values, which the
  central system can recognise as copies. Committing each one costs an fsync
  per message (milliseconds on an SD card), which bounds a replay at a few
  hundred messages a second and wears the card.

A transaction's start and end, queued or delivered, are also checkpointed into the state
database's main file (``checkpoint`` of ``StateStore.outbox_put``): a damaged write-ahead log
can take queued or delivered MeterValues (a 2.0.1 Updated event is checkpointed with its seqNo
by ``evcp.ocpp201.transactions``; only its deletion once delivered can be lost, and it is sent
again, identical), never a start or an end.

The security events waiting for the central system (``SecurityEventQueue``)
are kept the same way, in their own queue: they are not transaction messages
and never hold those up. ``SecurityEvents`` reports them for either protocol (OCPP 1.6
security whitepaper "Security events", OCPP 2.0.1 Part 2 A04 SecurityEventNotification): into
the security log and that queue, delivered in order by ``deliver``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

from ocpp.exceptions import OCPPError

from evcp.aio import wait_event
from evcp.storage import StoreError
from evcp.timestamps import parse_timestamp, timestamp

if TYPE_CHECKING:
    from evcp.storage import StateStore

log = logging.getLogger("evcp.ocpp")

WINDOW = 64
"""Queued messages kept in memory, the oldest; the rest is read from the store when needed."""
DELETE_BATCH = 256
"""Delivered MeterValues whose deletion is committed together (at most this many resent after a power cut)."""
RETIME_PAGE = 500
"""Messages re-stamped per commit by ``retime``."""
MAX_QUEUED_SECURITY_EVENTS = 1000
"""Security events kept while the central system is away; beyond, the oldest is dropped (and logged)."""
SECURITY_LOG_MAX_BYTES = 1_000_000
"""The security log is rotated once past this size (one older file kept)."""


@dataclass
class Entry:
    seq: int
    action: str
    """"StartTransaction", "StopTransaction" or "MeterValues"."""
    payload: dict[str, Any]
    """camelCase payload; a transactionId of None is filled from ``local_id`` when sent."""
    local_id: int | None
    attempts: int = 0
    not_before: float = 0.0
    unanswered: bool = False
    """Its retry waits because its last call got no answer (rather than a CALLERROR): see ``connected``."""
    final_reading: asyncio.Future | None = None
    """For a StopTransaction: a fresh meter reading (Wh or None) taken after the contactor opened."""


@dataclass
class Outbox:
    store: "StateStore | None" = None
    clock_trusted: Callable[[], bool] = lambda: True
    _window: deque[Entry] = field(default_factory=deque)
    """The oldest queued entries, by seq; with a store, every entry above ``_loaded_through`` is in the store only."""
    _loaded_through: int = 0
    _beyond: int = 0
    """Queued entries not in the window."""
    _delivered_through: int | None = None
    """Delivered MeterValues up to this seq whose deletion is not committed yet."""
    _delivered_pending: int = 0
    _final_readings: dict[int, asyncio.Future] = field(default_factory=dict)
    """seq -> the fresh meter reading of a StopTransaction not in the window yet."""
    _untrusted: list[list[int]] = field(default_factory=list)
    """[first, last] seq ranges put by this process while the clock was untrusted (see ``retime``)."""
    _last_put: int | None = None
    _transaction_ids: dict[int, int] = field(default_factory=dict)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if self.store is not None:
            self._transaction_ids.update(self.store.transaction_ids())
            self._beyond = self.store.outbox_count()

    def put(self, action: str, payload: dict[str, Any], local_id: int | None,
            final_reading: asyncio.Future | None = None) -> Entry:
        """Queue a message; a StopTransaction also marks its transaction stopped, atomically.

        ``final_reading``: for a StopTransaction, the meter reading (Wh or None) that replaces
        meterStop when larger, awaited before the message is sent.
        """
        if self.store is None:
            seq = next(self._seq)
        elif action == "StopTransaction" and local_id is not None:
            seq = self.store.outbox_put_stop(payload, local_id)
        else:
            seq = self.store.outbox_put(action, payload, local_id, checkpoint=is_start_or_end(action, payload))
        if not self.clock_trusted():
            if self._untrusted and self._untrusted[-1][1] == self._last_put:
                self._untrusted[-1][1] = seq
            else:
                self._untrusted.append([seq, seq])
        self._last_put = seq
        entry = Entry(seq, action, payload, local_id, final_reading=final_reading)
        if self.store is None or (self._beyond == 0 and len(self._window) < WINDOW):
            self._window.append(entry)
            self._loaded_through = seq
        else:
            self._beyond += 1
            if final_reading is not None:
                self._final_readings[seq] = final_reading
        self._wakeup.set()
        return entry

    def update(self, entry: Entry) -> None:
        """Keep a changed payload or attempt count (a retry, a final meter reading)."""
        if self.store is not None:
            self.store.outbox_update(entry.seq, entry.payload, entry.attempts)

    def retime(self, correction_s: float) -> int:
        """Shift the timestamps of the messages this process stamped while the clock was untrusted,
        once it is corrected; returns how many were still queued. Messages from before a restart
        keep theirs: that clock's error is not this one's."""
        ranges, self._untrusted = self._untrusted, []
        self.commit_deletions()
        in_window = {entry.seq: entry for entry in self._window}
        shifted = 0
        for first, last in ranges:
            if self.store is None:
                for seq in range(first, last + 1):
                    if seq in in_window:
                        in_window[seq].payload = _shifted(in_window[seq].payload, correction_s)
                        shifted += 1
                continue
            after = first - 1
            while page := [m for m in self.store.outbox_page(after, RETIME_PAGE) if m.seq <= last]:
                updates = []
                for message in page:
                    entry = in_window.get(message.seq)
                    payload = _shifted(entry.payload if entry else message.payload, correction_s)
                    if entry is not None:
                        entry.payload = payload
                    updates.append((message.seq, payload))
                self.store.outbox_update_many(updates)
                shifted += len(updates)
                after = page[-1].seq
                if after >= last:
                    break
        return shifted

    def connected(self) -> None:
        """A new connection to the central system is up: the oldest message, if its retry waits
        because its last call got no answer, goes out at once, and that attempt is not counted.

        The answer was lost with the connection that has since gone (a half-open link gives no
        answer until its pings time out): the message was not refused. The attempts and their
        growing interval (OCPP 1.6 "Error responses to transaction-related messages":
        TransactionMessageAttempts, TransactionMessageRetryInterval; OCPP 2.0.1 Part 2 E13:
        MessageAttemptsTransactionEvent, MessageAttemptIntervalTransactionEvent) are for a
        central system that fails to process it, and only its CALLERROR or its silence on a link
        that stays up says so. Counted, a few network drops would skip a transaction's message
        for good; waited for, queued messages would reach the central system minutes after the
        link is back, when they must go as soon as it is (OCPP 1.6 "Transaction-related
        messages", OCPP 2.0.1 Part 2 E04/E12: delivered once the connection is restored). A
        message whose retry waits after a CALLERROR keeps its wait."""
        entry = self.head()
        if entry is None or not entry.unanswered:
            return
        entry.unanswered = False
        entry.attempts -= 1
        entry.not_before = 0.0
        self.update(entry)

    def failed(self, entry: Entry, why: str, attempts_allowed: int, interval_s: float,
               unanswered: bool = False) -> bool:
        """The message's call failed (a CALLERROR, or no answer: ``unanswered``, see
        ``connected``): its attempt is counted, and it is tried again ``interval_s`` times the
        attempts made later, or, after ``attempts_allowed``, False: the caller gives up on it. A
        call cut short by the connection's end never gets here: it is not an attempt."""
        entry.attempts += 1
        if entry.attempts >= attempts_allowed:
            log.error("%s failed %d times (%s); giving up on it", entry.action, entry.attempts, why)
            return False
        delay = interval_s * entry.attempts
        entry.not_before = asyncio.get_running_loop().time() + delay
        entry.unanswered = unanswered
        self.update(entry)
        log.warning("%s failed (%s); attempt %d of %d in %ss", entry.action, why, entry.attempts + 1,
                    attempts_allowed, delay)
        return True

    def head(self) -> Entry | None:
        if not self._window and self._beyond:
            self._refill()
        return self._window[0] if self._window else None

    def _refill(self) -> None:
        for stored in self.store.outbox_page(self._loaded_through, WINDOW):
            self._window.append(Entry(stored.seq, stored.action, stored.payload, stored.local_id, stored.attempts,
                                      final_reading=self._final_readings.pop(stored.seq, None)))
            self._loaded_through = stored.seq
            self._beyond -= 1
        if not self._window:
            self._beyond = 0  # nothing more in the store: the count was off

    def done(self, entry: Entry) -> None:
        """The message was answered (or given up): it leaves the queue. Only the head leaves."""
        if not self._window or self._window[0] is not entry:
            raise ValueError(f"outbox message {entry.seq} is not the oldest queued")
        self._window.popleft()
        if self.store is None:
            return
        self._delivered_through = entry.seq
        self._delivered_pending += 1
        if entry.action != "MeterValues" or self._delivered_pending >= DELETE_BATCH or not len(self):
            # Only MeterValues wait for a batch, so a start or end is always the last of its commit.
            self.commit_deletions(checkpoint=is_start_or_end(entry.action, entry.payload))

    def commit_deletions(self, checkpoint: bool = False) -> None:
        """Commit the deletion of every message delivered so far (one fsync); ``checkpoint``: one of
        them is a start or an end (``is_start_or_end``)."""
        if self._delivered_through is not None and self.store is not None:
            self.store.outbox_done_through(self._delivered_through, checkpoint=checkpoint)
        self._delivered_through, self._delivered_pending = None, 0

    def confirm_start(self, entry: Entry, transaction_id: int) -> None:
        """The StartTransaction ``entry`` was answered with ``transaction_id``: it leaves the queue
        and the id is recorded, in one commit."""
        if not self._window or self._window[0] is not entry:
            raise ValueError(f"outbox message {entry.seq} is not the oldest queued")
        self._window.popleft()
        self._transaction_ids[entry.local_id] = transaction_id
        if self.store is not None:
            self.store.outbox_start_confirmed(entry.seq, entry.local_id, transaction_id)
            self._delivered_through, self._delivered_pending = None, 0

    def transaction_id(self, local_id: int | None) -> int | None:
        return self._transaction_ids.get(local_id) if local_id is not None else None

    def resolved_payload(self, entry: Entry) -> dict[str, Any] | None:
        """The payload with its transactionId filled in; None while the id is still unknown."""
        if entry.action == "StartTransaction" or "transactionId" not in entry.payload:
            return entry.payload
        if entry.payload["transactionId"] is not None:
            return entry.payload
        tx_id = self.transaction_id(entry.local_id)
        if tx_id is None:
            return None
        return {**entry.payload, "transactionId": tx_id}

    def __len__(self) -> int:
        return len(self._window) + self._beyond

    def holds(self, action: str, path: str | None = None, value: Any = None) -> bool:
        """Whether a message of ``action`` waits (or is in flight); with ``path`` (``$.a.b`` into
        the payload), one that has ``value`` there. Reads the store, not the whole queue; the
        messages delivered whose deletion is not committed yet do not count."""
        if self.store is not None:
            return self.store.outbox_holds(action, path, value, after_seq=self._delivered_through or 0)
        return any(entry.action == action and (path is None or _value_at(entry.payload, path) == value)
                   for entry in self._window)

    async def wait(self, timeout: float | None) -> None:
        """Wait for a new message, at most ``timeout`` s (None: until one comes); delivered
        messages are committed first."""
        self.commit_deletions()
        self._wakeup.clear()
        await wait_event(self._wakeup, timeout)


def _value_at(payload: Any, path: str) -> Any:
    for name in path.removeprefix("$.").split("."):
        payload = payload.get(name) if isinstance(payload, dict) else None
    return payload


def is_start_or_end(action: str, payload: dict[str, Any]) -> bool:
    """A message that starts or ends a transaction at the central system, whose loss would leave
    it open for ever and whose resending would bill it twice: every queued message but the
    samples of a running transaction (1.6 MeterValues, 2.0.1 TransactionEvent Updated)."""
    if action == "MeterValues":
        return False
    return not (action == "TransactionEvent" and payload.get("eventType") == "Updated")


def latest_timestamp(payload: dict[str, Any]) -> float | None:
    """The latest of a payload's timestamps (top level and in meterValue, those ``retime`` moves),
    POSIX seconds; None without one. One that cannot be read is left out."""
    texts = [payload.get("timestamp")] + [mv.get("timestamp") for mv in payload.get("meterValue") or []
                                          if isinstance(mv, dict)]
    moments = []
    for text in texts:
        try:
            moments.append(parse_timestamp(text))
        except ValueError:
            continue
    return max(moments, default=None)


def _shifted(payload: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The payload with every ``timestamp`` (top level and in meterValue) moved by ``seconds``."""
    def move(text: str) -> str:
        return timestamp(parse_timestamp(text) + seconds)

    result = dict(payload)
    if "timestamp" in result:
        result["timestamp"] = move(result["timestamp"])
    if "meterValue" in result:
        result["meterValue"] = [{**mv, "timestamp": move(mv["timestamp"])} for mv in result["meterValue"]]
    return result


@dataclass(frozen=True)
class QueuedSecurityEvent:
    seq: int
    payload: dict[str, Any]
    """SecurityEventNotification.req in the library's snake_case: type, timestamp, tech_info."""


class SecurityEventQueue:
    """Security events (whitepaper "Security events") waiting for the central system, oldest
    first. With a store they survive restarts and power cuts (each ``put`` is committed before it
    returns); at most ``limit`` wait: beyond, the oldest is dropped and logged."""

    def __init__(self, store: "StateStore | None" = None, limit: int = MAX_QUEUED_SECURITY_EVENTS):
        self.store = store
        self.limit = limit
        self._memory: deque[QueuedSecurityEvent] = deque()
        self._seq = itertools.count(1)
        self._count = store.security_events_count() if store is not None else 0
        self._added = asyncio.Event()

    def put(self, event_type: str, at: str, tech_info: str | None) -> None:
        if self.store is not None:
            dropped = [event.type for event in self.store.security_event_put(event_type, at, tech_info, self.limit)]
            self._count = min(self._count + 1, self.limit)
        else:
            self._memory.append(QueuedSecurityEvent(next(self._seq), _event(event_type, at, tech_info)))
            dropped = [self._memory.popleft().payload["type"] for _ in range(len(self._memory) - self.limit)]
        for kind in dropped:
            log.warning("security event %s dropped: %d events wait already", kind, self.limit)
        self._added.set()

    def head(self) -> QueuedSecurityEvent | None:
        if self.store is None:
            return self._memory[0] if self._memory else None
        first = self.store.security_events(limit=1)
        return QueuedSecurityEvent(first[0].seq, _event(first[0].type, first[0].timestamp, first[0].tech_info)) \
            if first else None

    def done(self, event: QueuedSecurityEvent) -> None:
        """Delivered or refused: it leaves the queue."""
        if self.store is not None:
            self.store.security_event_done(event.seq)
            self._count = self.store.security_events_count()
        elif self._memory and self._memory[0].seq == event.seq:
            self._memory.popleft()

    def __len__(self) -> int:
        return self._count if self.store is not None else len(self._memory)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The waiting events' payloads, oldest first."""
        if self.store is None:
            return iter([event.payload for event in self._memory])
        return iter([_event(e.type, e.timestamp, e.tech_info) for e in self.store.security_events()])

    async def wait(self) -> None:
        """Until an event is queued."""
        self._added.clear()
        if not len(self):
            await self._added.wait()


def _event(event_type: str, at: str, tech_info: str | None) -> dict[str, Any]:
    return {"type": event_type, "timestamp": at, "tech_info": tech_info}


class SecurityEvents:
    """The charger's security events, whichever protocol reports them: each is written to the
    security log (``log_path``, one line per event, the file GetLog SecurityLog uploads) and put
    in ``queue`` for its SecurityEventNotification."""

    def __init__(self, queue: SecurityEventQueue, log_path: Path):
        self.queue = queue
        self.log_path = log_path

    def report(self, event_type: str, info: str | None = None, at: float | None = None) -> None:
        """Record a security event of ``event_type`` (e.g. SettingSystemTime) with ``info`` as
        techInfo, stamped ``at`` (default now). With a store it waits in the state database,
        across restarts and power cuts; beyond ``MAX_QUEUED_SECURITY_EVENTS`` the oldest is
        dropped (and logged)."""
        event = _event(event_type[:50], timestamp(at if at is not None else time.time()),
                       info[:255] if info else None)
        log.info("security event %s%s", event_type, f": {info}" if info else "")
        self._append_to_log(event)
        try:
            self.queue.put(event["type"], event["timestamp"], event["tech_info"])
        except StoreError as error:
            log.error("security event %s not queued, the state database refused it: %s", event_type, error)

    def _append_to_log(self, event: dict[str, Any]) -> None:
        path = self.log_path
        try:
            if path.exists() and path.stat().st_size > SECURITY_LOG_MAX_BYTES:
                path.replace(path.with_name(path.name + ".1"))
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{event['timestamp']} {event['type']} {event['tech_info'] or ''}".rstrip() + "\n")
        except OSError as error:
            log.warning("cannot write the security log %s: %s", path, error)

    async def deliver(self, send: Callable[[dict[str, Any]], Awaitable[Any]],
                      retry_interval_s: Callable[[], float]) -> None:
        """Send the queued events oldest first with ``send(payload)`` (snake_case type, timestamp,
        tech_info) until cancelled. Not a transaction message: an event the central system
        refuses with a CALLERROR (one without the security extensions) is dropped rather than
        holding the others up; one without an answer is sent again after ``retry_interval_s()``;
        a lost connection raises, and the event waits for the next one."""
        while True:
            queued = self.queue.head()
            if queued is None:
                await self.queue.wait()
                continue
            event = queued.payload
            try:
                await send(event)
            except OCPPError as error:
                log.warning("central system refused SecurityEventNotification %s (CALLERROR %s); dropped",
                            event["type"], error.code)
            except asyncio.TimeoutError:
                log.warning("no answer to SecurityEventNotification %s; sending it again", event["type"])
                await asyncio.sleep(retry_interval_s())
                continue
            self.queue.done(queued)
