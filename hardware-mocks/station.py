"""A whole simulated charger: the real drivers over simulated devices.

Per connector: ``GpioRelay`` and ``GpioPilot`` over gpiozero's mock pins, the
pilot's ``SysfsPwm`` over a fake sysfs tree, a ``SimulatedEv`` on the pilot
board's lines, a ``ContactorModel`` on the relay's mirror contact, and the
real ``ModbusMeter`` talking Modbus TCP to a ``SimulatedMeter`` whose power is
the EV's. One ``BenchReader`` for the charge point: the real RC522 driver over a
simulated chip for UID-shaped idTags.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from evcp.config import Config
from evcp.hal.meter import ModbusMeter
from evcp.hal.pilot import GpioPilot, SysfsPwm
from evcp.hal.power import PowerFailInput
from evcp.hal.relay import GpioRelay
from evcp.mocks.ev import ContactorModel, SimulatedEv
from evcp.mocks.meter_server import SimulatedMeter
from evcp.mocks.pins import held_pin, use_mock_pins
from evcp.mocks.reader import BenchReader
from evcp.mocks.sysfs_pwm import FakeSysfsPwm
from evcp.runtime.hardware import ConnectorDevices, StationHardware


MOCK_POWER_FAIL_PIN = 3


@dataclass
class SimulatedConnector:
    ev: SimulatedEv
    contactor: ContactorModel | None
    meter: SimulatedMeter
    pwm: FakeSysfsPwm


class BenchHardware:
    """The verbs of the bench API, acting on the simulated devices."""

    def __init__(self, connectors: list[SimulatedConnector], reader: BenchReader):
        self.simulated = connectors
        self.reader = reader
        self.connectors = len(connectors)

    def set_pilot(self, connector: int, state: str) -> None:
        """Raises ValueError for a state the simulated pilot board cannot show (D)."""
        self.simulated[connector - 1].ev.set_pilot(state)

    def present_tag(self, id_tag: str) -> None:
        self.reader.present(id_tag)

    def set_power_failing(self, failing: bool) -> None:
        """The simulated UPS: the mains fails (True) or comes back (False)."""
        self.power_pin.hold(not failing)

    def set_fault(self, device: str, active: bool) -> None:
        for sim in self.simulated:
            if device == "meter":
                sim.meter.fail() if active else sim.meter.recover()
            elif device == "relay" and sim.contactor is not None:
                sim.contactor.weld() if active else sim.contactor.unweld()
        if device == "reader":
            self.reader.fail() if active else self.reader.recover()
        if device == "power":
            self.set_power_failing(active)


async def build_mock_hardware(config: Config) -> StationHardware:
    factory = use_mock_pins()
    sysfs_dir = tempfile.TemporaryDirectory(prefix="evcp-pwm-")
    simulated: list[SimulatedConnector] = []
    devices: list[ConnectorDevices] = []
    hardware = StationHardware(connectors=devices, reader=None)
    mock = config.hardware.mock
    for index, wiring in enumerate(config.hardware.connectors):
        ev = SimulatedEv(wiring.pilot, wiring.relay, mock.ev_power_w, pin_factory=factory)
        contactor = ContactorModel(wiring.relay, factory) if wiring.relay.feedback_pin is not None else None
        config.storage.state_dir.mkdir(parents=True, exist_ok=True)
        meter = SimulatedMeter(mock.meter_model, power_source=_power_of(ev), initial_energy_wh=mock.initial_energy_wh,
                               register_file=config.storage.state_dir / f"simulated-meter-{index + 1}.wh")
        await meter.start()
        hardware.closers.append(meter.stop)
        pwm_tree = FakeSysfsPwm(f"{sysfs_dir.name}/{index + 1}", chip=wiring.pilot.pwm_chip)
        simulated.append(SimulatedConnector(ev, contactor, meter, pwm_tree))
        pwm = SysfsPwm(wiring.pilot.pwm_chip, wiring.pilot.pwm_channel, wiring.pilot.pwm_invert,
                       root=f"{sysfs_dir.name}/{index + 1}")
        meter_config = meter.meter_config(poll_interval_s=wiring.meter.poll_interval_s,
                                          timeout_s=wiring.meter.timeout_s)
        devices.append(ConnectorDevices(
            relay=GpioRelay(wiring.relay, pin_factory=factory),
            pilot=GpioPilot(wiring.pilot, pwm, pin_factory=factory),
            meter=ModbusMeter(meter_config),
            meter_poll_s=meter_config.poll_interval_s,
        ))
    reader = BenchReader(config.hardware.reader, pin_factory=factory)
    hardware.reader = reader
    hardware.bench = BenchHardware(simulated, reader)
    # GPIO3 is left free by every mock pin layout; the simulated UPS holds it high (mains good).
    power_pin = config.hardware.power_fail_pin if config.hardware.power_fail_pin is not None else MOCK_POWER_FAIL_PIN
    hardware.bench.power_pin = held_pin(factory, power_pin)
    hardware.bench.power_pin.hold(True)
    hardware.power_fail = PowerFailInput(power_pin, active_high=False, pin_factory=factory)

    async def close_simulation() -> None:
        for sim in simulated:
            if sim.contactor is not None:
                sim.contactor.detach()
            sim.pwm.close()
        sysfs_dir.cleanup()

    hardware.closers.insert(0, close_simulation)
    return hardware


def _power_of(ev: SimulatedEv):
    return lambda: ev.power_w


__all__ = ["BenchHardware", "build_mock_hardware", "SimulatedConnector"]
