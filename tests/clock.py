"""A clock for code that is given ``now`` and ``sleep`` (the firmware updater, the log uploads):
sleeping moves the time on at once and is recorded."""

from __future__ import annotations

import asyncio


class SteppingClock:
    def __init__(self, start: float):
        self.time = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds
        await asyncio.sleep(0)
