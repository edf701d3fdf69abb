"""The charger application: hardware, controller, HTTP API; restarts the controller on a reset."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import threading
import time
from pathlib import Path

from evcp.api.http import HttpServer
from evcp.api.routes import Api
from evcp.config import Config
from evcp.ocpp.outbox import latest_timestamp
from evcp.ocpp.trace import FrameTrace, trace_log
from evcp.ocpp201 import transactions as transactions_201
from evcp.ocpp201.adapter import ProtocolChosen
from evcp.runtime.controller import Controller, RestartRequested, station_configuration
from evcp.core import events as ev
from evcp.core.model import StopReason
from evcp.hal import MeterError
from evcp.timestamps import timestamp
from evcp.runtime.hardware import StationHardware
from evcp.runtime.clock import ChargerClock
from evcp.runtime.systemd import Notifier
from evcp.storage import FILENAME, StateStore, StoredMessage, StoredTransaction, StoreError

log = logging.getLogger("evcp")

# A stop (SIGTERM) has explicit budgets, whatever the network does, so that it ends well under
# systemd/evcp.service's TimeoutStopSec=20 (after which systemd SIGKILLs and ExecStopPost= forces
# the relay pins off): the contactors open at once, the stopped transactions get FLUSH_BUDGET_S to
# reach the central system, the tasks CLEANUP_BUDGET_S to end, and at STOP_BUDGET_S the process
# ends regardless (a thread blocked in a DNS lookup or a file transfer cannot hold it).
FLUSH_BUDGET_S = 5.0
CLEANUP_BUDGET_S = 3.0
STOP_BUDGET_S = 10.0
EX_SOFTWARE = 70
"""sysexits.h: the stop overran STOP_BUDGET_S and the process was ended (contactors open)."""


def arm_stop_deadline(budget_s: float, open_relays, status: int = EX_SOFTWARE) -> threading.Timer:
    """End the process ``budget_s`` from now unless it has exited: relays opened once more, then
    ``os._exit``. A daemon timer thread: it does not need the event loop, which may be blocked."""
    def overrun() -> None:
        try:
            open_relays()
        finally:
            log.error("stop took longer than %.1f s: ending the process now (every contactor open)", budget_s)
            logging.shutdown()
            os._exit(status)

    timer = threading.Timer(budget_s, overrun)
    timer.name = "stop-deadline"
    timer.daemon = True
    timer.start()
    return timer


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
    """OCPP frames go to their own rotating file, never to the main log. A StoreError if it
    cannot be written (it lives in storage.state_dir unless logging.trace_file says otherwise)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    except OSError as error:
        raise StoreError(f"{path} cannot be written ({error.strerror or error}); check logging.trace_file, "
                         "storage.state_dir and their permissions") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for old in list(trace_log.handlers):
        trace_log.removeHandler(old)
        old.close()
    trace_log.addHandler(handler)
    trace_log.setLevel(logging.DEBUG)
    trace_log.propagate = False


async def recover_after_an_unclean_stop(store: StateStore, hardware: StationHardware) -> None:
    """Bring the durable state in line with the meters after a power cut or a crash.

    Transactions still open were cut: their StopTransaction is queued with reason PowerLoss
    before anything else (OCTT TC_032_2). A stop queued just before the cut may lack its final
    meter reading. In both cases the contactor opened when the power or the process went, so
    nothing was delivered since: the meter's count now is the final reading, as long as no
    later transaction ran on that connector. The timestamp of a PowerLoss stop is when the
    charger last saw the transaction running (``last_seen_running``).
    """
    latest = store.latest_transactions()
    newest_on = {local_id: connector for connector, local_id in latest.items()}
    meter_now: dict[int, int | None] = {}

    async def count_now(connector: int) -> int | None:
        if connector not in meter_now:
            meter = hardware.connectors[connector - 1].meter if connector <= len(hardware.connectors) else None
            meter_now[connector] = None
            if meter is not None:
                try:
                    meter_now[connector] = round((await meter.read()).energy_wh)
                except MeterError as error:
                    log.warning("connector %d: meter not answering at power-up (%s); using the last saved "
                                "reading", connector, error)
        return meter_now[connector]

    # OCPP 2.0.1 transactions first: their core rows are marked stopped, so the 1.6 steps below
    # leave them alone (each transaction is ended once, in the protocol it was reported in).
    cut = [item.get("evse") for item in (store.load_document(transactions_201.OPEN_TRANSACTIONS) or {}).values()]
    transactions_201.recover(store, {evse: await count_now(evse) for evse in cut if evse})

    for message in store.outbox_stops():
        if message.local_id is None:
            continue
        connector = newest_on.get(message.local_id)
        if connector is None:
            continue
        final = await count_now(connector)
        if final is not None and final > message.payload["meterStop"]:
            store.outbox_update(message.seq, {**message.payload, "meterStop": final}, message.attempts)

    for tx in store.open_transactions():
        meter_stop = max(tx.meter_start_wh, round(tx.last_energy_wh or 0))
        if latest.get(tx.connector) == tx.local_id:
            final = await count_now(tx.connector)
            if final is not None and final >= meter_stop:
                meter_stop = final
        store.outbox_put_stop({
            "transactionId": tx.transaction_id, "meterStop": meter_stop,
            "timestamp": timestamp(last_seen_running(tx, store.outbox_newest_of(tx.local_id))),
            "reason": StopReason.POWER_LOSS.value,
        }, tx.local_id)
        log.warning("connector %d: transaction %s (%s) was running when the charger went down; "
                    "stopping it with PowerLoss, meterStop %d Wh", tx.connector,
                    tx.transaction_id or "not yet confirmed", tx.id_tag, meter_stop)


