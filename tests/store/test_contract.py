"""One contract, two stores: SQLite and memory detect the same tampering at the same seq."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from frender import codec
from frender.core.master import GrantPoints, PointsGranted, RequesterTrusted
from frender.store import (
    GENESIS,
    ChainBroken,
    Head,
    MemoryLog,
    NotAnEventLog,
    Record,
    SqliteLog,
    Truncated,
    UnknownEvent,
    chain_hash,
    events,
    verify,
)


def grants(n: int) -> list[object]:
    return [PointsGranted(user=f"user{i}", amount=i + 1, reason="test") for i in range(n)]


class SqliteTamper:
    """Edits the SQLite file behind the store's back, as an attacker would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> SqliteLog:
        return SqliteLog(self.path)

    def _sql(self, *statements: tuple[str, tuple]) -> None:
        conn = sqlite3.connect(self.path)
        conn.execute("drop trigger if exists events_no_update")
        conn.execute("drop trigger if exists events_no_delete")
        for sql, args in statements:
            conn.execute(sql, args)
        conn.commit()
        conn.close()

    def rows(self) -> list[Record]:
        return list(self.open().records())

    def replace(self, seq: int, rec: Record) -> None:
        self._sql(
            ("update events set tag=?, body=?, prev_hash=?, hash=? where seq=?", (rec.tag, rec.body, rec.prev_hash, rec.hash, seq))
        )

    def delete(self, seq: int) -> None:
        self._sql(("delete from events where seq=?", (seq,)))

    def renumber(self, rows: list[Record]) -> None:
        self._sql(("delete from events", ()), *[
            ("insert into events values (?,?,?,?,?)", (i + 1, r.tag, r.body, r.prev_hash, r.hash)) for i, r in enumerate(rows)
        ])


class MemoryTamper:
    def __init__(self) -> None:
        self.log = MemoryLog()

    def open(self) -> MemoryLog:
        return self.log

    def rows(self) -> list[Record]:
        return list(self.log.rows)

    def replace(self, seq: int, rec: Record) -> None:
        self.log.rows[seq - 1] = rec

    def delete(self, seq: int) -> None:
        del self.log.rows[seq - 1]

    def renumber(self, rows: list[Record]) -> None:
        self.log.rows[:] = [Record(i + 1, r.tag, r.body, r.prev_hash, r.hash) for i, r in enumerate(rows)]


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    return SqliteTamper(tmp_path / "events.db") if request.param == "sqlite" else MemoryTamper()


def filled(store, n: int = 6):
    log = store.open()
    log.append(grants(n))
    return log


def test_append_read_verify_round_trip(store):
    """What goes in comes out, in order, decoded, with a verifiable chain."""
    log = store.open()
    assert log.head == Head(0, GENESIS)
    head = log.append(grants(3))
    head = log.append([RequesterTrusted(key="k", name="r")])
    assert head.seq == 4 and verify(log) == head
    assert [e for _, e in events(log)] == grants(3) + [RequesterTrusted(key="k", name="r")]
    assert [r.seq for r in log.records(after=2)] == [3, 4]


def test_head_hash_follows_the_rule(store):
    """hash = sha256(prev_hash || tag || body), starting from GENESIS."""
    log = filled(store, 2)
    first, second = log.records()
    assert first.prev_hash == GENESIS and first.hash == chain_hash(GENESIS, first.tag, first.body)
    assert second.prev_hash == first.hash


def test_edited_body_is_found_at_its_seq(store):
    """Changing one row's body (even keeping the hash) is detected at that seq."""
    filled(store)
    rec = store.rows()[3]
    store.replace(4, Record(4, rec.tag, rec.body.replace('"amount":4', '"amount":400'), rec.prev_hash, rec.hash))
    with pytest.raises(ChainBroken) as err:
        verify(store.open())
    assert err.value.seq == 4


def test_rehashed_edit_breaks_the_next_row(store):
    """An edit whose hash is recomputed still breaks the chain at the following seq."""
    filled(store)
    rec = store.rows()[2]
    body = rec.body.replace('"amount":3', '"amount":300')
    store.replace(3, Record(3, rec.tag, body, rec.prev_hash, chain_hash(rec.prev_hash, rec.tag, body)))
    with pytest.raises(ChainBroken) as err:
        verify(store.open())
    assert err.value.seq == 4


