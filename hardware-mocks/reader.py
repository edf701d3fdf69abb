"""Simulated RFID readers: test verbs instead of a card on an antenna.

``BenchReader`` is the bench's: the real ``Mfrc522Reader`` over a
``SimulatedRc522`` for idTags shaped like a UID, ``SimulatedReader`` for the
others. ``SimulatedReader`` alone delivers any idTag straight to the callbacks.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import re
import threading
import time
from typing import TYPE_CHECKING

from evcp.hal import HealthCallback, TagCallback
from evcp.hal.reader import Mfrc522Reader
from evcp.mocks.rc522_chip import SimulatedRc522

if TYPE_CHECKING:
    from evcp.config import ReaderConfig

log = logging.getLogger("evcp.mocks.reader")

#: How long a verb waits for the reader thread to deliver its event.
DELIVERY_TIMEOUT_S = 2.0
#: An idTag that is a card's UID: 4, 7 or 10 bytes in hex.
UID_TAG = re.compile(r"[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20}")
#: The bench reader's reset line when [hardware.reader] names none: GPIO2 is left free by
#: every mock pin layout (connectors from GPIO4 up, the simulated UPS on GPIO3).
MOCK_READER_RST_PIN = 2


class SimulatedReader:
    """Implements ``evcp.hal.TagReader``; ``present(uid)`` is one tap.

    Callbacks run in the reader's own thread, as with a real reader; each
    verb returns once its callback has returned (or after
    ``DELIVERY_TIMEOUT_S``). ``history`` lists ``(monotonic time, event)``
    with events "start", "stop", "tag <id>", "fail" and "recover".
    """

    def __init__(self) -> None:
        self.history: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def start(self, on_tag: TagCallback, on_health: HealthCallback) -> None:
        """Begin delivering events from a thread of its own. RuntimeError if already started."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("reader already started")
            self._queue = queue.Queue()
            self._thread = threading.Thread(
                target=self._deliver_forever,
                args=(self._queue, on_tag, on_health),
                name="evcp-simulated-reader",
                daemon=True,
            )
            self._thread.start()
            self._record("start")

    def stop(self) -> None:
        """Stop delivering. Idempotent."""
        with self._lock:
            thread, events = self._thread, self._queue
            self._thread = self._queue = None
            if thread is None:
                return
            events.put(None)
            self._record("stop")
        thread.join(timeout=DELIVERY_TIMEOUT_S)

    @property
    def started(self) -> bool:
        """Whether start() ran and stop() has not."""
        return self._thread is not None

    def present(self, uid: str) -> None:
        """Tap a card: ``on_tag`` gets ``uid`` in upper case, once.

        ``uid`` is the idTag (1..20 characters, OCPP CiString20), usually
        8 hex digits such as "04A1B2C3". RuntimeError when not started.
        """
        tag = uid.strip().upper()
        if not 1 <= len(tag) <= 20:
            raise ValueError(f"an idTag has 1..20 characters (got {uid!r})")
        self._send("tag", tag, f"tag {tag}")

    def fail(self) -> None:
        """The reader breaks: ``on_health(False, "simulated reader failure")``."""
        self._send("health", (False, "simulated reader failure"), "fail")

    def recover(self) -> None:
        """The reader works again: ``on_health(True, "")``."""
        self._send("health", (True, ""), "recover")

    def _send(self, kind: str, value, event: str) -> None:
        with self._lock:
            if self._queue is None:
                raise RuntimeError("the simulated reader is not started")
            delivered = threading.Event()
            self._queue.put((kind, value, delivered))
            self._record(event)
        if not delivered.wait(DELIVERY_TIMEOUT_S):
            log.warning("simulated reader: %s not delivered within %.1f s", event, DELIVERY_TIMEOUT_S)

    def _record(self, event: str) -> None:
        self.history.append((time.monotonic(), event))

    @staticmethod
    def _deliver_forever(events: queue.Queue, on_tag: TagCallback, on_health: HealthCallback) -> None:
        while (item := events.get()) is not None:
            kind, value, delivered = item
            try:
                if kind == "tag":
                    on_tag(value)
                else:
                    on_health(*value)
            except Exception:
                log.exception("simulated reader: callback raised")
            finally:
                delivered.set()


