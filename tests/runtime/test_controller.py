"""The asyncio shell: whatever ends the controller, the contactors are open afterwards."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from evcp.bench import bench_config
from evcp.bench.csms import CentralSystem
from evcp.runtime.app import Charger, recover_after_an_unclean_stop
from evcp.runtime.controller import PILOT_BACKSTOP_S
from evcp.storage import FILENAME, StateStore


async def until(condition: Callable[[], object], timeout_s: float = 5.0, step_s: float = 0.01) -> bool:
    """Whether ``condition()`` became true within ``timeout_s`` (polled every ``step_s``)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() >= deadline:
            return bool(condition())
        await asyncio.sleep(step_s)
    return True


async def stop(task: asyncio.Task, csms: CentralSystem) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await csms.stop()


async def started(tmp_path, version: str | None = None) -> tuple[Charger, asyncio.Task, CentralSystem]:
    """A bench charger started against its own central system, not yet registered."""
    csms = CentralSystem(port=0, control_port=None)
    await csms.start()
    config = bench_config(tmp_path, csms_url=csms.url + "/ocpp", api_port=0, version=version)
    charger = Charger(config)
    task = asyncio.create_task(charger.run())
    await charger.started.wait()
    return charger, task, csms


async def charging(tmp_path) -> tuple[Charger, asyncio.Task, CentralSystem]:
    charger, task, csms = await started(tmp_path)
    await charge(charger)
    return charger, task, csms


async def charge(charger: Charger, timeout_s: float = 5) -> None:
    """Once registered: the EV asks for current and a card is tapped, until the contactor closes."""
    while charger.controller.adapter.registration != "Accepted":
        await asyncio.sleep(0.02)
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("CRASH001")
    await until(lambda: charger.hardware.connectors[0].relay.is_closed, timeout_s=timeout_s)
    assert charger.hardware.connectors[0].relay.is_closed


async def test_an_unexpected_error_in_a_task_ends_with_every_contactor_open(tmp_path):
    charger, task, csms = await charging(tmp_path)
    coil = charger.hardware.bench.simulated[0].contactor
    pilot = charger.hardware.connectors[0].pilot

    def broken():
        raise ZeroDivisionError("a bug in a driver")

    pilot.read_state = broken
    charger.hardware.bench.set_pilot(1, "B")  # an edge wakes the pilot task, which now fails
    with pytest.raises(ZeroDivisionError):
        await asyncio.wait_for(task, 5)
    assert not coil.coil_energised
    await csms.stop()


async def test_cancelling_the_charger_ends_with_every_contactor_open(tmp_path):
    charger, task, csms = await charging(tmp_path)
    coil = charger.hardware.bench.simulated[0].contactor
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not coil.coil_energised
    await csms.stop()


async def test_a_reader_that_cannot_start_is_a_reader_failure_not_the_end_of_the_charger(tmp_path, monkeypatch):
    # The bench's RC522 sits on CE0 while the reader is set to /dev/spidev0.1: start() cannot open it.
    import evcp.mocks.reader as bench_reader
    from evcp.mocks.rc522_chip import SimulatedRc522

    monkeypatch.setattr(bench_reader, "SimulatedRc522", lambda bus, device: SimulatedRc522(bus=bus, device=0))
    csms = CentralSystem(port=0, control_port=None)
    await csms.start()
    charger = Charger(bench_config(tmp_path, csms_url=csms.url + "/ocpp", api_port=0))
    task = asyncio.create_task(charger.run())
    await charger.started.wait()
    station = csms.ledger.charger("CP-BENCH-01")
    await until(lambda: station.connectors.get(0, {}).get("error_code") == "ReaderFailure", timeout_s=10)
    assert station.connectors[0]["error_code"] == "ReaderFailure"
    assert station.connectors[0]["info"].startswith("no /dev/spidev0.1: SPI is off")
    assert not task.done()  # the charger runs on
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("REMOTE01")  # sessions still start, here from a non-card tag
    await until(lambda: charger.hardware.connectors[0].relay.is_closed, timeout_s=5)
    assert charger.hardware.connectors[0].relay.is_closed
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not charger.hardware.connectors[0].relay.is_closed
    await csms.stop()


