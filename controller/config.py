"""The installer configuration: one TOML file, loaded into a frozen, typed tree.

The dataclasses below are the tree. ``load(path)`` reads and validates a file;
every problem is a ``ConfigError`` that names the file, the key and what is
wrong. The keys named in the README as a contract (charge_point.id,
charge_point.connectors, ocpp.csms_url, hardware.backend, api.listen,
storage.state_dir) never change meaning.

The rules of the file (``config/evcp.example.toml`` shows every key):

- Unknown keys, wrong types and out-of-range values are errors; nothing is guessed.
- Required: charge_point.id, ocpp.csms_url and hardware.backend. The backend has
  no default, so the simulated hardware is never chosen by accident.
- A relative path (storage.state_dir, logging.trace_file) is relative to the
  directory of the config file; ``~`` is the home directory.
- An optional pin (feedback_pin, fault_pin, short_pin) is left out, or set to
  ``false``, when nothing is wired to it.
- Messages number connectors from 1: ``hardware.connectors[1]`` is the first
  ``[[hardware.connectors]]`` table, which is OCPP connector 1.
- Backend "pi" needs one ``[[hardware.connectors]]`` table per connector. With
  backend "mock" the tables are optional, and whatever they leave out comes
  from ``mock_defaults`` (a block of pins per connector).
- A GPIO pin, PWM output or ADC input has one user across all connectors.
- ``[ocpp.keys]`` is checked against the controller's OCPP key table
  (``evcp.ocpp16.configuration``) and stored as GetConfiguration shows it;
  ``[ocpp.variables]`` against the OCPP 2.0.1 device model
  (``evcp.ocpp201.device_model``). Each belongs to its protocol: [ocpp.keys]
  with ocpp.version "1.6", [ocpp.variables] with "2.0.1", both with "auto"
  (each applies when its protocol is spoken); the other one is an error that
  names its equivalent.

``render(config)`` writes the effective configuration back as TOML, secrets masked.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
import types
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from evcp.hal.meter_registers import MODELS, QUANTITIES, custom_map
from evcp.ocpp16 import configuration as ocpp_configuration


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
    voltage_v: float = 230.0
    """Nominal line-to-neutral voltage; turns the W limits of charging profiles into A."""
    cable: Literal["socket", "tethered"] = "socket"
    require_meter: bool = True
    """No new session while the energy meter does not answer (nothing could be billed)."""
    on_shutdown: Literal["stop-transactions", "leave-open"] = "stop-transactions"
    """On SIGTERM: stop transactions (reason Reboot) and deliver the stops before exiting, or
    leave them open so the next start stops them with reason PowerLoss."""


@dataclass(frozen=True)
class OcppConfig:
    csms_url: str
    version: str = "1.6"
    """The protocol spoken: "1.6" (OCPP 1.6J), "2.0.1" (OCPP 2.0.1), or "auto": both are offered in
    the websocket handshake ("ocpp2.0.1, ocpp1.6") and the central system's choice is spoken."""
    call_timeout_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    authorization_key: str | None = field(default=None, repr=False)
    """Secret (HTTP Basic password); masked by ``evcp config show``."""
    keys: Mapping[str, str] = field(default_factory=dict)
    """Initial values of OCPP 1.6 configuration keys (GetConfiguration names), as strings."""
    variables: Mapping[str, str] = field(default_factory=dict)
    """Initial values of OCPP 2.0.1 device model variables ("Component.Variable" or
    "Component.Variable.Instance"), as strings."""
    allow_offline_start: bool = False
    """Opt-in: start sessions while the central system is unreachable, before its answer.
    OCPP's AllowOfflineTxForUnknownId then decides; a later rejection stops the session."""
    security_profile: int = 0
    """OCPP 1.6 security whitepaper profile at first start: 0 none, 1 Basic auth over ws,
    2 TLS + Basic auth, 3 TLS with a client certificate. The central system may raise it later."""
    ca_file: Path | None = None
    """PEM CA bundle that verifies the central system's certificate; None = the system store."""
    client_cert_file: Path | None = None
    """PEM client certificate for security profile 3."""
    client_key_file: Path | None = field(default=None, repr=False)
    """PEM private key of the client certificate (secret: readable by the service only)."""


@dataclass(frozen=True)
class RelayConfig:
    pin: int = 17
    active_high: bool = True
    feedback_pin: int | None = None
    feedback_active_high: bool = True
    feedback_pull: Literal["up", "down", "none"] | None = None
    """The Pi's pull resistor on the feedback input; left out: towards "closed" (up with
    feedback_active_high, else down), so a broken wire to the NC mirror contact reads "not proven
    open" (welded) instead of hiding a weld (hal-realism #8)."""

    @property
    def feedback_pull_resistor(self) -> Literal["up", "down", "none"]:
        """The pull the feedback input gets (see ``feedback_pull``)."""
        if self.feedback_pull is not None:
            return self.feedback_pull
        return "up" if self.feedback_active_high else "down"


@dataclass(frozen=True)
class PilotConfig:
    backend: Literal["gpio", "adc"] = "gpio"
    # gpio backend: digital outputs of a pilot interface board
    vehicle_pin: int = 22
    charge_pin: int = 23
    fault_pin: int | None = 24
    short_pin: int | None = None
    inputs_active_high: bool = True
    # adc backend: an MCP3004/3008 (10-bit) or MCP3202/3204/3208 (12-bit) on SPI
    # reading the pilot through a divider
    adc_chip: Literal["mcp3004", "mcp3008", "mcp3202", "mcp3204", "mcp3208"] = "mcp3008"
    spi_port: int = 0
    spi_device: int = 0
    adc_channel: int = 0
    volts_per_count: float = 24.0 / 1023
    offset_v: float = -12.0
    samples: int = 100
    """Samples per burst (at least ``evcp.hal.pilot.MIN_BURST_SAMPLES`` are taken: at 10 % duty
    a burst must hold 3 samples of the high plateau)."""
    # both backends: the PWM that signals the current limit (kernel hardware PWM)
    pwm_pin: int = 18
    """The GPIO that carries the hardware PWM to the CP driver: 12, 13, 18 or 19."""
    pwm_chip: int | Literal["auto"] = "auto"
    """The N of /sys/class/pwm/pwmchipN, or "auto": the chip of the Pi's header PWM,
    found by its device-tree node (the numbers change between kernels)."""
    pwm_channel: int | Literal["auto"] = "auto"
    """The channel of that chip, or "auto": the channel of pwm_pin on this Pi model."""
    pwm_invert: bool = False


@dataclass(frozen=True)
class MeterConfig:
    backend: Literal["modbus-tcp", "modbus-rtu", "none"] = "none"
    model: Literal["sdm630", "sdm120", "sdm72", "sdm72v2", "abb-b23", "custom"] = "sdm630"
    """"sdm72" is the original SDM72D-M (power and energy only; a v2 set to it reads the same),
    "sdm72v2" the SDM72D-M v2 with voltage and current per phase."""
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
class ProximityConfig:
    """The proximity pilot (PP) of a socket outlet, read through an ADC (evcp.hal.proximity)."""

    backend: Literal["adc", "none"] = "none"
    adc_chip: Literal["mcp3004", "mcp3008", "mcp3202", "mcp3204", "mcp3208"] = "mcp3008"
    spi_port: int = 0
    spi_device: int = 0
    adc_channel: int = 1
    pullup_ohm: float = 1000.0
    """PP is pulled up to ``supply_v`` through this resistor; Rc of the plug pulls it to PE."""
    supply_v: float = 3.3
    adc_vref_v: float = 3.3
    samples: int = 5


