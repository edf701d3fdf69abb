"""OCPP 2.0.1 reservations (Part 2 H) over the core's.

The core keeps the reservations, decides who may use them and ends them (``Station``): this
module turns a ReserveNowRequest into the core's ReserveNowRequested, or refuses it where only
2.0.1 can tell (H01.FR.01 ReservationCtrlr disabled, H01.FR.19 no EVSE named without
NonEvseSpecific, a connector type this station does not have), and keeps the
ReservationStatusUpdates (H04: Expired, Removed) until the CSMS has them: a reservation that
ends while the link is down is still reported once it is back, after a restart too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.exceptions import OCPPError

from evcp.core import events as ev
from evcp.core.model import ReservationEnd
from evcp.ocpp.framing import request_time
from evcp.ocpp201.device_model import DeviceModel

log = logging.getLogger("evcp.ocpp")

UPDATES = "ocpp201-reservation-updates"
"""Name of the stored document of ReservationStatusUpdates not yet delivered."""
REPORTED = {ReservationEnd.EXPIRED: "Expired", ReservationEnd.REMOVED: "Removed"}
"""ReservationUpdateStatusEnumType of the ends the CSMS does not know of otherwise: a used
reservation is in its transaction's TransactionEvent (reservationId), a cancelled one was its
own request (H02)."""


class Refused(Exception):
    """A ReserveNowRequest answered without asking the core."""

    def __init__(self, status: str, why: str):
        super().__init__(why)
        self.status = status


def reserve_now_event(model: DeviceModel, evses: int, id: int, expiry_date_time: str, id_token: dict,
                      connector_type: str | None = None, evse_id: int | None = None,
                      group_id_token: dict | None = None, **_) -> ev.ReserveNowRequested:
    """The core's reservation for a ReserveNowRequest (snake_case fields, as the library gives
    them); raises Refused for what the core cannot know, FormatViolation for a malformed date."""
    if not model.flag("ReservationCtrlr", "Enabled"):
        raise Refused("Rejected", "ReservationCtrlr.Enabled is false")  # H01.FR.01
    if evse_id is not None and not 1 <= evse_id <= evses:
        raise Refused("Rejected", f"no EVSE {evse_id}")
    if connector_type is not None:
        types = {model.evse_value("Connector", "ConnectorType", e) for e in
                 ((evse_id,) if evse_id is not None else range(1, evses + 1))}
        if connector_type not in types:
            raise Refused("Rejected", f"no connector of type {connector_type}")
    if evse_id is None and not model.flag("ReservationCtrlr", "NonEvseSpecific"):
        raise Refused("Rejected", "no EVSE named and ReservationCtrlr.NonEvseSpecific is false")  # H01.FR.19
    group = group_id_token["id_token"] if group_id_token else None
    return ev.ReserveNowRequested(evse_id or 0, id, id_token["id_token"], request_time(expiry_date_time,
                                                                                     "expiryDateTime"), group)


class StatusUpdates:
    """ReservationStatusUpdateRequests (H04) in the order the reservations ended, stored until
    answered."""

    def __init__(self, load: Callable[[str], Any], save: Callable[[str, Any], None]):
        self._save = save
        self._sending = asyncio.Lock()
        self.pending: list[dict[str, Any]] = [u for u in (load(UPDATES) or []) if isinstance(u, dict)]

    def ended(self, reservation_id: int, reason: ReservationEnd) -> bool:
        """Note the end of a reservation; whether the CSMS is to hear of it."""
        status = REPORTED.get(reason)
        if status is None:
            return False
        self.pending.append({"reservationId": reservation_id, "reservationUpdateStatus": status})
        self._save(UPDATES, self.pending)
        return True

    async def deliver(self, call: Callable[[str, dict], Awaitable[Any]]) -> None:
        """Send what waits, oldest first, one at a time. Without an answer it stays for the next
        connection; a CALLERROR drops it (sent again, it would be refused again)."""
        async with self._sending:
            while self.pending:
                update = self.pending[0]
                try:
                    await call("ReservationStatusUpdate", update)
                except OCPPError as error:
                    log.warning("ReservationStatusUpdate of reservation %s refused by the central system (%s %s); "
                                "not sent again", update["reservationId"], error.code, error.description)
                except (ConnectionError, TimeoutError) as error:
                    log.info("ReservationStatusUpdate of reservation %s kept for the next connection (%s)",
                             update["reservationId"], error or type(error).__name__)
                    return
                else:
                    log.info("ReservationStatusUpdate: reservation %s %s", update["reservationId"],
                             update["reservationUpdateStatus"])
                self.pending.pop(0)
                self._save(UPDATES, self.pending)
