"""A simulated Modbus energy meter: a real pymodbus server on loopback.

``SimulatedMeter`` serves the register map of an Eastron SDM630/SDM120/SDM72
or ABB B23 (``evcp.hal.meter_registers``) with the meter's own encoding, so the
real ``ModbusMeter`` driver can be run against it over TCP or over RTU on a
pseudo-terminal pair. Its energy counter integrates a power source over time.

Test verbs: ``fail()`` makes the meter go silent like a dead RS-485 device
(requests time out; no exception responses), ``recover()`` brings it back,
``set_energy_wh()`` moves the counter. ``requests_answered`` and
``requests_ignored`` count what the server did.

``SimulatedBus`` puts several simulated meters on one RS-485 bus: one RTU server on
one pty answers each meter's device id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pty
import time
import tty
from pathlib import Path
from typing import Callable, Literal

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from evcp.aio import next_multiple, sleep_until
from evcp.config import MeterConfig
from evcp.hal.meter import quiet_pymodbus_logging
from evcp.hal.meter_registers import (
    MODELS,
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    RegisterMap,
)

log = logging.getLogger("evcp.mocks.meter")

#: How often the energy counter integrates the power source while serving.
INTEGRATION_STEP_S = 0.5


class _PtyLink:
    """Two pseudo-terminals joined back to back, like a USB RS-485 adapter on a bus.

    Bytes written to ``server_path`` come out of ``client_path`` and the other
    way round. A pty does not emulate the baud rate: frames arrive at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._server_master, self._server_slave = pty.openpty()
        self._client_master, self._client_slave = pty.openpty()
        for slave in (self._server_slave, self._client_slave):
            tty.setraw(slave)
        self.server_path = os.ttyname(self._server_slave)
        self.client_path = os.ttyname(self._client_slave)
        loop.add_reader(self._server_master, self._pump, self._server_master, self._client_master)
        loop.add_reader(self._client_master, self._pump, self._client_master, self._server_master)

    @staticmethod
    def _pump(source: int, destination: int) -> None:
        try:
            data = os.read(source, 4096)
        except OSError:
            return
        if data:
            os.write(destination, data)

    def close(self) -> None:
        """Stop pumping and close all four descriptors. Idempotent."""
        for master in (self._server_master, self._client_master):
            self._loop.remove_reader(master)
        descriptors = (
            self._server_master, self._server_slave, self._client_master, self._client_slave
        )
        for fd in descriptors:
            try:
                os.close(fd)
            except OSError:
                pass
        self._server_master = self._server_slave = self._client_master = self._client_slave = -1


