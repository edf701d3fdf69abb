"""The control-pilot line: reading the EV's state and signalling the current limit.

Two readers implement ``evcp.hal.Pilot``:

- ``GpioPilot`` reads the digital outputs of a pilot interface board that
  classifies the CP voltage in hardware;
- ``AdcPilot`` samples the CP voltage through a divider on an MCP3004/3008
  (10-bit) or MCP3202/3204/3208 (12-bit), in a thread of its own, and reads
  the PWM's high and low plateau (``evcp.hal.iec61851.find_plateaus``).

Both signal through a ``PwmOutput``, normally ``SysfsPwm`` (kernel hardware
PWM). gpiozero/lgpio PWM is software-timed with whole-percent resolution
(16 A = 26.67 % would become 26 %, which the EV reads as 15.6 A), so it must
never drive the CP. ``SysfsPwm.for_pilot`` finds the PWM chip and channel of
the configured GPIO pin on a Raspberry Pi 4 or 5 (``locate_pwm``), by the
chip's device-tree node, because the pwmchip numbers change between kernels.

Both pilots start with the line at constant -12 V (state F, "EVSE not
available"), the safe boot state: the core calls ``stop_offer()`` once the
station is ready to accept an EV.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from gpiozero import MCP3004, MCP3008, MCP3202, MCP3204, MCP3208, DigitalInputDevice

from evcp.hal import HardwareError, iec61851
from evcp.hal.iec61851 import MIN_PLATEAU_SAMPLES, PilotReading, find_plateaus, read_plateaus

if TYPE_CHECKING:
    from evcp.config import PilotConfig

log = logging.getLogger("evcp.hal.pilot")

CONSTANT_HIGH = 1.0
"""Duty for a constant +12 V (states A1/B1/C1: no current offered)."""
CONSTANT_LOW = 0.0
"""Duty for a constant -12 V (state F: EVSE not available)."""
PWM_PERIOD_S = 0.001
"""1 kHz, IEC 61851-1 Annex A."""
SYSFS_PWM_ROOT = Path("/sys/class/pwm")
DEVICE_TREE = Path("/proc/device-tree")


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


# ---------------------------------------------------------------------------
# Which PWM chip and channel drive a GPIO pin
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HeaderPwm:
    """The PWM block behind the header's PWM pins on one SoC."""

    boards: str
    device: str
    """The device-tree node that ``pwmchipN/device`` links to."""
    channels: dict[int, int]
    """GPIO pin -> channel of that chip."""


#: By the SoC named in /proc/device-tree/compatible.
#: - BCM2711 (Pi 4, Pi 400, CM4): PWM0 at fe20c000; GPIO12/18 are channel 0, GPIO13/19
#:   channel 1 (the pwm overlay's table "PWM0: 12,4(Alt0) 18,2(Alt5)  PWM1: 13,4(Alt0)
#:   19,2(Alt5)"). GPIO12 and GPIO18 share channel 0, as GPIO13 and GPIO19 share channel 1.
#: - BCM2712 (Pi 5, Pi 500, CM5): the RP1's PWM0 at 1f00098000; GPIO12/13 are channels 0/1,
#:   GPIO18/19 channels 2/3 (rppal and rpi_hardware_pwm use pwm2/pwm3 for GPIO18/19; a Pi 5
#:   with dtoverlay=pwm shows GPIO18 as "a3 PWM0_CHAN2").
HEADER_PWM = {
    "brcm,bcm2711": HeaderPwm("Raspberry Pi 4", "fe20c000.pwm", {12: 0, 18: 0, 13: 1, 19: 1}),
    "brcm,bcm2712": HeaderPwm("Raspberry Pi 5", "1f00098000.pwm", {12: 0, 13: 1, 18: 2, 19: 3}),
}


@dataclass(frozen=True)
class RaspberryPi:
    """The board, as its device tree names it."""

    model: str
    """e.g. "Raspberry Pi 5 Model B Rev 1.0" (/proc/device-tree/model)."""
    compatible: tuple[str, ...]

    @property
    def header_pwm(self) -> HeaderPwm | None:
        return next((HEADER_PWM[c] for c in self.compatible if c in HEADER_PWM), None)


@dataclass(frozen=True)
class PwmLocation:
    """Where a pilot's PWM is, and how that was decided (for check-hardware)."""

    chip: int
    channel: int
    pin: int | None = None
    device: Path | None = None
    """The chip's device (``pwmchipN/device`` resolved), None without that link."""
    board: str | None = None
    """The Raspberry Pi model, None when not read."""


