"""The devices of one charge point, as the runtime holds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from evcp.hal import CableSensor, EnergyMeter, Pilot, Relay, SocketLock, TagReader


@dataclass
class ConnectorDevices:
    relay: Relay
    pilot: Pilot
    meter: EnergyMeter | None
    meter_poll_s: float = 1.0
    pilot_leave_charge_s: float = 0.0
    """Extra debounce before believing the EV left state C (0 for boards that debounce)."""
    cable: CableSensor | None = None
    """The proximity pilot of a socket outlet; None for a tethered cable."""
    lock: SocketLock | None = None
    """The socket's lock actuator; None for a tethered cable."""


@dataclass
class StationHardware:
    connectors: list[ConnectorDevices]
    reader: TagReader | None
    bench: Any = None
    """Verbs of simulated hardware (plug, tap, fault); None on a real charger."""
    power_fail: Any = None
    """A ``PowerFailInput``, when the charger has a UPS or supply monitor."""
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    heartbeat: Any = None
    """A ``RelayHeartbeat`` (hardware.relay_heartbeat_pin), toggled while a contactor is closed."""

    def open_all_relays(self) -> None:
        for devices in self.connectors:
            if devices.relay is not None:  # None only while check-hardware could not set it up
                devices.relay.open()
        if self.heartbeat is not None:
            self.heartbeat.stop()

    async def release(self) -> None:
        """Relays open first, then every device is freed. Never raises."""
        self.open_all_relays()
        if self.reader is not None:
            _quietly(self.reader.stop)
        if self.power_fail is not None:
            _quietly(self.power_fail.release)
        if self.heartbeat is not None:
            _quietly(self.heartbeat.release)
        for devices in self.connectors:
            for device in (devices.pilot, devices.relay, devices.cable, devices.lock):
                if device is not None:
                    _quietly(device.release)
            if devices.meter is not None:
                try:
                    await devices.meter.close()
                except Exception:  # noqa: BLE001 - shutting down; the relay is already open
                    pass
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:  # noqa: BLE001
                pass


def _quietly(release: Callable[[], None]) -> None:
    try:
        release()
    except Exception:  # noqa: BLE001 - shutting down; the relay is already open
        pass
