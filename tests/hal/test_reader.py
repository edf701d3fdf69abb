"""Mfrc522Reader with stub RPi.GPIO, spidev and mfrc522 modules; the real poll thread runs."""

import sys
import threading
import types
from collections import deque

import pytest

from evcp.config import ReaderConfig
from evcp.hal import HardwareError, TagReader
from evcp.hal.reader import Mfrc522Reader, id_tag_from_uid, id_tag_from_uid_number

CARD_A = [0x04, 0xA1, 0xB2, 0xC3]
CARD_B = [0xDE, 0xAD, 0xBE, 0xEF]
WAIT_S = 5.0


def with_bcc(uid):
    return [*uid, uid[0] ^ uid[1] ^ uid[2] ^ uid[3]]


class CardField:
    """What the antenna sees, one scripted outcome per poll: a UID, None (no card) or an exception."""

    def __init__(self):
        self._script = deque()
        self._lock = threading.Lock()
        self.polls = 0
        self.drained = threading.Event()
        self.drained.set()

    def play(self, *outcomes):
        with self._lock:
            self._script.extend(outcomes)
            self.drained.clear()

    def next_outcome(self):
        with self._lock:
            self.polls += 1
            if self._script:
                return self._script.popleft()
            self.drained.set()
            return None

    def wait_drained(self):
        assert self.drained.wait(WAIT_S), "the reader stopped polling"


class FakeGpio(types.ModuleType):
    BOARD, BCM, OUT = 10, 11, 0

    def __init__(self):
        super().__init__("RPi.GPIO")
        self.mode = None
        self.cleaned = []

    def getmode(self):
        return self.mode

    def setmode(self, mode):
        self.mode = mode

    def setup(self, pin, direction):
        pass

    def output(self, pin, level):
        pass

    def cleanup(self, *pins):
        self.cleaned.append(pins)


@pytest.fixture
def field():
    return CardField()


@pytest.fixture
def driver(monkeypatch, field):
    """Stub modules in sys.modules; ``driver.instances`` holds every FakeMfrc522 built."""
    gpio = FakeGpio()
    rpi = types.ModuleType("RPi")
    rpi.GPIO = gpio
    spidev = types.ModuleType("spidev")
    spidev.SpiDev = object
    instances = []

    class FakeSpi:
        closed = False

        def close(self):
            self.closed = True

    class FakeMfrc522:
        """Mimics mfrc522 0.0.7: keeps an existing GPIO mode, RST defaults by mode."""

        PICC_REQIDL, MI_OK, MI_NOTAGERR, MI_ERR = 0x26, 0, 1, 2

        def __init__(self, bus=0, device=0, spd=1000000, pin_mode=10, pin_rst=-1, debugLevel="WARNING"):
            if bus == 9:
                raise FileNotFoundError(2, "No such file or directory")
            if gpio.getmode() is None:
                gpio.setmode(pin_mode)
            else:
                pin_mode = gpio.getmode()
            if pin_rst == -1:
                pin_rst = 15 if pin_mode == 11 else 22
            self.bus, self.device, self.pin_rst = bus, device, pin_rst
            self.spi = FakeSpi()
            self.inits = 0
            self._uid = None
            instances.append(self)

        def MFRC522_Init(self):
            self.inits += 1

        def MFRC522_Request(self, mode):
            assert mode == self.PICC_REQIDL
            outcome = field.next_outcome()
            if isinstance(outcome, Exception):
                raise outcome
            self._uid = outcome
            return (self.MI_ERR, None) if outcome is None else (self.MI_OK, 0x10)

        def MFRC522_Anticoll(self):
            return self.MI_OK, with_bcc(self._uid)

    mfrc522 = types.ModuleType("mfrc522")
    mfrc522.MFRC522 = FakeMfrc522
    for name, module in (("RPi", rpi), ("RPi.GPIO", gpio), ("spidev", spidev), ("mfrc522", mfrc522)):
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(gpio=gpio, instances=instances)


class Events:
    def __init__(self):
        self.tags = []
        self.health = []

    def on_tag(self, tag):
        self.tags.append(tag)

    def on_health(self, ok):
        self.health.append(ok)


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def reader(driver, events):
    reader = Mfrc522Reader(ReaderConfig(backend="mfrc522", poll_interval_s=0.001))
    yield reader
    reader.stop()


def test_implements_the_tag_reader_protocol():
    assert isinstance(Mfrc522Reader(ReaderConfig()), TagReader)


def test_importing_the_module_does_not_import_the_driver():
    assert "mfrc522" not in sys.modules


