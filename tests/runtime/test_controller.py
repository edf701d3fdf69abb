"""The asyncio shell: whatever ends the controller, the contactors are open afterwards."""

from __future__ import annotations

import asyncio
import pytest

from evcp.bench import bench_config
from evcp.bench.csms import CentralSystem
from evcp.runtime.app import Charger

async def charging(tmp_path) -> tuple[Charger, asyncio.Task, CentralSystem]:
    csms = CentralSystem(port=0, control_port=None)
    await csms.start()
    config = bench_config(tmp_path, csms_url=csms.url + "/ocpp", api_port=0)
    charger = Charger(config)
    task = asyncio.create_task(charger.run())
    await charger.started.wait()
    while charger.controller.adapter.registration != "Accepted":
        await asyncio.sleep(0.02)
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("CRASH001")
    for _ in range(100):
        if charger.hardware.connectors[0].relay.is_closed:
            break
        await asyncio.sleep(0.05)
    assert charger.hardware.connectors[0].relay.is_closed
    return charger, task, csms


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


async def test_the_pilot_hears_of_every_contactor_move_and_status_shows_its_diagnosis(tmp_path):
    # An ADC pilot blanks the switching spike after each move of the contactor.
    csms = CentralSystem(port=0, control_port=None)
    await csms.start()
    config = bench_config(tmp_path, csms_url=csms.url + "/ocpp", api_port=0)
    charger = Charger(config)
    task = asyncio.create_task(charger.run())
    await charger.started.wait()
    pilot = charger.hardware.connectors[0].pilot
    moves = []
    pilot.note_contactor_switched = lambda: moves.append(charger.hardware.connectors[0].relay.is_closed)
    while charger.controller.adapter.registration != "Accepted":
        await asyncio.sleep(0.02)
    charger.hardware.bench.set_pilot(1, "C")
    charger.hardware.bench.present_tag("CRASH001")
    for _ in range(100):
        if moves:
            break
        await asyncio.sleep(0.05)
    assert moves == [True]  # told right after the relay closed
    assert charger.controller.status()["connectors"][0]["pilot_diagnosis"] is None
    charger.hardware.bench.set_pilot(1, "E")
    for _ in range(100):
        if len(moves) == 2:
            break
        await asyncio.sleep(0.05)
    assert moves == [True, False]
    diagnosis = charger.controller.status()["connectors"][0]["pilot_diagnosis"]
    assert diagnosis is not None and "shorted to PE" in diagnosis
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await csms.stop()
