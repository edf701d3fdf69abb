"""SimulatedReader: verbs deliver events from the reader's own thread, once each."""

import threading

import pytest

from evcp.hal import TagReader
from evcp.mocks.reader import SimulatedReader


class Recorder:
    def __init__(self):
        self.events = []
        self.threads = set()

    def on_tag(self, tag):
        self.threads.add(threading.current_thread().name)
        self.events.append(("tag", tag))

    def on_health(self, ok):
        self.threads.add(threading.current_thread().name)
        self.events.append(("health", ok))


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
    assert recorder.events == [("health", False), ("health", True), ("tag", "DEADBEEF")]
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