def test_one_tap_per_presentation(reader, events, field):
    # a card left on the reader answers every other request
    field.play(CARD_A, CARD_A, None, CARD_A, None, CARD_A, None, CARD_A)
    reader.start(events.on_tag, events.on_health)
    field.wait_drained()
    assert events.tags == ["04A1B2C3"]
    field.play(None, None, CARD_A)
    field.wait_drained()
    assert events.tags == ["04A1B2C3", "04A1B2C3"]
    assert events.health == []


def test_another_card_counts_at_once(reader, events, field):
    field.play(CARD_A, CARD_B, None, CARD_A)
    reader.start(events.on_tag, events.on_health)
    field.wait_drained()
    assert events.tags == ["04A1B2C3", "DEADBEEF", "04A1B2C3"]


def test_health_goes_false_after_repeated_failures_and_true_on_recovery(reader, events, field, driver):
    field.play(OSError("spi"), OSError("spi"), OSError("spi"), OSError("spi"), CARD_A)
    reader.start(events.on_tag, events.on_health)
    field.wait_drained()
    assert events.health == [False, True]
    assert events.tags == ["04A1B2C3"]
    assert driver.instances[0].inits >= 2, "the chip is re-initialised while unhealthy"


def test_a_few_failures_do_not_make_it_unhealthy(reader, events, field):
    field.play(OSError("spi"), OSError("spi"), CARD_A)
    reader.start(events.on_tag, events.on_health)
    field.wait_drained()
    assert events.health == []
    assert events.tags == ["04A1B2C3"]


def test_a_raising_callback_does_not_kill_the_poll_thread(reader, field):
    tags = []

    def on_tag(tag):
        tags.append(tag)
        raise RuntimeError("callback bug")

    field.play(CARD_A, None, None, CARD_B)
    reader.start(on_tag, lambda ok: None)
    field.wait_drained()
    assert tags == ["04A1B2C3", "DEADBEEF"]


@pytest.mark.parametrize(("mode", "expected_rst"), [(None, 25), (11, 25), (10, 22)])
def test_the_reset_pin_is_passed_in_the_gpio_mode_in_use(reader, events, driver, mode, expected_rst):
    driver.gpio.mode = mode
    reader.start(events.on_tag, events.on_health)
    device = driver.instances[0]
    assert device.pin_rst == expected_rst
    assert (device.bus, device.device) == (0, 1)
    assert driver.gpio.mode == (11 if mode is None else mode)


def test_stop_closes_spi_frees_only_the_reset_pin_and_ends_polling(reader, events, driver, field):
    reader.start(events.on_tag, events.on_health)
    reader.stop()
    reader.stop()
    polls = field.polls
    assert driver.instances[0].spi.closed
    assert driver.gpio.cleaned == [(25,)]
    field.play(CARD_A)
    assert not field.drained.wait(0.05)
    assert field.polls == polls
    assert events.tags == []


def test_start_twice_is_an_error(reader, events):
    reader.start(events.on_tag, events.on_health)
    with pytest.raises(RuntimeError):
        reader.start(events.on_tag, events.on_health)


def test_an_spi_bus_that_cannot_open_is_a_hardware_error(driver, events):
    reader = Mfrc522Reader(ReaderConfig(spi_bus=9))
    with pytest.raises(HardwareError, match="spidev9.1"):
        reader.start(events.on_tag, events.on_health)


@pytest.mark.parametrize("missing", ["mfrc522", "RPi.GPIO"])
def test_a_missing_driver_names_the_package_and_the_install(monkeypatch, driver, events, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(HardwareError, match=r"evcp\[pi\]") as error:
        Mfrc522Reader(ReaderConfig()).start(events.on_tag, events.on_health)
    assert missing in str(error.value)


def test_id_tag_strips_the_verified_bcc():
    assert id_tag_from_uid(with_bcc(CARD_A)) == "04A1B2C3"
    assert id_tag_from_uid(bytes(CARD_B)) == "DEADBEEF"
    with pytest.raises(ValueError, match="BCC"):
        id_tag_from_uid([*CARD_A, 0x00])
    with pytest.raises(ValueError):
        id_tag_from_uid([0x04, 0xA1, 0xB2])


def test_id_tag_from_the_number_uid_to_num_packs():
    packed = 0
    for byte in with_bcc(CARD_A):
        packed = packed * 256 + byte
    tag = id_tag_from_uid_number(packed)
    assert tag == "04A1B2C3"
    assert len(tag) <= 20
    with pytest.raises(ValueError):
        id_tag_from_uid_number(1 << 40)
