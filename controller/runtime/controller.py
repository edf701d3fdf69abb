"""The asyncio shell around the core: hardware in, core decisions out, performed at once.

Everything runs in one event loop. Each I/O source has a task (pilot, meter,
ticks, the central-system link); the reader thread and gpio callbacks hop
onto the loop with ``call_soon_threadsafe``. ``dispatch`` hands one event to
the core and performs the returned actions before returning: contactor and
pilot first (they are in the list's front), protocol messages queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import nullcontext
from typing import Any, Callable, TypeVar

import evcp
from evcp.aio import next_multiple, sleep_until, wait_event_until
from evcp.config import Config
from evcp.core import actions as act
from evcp.core import events as ev
from evcp.core.model import ConnectorStatus, Device, ErrorCode, Settings, StopReason
from evcp.core.pilot import PilotFilter
from evcp.core.station import PLUGGED, LockState, Station
from evcp.hal import HardwareError, MeterError, WatchableInputs
from evcp.hal.proximity import ProximityReading
from evcp.ocpp16.adapter import Ocpp16Adapter, settings_from
from evcp.ocpp16.configuration import Configuration
from evcp.ocpp.trace import FrameTrace
from evcp.runtime.clock import ChargerClock
from evcp.runtime.deadman import Deadman
from evcp.runtime.hardware import StationHardware
from evcp.runtime.observers import (PROCESS_COUNTERS, PROCESS_STARTED_MONOTONIC, AuthorizationObserver,
                                    LinkObserver, count_transactions)
from evcp.storage import StateStore

T = TypeVar("T")

log = logging.getLogger("evcp.core")
hw_log = logging.getLogger("evcp.hal")

PILOT_POLL_S = 0.01
"""Pilot sampling while a reading settles, and always for backends without edge events (ADC)."""
PILOT_BACKSTOP_S = 0.5
"""Edge-driven backends are still read this often, in case an edge is ever missed."""
PILOT_WHILE_CLOSED_S = 0.1
"""While a contactor is closed the pilot loop runs at least this often: it feeds the deadman
(evcp.runtime.deadman, 0.5 s) and toggles hardware.relay_heartbeat_pin."""
TICK_S = 1.0
"""The backstop reads, the ticks and the meter polls fall due on one grid of multiples of their
periods (``next_multiple``): idle, the process wakes twice a second, not once per loop."""
PERSIST_READING_S = 10.0
"""During a transaction the last meter reading is written at least this often (PowerLoss meterStop)."""
IDLE_METER_POLL_S = 10.0
"""Meter poll period without a transaction; ``meter.poll_interval_s`` applies during one."""
METER_FAILURES_FOR_FAULT = 3
"""Consecutive failed reads before PowerMeterFailure is reported (hardware.md §7)."""
RESERVATIONS = "reservations"
CHARGING_PROFILES = "charging-profiles"
"""Names of the stored documents."""
FEEDBACK_SETTLE_S = 0.25
"""How long the contactor's mirror contact may disagree before it is a fault."""
PP_POLL_S = 1.0
"""While an EV is connected the proximity pilot is read again this often; a changed reading must be
seen twice in a row (a contactor switching next to it must not stop a session)."""
UNLOCK_ANSWER_MARGIN_S = 5.0
"""UnlockConnector waits for the lock's own timeout plus this, then answers UnlockFailed."""


TASKS_END_S = 2.5
"""How long the controller waits for its cancelled tasks (the websocket's closing handshake takes
up to 2 s) before it goes on; a stop must stay within evcp.runtime.app.STOP_BUDGET_S."""


class RestartRequested(Exception):
    def __init__(self, hard: bool):
        super().__init__("hard" if hard else "soft")
        self.hard = hard