@dataclass(frozen=True)
class LockConfig:
    """The actuator that holds the plug in a socket outlet, with its feedback (evcp.hal.lock)."""

    backend: Literal["gpio", "none"] = "none"
    actuator: Literal["motor", "solenoid"] = "motor"
    lock_pin: int = 5
    unlock_pin: int | None = 6
    """Motor actuators only: the H-bridge input that drives it the other way."""
    outputs_active_high: bool = True
    feedback_pin: int = 16
    feedback_active_high: bool = True
    """Which level of the feedback input means "locked"."""
    pulse_s: float = 0.6
    timeout_s: float = 1.5


@dataclass(frozen=True)
class ConnectorHardware:
    relay: RelayConfig = field(default_factory=RelayConfig)
    pilot: PilotConfig = field(default_factory=PilotConfig)
    meter: MeterConfig = field(default_factory=MeterConfig)
    pp: ProximityConfig = field(default_factory=ProximityConfig)
    lock: LockConfig = field(default_factory=LockConfig)


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
    cable_a: float = 32.0
    """The rating of the simulated cable in each socket (13, 20, 32 or 63 A)."""
    meter_model: Literal["sdm630", "sdm120", "sdm72", "sdm72v2", "abb-b23"] = "sdm630"
    initial_energy_wh: float = 0.0


@dataclass(frozen=True)
class HardwareConfig:
    backend: Literal["mock", "pi"] = "pi"
    connectors: tuple[ConnectorHardware, ...] = ()
    """One entry per connector, in connector-id order."""
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    mock: MockConfig = field(default_factory=MockConfig)
    power_fail_pin: int | None = None
    """Input from a UPS or supply monitor: asserted while the mains is failing. Transactions
    are then stopped (reason PowerLoss) and delivered while the backup power lasts."""
    power_fail_active_high: bool = False
    power_fail_hold_s: float = 0.1
    """How long the power-fail input must stay asserted (or released) before it counts: a glitch
    shorter than this stops nothing."""
    relay_heartbeat_pin: int | None = None
    """A GPIO toggled every 0.1 s while a contactor is closed, for a retriggerable monostable that
    gates the relay driver: when evcp stops toggling, the hardware drops the contactor itself."""


@dataclass(frozen=True)
class ApiConfig:
    listen: str = "127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    password: str | None = field(default=None, repr=False)
    """HTTP Basic password of the API (user "evcp"); required when it listens beyond localhost."""


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
class FirmwareConfig:
    install_command: tuple[str, ...] = ()
    """Installs a downloaded firmware file (UpdateFirmware, SignedUpdateFirmware): the program and
    its arguments; the file's path is appended. Exit status 0 means installed. Empty: every
    installation fails with InstallationFailed (nothing is installed without a command)."""
    install_timeout_s: float = 900.0


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
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)

    @property
    def trace_file(self) -> Path:
        return self.logging.trace_file or self.storage.state_dir / "ocpp-trace.log"


# ---------------------------------------------------------------------------
# Limits and tables
# ---------------------------------------------------------------------------

MAX_CONNECTORS = 8
#: The header pins with a hardware PWM function on a Raspberry Pi 4 and 5.
PWM_PINS = (12, 13, 18, 19)
#: ADC chip -> (channels, bits).
ADC_CHANNELS = {"mcp3004": (4, 10), "mcp3008": (8, 10), "mcp3202": (2, 12), "mcp3204": (4, 12), "mcp3208": (8, 12)}
#: The pilot ADC's range must include the inner edges of the A and negative windows
#: (SAE J1772 11.40 V, -11.40 V) ...
ADC_MUST_SEE_V = 11.4
#: ... and span no more than this: wider is a scale meant for another chip (e.g. the
#: 10-bit 24/1023 V per count on a 12-bit chip spans 96 V).
ADC_MAX_SPAN_V = 60.0
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
#: How ``render`` shows a secret.
MASK = "********"

#: Keys the loader computes, never written in the file -> where they come from.
_DERIVED = {
    (Config, "source"): "the path of the file",
    (ApiConfig, "host"): 'api.listen = "host:port"',
    (ApiConfig, "port"): 'api.listen = "host:port"',
}
#: Keys that have a default in the tree but must be written in the file anyway.
_REQUIRED = {(HardwareConfig, "backend")}
#: What to write when a required key is missing.
_EXAMPLES = {
    "charge_point.id": '"CP-0001" (the chargeBoxId the CSMS knows this charger by)',
    "ocpp.csms_url": '"wss://csms.example.com/ocpp"',
    "hardware.backend": '"pi" (real hardware) or "mock" (simulated bench)',
}

#: OCPP keys whose value comes from another key of this file.
_OCPP_KEYS_SET_ELSEWHERE = {
    "NumberOfConnectors": "charge_point.connectors",
    "AuthorizationKey": "ocpp.authorization_key",
}

#: The fields of one entry of ``meter.registers`` (see ``evcp.hal.meter_registers.custom_map``).
_REGISTER_FIELDS = ("address", "type", "function", "scale", "word_order")

