"""Real devices from the installer config (``hardware.backend = "pi"``).

One builder per device, so ``evcp check-hardware`` can set each up on its own: a device that
cannot be opened is that device's failure, not the end of every check.
"""

from __future__ import annotations

from evcp.config import Config, ConnectorHardware, HardwareConfig
from evcp.hal import CableSensor, EnergyMeter, HardwareError, Pilot, Relay, SocketLock, TagReader
from evcp.hal.lock import GpioLock
from evcp.hal.meter import ModbusLink, ModbusMeter
from evcp.hal.pilot import AdcPilot, GpioPilot, SysfsPwm
from evcp.hal.power import PowerFailInput
from evcp.hal.proximity import AdcProximity
from evcp.hal.reader import Mfrc522Reader
from evcp.hal.relay import GpioRelay, RelayHeartbeat
from evcp.runtime.hardware import ConnectorDevices, StationHardware

ADC_LEAVE_CHARGE_S = 0.02
"""An ADC reading is noisier than a board's comparator: believe "left C" on the second sample."""


def relay_for(wiring: ConnectorHardware) -> Relay:
    return GpioRelay(wiring.relay)


def pilot_for(wiring: ConnectorHardware) -> Pilot:
    pwm = SysfsPwm.for_pilot(wiring.pilot)
    if wiring.pilot.backend == "adc":
        return AdcPilot(wiring.pilot, pwm)
    return GpioPilot(wiring.pilot, pwm)


def shared_pwm_channels(pilots: list[Pilot | None]) -> dict[int, str]:
    """Connector number -> why its pilot may not drive its PWM channel: an earlier connector's pilot
    drives it already. "auto" finds the channel once the board is known, and on a Pi 4 GPIO12 and
    GPIO18 share channel 0 (GPIO13 and GPIO19 channel 1). None stands for a pilot not built."""
    users: dict[tuple[int, int], int] = {}
    problems: dict[int, str] = {}
    for number, pilot in enumerate(pilots, 1):
        location = getattr(getattr(pilot, "pwm", None), "location", None)
        if location is None:
            continue
        where = (location.chip, location.channel)
        if where in users:
            problems[number] = (
                f"hardware.connectors[{number}].pilot.pwm_pin: GPIO{location.pin} is channel {location.channel} "
                f"of pwmchip{location.chip}, the channel of connector {users[where]}'s pilot: choose another pin")
        else:
            users[where] = number
    return problems


def refuse_shared_pwm_channels(pilots: list[Pilot]) -> None:
    """Raises HardwareError when two pilots drive one PWM channel (see ``shared_pwm_channels``)."""
    for problem in shared_pwm_channels(pilots).values():
        raise HardwareError(problem)


def meter_for(wiring: ConnectorHardware, serial_links: dict[str, ModbusLink]) -> EnergyMeter | None:
    """The connector's meter; meters on one RS-485 port share its link in ``serial_links`` (port ->
    link), as pymodbus opens a serial port exclusively."""
    meter = wiring.meter
    if meter.backend == "none":
        return None
    if meter.backend != "modbus-rtu":
        return ModbusMeter(meter)
    link = serial_links.setdefault(meter.serial_port, ModbusLink(meter))
    return ModbusMeter(meter, link)


def cable_sensor_for(wiring: ConnectorHardware) -> CableSensor | None:
    """The proximity pilot of a socket outlet; None when none is configured (a tethered cable)."""
    return AdcProximity(wiring.pp) if wiring.pp.backend == "adc" else None


def lock_for(wiring: ConnectorHardware) -> SocketLock | None:
    return GpioLock(wiring.lock) if wiring.lock.backend == "gpio" else None


def reader_for(hardware: HardwareConfig) -> TagReader | None:
    return Mfrc522Reader(hardware.reader) if hardware.reader.backend == "mfrc522" else None


def power_fail_for(hardware: HardwareConfig) -> PowerFailInput | None:
    if hardware.power_fail_pin is None:
        return None
    return PowerFailInput(hardware.power_fail_pin, hardware.power_fail_active_high, hold_s=hardware.power_fail_hold_s)


def heartbeat_for(hardware: HardwareConfig) -> RelayHeartbeat | None:
    if hardware.relay_heartbeat_pin is None:
        return None
    return RelayHeartbeat(hardware.relay_heartbeat_pin)


def connector_devices(wiring: ConnectorHardware, serial_links: dict[str, ModbusLink]) -> ConnectorDevices:
    """Every device of one connector; the relay (built first) is freed again if another fails."""
    devices = ConnectorDevices(relay=relay_for(wiring), pilot=None, meter=None,  # type: ignore[arg-type]
                               meter_poll_s=wiring.meter.poll_interval_s,
                               pilot_leave_charge_s=ADC_LEAVE_CHARGE_S if wiring.pilot.backend == "adc" else 0.0)
    try:
        devices.pilot = pilot_for(wiring)
        devices.cable = cable_sensor_for(wiring)
        devices.lock = lock_for(wiring)
        devices.meter = meter_for(wiring, serial_links)
    except Exception:
        for device in (devices.lock, devices.cable, devices.pilot, devices.relay):
            if device is not None:
                device.release()
        raise
    return devices


async def build_pi_hardware(config: Config) -> StationHardware:
    hardware = StationHardware(connectors=[], reader=None)
    serial_links: dict[str, ModbusLink] = {}
    try:
        for wiring in config.hardware.connectors:
            hardware.connectors.append(connector_devices(wiring, serial_links))
        hardware.reader = reader_for(config.hardware)
        hardware.power_fail = power_fail_for(config.hardware)
        hardware.heartbeat = heartbeat_for(config.hardware)
        refuse_shared_pwm_channels([devices.pilot for devices in hardware.connectors])
    except Exception as error:
        await hardware.release()
        if isinstance(error, HardwareError):
            raise
        raise HardwareError(f"hardware setup failed: {error}") from error
    return hardware
