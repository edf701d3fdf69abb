"""Transaction messages on their way to the central system, in order, surviving restarts.

OCPP 1.6 ("Transaction-related messages"): StartTransaction, StopTransaction and transaction
MeterValues must reach the central system, in order, even when it is away for
a while or the charger loses power. Each entry keeps the core's ``local_id``;
the real transactionId is filled in from the StartTransaction.conf when that
arrives, so a stop or a meter value decided before the conf (or before a
power cut) still carries the right id.

With a ``StateStore`` every entry is written before ``put`` returns and
removed only after the central system answered; without one (tests) the
entries live in memory.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from evcp.aio import wait_event
from evcp.timestamps import parse_timestamp, timestamp

if TYPE_CHECKING:
    from evcp.storage import StateStore


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
    final_reading: asyncio.Future | None = None
    """For a StopTransaction: a fresh meter reading (Wh or None) taken after the contactor opened."""
    untrusted_time: bool = False
    """Stamped before the clock was known to be right; shifted once it is (``retime``)."""


@dataclass
class Outbox:
    store: "StateStore | None" = None
    clock_trusted: Callable[[], bool] = lambda: True
    _entries: list[Entry] = field(default_factory=list)
    _transaction_ids: dict[int, int] = field(default_factory=dict)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if self.store is not None:
            self._transaction_ids.update(self.store.transaction_ids())
            for stored in self.store.outbox_entries():
                self._entries.append(Entry(stored.seq, stored.action, stored.payload, stored.local_id,
                                           stored.attempts))

    def put(self, action: str, payload: dict[str, Any], local_id: int | None) -> Entry:
        """Queue a message; a StopTransaction also marks its transaction stopped, atomically."""
        if self.store is None:
            seq = next(self._seq)
        elif action == "StopTransaction" and local_id is not None:
            seq = self.store.outbox_put_stop(payload, local_id)
        else:
            seq = self.store.outbox_put(action, payload, local_id)
        entry = Entry(seq, action, payload, local_id, untrusted_time=not self.clock_trusted())
        self._entries.append(entry)
        self._wakeup.set()
        return entry

    def update(self, entry: Entry) -> None:
        """Keep a changed payload or attempt count (a retry, a final meter reading)."""
        if self.store is not None:
            self.store.outbox_update(entry.seq, entry.payload, entry.attempts)

    def retime(self, correction_s: float) -> int:
        """Shift the timestamps of messages stamped by an untrusted clock; returns how many."""
        shifted = 0
        for entry in self._entries:
            if entry.untrusted_time:
                entry.payload = _shifted(entry.payload, correction_s)
                entry.untrusted_time = False
                self.update(entry)
                shifted += 1
        return shifted

    def head(self) -> Entry | None:
        return self._entries[0] if self._entries else None

    def done(self, entry: Entry) -> None:
        self._entries.remove(entry)
        if self.store is not None:
            self.store.outbox_done(entry.seq)

    def confirm_start(self, local_id: int, transaction_id: int) -> None:
        self._transaction_ids[local_id] = transaction_id
        if self.store is not None:
            self.store.transaction_confirmed(local_id, transaction_id)

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
        return len(self._entries)

    async def wait(self, timeout: float) -> None:
        self._wakeup.clear()
        await wait_event(self._wakeup, timeout)


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
