"""Transaction messages on their way to the central system, in order.

OCPP 1.6 §3.16 / §4.10: StartTransaction, StopTransaction and transaction
MeterValues must reach the central system, in order, even when it is away for
a while. Each entry keeps the core's ``local_id``; the real transactionId is
filled in from the StartTransaction.conf when that arrives, so a stop or a
meter value decided before the conf still carries the right id.

Storage is in memory here; ``Outbox`` is the one place a durable store plugs in.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class Outbox:
    _entries: list[Entry] = field(default_factory=list)
    _transaction_ids: dict[int, int] = field(default_factory=dict)
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, action: str, payload: dict[str, Any], local_id: int | None) -> Entry:
        entry = Entry(next(self._seq), action, payload, local_id)
        self._entries.append(entry)
        self._wakeup.set()
        return entry

    def head(self) -> Entry | None:
        return self._entries[0] if self._entries else None

    def done(self, entry: Entry) -> None:
        self._entries.remove(entry)

    def confirm_start(self, local_id: int, transaction_id: int) -> None:
        self._transaction_ids[local_id] = transaction_id

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
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except asyncio.TimeoutError:
            pass
