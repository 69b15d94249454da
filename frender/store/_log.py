"""The append-only, hash-chained event log.

Theory of operation:

Rule 1: a row is ``(seq, tag, body, prev_hash, hash)`` with seq counting from 1,
``body`` the canonical JSON of the event and
``hash = sha256(prev_hash || tag || "\\n" || body)`` over the raw 32-byte
previous hash (32 zero bytes before the first row). Any edit, deletion,
insertion or reordering changes a hash, so ``verify`` names the first bad seq.
Rule 2: truncating the tail leaves a valid shorter chain; only a head hash held
elsewhere (the master keeps each requester's reported head) can tell. Hence
``verify(expected=...)``.
Rule 3: a batch is appended in one transaction, committed before ``append``
returns: callers act on events only after this.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import sqlite_utils
from attrs import frozen

from frender import codec

__all__ = [
    "GENESIS",
    "SYNC_MODES",
    "Head",
    "Record",
    "EventLog",
    "MemoryLog",
    "SqliteLog",
    "LogError",
    "LogFailed",
    "ChainBroken",
    "Truncated",
    "NotAnEventLog",
    "UnknownEvent",
    "chain_hash",
    "events",
    "replay",
    "verify",
]

GENESIS = "0" * 64
_FORMAT = "frender-events"
_VERSION = "1"


@frozen
class Head:
    """Where a log ends: the last seq and its hash (seq 0 for an empty log)."""

    seq: int
    hash: str


@frozen
class Record:
    seq: int
    tag: str
    body: str
    prev_hash: str
    hash: str

    def event(self) -> object:
        """The decoded event; UnknownEvent if this build lacks its tag."""
        try:
            return codec.from_json(self.tag, self.body)
        except codec.UnknownTag:
            raise UnknownEvent(self.seq, self.tag) from None
        except codec.DecodeError as exc:
            raise ChainBroken(self.seq, str(exc)) from None


class LogError(Exception):
    """The log cannot be trusted or read; ``seq`` is the first bad row if known."""

    seq: int | None = None


class LogFailed(Exception):
    """An append failed. The process that owns the log stops: its memory may hold events the log
    does not, and a restart replays the log, which holds everything anyone was told."""


class ChainBroken(LogError):
    def __init__(self, seq: int, why: str) -> None:
        super().__init__(f"event log broken at seq {seq}: {why}")
        self.seq = seq


class Truncated(LogError):
    def __init__(self, have: Head, expected: Head) -> None:
        super().__init__(
            f"event log ends at seq {have.seq} but seq {expected.seq} was expected "
            f"(hash {expected.hash[:12]}…): its tail was cut"
        )
        self.seq = have.seq + 1


class NotAnEventLog(LogError):
    def __init__(self, path: object, why: str) -> None:
        super().__init__(f"{path} is not an fRender event log: {why}")


class UnknownEvent(LogError):
    def __init__(self, seq: int, tag: str) -> None:
        super().__init__(f"unknown event {tag!r} at seq {seq} (written by a newer fRender?)")
        self.seq = seq


def chain_hash(prev_hash: str, tag: str, body: str) -> str:
    h = hashlib.sha256(bytes.fromhex(prev_hash))
    h.update(tag.encode())
    h.update(b"\n")
    h.update(body.encode())
    return h.hexdigest()


class EventLog(Protocol):
    """The contract both stores keep (tests/store run against each)."""

    @property
    def head(self) -> Head: ...

    def append(self, events: Sequence[object]) -> Head: ...

    def records(self, after: int = 0) -> Iterator[Record]: ...

    def close(self) -> None: ...


def _encode(head: Head, events: Iterable[object]) -> list[Record]:
    rows = []
    seq, prev = head.seq, head.hash
    for event in events:
        tag, body = codec.tag_of(event), codec.to_json(event)
        seq += 1
        digest = chain_hash(prev, tag, body)
        rows.append(Record(seq, tag, body, prev, digest))
        prev = digest
    return rows


def verify(log: EventLog, expected: Head | None = None) -> Head:
    """Walk the chain; return its head or raise at the first bad seq."""
    return _walk(log, expected, None)


def replay(log: EventLog, apply: Callable[[object], object], expected: Head | None = None) -> Head:
    """Verify the chain and hand each decoded event to ``apply`` in one pass; return the head.

    A bad row raises before its event is applied, so ``apply`` only ever sees
    a verified prefix of the log.
    """
    return _walk(log, expected, apply)


def _walk(log: EventLog, expected: Head | None, apply: Callable[[object], object] | None) -> Head:
    prev, seq = GENESIS, 0
    for rec in log.records():
        seq += 1
        if rec.seq != seq:
            raise ChainBroken(seq, f"row seq {rec.seq} where seq {seq} belongs (a row was deleted or inserted)")
        if rec.prev_hash != prev:
            raise ChainBroken(seq, "prev_hash does not match the previous row (rows deleted, inserted or reordered)")
        if chain_hash(prev, rec.tag, rec.body) != rec.hash:
            raise ChainBroken(seq, "hash does not match the row's content (the row was edited)")
        if apply is not None:
            apply(rec.event())
        prev = rec.hash
    have = Head(seq, prev)
    if expected is not None and have != expected:
        if expected.seq > have.seq:
            raise Truncated(have, expected)
        raise ChainBroken(min(expected.seq, have.seq) or 1, "head differs from the expected head hash")
    return have


def events(log: EventLog, after: int = 0) -> Iterator[tuple[int, object]]:
    """(seq, event) pairs in order, decoded."""
    for rec in log.records(after):
        yield rec.seq, rec.event()


class MemoryLog:
    """An in-memory log with the same contract, for tests and simulations."""

    def __init__(self) -> None:
        self.rows: list[Record] = []

    @property
    def head(self) -> Head:
        return Head(self.rows[-1].seq, self.rows[-1].hash) if self.rows else Head(0, GENESIS)

    def append(self, events: Sequence[object]) -> Head:
        self.rows.extend(_encode(self.head, events))
        return self.head

    def records(self, after: int = 0) -> Iterator[Record]:
        return iter(self.rows[after:] if after >= 0 else self.rows)

    def close(self) -> None:
        pass


SYNC_MODES = ("full", "normal")


class SqliteLog:
    """The log in one SQLite file (WAL mode), via sqlite-utils.

    ``sync`` says what a commit survives. "full" (the default): every commit is
    fsynced before ``append`` returns, so an acknowledged event survives a
    power cut or an OS crash. "normal": commits are written to the WAL but
    fsynced only at checkpoints, about 10 times cheaper here (0.1 against
    0.5-5 ms); they survive the process crashing or being killed, but the
    last ones before a power cut or an OS crash can be lost, even though
    their answers were sent. The chain stays valid either way (a lost tail
    is a shorter valid log).
    """

    def __init__(self, path: str | Path, *, create: bool = True, sync: str = "full") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, not {sync!r}")
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise NotAnEventLog(self.path, "no such file")
        try:
            self.db = sqlite_utils.Database(self.path)
            tables = set(self.db.table_names())
        except Exception as exc:  # sqlite3.DatabaseError: "file is not a database"
            raise NotAnEventLog(self.path, str(exc)) from None
        if not tables and create:
            self._create()
        elif "meta" not in tables or "events" not in tables:
            raise NotAnEventLog(self.path, "no fRender tables")
        meta = dict(self.db.execute("select key, value from meta").fetchall())
        if meta.get("format") != _FORMAT:
            raise NotAnEventLog(self.path, "no fRender format marker")
        if meta.get("version") != _VERSION:
            raise NotAnEventLog(self.path, f"format version {meta.get('version')!r}, this build reads {_VERSION}")
        self.db.enable_wal()
        self.db.execute(f"pragma synchronous={sync.upper()}")
        row = self.db.execute("select seq, hash from events order by seq desc limit 1").fetchone()
        self._head = Head(row[0], row[1]) if row else Head(0, GENESIS)

    def _create(self) -> None:
        self.db.table("meta").create({"key": str, "value": str}, pk="key")
        self.db.table("meta").insert_all([{"key": "format", "value": _FORMAT}, {"key": "version", "value": _VERSION}])
        self.db.table("events").create(
            {"seq": int, "tag": str, "body": str, "prev_hash": str, "hash": str}, pk="seq", not_null={"tag", "body", "prev_hash", "hash"}
        )
        # Append-only by construction: the store never updates or deletes.
        self.db.execute("create trigger events_no_update before update on events begin select raise(abort, 'append-only'); end")
        self.db.execute("create trigger events_no_delete before delete on events begin select raise(abort, 'append-only'); end")

    @property
    def head(self) -> Head:
        return self._head

    def append(self, events: Sequence[object]) -> Head:
        rows = _encode(self._head, events)
        if not rows:
            return self._head
        conn = self.db.conn
        with conn:  # one transaction
            conn.executemany(
                "insert into events (seq, tag, body, prev_hash, hash) values (?, ?, ?, ?, ?)",
                [(r.seq, r.tag, r.body, r.prev_hash, r.hash) for r in rows],
            )
        self._head = Head(rows[-1].seq, rows[-1].hash)
        return self._head

    def records(self, after: int = 0) -> Iterator[Record]:
        cursor = self.db.conn.execute(
            "select seq, tag, body, prev_hash, hash from events where seq > ? order by seq", (after,)
        )
        for row in cursor:
            yield Record(*row)

    def close(self) -> None:
        self.db.conn.close()