#: GPIO pins of the clock and data lines of SPI buses (chip selects move with overlays).
_SPI_BUS_PINS = {
    0: {9: "SPI0 MISO", 10: "SPI0 MOSI", 11: "SPI0 SCLK"},
    1: {19: "SPI1 MISO", 20: "SPI1 MOSI", 21: "SPI1 SCLK"},
}


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def load(path: str | Path) -> Config:
    """Read and validate the TOML file at ``path``; ConfigError on the first problem."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (bad byte at offset {exc.start})") from None
    return loads(text, path)


def loads(text: str, path: str | Path) -> Config:
    """Validate TOML ``text`` as if read from ``path``.

    ``path`` is named in errors, anchors relative paths and becomes ``Config.source``.
    """
    ctx = _Context(str(path), Path(path).absolute().parent)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ctx.error("", _syntax_problem(exc)) from None
    # The connector tables depend on charge_point.connectors and hardware.backend,
    # so they are built once the rest of the tree is.
    hardware = data.get("hardware")
    connector_tables = hardware.pop("connectors", None) if isinstance(hardware, dict) else None
    config = _build(Config, data, "", ctx, extra={"source": Path(path).absolute()})
    connectors = _connectors(connector_tables, config, ctx)
    config = replace(config, hardware=replace(config.hardware, connectors=connectors))
    keys = _ocpp_key_values(config.ocpp.keys, config.charge_point.connectors, ctx)
    config = replace(config, ocpp=replace(config.ocpp, keys=keys))
    _check_protocol_sections(config, ctx)
    _check_ocpp_variables(config, ctx)
    _check_whole(config, ctx)
    return config


def with_version(config: Config, version: str) -> Config:
    """``config`` with ocpp.version ``version`` (``evcp bench --ocpp``), behaving as the file says in
    either protocol: each [ocpp.keys] entry carries over to its OCPP 2.0.1 equivalent in
    [ocpp.variables] and back (``evcp.ocpp201.device_model.OCPP16_EQUIVALENTS``), unless the file
    sets that one itself. With "1.6" or "2.0.1" the other protocol's section is then dropped, and
    an entry without an equivalent is a ConfigError naming it; "auto" keeps both."""
    from evcp.ocpp201.device_model import OCPP16_EQUIVALENTS, OCPP16_KEY_OF, station_device_model

    ctx = _Context(str(config.source), config.source.parent)
    ocpp = config.ocpp
    keys, variables = dict(ocpp.keys), dict(ocpp.variables)
    if version != "1.6":
        model = station_device_model(config)
        for name, text in ocpp.keys.items():
            target = OCPP16_EQUIVALENTS.get(name)
            if target is None and version == "2.0.1":
                raise ctx.error(f"ocpp.keys.{name}", "an OCPP 1.6 key without an OCPP 2.0.1 equivalent here; "
                                f'ocpp.version "{version}" cannot use it')
            if target is None or target in ocpp.variables:
                continue
            if (problem := model.installer_value_problem(target, text)) is not None:
                raise ctx.error(f"ocpp.keys.{name}", f'as {target} for ocpp.version "{version}": {problem}')
            variables[target] = text
    if version != "2.0.1":
        given = {name.lower() for name in ocpp.keys}
        for name, text in ocpp.variables.items():
            key = OCPP16_KEY_OF.get(name)
            if key is None and version == "1.6":
                raise ctx.error(f"ocpp.variables.{name}", "an OCPP 2.0.1 variable without an OCPP 1.6 "
                                f'equivalent; ocpp.version "{version}" cannot use it')
            if key is not None and key.lower() not in given:
                keys[key] = text
    ocpp = replace(ocpp, version=version, keys=_ocpp_key_values(keys if version != "2.0.1" else {},
                                                                config.charge_point.connectors, ctx),
                   variables=variables if version != "1.6" else {})
    config = replace(config, ocpp=ocpp)
    _check_whole(config, ctx)  # the password rule depends on the version
    return config


def mock_defaults(connectors: int, tethered: bool = False) -> tuple[ConnectorHardware, ...]:
    """The simulated hardware of ``connectors`` connectors, pins that never collide.

    Each connector gets its own block of gpiozero mock pins from GPIO4 up (and
    the default PWM, pwmchip0 channel 0: the simulation gives every connector
    a sysfs PWM tree of its own, without a device tree for "auto" to
    read), and a simulated proximity pilot. Up to 3
    connectors, a block has every input and a socket lock (a solenoid and its
    feedback), so the bench can weld a contactor, jam a lock and show pilot
    states E and F::

        connector  relay  feedback  vehicle  charge  fault  short  lock  lock feedback
        1          4      5         6        7       8      9      10    11
        2          12     13        14       15      16     17     18    19
        3          20     21        22       23      24     25     26    27

    With 4 connectors the blocks are 6 pins (relay 6n-2 .. short 6n+3) and have no
    lock; with 5 to 8 the 24 free pins only give 3 per connector: connector n has
    relay 3n+1, vehicle 3n+2 and charge 3n+3, and no feedback, fault, short or
    lock. A ``tethered`` charger has neither a proximity pilot nor a lock (its lock pins stay
    free). No connector has a Modbus meter: the simulated meter is set up in [hardware.mock].
    """
    if not 1 <= connectors <= MAX_CONNECTORS:
        raise ValueError(f"connectors must be 1..{MAX_CONNECTORS}, got {connectors}")
    result = []
    for n in range(1, connectors + 1):
        lock = LockConfig()
        if connectors <= 3:
            relay, feedback, vehicle, charge, fault, short, lock_pin, lock_feedback = range(8 * n - 4, 8 * n + 4)
            lock = lock if tethered else LockConfig(backend="gpio", actuator="solenoid", lock_pin=lock_pin, unlock_pin=None,
                              feedback_pin=lock_feedback, pulse_s=0.2, timeout_s=1.0)
        elif connectors == 4:
            relay, feedback, vehicle, charge, fault, short = range(6 * n - 2, 6 * n + 4)
        else:
            relay, vehicle, charge = range(3 * n + 1, 3 * n + 4)
            feedback = fault = short = None
        result.append(ConnectorHardware(
            relay=RelayConfig(pin=relay, feedback_pin=feedback),
            pilot=PilotConfig(vehicle_pin=vehicle, charge_pin=charge, fault_pin=fault, short_pin=short,
                              pwm_chip=0, pwm_channel=0),
            pp=ProximityConfig(backend="none" if tethered else "adc"),
            lock=lock,
        ))
    return tuple(result)


def render(config: Config) -> str:
    """The effective configuration as TOML text: every key, defaults included.

    Secrets are shown as ``MASK``; keys without a value are comments; paths are
    absolute. Loading the text again, secrets put back, gives an equal Config.
    """
    lines = [
        f"# Effective configuration of {config.source}",
        "# Secrets are masked.",
    ]
    for name in _keys_of(Config):
        _render_table(getattr(config, name), f"[{name}]", name, lines)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SetupProblem:
    """A valid value that is still the example's: ``evcp config check`` and ``evcp run`` say so;
    with ``refuses_to_run`` the charger cannot work with it and ``evcp run`` exits 78."""

    file: str
    key: str
    problem: str
    refuses_to_run: bool = False

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.problem}"


#: What ``config/evcp.example.toml`` ships with: a charger that still has it was not set up.
EXAMPLE_CHARGE_POINT_ID = "CP-0001"
#: Domains that never have a real host (RFC 2606, RFC 6761); localhost is a real test setup.
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org", "example", "invalid", "test")


def setup_problems(config: Config) -> list[SetupProblem]:
    """What still looks like the unedited example in a configuration that is otherwise valid."""
    problems = []
    host = (urlsplit(config.ocpp.csms_url).hostname or "").lower().rstrip(".")
    if any(host == domain or host.endswith("." + domain) for domain in _RESERVED_DOMAINS):
        problems.append(SetupProblem(
            str(config.source), "ocpp.csms_url",
            f"{host} is a reserved example domain (RFC 2606) that no central system answers at; "
            f"set the URL of your central system (got {_show(config.ocpp.csms_url)})", refuses_to_run=True))
    if config.charge_point.id == EXAMPLE_CHARGE_POINT_ID:
        problems.append(SetupProblem(
            str(config.source), "charge_point.id",
            f"is the example's id {_show(EXAMPLE_CHARGE_POINT_ID)}; set the chargeBoxId your central system "
            "knows this charger by"))
    if config.hardware.backend == "pi":
        for n, connector in enumerate(config.hardware.connectors, 1):
            relay = connector.relay
            if relay.feedback_pin is not None and relay.feedback_pull is None:
                towards = relay.feedback_pull_resistor
                problems.append(SetupProblem(
                    str(config.source), f"hardware.connectors[{n}].relay.feedback_pull",
                    f"not set: GPIO{relay.feedback_pin} is pulled {towards}, towards \"closed\", so a broken wire "
                    "to the normally closed mirror contact reads closed (welded: no charging) instead of hiding a "
                    "weld (docs/wiring.md). A normally open contact that relied on the pull towards \"open\" now "
                    "reads closed at start: wire the mirror contact as documented, or set feedback_pull "
                    f"(\"{towards}\" keeps this default and silences this note)"))
            if not relay.active_high:
                problems.append(SetupProblem(
                    str(config.source), f"hardware.connectors[{n}].relay.active_high",
                    f"false: GPIO{connector.relay.pin} is an input with a pull-down from power-on until evcp "
                    "drives it (tens of seconds), which ENERGISES an active-low relay driver; use an "
                    "active-high driver, or fit an external pull-up that holds this one off"))
    return problems


# ---------------------------------------------------------------------------
# Building the tree from the type hints
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    file: str
    directory: Path
    """Where relative paths start: the directory of the config file."""

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, key, problem)

    def path(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else Path(os.path.normpath(self.directory / path))


def _syntax_problem(exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    if match := re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.S):
        return f"TOML syntax error at line {match[2]}, column {match[3]}: {match[1]}"
    if match := re.fullmatch(r"(.*) \(at end of document\)", message, re.S):
        return f"TOML syntax error at the end of the file: {match[1]}"
    return f"TOML syntax error: {message}"


@cache
def _keys_of(cls: type) -> dict[str, Any]:
    """File key -> type hint, for the fields of dataclass ``cls`` that the file sets."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if (cls, f.name) not in _DERIVED}