class BenchReader:
    """The bench's reader; implements ``evcp.hal.TagReader`` with ``SimulatedReader``'s verbs.

    ``present(tag)`` with a UID-shaped idTag (``UID_TAG``) lays that card on
    the simulated RC522's antenna and returns at once: the real driver reads
    it at its next poll, then the card is taken away again (a tap). Taps of
    cards are played in order, one at a time, by a thread of their own, so the
    caller (the bench's HTTP handler, on the event loop) never waits for a
    poll; a card tapped twice is laid down again only once the driver has
    seen it leave. Any other idTag (e.g. "STRANGER") goes through
    ``SimulatedReader`` and is delivered before ``present`` returns.

    ``fail()`` unplugs the simulated chip and ``recover()`` plugs it back in:
    the driver itself notices and reports it (within about a second), as on
    a real charger. ``chip`` and ``driver`` are there for tests.
    """

    TAP_TIMEOUT_S = 5.0

    def __init__(self, config: ReaderConfig, pin_factory=None):
        if config.backend != "mfrc522":
            config = dataclasses.replace(config, backend="mfrc522", rst_pin=MOCK_READER_RST_PIN)
        self.chip = SimulatedRc522(bus=config.spi_bus, device=config.spi_device)
        self.driver = Mfrc522Reader(config, spi_factory=lambda: self.chip, pin_factory=pin_factory)
        self.others = SimulatedReader()
        self._delivered = threading.Condition()
        self._delivered_tags: set[str] = set()
        self._taps: queue.Queue | None = None
        self._tapper: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._tapper is not None

    def start(self, on_tag: TagCallback, on_health: HealthCallback) -> None:
        """Start the driver, the other-tags reader and the tap thread. RuntimeError if already started."""
        if self._tapper is not None:
            raise RuntimeError("reader already started")

        def delivered(tag: str) -> None:
            try:
                on_tag(tag)
            finally:
                with self._delivered:
                    self._delivered_tags.add(tag)
                    self._delivered.notify_all()

        self.others.start(on_tag, on_health)
        self.driver.start(delivered, on_health)
        self._taps = queue.Queue()
        self._tapper = threading.Thread(target=self._tap_forever, args=(self._taps,),
                                        name="evcp-bench-taps", daemon=True)
        self._tapper.start()

    def stop(self) -> None:
        """Stop everything. Idempotent."""
        tapper, taps = self._tapper, self._taps
        self._tapper = self._taps = None
        if tapper is not None:
            taps.put(None)
            tapper.join(timeout=self.TAP_TIMEOUT_S + 1)
        self.driver.stop()
        self.others.stop()

    def present(self, uid: str) -> None:
        """Tap a card (see the class docstring). ValueError for an idTag that is not 1..20
        characters; RuntimeError when not started."""
        tag = uid.strip().upper()
        if not UID_TAG.fullmatch(tag):
            self.others.present(tag)
            return
        if self._taps is None:
            raise RuntimeError("the bench reader is not started")
        self._taps.put(tag)

    def fail(self) -> None:
        """The reader's chip is unplugged: every SPI read gives 0x00."""
        self.chip.disconnect()

    def recover(self) -> None:
        """The chip is plugged back in (its registers at their reset values)."""
        self.chip.reconnect()

    def wait_taps(self, timeout: float = 10.0) -> bool:
        """Wait until every tap asked for has been played; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._taps is not None and self._taps.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _tap_forever(self, taps: queue.Queue) -> None:
        while (tag := taps.get()) is not None:
            try:
                self._tap(tag)
            except Exception:
                log.exception("bench reader: the tap of %s failed", tag)
            finally:
                taps.task_done()
        taps.task_done()

    def _tap(self, tag: str) -> None:
        if not self.chip.connected:
            log.warning("bench reader: card %s not read: the reader is unplugged", tag)
            return
        if not _wait_until(lambda: tag not in self.driver.cards_present, self.TAP_TIMEOUT_S):
            log.warning("bench reader: card %s still counts as on the antenna; tapping anyway", tag)
        with self._delivered:
            self._delivered_tags.discard(tag)
        self.chip.present(tag)
        try:
            with self._delivered:
                if not self._delivered.wait_for(lambda: tag in self._delivered_tags, self.TAP_TIMEOUT_S):
                    log.warning("bench reader: card %s was not read within %.0f s", tag, self.TAP_TIMEOUT_S)
        finally:
            self.chip.remove(tag)


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
