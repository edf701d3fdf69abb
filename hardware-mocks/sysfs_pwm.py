"""A fake ``/sys/class/pwm`` tree in a directory, so ``SysfsPwm`` runs unchanged.

``FakeSysfsPwm(directory)`` creates ``pwmchip<chip>/`` with ``npwm``,
``export`` and ``unexport``. ``export`` is a named pipe served by a thread:
writing a channel number to it creates ``pwm<channel>/`` with ``period``,
``duty_cycle``, ``enable`` and ``polarity``, as the kernel does. Tests and
the bench read the channel back with ``channel()``.

``FakeSysfsPwm.raspberry_pi(directory, "pi5", kernel="6.6")`` builds a whole
Raspberry Pi instead: several chips laid out as the kernel does
(``sys/class/pwm/pwmchipN`` links to ``sys/devices/.../<node>.pwm/pwm/pwmchipN``,
whose ``device`` link names the device-tree node) and ``proc/device-tree``
with the board's ``compatible`` and ``model``. Pass ``root`` and
``device_tree`` to the driver. The layouts (``RASPBERRY_PI_TREES``) are the
ones published for each board and kernel, cited there.

Linux only (named pipes); close it (or use ``with``) to stop the thread.
"""

from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class PwmChannelState:
    """One channel's sysfs attributes as last written."""

    exported: bool
    period_ns: int | None = None
    duty_cycle_ns: int | None = None
    enabled: bool = False
    polarity: str | None = None

    @property
    def duty(self) -> float | None:
        """duty_cycle / period (pin level, before any inversion), or None when not set."""
        if not self.period_ns or self.duty_cycle_ns is None:
            return None
        return self.duty_cycle_ns / self.period_ns


@dataclass(frozen=True)
class FakeChip:
    """One PWM chip of a fake tree."""

    number: int
    npwm: int = 2
    device: str | None = None
    """Its device under ``sys/devices``, e.g. "platform/soc/fe20c000.pwm"; None: a bare
    ``pwmchipN`` directory without a ``device`` link."""


@dataclass(frozen=True)
class FakeBoard:
    """A Raspberry Pi as its device tree and PWM chips show it."""

    compatible: tuple[str, ...]
    model: str
    chips: tuple[FakeChip, ...]
    header_chip: int
    """The number of the chip that drives the header's PWM pins (GPIO12/13/18/19)."""


_PI4_PWM = "platform/soc/fe20c000.pwm"
_RP1 = "platform/axi/1000120000.pcie"
_PI5_PWM0 = f"{_RP1}/1f00098000.pwm"
_PI5_FAN_PWM = f"{_RP1}/1f0009c000.pwm"

#: (board, kernel) -> the board. Sources:
#: - Pi 4: ``dtoverlay=pwm`` gives pwmchip0 at fe20c000.pwm with 2 channels (the overlay
#:   README's PWM0/PWM1 table; Pi4J's device path /sys/devices/platform/soc/fe20c000.pwm).
#: - Pi 5, kernel 6.6: pwmchip0 is the BCM2712's own PWM (107d517a80.pwm), pwmchip2 the
#:   RP1's PWM0 (1f00098000.pwm), pwmchip6 the fan PWM (raspberrypi/linux #6818, pelwell's
#:   ``ls -l /sys/class/pwm/pwmchip*/device``). The BCM2712 PWM's parent path is illustrative.
#: - Pi 5, kernel 6.12: the RP1's PWM0 is pwmchip0 (#6818; libsimpleio: "with kernel 6.12,
#:   we are back to pwmchip0"); the fan PWM as pwmchip1 is as seen on a later kernel.
RASPBERRY_PI_TREES: dict[tuple[str, str], FakeBoard] = {
    ("pi4", "6.6"): FakeBoard(
        ("raspberrypi,4-model-b", "brcm,bcm2711"), "Raspberry Pi 4 Model B Rev 1.4",
        (FakeChip(0, 2, _PI4_PWM),), header_chip=0),
    ("pi4", "6.12"): FakeBoard(
        ("raspberrypi,4-model-b", "brcm,bcm2711"), "Raspberry Pi 4 Model B Rev 1.5",
        (FakeChip(0, 2, _PI4_PWM),), header_chip=0),
    ("pi5", "6.6"): FakeBoard(
        ("raspberrypi,5-model-b", "brcm,bcm2712"), "Raspberry Pi 5 Model B Rev 1.0",
        (FakeChip(0, 2, "platform/soc@107c000000/107d517a80.pwm"), FakeChip(2, 4, _PI5_PWM0),
         FakeChip(6, 4, _PI5_FAN_PWM)), header_chip=2),
    ("pi5", "6.12"): FakeBoard(
        ("raspberrypi,5-model-b", "brcm,bcm2712"), "Raspberry Pi 5 Model B Rev 1.0",
        (FakeChip(0, 4, _PI5_PWM0), FakeChip(1, 4, _PI5_FAN_PWM)), header_chip=0),
}