class SimulatedMeter:
    """A meter of ``model`` whose power comes from ``power_source()`` (W, negative = export).

    Voltage is ``voltage_v`` on every phase the model has; current per phase
    is |P| / (V x phases). Energy import (and, where the model has it, total =
    import + export) integrates the power from construction on, holding the
    value sampled at the start of each integration step (every
    ``INTEGRATION_STEP_S`` while serving, and at every read). ``clock``
    (seconds, monotonic) can be replaced in tests to control time.

    ``transport="tcp"`` listens on ``host:port`` (port 0 picks a free one, see
    ``port`` after ``start()``); ``transport="rtu"`` serves RTU frames on a pty
    pair whose client end is ``serial_port``.

    ``device_registers``: the registers the simulated device really has, when they are not
    evcp's map of ``model`` (a meter variant whose registers differ from what a map asks for);
    a read of any other register gets an exception response, as from a real meter.
    """

    def __init__(
        self,
        model: Literal["sdm630", "sdm120", "sdm72", "sdm72v2", "abb-b23"] = "sdm630",
        power_source: Callable[[], float] = lambda: 0.0,
        *,
        transport: Literal["tcp", "rtu"] = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        device_id: int = 1,
        baudrate: int = 9600,
        initial_energy_wh: float = 0.0,
        voltage_v: float = 230.0,
        clock: Callable[[], float] = time.monotonic,
        register_file: str | os.PathLike | None = None,
        device_registers: RegisterMap | None = None,
    ):
        if model not in MODELS:
            raise ValueError(f"unknown meter model {model!r}; known are " + ", ".join(MODELS))
        if transport not in ("tcp", "rtu"):
            raise ValueError(f'transport must be "tcp" or "rtu" (got {transport!r})')
        self.model = model
        self.register_map: RegisterMap = device_registers or MODELS[model]
        self.power_source = power_source
        self.transport = transport
        self.host = host
        self._requested_port = port
        self.device_id = device_id
        self.baudrate = baudrate
        self.voltage_v = voltage_v
        self.phases = len(self.register_map.phase_quantities("voltage")) or 1
        self._clock = clock
        self._register_file = Path(register_file) if register_file else None
        self._import_wh = self._remembered_energy(float(initial_energy_wh))
        self._export_wh = 0.0
        self._last_time = clock()
        self._last_power_w = float(power_source())
        self._failed = False
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._pty: _PtyLink | None = None
        self._integrator: asyncio.Task | None = None
        self._bound_port: int | None = None
        self.requests_answered = 0
        self.requests_ignored = 0
        quiet_pymodbus_logging()

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start serving; returns once requests are answered.

        Raises RuntimeError when already running or when the port cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("simulated meter already started")
        device = self._build_device()
        if self.transport == "tcp":
            server: ModbusTcpServer | ModbusSerialServer = ModbusTcpServer(
                device, address=(self.host, self._requested_port), trace_packet=self._trace_packet
            )
        else:
            self._pty = _PtyLink(asyncio.get_running_loop())
            server = ModbusSerialServer(
                device,
                framer=FramerType.RTU,
                port=self._pty.server_path,
                baudrate=self.baudrate,
                trace_packet=self._trace_packet,
            )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            self._close_pty()
            where = f"{self.host}:{self._requested_port}" if self.transport == "tcp" else "a pty"
            raise RuntimeError(f"simulated {self.model} meter cannot listen on {where}") from exc
        self._server = server
        if self.transport == "tcp":
            self._bound_port = server.transport.sockets[0].getsockname()[1]
        self._integrator = asyncio.create_task(self._integrate_periodically())
        log.info("simulated %s meter serving at %s", self.model, self.address)

    async def stop(self) -> None:
        """Stop serving and free the port or pty. Idempotent."""
        if self._integrator is not None:
            self._integrator.cancel()
            try:
                await self._integrator
            except asyncio.CancelledError:
                pass
            self._integrator = None
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
        self._close_pty()

    async def __aenter__(self) -> SimulatedMeter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- test verbs ----------------------------------------------------------

    def fail(self) -> None:
        """Go silent: requests are received but never answered, so clients time out."""
        self._failed = True

    def recover(self) -> None:
        """Answer requests again."""
        self._failed = False

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def energy_wh(self) -> float:
        """The import energy counter now, Wh."""
        self._integrate()
        return self._import_wh

    @property
    def total_energy_wh(self) -> float:
        """Import plus export energy now, Wh."""
        self._integrate()
        return self._import_wh + self._export_wh

    def set_energy_wh(self, energy_wh: float) -> None:
        """Set the import energy counter (the next reading shows it plus what accrues)."""
        self._integrate()
        self._import_wh = float(energy_wh)

    # -- where to reach it ---------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port actually bound. Raises RuntimeError before ``start()`` or for RTU."""
        if self._bound_port is None:
            raise RuntimeError("no TCP port bound (not started, or transport is rtu)")
        return self._bound_port

    @property
    def serial_port(self) -> str:
        """The client end of the pty pair. Raises RuntimeError before ``start()`` or for TCP."""
        if self._pty is None:
            raise RuntimeError("no serial port (not started, or transport is tcp)")
        return self._pty.client_path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.transport == "tcp" else self.serial_port

    def meter_config(self, **overrides: object) -> MeterConfig:
        """A ``MeterConfig`` that points ``ModbusMeter`` at this running simulator."""
        common = {"model": self.model, "device_id": self.device_id}
        if self.transport == "tcp":
            config = MeterConfig(backend="modbus-tcp", host=self.host, port=self.port, **common)
        else:
            config = MeterConfig(
                backend="modbus-rtu", serial_port=self.serial_port, baudrate=self.baudrate, **common
            )
        return dataclasses.replace(config, **overrides)

    # -- inside --------------------------------------------------------------

    def _integrate(self) -> None:
        now = self._clock()
        elapsed_h = max(0.0, now - self._last_time) / 3600.0
        counted = elapsed_h > 0 and self._last_power_w != 0
        if self._last_power_w >= 0:
            self._import_wh += self._last_power_w * elapsed_h
        else:
            self._export_wh -= self._last_power_w * elapsed_h
        self._last_time = now
        self._last_power_w = float(self.power_source())
        if counted and self._register_file is not None:  # nothing drawn, nothing to write
            self._remember_energy()

    def _remembered_energy(self, default: float) -> float:
        """A real meter keeps its count over a charger restart: the simulated one keeps it in a file."""
        try:
            return float(self._register_file.read_text()) if self._register_file else default
        except (OSError, ValueError):
            return default

    def _remember_energy(self) -> None:
        temporary = self._register_file.with_suffix(".tmp")
        temporary.write_text(repr(self._import_wh))
        os.replace(temporary, self._register_file)

    async def _integrate_periodically(self) -> None:
        while True:
            await sleep_until(next_multiple(INTEGRATION_STEP_S))  # with the controller's loops
            self._integrate()

    def quantity_values(self) -> dict[str, float]:
        """What the meter shows now, quantity -> value (integrates energy up to now)."""
        self._integrate()
        power_w = self._last_power_w
        current_a = abs(power_w) / (self.voltage_v * self.phases)
        values = {
            "energy_import_wh": self._import_wh,
            "energy_total_wh": self._import_wh + self._export_wh,
            "power_w": power_w,
        }
        for phase in range(1, 4):
            values[f"voltage_l{phase}"] = self.voltage_v
            values[f"current_l{phase}"] = current_a
        return {q: values[q] for q in self.register_map.registers}

    def _build_device(self) -> SimDevice:
        """Registers per function code, with an action that refreshes them on each read."""
        by_function: dict[int, list[SimData]] = {
            READ_HOLDING_REGISTERS: [],
            READ_INPUT_REGISTERS: [],
        }
        values = self.quantity_values()
        for quantity, register in self.register_map.registers.items():
            by_function[register.function].append(
                SimData(
                    register.address,
                    values=register.encode(values[quantity]),
                    datatype=DataType.REGISTERS,
                    readonly=True,
                )
            )
        holding, inputs = (
            by_function[function] or [SimData(0, datatype=DataType.INVALID)]
            for function in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS)
        )
        no_bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=self.device_id,
            simdata=(no_bits, list(no_bits), holding, inputs),
            action=self._refresh_registers,
        )

    async def _refresh_registers(
        self,
        function_code: int,
        start_address: int,
        _address: int,
        _count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        if set_values is not None:
            return None
        values = self.quantity_values()
        for quantity, register in self.register_map.registers.items():
            if register.function == function_code:
                offset = register.address - start_address
                registers[offset : offset + register.count] = register.encode(values[quantity])
        return None

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending:
            return packet
        if self._failed:
            self.requests_ignored += 1
            return b""
        self.requests_answered += 1
        return packet

    def _close_pty(self) -> None:
        if self._pty is not None:
            self._pty.close()
            self._pty = None


class SimulatedBus:
    """Meters daisy-chained on one RS-485 pair: one RTU server on one pty pair answers each meter
    by its ``device_id`` (each keeps its own registers, ``fail()`` and counters). The meters are
    served here, not started on their own."""

    def __init__(self, meters: list[SimulatedMeter], baudrate: int = 9600):
        ids = [meter.device_id for meter in meters]
        if len(set(ids)) != len(ids):
            raise ValueError(f"each meter on one bus needs its own device id (got {ids})")
        self.meters = {meter.device_id: meter for meter in meters}
        self.baudrate = baudrate
        self._pty: _PtyLink | None = None
        self._server: ModbusSerialServer | None = None

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("simulated bus already started")
        self._pty = _PtyLink(asyncio.get_running_loop())
        server = ModbusSerialServer(
            [meter._build_device() for meter in self.meters.values()],
            framer=FramerType.RTU,
            port=self._pty.server_path,
            baudrate=self.baudrate,
            trace_packet=self._trace_packet,
        )
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        """Stop serving and free the pty. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    @property
    def serial_port(self) -> str:
        """The charger's end of the bus. Raises RuntimeError before ``start()``."""
        if self._pty is None:
            raise RuntimeError("no serial port (not started)")
        return self._pty.client_path

    def meter_config(self, meter: SimulatedMeter, **overrides: object) -> MeterConfig:
        """A ``MeterConfig`` that points ``ModbusMeter`` at ``meter`` on this bus."""
        config = MeterConfig(backend="modbus-rtu", model=meter.model, serial_port=self.serial_port,
                             baudrate=self.baudrate, device_id=meter.device_id)
        return dataclasses.replace(config, **overrides)

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        """An RTU frame starts with the device id: the meter it is for decides (a failed one is silent)."""
        meter = self.meters.get(packet[0]) if packet else None
        return meter._trace_packet(sending, packet) if meter is not None else packet