async def test_the_status_tells_the_session_the_card_the_link_and_the_version(tmp_path):
    import time

    import evcp
    from evcp.runtime.observers import PROCESS_COUNTERS

    started_before = PROCESS_COUNTERS.transactions_started
    charger, task, csms = await charging(tmp_path)
    try:
        status = charger.controller.status()
        cp, ocpp, [connector] = status["charge_point"], status["ocpp"], status["connectors"]
        assert cp["version"] == evcp.__version__ and cp["uptime_s"] > 0
        assert abs(cp["time"] - time.time()) < 5
        assert status["authorization"]["id_tag"] == "CRASH001"
        assert status["authorization"]["status"] == "Accepted"
        assert connector["session_started_at"] <= cp["time"] and 0 <= connector["session_duration_s"] < 10
        assert connector["relay_closed"] and connector["relay_feedback_closed"] is True
        assert len(connector["current_a"]) == 3 and len(connector["voltage_v"]) == 3
        assert ocpp["connected"] and ocpp["last_error"] is None and ocpp["next_attempt_at"] is None
        assert (ocpp["version"], ocpp["protocol"]) == ("1.6", "1.6")
        assert status["counters"]["transactions_started"] == started_before + 1
        before = ocpp["connections"]

        await csms.stop()  # the central system goes away: the error and the next attempt are shown
        for _ in range(100):
            ocpp = charger.controller.status()["ocpp"]
            if ocpp["next_attempt_at"] is not None:
                break
            await asyncio.sleep(0.05)
        assert not ocpp["connected"] and ocpp["last_error"] and ocpp["protocol"] is None
        assert time.time() - 1 < ocpp["next_attempt_at"] < time.time() + charger.config.ocpp.reconnect_max_s + 1
        assert ocpp["connection_failures"] >= 1 and ocpp["connections"] == before
    finally:
        await stop(task, csms)


async def test_the_pilot_hears_of_every_contactor_move_and_status_shows_its_diagnosis(tmp_path):
    # An ADC pilot blanks the switching spike after each move of the contactor.
    charger, task, csms = await started(tmp_path)
    pilot = charger.hardware.connectors[0].pilot
    moves = []
    pilot.note_contactor_switched = lambda: moves.append(charger.hardware.connectors[0].relay.is_closed)
    while charger.controller.adapter.registration != "Accepted":
        await asyncio.sleep(0.02)
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("CRASH001")
    await until(lambda: moves, timeout_s=5)
    assert moves == [True]  # told right after the relay closed
    assert charger.controller.status()["connectors"][0]["pilot_diagnosis"] is None
    charger.hardware.bench.set_pilot(1, "E")
    await until(lambda: len(moves) == 2, timeout_s=5)
    assert moves == [True, False]
    diagnosis = charger.controller.status()["connectors"][0]["pilot_diagnosis"]
    assert diagnosis is not None and "shorted to PE" in diagnosis
    await stop(task, csms)


async def test_a_lock_that_opens_by_itself_while_charging_opens_the_contactor_and_reports_the_fault(tmp_path):
    """The lock's feedback is watched during the session, not only at start-up: an edge to "unlocked"
    opens the contactor and reports ConnectorLockFailure."""
    charger, task, csms = await charging(tmp_path)
    try:
        relay, simulated = charger.hardware.connectors[0].relay, charger.hardware.bench.simulated[0]
        simulated.lock.give_way()  # nothing drove it: the actuator lets the plug go
        await until(lambda: not relay.is_closed, timeout_s=1)
        assert not relay.is_closed and not simulated.contactor.coil_energised
        status, error, info = charger.controller.status_of(1)
        assert (status.value, error.value) == ("Faulted", "ConnectorLockFailure") and "opened by itself" in info
        station = csms.ledger.charger("CP-BENCH-01")
        await until(lambda: station.connectors.get(1, {}).get("error_code") == "ConnectorLockFailure", timeout_s=5)
        assert station.connectors[1]["error_code"] == "ConnectorLockFailure"
        assert charger.controller.status()["connectors"][0]["lock"] == "failed"
    finally:
        await stop(task, csms)


async def test_a_lock_whose_feedback_cannot_be_read_while_charging_opens_the_contactor(tmp_path):
    """Nothing then proves the plug held: the same as a lock that opened by itself (no energy,
    ConnectorLockFailure), and the charger runs on."""
    charger, task, csms = await charging(tmp_path)
    try:
        relay, simulated = charger.hardware.connectors[0].relay, charger.hardware.bench.simulated[0]
        feedback = charger.hardware.connectors[0].lock._feedback.pin

        def unreadable_line():
            raise OSError("lgpio error: bad handle")

        feedback._get_state = unreadable_line
        await until(lambda: not relay.is_closed or task.done(), timeout_s=5)
        assert not task.done(), "the charger runs on"
        assert not relay.is_closed and not simulated.contactor.coil_energised
        status, error, info = charger.controller.status_of(1)
        assert (status.value, error.value) == ("Faulted", "ConnectorLockFailure")
        assert "the feedback is unreadable" in info
    finally:
        await stop(task, csms)


