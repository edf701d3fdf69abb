"""The websocket's keepalive and reconnect back-off, shared by the 1.6 and 2.0.1 adapters."""

from __future__ import annotations

import pytest

from evcp.config import OcppConfig
from evcp.connection import keepalive, reconnect_delay


@pytest.mark.parametrize("interval, expected", [(5, (5, 5)), (30, (30, 30)), (0, (None, None))])
def test_a_pong_is_due_within_one_ping_interval_and_zero_turns_pings_off(interval, expected):
    assert keepalive(interval) == expected


def test_the_reconnect_delay_doubles_with_jitter_up_to_the_maximum():
    ocpp = OcppConfig("ws://127.0.0.1:9000/ocpp", reconnect_min_s=1.0, reconnect_max_s=60.0)
    for failures, full in [(1, 1.0), (2, 2.0), (4, 8.0), (7, 60.0), (40, 60.0)]:
        delays = [reconnect_delay(ocpp, failures) for _ in range(50)]
        assert all(full * 0.5 <= d <= full for d in delays), (failures, min(delays), max(delays))


async def test_a_connection_ended_by_stopping_is_info_and_a_lost_one_a_warning(caplog):
    import asyncio
    import logging

    from evcp.connection import log_disconnected

    log = logging.getLogger("evcp.ocpp")
    caplog.set_level(logging.INFO, "evcp.ocpp")
    log_disconnected(log)  # the link dropped under a running charger

    async def connection_kept_until_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            log_disconnected(log)

    task = asyncio.create_task(connection_kept_until_cancelled())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "disconnected from central system"),
        ("INFO", "disconnected from central system: the charger is stopping")]
