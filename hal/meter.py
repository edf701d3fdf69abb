"""The Modbus energy meter: an ``EnergyMeter`` over Modbus TCP or RTU (RS-485).

``ModbusMeter`` reads energy, power and per-phase voltage and current from one
meter described by a ``MeterConfig`` (built-in model or a custom register map,
see ``evcp.hal.meter_registers``). Every failure becomes a ``MeterError`` within
a bounded time, and the next ``read()`` starts over with a fresh connection.

Meters daisy-chained on one RS-485 port share one ``ModbusLink``: pymodbus opens a
serial port exclusively, so a second client on the same port could never connect.
"""

from __future__ import annotations

import asyncio
import logging
import math

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException

from evcp.config import BUS_SETTINGS, MeterConfig
from evcp.hal import MeterError, MeterSample
from evcp.hal.meter_registers import (
    MODELS,
    READ_INPUT_REGISTERS,
    ReadBlock,
    RegisterMap,
    custom_map,
    plan_reads,
)

log = logging.getLogger("evcp.hal.meter")

#: One retry per request: a lost RS-485 frame is retried, a dead meter fails fast.
RETRIES = 1


class _DropFrameDumps(logging.Filter):
    """Cut pymodbus's hex dump of recent frames (lines starting ">>>>>") from its records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\n>>>>>" in message:
            record.msg, record.args = message.split("\n>>>>>", 1)[0], None
        return True


def quiet_pymodbus_logging() -> None:
    """Keep pymodbus to errors without frame dumps, unless its logger was configured.

    pymodbus logs warnings for routine reconnects and appends hex dumps of the
    last frames to each error; ``MeterError`` already says what failed. Leaves
    the "pymodbus" logger alone when its level was set explicitly, so DEBUG
    tracing stays available. Idempotent.
    """
    pymodbus_logger = logging.getLogger("pymodbus")
    if pymodbus_logger.level == logging.NOTSET:
        pymodbus_logger.setLevel(logging.ERROR)
    emitting_logger = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, _DropFrameDumps) for f in emitting_logger.filters):
        emitting_logger.addFilter(_DropFrameDumps())


def register_map_for(config: MeterConfig) -> RegisterMap:
    """The register map ``config`` describes; ValueError when it cannot be built."""
    if config.model == "custom":
        return custom_map(config.registers)
    try:
        return MODELS[config.model]
    except KeyError:
        raise ValueError(f"model: unknown meter model {config.model!r}") from None


def rtu_silent_interval_s(baudrate: int) -> float:
    """The silence that ends an RTU frame: 3.5 characters of 11 bits, at least 1.75 ms above
    19200 baud (Modbus over Serial Line V1.02 §2.5.1.1)."""
    return max(3.5 * 11 / baudrate, 0.00175)


class ModbusLink:
    """One Modbus connection: a meter's own TCP connection, or an RS-485 port shared by every meter
    wired to it (hal-realism #7).

    ``lock`` lets one meter's requests and their answers on the link at a time; on a serial port
    each request is followed by the RTU silent interval, so the next frame starts clean. The
    connection is opened on first use and closed when the last meter is done with it.
    """

    def __init__(self, config: MeterConfig):
        if config.backend not in ("modbus-tcp", "modbus-rtu"):
            raise MeterError(f"meter backend {config.backend!r} is not a Modbus backend")
        self.config = config
        self.lock = asyncio.Lock()
        self.gap_s = rtu_silent_interval_s(config.baudrate) if config.backend == "modbus-rtu" else 0.0
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._users = 0

    @staticmethod
    def settings(config: MeterConfig) -> tuple:
        """What meters must have in common to share a link: the port and how it talks."""
        return (config.backend, config.serial_port, config.host, config.port,
                *(getattr(config, name) for name in BUS_SETTINGS))

    def attach(self, config: MeterConfig, name: str) -> None:
        """One more meter uses this link; MeterError when its settings differ."""
        if self.settings(config) != self.settings(self.config):
            raise MeterError(f"{name}: its serial settings differ from those of the other meters on "
                             f"{self.config.serial_port}; meters on one RS-485 bus share them")
        self._users += 1

    def detach(self) -> None:
        """A meter is done with the link; the last one closes the connection."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self.drop()

    async def connected(self, name: str) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """The open connection, opened now if needed; MeterError naming ``name`` when it cannot be."""
        if self._client is not None and self._client.connected:
            return self._client
        self.drop()
        self._client = self._new_client()
        if not await self._client.connect():
            raise MeterError(f"{name}: cannot connect")
        log.debug("%s connected", name)
        return self._client

    def drop(self) -> None:
        """Close the connection; the next use opens a fresh one."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        config = self.config
        if config.backend == "modbus-rtu":
            return AsyncModbusSerialClient(
                config.serial_port,
                framer=FramerType.RTU,
                baudrate=config.baudrate,
                bytesize=8,
                parity=config.parity,
                stopbits=config.stopbits,
                timeout=config.timeout_s,
                retries=RETRIES,
                reconnect_delay=0,
            )
        return AsyncModbusTcpClient(
            config.host,
            port=config.port,
            timeout=config.timeout_s,
            retries=RETRIES,
            reconnect_delay=0,
        )


class ModbusMeter:
    """An ``EnergyMeter`` on Modbus TCP (``backend="modbus-tcp"``) or RTU (``"modbus-rtu"``).

    Serial settings (baud rate, parity, stop bits) always come from the config,
    never from library defaults. ``read()`` finishes within ``read_deadline_s``
    (``timeout_s`` per request try, ``RETRIES`` retries, plus a connect) once it
    has the link (on a shared RS-485 bus it first waits while another meter's read,
    bounded the same way, is on the bus), and after any failure the connection is
    dropped and rebuilt on the next read. ``link``: the ``ModbusLink`` of the serial
    port this meter shares with others; None for a connection of its own.
    Construction does no I/O; raises MeterError when the config cannot work.
    """

    def __init__(self, config: MeterConfig, link: ModbusLink | None = None):
        if config.backend not in ("modbus-tcp", "modbus-rtu"):
            raise MeterError(f"meter backend {config.backend!r} is not a Modbus backend")
        self.config = config
        self.name = self._describe(config)
        try:
            self.register_map = register_map_for(config)
            energy_quantity = self.register_map.energy_quantity(config.energy)
        except ValueError as exc:
            raise MeterError(f"{self.name}: unusable register map: {exc}") from exc
        self._energy_quantity = energy_quantity
        self._voltage_quantities = self.register_map.phase_quantities("voltage")
        self._current_quantities = self.register_map.phase_quantities("current")
        self._quantities = (
            energy_quantity, "power_w", *self._voltage_quantities, *self._current_quantities
        )
        self._blocks = plan_reads(self.register_map, self._quantities)
        self.read_deadline_s = config.timeout_s * (RETRIES + 2)
        self._link = link if link is not None else ModbusLink(config)
        self._link.attach(config, self.name)
        self._attached = True
        self._failing = False
        quiet_pymodbus_logging()

    @staticmethod
    def _describe(config: MeterConfig) -> str:
        if config.backend == "modbus-rtu":
            where = f"on {config.serial_port}"
        else:
            where = f"at {config.host}:{config.port}"
        return f"{config.model} meter {where} (device {config.device_id})"

    @property
    def requests_per_read(self) -> int:
        """How many Modbus requests one ``read()`` sends."""
        return len(self._blocks)

    async def read(self) -> MeterSample:
        """Read the meter now (energy per ``config.energy``), within ``read_deadline_s`` of having
        the link (see the class).

        Raises MeterError naming the meter, the registers and the cause when
        the meter cannot be reached, does not answer, answers with an
        exception, or reports a value that is not a finite number.
        """
        if not self._attached:
            self._link.attach(self.config, self.name)
            self._attached = True
        try:
            async with self._link.lock:
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
                    async with asyncio.timeout(self.read_deadline_s):
                        sample = await self._read_sample()
                except BaseException:
                    self._link.drop()  # while it holds the lock: no other meter is using the link
                    raise
        except TimeoutError as exc:
            message = f"{self.name}: no complete answer within {self.read_deadline_s:g} s"
            raise self._failure(MeterError(message)) from exc
        except MeterError as exc:
            self._failure(exc)
            raise
        except Exception as exc:  # a driver boundary: the core only ever sees MeterError
            raise self._failure(MeterError(f"{self.name}: {type(exc).__name__}: {exc}")) from exc
        if self._failing:
            self._failing = False
            log.info("%s answers again", self.name)
        return sample

    async def close(self) -> None:
        """Done with the connection (the last meter on a shared port closes it). Idempotent; a later
        ``read()`` reconnects."""
        if self._attached:
            self._attached = False
            self._link.detach()

    def _failure(self, error: MeterError) -> MeterError:
        """Log ``error`` (once per outage at WARNING; the connection was dropped); return it."""
        if self._failing:
            log.debug("%s", error)
        else:
            self._failing = True
            log.warning("%s", error)
        return error

    async def _read_sample(self) -> MeterSample:
        client = await self._link.connected(self.name)
        values: dict[str, float] = {}
        for block in self._blocks:
            values.update(await self._read_block(client, block))
            if self._link.gap_s:
                await asyncio.sleep(self._link.gap_s)
        for quantity in self._quantities:
            value = values[quantity]
            if not math.isfinite(value):
                address = self.register_map.registers[quantity].address
                raise MeterError(
                    f"{self.name}: {quantity} at register {address:#06x} is not available ({value})"
                )
        return MeterSample(
            energy_wh=values[self._energy_quantity],
            power_w=values["power_w"],
            current_a=tuple(values[q] for q in self._current_quantities),
            voltage_v=tuple(values[q] for q in self._voltage_quantities),
        )

    async def _read_block(
        self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, block: ReadBlock
    ) -> dict[str, float]:
        read = (
            client.read_input_registers
            if block.function == READ_INPUT_REGISTERS
            else client.read_holding_registers
        )
        try:
            response = await read(block.address, count=block.count, device_id=self.config.device_id)
        except ModbusIOException as exc:
            if "No response" not in str(exc):
                raise MeterError(f"{self.name}: reading {block.describe()}: {exc}") from exc
            tries = RETRIES + 1
            raise MeterError(
                f"{self.name}: reading {block.describe()}: no answer"
                f" ({tries} tries of {self.config.timeout_s:g} s)"
            ) from exc
        except Exception as exc:
            raise MeterError(f"{self.name}: reading {block.describe()}: {exc}") from exc
        if response.isError():
            code = getattr(response, "exception_code", None)
            try:
                meaning = ExcCodes(code).name.lower().replace("_", " ")
            except ValueError:
                meaning = "unknown exception"
            raise MeterError(
                f"{self.name}: reading {block.describe()}: exception response {code} ({meaning})"
            )
        try:
            return block.decode(self.register_map, response.registers)
        except ValueError as exc:
            raise MeterError(f"{self.name}: reading {block.describe()}: {exc}") from exc