async def test_a_proximity_pilot_that_fails_while_its_reading_settles_is_a_pp_fault_not_a_crash(tmp_path):
    """Plugging in reads PP, then again to let it settle: any of those reads may fail."""
    from evcp.hal import HardwareError

    charger, task, csms = await started(tmp_path)
    try:
        while charger.controller.adapter.registration != "Accepted":
            await asyncio.sleep(0.02)
        sensor = charger.hardware.connectors[0].cable
        real_read, reads, broken = sensor.read, [], [True]

        def flaky():
            reads.append(True)
            if len(reads) >= 2 and broken[0]:  # from the settling re-read on
                raise HardwareError("proximity pilot ADC cannot be read: SPI transfer failed")
            return real_read()

        sensor.read = flaky
        charger.hardware.bench.set_pilot(1, "B")
        await until(lambda: charger.controller.status_of(1)[0].value == "Faulted" or task.done(), timeout_s=2)
        assert not task.done(), "the charger runs on"
        status, _, info = charger.controller.status_of(1)
        assert status.value == "Faulted" and "proximity pilot unreadable" in info
        assert charger.controller.status()["connectors"][0]["cable"] == "fault"
        charger.hardware.bench.present_tag("PPFAIL01")
        await asyncio.sleep(0.3)
        assert not charger.hardware.connectors[0].relay.is_closed, "no charge without a readable cable rating"
        # The sensor reads again: the rating repeats on the next polls and the fault clears.
        broken[0] = False
        await until(lambda: charger.controller.status_of(1)[0].value != "Faulted", timeout_s=5)
        assert charger.controller.status()["connectors"][0]["cable"] == "32A"
        assert not task.done()
    finally:
        await stop(task, csms)


async def test_a_mirror_contact_that_cannot_be_read_is_a_contactor_fault_not_a_crash(tmp_path):
    from evcp.hal import HardwareError

    charger, task, csms = await charging(tmp_path)
    try:
        relay = charger.hardware.connectors[0].relay
        real_feedback, broken = relay.feedback_closed, [True]

        def unreadable():
            if broken[0]:
                raise HardwareError("relay: cannot read feedback GPIO5: lgpio error")
            return real_feedback()

        relay.feedback_closed = unreadable
        charger.hardware.bench.set_pilot(1, "B")  # an edge wakes the pilot task, which reads the mirror contact
        await until(lambda: charger.controller.status_of(1)[0].value == "Faulted" or task.done(), timeout_s=2)
        assert not task.done(), "the charger runs on"
        status, error, info = charger.controller.status_of(1)
        assert (status.value, error.value) == ("Faulted", "PowerSwitchFailure") and "unreadable" in info
        assert not relay.is_closed and charger.controller.station.lock_state(1) == "locked"
        broken[0] = False
        charger.hardware.bench.set_pilot(1, "C")  # another edge: the contact reads open, the fault clears
        await until(lambda: charger.controller.status_of(1)[0].value != "Faulted", timeout_s=2)
        assert charger.controller.status_of(1)[0].value != "Faulted"
    finally:
        await stop(task, csms)


