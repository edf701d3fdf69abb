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
- A write touching several rows is one sqlite transaction: all or nothing.
- Opening checks the file (``PRAGMA quick_check``) and brings its schema up to
  date; a corrupt, unreadable or newer file is a ``StoreError`` and nothing
  in it is changed.
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

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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
]


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


class StateStore:
    """The state file, open; see the module docstring for the promises."""

    def __init__(self, path: Path):
        """Open (or create) the file at ``path``, check it and migrate its schema.

        Raises StoreError if the file is corrupt, unreadable, unwritable or from
        a newer evcp; the file is then left as it was.
        """
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.path.parent} cannot be created ({e}); "
                             "check the storage.state_dir setting and its permissions") from None
        self._db: sqlite3.Connection | None = None
        try:
            # isolation_level=None: autocommit, so each single-statement write
            # commits at once and multi-row writes say BEGIN/COMMIT explicitly.
            created = not self.path.exists()
            self._db = sqlite3.connect(self.path, isolation_level=None)
            if created:
                # It will hold secrets (the AuthorizationKey the central system sets): the
                # service's user alone may read it; sqlite gives -wal and -shm the same mode.
                os.chmod(self.path, 0o600)
            self._check()
            self._refuse_newer()
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path} cannot use a write-ahead log (journal mode stays {mode!r}); "
                                 "put storage.state_dir on a local filesystem such as ext4")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as e:
            self.close()
            raise self._error(e) from None
        except BaseException:
            self.close()
            raise

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

    def transaction_confirmed(self, local_id: int, transaction_id: int) -> None:
        """Record the central system's transactionId. KeyError if local_id is unknown."""
        self._update_one("UPDATE transactions SET transaction_id = ? WHERE local_id = ?",
                         (transaction_id, local_id), f"transaction {local_id}")

    def transaction_stopped(self, local_id: int) -> None:
        """Mark the transaction stopped (again is harmless). KeyError if local_id is unknown."""
        self._update_one("UPDATE transactions SET stopped = 1 WHERE local_id = ?",
                         (local_id,), f"transaction {local_id}")

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

    def outbox_put(self, action: str, payload: dict[str, Any], local_id: int | None) -> int:
        """Append a message; returns its seq, larger than every seq handed out before.

        The payload is stored as JSON (tuples come back as lists, keys as
        strings); ValueError if it is not JSON or holds NaN or infinity, which
        the central system would refuse for ever.
        """
        return self._run("INSERT INTO outbox (action, payload, local_id) VALUES (?, ?, ?)",
                         (action, _json(payload), local_id)).lastrowid

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

    def outbox_done(self, seq: int) -> None:
        """Drop a delivered message (again is harmless)."""
        self._run("DELETE FROM outbox WHERE seq = ?", (seq,))

    def outbox_entries(self) -> list[StoredMessage]:
        """Queued messages, by seq (the order they were put)."""
        rows = self._run("SELECT seq, action, payload, local_id, attempts FROM outbox ORDER BY seq").fetchall()
        return [StoredMessage(seq, action, json.loads(payload), local_id, attempts)
                for seq, action, payload, local_id, attempts in rows]

    # OCPP configuration keys changed by ChangeConfiguration, and availability
    # changed by ChangeAvailability (which must survive a reboot, OCPP 1.6 §5.2).

    def save_configuration(self, values: dict[str, str]) -> None:
        """Replace the stored configuration with ``values``, all or nothing."""
        with self._transaction():
            self._run("DELETE FROM configuration")
            self._db.executemany("INSERT INTO configuration (key, value) VALUES (?, ?)", values.items())

    def load_configuration(self) -> dict[str, str]:
        """The configuration last saved; empty on a new file."""
        return dict(self._run("SELECT key, value FROM configuration ORDER BY key").fetchall())

    def save_availability(self, connector: int, operative: bool) -> None:
        """Remember a connector's availability; connector 0 is the whole charge point."""
        self._run("INSERT INTO availability (connector, operative) VALUES (?, ?)"
                  " ON CONFLICT (connector) DO UPDATE SET operative = excluded.operative",
                  (connector, int(operative)))

    def load_availability(self) -> dict[int, bool]:
        """connector → operative, for the connectors ever saved."""
        return {c: bool(op) for c, op in self._run("SELECT connector, operative FROM availability").fetchall()}

    # Documents: state saved as one JSON value per name (OCPP 1.6 requires the local
    # authorization list, reservations and charging profiles to survive a reboot).

    def save_document(self, name: str, body: Any) -> None:
        """Replace the document ``name`` with ``body`` (JSON-able), durably."""
        self._run("INSERT INTO documents (name, body) VALUES (?, ?)"
                  " ON CONFLICT (name) DO UPDATE SET body = excluded.body", (name, json.dumps(body)))

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
        return self._run(
            "DELETE FROM transactions WHERE local_id IN"
            " (SELECT local_id FROM transactions WHERE stopped ORDER BY local_id DESC LIMIT -1 OFFSET ?)"
            " AND local_id NOT IN (SELECT local_id FROM outbox WHERE local_id IS NOT NULL)",
            (keep_stopped,)).rowcount

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

    def _update_one(self, sql: str, params: tuple, what: str) -> None:
        if self._run(sql, params).rowcount == 0:
            raise KeyError(f"{what} is not stored")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._run("BEGIN IMMEDIATE")
        try:
            yield
            self._run("COMMIT")
        except BaseException:
            # A failed COMMIT may already have rolled back.
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

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
