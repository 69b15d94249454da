"""One vocabulary for people: job states, friend standing, why a job waits, and time left.

`frender jobs`, `frender status`, `frender friend status`, `frender replay`
and both dashboards say these words and no others, so what the terminal says
and what a page says about the same moment agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from frender.core.profile import RenderProfile

if TYPE_CHECKING:
    from frender.apps.requester_messages import Recall

__all__ = [
    "JOB_STATES",
    "WAITING_CAUSES",
    "duration",
    "failure_text",
    "friend_state",
    "job_state",
    "master_job_state",
    "recall_text",
    "recalled_text",
    "replaced_text",
    "short_profile",
    "standing",
    "time_left",
    "time_left_text",
    "waiting_cause",
    "waiting_text",
]

JOB_STATES = ("waiting", "running", "finished", "cancelled", "failed")

# The master's machine-readable cause when it grants a job no friend (the part after "no-friends:" in its
# refusal's code), and what people read. "balance" comes from the master's "short-balance" refusal.
WAITING_CAUSES = {
    "paused": "its friends are paused by their owners",
    "schedule": "its friends are outside their schedules",
    "away": "no friend that can render it is live (they are away or stopped)",
    "busy": "every friend that can render it is busy with other jobs",
    "priority": "the free friends are kept for waiting jobs of a higher priority",
    "blender": "no friend holds the job's Blender",
    "class": "no friend of the job's agreement class (device and CPU kernels) is registered",
    "probation": "no friend is trusted yet for it: probationary friends alone never fill a job while trusted ones are live",
    "refused": "the friends that could render it decline the submitter",
    "balance": "the artist's balance cannot pay for more friends",
}


def job_state(*, finished: bool, cancelled: bool = False, failed: bool = False, active: int = 0) -> str:
    """One of JOB_STATES: over (finished, cancelled or failed), else running while a friend renders, else waiting."""
    if cancelled:
        return "cancelled"
    if failed:
        return "failed"
    if finished:
        return "finished"
    return "running" if active else "waiting"


def master_job_state(*, closed: bool, outcome: str, friends: int) -> str:
    """A job's state as the master knows it: its report's outcome once closed ("over" for a log from before
    outcomes were reported), else running while it holds friends, else waiting."""
    if closed:
        return outcome if outcome in JOB_STATES else "over"
    return "running" if friends > 0 else "waiting"


def friend_state(*, live: bool, away: str, busy: bool, job: int | None) -> str:
    """A friend as the master sees it: "away" (no heartbeat lately), its away reason ("paused", "outside schedule"),
    "job J", "busy" or "available"."""
    if not live:
        return "away"
    return away or (f"job {job}" if job is not None else "busy" if busy else "available")


def standing(reputation: int, threshold: int) -> str:
    """A friend's standing at the master: "trusted" or "probation", with the count behind it ("probation 1/3")."""
    word = "trusted" if threshold > 0 and reputation >= threshold else "probation"
    return f"{word} {reputation}/{threshold}" if threshold > 0 else word


def waiting_cause(code: str) -> str:
    """The cause word in the master's refusal code ("no-friends:paused" -> "paused", "short-balance" -> "balance");
    "" when it names none (an older master's plain "no-friends")."""
    if code == "short-balance":
        return "balance"
    kind, _, cause = code.partition(":")
    return cause if kind == "no-friends" else ""


def waiting_text(cause: str, detail: str = "") -> str:
    """Why a job has no friend, in words; an unknown cause (a newer master) falls back to the master's own reason."""
    words = WAITING_CAUSES.get(cause)
    if words is None:
        return f"waiting: {detail}" if detail else "waiting for friends"
    return f"waiting: {words}"


def failure_text(cause: str, error: str) -> str:
    """Why a job failed, for people: its file cannot render ("render", the friends' error), or no friend could go on
    with it and the master granted none that could in time ("starved", the requester's reason)."""
    if cause == "starved":
        return f"no friend could go on with it: {error}"
    return f"its file cannot render on the friends: {error}"


def recall_text(frame: int, *, rendered: bool) -> str:
    """Why a final frame was withdrawn (unravelling): the friend that rendered it, or one that vouched for it, was caught."""
    if rendered:
        return f"frame {frame} was recalled: the friend that rendered it was caught forging; it is being rendered again"
    return f"frame {frame} was recalled: a friend that vouched for it was caught forging; it is being checked again"


def recalled_text(recalls: Iterable[Recall]) -> str:
    """The frames withdrawn and not final again, on one line ("" when none): what a progress view adds."""
    frames = tuple(sorted(r.frame for r in recalls if not r.final))
    if not frames:
        return ""
    listed = ", ".join(str(n) for n in frames[:12]) + (f" and {len(frames) - 12} more" if len(frames) > 12 else "")
    return f"recalled: frame{'s' if len(frames) > 1 else ''} {listed} (a friend they rested on was caught forging); being verified again"


def replaced_text(frame: int, path: str) -> str:
    """A recalled frame, final again, written in place of the copy withdrawn."""
    return f"frame {frame} is final again, verified anew: written to {path}"


def duration(seconds: float) -> str:
    """"42s", "5m49s", "2h05m"; "?" for a negative (unknown) time."""
    if seconds < 0:
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def time_left(elapsed: float, done: int, total: int) -> float:
    """Seconds left at the pace so far (``done`` of ``total`` frames final in ``elapsed`` s); -1 while not known.

    The one estimate: `frender jobs` and the job's page both show it.
    """
    if done >= total:
        return 0.0
    if done <= 0 or elapsed <= 0:
        return -1.0
    return elapsed / done * (total - done)


def time_left_text(eta: float) -> str:
    """The estimate for people: "about 5m49s left", or that it is not known yet."""
    if eta < 0:
        return "time left: not known until a frame is final"
    return f"about {duration(eta)} left"


def short_profile(profile: RenderProfile) -> str:
    """A profile on one short line: Blender version, device and class ("5.0.1 CPU x86_64-avx2")."""
    cls = profile.agreement[:16] if profile.agreement else profile.cpu_class
    return f"{profile.blender_version} {profile.device} {cls}"