async def test_a_control_pilot_that_cannot_be_read_is_a_pilot_fault_not_a_crash(tmp_path, caplog):
    """No valid CP state, no energy (IEC 61851-1 Annex A): the contactor opens in the loop step that
    failed to read, the connector reports Faulted, and the charger runs on; once the pilot reads
    again the fault clears, and only a new authorization starts a new charge."""
    import logging

    from evcp.hal import HardwareError

    charger, task, csms = await charging(tmp_path)
    try:
        controller, bench = charger.controller, charger.hardware.bench
        relay, coil = charger.hardware.connectors[0].relay, bench.simulated[0].contactor
        pilot = charger.hardware.connectors[0].pilot
        real_read, broken = pilot.read_state, [True]
        failed_reads: list[tuple[bool, float]] = []
        """(contactor commanded closed, when the loop last advanced) at each failed read."""

        def unreadable():
            if broken[0]:
                failed_reads.append((relay.is_closed, controller.loop_advanced_at))
                raise HardwareError("pilot board inputs cannot be read: lgpio error")
            return real_read()

        caplog.set_level(logging.ERROR, logger="evcp.hal")
        pilot.read_state = unreadable
        assert await until(lambda: len(failed_reads) >= 4 or task.done())
        assert not task.done(), "the charger runs on"
        assert failed_reads[0][0] and not any(closed for closed, _ in failed_reads[1:]), \
            "the contactor opened in the loop step whose read failed"
        assert not coil.coil_energised
        advanced = [at for _, at in failed_reads]
        assert advanced == sorted(set(advanced)), "the loop goes on advancing while the pilot is unreadable"
        assert controller.deadman.tripped == 0
        status, error, info = controller.status_of(1)
        assert (status.value, error.value) == ("Faulted", "OtherError")
        assert info == "control pilot unreadable: pilot board inputs cannot be read: lgpio error"
        station = csms.ledger.charger("CP-BENCH-01")
        assert await until(lambda: station.connectors.get(1, {}).get("status") == "Faulted")
        assert station.connectors[1]["error_code"] == "OtherError"
        assert station.connectors[1]["info"] == info[:50]  # StatusNotification.req info: CiString50Type
        [stopped] = csms.ledger.transactions.values()
        assert await until(lambda: stopped.stop is not None)
        assert stopped.stop["reason"] == "Other"
        unreadable_logged = [r for r in caplog.records if "control pilot unreadable" in r.getMessage()]
        assert len(unreadable_logged) == 1, "logged once, not at every read"

        broken[0] = False  # the pilot reads again (the EV still in state C): the fault clears
        assert await until(lambda: controller.status_of(1)[0].value != "Faulted")
        assert controller.status_of(1)[1].value == "NoError"
        assert await until(lambda: station.connectors[1].get("status") == "Finishing")
        await asyncio.sleep(2 * PILOT_BACKSTOP_S)
        assert not relay.is_closed and not coil.coil_energised, "no charge resumes by itself"
        assert controller.station.connectors[1].transaction is None
        bench.present_tag("CRASH002")  # a new authorization starts a new charge
        assert await until(lambda: relay.is_closed)
        assert len(csms.ledger.transactions) == 2
        assert not task.done()
    finally:
        await stop(task, csms)


async def test_a_power_fail_input_that_cannot_be_read_is_a_charge_point_fault_not_a_crash(tmp_path):
    """An unreadable UPS input stops nothing (only a failure that is read does): connector 0 reports
    OtherError while the session goes on; read again, the fault clears and a real failure still
    stops the transaction (PowerLoss)."""
    from evcp.mocks.station import MOCK_POWER_FAIL_PIN

    charger, task, csms = await charging(tmp_path)
    try:
        controller, bench = charger.controller, charger.hardware.bench
        relay = charger.hardware.connectors[0].relay
        line = charger.hardware.power_fail._input.pin

        def unreadable_line():
            raise OSError("lgpio error: bad handle")

        line._get_state = unreadable_line
        assert await until(lambda: controller.status_of(0)[1].value == "OtherError" or task.done())
        assert not task.done(), "the charger runs on"
        status, error, info = controller.status_of(0)
        assert (status.value, error.value) == ("Available", "OtherError")
        assert info == (f"power-fail input unreadable: power-fail input: cannot read GPIO{MOCK_POWER_FAIL_PIN}: "
                        "lgpio error: bad handle")
        station = csms.ledger.charger("CP-BENCH-01")
        assert await until(lambda: station.connectors.get(0, {}).get("error_code") == "OtherError")
        assert station.connectors[0]["info"] == info[:50]  # StatusNotification.req info: CiString50Type
        assert relay.is_closed and controller.station.connectors[1].transaction is not None, \
            "an input that cannot be read stops nothing"

        del line._get_state  # the input reads again
        assert await until(lambda: controller.status_of(0)[1].value == "NoError")
        assert await until(lambda: station.connectors[0].get("error_code") == "NoError")
        bench.set_power_failing(True)
        assert await until(lambda: controller.station.connectors[1].transaction is None)
        assert not relay.is_closed
        [stopped] = csms.ledger.transactions.values()
        assert await until(lambda: stopped.stop is not None)
        assert stopped.stop["reason"] == "PowerLoss"
        assert not task.done()
    finally:
        await stop(task, csms)


async def test_a_lock_actuator_that_cannot_be_driven_is_a_lock_failure_not_a_silent_hang(tmp_path):
    """The lock moves in a worker thread: a GPIO write that fails there must reach the core as a
    lock that did not lock (OCTT TC_024: ConnectorLockFailure, no energy), not leave it waiting."""
    charger, task, csms = await started(tmp_path)
    try:
        while charger.controller.adapter.registration != "Accepted":
            await asyncio.sleep(0.02)
        controller, relay = charger.controller, charger.hardware.connectors[0].relay
        lock_output = charger.hardware.connectors[0].lock._lock_out.pin

        def unwritable(value):
            raise OSError("lgpio error: bad handle")

        lock_output._set_state = unwritable
        charger.hardware.bench.set_pilot(1, "C")
        charger.hardware.bench.present_tag("LOCK0001")
        assert await until(lambda: controller.status_of(1)[0].value == "Faulted" or task.done())
        assert not task.done(), "the charger runs on"
        status, error, info = controller.status_of(1)
        assert (status.value, error.value) == ("Faulted", "ConnectorLockFailure")
        assert "cannot drive the actuator" in info
        assert controller.status()["connectors"][0]["lock"] == "failed"
        assert not relay.is_closed, "no energy without a locked plug"
    finally:
        await stop(task, csms)


