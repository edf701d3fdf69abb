from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from evcp.bench import bench_config
from evcp.config import mock_defaults
from evcp.runtime.app import Charger

from .csms import Csms


@pytest.fixture
async def csms():
    server = Csms()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def start_station(tmp_path):
    """``await start_station(csms, version="2.0.1", state_dir=None, connectors=1, **ocpp)``: a bench
    charger (simulated hardware, real drivers, state in tmp_path) with ``connectors`` EVSEs speaking
    to ``csms``; ``ocpp`` replaces [ocpp] settings; stopped at the end of the test."""
    running: list[asyncio.Task] = []

    async def start(server: Csms, version: str = "2.0.1", state_dir=None, connectors: int = 1, **ocpp) -> Charger:
        config = bench_config(state_dir or tmp_path, csms_url=server.url, api_port=0, version=version)
        config = replace(config, ocpp=replace(config.ocpp, **ocpp),
                         charge_point=replace(config.charge_point, connectors=connectors),
                         hardware=replace(config.hardware, connectors=mock_defaults(connectors)))
        charger = Charger(config)
        charger.task = asyncio.create_task(charger.run())
        running.append(charger.task)
        await asyncio.wait_for(charger.started.wait(), 10)
        return charger

    yield start
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
