"""Small asyncio helpers shared by the shell and the protocol adapter."""

from __future__ import annotations

import asyncio


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