@contextmanager
def loop_wakeups(loop: asyncio.AbstractEventLoop) -> Iterator[list[str]]:
    """Each time the event loop sleeps and is woken (a ``select`` of its selector that may
    block: the process is woken by a timer or by I/O), what woke it: "I/O" or the callback of
    the timer that fell due."""
    selector = loop._selector
    select = selector.select
    woken: list[str] = []

    def counting(timeout=None):
        events = select(timeout)
        if timeout != 0:
            due = loop._scheduled[0]._callback if loop._scheduled else None
            woken.append("I/O" if events else getattr(due, "__qualname__", repr(due)))
        return events

    selector.select = counting
    try:
        yield woken
    finally:
        del selector.select


IDLE_WINDOW_S = 4.0


async def test_idle_the_loop_wakes_on_the_shared_grid_and_no_more(tmp_path):
    """Idle CPU (target <= 0.5 % of a core) comes from waking rarely: the pilot backstop, the
    tick and the meter poll share one grid (evcp.aio.next_multiple), twice a second. Besides it:
    the systemd supervisor every 5 s, heartbeats and websocket keepalives of both ends of the
    link, this test's own timer. The ceiling of 4 a second leaves room for those; a 10 Hz poll
    adds 10."""
    charger, task, csms = await started(tmp_path)
    while charger.controller.adapter.registration != "Accepted":
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)  # the start-up StatusNotifications are not idle
    with loop_wakeups(asyncio.get_running_loop()) as woken:
        await asyncio.sleep(IDLE_WINDOW_S)
    await stop(task, csms)
    grid = IDLE_WINDOW_S / PILOT_BACKSTOP_S
    # At least half of the grid's: the counting works (timers due while a loaded machine held
    # the process back fall due together).
    assert len(woken) >= grid / 2, f"the counting sees the grid's wakeups: {Counter(woken)}"
    assert len(woken) <= 4 * IDLE_WINDOW_S, f"{len(woken)} wakeups in {IDLE_WINDOW_S} s idle: {Counter(woken)}"


def disk_after_a_power_cut(store: StateStore, into: Path) -> Path:
    """What a power cut at this moment leaves of the state file: the file and its write-ahead log
    as they are on disk, whatever the process holds uncommitted (the -shm index is rebuilt)."""
    into.mkdir()
    for suffix in ("", "-wal"):
        source = store.path.with_name(store.path.name + suffix)
        if source.exists():
            shutil.copyfile(source, into / (FILENAME + suffix))
    return into / FILENAME


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_power_cut_as_a_transaction_starts_leaves_it_known_to_the_central_system_or_not_at_all(
        tmp_path, version):
    """A power cut right after the core's transaction is written, before the protocol has queued
    what reports it: after recovery at the next start, every message queued must make sense to the
    central system. A PowerLoss StopTransaction of a transaction whose StartTransaction was never
    queued does not (its transactionId is never known: it is dropped, the energy never billed);
    neither does a 1.6 StopTransaction queued for a 2.0.1 transaction."""
    charger, task, csms = await started(tmp_path / "state", version)
    store = charger.controller.store
    written = store.transaction_started
    cuts: list[Path] = []

    def written_then_power_cut(*args):
        written(*args)
        cuts.append(disk_after_a_power_cut(store, tmp_path / "cut"))

    store.transaction_started = written_then_power_cut
    try:
        await charge(charger, timeout_s=10)
        [cut] = cuts
        with StateStore(cut) as after:
            await recover_after_an_unclean_stop(after, charger.hardware)
            queued = after.outbox_entries()
    finally:
        await stop(task, csms)
    if version == "1.6":
        started_before: set[int | None] = set()
        for message in queued:
            if message.action == "StartTransaction":
                started_before.add(message.local_id)
            elif message.action == "StopTransaction" and message.payload["transactionId"] is None:
                assert message.local_id in started_before, \
                    f"a StopTransaction of a transaction never started at the central system: {queued}"
    else:
        assert {message.action for message in queued} <= {"TransactionEvent"}, queued
