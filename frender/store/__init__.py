"""The event log: SQLite for processes, memory for tests; one contract."""

from frender.store._log import (
    GENESIS,
    SYNC_MODES,
    ChainBroken,
    EventLog,
    Head,
    LogError,
    MemoryLog,
    NotAnEventLog,
    Record,
    SqliteLog,
    Truncated,
    UnknownEvent,
    chain_hash,
    events,
    replay,
    verify,
)

__all__ = [
    "GENESIS",
    "SYNC_MODES",
    "ChainBroken",
    "EventLog",
    "Head",
    "LogError",
    "MemoryLog",
    "NotAnEventLog",
    "Record",
    "SqliteLog",
    "Truncated",
    "UnknownEvent",
    "chain_hash",
    "events",
    "replay",
    "verify",
]
