"""When a friend may render: its owner's pause, its schedule, and whether the computer is idle.

Theory of operation. A friend is *available* or *away* for a reason; the
decision is pure (``decide``), from what the friend's shell reads each poll:

Rule 1: a pause (``frender friend pause``) wins over everything: "paused".
Rule 2: with ``--when-idle``, an owner who used the keyboard, or whose other
        programs used the CPU, within the last N minutes makes the friend away
        ("owner active"), and that stops the render at once: the owner is back.
Rule 3: with ``--schedule``, outside every window the friend is away
        ("outside schedule"); the frame in hand is finished first.
Rule 4: an away friend takes no new task; its task in hand is handed back
        (at once, or after the frame in hand: ``Away.now``), and the master is
        told in every heartbeat, so it assigns nothing meanwhile.

A schedule is windows separated by commas, each ``[DAYS ]HH:MM-HH:MM`` in the
computer's local time: ``"mon-fri 19:00-07:00, sat-sun 00:00-24:00"``. DAYS is
one day or a range (``fri-mon`` wraps); none means every day. A window that
ends before it starts runs past midnight and belongs to the day it starts on:
``mon-fri 19:00-07:00`` covers Friday night up to Saturday 07:00 and not
Monday 00:00-07:00.

The shell's side (reading the pause file, sampling psutil) is at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import field, frozen

if TYPE_CHECKING:
    import psutil  # imported when the sensor is made: only --when-idle needs it

__all__ = [
    "AVAILABLE",
    "Away",
    "IdlePolicy",
    "IdleReading",
    "IdleSensor",
    "PAUSE_FILE",
    "STATUS_FILE",
    "Schedule",
    "Window",
    "decide",
    "local_time",
    "read_pause",
    "read_status",
    "STOPPED",
    "write_pause",
    "write_status",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PAUSE_MODES = ("frame", "now")
MAX_WINDOWS = 32


@frozen(kw_only=True)
class Window:
    """Minutes from midnight, on the weekdays (0 = Monday) the window starts on."""

    days: frozenset[int]
    start: int  # 0..1439
    end: int  # 1..1440; <= start: runs past midnight

    def contains(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        day = when.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # Past midnight: the evening part on a listed day, the morning part the day after one.
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)


@frozen(kw_only=True)
class Schedule:
    """When the owner lets the friend render; see the module docstring for the text form."""

    windows: tuple[Window, ...]
    text: str = field(default="", eq=False)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """The schedule ``text`` describes, or ValueError naming the part that is wrong."""
        parts = [part.strip() for part in text.split(",")]
        if not text.strip() or not all(parts):
            raise ValueError(f"schedule {text!r}: give windows like 'mon-fri 19:00-07:00', separated by commas")
        if len(parts) > MAX_WINDOWS:
            raise ValueError(f"schedule {text!r}: at most {MAX_WINDOWS} windows")
        return cls(windows=tuple(_window(part) for part in parts), text=text.strip())

    def contains(self, when: datetime) -> bool:
        return any(window.contains(when) for window in self.windows)


def _window(text: str) -> Window:
    words = text.lower().split()
    if len(words) == 1:
        days, times = frozenset(range(7)), words[0]
    elif len(words) == 2:
        days, times = _days(words[0]), words[1]
    else:
        raise ValueError(f"schedule window {text!r}: want '[DAYS ]HH:MM-HH:MM'")
    first, dash, last = times.partition("-")
    if not dash:
        raise ValueError(f"schedule window {text!r}: want a time range HH:MM-HH:MM")
    start, end = _minute(first, text), _minute(last, text)
    if start == 1440:
        raise ValueError(f"schedule window {text!r}: a window cannot start at 24:00")
    if start == end:
        raise ValueError(f"schedule window {text!r}: the window is empty")
    return Window(days=days, start=start, end=end)


def _days(text: str) -> frozenset[int]:
    first, dash, last = text.partition("-")
    if first not in DAYS or (dash and last not in DAYS):
        raise ValueError(f"schedule days {text!r}: want a day or a range of {', '.join(DAYS)}")
    a = DAYS.index(first)
    b = DAYS.index(last) if dash else a
    return frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))


def _minute(text: str, window: str) -> int:
    hours, colon, minutes = text.partition(":")
    if not (colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and len(hours) <= 2):
        raise ValueError(f"schedule window {window!r}: {text!r} is not HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > 1440:
        raise ValueError(f"schedule window {window!r}: {text!r} is not a time of day")
    return value


@frozen(kw_only=True)
class IdlePolicy:
    """The computer is idle after ``minutes`` with no input and no other program above ``cpu_cores`` of CPU."""

    minutes: float = 5.0
    cpu_cores: float = 0.5  # others' use below this many cores counts as idle


@frozen(kw_only=True)
class IdleReading:
    """What the shell measured: seconds since the owner's last input, and since others last used the CPU."""

    input_age: float
    cpu_age: float


@frozen(kw_only=True)
class Away:
    """Why the friend may not render now ("" = it may), and whether the frame in hand stops too."""

    reason: str = ""
    now: bool = False

    def __bool__(self) -> bool:
        return bool(self.reason)


AVAILABLE = Away()


