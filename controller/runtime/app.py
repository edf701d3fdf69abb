"""The charger application: hardware, controller, HTTP API; restarts the controller on a reset."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
from pathlib import Path

from evcp.api.http import HttpServer
from evcp.api.routes import Api
from evcp.config import Config
from evcp.ocpp16.link import FrameTrace, trace_log
from evcp.runtime.controller import Controller, RestartRequested, station_configuration
from evcp.runtime.hardware import StationHardware

log = logging.getLogger("evcp")


async def build_hardware(config: Config) -> StationHardware:
    """The devices the config names; the simulated ones only when it says backend = "mock"."""
    if config.hardware.backend == "mock":
        from evcp.mocks.station import build_mock_hardware

        log.warning("hardware backend is MOCK: simulated EV, contactor, meter and reader; "
                    "no real device is driven")
        return await build_mock_hardware(config)
    from evcp.hal.factory import build_pi_hardware

    return await build_pi_hardware(config)


def open_trace_file(path: Path) -> None:
    """OCPP frames go to their own rotating file, never to the main log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for old in list(trace_log.handlers):
        trace_log.removeHandler(old)
        old.close()
    trace_log.addHandler(handler)
    trace_log.setLevel(logging.DEBUG)
    trace_log.propagate = False


class Charger:
    """One running charger. ``api_port`` is known once ``started`` is set."""

    def __init__(self, config: Config):
        self.config = config
        self.trace = FrameTrace()
        self.controller: Controller | None = None
        self.hardware: StationHardware | None = None
        self.api_server: HttpServer | None = None
        self.started = asyncio.Event()

    async def run(self) -> None:
        config = self.config
        open_trace_file(config.trace_file)
        configuration = station_configuration(config)
        self.hardware = await build_hardware(config)
        try:
            api = Api(self.trace, self.hardware.bench)
            self.api_server = HttpServer(api.routes(), config.api.host, config.api.port)
            await self.api_server.start()
            log.info("charger %s: API on %s, central system %s", config.charge_point.id,
                     self.api_server.url, config.ocpp.csms_url)
            while True:
                self.controller = Controller(config, self.hardware, configuration, self.trace)
                api.controller = self.controller
                self.started.set()
                try:
                    await self.controller.run()
                except RestartRequested as reset:
                    log.info("restarting the controller after a %s reset", reset)
        finally:
            self.hardware.open_all_relays()
            if self.api_server is not None:
                await self.api_server.stop()
            await self.hardware.release()
            log.info("stopped; every contactor open")
