"""The charger's durable state: one sqlite file, ``<state_dir>/evcp.sqlite3``.

Billing depends on every transaction reaching the central system exactly once
with the right meter values, across power cuts, killed processes and worn SD
cards. This module keeps what must outlive the process: transactions, the last
meter reading per connector, the outbox of transaction messages, the OCPP
configuration set by the central system and connector availability.

Promises:

- Every write is committed when its method returns. All writes but
  ``meter_reading`` run with ``PRAGMA synchronous=FULL``: the WAL is fsynced at
  each commit, so a power cut right after the return loses nothing.
  ``meter_reading`` runs with ``synchronous=NORMAL`` (no fsync of its own): it
  is frequent, the next sample supersedes it, and it survives a killed process
  at once and a power cut from the next FULL commit on, because that fsync
  covers every earlier WAL frame. Call it just before the ``outbox_put`` of the
  MeterValues that reports the sample, and one fsync covers both.
- A write touching several rows is one sqlite transaction: all or nothing; so are the
  writes made inside ``atomic()``.
- What a damaged or lost write-ahead log must never take is in the main file when its
  method returns (unless another process reading the file keeps the checkpoint from
  completing; then the next write tries again): every write but the frequent ones (meter
  readings, queued MeterValues, 2.0.1 Updated events, rewritten payloads, security events,
  deletions of delivered MeterValues) ends with ``PRAGMA wal_checkpoint(TRUNCATE)``: a
  transaction started, confirmed or stopped, its start or end queued or delivered, a setting
  or a document saved. Those are a few per session, never one per 1.6 meter sample; 2.0.1
  saves its open transactions' seqNo with each TransactionEvent (``evcp.ocpp201.transactions``),
  one commit and one checkpoint per event. TRUNCATE, not PASSIVE,
  and sqlite's automatic (passive) checkpoint is replaced by a truncating one past
  ``CHECKPOINT_WAL_BYTES``: a passive checkpoint leaves the checkpointed frames in the log
  until the next write, and a log cut short in that moment makes sqlite read their older
  pages over the main file's, taking the database back in time. The log so only ever
  holds what was written since the last checkpoint, and a damaged one loses at most that.
- A new file is built under a temporary name and renamed into place once its
  schema is complete, so an existing ``evcp.sqlite3`` always holds evcp's
  schema: one of zero bytes, without the schema, or missing while its
  write-ahead log is there is state that was lost, a ``StoreError``.
- Opening checks the file (``PRAGMA quick_check``) and brings its schema up to
  date; a corrupt, unreadable or newer file is a ``StoreError`` and nothing
  in it is changed.
- A damaged write-ahead log (``-wal``) is not refused: sqlite keeps every
  transaction up to the last complete one, which is also what a power cut in
  the middle of a write leaves. The damage is described in ``wal_damage``
  and the log copied aside first (``<file>-wal.damaged-<UTC time>``, the
  newest ``KEEP_DAMAGED_COPIES`` kept), for the caller to report. Opening
  then checkpoints what was kept into the main file and empties the log.
- Every sqlite failure is a ``StoreError`` naming the file, what is wrong and
  what to do. A call that breaks this API's rules (a local_id used twice, an
  unknown seq) is a ``ValueError`` or ``KeyError``.

Threads: a ``StateStore`` belongs to the thread that opened it (the asyncio
loop's); sqlite refuses calls from any other. Calls are synchronous and block
that thread for one small write, an fsync included for FULL writes; they are
never awaited, so no other coroutine runs in the middle of one.

Schema: ``PRAGMA user_version`` is the number of ``MIGRATIONS`` applied. A new
version appends a step and never edits an old one.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import sqlite3
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("evcp.storage")

FILENAME = "evcp.sqlite3"
"""The file's name inside storage.state_dir."""

