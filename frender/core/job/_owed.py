"""What the requester owes its jobs, read from their state: the shell's reactions are this query.

Invariants: a reaction is owed exactly while the state waits for it, so work the
core no longer wants (a check voided or un-assigned, anything of an ended job)
is dropped by construction, and a restart owes what the log's fold owes.

- a check COMPARING owes the pair's comparison; JUDGING owes the arbitration's
  comparison with both parties, SUBJECT_JUDGED with the verifier only,
  VERIFIER_JUDGED with the subject only;
- a check OWN owes the requester's own render (it is the verifier), one
  ARBITRATING owes its arbitration render; FRAMING owes the requester's whole
  frame (Rule 19), FRAME_COMPARING its comparison with the subject's;
- a running job that wants more friends and has none joined since owes an ask;
- an ended job owes its report until the shell has settled it with the master;
- a friend caught in a running job owes the master word of it at once (an
  interim report: the eviction and its evidence, nothing paid), so its trust
  is gone farm-wide before the job ends; the closing report names it again.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from attrs import frozen

from frender.core.job._checks import Check
from frender.core.job._job import Job, Requester
from frender.core.job._states import CheckState, Phase
from frender.core.job._words import Against, Purpose
from frender.core.job.events import JobReport

__all__ = ["Owed", "OwedComparison", "OwedEvictions", "OwedFriends", "OwedRender", "OwedReport", "owed"]


@frozen(kw_only=True)
class OwedComparison:
    """Compare copy ``a_sha256`` (the subject's, or the arbitration) with ``b_sha256`` (``b_friend``'s; None: ours)."""

    job: int
    check: int
    frame: int
    against: Against
    a_sha256: str
    b_friend: str | None
    b_sha256: str

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.job, self.check, self.against)


@frozen(kw_only=True)
class OwedRender:
    """Render ``frame`` with the requester's own Blender, for a check (it is the verifier) or an arbitration."""

    job: int
    check: int
    frame: int
    purpose: Purpose

    @property
    def key(self) -> tuple[int, int]:
        return (self.job, self.check)


@frozen(kw_only=True)
class OwedFriends:
    """Ask the master for ``count`` more friends, never those in ``exclude`` (the evicted)."""

    job: int
    count: int
    exclude: tuple[str, ...]

    @property
    def key(self) -> int:
        return self.job


@frozen(kw_only=True)
class OwedReport:
    """Report an ended job (``ended``: finished, cancelled or failed) to the master."""

    job: int
    report: JobReport
    ended: Phase

    @property
    def key(self) -> int:
        return self.job


@frozen(kw_only=True)
class OwedEvictions:
    """Tell the master now that ``friends`` were caught in the running ``job`` (their evidence is in the state)."""

    job: int
    friends: tuple[str, ...]

    @property
    def key(self) -> tuple[int, tuple[str, ...]]:
        return (self.job, self.friends)


@frozen(kw_only=True)
class Owed:
    comparisons: tuple[OwedComparison, ...] = ()
    own_renders: tuple[OwedRender, ...] = ()
    more_friends: tuple[OwedFriends, ...] = ()
    reports: tuple[OwedReport, ...] = ()
    evictions: tuple[OwedEvictions, ...] = ()


_PARTIES = {
    CheckState.JUDGING: (Against.SUBJECT, Against.VERIFIER),
    CheckState.SUBJECT_JUDGED: (Against.VERIFIER,),
    CheckState.VERIFIER_JUDGED: (Against.SUBJECT,),
}


def owed(state: Requester, reported: Container[int] = (), told: Mapping[int, Container[str]] | None = None) -> Owed:
    """Every reaction ``state`` waits for; ``reported``: ended jobs whose report the shell has settled; ``told``: by
    job, the caught friends the master has heard of already."""
    comparisons: list[OwedComparison] = []
    renders: list[OwedRender] = []
    friends: list[OwedFriends] = []
    reports: list[OwedReport] = []
    evictions: list[OwedEvictions] = []
    told = told or {}
    for number, job in state.jobs.items():
        if job.phase != Phase.RUNNING:
            if job.report is not None and number not in reported:
                reports.append(OwedReport(job=number, report=job.report, ended=job.phase))
            continue
        for check in job.checks.by_number.values():
            _owed_by_check(number, check, comparisons, renders)
        if job.wanted:
            friends.append(_more_friends(job))
        caught = tuple(f for f in job.checks.evictions if f not in told.get(number, ()))
        if caught:
            evictions.append(OwedEvictions(job=number, friends=caught))
    return Owed(
        comparisons=tuple(comparisons), own_renders=tuple(renders), more_friends=tuple(friends), reports=tuple(reports), evictions=tuple(evictions)
    )


def _owed_by_check(job: int, c: Check, comparisons: list[OwedComparison], renders: list[OwedRender]) -> None:
    if c.state == CheckState.COMPARING:
        comparisons.append(
            OwedComparison(
                job=job, check=c.check, frame=c.frame, against=Against.PAIR, a_sha256=c.subject_sha256, b_friend=c.verifier,
                b_sha256=c.verifier_sha256,
            )
        )
    elif c.state in _PARTIES:
        for against in _PARTIES[c.state]:
            friend, sha = (c.subject, c.subject_sha256) if against == Against.SUBJECT else (c.verifier, c.verifier_sha256)
            comparisons.append(
                OwedComparison(
                    job=job, check=c.check, frame=c.frame, against=against, a_sha256=c.arbitration_sha256, b_friend=friend, b_sha256=sha
                )
            )
    elif c.state == CheckState.OWN:
        renders.append(OwedRender(job=job, check=c.check, frame=c.frame, purpose=Purpose.CHECK))
    elif c.state == CheckState.ARBITRATING:
        renders.append(OwedRender(job=job, check=c.check, frame=c.frame, purpose=Purpose.ARBITRATION))
    elif c.state == CheckState.FRAMING:
        renders.append(OwedRender(job=job, check=c.check, frame=c.frame, purpose=Purpose.FRAME))
    elif c.state == CheckState.FRAME_COMPARING:
        comparisons.append(
            OwedComparison(
                job=job, check=c.check, frame=c.frame, against=Against.FRAME, a_sha256=c.frame_sha256, b_friend=c.subject,
                b_sha256=c.subject_sha256,
            )
        )


def _more_friends(job: Job) -> OwedFriends:
    """As MoreFriendsWanted asked: as many as the job had, less the evicted, never those (``_machine``)."""
    evicted = tuple(sorted(job.checks.evictions))
    return OwedFriends(job=job.job, count=max(1, len(job.friends) - len(evicted)), exclude=evicted)
