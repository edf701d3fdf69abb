"""Mfrc522Reader: the real poll thread over the register-level simulated RC522 and gpiozero's
mock pins for the reset line."""

import logging
import sys
import threading
import time

import pytest

from evcp.config import ReaderConfig
from evcp.hal import HardwareError, TagReader
from evcp.hal.reader import Mfrc522Reader, id_tag_from_uid
from evcp.mocks.pins import mock_pins
from evcp.mocks.rc522_chip import SimulatedRc522

WAIT_S = 5.0
POLL_S = 0.01
RST = 25


def wait_until(condition, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Events:
    def __init__(self):
        self.tags = []
        self.health = []
        self.threads = set()

    def on_tag(self, tag):
        self.threads.add(threading.current_thread().name)
        self.tags.append(tag)

    def on_health(self, ok, why):
        self.health.append((ok, why))


@pytest.fixture
def pins():
    with mock_pins() as factory:
        yield factory


@pytest.fixture
def chip():
    return SimulatedRc522(bus=0, device=1)


@pytest.fixture
def events():
    return Events()


def make_reader(chip, pins, **config):
    reader = Mfrc522Reader(ReaderConfig(backend="mfrc522", poll_interval_s=POLL_S, rst_pin=RST, **config),
                           spi_factory=lambda: chip, pin_factory=pins)
    reader.RETRY_INTERVAL_S = 0.02
    return reader


@pytest.fixture
def reader(chip, pins):
    reader = make_reader(chip, pins)
    yield reader
    reader.stop()


def polls_after(chip, count):
    """Wait until the driver has scanned ``count`` more times (one REQA per empty scan at least)."""
    target = chip.rf_log.count("REQA") + count
    wait_until(lambda: chip.rf_log.count("REQA") >= target, f"{count} polls")


def test_implements_the_tag_reader_protocol(chip, pins):
    assert isinstance(make_reader(chip, pins), TagReader)


def test_importing_the_module_does_not_import_spidev():
    assert "spidev" not in sys.modules


@pytest.mark.parametrize("uid", ["04A1B2C3", "04A3C6CAE26180", "04A3C6CAE26180AABBCC", "88112233"])
def test_the_id_tag_is_the_whole_uid(reader, chip, events, uid):
    reader.start(events.on_tag, events.on_health)
    chip.present(uid)
    wait_until(lambda: events.tags, "a tap")
    assert events.tags == [uid] and len(uid) in (8, 14, 20)
    assert events.threads == {"evcp-rc522"}


def test_a_card_left_on_the_reader_is_one_tap(reader, chip, events):
    reader.start(events.on_tag, events.on_health)
    chip.present("04A3C6CAE26180")
    wait_until(lambda: events.tags, "a tap")
    polls_after(chip, 20)
    assert events.tags == ["04A3C6CAE26180"]
    assert reader.cards_present == {"04A3C6CAE26180"}


def test_a_card_taken_away_and_back_is_a_second_tap(reader, chip, events):
    reader.start(events.on_tag, events.on_health)
    chip.present("DEADBEEF")
    wait_until(lambda: events.tags, "a tap")
    chip.remove("DEADBEEF")
    wait_until(lambda: not reader.cards_present, "the card to count as gone")
    chip.present("DEADBEEF")
    wait_until(lambda: len(events.tags) == 2, "the second tap")
    assert events.tags == ["DEADBEEF", "DEADBEEF"]


@pytest.mark.parametrize("uids", [
    ["04A3C6CAE26180", "04A3C6112233AA"],
    ["DEADBEEF", "04A3C6CAE26180", "04A3C6CAE26180AABBCC"],
])
def test_several_cards_at_once_are_each_one_tap(reader, chip, events, uids):
    for uid in uids:
        chip.present(uid)
    reader.start(events.on_tag, events.on_health)
    wait_until(lambda: len(events.tags) == len(uids), "every card")
    polls_after(chip, 10)
    assert sorted(events.tags) == sorted(uids)


def test_a_second_card_laid_beside_the_first_counts_at_once(reader, chip, events):
    reader.start(events.on_tag, events.on_health)
    chip.present("04A1B2C3")
    wait_until(lambda: events.tags, "the first card")
    chip.present("DEADBEEF")
    wait_until(lambda: len(events.tags) == 2, "the second card")
    polls_after(chip, 10)
    assert events.tags == ["04A1B2C3", "DEADBEEF"]


def test_a_crc_error_gives_no_tag_and_no_second_tap(reader, chip, events):
    reader.start(events.on_tag, events.on_health)
    chip.present("04A3C6CAE26180")
    wait_until(lambda: events.tags, "a tap")
    chip.inject_crc_error()  # the next poll misses the card once
    wait_until(lambda: chip.card("04A3C6CAE26180").crc_errors == 0, "the garbled SAK")
    polls_after(chip, 10)
    chip.present("DEADBEEF")
    chip.inject_crc_error("DEADBEEF", count=3)
    wait_until(lambda: len(events.tags) == 2, "the second card, once its CRC is good")
    polls_after(chip, 10)
    assert events.tags == ["04A3C6CAE26180", "DEADBEEF"]
    assert events.health == []


def test_a_chip_that_disappears_and_comes_back_is_reported_once_each_way(reader, chip, events):
    reader.start(events.on_tag, events.on_health)
    chip.present("04A1B2C3")
    wait_until(lambda: events.tags, "a tap")
    chip.disconnect(0x00)
    wait_until(lambda: events.health, "the failure")
    [(ok, why)] = events.health
    assert ok is False and why[:50].startswith("RC522 not answering: VersionReg reads 0x00")  # OCPP info
    time.sleep(0.1)  # retries go on without a second report
    assert len(events.health) == 1
    chip.reconnect()  # power-cycled: the driver must set the chip up again
    wait_until(lambda: len(events.health) == 2, "the recovery")
    assert events.health[1] == (True, "")
    chip.remove("04A1B2C3")
    chip.present("DEADBEEF")
    wait_until(lambda: "DEADBEEF" in events.tags, "a card read after the recovery")


def test_a_chip_reading_0xff_is_absent_too(reader, chip, events):
    reader.start(events.on_tag, events.on_health)
    polls_after(chip, 1)
    chip.disconnect(0xFF)
    wait_until(lambda: events.health, "the failure")
    assert "0xff" in events.health[0][1]


@pytest.mark.parametrize("version", [0x88, 0x12, 0xB2, 0x91])
def test_known_clones_read_cards_with_a_warning(chip, pins, events, caplog, version):
    chip.version = version
    reader = make_reader(chip, pins)
    with caplog.at_level(logging.INFO, logger="evcp.hal.reader"):
        reader.start(events.on_tag, events.on_health)
        chip.present("04A1B2C3")
        wait_until(lambda: events.tags, "a tap")
    reader.stop()
    assert events.health == []
    [opened] = [r for r in caplog.records if f"VersionReg {version:#04x}" in r.getMessage()]
    assert opened.levelno == (logging.INFO if version == 0x91 else logging.WARNING)


def test_a_missing_spi_device_is_reported_not_raised_and_retried(pins, events):
    chip = SimulatedRc522(bus=0, device=0)  # the chip sits on CE0; the reader is set to CE1
    reader = make_reader(chip, pins)
    reader.start(events.on_tag, events.on_health)  # does not raise
    wait_until(lambda: events.health, "the failure")
    assert events.health[0][0] is False
    assert events.health[0][1].startswith("no /dev/spidev0.1: SPI is off (dtparam=spi=on)")
    chip.device = 1  # the wiring is fixed
    chip.present("04A1B2C3")
    wait_until(lambda: events.tags, "a tap once the reader works")
    assert events.health[1:] == [(True, "")]
    reader.stop()


def test_without_spidev_installed_the_reader_names_the_package(pins, events, monkeypatch):
    monkeypatch.setitem(sys.modules, "spidev", None)
    reader = Mfrc522Reader(ReaderConfig(backend="mfrc522", poll_interval_s=POLL_S), pin_factory=pins)
    reader.start(events.on_tag, events.on_health)
    wait_until(lambda: events.health, "the failure")
    reader.stop()
    assert "spidev" in events.health[0][1] and "evcp[pi]" in events.health[0][1]


def test_a_chip_absent_at_start_is_reported_then_found(reader, chip, events):
    chip.disconnect()
    reader.start(events.on_tag, events.on_health)
    wait_until(lambda: events.health, "the failure")
    assert events.health[0][1].startswith("RC522 absent: VersionReg reads 0x00 on /dev/spidev0.1")
    chip.reconnect()
    wait_until(lambda: len(events.health) == 2, "the recovery")


def test_a_reset_line_in_use_is_reported(chip, pins, events):
    from gpiozero import DigitalOutputDevice

    other = DigitalOutputDevice(RST, pin_factory=pins)
    reader = make_reader(chip, pins)
    reader.start(events.on_tag, events.on_health)
    wait_until(lambda: events.health, "the failure")
    assert events.health[0][1].startswith(f"RC522 reset line GPIO{RST} cannot be driven")
    assert not chip.is_open  # SPI is not left open after a failed start
    other.close()
    wait_until(lambda: len(events.health) == 2, "the recovery")
    reader.stop()


def test_start_pulses_the_reset_line_and_stop_frees_everything(reader, chip, pins, events):
    reader.start(events.on_tag, events.on_health)
    polls_after(chip, 1)
    levels = [state.state for state in pins.pin(RST).states]
    assert levels[-2:] == [0, 1]  # held low (hard power-down), then released
    reader.stop()
    reader.stop()
    assert not chip.is_open and not chip.field_on
    transfers = chip.transfers
    time.sleep(5 * POLL_S)
    assert chip.transfers == transfers
    from gpiozero import DigitalOutputDevice

    DigitalOutputDevice(RST, pin_factory=pins).close()  # the line is free again


def test_start_twice_is_an_error(reader, events):
    reader.start(events.on_tag, events.on_health)
    with pytest.raises(RuntimeError):
        reader.start(events.on_tag, events.on_health)


def test_a_raising_callback_does_not_end_polling(reader, chip):
    tags = []

    def on_tag(tag):
        tags.append(tag)
        raise RuntimeError("callback bug")

    reader.start(on_tag, lambda ok, why: None)
    chip.present("04A1B2C3")
    wait_until(lambda: tags, "the first card")
    chip.present("DEADBEEF")
    wait_until(lambda: len(tags) == 2, "the second card")


def test_an_empty_poll_costs_about_thirty_spi_transfers(reader, chip, events):
    reader.start(events.on_tag, events.on_health)
    polls_after(chip, 2)
    before_transfers, before_polls = chip.transfers, chip.rf_log.count("REQA")
    polls_after(chip, 20)
    per_poll = (chip.transfers - before_transfers) / (chip.rf_log.count("REQA") - before_polls)
    assert per_poll <= 40  # VersionReg + field on/off + one REQA answered by the timer (mfrc522: 2013)


def test_read_version_opens_reads_and_closes(chip, pins):
    reader = make_reader(chip, pins)
    assert reader.read_version() == 0x92
    assert not chip.is_open
    chip.disconnect(0xFF)
    assert reader.read_version() == 0xFF  # the caller says what it means


def test_read_version_of_a_missing_device_is_a_hardware_error(pins):
    reader = make_reader(SimulatedRc522(bus=1, device=0), pins)
    with pytest.raises(HardwareError, match="no /dev/spidev0.1"):
        reader.read_version()


def test_read_version_while_polling_is_refused(reader, events):
    reader.start(events.on_tag, events.on_health)
    with pytest.raises(RuntimeError):
        reader.read_version()


def test_id_tag_from_uid():
    assert id_tag_from_uid(bytes.fromhex("04a1b2c3")) == "04A1B2C3"
    assert id_tag_from_uid(bytes.fromhex("04a3c6cae26180aabbcc")) == "04A3C6CAE26180AABBCC"
    for length in (3, 5, 8, 11):
        with pytest.raises(ValueError):
            id_tag_from_uid(bytes(length))