def read_board(device_tree: str | os.PathLike = "/proc/device-tree") -> RaspberryPi:
    """The Raspberry Pi model from ``compatible`` and ``model``; HardwareError if unreadable."""
    directory = Path(device_tree)
    try:
        compatible = tuple(c for c in (directory / "compatible").read_bytes().decode().split("\0") if c)
    except OSError as exc:
        raise HardwareError(f"cannot read {directory / 'compatible'} to tell the Raspberry Pi model: "
                            f"{exc.strerror or exc}") from exc
    try:
        model = (directory / "model").read_bytes().decode().strip("\0\n ")
    except OSError:
        model = compatible[0] if compatible else "unknown board"
    return RaspberryPi(model, compatible)


def overlay_for(pin: int, board: RaspberryPi | None = None) -> str:
    """The config.txt line that routes the hardware PWM to ``pin``.

    Pi 4: the pwm overlay's README table. Pi 5: the firmware maps the same
    pin/func pairs onto the RP1; seen working in public reports for
    ``pwm,pin=12,func=4`` and ``pwm,pin=13,func=4`` (raspberrypi/linux #6818,
    rpi_hardware_pwm #25), for plain ``dtoverlay=pwm`` (GPIO18) and for
    ``pwm-2chan`` (GPIO18 and GPIO19, rppal #154); ``pwm,pin=19,func=2`` on a
    Pi 5 is not confirmed by any source found.
    """
    line = f"dtoverlay=pwm,pin={pin},func={4 if pin in (12, 13) else 2}"
    if board is not None and board.header_pwm is HEADER_PWM["brcm,bcm2712"] and pin in (18, 19):
        line += " (or dtoverlay=pwm-2chan for GPIO18 and GPIO19)"
    return line


def locate_pwm(pin: int | None, chip: int | str = "auto", channel: int | str = "auto", *,
               root: str | os.PathLike = "/sys/class/pwm",
               device_tree: str | os.PathLike = "/proc/device-tree") -> PwmLocation:
    """The PWM chip and channel that drive ``pin``; integers for ``chip``/``channel`` are kept.

    ``"auto"`` chip: the ``pwmchipN`` whose ``device`` link ends in the
    header PWM's node for this board (``HEADER_PWM``), whatever its number.
    ``"auto"`` channel: the pin's channel on that block. Raises HardwareError
    naming the config.txt line to add when the chip is not there.
    """
    root = Path(root)
    board: RaspberryPi | None = None
    if chip == "auto" or channel == "auto":
        board = read_board(device_tree)
        header = board.header_pwm
        if header is None:
            raise HardwareError(
                f'pilot.pwm_chip/pwm_channel = "auto" knows the Raspberry Pi 4 and 5; this board is '
                f"{board.model} ({', '.join(board.compatible)}): set pilot.pwm_chip and pilot.pwm_channel")
        if channel == "auto":
            if pin not in header.channels:
                raise HardwareError(f"GPIO{pin} has no hardware PWM on a {header.boards} "
                                    f"(pins {', '.join(map(str, sorted(header.channels)))})")
            channel = header.channels[pin]
        if chip == "auto":
            chip = _chip_of_device(root, header.device, board, pin)
    else:
        try:
            board = read_board(device_tree)
        except HardwareError:
            board = None
    assert isinstance(chip, int) and isinstance(channel, int)
    device = _device_of(root / f"pwmchip{chip}")
    header = board.header_pwm if board is not None else None
    if (header is not None and device is not None and device.name == header.device
            and header.channels.get(pin) not in (None, channel)):
        log.warning("pilot PWM: pwmchip%d channel %d is not GPIO%s's channel on a %s (that is channel %d): "
                    "check pilot.pwm_pin and pilot.pwm_channel", chip, channel, pin, header.boards,
                    header.channels[pin])
    return PwmLocation(chip, channel, pin, device, board.model if board is not None else None)


def _chip_of_device(root: Path, device: str, board: RaspberryPi, pin: int | None) -> int:
    found = []
    for chip_dir in sorted(root.glob("pwmchip*")):
        node = _device_of(chip_dir)
        found.append(f"{chip_dir.name} -> {node.name if node else '?'}")
        if node is not None and node.name == device and chip_dir.name[7:].isdigit():
            return int(chip_dir.name[7:])
    seen = f"found {', '.join(found)}" if found else f"{root} has no pwmchip"
    raise HardwareError(
        f"no PWM chip for GPIO{pin} on this {board.model}: none of {root}/pwmchip* is the PWM at "
        f"{device} ({seen}); add {overlay_for(pin or 18, board)} to /boot/firmware/config.txt and reboot")