def _required(cls: type, name: str) -> bool:
    (f,) = [f for f in fields(cls) if f.name == name]
    no_default = f.default is MISSING and f.default_factory is MISSING
    return no_default or (cls, name) in _REQUIRED


def _build(cls: type, raw: object, key: str, ctx: _Context, base: Any = None, extra: dict | None = None) -> Any:
    """An instance of dataclass ``cls`` from the TOML table ``raw`` found at ``key``.

    A key the table leaves out keeps its value in ``base``, or the field default.
    """
    if not isinstance(raw, dict):
        raise ctx.error(key, f"expected a table, got {_show(raw)}")
    known = _keys_of(cls)
    for name in raw:
        if (cls, name) in _DERIVED:
            raise ctx.error(_join(key, name), f"not set on its own; it comes from {_DERIVED[cls, name]}")
        if name not in known:
            raise ctx.error(_join(key, name), _unknown_key(name, known))
    values = dict(extra or {})
    for name, hint in known.items():
        sub = _join(key, name)
        if name in raw:
            values[name] = _value(cls, name, hint, raw[name], sub, ctx, getattr(base, name, None))
        elif _required(cls, name):
            if not is_dataclass(hint):
                example = _EXAMPLES.get(sub, "...")
                raise ctx.error(sub, f"missing (required); add {name} = {example} under [{key}]")
            values[name] = _build(hint, {}, sub, ctx)  # names the missing key inside
    made = replace(base, **values) if base is not None else cls(**values)
    finish = _FINISH.get(cls)
    return finish(made) if finish else made


def _value(cls: type, name: str, hint: Any, raw: object, key: str, ctx: _Context, base: Any) -> Any:
    """Convert one value by its type hint (or special converter), then check its range."""
    special = _SPECIAL.get((cls, name))
    value = special(raw, key, ctx) if special else _convert(hint, raw, key, ctx, base)
    check = _CHECKS.get((cls, name))
    if check is None or value is None:
        return value
    if isinstance(value, tuple):  # a check on a list applies to each item
        checked = [(f"{key}[{n}]", item, raw_item) for n, (item, raw_item) in enumerate(zip(value, raw), 1)]
    else:
        checked = [(key, value, raw)]
    for where, item, raw_item in checked:
        if problem := check(item):
            if _is_secret(name) and isinstance(raw_item, str):  # never echo a password
                raise ctx.error(where, f"{problem} (got {len(raw_item)} characters, not shown)")
            raise ctx.error(where, f"{problem} (got {_show(raw_item)})")
    return value


