"""The control-pilot line: reading the EV's state and signalling the current limit.

Two readers implement ``evcp.hal.Pilot``:

- ``GpioPilot`` reads the digital outputs of a pilot interface board that
  classifies the CP voltage in hardware;
- ``AdcPilot`` samples the CP voltage through a divider on an MCP3004/3008 and
  classifies it with ``evcp.hal.iec61851.classify``.

Both signal through a ``PwmOutput``, normally ``SysfsPwm`` (kernel hardware
PWM). gpiozero/lgpio PWM is software-timed with whole-percent resolution
(16 A = 26.67 % would become 26 %, which the EV reads as 15.6 A), so it must
never drive the CP.

Both pilots start with the line at constant -12 V (state F, "EVSE not
available"), the safe boot state: the core calls ``stop_offer()`` once the
station is ready to accept an EV.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gpiozero import MCP3004, MCP3008, DigitalInputDevice

from evcp.hal import HardwareError, iec61851

if TYPE_CHECKING:
    from evcp.config import PilotConfig

log = logging.getLogger("evcp.hal.pilot")

CONSTANT_HIGH = 1.0
"""Duty for a constant +12 V (states A1/B1/C1: no current offered)."""
CONSTANT_LOW = 0.0
"""Duty for a constant -12 V (state F: EVSE not available)."""


@runtime_checkable
class PwmOutput(Protocol):
    """A 1 kHz PWM output that drives the CP line through the +-12 V driver."""

    def set_duty(self, fraction: float) -> None:
        """Keep the CP at +12 V for ``fraction`` (0..1) of every 1 ms period.

        1.0 is a constant +12 V, 0.0 a constant -12 V. Raises ValueError
        outside 0..1 and HardwareError when the output cannot be written.
        """

    @property
    def duty(self) -> float | None:
        """The duty last set, or None before the first set_duty()."""

    def release(self) -> None:
        """Leave the line at constant +12 V where possible and free the output. Idempotent."""


class SysfsPwm:
    """Kernel hardware PWM through ``/sys/class/pwm``; implements ``PwmOutput``.

    Exports ``pwmchip<chip>/pwm<channel>`` if needed and sets the period to
    1 ms (1 kHz, IEC 61851-1 Annex A). The duty is written in nanoseconds,
    so its resolution is 0.0001 %. ``invert=True`` serves CP drivers whose
    output is -12 V while the Pi's pin is high: the duty is flipped in
    software, because not every PWM chip supports the ``polarity`` file.
    Each sysfs attribute is written only when its value changes.

    ``root`` points at another tree that looks like ``/sys/class/pwm``
    (``evcp.mocks.sysfs_pwm`` builds one for the bench and the tests).
    """

    PERIOD_NS = 1_000_000
    #: After ``export`` udev needs a moment to create the files and fix their permissions.
    SETUP_TIMEOUT_S = 2.0

    def __init__(self, chip: int, channel: int, invert: bool = False, root: str | os.PathLike = "/sys/class/pwm"):
        self._chip_dir = Path(root) / f"pwmchip{chip}"
        self._dir = self._chip_dir / f"pwm{channel}"
        self._channel = channel
        self._invert = invert
        self._lock = threading.Lock()
        self._duty: float | None = None
        self._written_duty_ns: int | None = None
        self._enabled = False
        if not self._chip_dir.is_dir():
            raise HardwareError(
                f"no PWM chip at {self._chip_dir}: enable the hardware PWM "
                "(e.g. dtoverlay=pwm,pin=18,func=2 in config.txt) and check pwm_chip"
            )
        deadline = time.monotonic() + self.SETUP_TIMEOUT_S
        if not self._dir.is_dir():
            _write(self._chip_dir / "export", channel)
            while not self._dir.is_dir():
                if time.monotonic() > deadline:
                    raise HardwareError(f"{self._dir} did not appear after export")
                time.sleep(0.005)
        self._set_period(deadline)

    @property
    def path(self) -> Path:
        """The channel's sysfs directory."""
        return self._dir

    @property
    def duty(self) -> float | None:
        """The duty last set (as seen on the CP, before inversion), or None."""
        return self._duty

    def set_duty(self, fraction: float) -> None:
        """Output ``fraction`` of each period at +12 V; see ``PwmOutput.set_duty``."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"PWM duty must be 0..1 (got {fraction!r})")
        pin_high = 1.0 - fraction if self._invert else fraction
        duty_ns = round(pin_high * self.PERIOD_NS)
        with self._lock:
            if duty_ns != self._written_duty_ns:
                self._written_duty_ns = None
                _write(self._dir / "duty_cycle", duty_ns)
                self._written_duty_ns = duty_ns
            if not self._enabled:
                _write(self._dir / "enable", 1)
                self._enabled = True
            self._duty = fraction

    def release(self) -> None:
        """Leave the CP at constant +12 V and keep the channel enabled. Never raises.

        The kernel holds the last setting after the process exits, so the EV
        keeps seeing "no current offered" instead of a floating line.
        """
        try:
            self.set_duty(CONSTANT_HIGH)
        except Exception:
            log.exception("pilot PWM: could not set constant +12 V at %s", self._dir)

    def _set_period(self, deadline: float) -> None:
        # The kernel rejects a period shorter than the duty already set.
        duty_ns = _read_int(self._dir / "duty_cycle")
        if duty_ns is not None and duty_ns > self.PERIOD_NS:
            _write_when_permitted(self._dir / "duty_cycle", 0, deadline)
        if _read_int(self._dir / "period") != self.PERIOD_NS:
            _write_when_permitted(self._dir / "period", self.PERIOD_NS, deadline)

    def __repr__(self) -> str:
        return f"<SysfsPwm {self._dir} duty={self._duty}>"


class _PilotSignal:
    """What both pilots share: signalling through a PwmOutput."""

    def __init__(self, pwm: PwmOutput):
        self._pwm = pwm
        self._offered: float | None = None
        self.signal_fault()

    def offer_current(self, amps: float) -> None:
        """Run the PWM with the duty for ``amps`` (IEC 61851-1 Table A.7).

        Raises ValueError outside 6..80 A before the line is touched.
        """
        duty = iec61851.duty_for_current(amps)
        self._offered = None
        self._pwm.set_duty(duty)
        self._offered = float(amps)

    def stop_offer(self) -> None:
        """Constant +12 V: the EV may not draw current (states A1/B1/C1)."""
        self._offered = None
        self._pwm.set_duty(CONSTANT_HIGH)

    def signal_fault(self) -> None:
        """Constant -12 V: state F, EVSE not available."""
        self._offered = None
        self._pwm.set_duty(CONSTANT_LOW)

    @property
    def offered_current(self) -> float | None:
        """The current offered by the running PWM in amps, or None when no PWM runs."""
        return self._offered

    def _release_pwm(self) -> None:
        self._offered = None
        try:
            self._pwm.set_duty(CONSTANT_HIGH)
        except Exception:
            log.exception("pilot: could not set constant +12 V on release")
        try:
            self._pwm.release()
        except Exception:
            log.exception("pilot: could not release the PWM")


class GpioPilot(_PilotSignal):
    """Reads a pilot interface board's digital outputs; implements ``evcp.hal.Pilot``.

    The board says "vehicle" (CP at 9 V or below), "charge" (6 V or below),
    and optionally "fault" (no valid level / diode check failed) and "short"
    (CP at 0 V). ``inputs_active_high`` says which level is asserted; the
    inputs are pulled to the other level, so a disconnected board reads A.
    The board cannot tell D from C.
    """

    def __init__(self, config: PilotConfig, pwm: PwmOutput, pin_factory=None):
        self._config = config
        self._devices: list[DigitalInputDevice] = []
        try:
            self._vehicle = self._input(config.vehicle_pin, pin_factory)
            self._charge = self._input(config.charge_pin, pin_factory)
            self._fault = self._input(config.fault_pin, pin_factory)
            self._short = self._input(config.short_pin, pin_factory)
            super().__init__(pwm)
        except Exception:
            self._close_inputs()
            raise

    def read_state(self) -> str | None:
        """The board's state now: E (short), F (fault), C, B, A; None for charge without vehicle."""
        try:
            if self._short is not None and self._short.is_active:
                return "E"
            if self._fault is not None and self._fault.is_active:
                return "F"
            vehicle, charge = self._vehicle.is_active, self._charge.is_active
        except Exception as exc:
            raise HardwareError(f"pilot board inputs cannot be read: {exc}") from exc
        if charge:
            return "C" if vehicle else None
        return "B" if vehicle else "A"

    def watch(self, on_change) -> None:
        """Call ``on_change`` (from gpiozero's callback thread) on every edge of the board's outputs."""
        for device in self._devices:
            device.when_activated = device.when_deactivated = lambda *_: on_change()

    def release(self) -> None:
        """Constant +12 V, release the PWM and free the input lines. Idempotent."""
        self._release_pwm()
        self._close_inputs()

    def _input(self, pin: int | None, pin_factory) -> DigitalInputDevice | None:
        if pin is None:
            return None
        try:
            device = DigitalInputDevice(
                pin, pull_up=not self._config.inputs_active_high, pin_factory=pin_factory
            )
        except Exception as exc:
            raise HardwareError(f"pilot board: cannot read GPIO{pin}: {exc}") from exc
        self._devices.append(device)
        return device

    def _close_inputs(self) -> None:
        for device in self._devices:
            try:
                device.close()
            except Exception:
                log.exception("pilot: could not free %r", device)
        self._devices.clear()


