"""Small asyncio helpers shared by the shell and the protocol adapter."""

from __future__ import annotations

import asyncio
import math


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes; True if it was set.

    Uses ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for``
    can swallow a cancellation that arrives just as the event is set, and a loop
    around it then never stops (CPython gh-86296).
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False


def next_multiple(period: float) -> float:
    """The loop time of the next multiple of ``period``. Periodic work of several tasks timed on
    this one grid falls due in the same loop iteration: the process wakes once, not once a task."""
    now = asyncio.get_running_loop().time()
    return (math.floor(now / period) + 1) * period


async def wait_event_until(event: asyncio.Event, deadline: float) -> bool:
    """``wait_event`` up to the loop time ``deadline`` (exactly: see ``next_multiple``)."""
    try:
        async with asyncio.timeout_at(deadline):
            await event.wait()
        return True
    except TimeoutError:
        return False


async def sleep_until(deadline: float) -> None:
    """Sleep until the loop time ``deadline`` (``asyncio.sleep`` would add the time it reads)."""
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    timer = loop.call_at(deadline, woken.set_result, None)
    try:
        await woken
    finally:
        timer.cancel()