def decide(
    *,
    pause: str | None,
    when: datetime,
    schedule: Schedule | None = None,
    idle: IdlePolicy | None = None,
    reading: IdleReading | None = None,
) -> Away:
    """Rules 1-3 of the module docstring; ``pause`` is None or a mode of PAUSE_MODES."""
    if pause is not None:
        return Away(reason="paused", now=pause == "now")
    if idle is not None:
        quiet = idle.minutes * 60
        if reading is None or reading.input_age < quiet or reading.cpu_age < quiet:
            return Away(reason="owner active", now=True)
    if schedule is not None and not schedule.contains(when):
        return Away(reason="outside schedule", now=False)
    return AVAILABLE


# ------------------------------------------------------------------ the shell's side

PAUSE_FILE = "pause"  # in the friend's home, 0600: present = paused; holds the mode
STATUS_FILE = "status"  # in the friend's home: one line the running friend keeps current, then "pid N"
STOPPED = "stopped"  # what the status says once the friend has stopped (or its process is gone)


def read_pause(home: Path) -> str | None:
    """The pause mode asked for in ``home`` (None: not paused); an unreadable mode counts as "frame"."""
    try:
        text = (home / PAUSE_FILE).read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    return text if text in PAUSE_MODES else "frame"


def write_pause(home: Path, mode: str | None) -> None:
    """Pause (``mode`` "frame" or "now") or resume (None) the friend whose home is ``home``."""
    path = home / PAUSE_FILE
    if mode is None:
        path.unlink(missing_ok=True)
        return
    if mode not in PAUSE_MODES:
        raise ValueError(f"pause mode is one of {PAUSE_MODES}, not {mode!r}")
    _write_private(path, mode + "\n")


def write_status(home: Path, line: str | None) -> None:
    """The running friend's one-line status, with its process id (None: removed).

    A friend on its way out (Ctrl-C, SIGTERM) writes ``STOPPED``; one that
    was killed leaves its last line, which ``read_status`` reads as stopped
    once that process is gone.
    """
    if line is None:
        (home / STATUS_FILE).unlink(missing_ok=True)
    elif line == STOPPED:
        _write_private(home / STATUS_FILE, line + "\n")
    else:
        _write_private(home / STATUS_FILE, f"{line}\npid {os.getpid()}\n")


def read_status(home: Path) -> str | None:
    """What the friend in ``home`` says (None: no friend ever ran there); ``STOPPED`` once its process is gone."""
    try:
        line, _, rest = (home / STATUS_FILE).read_text(errors="replace").strip().partition("\n")
    except FileNotFoundError:
        return None
    pid = rest.strip().removeprefix("pid ")
    return STOPPED if pid.isdigit() and not _running(int(pid)) else line


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process holds that number: not ours, but running
        return True
    return True


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` whole (through a rename), readable and writable by this user only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class IdleSensor:
    """Reads the owner's activity with psutil: terminals' last input, and CPU time not this process tree's.

    Input is read from the access time of each logged-in user's terminal
    (what ``w`` shows as IDLE), so a graphical session without a terminal is
    seen through its CPU use only. Others' CPU is the machine's busy time minus
    this process's and its children's (Blender's), between two readings.
    """

    def __init__(self, policy: IdlePolicy, clock: Callable[[], float] = time.time, *, window: float = 1.0) -> None:
        """``window``: the shortest span CPU use is judged over; the kernel counts busy time in
        ticks (10 ms), so a span of microseconds would read as hundreds of cores busy."""
        import psutil

        self.psutil = psutil
        self.policy = policy
        self.clock = clock
        self.me = psutil.Process()
        self.started = clock()
        self.window = window
        self.cpu_busy_at = self.started  # the owner counts as active until N quiet minutes pass
        self.last = self._cpu_sample()

    def read(self) -> IdleReading:
        now = self.clock()
        sample = self._cpu_sample()
        (t0, busy0, mine0), (t1, busy1, mine1) = self.last, sample
        elapsed = t1 - t0
        if elapsed >= self.window:  # shorter spans are judged with the next reading
            self.last = sample
            if (busy1 - busy0) - (mine1 - mine0) > self.policy.cpu_cores * elapsed:
                self.cpu_busy_at = now
        return IdleReading(input_age=now - self._last_input(now), cpu_age=now - self.cpu_busy_at)

    def _cpu_sample(self) -> tuple[float, float, float]:
        times = self.psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        mine = 0.0
        for proc in [self.me, *self._children()]:
            try:
                t = proc.cpu_times()
                mine += t.user + t.system + t.children_user + t.children_system
            except self.psutil.Error:
                pass
        return time.monotonic(), busy, mine

    def _children(self) -> list[psutil.Process]:
        try:
            return self.me.children(recursive=True)
        except self.psutil.Error:
            return []

    def _last_input(self, now: float) -> float:
        latest = self.started
        for user in self.psutil.users():
            if not user.terminal:
                continue
            try:
                latest = max(latest, os.stat(f"/dev/{user.terminal}").st_atime)
            except OSError:
                continue
        return min(latest, now)


def local_time(clock_reading: float) -> datetime:
    """The local wall-clock time of a ``time.time()`` reading, for schedules."""
    return datetime.fromtimestamp(clock_reading)

