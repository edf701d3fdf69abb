"""The real Modbus meter driver against the simulated meter, over loopback TCP and a pty."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time

import pytest

from evcp.config import MeterConfig
from evcp.hal import EnergyMeter, MeterError
from evcp.hal.meter import ModbusMeter
from evcp.hal.meter_registers import custom_map
from evcp.mocks.meter_server import SimulatedMeter
from tests.ports import free_port

TIMEOUT_S = 0.2
#: Energy resolution of each model's register (ABB counts in 0.01 kWh).
ENERGY_RESOLUTION_WH = {"sdm630": 0.01, "sdm72": 0.01, "sdm72v2": 0.01, "sdm120": 0.01, "abb-b23": 10.0}
#: Phases whose voltage and current the map reads (the original SDM72D-M has none).
PHASES = {"sdm630": 3, "sdm72": 0, "sdm72v2": 3, "sdm120": 1, "abb-b23": 3}
#: The registers of an original SDM72D-M (v1), written out from its manual, not from evcp's maps:
#: total system power 30053, import 30073, total 30343. It has no voltage or current registers.
SDM72_V1_DEVICE = custom_map({
    "power_w": {"address": 0x0034, "type": "float32", "function": 4},
    "energy_import_wh": {"address": 0x0048, "type": "float32", "function": 4, "scale": 1000.0},
    "energy_total_wh": {"address": 0x0156, "type": "float32", "function": 4, "scale": 1000.0},
}, model="sdm72")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds



@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def served():
    """Start simulated meters on demand; stop them and close their drivers afterwards."""
    running: list[tuple[SimulatedMeter, ModbusMeter]] = []

    async def serve(
        model: str = "sdm630", power_w: float = 7400.0, **options
    ) -> tuple[SimulatedMeter, ModbusMeter]:
        config_overrides = options.pop("config", {})
        simulator = SimulatedMeter(model, lambda: power_w, **options)
        await simulator.start()
        meter = ModbusMeter(simulator.meter_config(**{"timeout_s": TIMEOUT_S, **config_overrides}))
        running.append((simulator, meter))
        return simulator, meter

    yield serve
    for simulator, meter in running:
        await meter.close()
        await simulator.stop()


def test_modbus_meter_is_an_energy_meter():
    assert isinstance(ModbusMeter(MeterConfig(backend="modbus-tcp")), EnergyMeter)


@pytest.mark.parametrize("model", ["sdm630", "sdm120", "sdm72", "sdm72v2", "abb-b23"])
async def test_sample_round_trip(served, clock, model):
    power_w = 7400.0 if PHASES[model] != 1 else 3680.0
    simulator, meter = await served(model, power_w, initial_energy_wh=123_456.0, clock=clock)

    sample = await meter.read()

    assert sample.energy_wh == pytest.approx(123_456.0, abs=ENERGY_RESOLUTION_WH[model])
    assert sample.power_w == pytest.approx(power_w, abs=0.01)
    assert sample.voltage_v == pytest.approx((230.0,) * PHASES[model], abs=0.1)
    expected_current = power_w / (230.0 * PHASES[model]) if PHASES[model] else None
    assert sample.current_a == pytest.approx((expected_current,) * PHASES[model], abs=0.01)


async def test_an_original_sdm72_is_read_without_asking_for_voltage_or_current(served):
    """hal-realism #13: a v1 answers an exception for 0x0000..0x000B, so a map that asks for them
    fails every read; "sdm72" asks for power and energy only."""
    simulator, meter = await served("sdm72", 5000.0, device_registers=SDM72_V1_DEVICE,
                                    initial_energy_wh=2000.0)
    sample = await meter.read()
    assert (sample.power_w, sample.voltage_v, sample.current_a) == (pytest.approx(5000.0), (), ())
    assert sample.energy_wh == pytest.approx(2000.0, abs=1)
    full_map = ModbusMeter(dataclasses.replace(meter.config, model="sdm72v2"))
    try:
        with pytest.raises(MeterError, match=r"input registers 0x0000\.\.0x000b \(FC04\): exception response 2"):
            await full_map.read()
    finally:
        await full_map.close()


async def test_sample_round_trip_over_rtu(served, clock):
    simulator, meter = await served("sdm120", 2300.0, transport="rtu", baudrate=2400,
                                    initial_energy_wh=500.0, clock=clock)
    assert meter.config.backend == "modbus-rtu" and meter.config.baudrate == 2400

    sample = await meter.read()

    assert sample.energy_wh == pytest.approx(500.0, abs=0.01)
    assert sample.power_w == pytest.approx(2300.0)
    assert sample.current_a == pytest.approx((10.0,))


@pytest.mark.parametrize("model", ["sdm630", "abb-b23"])
async def test_energy_follows_simulated_time(served, clock, model):
    simulator, meter = await served(model, 7400.0, clock=clock)
    before = (await meter.read()).energy_wh

    clock.advance(1800)
    after = (await meter.read()).energy_wh

    assert after - before == pytest.approx(3700.0, abs=ENERGY_RESOLUTION_WH[model])


async def test_energy_increases_in_real_time_while_power_flows(served):
    simulator, meter = await served("sdm630", 3_600_000.0)
    readings = []
    for _ in range(3):
        readings.append((await meter.read()).energy_wh)
        await asyncio.sleep(0.05)
    assert readings[0] < readings[1] < readings[2]
    assert readings[2] - readings[0] == pytest.approx(100.0, rel=0.5)


async def test_total_energy_includes_export(served, clock):
    simulator, meter = await served("sdm630", -3000.0, initial_energy_wh=1000.0, clock=clock,
                                    config={"energy": "total"})
    clock.advance(3600)
    sample = await meter.read()
    assert sample.energy_wh == pytest.approx(4000.0, abs=0.01)
    assert simulator.energy_wh == pytest.approx(1000.0)


async def test_silent_meter_raises_meter_error_within_bound(served):
    simulator, meter = await served("sdm630")
    await meter.read()
    simulator.fail()

    started = time.monotonic()
    with pytest.raises(MeterError) as failure:
        await meter.read()
    elapsed = time.monotonic() - started

    assert elapsed < 3 * TIMEOUT_S + 0.5
    message = str(failure.value)
    assert "sdm630 meter at 127.0.0.1:" in message
    assert "input registers 0x0000..0x000b" in message
    assert "no answer" in message
    assert simulator.requests_ignored >= 1


async def test_reads_again_after_recover(served):
    simulator, meter = await served("abb-b23", 7400.0)
    simulator.fail()
    with pytest.raises(MeterError):
        await meter.read()
    with pytest.raises(MeterError):
        await meter.read()

    simulator.recover()

    assert (await meter.read()).power_w == pytest.approx(7400.0)


async def test_read_deadline_bounds_the_whole_read(served):
    simulator, meter = await served("sdm630", config={"timeout_s": 5.0})
    meter.read_deadline_s = 0.2
    simulator.fail()

    started = time.monotonic()
    with pytest.raises(MeterError, match="no complete answer within 0.2 s"):
        await meter.read()
    assert time.monotonic() - started < 1.0

    simulator.recover()
    assert (await meter.read()).power_w == pytest.approx(7400.0)


async def test_closed_port_fails_quickly():
    meter = ModbusMeter(MeterConfig(backend="modbus-tcp", port=free_port(), timeout_s=TIMEOUT_S))
    started = time.monotonic()
    with pytest.raises(MeterError, match=r"sdm630 meter at 127\.0\.0\.1:\d+ \(device 1\): cannot connect"):
        await meter.read()
    assert time.monotonic() - started < 0.5
    await meter.close()


async def test_missing_serial_port_fails_quickly():
    config = MeterConfig(backend="modbus-rtu", serial_port="/dev/ttyDOESNOTEXIST", timeout_s=TIMEOUT_S)
    meter = ModbusMeter(config)
    with pytest.raises(MeterError, match="on /dev/ttyDOESNOTEXIST"):
        await asyncio.wait_for(meter.read(), 3 * TIMEOUT_S + 0.5)
    await meter.close()


async def test_stopped_server_fails_then_restarted_server_is_read(clock):
    simulator = SimulatedMeter("sdm120", lambda: 1000.0, clock=clock)
    await simulator.start()
    port = simulator.port
    meter = ModbusMeter(simulator.meter_config(timeout_s=TIMEOUT_S))
    try:
        await meter.read()
        await simulator.stop()
        with pytest.raises(MeterError):
            await meter.read()

        restarted = SimulatedMeter("sdm120", lambda: 1000.0, port=port, clock=clock)
        await restarted.start()
        try:
            assert (await meter.read()).power_w == pytest.approx(1000.0)
        finally:
            await restarted.stop()
    finally:
        await meter.close()
        await simulator.stop()


async def test_custom_map_from_config_dict(served, clock):
    sdm630_as_custom = {
        "energy_import_wh": {"address": 0x48, "type": "float32", "scale": 1000, "function": 4},
        "power_w": {"address": 0x34, "type": "float32", "function": 4, "word_order": "big"},
        "voltage_l1": {"address": 0x00, "type": "float32", "function": 4},
        "current_l1": {"address": 0x06, "type": "float32", "function": 4},
    }
    simulator, meter = await served("sdm630", 6900.0, initial_energy_wh=42_000.0, clock=clock,
                                    config={"model": "custom", "registers": sdm630_as_custom})

    sample = await meter.read()

    assert sample.energy_wh == pytest.approx(42_000.0, abs=0.01)
    assert sample.power_w == pytest.approx(6900.0)
    assert sample.voltage_v == pytest.approx((230.0,))
    assert sample.current_a == pytest.approx((10.0,))


async def test_exception_response_names_register_and_code(served):
    wrong_address = {
        "energy_import_wh": {"address": 0x48, "type": "float32", "scale": 1000, "function": 4},
        "power_w": {"address": 0x200, "type": "float32", "function": 4},
    }
    simulator, meter = await served("sdm630", config={"model": "custom", "registers": wrong_address})
    expected = r"input registers 0x0200\.\.0x0201 \(FC04\): exception response 2 \(illegal address\)"
    with pytest.raises(MeterError, match=expected):
        await meter.read()


async def test_not_available_value_is_an_error(served):
    simulator, meter = await served("abb-b23", math.nan)
    with pytest.raises(MeterError, match="power_w at register 0x5b14 is not available"):
        await meter.read()


async def test_close_is_idempotent_and_a_later_read_reconnects(served):
    simulator, meter = await served("sdm630")
    await meter.read()
    await meter.close()
    await meter.close()
    assert (await meter.read()).power_w == pytest.approx(7400.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (MeterConfig(backend="none"), "not a Modbus backend"),
        (MeterConfig(backend="modbus-tcp", model="abb-b23", energy="total"), "no energy_total_wh register"),
        (MeterConfig(backend="modbus-tcp", model="custom", registers={"power_w": {"address": 1}}),
         r"power_w\.type: missing"),
    ],
)
def test_unusable_config_is_refused_at_construction(config, message):
    with pytest.raises(MeterError, match=message):
        ModbusMeter(config)


def test_requests_per_read():
    tcp = MeterConfig(backend="modbus-tcp")
    assert ModbusMeter(tcp).requests_per_read == 3
    assert ModbusMeter(dataclasses.replace(tcp, model="abb-b23")).requests_per_read == 4


# -- two meters on one RS-485 bus (hal-realism #7) --------------------------------------------


@pytest.fixture
async def two_meter_bus():
    """An SDM630 (id 1, 7.4 kW) and an SDM120 (id 2, 2.3 kW) on one simulated RS-485 bus."""
    from evcp.mocks.meter_server import SimulatedBus

    first = SimulatedMeter("sdm630", lambda: 7400.0, device_id=1, initial_energy_wh=1000.0)
    second = SimulatedMeter("sdm120", lambda: 2300.0, device_id=2, initial_energy_wh=5000.0)
    bus = SimulatedBus([first, second])
    await bus.start()
    yield bus, first, second
    await bus.stop()


async def read_both(meters, rounds: int) -> list[list]:
    """Each meter polled ``rounds`` times, both at once (as two connectors' poll tasks do)."""
    async def poll(meter):
        results = []
        for _ in range(rounds):
            try:
                results.append(await meter.read())
            except MeterError as error:
                results.append(error)
        return results

    return list(await asyncio.gather(*(poll(meter) for meter in meters)))


async def test_two_meters_on_one_bus_share_its_port_and_each_answers_for_itself(two_meter_bus):
    from evcp.hal.meter import ModbusLink

    bus, first, second = two_meter_bus
    configs = [bus.meter_config(meter, timeout_s=TIMEOUT_S) for meter in (first, second)]
    link = ModbusLink(configs[0])
    meters = [ModbusMeter(config, link) for config in configs]
    try:
        first_reads, second_reads = await read_both(meters, 20)
    finally:
        for meter in meters:
            await meter.close()
    assert all(not isinstance(r, MeterError) for r in first_reads + second_reads), first_reads + second_reads
    assert [r.power_w for r in first_reads] == pytest.approx([7400.0] * 20) and len(first_reads[0].voltage_v) == 3
    assert [r.power_w for r in second_reads] == pytest.approx([2300.0] * 20) and len(second_reads[0].voltage_v) == 1
    assert first_reads[-1].energy_wh == pytest.approx(1000.0, abs=20), "its own counter, growing at 7.4 kW"
    assert second_reads[-1].energy_wh == pytest.approx(5000.0, abs=20)
    assert first.requests_answered == 20 * meters[0].requests_per_read
    assert second.requests_answered == 20 * meters[1].requests_per_read


async def test_a_second_connection_to_one_serial_port_never_connects(two_meter_bus):
    """Why the meters share a link: pymodbus opens a serial port exclusively."""
    bus, first, second = two_meter_bus
    meters = [ModbusMeter(bus.meter_config(meter, timeout_s=TIMEOUT_S)) for meter in (first, second)]
    try:
        first_reads, second_reads = await read_both(meters, 3)
    finally:
        for meter in meters:
            await meter.close()
    failed = [r for r in first_reads + second_reads if isinstance(r, MeterError)]
    assert failed and all("cannot connect" in str(error) for error in failed)


async def test_a_dead_meter_on_the_bus_does_not_take_the_other_down(two_meter_bus):
    from evcp.hal.meter import ModbusLink

    bus, first, second = two_meter_bus
    configs = [bus.meter_config(meter, timeout_s=TIMEOUT_S) for meter in (first, second)]
    link = ModbusLink(configs[0])
    meters = [ModbusMeter(config, link) for config in configs]
    second.fail()
    try:
        first_reads, second_reads = await read_both(meters, 4)
    finally:
        for meter in meters:
            await meter.close()
    assert all(not isinstance(r, MeterError) for r in first_reads), first_reads
    assert all(isinstance(r, MeterError) and "no answer" in str(r) for r in second_reads), second_reads


def test_meters_with_other_serial_settings_cannot_share_a_port():
    from evcp.hal.meter import ModbusLink

    shared = MeterConfig(backend="modbus-rtu", serial_port="/dev/ttyUSB0", baudrate=9600)
    link = ModbusLink(shared)
    ModbusMeter(shared, link)
    with pytest.raises(MeterError, match="serial settings differ .* /dev/ttyUSB0"):
        ModbusMeter(dataclasses.replace(shared, baudrate=19200, device_id=2), link)


@pytest.mark.parametrize("baudrate, gap_ms", [(2400, 16.04), (9600, 4.01), (19200, 2.005), (115200, 1.75)])
def test_the_rtu_silent_interval_is_3_5_characters(baudrate, gap_ms):
    from evcp.hal.meter import rtu_silent_interval_s

    assert rtu_silent_interval_s(baudrate) * 1000 == pytest.approx(gap_ms, abs=0.01)


async def test_the_charger_builds_the_meters_of_one_port_on_one_link(two_meter_bus):
    """What ``evcp run`` and ``evcp check-hardware`` build (evcp.hal.factory.meter_for)."""
    from evcp.config import ConnectorHardware
    from evcp.hal import factory

    bus, first, second = two_meter_bus
    links: dict = {}
    meters = [factory.meter_for(ConnectorHardware(meter=bus.meter_config(m, timeout_s=TIMEOUT_S)), links)
              for m in (first, second)]
    try:
        first_reads, second_reads = await read_both(meters, 5)
    finally:
        for meter in meters:
            await meter.close()
    assert list(links) == [bus.serial_port]
    assert not [r for r in first_reads + second_reads if isinstance(r, MeterError)]
