"""The installer configuration: one TOML file, loaded into a frozen, typed tree.

The dataclasses below are the tree. ``load(path)`` reads and validates a file;
every problem is a ``ConfigError`` that names the file, the key and what is
wrong. The keys named in the README as a contract (charge_point.id,
charge_point.connectors, ocpp.csms_url, hardware.backend, api.listen,
storage.state_dir) never change meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping


class ConfigError(Exception):
    """``file: section.key: what is wrong (got X)``; ``evcp run`` exits 78 on it."""

    def __init__(self, file: str | Path, key: str, problem: str):
        self.file, self.key, self.problem = str(file), key, problem
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(where + problem)


@dataclass(frozen=True)
class ChargePointConfig:
    id: str
    """chargeBoxId; appended to ocpp.csms_url as the last path segment."""
    connectors: int = 1
    vendor: str = "evcp"
    model: str = "evcp-pi"
    serial_number: str | None = None
    max_current_a: float = 32.0
    """What the hardware (cable, contactor, supply) allows per connector, 6..80 A."""
    phases: int = 3
    cable: Literal["socket", "tethered"] = "socket"


@dataclass(frozen=True)
class OcppConfig:
    csms_url: str
    call_timeout_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    authorization_key: str | None = field(default=None, repr=False)
    """Secret (HTTP Basic password); masked by ``evcp config show``."""
    keys: Mapping[str, str] = field(default_factory=dict)
    """Initial values of OCPP configuration keys (GetConfiguration names), as strings."""


@dataclass(frozen=True)
class RelayConfig:
    pin: int = 17
    active_high: bool = True
    feedback_pin: int | None = None
    feedback_active_high: bool = True


@dataclass(frozen=True)
class PilotConfig:
    backend: Literal["gpio", "adc"] = "gpio"
    # gpio backend: digital outputs of a pilot interface board
    vehicle_pin: int = 22
    charge_pin: int = 23
    fault_pin: int | None = 24
    short_pin: int | None = None
    inputs_active_high: bool = True
    # adc backend: MCP3004/3008 on SPI reading the pilot through a divider
    adc_chip: Literal["mcp3004", "mcp3008"] = "mcp3008"
    spi_port: int = 0
    spi_device: int = 0
    adc_channel: int = 0
    volts_per_count: float = 24.0 / 1023
    offset_v: float = -12.0
    samples: int = 100
    # both backends: the PWM that signals the current limit (kernel hardware PWM)
    pwm_chip: int = 0
    pwm_channel: int = 0
    pwm_invert: bool = False


@dataclass(frozen=True)
class MeterConfig:
    backend: Literal["modbus-tcp", "modbus-rtu", "none"] = "none"
    model: Literal["sdm630", "sdm120", "sdm72", "abb-b23", "custom"] = "sdm630"
    host: str = "127.0.0.1"
    port: int = 502
    serial_port: str = "/dev/ttyUSB0"
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    device_id: int = 1
    timeout_s: float = 0.5
    poll_interval_s: float = 1.0
    energy: Literal["import", "total"] = "import"
    registers: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    """Only for model = "custom": quantity -> {address, type, scale, function, word_order}."""


@dataclass(frozen=True)
class ConnectorHardware:
    relay: RelayConfig = field(default_factory=RelayConfig)
    pilot: PilotConfig = field(default_factory=PilotConfig)
    meter: MeterConfig = field(default_factory=MeterConfig)


@dataclass(frozen=True)
class ReaderConfig:
    backend: Literal["mfrc522", "none"] = "none"
    spi_bus: int = 0
    spi_device: int = 1
    rst_pin: int = 25
    poll_interval_s: float = 0.3


@dataclass(frozen=True)
class MockConfig:
    ev_power_w: float = 7400.0
    meter_model: Literal["sdm630", "sdm120", "sdm72", "abb-b23"] = "sdm630"
    initial_energy_wh: float = 0.0


@dataclass(frozen=True)
class HardwareConfig:
    backend: Literal["mock", "pi"] = "pi"
    connectors: tuple[ConnectorHardware, ...] = ()
    """One entry per connector, in connector-id order."""
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    mock: MockConfig = field(default_factory=MockConfig)


@dataclass(frozen=True)
class ApiConfig:
    listen: str = "127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class StorageConfig:
    state_dir: Path = Path("/var/lib/evcp")


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    trace_file: Path | None = None
    """OCPP frame trace; None means ``<state_dir>/ocpp-trace.log``."""


@dataclass(frozen=True)
class BenchConfig:
    csms_listen: str = "127.0.0.1:9000"
    accept_all_tags: bool = True
    id_tags: tuple[str, ...] = ()
    """Accepted tags when accept_all_tags is false; every other tag is Invalid."""


@dataclass(frozen=True)
class Config:
    source: Path
    charge_point: ChargePointConfig
    ocpp: OcppConfig
    hardware: HardwareConfig
    api: ApiConfig = field(default_factory=ApiConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    @property
    def trace_file(self) -> Path:
        return self.logging.trace_file or self.storage.state_dir / "ocpp-trace.log"