class Controller:
    def __init__(self, config: Config, hardware: StationHardware, configuration: Configuration,
                 trace: FrameTrace | None = None, clock: Callable[[], float] | None = None,
                 store: StateStore | None = None, wall_clock: ChargerClock | None = None,
                 protocol: str | None = None):
        self.config = config
        self.hardware = hardware
        self.wall_clock = wall_clock or ChargerClock()
        self.clock = clock or self.wall_clock.now
        self.configuration = configuration
        self.store = store
        self.protocol = protocol or config.ocpp.version
        """The protocol setting this controller runs under: ocpp.version ("1.6", "2.0.1", or "auto":
        2.0.1 offered first, see ``Ocpp201Adapter``), "1.6" once the central system picked it under
        "auto". What the connection speaks is ``adapter.protocol``."""
        self.installer_settings = Settings(
            max_current_a=config.charge_point.max_current_a,
            tethered_cable=config.charge_point.cable == "tethered",
            cable_sensing=tuple(n for n, d in enumerate(hardware.connectors, 1) if d.cable is not None),
            socket_locks=tuple(n for n, d in enumerate(hardware.connectors, 1) if d.lock is not None),
            mirror_contacts=tuple(n for n, c in enumerate(config.hardware.connectors, 1)
                                  if c.relay.feedback_pin is not None),
            offline_start=config.ocpp.allow_offline_start,
            require_meter=config.charge_point.require_meter,
            phases=config.charge_point.phases,
            voltage_v=config.charge_point.voltage_v)
        """The core's settings that the installer's file and the hardware decide; the protocol spoken
        decides the others: the OCPP 1.6 keys under 1.6, the 2.0.1 device model otherwise ("auto"
        included, until the central system picks 1.6), which the 2.0.1 adapter applies."""
        speaks_1_6 = self.protocol == "1.6"
        self.station = Station(config.charge_point.connectors,
                               settings_from(configuration, self.installer_settings) if speaks_1_6
                               else self.installer_settings,
                               first_local_id=store.next_local_id() if store else 1)
        if store is not None:
            self.station.restore_availability(store.load_availability())
            self.station.restore_reservations(store.load_document(RESERVATIONS) or [])
            for dropped in self.station.restore_charging_profiles(store.load_document(CHARGING_PROFILES) or []):
                log.error("stored charging profile not restored: %s", dropped)
        self._persisted_reading_at: dict[int, float] = {}
        if speaks_1_6:
            self.adapter = Ocpp16Adapter(config, self, configuration, trace, store)
        else:
            from evcp.ocpp201.adapter import Ocpp201Adapter

            self.adapter = Ocpp201Adapter(config, self, trace, store, offer_1_6=self.protocol == "auto")
        self.adapter.outbox.clock_trusted = lambda: self.wall_clock.trusted
        self.filters = {i + 1: PilotFilter(leave_charge_s=d.pilot_leave_charge_s)
                        for i, d in enumerate(hardware.connectors)}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restart: asyncio.Future | None = None
        self.new_program = False
        """A firmware installation replaced the program: the process must start it anew."""
        self.loop_advanced_at = time.monotonic()
        """When the pilot loop last ran (monotonic): the systemd watchdog and the deadman watch it."""
        self._pilot_wakeup: asyncio.Event | None = None
        self.deadman = Deadman(lambda: self.loop_advanced_at, self._any_contactor_closed, hardware.open_all_relays)
        self._meter_locks = {cid: asyncio.Lock() for cid in range(1, len(hardware.connectors) + 1)}
        self._cable_reported: dict[int, tuple[float | None, str]] = {}
        self._cable_candidate: dict[int, tuple[float | None, str]] = {}
        self._cable_read_at: dict[int, float] = {}
        self._welded: set[int] = set()
        """Connectors whose contactor was seen welded: latched until the controller restarts."""
        self._unlock_answers: dict[int, list[asyncio.Future]] = {}
        self._lock_moves: set[asyncio.Task] = set()
        self._meter_wakeups = {cid: asyncio.Event() for cid in range(1, len(hardware.connectors) + 1)}
        self.authorization = AuthorizationObserver()
        self.link = LinkObserver(self.adapter)
        self.on_change: Callable[[], None] | None = None
        """Called after every dispatch: the API pushes the new status to open status pages."""

    # ----------------------------------------------------------------- the core, driven

    def dispatch(self, event: ev.Event) -> list[act.Action]:
        now = self.clock()
        self.authorization.event(event, now)
        actions = self.station.handle(event, now)
        self._perform(actions)
        count_transactions(actions)
        if self.on_change is not None:
            self.on_change()
        return actions

    def post(self, event: ev.Event) -> None:
        """Dispatch soon, from the loop (never re-entering a dispatch in progress)."""
        (self._loop or asyncio.get_running_loop()).call_soon(self.dispatch, event)

    def post_threadsafe(self, event: ev.Event) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.dispatch, event)

    def _perform(self, actions: list[act.Action]) -> None:
        for a in actions:
            if isinstance(a, act.OpenRelay):
                self._switch_contactor(a.connector, close=False)
                if self.hardware.heartbeat is not None and not self._any_contactor_closed():
                    self.hardware.heartbeat.stop()  # held low, not left at its last level
                log.info("connector %d: contactor OPEN (%s)", a.connector, a.why)
            elif isinstance(a, act.CloseRelay):
                if self.hardware.heartbeat is not None:
                    self.hardware.heartbeat.toggle()  # the monostable lets the driver through first
                self._switch_contactor(a.connector, close=True)
                self.deadman.arm()  # after the close: the thread re-checks once armed
                if self._pilot_wakeup is not None:
                    self._pilot_wakeup.set()  # its next wait is the shorter one of a closed contactor
                log.info("connector %d: contactor CLOSED (transaction accepted, EV requests charge)", a.connector)
            elif isinstance(a, act.OfferCurrent):
                pilot = self.hardware.connectors[a.connector - 1].pilot
                pilot.offer_current(a.amps) if a.amps is not None else pilot.stop_offer()
                self.adapter.perform(a)  # OCPP 2.0.1 reports a changed rate (TransactionEvent ChargingRateChanged)
            elif isinstance(a, act.LockSocket):
                self._move_lock(a.connector, to_locked=True, why="session starting")
            elif isinstance(a, act.UnlockSocket):
                self._move_lock(a.connector, to_locked=False, why=a.why, requested=a.requested)
            elif isinstance(a, act.UnlockRefused):
                log.error("connector %d: UnlockConnector answered UnlockFailed, the plug stays locked (%s)",
                          a.connector, a.why)
                for answer in self._unlock_answers.pop(a.connector, []):
                    if not answer.done():
                        answer.set_result("UnlockFailed")
            elif isinstance(a, act.Notice):
                log.info("%s", a.text)
            elif isinstance(a, act.Restart):
                self._request_restart(a.hard)
            elif isinstance(a, act.Answer):
                pass
            elif isinstance(a, act.AvailabilityChanged):
                if self.store is not None:
                    self.store.save_availability(a.connector, a.operative)
            elif isinstance(a, act.ReservationsChanged):
                if self.store is not None:
                    self.store.save_document(RESERVATIONS, list(a.reservations))
            elif isinstance(a, act.ChargingProfilesChanged):
                if self.store is not None:
                    self.store.save_document(CHARGING_PROFILES, list(a.saved))
            elif isinstance(a, act.ReportTransactionStart):
                self._meter_wakeups[a.connector].set()
                # The transaction and what the protocol keeps of it (1.6: its StartTransaction
                # queued; 2.0.1: its state and TransactionEvent) in one commit: killed between
                # the two, the charger would stop at power-up (PowerLoss) a transaction the
                # central system never heard of, and bill nothing for it.
                with self.store.atomic() if self.store is not None else nullcontext():
                    if self.store is not None:
                        self.store.transaction_started(a.local_id, a.connector, a.id_tag, a.meter_start_wh, a.at)
                    self.adapter.perform(a)
            else:
                if isinstance(a, act.ReportMeterValues):
                    self._persist_reading(a.connector, a.energy_wh, a.at, reported=True)
                if isinstance(a, act.StatusChanged):
                    log.info("connector %d: %s%s", a.connector, a.status.value,
                             f" ({a.error_code.value}: {a.info})" if a.error_code is not ErrorCode.NO_ERROR else "")
                self.adapter.perform(a)

    def _move_lock(self, cid: int, to_locked: bool, why: str, requested: bool = False) -> None:
        """Drive the socket lock in a worker thread (it takes up to its timeout); the core hears the
        feedback's verdict as LockReported, and a waiting UnlockConnector its answer."""
        lock = self.hardware.connectors[cid - 1].lock
        log.info("connector %d: %s the plug (%s)", cid, "locking" if to_locked else "unlocking", why)

        async def move() -> None:
            try:
                locked = await asyncio.to_thread(lock.lock if to_locked else lock.unlock)
                detail = "" if locked == to_locked else (
                    f"the feedback still says {'locked' if locked else 'unlocked'}")
            except HardwareError as error:
                locked, detail = not to_locked, str(error)
            if detail:
                hw_log.error("connector %d: socket lock: %s", cid, detail)
            self.dispatch(ev.LockReported(cid, locked, detail))
            if requested:
                for answer in self._unlock_answers.pop(cid, []):
                    if not answer.done():
                        answer.set_result("UnlockFailed" if locked else "Unlocked")

        task = asyncio.get_running_loop().create_task(move(), name=f"lock-{cid}")
        self._lock_moves.add(task)
        task.add_done_callback(self._lock_moves.discard)

    async def unlock_connector(self, connector: int) -> str:
        """UnlockConnector (OCPP 1.6 §5.19): stop the transaction, open the contactor, unlock; the
        answer is the lock feedback's: Unlocked or UnlockFailed (NotSupported without a lock)."""
        answer = asyncio.get_running_loop().create_future()
        self._unlock_answers.setdefault(connector, []).append(answer)
        for action in self.dispatch(ev.UnlockRequested(connector)):
            if isinstance(action, act.Answer):
                self._unlock_answers[connector].remove(answer)
                return action.status
        lock_config = self.config.hardware.connectors[connector - 1].lock
        try:
            return await asyncio.wait_for(answer, 2 * lock_config.timeout_s + UNLOCK_ANSWER_MARGIN_S)
        except asyncio.TimeoutError:
            log.error("connector %d: the unlock did not finish in time; answering UnlockFailed", connector)
            return "UnlockFailed"

    def _read_cable(self, cid: int, devices, now: float, settle: bool) -> None:
        """Read the proximity pilot and tell the core what changed. ``settle``: report at once (the
        pilot just left or reached A, so the core must know the cable before the pilot state);
        otherwise a new reading must repeat before it counts."""
        reading = self._read_proximity(devices.cable)
        if settle:
            again = self._read_proximity(devices.cable) if not reading.problem else reading
            if (again.rating_a, again.problem) != (reading.rating_a, reading.problem):
                reading = self._read_proximity(devices.cable)
        seen = (reading.rating_a, reading.problem)
        self._cable_read_at[cid] = now
        if seen == self._cable_reported.get(cid):
            self._cable_candidate.pop(cid, None)
            return
        if not settle and self._cable_candidate.get(cid) != seen:
            self._cable_candidate[cid] = seen
            return
        self._cable_candidate.pop(cid, None)
        self._cable_reported[cid] = seen
        if reading.problem:
            hw_log.error("connector %d: %s", cid, reading.problem)
        self.dispatch(ev.CableChanged(cid, reading.rating_a, reading.problem))

    @staticmethod
    def _read_proximity(cable) -> ProximityReading:
        """One reading of the proximity pilot; one that cannot be read is a PP fault (no charge,
        said in the status), never an exception that would end the pilot task."""
        try:
            return cable.read()
        except HardwareError as error:
            return ProximityReading(None, None, f"proximity pilot unreadable: {error}")

    def _persist_reading(self, cid: int, energy_wh: float, at: float, reported: bool) -> None:
        """The last reading survives a power cut: written at every reported sample, and during a
        transaction at most every PERSIST_READING_S otherwise (an SD card wears with every write)."""
        if self.store is None:
            return
        running = self.station.connectors[cid].transaction is not None
        last = self._persisted_reading_at.get(cid, 0.0)
        if reported or (running and at - last >= PERSIST_READING_S):
            self.store.meter_reading(cid, energy_wh, at)
            self._persisted_reading_at[cid] = at

    def central_system_time(self, current_time: str) -> None:
        """currentTime from BootNotification.conf / Heartbeat.conf: corrects an unsynchronised
        clock, and the queued messages stamped before the correction."""
        correction = self.wall_clock.central_system_time(current_time)
        if correction:
            self.adapter.security_event("SettingSystemTime", f"clock corrected by {correction:+.1f} s "
                                        "from the central system's currentTime")
            shifted = self.adapter.outbox.retime(correction)
            if shifted:
                log.warning("%d queued messages re-stamped by %+.1f s", shifted, correction)

    def apply_settings(self, settings: Settings) -> None:
        self.station.apply_settings(settings)

    @property
    def settings(self) -> Settings:
        return self.station.settings

    # ----------------------------------------------------------------- queries for the adapter and API

    def status_of(self, connector: int) -> tuple[ConnectorStatus, ErrorCode, str]:
        return self.station.status_of(connector)

    def offered_current(self, connector: int) -> float | None:
        return self.station.connectors[connector].offered_a

    def composite_schedule(self, connector: int, duration_s: int, unit: str | None):
        return self.station.composite_schedule(connector, duration_s, unit, self.clock())

    def meter_report(self, connector: int, context: str) -> act.ReportMeterValues | None:
        return self.station.meter_report(connector, self.clock(), context)

    def _switch_contactor(self, connector: int, close: bool) -> None:
        """Move the relay; when it moved, tell the pilot, whose readings blank the switching spike."""
        devices = self.hardware.connectors[connector - 1]
        moved = devices.relay.is_closed != close
        devices.relay.close() if close else devices.relay.open()
        if moved:
            devices.pilot.note_contactor_switched()

    def status(self) -> dict[str, Any]:
        """The document behind GET /api/status."""
        now = self.clock()
        connectors = []
        for cid, c in self.station.connectors.items():
            status, error, info = self.station.status_of(cid)
            tx = c.transaction
            sample = c.last_sample
            connectors.append({
                "id": cid,
                "status": status.value,
                "error_code": error.value,
                "info": info,
                "relay_closed": self.hardware.connectors[cid - 1].relay.is_closed,
                "relay_feedback_closed": (feedback := self._feedback_of(cid)),
                "contactor": self._contactor_word(cid, feedback),
                "cable": self._cable_word(c),
                "cable_rating_a": c.cable_a if c.senses_cable else None,
                "lock": self.station.lock_state(cid),
                "current_a": list(sample.current_a) if sample else [],
                "voltage_v": list(sample.voltage_v) if sample else [],
                "pilot": c.pilot,
                "pilot_diagnosis": self.hardware.connectors[cid - 1].pilot.diagnosis,
                "transaction_id": tx.transaction_id if tx else None,
                "id_tag": tx.id_tag if tx else c.auth_tag,
                "energy_wh": sample.energy_wh if sample else 0.0,
                "power_w": sample.power_w if sample else 0.0,
                "session_energy_wh": (sample.energy_wh - tx.meter_start_wh) if tx and sample else 0.0,
                "current_limit_a": c.offered_a,
                "charging_limit_a": self.station.charging_limit_a(cid, self.clock()),
                "reservation_id": reservation.id if (reservation := self.station.reservation_on(cid)) else None,
                "operative": c.operative,
                "session_started_at": tx.started_at if tx else None,
                "session_duration_s": max(now - tx.started_at, 0.0) if tx else None,
            })
        status0, error0, info0 = self.station.status_of(0)
        bench = self.hardware.bench
        extra = {"bench": {"faults": bench.faults(), "ev": bench.ev_state()}} if bench is not None else {}
        connected = self.adapter.connected
        return {
            **extra,
            "charge_point": {"id": self.config.charge_point.id, "backend": self.config.hardware.backend,
                             "status": status0.value, "error_code": error0.value, "info": info0,
                             "version": evcp.__version__, "time": now,
                             "uptime_s": round(time.monotonic() - PROCESS_STARTED_MONOTONIC, 1)},
            "ocpp": {"connected": connected, "registration": self.adapter.registration,
                     "version": self.protocol, "protocol": self.adapter.protocol,
                     "csms_url": self.adapter.url, "queued_messages": len(self.adapter.outbox),
                     **self.link.status(connected)},
            "connectors": connectors,
            "authorization": self.authorization.last,
            "counters": {"transactions_started": PROCESS_COUNTERS.transactions_started,
                         "transactions_stopped": PROCESS_COUNTERS.transactions_stopped},
        }

    def _cable_word(self, c) -> str | None:
        if self.settings.tethered_cable:
            return "tethered"
        if not c.senses_cable:
            return None
        if Device.CABLE in c.faults:
            return "fault"
        return "none" if c.cable_a is None else f"{c.cable_a:g}A"

    def _feedback_of(self, cid: int) -> bool | None:
        try:
            return self.hardware.connectors[cid - 1].relay.feedback_closed()
        except HardwareError:
            return None

    def _contactor_word(self, cid: int, measured: bool | None) -> str:
        """One word for people: the commanded state, unless the mirror contact says otherwise."""
        commanded = self.hardware.connectors[cid - 1].relay.is_closed
        if cid in self._welded:
            return "welded"
        if measured is None or measured == commanded:
            return "closed" if commanded else "open"
        return "stuck-open" if commanded else "mismatch"

    def summary(self) -> str:
        """One line for systemd's STATUS= and the journal."""
        parts = []
        for cid, c in self.station.connectors.items():
            status = self.station.status_of(cid)[0].value
            power = f" {c.last_sample.power_w / 1000:.1f} kW" if c.relay_closed and c.last_sample else ""
            parts.append(f"{cid}: {status}{power}")
        link = "CSMS connected" if self.adapter.connected else "CSMS offline"
        queued = len(self.adapter.outbox)
        return "; ".join(parts) + f"; {link}" + (f", {queued} queued" if queued else "")

    # ----------------------------------------------------------------- the shell's tasks

    async def run(self) -> None:
        """Run until cancelled or a reset; the contactors are open whenever this returns or raises."""
        self._loop = asyncio.get_running_loop()
        self._restart = self._loop.create_future()
        tasks: list[asyncio.Task] = []
        self.loop_advanced_at = time.monotonic()
        self.deadman.start()
        try:
            self._perform(self.station.start(self.clock()))
            for cid, devices in enumerate(self.hardware.connectors, start=1):
                self._report_contacts(cid, self._feedback_of(cid))
                if devices.lock is not None:
                    try:
                        self.dispatch(ev.LockReported(cid, devices.lock.is_locked))
                    except HardwareError as error:
                        hw_log.error("connector %d: socket lock feedback unreadable: %s", cid, error)
                        self.dispatch(ev.LockReported(cid, True, str(error)))
                if devices.cable is not None:
                    self._read_cable(cid, devices, self.clock(), settle=True)
            if self.hardware.reader is not None:
                self.hardware.reader.start(
                    lambda tag: self.post_threadsafe(ev.TagPresented(tag)),
                    lambda ok, why="": self.post_threadsafe(ev.DeviceFault(
                        0, Device.READER, not ok, "" if ok else why or "reader not answering")))
            tasks.append(asyncio.create_task(self._watch_pilots(), name="pilot"))
            if self.hardware.power_fail is not None:
                tasks.append(asyncio.create_task(self._watch_power(self.hardware.power_fail), name="power"))
            tasks.append(asyncio.create_task(self._ticks(), name="ticks"))
            for cid, devices in enumerate(self.hardware.connectors, start=1):
                if devices.meter is not None:
                    tasks.append(asyncio.create_task(self._poll_meter(cid), name=f"meter-{cid}"))
            tasks.append(asyncio.create_task(self.adapter.run(), name="ocpp"))
            done, _ = await asyncio.wait([self._restart, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not self._restart:
                    task.result()
                    raise RuntimeError(f"task {task.get_name()} ended unexpectedly")
            raise RestartRequested(self._restart.result())
        finally:
            self.hardware.open_all_relays()
            self.deadman.stop()
            self.adapter.detach()
            if self.hardware.reader is not None:
                self.hardware.reader.stop()
            ending = [*tasks, *self._lock_moves]
            for task in ending:
                task.cancel()
            if ending:
                _, hung = await asyncio.wait(ending, timeout=TASKS_END_S)
                if hung:
                    log.error("tasks still ending after %.0f s, left behind: %s", TASKS_END_S,
                              ", ".join(sorted(task.get_name() for task in hung)))

    async def restart_into_new_firmware(self) -> None:
        """After an installed firmware update: stop every transaction (reason HardReset), deliver
        the messages, then run the new program in this process (``Charger.run`` returns,
        ``evcp run`` executes itself again)."""
        self.new_program = True
        self.dispatch(ev.ResetRequested(hard=True))

    def _request_restart(self, hard: bool) -> None:
        async def flush_then_restart():
            delivered = await self.adapter.flush(timeout=10.0)
            if not delivered:
                log.warning("restarting with %d transaction messages still queued", len(self.adapter.outbox))
            if self._restart is not None and not self._restart.done():
                self._restart.set_result(hard)
        log.info("%s restart: transactions stopped, restarting once their messages are delivered",
                 "hard" if hard else "soft")
        asyncio.get_running_loop().create_task(flush_then_restart())

    async def _watch_pilots(self) -> None:
        """Read every pilot (and the contactor's and the lock's feedback) when an input edge
        arrives, and every 10 ms while a reading settles; boards without edges (ADC) are read
        every 10 ms."""
        loop = asyncio.get_running_loop()
        edge = self._pilot_wakeup = asyncio.Event()
        connectors = self.hardware.connectors
        for devices in connectors:
            for device in (devices.pilot, devices.relay, devices.lock):
                if isinstance(device, WatchableInputs):
                    device.watch(lambda: loop.call_soon_threadsafe(edge.set))
        edge_driven = all(isinstance(d.pilot, WatchableInputs) for d in connectors)
        disagree_since: dict[int, float] = {}
        lock_opening: set[int] = set()
        while True:
            edge.clear()
            now = self.clock()
            self.loop_advanced_at = time.monotonic()
            self._after_a_stall()
            closed = self._any_contactor_closed()
            if closed and self.hardware.heartbeat is not None:
                self.hardware.heartbeat.toggle()
            settling = False
            for cid, devices in enumerate(connectors, start=1):
                pilot_filter = self.filters[cid]
                before = pilot_filter.state
                # No valid CP state, no energy (IEC 61851-1 Annex A): an unreadable pilot is a pilot
                # fault, the connector Faulted with its contactor open, and reads as unstable.
                state = pilot_filter.feed(self._read_or_fault(cid, Device.PILOT, "control pilot",
                                                                devices.pilot.read_state), now)
                if devices.cable is not None:
                    if state is not None and (state == "A") != (before == "A"):
                        self._read_cable(cid, devices, now, settle=True)
                    elif pilot_filter.state in PLUGGED and now - self._cable_read_at.get(cid, 0.0) >= PP_POLL_S:
                        self._read_cable(cid, devices, now, settle=False)
                if state is not None:
                    self.dispatch(ev.PilotChanged(cid, state, getattr(devices.pilot, "diagnosis", None) or ""))
                self._check_feedback(cid, devices.relay, now, disagree_since)
                if devices.lock is not None:
                    self._check_lock(cid, devices.lock, lock_opening)
                settling = settling or pilot_filter.settling or cid in disagree_since or cid in lock_opening
            if settling or not edge_driven:
                await asyncio.sleep(PILOT_POLL_S)
            else:
                await wait_event_until(edge, next_multiple(PILOT_WHILE_CLOSED_S if closed else PILOT_BACKSTOP_S))

    def _read_or_fault(self, connector: int, device: Device, what: str, read: Callable[[], T]) -> T | None:
        """``read()``, or None when it raises HardwareError: the device is then faulty for the core
        (DeviceFault "<what> unreadable: <error>", logged once, never an exception that would end
        the task reading it) until a read succeeds again. ``connector`` 0: the charge point's own."""
        faults = self.station.station_faults if connector == 0 else self.station.connectors[connector].faults
        where = f"connector {connector}: " if connector else ""
        try:
            value = read()
        except HardwareError as error:
            if device not in faults:
                hw_log.error("%s%s unreadable: %s", where, what, error)
                self.dispatch(ev.DeviceFault(connector, device, True, f"{what} unreadable: {error}"))
            return None
        if device in faults:
            hw_log.warning("%s%s reads again", where, what)
            self.dispatch(ev.DeviceFault(connector, device, False))
        return value

    def _any_contactor_closed(self) -> bool:
        return any(d.relay is not None and d.relay.is_closed for d in self.hardware.connectors)

    def _after_a_stall(self) -> None:
        """The deadman opened the contactors behind the core's back: tell the core, as a contactor
        fault that clears at once, so it stops what needed the contactor closed."""
        stalled_s = self.deadman.take_trip()
        if stalled_s is None:
            return
        for cid, c in self.station.connectors.items():
            if c.relay_closed:
                detail = f"control loop stalled {stalled_s:.2f} s: contactor opened by the deadman"
                hw_log.error("connector %d: %s", cid, detail)
                self.dispatch(ev.DeviceFault(cid, Device.RELAY, True, detail))
                self.dispatch(ev.DeviceFault(cid, Device.RELAY, False))

    async def _watch_power(self, power_fail) -> None:
        """Mains failing: stop every transaction while the backup power lasts (OCTT TC_032_1);
        mains back before the backup ran out: restart, so sessions can start again."""
        loop = asyncio.get_running_loop()
        edge = asyncio.Event()
        power_fail.watch(lambda: loop.call_soon_threadsafe(edge.set))
        stopped = False
        while True:
            edge.clear()
            # An input that cannot be read stops nothing (a cut it misses is recovered at the next
            # start, as any power cut without backup): a fault of the charge point until it reads again.
            failing = self._read_or_fault(0, Device.POWER_FAIL_INPUT, "power-fail input",
                                          lambda: power_fail.failing)
            if failing and not stopped:
                log.critical("mains power failing: stopping every transaction (PowerLoss)")
                self.dispatch(ev.ShutdownRequested(StopReason.POWER_LOSS))
                stopped = True
            elif stopped and failing is False:
                log.warning("mains power back before the backup ran out: restarting")
                self._request_restart(hard=False)
                stopped = False
            await wait_event_until(edge, next_multiple(PILOT_BACKSTOP_S))

    def _report_contacts(self, cid: int, measured: bool | None) -> None:
        """Tell the core what the mirror contact says, when that changed: the socket is released
        only once the contacts are measured open."""
        if measured is not None and self.station.connectors[cid].contacts_closed != measured:
            self.dispatch(ev.ContactorMeasured(cid, measured))

    def _check_feedback(self, cid: int, relay, now: float, disagree_since: dict[int, float]) -> None:
        faulted = Device.RELAY in self.station.connectors[cid].faults
        try:
            feedback = relay.feedback_closed()
        except HardwareError as error:
            # Nothing proves the contacts open: a contactor fault (no charge, the plug stays locked),
            # which clears once the mirror contact reads open again.
            if not faulted:
                hw_log.error("connector %d: %s", cid, error)
                self.dispatch(ev.DeviceFault(cid, Device.RELAY, True, f"mirror contact unreadable: {error}"))
            return
        if feedback is None:
            return
        self._report_contacts(cid, feedback)
        if feedback != relay.is_closed:
            since = disagree_since.setdefault(cid, now)
            if not faulted and now - since >= FEEDBACK_SETTLE_S:
                detail = "welded: closed while commanded open" if feedback else "does not close when commanded"
                hw_log.error("connector %d: contactor feedback %s", cid, detail)
                if feedback:
                    # Latched, as Tarragon does: a welded contactor that "agrees again" may be a broken
                    # feedback wire, so only a restart of the controller (e.g. a Reset) clears it.
                    self._welded.add(cid)
                self.dispatch(ev.DeviceFault(cid, Device.RELAY, True, detail))
        else:
            disagree_since.pop(cid, None)
            if faulted and not relay.is_closed and cid not in self._welded:
                hw_log.warning("connector %d: contactor feedback agrees again", cid)
                self.dispatch(ev.DeviceFault(cid, Device.RELAY, False))

    def _check_lock(self, cid: int, lock, opening: set[int]) -> None:
        """A lock at rest that the core holds locked: a feedback that reads unlocked (or cannot be
        read) twice in a row, one settling poll apart, is a lock that opened by itself."""
        if self.station.connectors[cid].lock is not LockState.LOCKED:
            opening.discard(cid)
            return
        try:
            locked, detail = lock.is_locked, "the feedback reads unlocked"
        except HardwareError as error:
            locked, detail = False, f"the feedback is unreadable: {error}"
        if locked:
            opening.discard(cid)
        elif cid not in opening:
            opening.add(cid)
        else:
            opening.discard(cid)
            hw_log.error("connector %d: socket lock: %s while the plug should be held", cid, detail)
            self.dispatch(ev.LockReported(cid, False, detail))

    async def _ticks(self) -> None:
        while True:
            await sleep_until(next_multiple(TICK_S))
            self.dispatch(ev.Tick())

    async def fresh_energy_wh(self, cid: int) -> float | None:
        """Read the meter now (for a transaction's final reading); None when it does not answer."""
        meter = self.hardware.connectors[cid - 1].meter
        if meter is None:
            return None
        try:
            async with self._meter_locks[cid]:
                sample = await meter.read()
        except MeterError:
            return None
        self.dispatch(ev.MeterSampled(cid, sample.energy_wh, sample.power_w, sample.current_a, sample.voltage_v))
        self._persist_reading(cid, sample.energy_wh, self.clock(), reported=True)
        return sample.energy_wh

    async def _poll_meter(self, cid: int) -> None:
        devices = self.hardware.connectors[cid - 1]
        failures = 0
        while True:
            try:
                async with self._meter_locks[cid]:
                    sample = await devices.meter.read()
            except MeterError as error:
                failures += 1
                if failures == METER_FAILURES_FOR_FAULT:
                    hw_log.error("connector %d: energy meter failed: %s", cid, error)
                    self.dispatch(ev.DeviceFault(cid, Device.METER, True, "meter not answering"))
            else:
                if failures >= METER_FAILURES_FOR_FAULT:
                    hw_log.warning("connector %d: energy meter answers again", cid)
                    self.dispatch(ev.DeviceFault(cid, Device.METER, False))
                failures = 0
                self.dispatch(ev.MeterSampled(cid, sample.energy_wh, sample.power_w,
                                              sample.current_a, sample.voltage_v))
                self._persist_reading(cid, sample.energy_wh, self.clock(), reported=False)
            busy = self.station.connectors[cid].transaction is not None or failures
            wakeup = self._meter_wakeups[cid]
            wakeup.clear()
            await wait_event_until(wakeup, next_multiple(devices.meter_poll_s if busy else IDLE_METER_POLL_S))


def station_configuration(config: Config) -> Configuration:
    """The OCPP keys: defaults, then the installer's ``ocpp.keys``."""
    return Configuration(config.charge_point.connectors, dict(config.ocpp.keys))