MIGRATIONS: list[tuple[str, ...]] = [
    # Version 1.
    (
        # AUTOINCREMENT makes sqlite remember the largest local_id ever stored,
        # even once pruned, so next_local_id never hands out an id twice.
        """CREATE TABLE transactions (
            local_id INTEGER PRIMARY KEY AUTOINCREMENT,
            connector INTEGER NOT NULL,
            id_tag TEXT NOT NULL,
            meter_start_wh INTEGER NOT NULL,
            started_at REAL NOT NULL,
            transaction_id INTEGER,
            last_energy_wh REAL,
            last_reading_at REAL,
            stopped INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE meter_readings (
            connector INTEGER PRIMARY KEY,
            energy_wh REAL NOT NULL,
            at REAL NOT NULL
        )""",
        # AUTOINCREMENT: seq keeps increasing after the outbox has emptied.
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            local_id INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE TABLE configuration (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE availability (connector INTEGER PRIMARY KEY, operative INTEGER NOT NULL)",
    ),
    # Version 2: whole documents kept by name (local authorization list, authorization cache,
    # reservations, charging profiles), each replaced as one unit.
    (
        "CREATE TABLE documents (name TEXT PRIMARY KEY, body TEXT NOT NULL)",
    ),
    # Version 3: security events waiting for the central system (security whitepaper), in order.
    (
        """CREATE TABLE security_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            type TEXT NOT NULL,
            timestamp TEXT NOT NULL,
            tech_info TEXT
        )""",
    ),
]

KEEP_DAMAGED_COPIES = 3
"""Copies of damaged write-ahead logs kept as evidence; older ones are deleted."""
CHECKPOINT_WAL_BYTES = 4 * 1024 * 1024
"""A write-ahead log grown past this is checkpointed (sqlite's own default is 1000 pages of 4 KiB)."""
BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another process that holds the database (Python's default); a
checkpoint never waits (``_checkpoint``)."""
LOST_WITH_THE_LOG = "lost: at most the meter values recorded since the last checkpoint"
"""What a damaged write-ahead log can take: transactions are checkpointed as they happen (module docstring)."""


class StoreError(Exception):
    """The state file cannot be used: names the file, what is wrong and what to do."""


@dataclass(frozen=True)
class StoredTransaction:
    local_id: int
    connector: int
    id_tag: str
    meter_start_wh: int
    started_at: float
    """Epoch seconds."""
    transaction_id: int | None
    """From StartTransaction.conf; None until it arrives."""
    last_energy_wh: float | None
    """Last meter reading on the connector while the transaction was open."""
    last_reading_at: float | None
    stopped: bool


@dataclass
class StoredMessage:
    seq: int
    action: str
    payload: dict[str, Any]
    local_id: int | None
    attempts: int


@dataclass(frozen=True)
class StoredSecurityEvent:
    seq: int
    type: str
    timestamp: str
    tech_info: str | None


class StateStore:
    """The state file, open; see the module docstring for the promises."""

    def __init__(self, path: Path):
        """Open (or create) the file at ``path``, check it and migrate its schema.

        Raises StoreError if the file is corrupt, unreadable, unwritable, from
        a newer evcp, or its state was lost (see the module docstring); the file
        is then left as it was.
        """
        self.path = Path(path)
        self.wal_damage: str | None = None
        """What was wrong with the write-ahead log at opening, and where its copy is; None if nothing."""
        self._wal_damage_untold = False
        self._wal = _sidecar(self.path, "-wal")
        self._checkpoint_due = False
        """A write asked for a checkpoint inside a transaction not committed yet."""
        self._db: sqlite3.Connection | None = None
        self._prepare_directory()
        try:
            if not self.path.exists():
                self._create()
            elif self.path.is_file() and self.path.stat().st_size == 0:
                raise StoreError(f"{self.path} is empty (0 bytes): the charger's state (open transactions, "
                                 "queued messages) was lost; restore it from a backup, or move it aside "
                                 "with its -wal and -shm files to start as a new charger")
            # isolation_level=None: autocommit, so each single-statement write
            # commits at once and multi-row writes say BEGIN/COMMIT explicitly.
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            self._check()
            self._refuse_newer()
            self._refuse_schemaless()
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path} cannot use a write-ahead log (journal mode stays {mode!r}); "
                                 "put storage.state_dir on a local filesystem such as ext4")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA wal_autocheckpoint=0")  # replaced by _written's truncating checkpoint
            self.wal_damage = self._inspect_wal()
            self._wal_damage_untold = self.wal_damage is not None
            self._migrate()
            self._checkpoint()
        except sqlite3.Error as e:
            self.close()
            raise self._error(e) from None
        except OSError as e:
            self.close()
            raise StoreError(f"{self.path} cannot be read or written ({e}); check the storage device "
                             "and the permissions of storage.state_dir") from None
        except BaseException:
            self.close()
            raise

    def _prepare_directory(self) -> None:
        directory = self.path.parent
        if directory.exists() and not directory.is_dir():
            raise StoreError(f"{directory} is a file, not a directory; storage.state_dir must name a "
                             "directory: move the file away or set another storage.state_dir")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{directory} cannot be created ({e}); "
                             "check the storage.state_dir setting and its permissions") from None

    def _create(self) -> None:
        """A new file with the whole schema, built aside and renamed into place: a power cut
        while it is made leaves no file, never a half-made one that would look like lost state."""
        wal = _sidecar(self.path, "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(f"{self.path} is missing but its write-ahead log {wal.name} is there: the "
                             "database was deleted or lost with the charger's state; restore it from a "
                             f"backup, or move {wal.name} aside to start as a new charger")
        building = self.path.with_name(self.path.name + ".new")
        for leftover in (building, _sidecar(building, "-wal"), _sidecar(building, "-shm")):
            leftover.unlink(missing_ok=True)
        self._db = sqlite3.connect(building, isolation_level=None)
        # It will hold secrets (the AuthorizationKey the central system sets): the
        # service's user alone may read it; sqlite gives -wal and -shm the same mode.
        os.chmod(building, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        self._db.close()
        self._db = None
        if busy:
            raise StoreError(f"{building} could not be completed (another process uses it); "
                             "stop the other evcp or sqlite3 using it")
        _fsync(building)
        os.replace(building, self.path)
        _fsync(self.path.parent)

    def take_wal_damage(self) -> str | None:
        """``wal_damage`` the first time it is asked for, then None: reported once per opening."""
        told, self._wal_damage_untold = self._wal_damage_untold, False
        return self.wal_damage if told else None

    # Transactions. OCPP 1.6 ("Transaction-related messages"): a transaction's StartTransaction, MeterValues
    # and StopTransaction must reach the central system even after a reboot,
    # so the transaction itself must be remembered until they have.

    def transaction_started(self, local_id: int, connector: int, id_tag: str,
                            meter_start_wh: int, started_at: float) -> None:
        """Remember a new open transaction; local_id comes from ``next_local_id``.

        Raises ValueError if local_id is already stored.
        """
        try:
            self._run("INSERT INTO transactions (local_id, connector, id_tag, meter_start_wh, started_at)"
                      " VALUES (?, ?, ?, ?, ?)", (local_id, connector, id_tag, meter_start_wh, started_at))
        except StoreError as e:
            if isinstance(e.__cause__, sqlite3.IntegrityError):
                raise ValueError(f"transaction {local_id} is already stored") from None
            raise
        self._written(checkpoint=True)

    def transaction_confirmed(self, local_id: int, transaction_id: int) -> None:
        """Record the central system's transactionId. KeyError if local_id is unknown."""
        self._update_one("UPDATE transactions SET transaction_id = ? WHERE local_id = ?",
                         (transaction_id, local_id), f"transaction {local_id}")
        self._written(checkpoint=True)

    def transaction_stopped(self, local_id: int) -> None:
        """Mark the transaction stopped (again is harmless). KeyError if local_id is unknown."""
        self._update_one("UPDATE transactions SET stopped = 1 WHERE local_id = ?",
                         (local_id,), f"transaction {local_id}")
        self._written(checkpoint=True)

    def open_transactions(self) -> list[StoredTransaction]:
        """Transactions not stopped, by local_id."""
        rows = self._run("SELECT local_id, connector, id_tag, meter_start_wh, started_at, transaction_id,"
                         " last_energy_wh, last_reading_at, stopped"
                         " FROM transactions WHERE NOT stopped ORDER BY local_id").fetchall()
        return [StoredTransaction(*row[:-1], stopped=bool(row[-1])) for row in rows]

    def latest_transactions(self) -> dict[int, int]:
        """connector → local_id of the newest transaction stored for it, stopped or not."""
        return dict(self._run("SELECT connector, MAX(local_id) FROM transactions GROUP BY connector").fetchall())

    def transaction_ids(self) -> dict[int, int]:
        """local_id → transactionId of every confirmed transaction still stored, stopped ones included.

        A stopped transaction's StopTransaction may still be queued and needs its id.
        """
        return dict(self._run("SELECT local_id, transaction_id FROM transactions"
                              " WHERE transaction_id IS NOT NULL").fetchall())

    def next_local_id(self) -> int:
        """1 + the largest local_id ever stored, pruned ones included; 1 on a new file."""
        row = self._run("SELECT seq FROM sqlite_sequence WHERE name = 'transactions'").fetchone()
        return (row[0] if row else 0) + 1

    # Meter readings.

    def meter_reading(self, connector: int, energy_wh: float, at: float) -> None:
        """Remember the connector's latest reading, and its open transaction's (if any).

        Call it per reported sample, not per poll: each call is a write to the
        SD card. Written with synchronous=NORMAL (see the module docstring).
        """
        self._run("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction():
                self._run("INSERT INTO meter_readings (connector, energy_wh, at) VALUES (?, ?, ?)"
                          " ON CONFLICT (connector) DO UPDATE SET energy_wh = excluded.energy_wh, at = excluded.at",
                          (connector, energy_wh, at))
                self._run("UPDATE transactions SET last_energy_wh = ?, last_reading_at = ?"
                          " WHERE connector = ? AND NOT stopped", (energy_wh, at, connector))
        finally:
            self._run("PRAGMA synchronous=FULL")

    def last_reading(self, connector: int) -> tuple[float, float] | None:
        """(energy_wh, at) of the connector's latest reading; None if it never had one."""
        row = self._run("SELECT energy_wh, at FROM meter_readings WHERE connector = ?", (connector,)).fetchone()
        return (row[0], row[1]) if row else None

    # Outbox: OCPP 1.6 "Transaction-related messages": they are delivered in the order
    # they were made, and kept until the central system has answered.

    def outbox_put(self, action: str, payload: dict[str, Any], local_id: int | None, *,
                   checkpoint: bool = True) -> int:
        """Append a message; returns its seq, larger than every seq handed out before.

        The payload is stored as JSON (tuples come back as lists, keys as
        strings); ValueError if it is not JSON or holds NaN or infinity, which
        the central system would refuse for ever. ``checkpoint=False`` for a
        frequent message a damaged write-ahead log may take (a MeterValues).
        """
        seq = self._run("INSERT INTO outbox (action, payload, local_id) VALUES (?, ?, ?)",
                        (action, _json(payload), local_id)).lastrowid
        self._written(checkpoint)
        return seq

    def outbox_put_stop(self, payload: dict[str, Any], local_id: int) -> int:
        """Queue a transaction's StopTransaction and mark it stopped, in one commit: a power
        cut between the two would otherwise stop it twice (here, and with PowerLoss at boot)."""
        with self._transaction():
            seq = self.outbox_put("StopTransaction", payload, local_id)
            self.transaction_stopped(local_id)
        return seq

    def outbox_update(self, seq: int, payload: dict[str, Any], attempts: int) -> None:
        """Replace a queued message's payload and attempt count. KeyError if seq is not queued."""
        self._update_one("UPDATE outbox SET payload = ?, attempts = ? WHERE seq = ?",
                         (_json(payload), attempts, seq), f"outbox message {seq}")
        self._written(checkpoint=False)

    def outbox_update_many(self, updates: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Replace the payloads of queued messages, (seq, payload) pairs, in one commit; a seq no
        longer queued is skipped."""
        rows = [(_json(payload), seq) for seq, payload in updates]
        with self._transaction():
            self._run_many("UPDATE outbox SET payload = ? WHERE seq = ?", rows)

    def outbox_done(self, seq: int) -> None:
        """Drop a delivered message (again is harmless)."""
        self._run("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._written(checkpoint=True)

    def outbox_done_through(self, seq: int, *, checkpoint: bool = True) -> None:
        """Drop every message up to ``seq`` included, in one commit: delivered in order, they are
        the oldest. One fsync for many messages (a replay after an outage). ``checkpoint=False``
        when they are all frequent messages (MeterValues), which a damaged write-ahead log may
        bring back to be sent again."""
        self._run("DELETE FROM outbox WHERE seq <= ?", (seq,))
        self._written(checkpoint)

    def outbox_start_confirmed(self, seq: int, local_id: int, transaction_id: int) -> None:
        """A StartTransaction.conf: the messages up to ``seq`` (the StartTransaction) are dropped
        and the transactionId recorded, in one commit. A power cut between the two would resend the
        StartTransaction (a second transaction at the central system) or lose the id."""
        with self._transaction():
            self.outbox_done_through(seq)
            self._run("UPDATE transactions SET transaction_id = ? WHERE local_id = ?", (transaction_id, local_id))

    def outbox_count(self) -> int:
        """How many messages are queued."""
        return self._run("SELECT count(*) FROM outbox").fetchone()[0]

    def outbox_holds(self, action: str, path: str | None = None, value: Any = None, after_seq: int = 0) -> bool:
        """Whether a message of ``action`` with a seq above ``after_seq`` is queued; with ``path``
        (a JSON path into its payload, ``$.a.b``), one that has ``value`` there."""
        where, params = "action = ? AND seq > ?", [action, after_seq]
        if path is not None:
            where, params = where + " AND json_extract(payload, ?) = ?", params + [path, value]
        return self._run(f"SELECT 1 FROM outbox WHERE {where} LIMIT 1", params).fetchone() is not None

    def outbox_page(self, after_seq: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` queued messages with a seq above ``after_seq``, by seq: the outbox is
        read a page at a time, however long it is."""
        return self._messages("WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))

    def outbox_of(self, action: str, page: int = 256) -> Iterator[StoredMessage]:
        """The queued messages of ``action``, by seq, read ``page`` rows at a time: memory stays
        bounded however long the queue (an outage's backlog can be 100,000 messages)."""
        after = 0
        while messages := self._messages("WHERE action = ? AND seq > ? ORDER BY seq LIMIT ?", (action, after, page)):
            yield from messages
            after = messages[-1].seq

    def outbox_stops(self) -> list[StoredMessage]:
        """The queued StopTransactions, by seq."""
        return self._messages("WHERE action = 'StopTransaction' ORDER BY seq")

    def outbox_newest_of(self, local_id: int) -> StoredMessage | None:
        """The newest queued message of a transaction, None when none is: the last the central
        system will hear of it before its end."""
        newest = self._messages("WHERE local_id = ? ORDER BY seq DESC LIMIT 1", (local_id,))
        return newest[0] if newest else None

    def _messages(self, where: str, params: tuple = ()) -> list[StoredMessage]:
        rows = self._run(f"SELECT seq, action, payload, local_id, attempts FROM outbox {where}", params).fetchall()
        return [StoredMessage(seq, action, json.loads(payload), local_id, attempts)
                for seq, action, payload, local_id, attempts in rows]

    def outbox_entries(self) -> list[StoredMessage]:
        """Every queued message, by seq (the order they were put); ``outbox_page`` reads a long queue."""
        return self.outbox_page(0, -1)

    # Security events waiting for the central system (security whitepaper "Security events").

    def security_event_put(self, event_type: str, timestamp: str, tech_info: str | None,
                           keep: int) -> list[StoredSecurityEvent]:
        """Queue a security event; beyond ``keep`` waiting, the oldest are dropped in the same
        commit and returned."""
        if keep < 1:
            raise ValueError(f"keep must be 1 or more, got {keep}")
        with self._transaction():
            self._run("INSERT INTO security_events (type, timestamp, tech_info) VALUES (?, ?, ?)",
                      (event_type, timestamp, tech_info))
            rows = self._run("SELECT seq, type, timestamp, tech_info FROM security_events"
                             " ORDER BY seq DESC LIMIT -1 OFFSET ?", (keep,)).fetchall()
            if rows:
                self._run("DELETE FROM security_events WHERE seq <= ?", (rows[0][0],))
        return [StoredSecurityEvent(*row) for row in reversed(rows)]

    def security_events(self, limit: int = -1) -> list[StoredSecurityEvent]:
        """Waiting security events, oldest first (at most ``limit``, all with -1)."""
        rows = self._run("SELECT seq, type, timestamp, tech_info FROM security_events ORDER BY seq LIMIT ?",
                         (limit,)).fetchall()
        return [StoredSecurityEvent(*row) for row in rows]

    def security_events_count(self) -> int:
        return self._run("SELECT count(*) FROM security_events").fetchone()[0]

    def security_event_done(self, seq: int) -> None:
        """Drop a delivered (or refused) security event (again is harmless)."""
        self._run("DELETE FROM security_events WHERE seq = ?", (seq,))
        self._written(checkpoint=False)

    # OCPP configuration keys changed by ChangeConfiguration, and availability
    # changed by ChangeAvailability (which must survive a reboot, OCPP 1.6 §5.2).

    def save_configuration(self, values: dict[str, str]) -> None:
        """Replace the stored configuration with ``values``, all or nothing."""
        with self._transaction():
            self._run("DELETE FROM configuration")
            self._run_many("INSERT INTO configuration (key, value) VALUES (?, ?)", values.items())
            self._written(checkpoint=True)

    def load_configuration(self) -> dict[str, str]:
        """The configuration last saved; empty on a new file."""
        return dict(self._run("SELECT key, value FROM configuration ORDER BY key").fetchall())

    def save_availability(self, connector: int, operative: bool) -> None:
        """Remember a connector's availability; connector 0 is the whole charge point."""
        self._run("INSERT INTO availability (connector, operative) VALUES (?, ?)"
                  " ON CONFLICT (connector) DO UPDATE SET operative = excluded.operative",
                  (connector, int(operative)))
        self._written(checkpoint=True)

    def load_availability(self) -> dict[int, bool]:
        """connector → operative, for the connectors ever saved."""
        return {c: bool(op) for c, op in self._run("SELECT connector, operative FROM availability").fetchall()}

    # Documents: state saved as one JSON value per name (OCPP 1.6 requires the local
    # authorization list, reservations and charging profiles to survive a reboot).

    def save_document(self, name: str, body: Any, *, checkpoint: bool = True) -> None:
        """Replace the document ``name`` with ``body`` (JSON-able), durably. ``checkpoint=False``
        for a document saved as often as meter values, whose checkpointed facts are elsewhere."""
        self._run("INSERT INTO documents (name, body) VALUES (?, ?)"
                  " ON CONFLICT (name) DO UPDATE SET body = excluded.body", (name, json.dumps(body)))
        self._written(checkpoint)

    def load_document(self, name: str) -> Any:
        """The document last saved under ``name``, or None."""
        row = self._run("SELECT body FROM documents WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    # Housekeeping.

    def prune(self, keep_stopped: int = 1000) -> int:
        """Forget old stopped transactions; returns how many were deleted.

        Keeps the newest ``keep_stopped`` stopped transactions (newest by
        local_id: the clock of a Pi without a real-time clock can jump), every
        open one, and every one with a message still in the outbox.
        """
        if keep_stopped < 0:
            raise ValueError(f"keep_stopped must be 0 or more, got {keep_stopped}")
        deleted = self._run(
            "DELETE FROM transactions WHERE local_id IN"
            " (SELECT local_id FROM transactions WHERE stopped ORDER BY local_id DESC LIMIT -1 OFFSET ?)"
            " AND local_id NOT IN (SELECT local_id FROM outbox WHERE local_id IS NOT NULL)",
            (keep_stopped,)).rowcount
        self._written(checkpoint=False)
        return deleted

    def close(self) -> None:
        """Close the file; closing again does nothing."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Internals.

    def _run(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if self._db is None:
            raise StoreError(f"{self.path} is closed; open a new StateStore")
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as e:
            raise self._error(e) from e

    def _run_many(self, sql: str, rows: Iterable) -> None:
        if self._db is None:
            raise StoreError(f"{self.path} is closed; open a new StateStore")
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as e:
            raise self._error(e) from e

    def _update_one(self, sql: str, params: tuple, what: str) -> None:
        if self._run(sql, params).rowcount == 0:
            raise KeyError(f"{what} is not stored")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every write made inside, through any method, commits at its end, all or nothing: an
        exception inside rolls them all back, a kill or a power cut before the end loses them
        all, never some. Facts that must not be parted (a transaction and the message that
        reports it) are written in one. Nested, the outermost one commits; a checkpoint a write
        asks for is made at that commit."""
        with self._transaction():
            yield

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._db is not None and self._db.in_transaction:
            yield  # part of the enclosing transaction, which commits or rolls back
            return
        self._run("BEGIN IMMEDIATE")
        try:
            yield
            self._run("COMMIT")
        except BaseException:
            # A failed COMMIT may already have rolled back.
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._written(checkpoint=False)

    def _written(self, checkpoint: bool) -> None:
        """After a write: checkpoint if it asked for it (at the commit of the transaction it is
        part of) or the log has grown past CHECKPOINT_WAL_BYTES (module docstring)."""
        self._checkpoint_due = self._checkpoint_due or checkpoint
        if self._db.in_transaction:
            return
        if self._checkpoint_due or self._wal_bytes() > CHECKPOINT_WAL_BYTES:
            try:
                self._checkpoint()
            except StoreError as error:
                # The write itself is committed: only its copy into the main file failed. Raising
                # would make the caller take it for not written (a queued message then skipped).
                log.error("state database: checkpoint failed, tried again at the next write: %s", error)
                self._checkpoint_due = True

    def _checkpoint(self) -> None:
        """Everything committed into the main file, and the log emptied, without waiting: another
        process reading the file (an operator's sqlite3, a backup) can keep it from completing, and
        sqlite's busy handler would then hold the control loop for seconds. The facts wait in the
        log, as durable as ever against a power cut, and the next write tries again."""
        self._run("PRAGMA busy_timeout=0")
        try:
            busy = self._run("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self._run(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._checkpoint_due = bool(busy)

    def _wal_bytes(self) -> int:
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    def _check(self) -> None:
        rows = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            problems = [line for row in rows for line in row.splitlines() if not line.startswith("***")]
            more = f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""
            raise StoreError(f"{self.path} is not a database or is corrupt ({problems[0]}{more}); "
                             "move it aside, with its -wal and -shm files, to start with an empty state")

    def _refuse_newer(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path} was written by a newer evcp (schema version {version}, this one "
                             f"knows up to {len(MIGRATIONS)}); install that newer evcp again, or move the file "
                             "aside to start with an empty state")

    def _refuse_schemaless(self) -> None:
        if self._db.execute("PRAGMA user_version").fetchone()[0] == 0:
            raise StoreError(f"{self.path} holds no evcp state (schema version 0): its content was lost (for "
                             "instance with its write-ahead log) or it is not evcp's; restore it from a backup, "
                             "or move it aside with its -wal and -shm files to start as a new charger")

    def _inspect_wal(self) -> str | None:
        """Compare the write-ahead log's frames with those sqlite found valid when it read the
        file (the quick_check above); on a difference, copy the log aside and describe it."""
        wal = self._wal
        layout = read_wal_layout(wal)
        if layout is None:
            return None
        # PASSIVE only counts the valid frames here: the TRUNCATE checkpoint that ends the opening
        # follows once the log is copied.
        valid = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        if layout.header_problem is not None:
            what = f"is not a write-ahead log ({layout.header_problem}, {layout.size} bytes), ignored"
        elif layout.frames > valid or layout.partial_bytes:
            ignored = layout.frames - valid
            what = (f"has {ignored} page(s) and {layout.partial_bytes} bytes past its last complete commit, "
                    "ignored (a write cut short, or damage)")
        else:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        copy = wal.with_name(f"{wal.name}.damaged-{stamp}")
        for n in itertools.count(1):
            if not copy.exists():
                break
            copy = wal.with_name(f"{wal.name}.damaged-{stamp}-{n}")
        # It may hold secrets, like the database: readable by the service's user alone.
        with open(wal, "rb") as source, open(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as target:
            shutil.copyfileobj(source, target)
        copies = sorted(wal.parent.glob(f"{wal.name}.damaged-*"), key=lambda p: p.stat().st_mtime_ns)
        for old in copies[:-KEEP_DAMAGED_COPIES]:
            old.unlink(missing_ok=True)
        return f"{wal.name} {what}; {LOST_WITH_THE_LOG}; copy kept as {copy.name}"

    def _migrate(self) -> None:
        # BEGIN IMMEDIATE, then read the version: no other opener can migrate in between.
        with self._transaction():
            version = self._run("PRAGMA user_version").fetchone()[0]
            for number in range(version + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[number - 1]:
                    try:
                        self._db.execute(statement)
                    except sqlite3.Error as e:
                        raise StoreError(f"{self.path} cannot be upgraded to schema version {number} ({e}); "
                                         "move it aside to start with an empty state") from None
            if version < len(MIGRATIONS):
                # PRAGMA user_version is part of the transaction: steps and version commit together.
                self._run(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def _error(self, e: sqlite3.Error) -> StoreError:
        name = getattr(e, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            advice = ("is not a database or is corrupt", "move it aside, with its -wal and -shm files, "
                      "to start with an empty state")
        elif name.startswith("SQLITE_FULL"):
            advice = ("cannot be written, the disk is full", "free space on its filesystem")
        elif name.startswith("SQLITE_IOERR"):
            advice = ("cannot be read or written", "check the storage device; an SD card may be failing")
        elif name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
            advice = ("cannot be opened for reading and writing",
                      "check that the file and its directory are writable by the user evcp runs as")
        elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            advice = ("is locked by another process", "stop the other evcp or sqlite3 using it")
        else:
            advice = ("cannot be used", "report this error")
        return StoreError(f"{self.path} {advice[0]} ({e}); {advice[1]}")


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


WAL_MAGIC = (0x377F0682, 0x377F0683)
WAL_VERSION = 3007000
WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24


@dataclass(frozen=True)
class WalLayout:
    """What a write-ahead log file holds, read from its headers (https://sqlite.org/fileformat2.html#walformat)."""

    size: int
    header_problem: str | None
    """Why the file is not a write-ahead log at all; None when its header is sound."""
    frames: int = 0
    """Complete frames of the log's current generation (same salts as the header), from the start."""
    partial_bytes: int = 0
    """Bytes of an incomplete frame right after those frames, at the end of the file."""


def read_wal_layout(path: Path) -> WalLayout | None:
    """The layout of the write-ahead log at ``path``; None when there is none or it is empty.

    Frames are counted by their salts, not their checksums: sqlite checks those, and the
    caller compares its count of valid frames with this one.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb") as f:
        header = f.read(WAL_HEADER_BYTES)
        if len(header) < WAL_HEADER_BYTES:
            return WalLayout(size, f"{size} bytes, shorter than a write-ahead log header")
        magic, version, page_size, _, salt1, salt2, check1, check2 = struct.unpack(">8I", header)
        if magic not in WAL_MAGIC or version != WAL_VERSION:
            return WalLayout(size, "no write-ahead log header")
        if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
            return WalLayout(size, f"impossible page size {page_size} in its header")
        if _wal_checksum(header[:24], big_endian=bool(magic & 1)) != (check1, check2):
            return WalLayout(size, "header checksum wrong")
        frame_bytes = WAL_FRAME_HEADER_BYTES + page_size
        frames, offset = 0, WAL_HEADER_BYTES
        while offset + frame_bytes <= size:
            f.seek(offset)
            frame_header = f.read(WAL_FRAME_HEADER_BYTES)
            if struct.unpack(">II", frame_header[8:16]) != (salt1, salt2):
                return WalLayout(size, None, frames)  # an older generation's frames: ignored by design
            frames += 1
            offset += frame_bytes
        return WalLayout(size, None, frames, size - offset)


def _wal_checksum(data: bytes, big_endian: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1
