"""The websocket to the central system, the same for OCPP 1.6J and 2.0.1: its limits, its
keepalive and the reconnect back-off."""

from __future__ import annotations

import asyncio
import logging
import random

from evcp.config import OcppConfig

MAX_FRAME_BYTES = 1 << 20
"""Largest websocket message accepted from the central system (websockets max_size); a bigger one
closes the connection (RFC 6455 §7.4.1, 1009). The largest request this charger takes (a
SendLocalList of the list's maximum length) is well below."""
MAX_QUEUED_FRAMES = 4
"""Frames received and not yet read that the websocket buffers (websockets max_queue); beyond,
it stops reading the socket (TCP back-pressure). With MAX_FRAME_BYTES this bounds what a central
system flooding the charger can make it hold to a few MiB."""
CLOSE_TIMEOUT_S = 1.0
"""How long the websocket closing handshake may take before the TCP connection is dropped."""


def keepalive(ping_interval_s: float) -> tuple[float | None, float | None]:
    """(ping interval, ping timeout) of the websocket: a ping every WebSocketPingInterval
    (OCPP 1.6 §9.1.34, 2.0.1 OCPPCommCtrlr; 0 = none), and a pong due within the same time. A
    link that went half-open is then found within 2 x the interval + CLOSE_TIMEOUT_S: the next
    ping goes out at most one interval after the last pong, its pong is missed one interval
    later, and the closing handshake gets CLOSE_TIMEOUT_S."""
    return (ping_interval_s, ping_interval_s) if ping_interval_s > 0 else (None, None)


def log_disconnected(log: logging.Logger) -> None:
    """The connection's end, from the task that kept it: a WARNING when it was lost, INFO when the
    charger closed it because it is stopping (that task is being cancelled)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        log.info("disconnected from central system: the charger is stopping")
    else:
        log.warning("disconnected from central system")


def reconnect_delay(ocpp: OcppConfig, failures: int) -> float:
    """Exponential back-off with jitter between ocpp.reconnect_min_s and ocpp.reconnect_max_s."""
    delay = min(ocpp.reconnect_max_s, ocpp.reconnect_min_s * 2 ** min(failures - 1, 16))
    return delay * random.uniform(0.5, 1.0)