def _device_of(chip_dir: Path) -> Path | None:
    link = chip_dir / "device"
    return link.resolve() if link.is_symlink() else None


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
    ``location`` says where the output is (chip, channel, device, board).
    """

    PERIOD_NS = 1_000_000
    #: After ``export`` udev needs a moment to create the files and fix their permissions.
    SETUP_TIMEOUT_S = 2.0

    def __init__(self, chip: int, channel: int, invert: bool = False, root: str | os.PathLike = "/sys/class/pwm",
                 location: PwmLocation | None = None):
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
                "(e.g. dtoverlay=pwm,pin=18,func=2 in config.txt) and check pilot.pwm_chip; "
                'pwmchip numbers change between kernels, pilot.pwm_chip = "auto" finds the chip by its device'
            )
        self.location = location or PwmLocation(chip, channel, device=_device_of(self._chip_dir))
        npwm = _read_int(self._chip_dir / "npwm")
        if npwm is not None and not 0 <= channel < npwm:
            raise HardwareError(
                f"{self._chip_dir} has {npwm} channels (0..{npwm - 1}), not {channel}: check "
                'pilot.pwm_channel ("auto" takes it from pilot.pwm_pin)')
        deadline = time.monotonic() + self.SETUP_TIMEOUT_S
        if not self._dir.is_dir():
            _write(self._chip_dir / "export", channel)
            while not self._dir.is_dir():
                if time.monotonic() > deadline:
                    raise HardwareError(f"{self._dir} did not appear after export")
                time.sleep(0.005)
        self._set_period(deadline)

    @classmethod
    def for_pilot(cls, config: PilotConfig, root: str | os.PathLike | None = None,
                  device_tree: str | os.PathLike | None = None) -> SysfsPwm:
        """The PWM of ``config`` (pwm_pin, pwm_chip, pwm_channel, pwm_invert), located on this board.

        ``root`` and ``device_tree`` default to ``SYSFS_PWM_ROOT`` and ``DEVICE_TREE``.
        """
        root = SYSFS_PWM_ROOT if root is None else root
        device_tree = DEVICE_TREE if device_tree is None else device_tree
        location = locate_pwm(config.pwm_pin, config.pwm_chip, config.pwm_channel, root=root,
                              device_tree=device_tree)
        return cls(location.chip, location.channel, config.pwm_invert, root, location)

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


# ---------------------------------------------------------------------------
# The pilots
# ---------------------------------------------------------------------------


class _PilotSignal:
    """What both pilots share: signalling through a PwmOutput."""

    def __init__(self, pwm: PwmOutput):
        self._pwm = pwm
        self._offered: float | None = None
        self.signal_fault()

    @property
    def pwm(self) -> PwmOutput:
        """The output that drives the CP (check-hardware reads it back)."""
        return self._pwm

    def offer_current(self, amps: float) -> None:
        """Run the PWM with the duty for ``amps`` (IEC 61851-1 Table A.7).

        Raises ValueError outside 6..80 A before the line is touched.
        """
        duty = iec61851.duty_for_current(amps)
        self._offered = None
        self._apply_duty(duty)
        self._offered = float(amps)

    def stop_offer(self) -> None:
        """Constant +12 V: the EV may not draw current (states A1/B1/C1)."""
        self._offered = None
        self._apply_duty(CONSTANT_HIGH)

    def signal_fault(self) -> None:
        """Constant -12 V: state F, EVSE not available."""
        self._offered = None
        self._apply_duty(CONSTANT_LOW)

    @property
    def offered_current(self) -> float | None:
        """The current offered by the running PWM in amps, or None when no PWM runs."""
        return self._offered

    def _apply_duty(self, duty: float) -> None:
        self._pwm.set_duty(duty)

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
    The board cannot tell D from C, and without a fault or short input it
    reads a CP shorted to PE as C: the config requires one of them on a Pi.
    """

    def __init__(self, config: PilotConfig, pwm: PwmOutput, pin_factory=None):
        self._config = config
        self._devices: list[DigitalInputDevice] = []
        self._diagnosis: str | None = None
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
        self._diagnosis = None
        try:
            if self._short is not None and self._short.is_active:
                self._diagnosis = (f"the pilot board reports the CP shorted to PE "
                                   f"(short input GPIO{self._config.short_pin})")
                return "E"
            if self._fault is not None and self._fault.is_active:
                self._diagnosis = (f"the pilot board reports a fault: no valid CP level or a failed diode "
                                   f"check (fault input GPIO{self._config.fault_pin})")
                return "F"
            vehicle, charge = self._vehicle.is_active, self._charge.is_active
        except Exception as exc:
            raise HardwareError(f"pilot board inputs cannot be read: {exc}") from exc
        if charge:
            return "C" if vehicle else None
        return "B" if vehicle else "A"

    @property
    def diagnosis(self) -> str | None:
        """Why the last reading was E or F (the board's input that said so); None otherwise."""
        return self._diagnosis

    def note_contactor_switched(self) -> None:
        """Nothing to do: the board's comparators debounce in hardware."""

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


