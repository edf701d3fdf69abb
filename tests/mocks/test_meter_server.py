"""The simulated meter, checked with a bare pymodbus client (not the evcp driver)."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from evcp.mocks.meter_server import SimulatedMeter

FLOAT32 = AsyncModbusTcpClient.DATATYPE.FLOAT32
UINT32 = AsyncModbusTcpClient.DATATYPE.UINT32
UINT64 = AsyncModbusTcpClient.DATATYPE.UINT64
INT32 = AsyncModbusTcpClient.DATATYPE.INT32


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def simulators():
    started: list[SimulatedMeter] = []

    async def start(*args, **kwargs) -> SimulatedMeter:
        simulator = SimulatedMeter(*args, **kwargs)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        await simulator.stop()


@pytest.fixture
async def tcp_client():
    clients: list[AsyncModbusTcpClient] = []

    async def connect(simulator: SimulatedMeter, timeout: float = 0.5) -> AsyncModbusTcpClient:
        client = AsyncModbusTcpClient("127.0.0.1", port=simulator.port, timeout=timeout, retries=0)
        assert await client.connect()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


async def read_float(client, address: int) -> float:
    response = await client.read_input_registers(address, count=2, device_id=1)
    assert not response.isError()
    return client.convert_from_registers(response.registers, FLOAT32, word_order="big")


async def test_binds_a_free_port_and_reports_it(simulators):
    simulator = await simulators("sdm630")
    assert simulator.port > 0
    assert simulator.meter_config().port == simulator.port
    assert simulator.address == f"127.0.0.1:{simulator.port}"


async def test_sdm630_registers_have_eastron_encoding(simulators, tcp_client, clock):
    simulator = await simulators("sdm630", lambda: 6900.0, initial_energy_wh=12_500.0, clock=clock)
    client = await tcp_client(simulator)

    assert await read_float(client, 0x0048) == pytest.approx(12.5)
    assert await read_float(client, 0x0156) == pytest.approx(12.5)
    assert await read_float(client, 0x0034) == pytest.approx(6900.0)
    for address in (0x00, 0x02, 0x04):
        assert await read_float(client, address) == pytest.approx(230.0)
    for address in (0x06, 0x08, 0x0A):
        assert await read_float(client, address) == pytest.approx(10.0)


async def test_sdm120_current_is_single_phase(simulators, tcp_client, clock):
    simulator = await simulators("sdm120", lambda: 2300.0, clock=clock)
    client = await tcp_client(simulator)
    assert await read_float(client, 0x000C) == pytest.approx(2300.0)
    assert await read_float(client, 0x0006) == pytest.approx(10.0)


async def test_abb_registers_are_scaled_big_endian_integers(simulators, tcp_client, clock):
    simulator = await simulators("abb-b23", lambda: -1234.56, initial_energy_wh=98_760.0, clock=clock)
    client = await tcp_client(simulator)

    energy = await client.read_holding_registers(0x5000, count=4, device_id=1)
    assert client.convert_from_registers(energy.registers, UINT64) == 9876
    power = await client.read_holding_registers(0x5B14, count=2, device_id=1)
    assert client.convert_from_registers(power.registers, INT32) == -123456
    voltage = await client.read_holding_registers(0x5B00, count=6, device_id=1)
    assert voltage.registers == [0, 2300] * 3
    current = await client.read_holding_registers(0x5B0C, count=2, device_id=1)
    assert client.convert_from_registers(current.registers, UINT32) == 179


async def test_input_and_holding_registers_are_separate(simulators, tcp_client):
    simulator = await simulators("sdm630")
    client = await tcp_client(simulator)
    response = await client.read_holding_registers(0x0048, count=2, device_id=1)
    assert response.isError() and response.exception_code == 2


async def test_registers_are_read_only(simulators, tcp_client):
    simulator = await simulators("abb-b23")
    client = await tcp_client(simulator)
    response = await client.write_registers(0x5000, [0, 0, 0, 0], device_id=1)
    assert response.isError()


async def test_energy_integrates_power_over_time(clock):
    power_w = 7400.0
    simulator = SimulatedMeter("sdm630", lambda: power_w, initial_energy_wh=1000.0, clock=clock)
    clock.advance(1800)
    assert simulator.energy_wh == pytest.approx(1000.0 + 3700.0)
    power_w = 0.0
    clock.advance(600)
    assert simulator.energy_wh == pytest.approx(4700.0 + 7400.0 / 6)
    clock.advance(600)
    assert simulator.energy_wh == pytest.approx(4700.0 + 7400.0 / 6)


async def test_export_counts_in_total_but_not_import(clock):
    simulator = SimulatedMeter("sdm630", lambda: -2000.0, initial_energy_wh=500.0, clock=clock)
    clock.advance(3600)
    assert simulator.energy_wh == pytest.approx(500.0)
    assert simulator.total_energy_wh == pytest.approx(2500.0)


async def test_set_energy_wh_moves_the_counter(simulators, tcp_client, clock):
    simulator = await simulators("sdm630", lambda: 3600.0, clock=clock)
    simulator.set_energy_wh(20_000.0)
    clock.advance(10)
    client = await tcp_client(simulator)
    assert await read_float(client, 0x0048) == pytest.approx(20.01)


async def test_energy_counts_up_in_real_time_while_serving(simulators, tcp_client):
    simulator = await simulators("sdm630", lambda: 3_600_000.0)
    client = await tcp_client(simulator)
    first = await read_float(client, 0x0048)
    await asyncio.sleep(0.15)
    second = await read_float(client, 0x0048)
    assert second > first


async def test_failed_meter_stays_silent_until_recovered(simulators, tcp_client):
    simulator = await simulators("sdm630", lambda: 1000.0)
    client = await tcp_client(simulator, timeout=0.2)
    simulator.fail()

    with pytest.raises(ModbusIOException, match="No response"):
        await client.read_input_registers(0x0034, count=2, device_id=1)
    assert simulator.requests_ignored == 1

    simulator.recover()
    assert await read_float(client, 0x0034) == pytest.approx(1000.0)
    assert simulator.requests_answered >= 1


async def test_stop_frees_the_port_and_is_idempotent(simulators):
    simulator = await simulators("sdm630")
    port = simulator.port
    await simulator.stop()
    await simulator.stop()
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.2, retries=0, reconnect_delay=0)
    assert not await client.connect()
    client.close()


async def test_start_twice_is_refused(simulators):
    simulator = await simulators("sdm72")
    with pytest.raises(RuntimeError, match="already started"):
        await simulator.start()


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown meter model 'sdm999'"):
        SimulatedMeter("sdm999")


async def test_rtu_over_a_pty_pair(simulators, clock):
    simulator = await simulators("abb-b23", lambda: 7400.0, transport="rtu", baudrate=9600,
                                 initial_energy_wh=10_000.0, clock=clock)
    assert simulator.meter_config().serial_port == simulator.serial_port
    client = AsyncModbusSerialClient(simulator.serial_port, framer=FramerType.RTU, baudrate=9600,
                                     timeout=0.5, retries=0, reconnect_delay=0)
    assert await client.connect()
    try:
        energy = await client.read_holding_registers(0x5000, count=4, device_id=1)
        assert client.convert_from_registers(energy.registers, UINT64) == 1000
        simulator.fail()
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0x5B14, count=2, device_id=1)
        simulator.recover()
        power = await client.read_holding_registers(0x5B14, count=2, device_id=1)
        assert client.convert_from_registers(power.registers, INT32) == 740000
    finally:
        client.close()


async def test_a_port_in_use_is_reported(simulators):
    first = await simulators("sdm630")
    second = SimulatedMeter("sdm630", port=first.port)
    with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{first.port}"):
        await second.start()


async def test_a_register_file_keeps_the_count_across_restarts(tmp_path):
    register = tmp_path / "meter.wh"
    clock = [0.0]
    first = SimulatedMeter("sdm630", power_source=lambda: 3600.0, clock=lambda: clock[0], register_file=register)
    clock[0] = 10.0
    assert first.energy_wh == pytest.approx(10.0)
    second = SimulatedMeter("sdm630", clock=lambda: clock[0], register_file=register)
    assert second.energy_wh == pytest.approx(10.0)


def test_the_register_file_is_written_only_when_energy_was_counted(tmp_path):
    register = tmp_path / "meter.wh"
    clock, power = [0.0], [0.0]
    meter = SimulatedMeter("sdm630", power_source=lambda: power[0], clock=lambda: clock[0], register_file=register)
    clock[0] = 10.0
    assert meter.energy_wh == 0.0
    assert not register.exists(), "nothing drawn, nothing written (an idle charger does not wear its storage)"
    power[0] = 3600.0
    meter.energy_wh  # the power is sampled
    clock[0] = 20.0
    assert meter.energy_wh == pytest.approx(10.0)
    assert float(register.read_text()) == pytest.approx(10.0)
