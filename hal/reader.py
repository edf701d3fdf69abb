"""An RC522 (MFRC522) RFID reader on SPI, polled in a thread of its own.

evcp's own driver (``evcp.hal.rc522``) over ``spidev``, with the chip's reset
line (RST, NRSTPD) driven through gpiozero, so it works wherever gpiozero does
(lgpio on a Pi 4 and a Pi 5). ``spidev`` is imported when the reader opens,
never at module import.

The idTag is the card's whole UID in upper-case hex: 8, 14 or 20 characters
for a 4-, 7- or 10-byte UID (OCPP 1.6 idTag is CiString20).

A reader that cannot start (no SPI device, SPI switched off, the reset line
busy, no chip answering) never stops the charger: it is reported through
``on_health(False, why)``, which the charger turns into a ReaderFailure status
on connector 0, and tried again every ``RETRY_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from gpiozero import DigitalOutputDevice

from evcp.hal import HardwareError, HealthCallback, TagCallback
from evcp.hal.rc522 import (
    ABSENT_VERSIONS, CLONE_VERSIONS, GENUINE_VERSIONS, ChipError, Rc522, describe_version,
)

if TYPE_CHECKING:
    from evcp.config import ReaderConfig

log = logging.getLogger("evcp.hal.reader")

#: What a genuine chip answers at VersionReg (``evcp check-hardware`` names the others).
RC522_VERSIONS = GENUINE_VERSIONS
#: SPI clock: the RC522 takes up to 10 MHz; 1 MHz keeps long module wires reliable.
SPI_SPEED_HZ = 1_000_000
#: After releasing RST the oscillator starts (datasheet 8.8.2); 50 ms is plenty.
HARD_RESET_SETTLE_S = 0.05
#: The RST pulse: the datasheet asks for 100 ns in hard power-down.
HARD_RESET_PULSE_S = 0.001


def id_tag_from_uid(uid: bytes) -> str:
    """The OCPP idTag for a card's UID: the 4, 7 or 10 bytes in upper-case hex. ValueError otherwise."""
    data = bytes(uid)
    if len(data) not in (4, 7, 10):
        raise ValueError(f"a UID has 4, 7 or 10 bytes (got {len(data)}: {data.hex()})")
    return data.hex().upper()


