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


def connector_devices(wiring: ConnectorHardware) -> ConnectorDevices:
    relay = GpioRelay(wiring.relay)
    try:
        pwm = SysfsPwm(wiring.pilot.pwm_chip, wiring.pilot.pwm_channel, wiring.pilot.pwm_invert)
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
        for wiring in config.hardware.connectors:
            hardware.connectors.append(connector_devices(wiring))
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