def last_seen_running(tx: StoredTransaction, newest_queued: StoredMessage | None) -> float:
    """The timestamp of the PowerLoss StopTransaction of ``tx``: the latest moment the charger
    recorded it running, its start, its last saved reading, its newest queued message. The stop
    (OCPP 1.6 §4.10: timestamp, "the date and time on which the transaction is stopped") happened
    when the power went, some time after these and before the next power-up: stamped at the
    power-up, the outage would count as charging time; before its newest queued message (one
    re-stamped when the clock was corrected after the start), the central system would get a stop
    earlier than the transaction's own messages."""
    moments = [tx.started_at, tx.last_reading_at, latest_timestamp(newest_queued.payload) if newest_queued else None]
    return max(moment for moment in moments if moment is not None)


class Charger:
    """One running charger. ``api_port`` is known once ``started`` is set."""

    def __init__(self, config: Config, notifier: Notifier | None = None):
        self.config = config
        self.notifier = notifier or Notifier()
        self.wall_clock = ChargerClock()
        self.trace = FrameTrace()
        self.controller: Controller | None = None
        self.hardware: StationHardware | None = None
        self.api_server: HttpServer | None = None
        self.started = asyncio.Event()
        self.start_new_program = False
        """Set when ``run`` returned for a firmware update: the caller starts the program again."""

    async def _supervise(self) -> None:
        """WATCHDOG=1 only while the control loop advances; STATUS= when the summary changes."""
        watchdog = self.notifier.watchdog_interval_s
        period = min(watchdog / 2, 5.0) if watchdog else 5.0
        while True:
            await asyncio.sleep(period)
            controller = self.controller
            if controller is None:
                continue
            stalled_for = time.monotonic() - controller.loop_advanced_at
            if watchdog and stalled_for < watchdog / 2:
                self.notifier.watchdog()
            elif watchdog:
                log.error("control loop has not advanced for %.1f s: not feeding the watchdog", stalled_for)
            self.notifier.status(controller.summary())

    def open_contactors(self, why: str) -> None:
        """Open every contactor now (synchronously, from the signal handler). Never raises."""
        if self.hardware is not None:
            self.hardware.open_all_relays()
        log.warning("%s: every contactor OPEN", why)

    async def shutdown(self, flush_timeout: float = FLUSH_BUDGET_S) -> None:
        """SIGTERM: contactors open first, then the configured transaction policy, then return."""
        if self.hardware is not None:
            self.hardware.open_all_relays()
        controller = self.controller
        if controller is None or self.config.charge_point.on_shutdown != "stop-transactions":
            return
        controller.dispatch(ev.ShutdownRequested(StopReason.REBOOT))
        if not await controller.adapter.flush(flush_timeout):
            log.warning("shutting down with %d transaction messages queued; they are kept and sent "
                        "after the next start", len(controller.adapter.outbox))

    async def run(self) -> None:
        config = self.config
        store = StateStore(config.storage.state_dir / FILENAME)
        if store.wal_damage:
            log.error("state database damaged: %s (in %s); starting from what it kept, and a security event "
                      "tells the central system", store.wal_damage, store.path.parent)
        try:
            open_trace_file(config.trace_file)
        except BaseException:
            store.close()
            raise
        configuration = station_configuration(config)
        for warning in configuration.restore(store.load_configuration()):
            log.warning("saved OCPP configuration: %s", warning)
        configuration.on_change(lambda *_: store.save_configuration(configuration.snapshot()))
        try:
            self.hardware = await build_hardware(config)
        except BaseException:
            store.close()
            raise
        supervisor = asyncio.create_task(self._supervise(), name="systemd")
        try:
            await recover_after_an_unclean_stop(store, self.hardware)
            store.prune()  # keeps the last 1000 finished transactions and all with messages queued
            api = Api(self.trace, self.hardware.bench, config.api.password)
            self.api_server = HttpServer(api.routes(), config.api.host, config.api.port, name="API (api.listen)")
            await self.api_server.start()
            log.info("charger %s: API on %s, central system %s", config.charge_point.id,
                     self.api_server.url, config.ocpp.csms_url)
            protocol = config.ocpp.version
            while True:
                self.controller = Controller(config, self.hardware, configuration, self.trace, store=store,
                                             wall_clock=self.wall_clock, protocol=protocol)
                api.controller = self.controller
                if not self.started.is_set():
                    self.notifier.ready(self.controller.summary())
                self.started.set()
                try:
                    await self.controller.run()
                except ProtocolChosen as chosen:
                    # ocpp.version "auto": the central system picked this one in the handshake.
                    log.info("%s; speaking it until the charger restarts", chosen)
                    protocol = chosen.version
                except RestartRequested as reset:
                    if self.controller.new_program:
                        log.info("new firmware installed: starting it")
                        self.start_new_program = True
                        return
                    log.info("restarting the controller after a %s reset", reset)
        finally:
            self.hardware.open_all_relays()
            self.notifier.stopping()
            supervisor.cancel()
            if self.api_server is not None:
                await self.api_server.stop()
            await self.hardware.release()
            store.close()
            log.info("stopped; every contactor open")