#: Type -> (does a TOML value fit it, how a message names it).
_SCALARS: dict[Any, tuple[Callable[[object], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "a number",
    ),
    str: (lambda v: isinstance(v, str), "a string"),
    Path: (lambda v: isinstance(v, str) and v != "", "a path (a non-empty string)"),
}


def _convert(hint: Any, raw: object, key: str, ctx: _Context, base: Any = None) -> Any:
    """The value of type ``hint`` that TOML value ``raw`` stands for, or ConfigError."""
    origin, args = get_origin(hint), get_args(hint)
    if is_dataclass(hint):
        return _build(hint, raw, key, ctx, base)
    if origin is Literal:
        if isinstance(raw, str) and raw in args:
            return raw
        choices = ", ".join(_show(a) for a in args)
        problem = f"expected one of {choices}, got {_show(raw)}"
        close = _closest(raw, args) if isinstance(raw, str) else None
        raise ctx.error(key, problem + (f'; did you mean "{close}"?' if close else ""))
    if origin is tuple:
        if not isinstance(raw, list):
            raise ctx.error(key, f"expected a list [...], got {_show(raw)}")
        return tuple(_convert(args[0], item, f"{key}[{n}]", ctx) for n, item in enumerate(raw, 1))
    if origin in (Union, types.UnionType):  # X | None: the key is left out, or false for a pin
        (inner,) = [a for a in args if a is not type(None)]
        if raw is False and inner is int:
            return None
        if get_origin(inner) is Literal:
            return _convert(inner, raw, key, ctx)
        fits, what = _SCALARS[inner]
        if not fits(raw):
            what += " or false (not wired)" if inner is int else ""
            raise ctx.error(key, f"expected {what}, got {_show(raw)}")
        return _convert(inner, raw, key, ctx)
    fits, what = _SCALARS[hint]
    if not fits(raw):
        raise ctx.error(key, f"expected {what}, got {_show(raw)}")
    if hint is float:
        return float(raw)  # type: ignore[arg-type]
    if hint is Path:
        return ctx.path(raw)  # type: ignore[arg-type]
    return raw


def _connectors(tables: object, config: Config, ctx: _Context) -> tuple[ConnectorHardware, ...]:
    count, backend = config.charge_point.connectors, config.hardware.backend
    tethered = config.charge_point.cable == "tethered"
    key = "hardware.connectors"
    if tables is None:
        if backend == "mock":
            return mock_defaults(count, tethered)
        raise ctx.error(
            key,
            f'missing; backend "pi" needs one [[hardware.connectors]] table per connector '
            f"(charge_point.connectors = {count})",
        )
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ctx.error(
            key,
            f"expected [[hardware.connectors]] tables, got {_show(tables)} "
            "(the number of connectors is charge_point.connectors)",
        )
    if len(tables) != count:
        raise ctx.error(
            key,
            f"{len(tables)} [[hardware.connectors]] table(s) but charge_point.connectors = {count}; "
            "write one table per connector",
        )
    bases = mock_defaults(count, tethered) if backend == "mock" else (None,) * count
    return tuple(
        _build(ConnectorHardware, table, f"{key}[{n}]", ctx, base)
        for n, (table, base) in enumerate(zip(tables, bases), 1)
    )


def _ocpp_keys(raw: object, key: str, ctx: _Context) -> dict[str, str]:
    """[ocpp.keys]: OCPP key -> its value as text (true -> "true", 300 -> "300").

    The keys and values are checked against the OCPP key table once the number
    of connectors is known (``_ocpp_key_values``).
    """
    if not isinstance(raw, dict):
        raise ctx.error(key, f"expected a table, got {_show(raw)}")
    result = {}
    for name, value in raw.items():
        sub = f"{key}.{name}"
        if name in _OCPP_KEYS_SET_ELSEWHERE:
            problem = f"set {_OCPP_KEYS_SET_ELSEWHERE[name]} instead"
            readonly = any(spec.name == name and spec.access.readonly for spec in ocpp_configuration.KEYS)
            raise ctx.error(sub, f"read-only; {problem}" if readonly else problem)
        if not isinstance(value, (int, str)):  # bool is an int
            raise ctx.error(sub, f"expected an integer, true/false or a string, got {_show(value)}")
        result[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return result


def _ocpp_variables(raw: object, key: str, ctx: _Context) -> dict[str, str]:
    """[ocpp.variables]: "Component.Variable[.Instance]" -> its value as text. The name may be
    quoted ("TxCtrlr.StopTxOnInvalidId" = false) or written as dotted keys, which TOML makes
    tables of (TxCtrlr.StopTxOnInvalidId = false, or a [ocpp.variables.TxCtrlr] table); a list
    of strings is a MemberList or SequenceList. Checked against the device model once the rest
    of the file is known (``_check_ocpp_variables``)."""
    if not isinstance(raw, dict):
        raise ctx.error(key, f"expected a table, got {_show(raw)}")
    result: dict[str, str] = {}

    def collect(table: dict, prefix: str) -> None:
        for name, value in table.items():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(value, dict):
                collect(value, path)
            elif isinstance(value, bool):
                result[path] = "true" if value else "false"
            elif isinstance(value, (int, float, str)):
                result[path] = str(value)
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                result[path] = ",".join(value)
            else:
                raise ctx.error(f"{key}.{path}", "expected a number, true/false, a string or a list of strings, "
                                f"got {_show(value)}")

    collect(raw, "")
    return result


def _check_ocpp_variables(config: Config, ctx: _Context) -> None:
    """Each [ocpp.variables] entry names a writable variable of this station's device model and
    gives it a value it accepts, as SetVariables would."""
    if not config.ocpp.variables:
        return
    from evcp.ocpp201.device_model import SET_ELSEWHERE, station_device_model

    model = station_device_model(config)
    for name, text in config.ocpp.variables.items():
        problem = model.installer_value_problem(name, text)
        if problem is None:
            continue
        variable = model.named(name)
        if variable is None and (close := _closest(name, model.names())):
            problem += f'; did you mean "{close}"?'
        elif variable is not None and variable.mutability == "ReadWrite" and name not in SET_ELSEWHERE:
            problem += f" (got {_show(text)})"
        raise ctx.error(f"ocpp.variables.{name}", problem)


def _ocpp_key_values(keys: Mapping[str, str], connectors: int, ctx: _Context) -> dict[str, str]:
    """``keys`` with names and values as GetConfiguration shows them ("heartbeatinterval" ->
    "HeartbeatInterval", "Voltage, Current.Import" -> "Voltage,Current.Import"), each
    checked by the controller's OCPP key table."""
    result: dict[str, str] = {}
    given: dict[str, str] = {}
    for name, text in keys.items():
        key = f"ocpp.keys.{name}"
        try:
            station = ocpp_configuration.Configuration(connectors, {name: text})
        except ValueError as exc:  # "Name: what is wrong"
            message = str(exc)
            problem = message[len(name) + 2 :] if message.lower().startswith(name.lower() + ": ") else message
            known = [spec.name for spec in ocpp_configuration.KEYS]
            if name.lower() not in (k.lower() for k in known) and (close := _closest(name, known)):
                problem += f'; did you mean "{close}"?'
            raise ctx.error(key, problem) from None
        ((entry,), _) = station.get_configuration([name])
        canonical = str(entry["key"])
        if canonical in given:
            raise ctx.error(key, f"the same key as ocpp.keys.{given[canonical]}")
        given[canonical] = name
        result[canonical] = str(entry["value"])
    return result


def _int_or_auto(raw: object, key: str, ctx: _Context) -> int | str:
    if raw == "auto" or (isinstance(raw, int) and not isinstance(raw, bool)):
        return raw  # type: ignore[return-value]
    raise ctx.error(key, f'expected an integer or "auto", got {_show(raw)}')


def _registers(raw: object, key: str, ctx: _Context) -> dict[str, dict[str, object]]:
    """meter.registers: quantity -> {address, type, function, scale, word_order}.

    Only the names are checked here; the values are checked with the meter
    model (see ``_check_meter``).
    """
    if not isinstance(raw, dict):
        raise ctx.error(key, f"expected a table, got {_show(raw)}")
    for quantity, spec in raw.items():
        sub = f"{key}.{quantity}"
        if quantity not in QUANTITIES:
            raise ctx.error(sub, _unknown_key(quantity, QUANTITIES))
        if not isinstance(spec, dict):
            raise ctx.error(sub, f"expected a table {{ address = ..., type = ..., function = ... }}, got {_show(spec)}")
        for name in spec:
            if name not in _REGISTER_FIELDS:
                raise ctx.error(f"{sub}.{name}", _unknown_key(name, _REGISTER_FIELDS))
    return {quantity: dict(spec) for quantity, spec in raw.items()}


def _api_address(api: ApiConfig) -> ApiConfig:
    host, port = _split_listen(api.listen)
    return replace(api, host=host, port=port)


#: Fields with a converter of their own instead of their type hint.
_SPECIAL: dict[tuple[type, str], Callable[[object, str, _Context], Any]] = {
    (OcppConfig, "keys"): _ocpp_keys,
    (OcppConfig, "variables"): _ocpp_variables,
    (MeterConfig, "registers"): _registers,
    (PilotConfig, "pwm_chip"): _int_or_auto,
    (PilotConfig, "pwm_channel"): _int_or_auto,
}
#: Called on each built instance of a class, to fill its derived fields.
_FINISH: dict[type, Callable[[Any], Any]] = {ApiConfig: _api_address}


# ---------------------------------------------------------------------------
# Checks of single values: each returns what is wrong, or None
# ---------------------------------------------------------------------------

_Check = Callable[[Any], "str | None"]


def _between(low: float, high: float, unit: str = "") -> _Check:
    return lambda v: None if low <= v <= high else f"must be {low}..{high}{unit}"


def _more_than(low: float, unit: str) -> _Check:
    return lambda v: None if v > low else f"must be more than {low}{unit}"


def _at_least(low: float, unit: str = "") -> _Check:
    return lambda v: None if v >= low else f"must be at least {low}{unit}"


def _auto_or(check: _Check) -> _Check:
    return lambda v: None if v == "auto" else check(v)


def _one_of(*choices: int) -> _Check:
    text = ", ".join(map(str, choices[:-1])) + f" or {choices[-1]}"
    return lambda v: None if v in choices else f"must be {text}"


def _length(low: int, high: int) -> _Check:
    def check(text: str) -> str | None:
        if not text:
            return "must not be empty"
        return None if low <= len(text) <= high else f"must be {low}..{high} characters, not {len(text)}"

    return check


def _gpio(pin: int) -> str | None:
    return None if 0 <= pin <= 27 else "must be a BCM GPIO number 0..27"


def _charge_point_id(text: str) -> str | None:
    if problem := _length(1, 48)(text):
        return problem
    bad = re.search(r"[^A-Za-z0-9._~-]", text)
    return f"may only use A-Z a-z 0-9 . _ ~ -, not {_show(bad[0])}" if bad else None


def _websocket_url(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("ws", "wss"):
        return "must start with ws:// or wss://"
    if not parts.hostname:
        return "has no host; expected ws://host[:port]/path"
    if parts.username is not None:
        return "must not contain user:password@; put the password in ocpp.authorization_key"
    if parts.query or parts.fragment:
        return "must not contain ?query or #fragment; the charge point id is appended to the path"
    return None


def _split_listen(text: str) -> tuple[str, int]:
    """(host, port) of "host:port" or "[ipv6]:port"; ValueError says what is wrong."""
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise ValueError('expected "host:port", e.g. "127.0.0.1:8080" ("0.0.0.0:8080" for every interface)')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"[{host}] is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError('put an IPv6 address in brackets, e.g. "[::1]:8080"')
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ValueError(f"{_show(host)} is not a host name or IPv4 address")
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError("the port must be 1..65535")
    return host, int(port)


def _listen(text: str) -> str | None:
    try:
        _split_listen(text)
    except ValueError as exc:
        return str(exc)
    return None


_SECONDS = _more_than(0, " s")
_POLL_INTERVAL = _at_least(0.05, " s")

_CHECKS: dict[tuple[type, str], _Check] = {
    (ChargePointConfig, "id"): _charge_point_id,
    (ChargePointConfig, "connectors"): _between(1, MAX_CONNECTORS),
    (ChargePointConfig, "vendor"): _length(1, 20),
    (ChargePointConfig, "model"): _length(1, 20),
    (ChargePointConfig, "serial_number"): _length(1, 25),
    (ChargePointConfig, "max_current_a"): _between(6, 80, " A"),
    (ChargePointConfig, "phases"): _one_of(1, 3),
    (ChargePointConfig, "voltage_v"): _between(100, 277, " V"),
    (FirmwareConfig, "install_timeout_s"): _SECONDS,
    (OcppConfig, "csms_url"): _websocket_url,
    (OcppConfig, "version"): _one_of("1.6", "2.0.1", "auto"),
    (OcppConfig, "call_timeout_s"): _SECONDS,
    (OcppConfig, "reconnect_min_s"): _SECONDS,
    (OcppConfig, "reconnect_max_s"): _SECONDS,
    (OcppConfig, "security_profile"): _between(0, 3),
    (ApiConfig, "password"): _length(8, 128),
    (RelayConfig, "pin"): _gpio,
    (RelayConfig, "feedback_pin"): _gpio,
    (PilotConfig, "vehicle_pin"): _gpio,
    (PilotConfig, "charge_pin"): _gpio,
    (PilotConfig, "fault_pin"): _gpio,
    (PilotConfig, "short_pin"): _gpio,
    (PilotConfig, "spi_port"): _between(0, 6),
    (PilotConfig, "spi_device"): _between(0, 2),
    (PilotConfig, "adc_channel"): _between(0, 7),
    (PilotConfig, "volts_per_count"): _more_than(0, " V"),
    (PilotConfig, "samples"): _between(1, 10000),
    (PilotConfig, "pwm_pin"): _one_of(*PWM_PINS),
    (PilotConfig, "pwm_chip"): _auto_or(_at_least(0)),
    (PilotConfig, "pwm_channel"): _auto_or(_at_least(0)),
    (MeterConfig, "host"): _length(1, 253),
    (MeterConfig, "port"): _between(1, 65535),
    (MeterConfig, "serial_port"): _length(1, 4096),
    (MeterConfig, "baudrate"): _one_of(*BAUDRATES),
    (MeterConfig, "stopbits"): _one_of(1, 2),
    (MeterConfig, "device_id"): _between(1, 247),
    (MeterConfig, "timeout_s"): _SECONDS,
    (MeterConfig, "poll_interval_s"): _POLL_INTERVAL,
    (ReaderConfig, "spi_bus"): _between(0, 6),
    (ReaderConfig, "spi_device"): _between(0, 2),
    (ReaderConfig, "rst_pin"): _gpio,
    (HardwareConfig, "power_fail_pin"): _gpio,
    (HardwareConfig, "power_fail_hold_s"): _between(0, 2, " s"),
    (HardwareConfig, "relay_heartbeat_pin"): _gpio,
    (ReaderConfig, "poll_interval_s"): _POLL_INTERVAL,
    (MockConfig, "ev_power_w"): _more_than(0, " W"),
    (MockConfig, "cable_a"): _one_of(13, 20, 32, 63),
    (ProximityConfig, "spi_port"): _between(0, 6),
    (ProximityConfig, "spi_device"): _between(0, 2),
    (ProximityConfig, "adc_channel"): _between(0, 7),
    (ProximityConfig, "pullup_ohm"): _between(100, 100_000, " Ohm"),
    (ProximityConfig, "supply_v"): _between(1, 12, " V"),
    (ProximityConfig, "adc_vref_v"): _between(1, 5.5, " V"),
    (ProximityConfig, "samples"): _between(1, 100),
    (LockConfig, "lock_pin"): _gpio,
    (LockConfig, "unlock_pin"): _gpio,
    (LockConfig, "feedback_pin"): _gpio,
    (LockConfig, "pulse_s"): _between(0.05, 5, " s"),
    (LockConfig, "timeout_s"): _between(0.1, 10, " s"),
    (MockConfig, "initial_energy_wh"): _at_least(0, " Wh"),
    (ApiConfig, "listen"): _listen,
    (BenchConfig, "csms_listen"): _listen,
    (BenchConfig, "id_tags"): _length(1, 20),
}


# ---------------------------------------------------------------------------
# Checks across keys
# ---------------------------------------------------------------------------


def _check_whole(config: Config, ctx: _Context) -> None:
    ocpp = config.ocpp
    if ocpp.reconnect_max_s < ocpp.reconnect_min_s:
        raise ctx.error(
            "ocpp.reconnect_max_s",
            f"must be at least ocpp.reconnect_min_s = {ocpp.reconnect_min_s:g} s (got {ocpp.reconnect_max_s:g})",
        )
    if urlsplit(ocpp.csms_url).path.rstrip("/").rpartition("/")[2] == config.charge_point.id:
        raise ctx.error(
            "ocpp.csms_url",
            f"ends with charge_point.id; the id is appended to the URL, remove it (got {_show(ocpp.csms_url)})",
        )
    if ocpp.authorization_key is not None:
        from evcp.ocpp.security import installer_password_problem

        if (problem := installer_password_problem(ocpp.authorization_key, ocpp.version)) is not None:
            raise ctx.error("ocpp.authorization_key", problem)
    if ocpp.security_profile:
        _check_security(config, ctx)
    if not _loopback(config.api.host) and not config.api.password:
        raise ctx.error(
            "api.password",
            f"required when the API listens beyond this machine (api.listen = {_show(config.api.listen)}); "
            "set a password or listen on 127.0.0.1",
        )
    for n, connector in enumerate(config.hardware.connectors, 1):
        _check_pilot(connector.pilot, config.hardware.backend, f"hardware.connectors[{n}].pilot", ctx)
        _check_meter(connector.meter, f"hardware.connectors[{n}].meter", ctx)
    _check_shared_meter_links(config, ctx)
    owners: dict[str, str] = {}
    for resource, key, owner in _claims(config):
        if resource in owners:
            raise ctx.error(key, f"{resource} is already used by {owners[resource]}")
        owners[resource] = owner
    for n, connector in enumerate(config.hardware.connectors, 1):
        _check_socket_outlet(config, connector, f"hardware.connectors[{n}]", ctx)


def _check_protocol_sections(config: Config, ctx: _Context) -> None:
    """[ocpp.keys] are OCPP 1.6 configuration keys, [ocpp.variables] OCPP 2.0.1 variables: each
    only with an ocpp.version that may speak its protocol, never silently unused."""
    from evcp.ocpp201.device_model import OCPP16_EQUIVALENTS, OCPP16_KEY_OF

    ocpp = config.ocpp
    if ocpp.version == "2.0.1" and ocpp.keys:
        name, text = next(iter(ocpp.keys.items()))
        target = OCPP16_EQUIVALENTS.get(name)
        hint = (f'write its OCPP 2.0.1 equivalent in [ocpp.variables]: "{target}" = {_ocpp_key_value(name, text)}'
                if target else 'OCPP 2.0.1 has no equivalent here; remove it, or set ocpp.version = "auto" to use '
                'it when the central system speaks 1.6')
        raise ctx.error(f"ocpp.keys.{name}", f'an OCPP 1.6 configuration key, but ocpp.version is "2.0.1": {hint}')
    if ocpp.version == "1.6" and ocpp.variables:
        name, text = next(iter(ocpp.variables.items()))
        key = OCPP16_KEY_OF.get(name)
        hint = f"write its OCPP 1.6 equivalent in [ocpp.keys]: {key} = {_ocpp_key_value(key, text)}, or" if key \
            else "OCPP 1.6 has no equivalent; remove it, or"
        raise ctx.error(f"ocpp.variables.{name}", f'an OCPP 2.0.1 variable, but ocpp.version is "1.6": {hint} '
                        'set ocpp.version = "2.0.1" or "auto"')


def _check_socket_outlet(config: Config, connector: ConnectorHardware, key: str, ctx: _Context) -> None:
    """A socket outlet reads the cable's rating (PP) and locks the plug (IEC 61851-1 Annex B, mode 3
    case B); a tethered cable has neither."""
    lock = connector.lock
    if lock.backend == "gpio" and lock.actuator == "motor" and lock.unlock_pin is None:
        raise ctx.error(f"{key}.lock.unlock_pin", 'required with actuator = "motor" (the H-bridge input '
                                                  'that drives it to unlocked); or use actuator = "solenoid"')
    if config.hardware.backend != "pi" or config.charge_point.cable != "socket":
        return
    if connector.pp.backend == "none":
        raise ctx.error(f"{key}.pp.backend", 'a socket outlet (charge_point.cable = "socket") must read the '
                                             "cable's rating from the proximity pilot: set \"adc\" and its channel, "
                                             'or charge_point.cable = "tethered" (got "none")')
    if lock.backend == "none":
        raise ctx.error(f"{key}.lock.backend", 'a socket outlet (charge_point.cable = "socket") must lock the plug '
                                               'while it is live: set "gpio" with its pins and feedback, or '
                                               'charge_point.cable = "tethered" (got "none")')


def _check_pilot(pilot: PilotConfig, backend: str, key: str, ctx: _Context) -> None:
    if pilot.backend == "adc":
        channels, bits = ADC_CHANNELS[pilot.adc_chip]
        if pilot.adc_channel >= channels:
            raise ctx.error(f"{key}.adc_channel",
                            f"an {pilot.adc_chip} has channels 0..{channels - 1} (got {pilot.adc_channel})")
        low = pilot.offset_v
        high = pilot.offset_v + pilot.volts_per_count * (2**bits - 1)
        if not (low <= -ADC_MUST_SEE_V and high >= ADC_MUST_SEE_V and high - low <= ADC_MAX_SPAN_V):
            raise ctx.error(
                f"{key}.volts_per_count",
                f"with offset_v = {pilot.offset_v:g} V the {bits}-bit {pilot.adc_chip} reads {low:+.1f}..{high:+.1f} V; "
                f"it must cover -{ADC_MUST_SEE_V:g}..+{ADC_MUST_SEE_V:g} V within {ADC_MAX_SPAN_V:g} V "
                f"(a 24 V divider is 24/{2**bits - 1} = {24 / (2**bits - 1):.6f} V per count) "
                f"(got {pilot.volts_per_count:g})")
    elif backend == "pi" and pilot.fault_pin is None and pilot.short_pin is None:
        # hal-realism #9: the board's vehicle/charge outputs alone read a CP shorted to PE (0 V) as C.
        raise ctx.error(
            f"{key}.fault_pin",
            "a pilot board without a fault or short input reads a CP shorted to PE as state C, and the "
            "contactor could close on a shorted cable: wire the board's fault output (fault_pin) or its "
            "short output (short_pin) (got false)")
    if backend == "mock":
        for name in ("pwm_chip", "pwm_channel"):
            if getattr(pilot, name) == "auto":
                raise ctx.error(
                    f"{key}.{name}",
                    '"auto" reads a Raspberry Pi\'s device tree; the simulation (hardware.backend = "mock") '
                    'gives each connector pwmchip0 channel 0: leave it out or set 0 (got "auto")')


def _check_security(config: Config, ctx: _Context) -> None:
    """The security profile's requirements, checked now rather than at every reconnect; each
    error names the key to fix (the URL, the key, the certificate), not the profile."""
    from evcp.ocpp.security import (PROFILES, PROFILES_WITH_PASSWORD, PROFILES_WITH_TLS, SecuritySettings,
                                      SecuritySettingsError, connection_parameters)

    ocpp, cp_id = config.ocpp, config.charge_point.id
    profile = ocpp.security_profile
    named = f"with ocpp.security_profile = {profile} ({PROFILES[profile]})"
    scheme = urlsplit(ocpp.csms_url).scheme
    if profile in PROFILES_WITH_TLS and scheme != "wss":
        raise ctx.error("ocpp.csms_url", f"must start with wss:// {named} (got {_show(ocpp.csms_url)})")
    if profile in PROFILES_WITH_PASSWORD and not ocpp.authorization_key:
        raise ctx.error("ocpp.authorization_key", f"required {named}: the HTTP Basic password")
    if profile == 3:
        for name in ("client_cert_file", "client_key_file"):
            if getattr(ocpp, name) is None:
                raise ctx.error(f"ocpp.{name}", f"required {named}")
    settings = SecuritySettings(profile, ocpp.authorization_key or "", ocpp.ca_file,
                                ocpp.client_cert_file, ocpp.client_key_file, plain_password=ocpp.version == "2.0.1")
    try:
        connection_parameters(ocpp.csms_url.rstrip("/") + "/" + cp_id, cp_id, settings)
    except SecuritySettingsError as error:
        key, colon, problem = str(error).partition(": ")
        if not colon or not key.startswith("ocpp."):
            key, problem = "ocpp.security_profile", f"{error} (got {profile})"
        raise ctx.error(key, problem) from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_meter(meter: MeterConfig, key: str, ctx: _Context) -> None:
    if meter.model != "custom":
        if meter.registers:
            raise ctx.error(
                f"{key}.registers",
                f'only used with model = "custom" (model is "{meter.model}"); remove it or set model = "custom"',
            )
        register_map = MODELS[meter.model]
    elif not meter.registers:
        raise ctx.error(
            f"{key}.registers",
            'required with model = "custom": one entry per quantity, '
            'e.g. power_w = { address = 12, type = "float32", function = 4 }',
        )
    else:
        try:
            register_map = custom_map(meter.registers)
        except ValueError as exc:  # "quantity[.field]: what is wrong"
            where, _, problem = str(exc).partition(": ")
            raise ctx.error(f"{key}.registers.{where}", problem) from None
    try:
        register_map.energy_quantity(meter.energy)
    except ValueError as exc:
        raise ctx.error(f"{key}.energy", f"{exc} (got {_show(meter.energy)})") from None


BUS_SETTINGS = ("baudrate", "parity", "stopbits", "timeout_s")
"""What every meter on one RS-485 port must share: the port is opened once, with these
(``evcp.hal.meter.ModbusLink``)."""


def _check_shared_meter_links(config: Config, ctx: _Context) -> None:
    """Meters on one serial port are one RS-485 bus: the same serial settings, and a Modbus device
    id each; meters behind one Modbus TCP gateway (host and port) need a device id each too."""
    first_on: dict[tuple, tuple[str, MeterConfig]] = {}
    ids_on: dict[tuple, dict[int, str]] = {}
    for n, connector in enumerate(config.hardware.connectors, 1):
        meter, key = connector.meter, f"hardware.connectors[{n}].meter"
        if meter.backend == "none":
            continue
        rtu = meter.backend == "modbus-rtu"
        link = (meter.serial_port,) if rtu else (meter.host, meter.port)
        where = f"serial_port {_show(meter.serial_port)}" if rtu else f"{meter.host}:{meter.port}"
        other_key, other = first_on.setdefault(link, (key, meter))
        if rtu and other is not meter:
            for name in BUS_SETTINGS:
                if getattr(meter, name) != getattr(other, name):
                    raise ctx.error(f"{key}.{name}", f"{other_key} on the same {where} has {name} = "
                                                     f"{_show(getattr(other, name))}: the meters of one RS-485 bus "
                                                     f"share its settings (got {_show(getattr(meter, name))})")
        ids = ids_on.setdefault(link, {})
        if meter.device_id in ids:
            raise ctx.error(f"{key}.device_id", f"{ids[meter.device_id]} on the same {where} has this Modbus device "
                                                f"id: give each meter on one bus an id of its own (set it on the meter "
                                                f"too) (got {meter.device_id})")
        ids[meter.device_id] = key


def _claims(config: Config) -> Iterator[tuple[str, str, str]]:
    """(resource, key, owner) for each GPIO pin, PWM output and ADC input in use.

    Every resource has one owner; ``owner`` is how messages name the key that
    took it. SPI bus lines come first, so a clash names the pin that was set.
    PWM outputs and SPI lines are real only on a Pi: the simulation gives each
    connector a PWM of its own and has no SPI bus.
    """
    hardware = config.hardware
    spi_buses: dict[int, str] = {}
    if hardware.reader.backend == "mfrc522":
        spi_buses[hardware.reader.spi_bus] = "hardware.reader.spi_bus"
    for n, connector in enumerate(hardware.connectors, 1):
        if connector.pilot.backend == "adc":
            spi_buses.setdefault(connector.pilot.spi_port, f"hardware.connectors[{n}].pilot.spi_port")
        if connector.pp.backend == "adc":
            spi_buses.setdefault(connector.pp.spi_port, f"hardware.connectors[{n}].pp.spi_port")
    if hardware.backend == "pi":
        for bus, key in spi_buses.items():
            for pin, line in _SPI_BUS_PINS.get(bus, {}).items():
                yield f"GPIO{pin}", key, f"{key} ({line})"
    if hardware.reader.backend == "mfrc522":
        yield f"GPIO{hardware.reader.rst_pin}", "hardware.reader.rst_pin", "hardware.reader.rst_pin"
    if hardware.power_fail_pin is not None:
        yield f"GPIO{hardware.power_fail_pin}", "hardware.power_fail_pin", "hardware.power_fail_pin"
    for n, connector in enumerate(hardware.connectors, 1):
        prefix = f"hardware.connectors[{n}]"
        relay, pilot = connector.relay, connector.pilot
        pins = {"relay.pin": relay.pin, "relay.feedback_pin": relay.feedback_pin}
        if pilot.backend == "gpio":
            pins.update({f"pilot.{name}": getattr(pilot, name) for name in ("vehicle_pin", "charge_pin", "fault_pin", "short_pin")})
        else:
            where = f"{prefix}.pilot.adc_channel"
            yield f"ADC channel {pilot.adc_channel} on SPI{pilot.spi_port} CE{pilot.spi_device}", where, where
        if hardware.backend == "pi":
            pins["pilot.pwm_pin"] = pilot.pwm_pin
        if connector.lock.backend == "gpio":
            lock = connector.lock
            pins.update({"lock.lock_pin": lock.lock_pin, "lock.feedback_pin": lock.feedback_pin})
            if lock.actuator == "motor":
                pins["lock.unlock_pin"] = lock.unlock_pin
        if connector.pp.backend == "adc" and hardware.backend == "pi":
            pp = connector.pp
            where = f"{prefix}.pp.adc_channel"
            yield f"ADC channel {pp.adc_channel} on SPI{pp.spi_port} CE{pp.spi_device}", where, where
        for name, pin in pins.items():
            if pin is not None:
                yield f"GPIO{pin}", f"{prefix}.{name}", f"{prefix}.{name}"
        if hardware.backend == "pi" and "auto" not in (pilot.pwm_chip, pilot.pwm_channel):
            # Pins that share a channel ("auto", e.g. GPIO12 and GPIO18 on a Pi 4) are found
            # when the devices are built, once the board is known.
            where = f"{prefix}.pilot.pwm_channel"
            yield f"PWM channel {pilot.pwm_channel} of pwmchip{pilot.pwm_chip}", where, where
    if hardware.relay_heartbeat_pin is not None:
        yield f"GPIO{hardware.relay_heartbeat_pin}", "hardware.relay_heartbeat_pin", "hardware.relay_heartbeat_pin"


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


def _join(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _show(value: object) -> str:
    """A TOML value as the installer wrote it, shortened."""
    if isinstance(value, str):
        return _toml_string(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        text = "[" + ", ".join(_show(item) for item in value) + "]"
        return text if len(text) <= 60 else text[:56] + "...]"
    if isinstance(value, (bool, int, float)):
        return _toml_value(value)
    return str(value)  # dates and times


def _closest(name: str, choices: Any, cutoff: float = 0.6) -> str | None:
    """The choice closest to ``name`` (ignoring case), if one is close."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[match[0]] if match else None


@cache
def _all_keys(cls: type = Config, prefix: str = "") -> tuple[str, ...]:
    """Every dotted key of the file, e.g. "hardware.connectors.relay.pin"."""
    keys: list[str] = []
    for name, hint in _keys_of(cls).items():
        path = _join(prefix, name)
        keys.append(path)
        inner = get_args(hint)[0] if get_origin(hint) is tuple else hint
        if is_dataclass(inner):
            keys += _all_keys(inner, path)
    return tuple(keys)


def _unknown_key(name: str, known: Any) -> str:
    """The problem for key ``name`` that is not one of ``known``, with the likely intended key."""
    if close := _closest(name, known):
        return f'unknown key; did you mean "{close}"?'
    elsewhere = [k for k in _all_keys() if k.rpartition(".")[2] == name]
    if len(elsewhere) == 1:
        return f'unknown key here; did you mean "{elsewhere[0]}"?'
    return "unknown key; known here: " + ", ".join(known)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _is_secret(name: str) -> bool:
    return re.search(r"(password|passphrase|secret|token|key)$", name.replace("_", "").lower()) is not None


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    def escape(c: str) -> str:
        if c in _ESCAPES:
            return _ESCAPES[c]
        return f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c

    return '"' + "".join(map(escape, text)) + '"'


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_string(name)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return _toml_string(str(value))
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _ocpp_key_value(name: str, text: str) -> str:
    """An [ocpp.keys] or [ocpp.variables] value: integers and booleans bare, like an installer
    writes them."""
    if _is_secret(name):
        return _toml_string(MASK)
    return text if re.fullmatch(r"true|false|-?(0|[1-9][0-9]*)", text) else _toml_string(text)


def _render_table(obj: Any, header: str, key: str, lines: list[str]) -> None:
    lines += ["", header]
    tables: list[tuple[Any, str, str]] = []
    for name, hint in _keys_of(type(obj)).items():
        value, sub = getattr(obj, name), f"{key}.{name}"
        if is_dataclass(value):
            tables.append((value, f"[{sub}]", sub))
        elif isinstance(value, tuple) and value and is_dataclass(value[0]):
            tables += [(item, f"[[{sub}]]  # connector {n}", sub) for n, item in enumerate(value, 1)]
        elif isinstance(value, Mapping):
            if value:
                tables.append((value, f"[{sub}]", sub))
        elif value is None:
            lines.append(f"{name} = false" if int in get_args(hint) else f"# {name} is not set")
        elif _is_secret(name):
            lines.append(f"{name} = {_toml_string(MASK)}")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for value, sub_header, sub in tables:
        if isinstance(value, Mapping):
            lines += ["", sub_header]
            for name, item in value.items():
                text = _ocpp_key_value(name, item) if sub in ("ocpp.keys", "ocpp.variables") else _toml_value(item)
                lines.append(f"{_toml_key(name)} = {text}")
        else:
            _render_table(value, sub_header, sub, lines)
