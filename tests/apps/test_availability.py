"""The friend's availability policy: schedules, idleness and pauses, as tables."""

from __future__ import annotations

import re
import stat
from datetime import datetime

import psutil
import pytest

from frender.apps.availability import (
    AVAILABLE,
    Away,
    IdlePolicy,
    IdleReading,
    IdleSensor,
    Schedule,
    decide,
    read_pause,
    read_status,
    write_pause,
    write_status,
)

# 2026-11-30 is a Monday.
MON, FRI, SAT, SUN = 30, 4, 5, 6


def at(day: int, hhmm: str) -> datetime:
    month = 11 if day == MON else 12
    hours, minutes = hhmm.split(":")
    return datetime(2026, month, day, int(hours), int(minutes))


@pytest.mark.parametrize(
    ("schedule", "when", "inside"),
    [
        ("mon-fri 19:00-07:00", at(MON, "19:00"), True),
        ("mon-fri 19:00-07:00", at(MON, "18:59"), False),
        ("mon-fri 19:00-07:00", at(MON, "06:59"), False),  # Sunday night is not in mon-fri
        ("mon-fri 19:00-07:00", at(FRI, "23:30"), True),
        ("mon-fri 19:00-07:00", at(SAT, "06:59"), True),  # Friday's night runs into Saturday
        ("mon-fri 19:00-07:00", at(SAT, "07:00"), False),  # the end is excluded
        ("mon-fri 19:00-07:00", at(SAT, "20:00"), False),
        ("09:00-17:00", at(SUN, "12:00"), True),  # no days: every day
        ("09:00-17:00", at(SUN, "17:00"), False),
        ("sat 00:00-24:00", at(SAT, "23:59"), True),
        ("sat 00:00-24:00", at(SUN, "00:00"), False),
        ("fri-mon 12:00-13:00", at(SUN, "12:30"), True),  # a day range that wraps the week
        ("fri-mon 12:00-13:00", at(MON, "12:30"), True),
        ("mon-fri 19:00-07:00, sat-sun 00:00-24:00", at(SUN, "10:00"), True),
        ("mon-fri 19:00-07:00, sat-sun 00:00-24:00", at(MON, "06:00"), False),  # Sunday's window ends at midnight
        ("sat-sun 00:00-24:00", at(MON, "00:00"), False),
    ],
)
def test_schedule_windows(schedule, when, inside):
    """A schedule contains exactly the minutes its windows name, overnight windows belonging to their first day."""
    assert Schedule.parse(schedule).contains(when) is inside


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "give windows"),
        ("mon-fri", "HH:MM"),
        ("mon-fry 19:00-07:00", "days"),
        ("mon-fri 19:00", "time range"),
        ("mon 25:00-26:00", "not a time of day"),
        ("mon 10:60-11:00", "not a time of day"),
        ("mon 7-9", "not HH:MM"),
        ("mon 10:00-10:00", "empty"),
        ("mon 24:00-01:00", "cannot start at 24:00"),
        ("mon-fri 19:00-07:00,", "give windows"),
        ("mon fri 19:00-07:00", "want '[DAYS ]HH:MM-HH:MM'"),
        (", ".join(["09:00-10:00"] * 33), "at most 32"),
    ],
)
def test_schedule_refuses_bad_text(text, complaint):
    """A malformed schedule is a ValueError that quotes what is wrong."""
    with pytest.raises(ValueError, match=re.escape(complaint)):
        Schedule.parse(text)


QUIET = IdleReading(input_age=600, cpu_age=600)
TYPING = IdleReading(input_age=3, cpu_age=600)
COMPILING = IdleReading(input_age=600, cpu_age=1)
NIGHTS = Schedule.parse("mon-fri 19:00-07:00")
IDLE = IdlePolicy(minutes=5)


