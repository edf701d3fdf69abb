"""Real devices from the installer config (``hardware.backend = "pi"``)."""

from __future__ import annotations

from evcp.config import Config, ConnectorHardware
from evcp.hal import HardwareError
from evcp.hal.meter import ModbusMeter
from evcp.hal.pilot import AdcPilot, GpioPilot, SysfsPwm
from evcp.hal.power import PowerFailInput
from evcp.hal.reader import Mfrc522Reader
from evcp.hal.relay import GpioRelay
from evcp.runtime.hardware import ConnectorDevices, StationHardware

ADC_LEAVE_CHARGE_S = 0.02
"""An ADC reading is noisier than a board's comparator: believe "left C" on the second sample."""


def connector_devices(wiring: ConnectorHardware, pwm_users: dict[tuple[int, int], int] | None = None,
                      number: int = 1) -> ConnectorDevices:
    """``pwm_users``: (chip, channel) -> connector, filled in to refuse two pilots on one PWM channel."""
    relay = GpioRelay(wiring.relay)
    try:
        pwm = SysfsPwm.for_pilot(wiring.pilot)
        where = (pwm.location.chip, pwm.location.channel)
        if pwm_users is not None:
            if where in pwm_users:
                pwm.release()
                raise HardwareError(
                    f"hardware.connectors[{number}].pilot.pwm_pin: GPIO{wiring.pilot.pwm_pin} is channel "
                    f"{where[1]} of pwmchip{where[0]}, the channel of connector {pwm_users[where]}'s pilot "
                    "(GPIO12 and GPIO18 share one on a Pi 4, as GPIO13 and GPIO19 do): choose another pin")
            pwm_users[where] = number
        if wiring.pilot.backend == "adc":
            pilot = AdcPilot(wiring.pilot, pwm)
        else:
            pilot = GpioPilot(wiring.pilot, pwm)
    except Exception:
        relay.release()
        raise
    meter = ModbusMeter(wiring.meter) if wiring.meter.backend != "none" else None
    return ConnectorDevices(
        relay=relay, pilot=pilot, meter=meter, meter_poll_s=wiring.meter.poll_interval_s,
        pilot_leave_charge_s=ADC_LEAVE_CHARGE_S if wiring.pilot.backend == "adc" else 0.0,
    )


async def build_pi_hardware(config: Config) -> StationHardware:
    hardware = StationHardware(connectors=[], reader=None)
    try:
        pwm_users: dict[tuple[int, int], int] = {}
        for number, wiring in enumerate(config.hardware.connectors, 1):
            hardware.connectors.append(connector_devices(wiring, pwm_users, number))
        if config.hardware.reader.backend == "mfrc522":
            hardware.reader = Mfrc522Reader(config.hardware.reader)
        if config.hardware.power_fail_pin is not None:
            hardware.power_fail = PowerFailInput(config.hardware.power_fail_pin,
                                                 config.hardware.power_fail_active_high)
    except Exception as error:
        await hardware.release()
        if isinstance(error, HardwareError):
            raise
        raise HardwareError(f"hardware setup failed: {error}") from error
    return hardware