#: pilot.adc_chip -> the gpiozero class (channels and bits: ``evcp.config.ADC_CHANNELS``).
ADC_CHIPS = {"mcp3004": MCP3004, "mcp3008": MCP3008, "mcp3202": MCP3202, "mcp3204": MCP3204, "mcp3208": MCP3208}

DUTY_CHANGE_BLANKING_S = 0.55
"""Readings are ignored this long after the duty changes to a PWM duty. Tinkerforge's EVSE
firmware (``evse.c`` ``evse_set_cp_duty_cycle``) ignores 22 ADC results, about 550 ms: hybrid
BMWs show a 2.7 kOhm glitch on the CP about 500 ms after a duty change."""
NOT_BLANKED_AFTER_DUTY_CHANGE = frozenset("AEF")
"""...except these: the glitch reads as B, and an unplugged EV (A) or a fault (E, F) must open
the contactor within 100 ms (IEC 61851-1 Table A.6, as EVerest and OpenEVSE implement it)."""
CONTACTOR_BLANKING_S = 0.2
"""Readings are ignored this long after the contactor switched: Tinkerforge ignores 8 results
(about 200 ms at its 25 ms cadence) so that the switching's EMI spike is not read as a state."""
SAMPLE_PAUSE_S = 0.01
"""The sampling thread's pause between bursts."""
DITHER_EVERY = 4
DITHER_MAX_S = 0.0005
"""After every DITHER_EVERY samples the burst sleeps a random 0..DITHER_MAX_S: a sample rate
locked to the 1 kHz PWM (e.g. exactly 4 samples a period) would otherwise hit the same
phases all burst long and miss a short plateau, or sample one point of an edge again and
again until it looks like a level."""
MIN_BURST_SAMPLES = 50
"""A burst takes at least this many samples whatever ``pilot.samples`` says: at 10 % duty (6 A)
it must hold ``MIN_PLATEAU_SAMPLES`` of the high plateau."""
MIN_BURST_PERIODS = 2
"""A burst spans at least this many PWM periods: a fast ADC takes more samples."""
MAX_BURST_FACTOR = 8
"""...but never more than this many times ``pilot.samples``."""
DIODE_FAULT_BURSTS = 2
"""A missing diode is believed on the second burst in a row that shows it: at 85..96 % duty a
burst can hold a few samples of the falling edge and none of the -12 V plateau."""
STALE_AFTER_S = 0.5
"""Without a new measurement for this long, ``read_state`` raises: the ADC or its thread failed."""
NOT_TOGGLING_S = 1.0
"""While the PWM runs, a plateau that each burst should catch but none did for this long
means the CP does not follow the PWM: the reading becomes F (unstable before)."""


