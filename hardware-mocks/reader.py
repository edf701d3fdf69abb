"""A simulated RFID reader: test verbs instead of a card on an antenna."""

from __future__ import annotations

import logging
import queue
import threading
import time

from evcp.hal import HealthCallback, TagCallback

log = logging.getLogger("evcp.mocks.reader")

#: How long a verb waits for the reader thread to deliver its event.
DELIVERY_TIMEOUT_S = 2.0


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
        """The reader breaks: ``on_health(False)``."""
        self._send("health", False, "fail")

    def recover(self) -> None:
        """The reader works again: ``on_health(True)``."""
        self._send("health", True, "recover")

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
                (on_tag if kind == "tag" else on_health)(value)
            except Exception:
                log.exception("simulated reader: callback raised")
            finally:
                delivered.set()
