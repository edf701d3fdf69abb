"""Device problems in OCPP 2.0.1 terms: the Problem variable of a standard component.

OCPP 1.6 tells a fault in the StatusNotification's errorCode; 2.0.1's StatusNotification has
none, so a fault of the meter, the contactor, the lock, ... is the ``Problem`` variable of that
device's component (Part 2 Appendix "Standardized components") turning true or false, reported
with NotifyEvent (Part 2 G05 for the lock, N07 for the rest): trigger Delta, a hard-wired
notification, the core's reason as techInfo. The variables are in the device model (GetVariables,
GetBaseReport SummaryInventory) with the current value.

The CSMS is told each change while connected; whatever changed while it was not (or before a
restart) is told once the station is registered again: what is true now and what the CSMS was
last told otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from evcp.core.model import Device
from evcp.timestamps import timestamp

COMPONENTS: dict[Device, str] = {
    Device.METER: "FiscalMetering",
    Device.RELAY: "PowerContactor",
    Device.PILOT: "CPPWMController",
    Device.CABLE: "Connector",
    Device.LOCK: "ConnectorPlugRetentionLock",
    Device.READER: "TokenReader",
    Device.POWER_FAIL_INPUT: "ElectricalFeed",
}
"""The component whose Problem variable tells each device's fault."""
STATION_DEVICES = (Device.READER, Device.POWER_FAIL_INPUT)
"""Devices of the station as a whole; the others are one per EVSE."""
AT_CONNECTOR = (Device.CABLE, Device.LOCK)
"""Devices of the EVSE's connector (the component names connectorId 1 too)."""
MAX_TECH_INFO = 500
"""EventDataType.techInfo maxLength."""

Key = tuple[int, Device]
"""(EVSE, device); EVSE 0 for a device of the station."""


def component_of(evse: int, device: Device) -> dict[str, Any]:
    """ComponentType of a device's component."""
    component: dict[str, Any] = {"name": COMPONENTS[device]}
    if evse:
        component["evse"] = {"id": evse, **({"connectorId": 1} if device in AT_CONNECTOR else {})}
    return component


class ProblemReports:
    """What is wrong now, and what the CSMS was last told."""

    def __init__(self, set_value: Callable[[str, int | None, str], None]):
        """``set_value(component, evse, value)`` keeps the device model's Problem current."""
        self._set_value = set_value
        self.current: dict[Key, tuple[bool, str]] = {}
        self.told: dict[Key, bool] = {}
        self._telling = asyncio.Lock()
        self._event_ids = itertools.count(int(time.time()))

    def changed(self, evse: int, device: Device, active: bool, detail: str) -> None:
        self.current[(evse, device)] = (active, detail)
        self._set_value(COMPONENTS[device], evse or None, "true" if active else "false")

    def untold(self) -> list[tuple[Key, bool, str]]:
        return [(key, active, detail) for key, (active, detail) in sorted(self.current.items())
                if self.told.get(key, False) != active]

    def payload(self, untold: list[tuple[Key, bool, str]], transaction_of: Callable[[int], str | None],
                at: float) -> dict[str, Any]:
        """A NotifyEventRequest (camelCase) of ``untold``."""
        stamp = timestamp(at)
        data = []
        for (evse, device), active, detail in untold:
            item: dict[str, Any] = {
                "eventId": next(self._event_ids), "timestamp": stamp, "trigger": "Delta",
                "actualValue": "true" if active else "false", "eventNotificationType": "HardWiredNotification",
                "component": component_of(evse, device), "variable": {"name": "Problem"}}
            if not active:
                item["cleared"] = True
            if detail:
                item["techInfo"] = detail[:MAX_TECH_INFO]
            if evse and (transaction_id := transaction_of(evse)) is not None:
                item["transactionId"] = transaction_id
            data.append(item)
        return {"generatedAt": stamp, "seqNo": 0, "tbc": False, "eventData": data}

    async def tell(self, call: Callable[[str, dict], Awaitable[Any]],
                   transaction_of: Callable[[int], str | None]) -> None:
        """Send what the CSMS does not know yet in one NotifyEvent; it stays untold if that fails."""
        async with self._telling:
            untold = self.untold()
            if not untold:
                return
            await call("NotifyEvent", self.payload(untold, transaction_of, time.time()))
            for key, active, _ in untold:
                self.told[key] = active

