"""An RC522 (MFRC522) RFID reader on SPI, polled in a thread of its own.

The ``mfrc522`` package (and the ``RPi.GPIO`` it needs) only imports on a
Raspberry Pi, so it is imported in ``start()``, never at module import.

Traps of mfrc522 0.0.7 this module avoids:

- ``MFRC522()`` defaults to physical pin 22 in BOARD mode, but if RPi.GPIO is
  already in BCM mode it silently uses BCM 15 (UART RXD). The reset pin is
  therefore always passed explicitly, in whatever mode RPi.GPIO is in.
- ``SimpleMFRC522`` always opens spidev0.0; the reader here takes any bus and
  chip select (spidev0.1 leaves CE0 to a pilot ADC).
- ``uid_to_num`` packs 4 UID bytes plus the BCC check byte; the idTag is the
  usual 8 hex digits of the 4 UID bytes.
- ``Close_MFRC522()`` calls ``GPIO.cleanup()`` on every RPi.GPIO pin; stop()
  frees only the reset pin.

Only cascade level 1 is read: a 7-byte-UID card shows up as "88" plus its
first three UID bytes.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from evcp.hal import HardwareError, HealthCallback, TagCallback

if TYPE_CHECKING:
    from evcp.config import ReaderConfig

log = logging.getLogger("evcp.hal.reader")

#: Physical header pin of each BCM GPIO on the 40-pin header.
_BCM_TO_BOARD = {
    2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23,
    12: 32, 13: 33, 14: 8, 15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38,
    21: 40, 22: 15, 23: 16, 24: 18, 25: 22, 26: 37, 27: 13,
}


#: VersionReg (address 0x37) of the MFRC522 datasheet, and what a genuine chip answers.
VERSION_REGISTER = 0x37
RC522_VERSIONS = {0x91: "MFRC522 v1.0", 0x92: "MFRC522 v2.0"}


def id_tag_from_uid(uid: list[int] | bytes) -> str:
    """The OCPP idTag for a UID as ``MFRC522_Anticoll`` returns it: 8 upper-case hex digits.

    Accepts the 4 UID bytes, or the 4 bytes plus their BCC (XOR check byte),
    which is dropped after it is verified. Raises ValueError otherwise.
    """
    data = bytes(uid)
    if len(data) == 5:
        check = data[0] ^ data[1] ^ data[2] ^ data[3]
        if check != data[4]:
            raise ValueError(f"UID {data.hex()} fails its BCC check")
        data = data[:4]
    if len(data) != 4:
        raise ValueError(f"expected a 4-byte UID (+BCC), got {len(data)} bytes")
    return data.hex().upper()


def id_tag_from_uid_number(number: int) -> str:
    """The idTag for a number from ``SimpleMFRC522.uid_to_num`` (4 UID bytes + BCC, big-endian)."""
    if not 0 <= number < 1 << 40:
        raise ValueError(f"not a 5-byte UID number: {number!r}")
    return id_tag_from_uid(number.to_bytes(5, "big"))


class Mfrc522Reader:
    """An RC522 on ``/dev/spidev<spi_bus>.<spi_device>``; implements ``evcp.hal.TagReader``.

    One tap per presentation: a card counts again only after it was absent
    for ``ABSENT_POLLS_TO_REARM`` polls in a row (a card left on the reader
    answers every other request, so one miss means nothing). Another card
    counts at once. After ``FAILURES_BEFORE_UNHEALTHY`` polls in a row that
    raise, ``on_health(False)`` is called once and the chip is re-initialised
    before every poll; the first clean poll calls ``on_health(True)``.
    """

    ABSENT_POLLS_TO_REARM = 2
    FAILURES_BEFORE_UNHEALTHY = 3

    def __init__(self, config: ReaderConfig):
        self._config = config
        self._device = None
        self._gpio = None
        self._reset_pin: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self, on_tag: TagCallback, on_health: HealthCallback) -> None:
        """Open the reader and begin polling in a daemon thread; returns at once.

        Raises HardwareError when the driver is not installed or the reader
        cannot be opened, and RuntimeError if already started.
        """
        if self._thread is not None:
            raise RuntimeError("reader already started")
        gpio, mfrc522_class = _import_driver()
        self._gpio = gpio
        self._device = self._open(gpio, mfrc522_class)
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._poll_forever,
            args=(on_tag, on_health, self._stopping),
            name="evcp-mfrc522",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, close SPI and free the reset pin. Idempotent; never raises."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(2.0, 3 * self._config.poll_interval_s))
            if thread.is_alive():
                log.warning("reader: poll thread did not stop in time")
        device, self._device = self._device, None
        if device is not None:
            try:
                device.spi.close()
            except Exception:
                log.exception("reader: could not close SPI")
        if self._gpio is not None and self._reset_pin is not None:
            try:
                self._gpio.cleanup(self._reset_pin)
            except Exception:
                log.exception("reader: could not free the reset pin")
            self._reset_pin = None

    def read_version(self) -> int:
        """Open the RC522, read its VersionReg once and close it again; for installation checks.

        Returns the register's value: 0x91 (MFRC522 v1.0) or 0x92 (v2.0) from a
        genuine chip, see ``RC522_VERSIONS``; 0x00 or 0xFF usually means nothing
        answers on the bus. Only reads: opening the chip resets it, as
        ``start()`` does. Raises HardwareError when the driver is missing or the
        reader cannot be opened or read, RuntimeError while polling.
        """
        if self._thread is not None:
            raise RuntimeError("reader is polling; stop() it before reading its version")
        gpio, mfrc522_class = _import_driver()
        self._gpio = gpio
        self._device = self._open(gpio, mfrc522_class)
        try:
            return int(self._device.Read_MFRC522(VERSION_REGISTER))
        except Exception as exc:
            config = self._config
            raise HardwareError(
                f"reader: RC522 on /dev/spidev{config.spi_bus}.{config.spi_device}: "
                f"cannot read the version register: {exc}"
            ) from exc
        finally:
            self.stop()

    def _open(self, gpio, mfrc522_class):
        config = self._config
        # rst_pin is a BCM number; MFRC522 keeps whatever mode RPi.GPIO already has.
        mode = gpio.getmode()
        if mode == gpio.BOARD:
            try:
                self._reset_pin = _BCM_TO_BOARD[config.rst_pin]
            except KeyError:
                raise HardwareError(f"reader: GPIO{config.rst_pin} is not on the 40-pin header") from None
        else:
            mode = gpio.BCM
            self._reset_pin = config.rst_pin
        try:
            return mfrc522_class(
                bus=config.spi_bus,
                device=config.spi_device,
                pin_mode=mode,
                pin_rst=self._reset_pin,
            )
        except Exception as exc:
            raise HardwareError(
                f"reader: RC522 on /dev/spidev{config.spi_bus}.{config.spi_device} "
                f"(reset GPIO{config.rst_pin}) cannot be opened: {exc}; is SPI enabled "
                "(dtparam=spi=on)?"
            ) from exc

    def _poll_once(self) -> str | None:
        device = self._device
        status, _ = device.MFRC522_Request(device.PICC_REQIDL)
        if status != device.MI_OK:
            return None
        status, uid = device.MFRC522_Anticoll()
        if status != device.MI_OK:
            return None
        try:
            return id_tag_from_uid(uid)
        except ValueError as exc:
            log.debug("reader: ignoring a garbled read: %s", exc)
            return None

    def _poll_forever(self, on_tag: TagCallback, on_health: HealthCallback, stopping: threading.Event) -> None:
        presented: str | None = None
        absent_polls = 0
        failures = 0
        healthy = True
        while not stopping.is_set():
            try:
                if not healthy:
                    self._device.MFRC522_Init()
                tag = self._poll_once()
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("reader: poll failed: %s", exc)
                if healthy and failures >= self.FAILURES_BEFORE_UNHEALTHY:
                    healthy = False
                    log.error("reader: %d polls in a row failed; reader unhealthy", failures)
                    _call(on_health, False)
            else:
                failures = 0
                if not healthy:
                    healthy = True
                    log.info("reader: recovered")
                    _call(on_health, True)
                if tag is None:
                    absent_polls += 1
                    if absent_polls >= self.ABSENT_POLLS_TO_REARM:
                        presented = None
                else:
                    absent_polls = 0
                    if tag != presented:
                        presented = tag
                        _call(on_tag, tag)
            stopping.wait(self._config.poll_interval_s)


def _import_driver():
    try:
        import RPi.GPIO as gpio
        from mfrc522 import MFRC522
    except Exception as exc:
        missing = getattr(exc, "name", None) or "mfrc522/RPi.GPIO"
        raise HardwareError(
            f"reader backend 'mfrc522' needs the {missing} package, which only works on a "
            f"Raspberry Pi: pip install 'evcp[pi]' (on a Pi 5 use rpi-lgpio for RPi.GPIO) ({exc})"
        ) from exc
    return gpio, MFRC522


def _call(callback, argument) -> None:
    try:
        callback(argument)
    except Exception:
        log.exception("reader: callback %r raised", callback)