class AdcPilot(_PilotSignal):
    """Samples the CP voltage with an MCP300x/MCP320x ADC; implements ``evcp.hal.Pilot``.

    A thread of its own takes a burst of ``config.samples`` readings of
    ``raw_value`` (``value`` is never exactly 0 and would skew the scale),
    turns them into volts (``raw * volts_per_count + offset_v``), sorts them
    into the PWM's high and low plateau (``iec61851.find_plateaus``: the duty
    is known, the phase is not; edge samples and outliers lie on neither) and
    publishes what they show (``iec61851.read_plateaus``): ``read_state()``
    and ``diagnosis`` return the latest at once, never sampling in the
    caller's thread. ``measure()`` takes one burst in the calling thread.

    Readings are ignored (state None) for ``CONTACTOR_BLANKING_S`` after
    ``note_contactor_switched()`` and, except A, E and F, for
    ``DUTY_CHANGE_BLANKING_S`` after the duty changes to a PWM duty; a burst
    during which the duty changed is dropped. While the PWM runs, the low level of the last burst that caught
    the low plateau stands in for the diode check when a burst did not (at
    96 % duty the low phase lasts 40 us).

    ``adc`` replaces the chip (any object with ``raw_value``); an injected ADC
    stays the caller's to close. ``clock`` (monotonic seconds) times the
    blanking; a simulated ADC passes its own. ``sampling=False`` starts no
    thread: the caller calls ``measure()``.
    """

    def __init__(self, config: PilotConfig, pwm: PwmOutput, adc=None, pin_factory=None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 sampling: bool = True):
        if config.samples < 1:
            raise ValueError(f"pilot samples must be at least 1 (got {config.samples})")
        self._config = config
        self._clock, self._sleep = clock, sleep
        self._random = random.Random()
        self._lock = threading.Lock()  # what the sampling thread shares with the event loop
        self._burst_lock = threading.Lock()  # one burst at a time on the ADC
        self._duty: float | None = None
        self._duty_generation = 0
        self._blank_until = -math.inf  # after the contactor moved: every reading
        self._duty_blank_until = -math.inf  # after a duty change: readings other than NOT_BLANKED
        self._last_low_v: float | None = None
        self._missing_since: float | None = None
        self._diode_fault_bursts = 0
        self._reading: PilotReading | None = None
        self._reading_at: float | None = None
        self._error: HardwareError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owns_adc = adc is None
        if adc is None:
            chip = ADC_CHIPS[config.adc_chip]
            try:
                adc = chip(channel=config.adc_channel, port=config.spi_port, device=config.spi_device,
                           pin_factory=pin_factory)
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
        self._started_at = clock()
        if sampling:
            self._thread = threading.Thread(target=self._sample_forever, name="evcp-pilot-adc", daemon=True)
            self._thread.start()

    def read_state(self) -> str | None:
        """The state of the latest burst, at once; None while unstable, blanked or before the first.

        Raises HardwareError when no burst succeeded for ``STALE_AFTER_S``.
        """
        with self._lock:
            now = self._clock()
            since = self._reading_at if self._reading_at is not None else self._started_at
            if now - since > STALE_AFTER_S:
                cause = f": {self._error}" if self._error is not None else " (the sampling stalled)"
                raise HardwareError(f"pilot ADC: no measurement for {now - since:.1f} s{cause}")
            return self._reading.state if self._reading is not None else None

    @property
    def diagnosis(self) -> str | None:
        """Why the latest reading is D, E or F, in words; None otherwise."""
        with self._lock:
            return self._reading.diagnosis if self._reading is not None else None

    def note_contactor_switched(self) -> None:
        """Ignore the CP for ``CONTACTOR_BLANKING_S``: the contactor's switching spike is no state."""
        with self._lock:
            self._blank_until = max(self._blank_until, self._clock() + CONTACTOR_BLANKING_S)

    def measure(self) -> PilotReading:
        """Take one burst now, in the calling thread; publish it and return it.

        The levels are measured even while blanked (then the state is None).
        Raises HardwareError when the ADC cannot be read.
        """
        with self._burst_lock:
            with self._lock:
                generation, duty = self._duty_generation, self._duty
            started = self._clock()
            volts = self._sample(started)
            plateaus = find_plateaus(volts)
            with self._lock:
                if generation != self._duty_generation:
                    return PilotReading(None)  # the duty changed during the burst
                stand_in = self._last_low_v if plateaus.low is None else None
                reading = self._toggle_check(read_plateaus(plateaus, duty, stand_in),
                                             plateaus, duty, started)
                reading = self._confirm_diode_fault(reading, reading.low_v if stand_in is None else stand_in,
                                                    own_evidence=stand_in is None)
                pwm_running = duty is not None and 0.0 < duty < 1.0
                if pwm_running and plateaus.low is not None and reading.state is not None:
                    self._last_low_v = reading.low_v
                if reading.state == "A":
                    self._last_low_v = None  # no EV, no diode
                blanked = started < self._blank_until or (
                    started < self._duty_blank_until and reading.state not in NOT_BLANKED_AFTER_DUTY_CHANGE)
                if blanked:
                    reading = PilotReading(None, None, reading.high_v, reading.low_v)
                self._reading, self._reading_at, self._error = reading, started, None
                return reading

    def release(self) -> None:
        """Stop sampling, constant +12 V, release the PWM, close the ADC if this pilot built it. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._release_pwm()
        if self._owns_adc and self._adc is not None:
            try:
                self._adc.close()
            except Exception:
                log.exception("pilot: could not close the ADC")
            self._adc = None

    def _apply_duty(self, duty: float) -> None:
        written = False
        try:
            self._pwm.set_duty(duty)
            written = True
        finally:
            with self._lock:
                if duty != self._duty or not written:  # a failed write leaves the line unknown
                    self._duty_generation += 1
                    self._duty = duty
                    self._missing_since = None
                    if 0.0 < duty < 1.0:
                        self._duty_blank_until = self._clock() + DUTY_CHANGE_BLANKING_S
                    else:
                        self._last_low_v = None

    def _sample(self, started: float) -> list[float]:
        adc, samples = self._adc, max(self._config.samples, MIN_BURST_SAMPLES)
        if adc is None:
            raise HardwareError("pilot ADC is closed")
        raws: list[int] = []
        try:
            while True:
                for _ in range(0, samples, DITHER_EVERY):
                    raws.extend(adc.raw_value for _ in range(DITHER_EVERY))
                    self._sleep(self._random.uniform(0.0, DITHER_MAX_S))
                spanned = self._clock() - started >= MIN_BURST_PERIODS * PWM_PERIOD_S
                if spanned or len(raws) >= MAX_BURST_FACTOR * samples:
                    break
        except Exception as exc:
            raise HardwareError(f"pilot ADC cannot be read: {exc}") from exc
        per_count, offset = self._config.volts_per_count, self._config.offset_v
        return [raw * per_count + offset for raw in raws]

    def _confirm_diode_fault(self, reading: PilotReading, low_v: float | None, own_evidence: bool) -> PilotReading:
        """A diode fault counts from its DIODE_FAULT_BURSTS-th burst in a row that saw the low
        plateau itself; before, the reading is unstable. A burst that borrowed an earlier low
        level (``own_evidence`` False) neither counts nor resets."""
        if reading.state == "F" and reading.high_v is not None and iec61851.is_diode_fault(reading.high_v, low_v):
            if own_evidence:
                self._diode_fault_bursts += 1
            if self._diode_fault_bursts < DIODE_FAULT_BURSTS:
                return PilotReading(None, None, reading.high_v, reading.low_v)
        elif own_evidence or reading.state != "F":
            self._diode_fault_bursts = 0
        return reading

    def _toggle_check(self, reading: PilotReading, plateaus, duty: float | None, started: float) -> PilotReading:
        """F when, with the PWM running, the CP has shown one level only for NOT_TOGGLING_S."""
        if duty is None or not 0.0 < duty < 1.0 or plateaus.high is None:
            return reading
        level = plateaus.high.level_v
        absent_share = (1.0 - duty) if level > 0 else duty  # the phase that was not seen
        one_level = plateaus.low is None and abs(level) > iec61851.WINDOW_V
        if not one_level or absent_share * plateaus.samples < 2 * MIN_PLATEAU_SAMPLES:
            self._missing_since = None
            return reading
        if self._missing_since is None:
            self._missing_since = started
        if started - self._missing_since < NOT_TOGGLING_S:
            # The burst should have caught the other phase many times over: no state yet.
            return PilotReading(None, None, reading.high_v, reading.low_v)
        return PilotReading(
            "F", f"the CP does not toggle: only {level:+.1f} V for {started - self._missing_since:.1f} s "
                 f"although the PWM runs at {duty * 100:.1f} % (check pilot.pwm_pin, the PWM overlay "
                 "and the CP driver)", level, None)

    def _sample_forever(self) -> None:
        reported = ""
        while not self._stop.is_set():
            try:
                self.measure()
                reported = ""
            except Exception as exc:  # noqa: BLE001 - kept for read_state, which raises it
                error = exc if isinstance(exc, HardwareError) else HardwareError(f"pilot ADC: {exc}")
                with self._lock:
                    self._error = error
                if str(error) != reported:
                    log.error("%s", error)
                    reported = str(error)
            self._stop.wait(SAMPLE_PAUSE_S)


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
