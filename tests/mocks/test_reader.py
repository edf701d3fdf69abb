"""SimulatedReader: verbs deliver events from the reader's own thread, once each.
BenchReader: UID-shaped tags through the real RC522 driver over the simulated chip."""

import threading
import time

import pytest

from evcp.config import ReaderConfig
from evcp.hal import TagReader
from evcp.mocks.pins import mock_pins
from evcp.mocks.reader import MOCK_READER_RST_PIN, BenchReader, SimulatedReader


class Recorder:
    def __init__(self):
        self.events = []
        self.threads = set()

    def on_tag(self, tag):
        self.threads.add(threading.current_thread().name)
        self.events.append(("tag", tag))

    def on_health(self, ok, why):
        self.threads.add(threading.current_thread().name)
        self.events.append(("health", ok, why))


@pytest.fixture
def reader():
    reader = SimulatedReader()
    yield reader
    reader.stop()


def test_implements_the_tag_reader_protocol(reader):
    assert isinstance(reader, TagReader)


def test_present_delivers_one_tap_from_the_reader_thread(reader):
    recorder = Recorder()
    reader.start(recorder.on_tag, recorder.on_health)
    reader.present("04a1b2c3")
    assert recorder.events == [("tag", "04A1B2C3")]
    assert recorder.threads == {"evcp-simulated-reader"}


def test_fail_and_recover_call_on_health(reader):
    recorder = Recorder()
    reader.start(recorder.on_tag, recorder.on_health)
    reader.fail()
    reader.recover()
    reader.present("DEADBEEF")
    assert recorder.events == [("health", False, "simulated reader failure"), ("health", True, ""),
                               ("tag", "DEADBEEF")]
    assert [event for _, event in reader.history] == ["start", "fail", "recover", "tag DEADBEEF"]


def test_a_raising_callback_does_not_stop_the_reader(reader):
    seen = []

    def on_tag(tag):
        seen.append(tag)
        raise RuntimeError("callback bug")

    reader.start(on_tag, lambda ok: None)
    reader.present("AAAA0001")
    reader.present("AAAA0002")
    assert seen == ["AAAA0001", "AAAA0002"]


def test_verbs_need_a_started_reader(reader):
    with pytest.raises(RuntimeError):
        reader.present("04A1B2C3")
    reader.start(lambda tag: None, lambda ok: None)
    reader.stop()
    reader.stop()
    with pytest.raises(RuntimeError):
        reader.fail()
    assert [event for _, event in reader.history] == ["start", "stop"]


@pytest.mark.parametrize("uid", ["", "   ", "X" * 21])
def test_an_id_tag_longer_than_cistring20_is_rejected(reader, uid):
    reader.start(lambda tag: None, lambda ok: None)
    with pytest.raises(ValueError):
        reader.present(uid)


def test_start_twice_is_an_error(reader):
    reader.start(lambda tag: None, lambda ok: None)
    with pytest.raises(RuntimeError):
        reader.start(lambda tag: None, lambda ok: None)


# -- BenchReader ------------------------------------------------------------------------


def wait_until(condition, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def bench():
    with mock_pins() as factory:
        reader = BenchReader(ReaderConfig(poll_interval_s=0.01), pin_factory=factory)
        reader.driver.RETRY_INTERVAL_S = 0.02
        yield reader, factory
        reader.stop()


def test_the_bench_reader_implements_the_tag_reader_protocol(bench):
    assert isinstance(bench[0], TagReader)


def test_a_uid_shaped_tag_is_a_card_read_by_the_real_driver(bench):
    reader, factory = bench
    recorder = Recorder()
    reader.start(recorder.on_tag, recorder.on_health)
    reader.present("04a3c6cae26180")
    assert reader.wait_taps()
    assert recorder.events == [("tag", "04A3C6CAE26180")]
    assert recorder.threads == {"evcp-rc522"}
    assert [event for _, event in reader.chip.history] == ["present 04A3C6CAE26180", "remove 04A3C6CAE26180"]
    assert factory.pin(MOCK_READER_RST_PIN).state  # the driver holds the chip's reset line released


def test_the_same_card_tapped_twice_is_two_taps(bench):
    reader, _ = bench
    recorder = Recorder()
    reader.start(recorder.on_tag, recorder.on_health)
    reader.present("DEADBEEF")
    reader.present("DEADBEEF")
    reader.present("04A3C6CAE26180AABBCC")
    assert reader.wait_taps()
    assert recorder.events == [("tag", "DEADBEEF"), ("tag", "DEADBEEF"), ("tag", "04A3C6CAE26180AABBCC")]


def test_other_tags_go_straight_to_the_callback(bench):
    reader, _ = bench
    recorder = Recorder()
    reader.start(recorder.on_tag, recorder.on_health)
    reader.present("STRANGER")
    assert recorder.events == [("tag", "STRANGER")]  # delivered before present returned
    assert not reader.chip.history
    with pytest.raises(ValueError):
        reader.present("X" * 21)


def test_fail_unplugs_the_chip_and_the_driver_reports_it(bench):
    reader, _ = bench
    recorder = Recorder()
    reader.start(recorder.on_tag, recorder.on_health)
    reader.fail()
    wait_until(lambda: recorder.events, "the failure")
    [(kind, ok, why)] = recorder.events
    assert (kind, ok) == ("health", False) and "VersionReg reads 0x00" in why
    reader.present("04A1B2C3")  # not read: the reader is unplugged
    assert reader.wait_taps()
    reader.recover()
    wait_until(lambda: len(recorder.events) == 2, "the recovery")
    assert recorder.events[1] == ("health", True, "")
    reader.present("04A1B2C3")
    assert reader.wait_taps()
    assert recorder.events[2:] == [("tag", "04A1B2C3")]


def test_taps_need_a_started_bench_reader(bench):
    with pytest.raises(RuntimeError):
        bench[0].present("04A1B2C3")