@pytest.mark.parametrize(
    ("pause", "when", "schedule", "idle", "reading", "expected"),
    [
        (None, at(MON, "12:00"), None, None, None, AVAILABLE),
        ("frame", at(MON, "12:00"), None, None, None, Away(reason="paused", now=False)),
        ("now", at(MON, "12:00"), None, None, None, Away(reason="paused", now=True)),
        ("frame", at(MON, "20:00"), NIGHTS, IDLE, QUIET, Away(reason="paused", now=False)),  # a pause wins
        (None, at(MON, "12:00"), NIGHTS, None, None, Away(reason="outside schedule", now=False)),
        (None, at(MON, "20:00"), NIGHTS, None, None, AVAILABLE),
        (None, at(MON, "12:00"), None, IDLE, QUIET, AVAILABLE),
        (None, at(MON, "12:00"), None, IDLE, TYPING, Away(reason="owner active", now=True)),
        (None, at(MON, "12:00"), None, IDLE, COMPILING, Away(reason="owner active", now=True)),
        (None, at(MON, "12:00"), None, IDLE, None, Away(reason="owner active", now=True)),  # not measured yet
        (None, at(MON, "12:00"), None, IDLE, IdleReading(input_age=300, cpu_age=300), AVAILABLE),  # exactly N minutes
        (None, at(MON, "20:00"), NIGHTS, IDLE, TYPING, Away(reason="owner active", now=True)),
        (None, at(MON, "12:00"), NIGHTS, IDLE, QUIET, Away(reason="outside schedule", now=False)),
    ],
)
def test_decide(pause, when, schedule, idle, reading, expected):
    """Pause beats idleness beats the schedule; only a returning owner or a pause --now stops the frame in hand."""
    assert decide(pause=pause, when=when, schedule=schedule, idle=idle, reading=reading) == expected


def test_pause_file_is_private_and_round_trips(tmp_path):
    """pause writes its mode in a 0600 file; resume removes it; junk in it reads as a plain pause."""
    assert read_pause(tmp_path) is None
    write_pause(tmp_path, "now")
    assert read_pause(tmp_path) == "now"
    assert stat.S_IMODE((tmp_path / "pause").stat().st_mode) == 0o600
    (tmp_path / "pause").write_text("whatever\n")
    assert read_pause(tmp_path) == "frame"
    write_pause(tmp_path, None)
    assert read_pause(tmp_path) is None
    with pytest.raises(ValueError):
        write_pause(tmp_path, "later")
    write_status(tmp_path, "paused")
    assert read_status(tmp_path) == "paused"
    write_status(tmp_path, None)
    assert read_status(tmp_path) is None


def test_idle_sensor_reads_ages_since_its_start():
    """With nothing measured yet the owner counts as active since the sensor started; others' CPU use is judged over
    spans of at least the sensor's window (a span of microseconds is not read as the machine being busy), and more
    cores than allowed over such a span makes the owner active."""
    now = [1000.0]
    sensor = IdleSensor(IdlePolicy(minutes=1, cpu_cores=len(psutil.cpu_percent(percpu=True)) + 1.0), clock=lambda: now[0])
    now[0] += 120
    reading = sensor.read()
    assert 0 <= reading.input_age <= 120
    assert reading.cpu_age == 120  # nobody can use more cores than the machine has
    # Others' CPU from given samples (monotonic seconds, the machine's busy CPU-seconds, ours): the kernel's real
    # counters move in ticks, and what this test process itself spends between two reads would make them flaky.
    judged = IdleSensor(IdlePolicy(minutes=1, cpu_cores=0.5), clock=lambda: now[0], window=1.0)
    samples = iter([(10.5, 100.2, 1.0), (12.0, 102.5, 1.5)])
    judged.last = (10.0, 100.0, 1.0)
    judged._cpu_sample = lambda: next(samples)
    now[0] += 5
    assert judged.read().cpu_age == 5  # 0.5 s is shorter than the window: judged with the next reading
    assert judged.read().cpu_age == 0  # 2 s in which others used 2.0 CPU-seconds: one core, over the 0.5 allowed
