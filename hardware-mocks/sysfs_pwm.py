"""A fake ``/sys/class/pwm`` tree in a directory, so ``SysfsPwm`` runs unchanged.

``FakeSysfsPwm(directory)`` creates ``pwmchip<chip>/`` with ``npwm``,
``export`` and ``unexport``. ``export`` is a named pipe served by a thread:
writing a channel number to it creates ``pwm<channel>/`` with ``period``,
``duty_cycle``, ``enable`` and ``polarity``, as the kernel does. Tests and
the bench read the channel back with ``channel()``.

Linux only (named pipes); close it (or use ``with``) to stop the thread.
"""

from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass
from pathlib import Path


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


class FakeSysfsPwm:
    """A fake PWM sysfs class directory under ``directory``; pass ``root`` to ``SysfsPwm``."""

    def __init__(self, directory: str | os.PathLike, chip: int = 0, npwm: int = 2, exported: tuple[int, ...] = ()):
        self.root = Path(directory)
        self.chip = chip
        self.npwm = npwm
        self.chip_dir = self.root / f"pwmchip{chip}"
        self.chip_dir.mkdir(parents=True, exist_ok=True)
        (self.chip_dir / "npwm").write_text(f"{npwm}\n")
        (self.chip_dir / "unexport").write_text("")
        self.export_requests: list[str] = []
        for channel in exported:
            self._create_channel(channel)
        export = self.chip_dir / "export"
        os.mkfifo(export)
        # O_RDWR keeps a writer open on our side, so reads block instead of seeing EOF.
        self._export_fd = os.open(export, os.O_RDWR | os.O_NONBLOCK)
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._serve_export, name="fake-sysfs-pwm", daemon=True)
        self._thread.start()

    def channel(self, channel: int = 0) -> PwmChannelState:
        """Read back what was written to ``pwm<channel>``."""
        directory = self.chip_dir / f"pwm{channel}"
        if not directory.is_dir():
            return PwmChannelState(exported=False)
        return PwmChannelState(
            exported=True,
            period_ns=_read_int(directory / "period"),
            duty_cycle_ns=_read_int(directory / "duty_cycle"),
            enabled=_read_int(directory / "enable") == 1,
            polarity=(directory / "polarity").read_text().strip(),
        )

    def poke(self, channel: int, attribute: str, text: str) -> None:
        """Overwrite an attribute behind the driver's back (to see whether it writes again)."""
        (self.chip_dir / f"pwm{channel}" / attribute).write_text(text)

    def close(self) -> None:
        """Stop serving ``export``. Idempotent."""
        if self._thread.is_alive():
            os.write(self._stop_write, b"x")
            self._thread.join(timeout=2.0)
        for fd in (self._export_fd, self._stop_read, self._stop_write):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> FakeSysfsPwm:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _serve_export(self) -> None:
        pending = b""
        while True:
            readable, _, _ = select.select([self._export_fd, self._stop_read], [], [])
            if self._stop_read in readable:
                return
            try:
                pending += os.read(self._export_fd, 64)
            except BlockingIOError:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._export(line.decode().strip())

    def _export(self, request: str) -> None:
        self.export_requests.append(request)
        try:
            channel = int(request)
        except ValueError:
            return
        if 0 <= channel < self.npwm:
            self._create_channel(channel)

    def _create_channel(self, channel: int) -> None:
        directory = self.chip_dir / f"pwm{channel}"
        if directory.exists():
            return
        # Built aside and renamed in, so the directory never appears without its files.
        staging = self.chip_dir / f".pwm{channel}.new"
        staging.mkdir()
        for name, initial in (("period", "0"), ("duty_cycle", "0"), ("enable", "0"), ("polarity", "normal")):
            (staging / name).write_text(initial + "\n")
        os.rename(staging, directory)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