class FakeSysfsPwm:
    """A fake PWM sysfs class directory under ``directory``; pass ``root`` to ``SysfsPwm``.

    One chip (``chip``, ``npwm``) by default; ``chips`` gives several, and
    ``board`` adds a device tree (``device_tree``). ``chip`` (and ``chip_dir``)
    is the chip that ``channel()`` and ``poke()`` read by default: the first
    of ``chips``, or the board's header chip.
    """

    def __init__(self, directory: str | os.PathLike, chip: int = 0, npwm: int = 2, exported: tuple[int, ...] = (),
                 *, chips: Sequence[FakeChip] | None = None, board: FakeBoard | None = None):
        base = Path(directory)
        if board is not None:
            chips = board.chips
        chips = tuple(chips) if chips is not None else (FakeChip(chip, npwm),)
        laid_out = any(c.device is not None for c in chips) or board is not None
        self.root = base / "sys" / "class" / "pwm" if laid_out else base
        self.root.mkdir(parents=True, exist_ok=True)
        self.device_tree: Path | None = None
        if board is not None:
            self.device_tree = base / "proc" / "device-tree"
            self.device_tree.mkdir(parents=True, exist_ok=True)
            (self.device_tree / "compatible").write_bytes(b"".join(c.encode() + b"\0" for c in board.compatible))
            (self.device_tree / "model").write_bytes(board.model.encode() + b"\0")
        self.chip = board.header_chip if board is not None else chips[0].number
        self.npwm = {c.number: c.npwm for c in chips}
        self.chip_dirs: dict[int, Path] = {}
        for spec in chips:
            self.chip_dirs[spec.number] = self._make_chip(base, spec)
        self.chip_dir = self.chip_dirs[self.chip]
        self.exports: list[tuple[int, str]] = []
        for channel in exported:
            self._create_channel(self.chip, channel)
        self._export_fds: dict[int, int] = {}
        for number, chip_dir in self.chip_dirs.items():
            os.mkfifo(chip_dir / "export")
            # O_RDWR keeps a writer open on our side, so reads block instead of seeing EOF.
            self._export_fds[os.open(chip_dir / "export", os.O_RDWR | os.O_NONBLOCK)] = number
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._serve_export, name="fake-sysfs-pwm", daemon=True)
        self._thread.start()

    @classmethod
    def raspberry_pi(cls, directory: str | os.PathLike, board: str = "pi5", kernel: str = "6.12",
                     exported: tuple[int, ...] = ()) -> FakeSysfsPwm:
        """The PWM chips and device tree of ``board`` ("pi4", "pi5") under ``kernel`` ("6.6", "6.12")."""
        return cls(directory, exported=exported, board=RASPBERRY_PI_TREES[board, kernel])

    @property
    def export_requests(self) -> list[str]:
        """What was written to the default chip's ``export``, in order."""
        return [request for number, request in self.exports if number == self.chip]

    def channel(self, channel: int = 0, chip: int | None = None) -> PwmChannelState:
        """Read back what was written to ``pwm<channel>`` (of ``chip``, default ``self.chip``)."""
        directory = self._chip_dir(chip) / f"pwm{channel}"
        if not directory.is_dir():
            return PwmChannelState(exported=False)
        return PwmChannelState(
            exported=True,
            period_ns=_read_int(directory / "period"),
            duty_cycle_ns=_read_int(directory / "duty_cycle"),
            enabled=_read_int(directory / "enable") == 1,
            polarity=(directory / "polarity").read_text().strip(),
        )

    def poke(self, channel: int, attribute: str, text: str, chip: int | None = None) -> None:
        """Overwrite an attribute behind the driver's back (to see whether it writes again)."""
        (self._chip_dir(chip) / f"pwm{channel}" / attribute).write_text(text)

    def close(self) -> None:
        """Stop serving ``export``. Idempotent."""
        if self._thread.is_alive():
            os.write(self._stop_write, b"x")
            self._thread.join(timeout=2.0)
        for fd in (*self._export_fds, self._stop_read, self._stop_write):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> FakeSysfsPwm:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _chip_dir(self, chip: int | None) -> Path:
        return self.chip_dirs[self.chip if chip is None else chip]

    def _make_chip(self, base: Path, spec: FakeChip) -> Path:
        name = f"pwmchip{spec.number}"
        if spec.device is None:
            chip_dir = self.root / name
            chip_dir.mkdir(parents=True, exist_ok=True)
        else:
            # As the kernel lays it out: the class entry links to the chip under its device,
            # and the chip's "device" link points back up at the device-tree node.
            device_dir = base / "sys" / "devices" / spec.device
            chip_dir = device_dir / "pwm" / name
            chip_dir.mkdir(parents=True, exist_ok=True)
            (chip_dir / "device").symlink_to(Path("..", "..", "..", device_dir.name))
            (self.root / name).symlink_to(os.path.relpath(chip_dir, self.root))
        (chip_dir / "npwm").write_text(f"{spec.npwm}\n")
        (chip_dir / "unexport").write_text("")
        return chip_dir

    def _serve_export(self) -> None:
        pending = {fd: b"" for fd in self._export_fds}
        while True:
            readable, _, _ = select.select([*self._export_fds, self._stop_read], [], [])
            if self._stop_read in readable:
                return
            for fd in readable:
                try:
                    pending[fd] += os.read(fd, 64)
                except BlockingIOError:
                    continue
                *lines, pending[fd] = pending[fd].split(b"\n")
                for line in lines:
                    self._export(self._export_fds[fd], line.decode().strip())

    def _export(self, chip: int, request: str) -> None:
        self.exports.append((chip, request))
        try:
            channel = int(request)
        except ValueError:
            return
        if 0 <= channel < self.npwm[chip]:
            self._create_channel(chip, channel)

    def _create_channel(self, chip: int, channel: int) -> None:
        chip_dir = self.chip_dirs[chip]
        directory = chip_dir / f"pwm{channel}"
        if directory.exists():
            return
        # Built aside and renamed in, so the directory never appears without its files.
        staging = chip_dir / f".pwm{channel}.new"
        staging.mkdir()
        for name, initial in (("period", "0"), ("duty_cycle", "0"), ("enable", "0"), ("polarity", "normal")):
            (staging / name).write_text(initial + "\n")
        os.rename(staging, directory)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
