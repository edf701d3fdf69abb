"""A whole simulated charger: the real drivers over simulated devices.

Per connector: ``GpioRelay``, ``GpioPilot`` and ``GpioLock`` over gpiozero's mock
pins, the pilot's ``SysfsPwm`` over a fake sysfs tree (the EV sees every duty), a
``SimulatedEv`` on the pilot board's lines, a ``ContactorModel`` on the relay's
mirror contact, a ``SimulatedLockActuator`` on the lock's lines, ``AdcProximity``
over a ``SimulatedPpAdc`` reading the ``SimulatedCable`` in the socket, and the
real ``ModbusMeter`` talking Modbus TCP to a ``SimulatedMeter`` whose power is
the EV's. One ``BenchReader`` for the charge point: the real RC522 driver over a
simulated chip for UID-shaped idTags.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from evcp.config import Config
from evcp.hal.lock import GpioLock
from evcp.hal.meter import ModbusMeter
from evcp.hal.pilot import GpioPilot, SysfsPwm
from evcp.hal.power import PowerFailInput
from evcp.hal.proximity import AdcProximity
from evcp.hal.relay import GpioRelay
from evcp.mocks.ev import ContactorModel, PwmSeenByEv, SimulatedEv
from evcp.mocks.socket import SimulatedCable, SimulatedLockActuator, SimulatedPpAdc
from evcp.mocks.meter_server import SimulatedMeter
from evcp.mocks.pins import held_pin, use_mock_pins
from evcp.mocks.reader import BenchReader
from evcp.mocks.sysfs_pwm import FakeSysfsPwm
from evcp.runtime.hardware import ConnectorDevices, StationHardware


MOCK_POWER_FAIL_PIN = 3
BENCH_FAULTS = ("meter", "relay", "reader", "power", "lock", "pp")
"""What the bench can break: meter silent, contactor welded, reader gone, mains failing, socket lock
jammed, cable's PP resistor out of band."""


@dataclass
class SimulatedConnector:
    ev: SimulatedEv
    contactor: ContactorModel | None
    meter: SimulatedMeter
    pwm: FakeSysfsPwm
    cable: SimulatedCable
    lock: SimulatedLockActuator | None = None