@pytest.mark.parametrize("how", ["delete", "insert", "reorder"])
def test_deleted_inserted_reordered_rows_are_found(store, how):
    """Deleting, inserting or swapping rows is detected at the first row out of place."""
    filled(store)
    rows = store.rows()
    if how == "delete":
        store.renumber(rows[:2] + rows[3:])
        bad = 3
    elif how == "insert":
        store.renumber(rows[:2] + [rows[4]] + rows[2:])
        bad = 3
    else:
        store.renumber(rows[:1] + [rows[2], rows[1]] + rows[3:])
        bad = 2
    with pytest.raises(ChainBroken) as err:
        verify(store.open())
    assert err.value.seq == bad


def test_a_gap_in_seq_is_found(store):
    """A row removed without renumbering is named by the seq that is missing."""
    filled(store)
    store.delete(3)
    with pytest.raises(ChainBroken) as err:
        verify(store.open())
    assert err.value.seq == 3


def test_truncated_tail_is_found_only_against_a_held_head(store):
    """Cutting the tail leaves a valid chain; the expected head exposes it."""
    log = filled(store)
    expected = log.head
    rows = store.rows()
    store.renumber(rows[:4])
    shorter = store.open()
    assert verify(shorter).seq == 4
    with pytest.raises(Truncated) as err:
        verify(shorter, expected)
    assert err.value.seq == 5


def test_unknown_tag_names_its_seq(store):
    """An event this build does not know is a clear error at its seq, not a crash."""
    log = filled(store, 2)
    rows = store.rows()
    body = '{"x":1}'
    rec = Record(3, "from_the_future.v9", body, rows[-1].hash, chain_hash(rows[-1].hash, "from_the_future.v9", body))
    store.renumber(rows + [rec])
    log = store.open()
    assert verify(log).seq == 3
    with pytest.raises(UnknownEvent) as err:
        list(events(log))
    assert err.value.seq == 3


def test_sqlite_refuses_other_files(tmp_path):
    """A missing path, a text file and a foreign SQLite database are not event logs."""
    with pytest.raises(NotAnEventLog, match="no such file"):
        SqliteLog(tmp_path / "missing.db", create=False)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"hello, this is not sqlite" * 100)
    with pytest.raises(NotAnEventLog):
        SqliteLog(junk, create=False)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("create table t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotAnEventLog, match="no fRender tables"):
        SqliteLog(other, create=False)


def test_sqlite_log_is_append_only_and_survives_reopen(tmp_path):
    """Rows cannot be updated through SQLite, and a reopened log continues the chain."""
    path = tmp_path / "events.db"
    log = SqliteLog(path)
    log.append(grants(2))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.db.execute("update events set body='{}' where seq=1")
    log.close()
    again = SqliteLog(path)
    again.append(grants(1))
    assert verify(again).seq == 3


def test_batch_is_one_transaction(tmp_path):
    """A batch that fails to encode leaves the log untouched."""
    log = SqliteLog(tmp_path / "events.db")
    log.append(grants(1))
    with pytest.raises(TypeError):
        log.append(grants(2) + [GrantPoints(user="x", key="k-x", amount=1)])  # a command is not an event
    assert log.head.seq == 1 and len(list(log.records())) == 1
    assert codec.tag_of(grants(1)[0]) == "points_granted.v1"


def test_replay_folds_in_one_verified_pass(store):
    """replay hands every event over in order, and stops before the first bad row."""
    from frender.store import replay

    log = filled(store)
    seen: list[object] = []
    assert replay(log, seen.append) == log.head
    assert seen == grants(6)
    rec = store.rows()[3]
    store.replace(4, Record(4, rec.tag, rec.body.replace('"amount":4', '"amount":9'), rec.prev_hash, rec.hash))
    seen.clear()
    with pytest.raises(ChainBroken) as err:
        replay(store.open(), seen.append)
    assert err.value.seq == 4 and seen == grants(3)


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_sync_mode_is_set_on_the_connection_and_the_log_reopens_in_either(tmp_path, sync):
    """Either sync mode keeps the same log; "full" (fsync every commit) is the default."""
    log = SqliteLog(tmp_path / "events.db", sync=sync)
    log.append(grants(3))
    level = log.db.execute("pragma synchronous").fetchone()[0]
    assert level == {"full": 2, "normal": 1}[sync]
    log.close()
    again = SqliteLog(tmp_path / "events.db")
    assert again.db.execute("pragma synchronous").fetchone()[0] == 2
    assert verify(again).seq == 3
    again.close()


def test_unknown_sync_mode_is_refused(tmp_path):
    """A misspelt mode is an error, never a silent fallback."""
    with pytest.raises(ValueError, match="sync must be one of"):
        SqliteLog(tmp_path / "events.db", sync="off")