class AdcPilot(_PilotSignal):
    """Samples the CP voltage with an MCP3004/3008; implements ``evcp.hal.Pilot``.

    ``config.samples`` readings of ``raw_value`` (0..1023; ``value`` is never
    exactly 0 and would skew the scale) give a maximum and a minimum; they
    become volts as ``raw * volts_per_count + offset_v``. 100 samples at the
    ~40 k samples/s of hardware SPI span about 2.5 PWM periods.

    ``adc`` replaces the MCP300x (any object with ``raw_value``); an injected
    ADC stays the caller's to close.
    """

    def __init__(self, config: PilotConfig, pwm: PwmOutput, adc=None, pin_factory=None):
        if config.samples < 1:
            raise ValueError(f"pilot samples must be at least 1 (got {config.samples})")
        self._config = config
        self._owns_adc = adc is None
        if adc is None:
            chip = MCP3008 if config.adc_chip == "mcp3008" else MCP3004
            try:
                adc = chip(
                    channel=config.adc_channel,
                    port=config.spi_port,
                    device=config.spi_device,
                    pin_factory=pin_factory,
                )
            except Exception as exc:
                raise HardwareError(
                    f"pilot ADC {config.adc_chip} on SPI{config.spi_port}.{config.spi_device} "
                    f"channel {config.adc_channel}: {exc}"
                ) from exc
        self._adc = adc
        try:
            super().__init__(pwm)
        except Exception:
            if self._owns_adc:
                adc.close()
            raise

    def read_voltages(self) -> tuple[float, float]:
        """Sample the CP now: (highest, lowest) level in volts."""
        samples = self._config.samples
        try:
            raws = [self._adc.raw_value for _ in range(samples)]
        except Exception as exc:
            raise HardwareError(f"pilot ADC cannot be read: {exc}") from exc
        first = self._volts(max(raws))
        second = self._volts(min(raws))
        return max(first, second), min(first, second)

    def read_state(self) -> str | None:
        """Classify the sampled levels (``iec61851.classify``); None while unstable."""
        return iec61851.classify(*self.read_voltages())

    def release(self) -> None:
        """Constant +12 V, release the PWM and close the ADC if this pilot built it. Idempotent."""
        self._release_pwm()
        if self._owns_adc and self._adc is not None:
            try:
                self._adc.close()
            except Exception:
                log.exception("pilot: could not close the ADC")
            self._adc = None

    def _volts(self, raw: int) -> float:
        return raw * self._config.volts_per_count + self._config.offset_v


def _write(path: Path, value: int) -> None:
    # O_TRUNC without O_CREAT: what a shell's "echo 1 > enable" does, but an
    # attribute that does not exist is an error rather than a new file.
    # O_NONBLOCK: sysfs ignores it; elsewhere a write must fail, not hang.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NONBLOCK)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise HardwareError(f"cannot write {value} to {path}: {exc.strerror or exc}") from exc


def _write_when_permitted(path: Path, value: int, deadline: float) -> None:
    while True:
        try:
            _write(path, value)
            return
        except HardwareError as exc:
            if not isinstance(exc.__cause__, PermissionError) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