class BenchHardware:
    """The verbs of the bench API, acting on the simulated devices."""

    def __init__(self, connectors: list[SimulatedConnector], reader: BenchReader):
        self.simulated = connectors
        self.reader = reader
        self.connectors = len(connectors)
        self._faults = dict.fromkeys(BENCH_FAULTS, False)

    def set_pilot(self, connector: int, state: str) -> None:
        """Raises ValueError for a state the simulated pilot board cannot show (D).

        Plugging in puts the cable into the socket first (the charger reads its PP); unplugging
        takes it out, unless the socket's lock holds it."""
        sim = self.simulated[connector - 1]
        if state != "A":
            sim.cable.insert()
        sim.ev.set_pilot(state)
        if state == "A" and not (sim.lock is not None and sim.lock.locked):
            sim.cable.remove()

    def set_cable(self, connector: int, rating_a: float | None) -> None:
        """The cable the driver brings: 13, 20, 32 or 63 A, or None (ValueError otherwise)."""
        self.simulated[connector - 1].cable.choose(rating_a)

    def present_tag(self, id_tag: str) -> None:
        self.reader.present(id_tag)

    def faults(self) -> dict[str, bool]:
        """Which simulated faults are active now (set through ``set_fault``)."""
        return dict(self._faults)

    def ev_state(self) -> list[dict]:
        """What each simulated EV and socket does now, for the status page."""
        return [{"connector": n, "pilot": sim.ev.state, "requesting": sim.ev.requesting,
                 "offered_a": sim.ev.offered_a, "current_a": round(sim.ev.current_a, 2), "power_w": sim.ev.power_w,
                 "cable_a": sim.cable.rating_a, "cable_in_socket": sim.cable.in_socket,
                 "locked": sim.lock.locked if sim.lock is not None else None}
                for n, sim in enumerate(self.simulated, 1)]

    def set_power_failing(self, failing: bool) -> None:
        """The simulated UPS: the mains fails (True) or comes back (False)."""
        self.power_pin.hold(not failing)

    def set_fault(self, device: str, active: bool) -> None:
        """ValueError for a device the bench cannot break (see ``BENCH_FAULTS``)."""
        if device not in BENCH_FAULTS:
            raise ValueError(f"device must be one of {', '.join(BENCH_FAULTS)} (got {device!r})")
        self._faults[device] = active
        for sim in self.simulated:
            if device == "meter":
                sim.meter.fail() if active else sim.meter.recover()
            elif device == "relay" and sim.contactor is not None:
                sim.contactor.weld() if active else sim.contactor.unweld()
            elif device == "lock" and sim.lock is not None:
                sim.lock.jam(active)
            elif device == "pp":
                sim.cable.damage(active)
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
        ev = SimulatedEv(wiring.pilot, wiring.relay, mock.ev_power_w, pin_factory=factory,
                         phases=config.charge_point.phases, voltage_v=config.charge_point.voltage_v,
                         waits_for_pwm=True)
        contactor = ContactorModel(wiring.relay, factory) if wiring.relay.feedback_pin is not None else None
        cable = SimulatedCable(mock.cable_a)
        lock_actuator = lock = None
        if wiring.lock.backend == "gpio":
            lock_actuator = SimulatedLockActuator(wiring.lock, factory, on_move=_take_cable_out(ev, cable))
            lock = GpioLock(wiring.lock, pin_factory=factory)
        proximity = (AdcProximity(wiring.pp, adc=SimulatedPpAdc(cable, wiring.pp))
                     if wiring.pp.backend == "adc" else None)
        config.storage.state_dir.mkdir(parents=True, exist_ok=True)
        meter = SimulatedMeter(mock.meter_model, power_source=_power_of(ev), initial_energy_wh=mock.initial_energy_wh,
                               register_file=config.storage.state_dir / f"simulated-meter-{index + 1}.wh")
        await meter.start()
        hardware.closers.append(meter.stop)
        pwm_tree = FakeSysfsPwm(f"{sysfs_dir.name}/{index + 1}", chip=wiring.pilot.pwm_chip)
        simulated.append(SimulatedConnector(ev, contactor, meter, pwm_tree, cable, lock_actuator))
        pwm = PwmSeenByEv(SysfsPwm(wiring.pilot.pwm_chip, wiring.pilot.pwm_channel, wiring.pilot.pwm_invert,
                                   root=f"{sysfs_dir.name}/{index + 1}"), ev)
        meter_config = meter.meter_config(poll_interval_s=wiring.meter.poll_interval_s,
                                          timeout_s=wiring.meter.timeout_s)
        devices.append(ConnectorDevices(
            relay=GpioRelay(wiring.relay, pin_factory=factory),
            pilot=GpioPilot(wiring.pilot, pwm, pin_factory=factory),
            meter=ModbusMeter(meter_config),
            meter_poll_s=meter_config.poll_interval_s,
            cable=proximity,
            lock=lock,
        ))
    reader = BenchReader(config.hardware.reader, pin_factory=factory)
    hardware.reader = reader
    hardware.bench = BenchHardware(simulated, reader)
    # GPIO3 is left free by every mock pin layout; the simulated UPS holds it high (mains good).
    power_pin = config.hardware.power_fail_pin if config.hardware.power_fail_pin is not None else MOCK_POWER_FAIL_PIN
    hardware.bench.power_pin = held_pin(factory, power_pin)
    hardware.bench.power_pin.hold(True)
    hardware.power_fail = PowerFailInput(power_pin, active_high=False, pin_factory=factory,
                                         hold_s=config.hardware.power_fail_hold_s)

    async def close_simulation() -> None:
        for sim in simulated:
            if sim.contactor is not None:
                sim.contactor.detach()
            if sim.lock is not None:
                sim.lock.detach()
            sim.pwm.close()
        sysfs_dir.cleanup()

    hardware.closers.insert(0, close_simulation)
    return hardware


def _take_cable_out(ev: SimulatedEv, cable: SimulatedCable):
    """Once the lock lets go of a cable whose EV end is unplugged, the driver takes it."""
    def moved(locked: bool) -> None:
        if not locked and not ev.plugged:
            cable.remove()
    return moved


def _power_of(ev: SimulatedEv):
    return lambda: ev.power_w


__all__ = ["BENCH_FAULTS", "BenchHardware", "build_mock_hardware", "SimulatedConnector"]
