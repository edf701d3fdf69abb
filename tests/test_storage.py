"""The durable state: round trips, durability across reopen and crash, schema versions, bad files."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from evcp import storage
from evcp.storage import FILENAME, StateStore, StoredMessage, StoredTransaction, StoreError


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / FILENAME


@pytest.fixture
def store(path):
    with StateStore(path) as s:
        yield s


def start(store, local_id, connector=1, tag="TAG", meter_start=100, at=1000.0):
    store.transaction_started(local_id, connector, tag, meter_start, at)


# Round trips.

def test_a_new_store_is_empty_and_creates_its_directory(path):
    with StateStore(path) as s:
        assert path.exists()
        assert s.open_transactions() == [] and s.transaction_ids() == {}
        assert s.next_local_id() == 1
        assert s.last_reading(1) is None
        assert s.outbox_entries() == []
        assert s.load_configuration() == {} and s.load_availability() == {}


def test_transaction_lifecycle(store):
    start(store, 1, connector=2, tag="ABC", meter_start=1234, at=1700000000.5)
    assert store.open_transactions() == [StoredTransaction(1, 2, "ABC", 1234, 1700000000.5, None, None, None, False)]
    assert store.transaction_ids() == {}
    assert store.next_local_id() == 2

    store.transaction_confirmed(1, 4711)
    assert store.open_transactions()[0].transaction_id == 4711
    assert store.transaction_ids() == {1: 4711}

    store.transaction_stopped(1)
    assert store.open_transactions() == []
    assert store.transaction_ids() == {1: 4711}, "a stopped transaction's StopTransaction may still be queued"
    store.transaction_stopped(1)


def test_open_transactions_come_by_local_id(store):
    for local_id in (3, 1, 2):
        start(store, local_id, connector=local_id)
    store.transaction_stopped(2)
    assert [t.local_id for t in store.open_transactions()] == [1, 3]


def test_unknown_or_repeated_local_ids_are_refused(store):
    start(store, 1)
    with pytest.raises(ValueError, match="transaction 1"):
        start(store, 1)
    with pytest.raises(KeyError):
        store.transaction_confirmed(2, 5)
    with pytest.raises(KeyError):
        store.transaction_stopped(2)


def test_meter_reading_is_kept_per_connector(store):
    store.meter_reading(1, 1500.5, 2000.0)
    store.meter_reading(2, 10.0, 2001.0)
    store.meter_reading(1, 1600.0, 2002.0)
    assert store.last_reading(1) == (1600.0, 2002.0)
    assert store.last_reading(2) == (10.0, 2001.0)
    assert store.last_reading(3) is None


def test_meter_reading_updates_only_the_open_transaction_of_its_connector(store):
    start(store, 1, connector=1)
    store.transaction_stopped(1)
    start(store, 2, connector=1)
    start(store, 3, connector=2)
    store.meter_reading(1, 555.0, 3000.0)

    stopped = StateStoreRows(store).transaction(1)
    assert (stopped["last_energy_wh"], stopped["last_reading_at"]) == (None, None)
    by_id = {t.local_id: t for t in store.open_transactions()}
    assert (by_id[2].last_energy_wh, by_id[2].last_reading_at) == (555.0, 3000.0)
    assert (by_id[3].last_energy_wh, by_id[3].last_reading_at) == (None, None)


def test_outbox_round_trip(store):
    start_payload = {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "2024-01-01T00:00:00Z"}
    seq1 = store.outbox_put("StartTransaction", start_payload, 1)
    seq2 = store.outbox_put("Heartbeat", {}, None)
    assert seq2 > seq1
    assert store.outbox_entries() == [StoredMessage(seq1, "StartTransaction", start_payload, 1, 0),
                                      StoredMessage(seq2, "Heartbeat", {}, None, 0)]

    changed = {**start_payload, "meterStart": 7}
    store.outbox_update(seq1, changed, 3)
    assert store.outbox_entries()[0] == StoredMessage(seq1, "StartTransaction", changed, 1, 3)

    store.outbox_done(seq1)
    store.outbox_done(seq1)
    assert [m.seq for m in store.outbox_entries()] == [seq2]
    with pytest.raises(KeyError):
        store.outbox_update(seq1, {}, 1)


def test_outbox_seq_keeps_increasing_after_the_outbox_empties(path):
    with StateStore(path) as s:
        seq = s.outbox_put("MeterValues", {"x": 1}, None)
        s.outbox_done(seq)
    with StateStore(path) as s:
        assert s.outbox_put("MeterValues", {"x": 2}, None) > seq


def test_outbox_refuses_payloads_the_central_system_could_not_read(store):
    with pytest.raises(ValueError):
        store.outbox_put("MeterValues", {"value": float("nan")}, 1)
    with pytest.raises(TypeError):
        store.outbox_put("MeterValues", {"value": object()}, 1)
    assert store.outbox_entries() == []


def test_configuration_is_replaced_whole(store):
    store.save_configuration({"HeartbeatInterval": "60", "MeterValueSampleInterval": "30"})
    assert store.load_configuration() == {"HeartbeatInterval": "60", "MeterValueSampleInterval": "30"}
    store.save_configuration({"HeartbeatInterval": "120"})
    assert store.load_configuration() == {"HeartbeatInterval": "120"}
    store.save_configuration({})
    assert store.load_configuration() == {}


def test_availability_per_connector(store):
    store.save_availability(0, True)
    store.save_availability(1, False)
    store.save_availability(2, False)
    store.save_availability(2, True)
    assert store.load_availability() == {0: True, 1: False, 2: True}


def test_documents_are_replaced_whole_and_survive_reopen(path):
    with StateStore(path) as s:
        assert s.load_document("local-list") is None
        s.save_document("local-list", {"version": 1, "entries": {"A": {"status": "Accepted"}}})
        s.save_document("local-list", {"version": 2, "entries": {}})
        s.save_document("reservations", [{"id": 7}])
    with StateStore(path) as s:
        assert s.load_document("local-list") == {"version": 2, "entries": {}}
        assert s.load_document("reservations") == [{"id": 7}]


def test_close_is_idempotent_and_a_closed_store_says_so(path):
    s = StateStore(path)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.open_transactions()


# Pruning and local ids.

def test_prune_keeps_the_newest_stopped_open_and_queued_transactions(store):
    for local_id in range(1, 7):
        start(store, local_id)
    for local_id in range(1, 6):
        store.transaction_stopped(local_id)
    store.outbox_put("StopTransaction", {"transactionId": None}, 1)

    assert store.prune(keep_stopped=2) == 2
    kept = StateStoreRows(store).local_ids()
    assert kept == [1, 4, 5, 6], "1 still has a queued message, 4 and 5 are the newest stopped, 6 is open"


def test_next_local_id_never_repeats_after_pruning(path):
    with StateStore(path) as s:
        for local_id in (1, 2, 3):
            start(s, local_id)
            s.transaction_stopped(local_id)
        assert s.prune(keep_stopped=0) == 3
        assert StateStoreRows(s).local_ids() == []
        assert s.next_local_id() == 4
    with StateStore(path) as s:
        assert s.next_local_id() == 4
        start(s, s.next_local_id())
        assert s.next_local_id() == 5


def test_prune_refuses_a_negative_count(store):
    with pytest.raises(ValueError):
        store.prune(-1)


# Durability.

def fill(s):
    """Every kind of write; ``check`` finds all of them."""
    start(s, 1, connector=1, meter_start=100)
    s.transaction_confirmed(1, 4711)
    start(s, 2, connector=2, meter_start=200)
    s.transaction_stopped(2)
    s.meter_reading(1, 150.0, 1010.0)
    first = s.outbox_put("StartTransaction", {"connectorId": 1, "meterStart": 100}, 1)
    for n in range(5):
        s.outbox_put("MeterValues", {"n": n}, 1)
    s.outbox_update(first, {"connectorId": 1, "meterStart": 100}, 2)
    done = s.outbox_put("StopTransaction", {"transactionId": None}, 2)
    s.outbox_done(done)
    s.save_configuration({"HeartbeatInterval": "90"})
    s.save_availability(1, False)


def check(s):
    [tx] = s.open_transactions()
    assert tx == StoredTransaction(1, 1, "TAG", 100, 1000.0, 4711, 150.0, 1010.0, False)
    assert s.transaction_ids() == {1: 4711}
    assert s.next_local_id() == 3
    assert s.last_reading(1) == (150.0, 1010.0)
    entries = s.outbox_entries()
    assert [(m.action, m.attempts) for m in entries] == [("StartTransaction", 2)] + [("MeterValues", 0)] * 5
    assert [m.payload["n"] for m in entries[1:]] == [0, 1, 2, 3, 4], "order survives"
    assert s.load_configuration() == {"HeartbeatInterval": "90"}
    assert s.load_availability() == {1: False}


def test_everything_survives_close_and_reopen(path):
    with StateStore(path) as s:
        fill(s)
    with StateStore(path) as s:
        check(s)


def test_everything_survives_a_crash_without_close(path):
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from evcp.storage import StateStore
        from test_storage import fill
        s = StateStore(Path({str(path)!r}))
        fill(s)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert path.with_name(FILENAME + "-wal").exists(), "the crash left the write-ahead log uncheckpointed"
    with StateStore(path) as s:
        check(s)


def test_wal_mode_and_synchronous_full_are_in_effect(store, path):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2, "FULL"
    store.meter_reading(1, 1.0, 1.0)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2, "FULL again after a meter reading"
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "WAL is a property of the file"


def test_only_meter_readings_are_written_with_synchronous_normal(store):
    statements = []
    store._db.set_trace_callback(statements.append)
    start(store, 1)
    store.outbox_put("StartTransaction", {}, 1)
    store.meter_reading(1, 1.0, 1.0)
    store.save_availability(1, True)
    store._db.set_trace_callback(None)

    level = "FULL"
    levels = {}
    for sql in statements:
        if sql.startswith("PRAGMA synchronous="):
            level = sql.split("=")[1]
        elif sql.split()[0] in ("INSERT", "UPDATE", "DELETE"):
            levels[" ".join(sql.split()[:3])] = level
    assert levels == {
        "INSERT INTO transactions": "FULL",
        "INSERT INTO outbox": "FULL",
        "INSERT INTO meter_readings": "NORMAL",
        "UPDATE transactions SET": "NORMAL",
        "INSERT INTO availability": "FULL",
    }


# Schema versions.

# Version 1 as it was released, frozen: migration 1 must never change under it.
VERSION_1 = """
    CREATE TABLE transactions (
        local_id INTEGER PRIMARY KEY AUTOINCREMENT, connector INTEGER NOT NULL, id_tag TEXT NOT NULL,
        meter_start_wh INTEGER NOT NULL, started_at REAL NOT NULL, transaction_id INTEGER,
        last_energy_wh REAL, last_reading_at REAL, stopped INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE meter_readings (connector INTEGER PRIMARY KEY, energy_wh REAL NOT NULL, at REAL NOT NULL);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, payload TEXT NOT NULL,
        local_id INTEGER, attempts INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE configuration (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE availability (connector INTEGER PRIMARY KEY, operative INTEGER NOT NULL);
    PRAGMA user_version = 1;
"""


def user_version(path):
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_file_gets_the_latest_schema_in_its_main_file(path):
    with StateStore(path) as s:
        start(s, 1)
        assert not path.with_name(FILENAME + ".new").exists()
        with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as main_file_alone:
            assert main_file_alone.execute("PRAGMA user_version").fetchone()[0] == len(storage.MIGRATIONS), \
                "the schema is in the file itself, not only in its write-ahead log"
    assert user_version(path) == len(storage.MIGRATIONS)


def test_a_version_1_database_built_by_hand_opens_with_its_data(path):
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(VERSION_1)
    db.execute("INSERT INTO transactions (local_id, connector, id_tag, meter_start_wh, started_at, transaction_id)"
               " VALUES (9, 1, 'OLD', 50, 1.5, 77)")
    db.execute("INSERT INTO outbox (action, payload, local_id) VALUES ('StopTransaction', ?, 9)",
               (json.dumps({"transactionId": 77}),))
    db.execute("INSERT INTO configuration VALUES ('HeartbeatInterval', '30')")
    db.commit()
    db.close()

    with StateStore(path) as s:
        assert [t.local_id for t in s.open_transactions()] == [9]
        assert s.transaction_ids() == {9: 77}
        assert s.next_local_id() == 10
        assert [(m.action, m.payload) for m in s.outbox_entries()] == [("StopTransaction", {"transactionId": 77})]
        assert s.load_configuration() == {"HeartbeatInterval": "30"}
    assert user_version(path) == len(storage.MIGRATIONS)


def test_later_steps_are_applied_in_order_and_keep_the_data(path, monkeypatch):
    with StateStore(path) as s:
        s.save_configuration({"A": "1"})
    monkeypatch.setattr(storage, "MIGRATIONS", storage.MIGRATIONS + [
        ("CREATE TABLE step2 (x)", "INSERT INTO step2 VALUES ('two')"),
        ("INSERT INTO step2 SELECT x || '+three' FROM step2",),
    ])
    with StateStore(path) as s:
        assert s.load_configuration() == {"A": "1"}
        assert s._db.execute("SELECT x FROM step2 ORDER BY rowid").fetchall() == [("two",), ("two+three",)]
    assert user_version(path) == len(storage.MIGRATIONS)


def test_a_failing_step_leaves_the_file_at_its_old_version(path, monkeypatch):
    with StateStore(path):
        pass
    old = len(storage.MIGRATIONS)
    monkeypatch.setattr(storage, "MIGRATIONS", storage.MIGRATIONS + [
        ("CREATE TABLE step2 (x)", "INSERT INTO no_such_table VALUES (1)"),
    ])
    with pytest.raises(StoreError, match=f"{FILENAME} cannot be upgraded to schema version {old + 1}"):
        StateStore(path)
    assert user_version(path) == old
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'step2'").fetchone()[0] == 0


def test_a_database_from_a_newer_evcp_is_refused_untouched(path):
    with StateStore(path):
        pass
    newer = len(storage.MIGRATIONS) + 1
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError) as e:
        StateStore(path)
    assert str(path) in str(e.value) and "newer evcp" in str(e.value) and f"version {newer}" in str(e.value)
    assert user_version(path) == newer


# Bad files.

def test_random_bytes_are_refused_with_the_file_named(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError) as e:
        StateStore(path)
    message = str(e.value)
    assert message.startswith(f"{path} is not a database or is corrupt")
    assert "move it aside" in message


@pytest.mark.parametrize("keep", [0.5, 100])
def test_a_truncated_database_is_refused_with_the_file_named(path, keep):
    with StateStore(path) as s:
        for local_id in range(1, 400):
            start(s, local_id, tag="T" * 100)
    data = path.read_bytes()
    assert len(data) > 8 * 4096, "the database spans many pages"
    path.write_bytes(data[:int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(StoreError) as e:
        StateStore(path)
    assert str(e.value).startswith(f"{path} is")
    assert "corrupt" in str(e.value) and "move it aside" in str(e.value)


def test_a_damaged_page_is_found_by_the_check_at_open(path):
    with StateStore(path) as s:
        for local_id in range(1, 400):
            start(s, local_id, tag="T" * 100)
    data = bytearray(path.read_bytes())
    last_page = len(data) - 4096
    data[last_page + 8:last_page + 40] = bytes(range(32))  # its cell pointers
    path.write_bytes(data)
    with pytest.raises(StoreError) as e:
        StateStore(path)
    message = str(e.value)
    assert message.startswith(f"{path} is not a database or is corrupt (On tree page ")
    assert "more problems); move it aside" in message


def test_an_unopenable_path_is_a_store_error(path):
    path.mkdir(parents=True)
    with pytest.raises(StoreError, match=str(path)):
        StateStore(path)


class StateStoreRows:
    """Raw rows, for what the API deliberately does not show (stopped transactions)."""

    def __init__(self, store):
        self.db = store._db

    def local_ids(self):
        return [row[0] for row in self.db.execute("SELECT local_id FROM transactions ORDER BY local_id")]

    def transaction(self, local_id):
        cursor = self.db.execute("SELECT * FROM transactions WHERE local_id = ?", (local_id,))
        return dict(zip([d[0] for d in cursor.description], cursor.fetchone()))


def test_queueing_the_stop_marks_the_transaction_stopped_in_the_same_commit(tmp_path):
    from evcp.storage import StateStore

    with StateStore(tmp_path / "evcp.sqlite3") as store:
        store.transaction_started(1, 1, "TAG", 100, 1000.0)
        seq = store.outbox_put_stop({"transactionId": None, "meterStop": 150, "timestamp": "t", "reason": "Local"}, 1)
        assert store.open_transactions() == []
        assert [(m.seq, m.action, m.local_id) for m in store.outbox_entries()] == [(seq, "StopTransaction", 1)]
        try:
            store.outbox_put_stop({"meterStop": 1}, 99)
        except KeyError:
            pass
        assert [m.local_id for m in store.outbox_entries()] == [1], "an unknown transaction queues nothing"


def test_writes_inside_atomic_commit_together_or_not_at_all(path):
    """A transaction and its StartTransaction, written inside ``atomic()``: a kill between the two
    writes leaves neither; a kill after the block, both."""
    killed_writer(path, """
        with s.atomic():
            s.transaction_started(1, 1, "TAG", 100, 1000.0)
            os._exit(0)
    """)
    with StateStore(path) as s:
        assert s.open_transactions() == [] and s.outbox_entries() == []
    killed_writer(path, """
        with s.atomic():
            s.transaction_started(1, 1, "TAG", 100, 1000.0)
            s.outbox_put("StartTransaction", {"connectorId": 1}, 1)
    """)
    with StateStore(path) as s:
        assert [t.local_id for t in s.open_transactions()] == [1]
        assert [(m.action, m.local_id) for m in s.outbox_entries()] == [("StartTransaction", 1)]


def test_atomic_takes_in_writes_that_are_transactions_themselves_and_a_failure_undoes_all(store):
    with pytest.raises(RuntimeError):
        with store.atomic():
            start(store, 1)
            with store.atomic():
                store.outbox_put_stop({"transactionId": None, "meterStop": 150, "timestamp": "t"}, 1)
            raise RuntimeError("killed before the end")
    assert store.open_transactions() == [] and store.outbox_entries() == []
    with store.atomic():
        start(store, 1)
        store.outbox_put_stop({"transactionId": None, "meterStop": 150, "timestamp": "t"}, 1)
    assert store.open_transactions() == [] and [m.action for m in store.outbox_entries()] == ["StopTransaction"]
    assert store._wal_bytes() == 0, "the checkpoint a write asked for is made at the commit"


def test_a_new_database_is_readable_by_the_service_alone(tmp_path):
    import stat

    from evcp.storage import StateStore

    with StateStore(tmp_path / "evcp.sqlite3") as store:
        store.save_configuration({"AuthorizationKey": "secret"})
    assert stat.S_IMODE((tmp_path / "evcp.sqlite3").stat().st_mode) == 0o600


# Lost state: detected and said, never a silent new charger.

def test_a_zero_length_database_is_lost_state_not_a_new_charger(path):
    with StateStore(path) as s:
        start(s, 1)
    path.write_bytes(b"")
    with pytest.raises(StoreError) as e:
        StateStore(path)
    assert str(e.value).startswith(f"{path} is empty (0 bytes): the charger's state")
    assert "move it aside" in str(e.value)
    assert path.stat().st_size == 0, "left as it was"


def test_a_database_without_evcp_schema_is_refused(path):
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE other (x)")
    with pytest.raises(StoreError, match=f"{path} holds no evcp state \\(schema version 0\\)"):
        StateStore(path)


def test_a_missing_database_beside_its_write_ahead_log_is_lost_state(path):
    with StateStore(path):
        pass
    wal = path.with_name(FILENAME + "-wal")
    wal.write_bytes(b"\x37\x7f\x06\x82" + bytes(4092))
    path.unlink()
    with pytest.raises(StoreError, match=f"{path} is missing but its write-ahead log {wal.name} is there"):
        StateStore(path)
    assert not path.exists(), "no new charger made over it"


def test_a_state_dir_that_is_a_file_is_said_so(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.write_text("not a directory")
    with pytest.raises(StoreError, match=f"{state_dir} is a file, not a directory; storage.state_dir"):
        StateStore(state_dir / FILENAME)


def test_a_creation_cut_short_leaves_no_file_and_starts_again(path):
    path.parent.mkdir(parents=True)
    path.with_name(FILENAME + ".new").write_bytes(b"half made")
    with StateStore(path) as s:
        assert s.next_local_id() == 1
    assert not path.with_name(FILENAME + ".new").exists()


def killed_writer(path, *steps: str) -> None:
    """A process that opens the store as ``s``, runs the code ``steps`` and dies without closing:
    a kill or a power cut."""
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from evcp.storage import StateStore
        s = StateStore(Path({str(path)!r}))
    """) + "".join(textwrap.dedent(step) + "\n" for step in steps) + "os._exit(0)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def samples(count: int) -> str:
    """Code for ``count`` meter samples, a reading and its queued MeterValues: what a charging
    session writes most."""
    return textwrap.dedent(f"""
        for n in range({count}):
            s.meter_reading(1, 100.0 + n, 1000.0 + n)
            s.outbox_put("MeterValues", {{"n": n, "padding": "x" * 2000}}, None, checkpoint=False)
    """)


def damaged_copies(path):
    return sorted(path.parent.glob(FILENAME + "-wal.damaged-*"))


def damage(path, how: str) -> bytes:
    """Damage the write-ahead log as a failing SD card does; returns what it held."""
    wal = path.with_name(FILENAME + "-wal")
    original = wal.read_bytes()
    if how == "cut in half":
        wal.write_bytes(original[:len(original) // 2])
    elif how == "garbage":
        wal.write_bytes(os.urandom(max(len(original), 9000)))
    else:
        wal.unlink()
    return original


def queued_facts(s) -> list[str]:
    """The queued messages but the samples (which a damaged log may take or keep)."""
    return [m.action for m in s.outbox_entries() if m.action != "MeterValues"]


START = 's.transaction_started(1, 1, "TAG", 100, 1000.0)\n'
STOP = ('seq = s.outbox_put_stop({"transactionId": 4711, "meterStop": 150, "timestamp": "t", "reason": "Local"}, 1)'
        '\n')

# What a damaged or lost write-ahead log must never take: (what was written, how to see it).
FACTS = {
    "a transaction started": (START, lambda s: [t.local_id for t in s.open_transactions()] == [1]
                              and s.next_local_id() == 2),
    "its transactionId": (START + "s.transaction_confirmed(1, 4711)", lambda s: s.transaction_ids() == {1: 4711}),
    "its StartTransaction queued": (START + 's.outbox_put("StartTransaction", {"connectorId": 1}, 1)',
                                    lambda s: queued_facts(s) == ["StartTransaction"]),
    "its StartTransaction confirmed": (START + 'seq = s.outbox_put("StartTransaction", {}, 1)\n'
                                       "s.outbox_start_confirmed(seq, 1, 4711)",
                                       lambda s: s.transaction_ids() == {1: 4711} and queued_facts(s) == []),
    "its StopTransaction queued": (START + STOP, lambda s: s.open_transactions() == []
                                   and queued_facts(s) == ["StopTransaction"]),
    "its StopTransaction delivered": (START + STOP + "s.outbox_done_through(seq)",
                                      lambda s: s.open_transactions() == [] and queued_facts(s) == []),
    "a 2.0.1 TransactionEvent Started": ('s.outbox_put("TransactionEvent", {"eventType": "Started"}, None)',
                                         lambda s: queued_facts(s) == ["TransactionEvent"]),
    "a configuration key": ('s.save_configuration({"HeartbeatInterval": "90"})',
                            lambda s: s.load_configuration() == {"HeartbeatInterval": "90"}),
    "an availability": ("s.save_availability(1, False)", lambda s: s.load_availability() == {1: False}),
    "a document": ('s.save_document("reservations", [{"id": 7}])',
                   lambda s: s.load_document("reservations") == [{"id": 7}]),
}


@pytest.mark.parametrize("how", ["cut in half", "garbage", "deleted"])
@pytest.mark.parametrize("fact", FACTS)
def test_what_a_damaged_log_must_never_take_is_in_the_main_file(path, fact, how):
    body, present = FACTS[fact]
    killed_writer(path, body, samples(10))
    damage(path, how)
    with StateStore(path) as s:
        assert present(s), f"{fact} survives a write-ahead log {how}"
        assert s.outbox_count() <= 11 and all(m.action != "MeterValues" or m.payload["n"] < 10
                                              for m in s.outbox_entries())


def test_a_log_cut_right_after_a_checkpoint_does_not_take_the_database_back(path):
    # A passive checkpoint leaves its frames in the log until the next write: cut short then,
    # the log's older pages would be read over the main file's newer ones.
    killed_writer(path, samples(200), START)
    damage(path, "cut in half")
    with StateStore(path) as s:
        assert [t.local_id for t in s.open_transactions()] == [1]
        assert s.outbox_count() == 200, "what the checkpoint moved into the main file stays"
        assert s.last_reading(1) == (299.0, 1199.0), "the last reading before it too"


def test_frequent_writes_stay_in_the_log_until_it_grows_past_its_bound(store, frames_in_log, monkeypatch):
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0, "sqlite's passive one is off"
    start(store, 1)
    assert frames_in_log(store) == 0
    written = []
    for write in (lambda: store.meter_reading(1, 150.0, 1010.0),
                  lambda: store.outbox_put("MeterValues", {"n": 1}, 1, checkpoint=False),
                  lambda: store.outbox_update(store.outbox_entries()[0].seq, {"n": 2}, 1),
                  lambda: store.outbox_done_through(store.outbox_entries()[0].seq, checkpoint=False),
                  lambda: store.security_event_put("SettingSystemTime", "t", None, keep=10),
                  lambda: store.save_document("ocpp201-transactions", {}, checkpoint=False)):
        write()
        written.append(frames_in_log(store))
    assert written == sorted(written) and written[0] > 0, f"none checkpointed: {written}"
    monkeypatch.setattr(storage, "CHECKPOINT_WAL_BYTES", 1000)
    store.meter_reading(1, 160.0, 1020.0)
    assert frames_in_log(store) == 0, "a log past its bound is checkpointed, and emptied"


def test_a_write_made_of_several_is_checkpointed_once_after_its_commit(store):
    start(store, 1)
    statements = []
    store._db.set_trace_callback(statements.append)
    store.outbox_put_stop({"transactionId": 1, "meterStop": 1}, 1)
    store._db.set_trace_callback(None)
    statements = [sql for sql in statements if not sql.startswith("PRAGMA busy_timeout")]  # the checkpoint's own
    checkpoints = [n for n, sql in enumerate(statements) if sql.startswith("PRAGMA wal_checkpoint")]
    assert checkpoints == [statements.index("COMMIT") + 1], statements


def test_an_intact_write_ahead_log_after_a_kill_is_no_damage(path, frames_in_log):
    killed_writer(path, START, samples(20))
    with StateStore(path) as s:
        assert s.wal_damage is None and s.take_wal_damage() is None
        assert len(s.open_transactions()) == 1 and s.outbox_count() == 20
        assert frames_in_log(s) == 0, "opening checkpoints what the log held"
    assert damaged_copies(path) == []


def test_a_truncated_write_ahead_log_is_said_and_kept_as_evidence(path, frames_in_log):
    killed_writer(path, START, samples(20))
    wal = path.with_name(FILENAME + "-wal")
    original = wal.read_bytes()
    wal.write_bytes(original[:len(original) // 2 + 100])
    with StateStore(path) as s:
        assert s.wal_damage.startswith(f"{wal.name} has ")
        assert "past its last complete commit, ignored" in s.wal_damage
        assert storage.LOST_WITH_THE_LOG in s.wal_damage, "what is lost is said"
        [copy] = damaged_copies(path)
        assert s.wal_damage.endswith(f"copy kept as {copy.name}")
        assert len(s.wal_damage) <= 255, "whole in a security event's techInfo"
        assert copy.read_bytes() == original[:len(original) // 2 + 100], "the evidence as it was found"
        assert copy.stat().st_mode & 0o077 == 0, "readable by the service alone, like the database"
        assert [t.local_id for t in s.open_transactions()] == [1], "the transaction is never lost"
        assert 0 < s.outbox_count() < 20, "the samples up to the damage are kept"
        assert s.take_wal_damage() == s.wal_damage and s.take_wal_damage() is None, "reported once"
        assert frames_in_log(s) == 0
    with StateStore(path) as s:
        assert s.wal_damage is None, "said once: the opening checkpointed what was kept"


def test_a_garbage_write_ahead_log_is_said_and_kept_as_evidence(path):
    killed_writer(path, START, samples(5))
    wal = path.with_name(FILENAME + "-wal")
    wal.write_bytes(os.urandom(9000))
    with StateStore(path) as s:
        assert s.wal_damage.startswith(f"{wal.name} is not a write-ahead log (no write-ahead log header, "
                                       "9000 bytes), ignored; " + storage.LOST_WITH_THE_LOG)
        assert [t.local_id for t in s.open_transactions()] == [1], "the transaction is never lost"
        assert s.outbox_count() == 0, "the samples since the checkpoint are"
        assert s.next_local_id() == 2, "no local id handed out twice"
    assert len(damaged_copies(path)) == 1


def test_only_the_newest_damaged_copies_are_kept(path):
    for n in range(storage.KEEP_DAMAGED_COPIES + 2):
        killed_writer(path, samples(2))
        path.with_name(FILENAME + "-wal").write_bytes(b"garbage")
        with StateStore(path) as s:
            assert s.wal_damage
    assert len(damaged_copies(path)) == storage.KEEP_DAMAGED_COPIES


# Paging and batches.

def test_outbox_pages_counts_and_deletes_through_a_seq(store):
    seqs = [store.outbox_put("MeterValues", {"n": n}, None) for n in range(10)]
    assert store.outbox_count() == 10
    assert [m.payload["n"] for m in store.outbox_page(seqs[2], 3)] == [3, 4, 5]
    store.outbox_done_through(seqs[4])
    assert store.outbox_count() == 5 and store.outbox_page(0, 1)[0].seq == seqs[5]
    store.outbox_update_many([(seqs[5], {"n": 50}), (seqs[0], {"n": 0})])
    assert store.outbox_page(0, 1)[0].payload == {"n": 50}, "a seq no longer queued is skipped"
    assert store.outbox_count() == 5


def test_the_messages_of_one_action_are_read_a_page_at_a_time_in_order(store):
    for n in range(7):
        store.outbox_put("TransactionEvent" if n % 2 else "MeterValues", {"n": n}, None)
    reader = store.outbox_of("TransactionEvent", page=2)
    assert next(reader).payload == {"n": 1}, "a generator: nothing is read before it is asked for"
    assert [m.payload["n"] for m in reader] == [3, 5]
    assert list(store.outbox_of("StopTransaction")) == []


def test_a_start_confirmation_drops_the_start_and_stores_the_id_in_one_commit(store):
    start(store, 1)
    seq = store.outbox_put("StartTransaction", {"connectorId": 1}, 1)
    later = store.outbox_put("MeterValues", {}, 1)
    store.outbox_start_confirmed(seq, 1, 4711)
    assert store.transaction_ids() == {1: 4711}
    assert [m.seq for m in store.outbox_entries()] == [later]


def test_outbox_newest_of_a_transaction(store):
    assert store.outbox_newest_of(1) is None
    store.outbox_put("StartTransaction", {"n": 1}, 1)
    store.outbox_put("MeterValues", {"n": 2}, 1)
    store.outbox_put("MeterValues", {"n": 3}, 2)
    assert store.outbox_newest_of(1).payload == {"n": 2}
    assert store.outbox_newest_of(2).payload == {"n": 3}


def test_outbox_stops_are_only_the_stops(store):
    start(store, 1)
    store.outbox_put("MeterValues", {}, 1)
    seq = store.outbox_put_stop({"transactionId": None, "meterStop": 1}, 1)
    assert [m.seq for m in store.outbox_stops()] == [seq]


def test_security_events_round_trip_and_bound(path):
    with StateStore(path) as s:
        for n in range(4):
            assert s.security_event_put("SettingSystemTime", f"t{n}", str(n), keep=3) == ([] if n < 3 else [
                storage.StoredSecurityEvent(1, "SettingSystemTime", "t0", "0")])
    with StateStore(path) as s:
        events = s.security_events()
        assert [(e.timestamp, e.tech_info) for e in events] == [("t1", "1"), ("t2", "2"), ("t3", "3")]
        assert s.security_events_count() == 3
        s.security_event_done(events[0].seq)
        assert [e.tech_info for e in s.security_events(limit=1)] == ["2"]


def test_a_reader_in_another_process_never_holds_a_write_up_and_the_checkpoint_comes_later(
        store, path, frames_in_log):
    """An operator's sqlite3 (or a backup) inside a read transaction keeps the log from being
    emptied: the write returns at once, its fact stays durable in the log, and the next write
    after the reader left checkpoints it."""
    import sqlite3
    import time

    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM outbox").fetchone()
    began = time.monotonic()
    start(store, 1)
    assert time.monotonic() - began < 0.5, "sqlite's busy handler would wait 5 s, and the deadman trips at 0.5 s"
    assert frames_in_log(store) > 0, "not checkpointed while the reader stays"
    reader.execute("COMMIT")
    reader.close()
    store.meter_reading(1, 150.0, 1001.0)
    assert frames_in_log(store) == 0, "the checkpoint that was due comes with the next write"
    store.close()
    with StateStore(path) as again:
        assert [row.local_id for row in again.open_transactions()] == [1]


def test_a_checkpoint_that_fails_after_the_commit_loses_no_queued_message(store, monkeypatch, caplog):
    """The message is committed; only its copy into the main file failed: the outbox must not take
    it for unwritten (the next delivery would then delete it unsent)."""
    from evcp.ocpp.outbox import Outbox
    from evcp.storage import StoreError

    real = store._checkpoint
    failures = iter([StoreError("disk I/O error")])

    def failing_once():
        if (error := next(failures, None)) is not None:
            raise error
        real()

    monkeypatch.setattr(store, "_checkpoint", failing_once)
    start(store, 7)
    box = Outbox(store)
    box.put("StopTransaction", {"transactionId": 70, "meterStop": 200, "timestamp": "2026-01-01T00:00:00Z"}, 7)
    box.put("MeterValues", {"connectorId": 1, "meterValue": []}, None)
    assert "checkpoint failed" in caplog.text
    delivered = []
    while (entry := box.head()) is not None:
        delivered.append(entry.action)
        box.done(entry)
    assert delivered == ["StopTransaction", "MeterValues"]