class Mfrc522Reader:
    """An RC522 on ``/dev/spidev<spi_bus>.<spi_device>``; implements ``evcp.hal.TagReader``.

    Each poll is a fresh inventory of the cards on the antenna (``Rc522.scan``).
    One tap per presentation: a card read again counts again only after it
    was missing from ``ABSENT_POLLS_TO_REARM`` polls in a row; several cards
    on the antenna at once each count once. VersionReg is read at every poll
    (one SPI transfer): after ``FAILURES_BEFORE_UNHEALTHY`` polls in a row
    that fail (the chip reads 0x00/0xFF, SPI errors, a timer that never
    fires) ``on_health(False, why)`` is called once, and the reader is reset
    and opened again every ``RETRY_INTERVAL_S`` until it works, which calls
    ``on_health(True, "")``.

    ``spi_factory`` returns an unopened ``spidev.SpiDev``-like object (the
    simulated chip in tests and on the bench); ``pin_factory`` is gpiozero's,
    for the reset line.
    """

    ABSENT_POLLS_TO_REARM = 2
    FAILURES_BEFORE_UNHEALTHY = 3
    RETRY_INTERVAL_S = 1.0
    MAX_CARDS = 4

    def __init__(self, config: ReaderConfig, *, spi_factory: Callable[[], object] | None = None,
                 pin_factory=None):
        self._config = config
        self._spi_factory = spi_factory or _spidev
        self._pin_factory = pin_factory
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._absent_polls: dict[str, int] = {}
        """idTag -> polls in a row it was missing from, for the cards held as present."""
        self._present: frozenset[str] = frozenset()

    @property
    def where(self) -> str:
        return f"/dev/spidev{self._config.spi_bus}.{self._config.spi_device}"

    @property
    def cards_present(self) -> frozenset[str]:
        """The idTags read recently and not yet missing for ``ABSENT_POLLS_TO_REARM`` polls."""
        return self._present

    def start(self, on_tag: TagCallback, on_health: HealthCallback) -> None:
        """Begin polling in a daemon thread; returns at once.

        Never raises for the device: a reader that cannot be opened is
        reported through ``on_health(False, why)`` and retried. RuntimeError
        if already started.
        """
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._stopping = threading.Event()
        self._absent_polls = {}
        self._present = frozenset()
        self._thread = threading.Thread(
            target=self._poll_forever,
            args=(on_tag, _Health(on_health, self.RETRY_INTERVAL_S), self._stopping),
            name="evcp-rc522",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, switch the field off, close SPI and free the reset line. Idempotent."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(2.0, 3 * self._config.poll_interval_s))
            if thread.is_alive():
                log.warning("reader: poll thread did not stop in time")

    def read_version(self) -> int:
        """Open the RC522, read its VersionReg once and close it again; for installation checks.

        Returns the register's value: see ``RC522_VERSIONS`` and
        ``evcp.hal.rc522.CLONE_VERSIONS``; 0x00 or 0xFF usually means nothing
        answers on the bus. Opening resets the chip, as ``start()`` does.
        Raises HardwareError when the reader cannot be opened or read,
        RuntimeError while polling.
        """
        if self._thread is not None:
            raise RuntimeError("reader is polling; stop() it before reading its version")
        spi, reset = self._open_bus()
        try:
            return Rc522(spi).version()
        except OSError as exc:
            raise HardwareError(f"RC522 on {self.where}: cannot read the version register: {exc}") from exc
        finally:
            _close_bus(spi, reset)

    # -- opening -------------------------------------------------------------------

    def _open_bus(self):
        """The open SPI device and the reset line, after a hard reset of the chip."""
        config = self._config
        spi = self._spi_factory()
        try:
            spi.open(config.spi_bus, config.spi_device)
        except FileNotFoundError as exc:
            raise HardwareError(
                f"no {self.where}: SPI is off (dtparam=spi=on) or hardware.reader.spi_bus/spi_device "
                f"is wrong ({exc})") from exc
        except PermissionError as exc:
            raise HardwareError(f"{self.where}: permission denied: the user needs the group spi ({exc})") from exc
        except OSError as exc:
            raise HardwareError(f"{self.where} cannot be opened: {exc}") from exc
        try:
            spi.max_speed_hz = SPI_SPEED_HZ
            spi.mode = 0
            # Claimed low: the chip is in hard power-down; going high resets it (datasheet 8.8.1).
            reset = DigitalOutputDevice(config.rst_pin, initial_value=False, pin_factory=self._pin_factory)
        except Exception as exc:
            _close_bus(spi, None)
            raise HardwareError(f"RC522 reset line GPIO{config.rst_pin} cannot be driven: {exc}") from exc
        time.sleep(HARD_RESET_PULSE_S)
        reset.on()
        time.sleep(HARD_RESET_SETTLE_S)
        return spi, reset

    def _open(self) -> _OpenReader:
        spi, reset = self._open_bus()
        try:
            chip = Rc522(spi)
            version = chip.version()
            if version in ABSENT_VERSIONS:
                raise ChipError(f"RC522 absent: VersionReg reads {version:#04x} on {self.where}; check the "
                                "wiring and the chip select")
            chip.soft_reset()
            chip.configure()
        except OSError as exc:
            _close_bus(spi, reset)
            raise HardwareError(f"RC522 on {self.where}: {exc}") from exc
        except BaseException:
            _close_bus(spi, reset)
            raise
        name = describe_version(version)
        if version in GENUINE_VERSIONS:
            log.info("reader: %s on %s (VersionReg %#04x)", name, self.where, version)
        elif version in CLONE_VERSIONS:
            log.warning("reader: %s on %s (VersionReg %#04x), not a genuine MFRC522 v1.0/v2.0: it usually "
                        "works the same; if cards are missed, fit a genuine module", name, self.where, version)
        else:
            log.warning("reader: unknown chip on %s (VersionReg %#04x): trying it as an MFRC522",
                        self.where, version)
        return _OpenReader(spi, reset, chip, version, self.where)

    # -- polling -------------------------------------------------------------------

    def _poll_forever(self, on_tag: TagCallback, health: _Health, stopping: threading.Event) -> None:
        reader: _OpenReader | None = None
        failures = 0
        try:
            while not stopping.is_set():
                if reader is None:
                    try:
                        reader = self._open()
                    except Exception as exc:  # noqa: BLE001 - a reader that cannot start is a reader failure
                        health.fail(_why(exc))
                        stopping.wait(self.RETRY_INTERVAL_S)
                        continue
                    failures = 0
                    health.ok()
                try:
                    uids = reader.poll(self.MAX_CARDS)
                except Exception as exc:  # noqa: BLE001 - SPI, chip or driver: the poll failed
                    failures += 1
                    if failures == 1:
                        log.warning("reader: poll failed: %s", _why(exc),
                                    exc_info=not isinstance(exc, (HardwareError, OSError)))
                    if failures >= self.FAILURES_BEFORE_UNHEALTHY:
                        health.fail(f"{_why(exc)} ({failures} polls in a row)")
                        reader.close()
                        reader = None
                        stopping.wait(self.RETRY_INTERVAL_S)
                        continue
                else:
                    failures = 0
                    self._note(uids, on_tag)
                stopping.wait(self._config.poll_interval_s)
        finally:
            if reader is not None:
                reader.close()

    def _note(self, uids: list[bytes], on_tag: TagCallback) -> None:
        """Count the absences and report the cards that were not on the antenna before."""
        seen = [id_tag_from_uid(uid) for uid in uids]
        absent = self._absent_polls
        new = [tag for tag in seen if tag not in absent]
        for tag in list(absent):
            if tag not in seen:
                absent[tag] += 1
                if absent[tag] >= self.ABSENT_POLLS_TO_REARM:
                    del absent[tag]
        for tag in seen:
            absent[tag] = 0
        self._present = frozenset(absent)
        for tag in new:
            log.debug("reader: card %s", tag)
            _call(on_tag, tag)


class _OpenReader:
    """An opened, configured chip with its SPI device and reset line."""

    def __init__(self, spi, reset: DigitalOutputDevice, chip: Rc522, version: int, where: str):
        self.spi, self.reset, self.chip, self.version, self.where = spi, reset, chip, version, where

    def poll(self, max_cards: int) -> list[bytes]:
        version = self.chip.version()
        if version != self.version:
            if version in ABSENT_VERSIONS:
                raise ChipError(f"RC522 not answering: VersionReg reads {version:#04x} on {self.where}")
            raise ChipError(f"RC522 VersionReg changed from {self.version:#04x} to {version:#04x}: "
                            "SPI garbled or the chip was swapped")
        return self.chip.scan(max_cards)

    def close(self) -> None:
        try:
            self.chip.antenna(False)
        except Exception:  # noqa: BLE001 - the chip may be gone; the field goes with it
            pass
        _close_bus(self.spi, self.reset)


class _Health:
    """Calls ``on_health`` once per change: (False, why) on a failure, (True, "") on recovery."""

    def __init__(self, on_health: HealthCallback, retry_interval_s: float):
        self._on_health = on_health
        self._retry_interval_s = retry_interval_s
        self.healthy = True

    def fail(self, why: str) -> None:
        if self.healthy:
            self.healthy = False
            log.error("reader: %s; trying again every %g s", why, self._retry_interval_s)
            _call(self._on_health, False, why)
        else:
            log.debug("reader: still failing: %s", why)

    def ok(self) -> None:
        if not self.healthy:
            self.healthy = True
            log.info("reader: working again")
            _call(self._on_health, True, "")


def _spidev():
    try:
        import spidev
    except ImportError as exc:
        raise HardwareError(
            "the spidev package is missing: pip install 'evcp[pi]' (apt: python3-spidev)") from exc
    return spidev.SpiDev()


def _close_bus(spi, reset) -> None:
    if reset is not None:
        try:
            reset.close()
        except Exception:  # noqa: BLE001 - freeing a line must not fail the caller
            log.exception("reader: could not free the reset line")
    try:
        spi.close()
    except Exception:  # noqa: BLE001
        log.exception("reader: could not close SPI")


def _why(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _call(callback, *arguments) -> None:
    try:
        callback(*arguments)
    except Exception:
        log.exception("reader: callback %r raised", callback)
