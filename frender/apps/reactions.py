"""The requester's reactions: what its core owes (``core.owed``), the master's calls, and its timers.

- a comparison owed    -> compare two stored copies (``OwnRenders``) -> RecordComparison
- an own render owed   -> render the frame with our own Blender -> RecordOwnRender
- more friends wanted  -> ask the master -> AddFriends (a job none comes to in time fails: the core's Rule 18)
- an ended job         -> report to the master until it acknowledges (or refuses for good)
- an opening never accepted -> released at the master
- a job short of the friends it asked for grows (``grow_forever``); deadlines and silent friends tick.

A reaction that fails is retried after a jittered backoff that doubles up to
``retry_max``; one whose item is still owed after its worker ran has failed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any, Callable, TypeVar

import trio

from frender.apps import messages as msg
from frender.apps.requester_events import (
    EvictionsReported,
    FriendKeys,
    JobOpening,
    JobOpeningReleased,
    ReportDelivered,
    ReportRefused,
)
from frender.apps.requester_room import Result, Room
from frender.core import job as core
from frender.transports import (
    PeerGone,
    Refused,
    RemoteError,
)

# What a master's refusal may say that asking again can cure: it failed, and restarts from its log.
_TRANSIENT = frozenset({"internal"})
# Failures of an AskFriends after which the master may have opened the job: its opening is released to be sure.
_UNSETTLED = _TRANSIENT | {"master-unreachable"}

log = logging.getLogger("frender.requester")
R = TypeVar("R")


class Reactions(Room):
    """Reacting to what the core owes, and talking to the master (a part of ``RequesterNode``)."""

    async def _ask_master(self, request: msg.Asks[R], *, retry: bool = True) -> R:
        """One call to the master over the link; with ``retry``, until it answers (it may be restarting), backing off.

        A refusal is the master's answer and is raised as Refused, except
        "internal" (the master failed and restarts from its log), which is
        retried like a lost link.
        """
        failures = 0
        while True:
            try:
                with trio.fail_after(30):
                    reply = await self.master_link.call(request)
                self.master_problem = ""
                return reply
            except RemoteError as exc:
                if not retry or exc.code not in _TRANSIENT:
                    raise Refused(exc.code, exc.reason) from None
                why = f"{exc.code}: {exc.reason}"
            except (PeerGone, OSError, trio.TooSlowError) as exc:
                if not retry:
                    raise Refused("master-unreachable", f"the master does not answer: {exc}") from None
                why = str(exc) or type(exc).__name__
            failures += 1
            delay = self._backoff(failures)
            log.warning("master %s unreachable (%s); retrying in %.1f s", self.master, why, delay)
            self.master_problem = f"the master does not answer ({why}); retrying every {delay:.0f} s, the job goes on meanwhile"
            self._changed.set()
            self._changed: trio.Event = trio.Event()  # annotated: mypy cannot infer a Room attribute read before it is set here
            await trio.sleep(delay)

    async def react_forever(self, nursery: trio.Nursery) -> None:
        """Start a worker for every reaction owed (``owed``), now and whenever more are owed."""
        workers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "comparisons": self._compare,
            "own_renders": self._own_render,
            "more_friends": self._more_friends,
            "reports": self._report,
            "openings": self._release_opening,
            "evictions": self._report_evictions,
            "prerenders": self._prerender,
        }
        while True:
            self.wake = trio.Event()
            owed = self.owed
            for kind, worker in workers.items():
                for key, item in getattr(owed, kind).items():
                    if kind != "openings" or key not in self._opening_now:
                        self._start(nursery, kind, key, worker, item)
            await self.wake.wait()

    def _owes(self, kind: str, key: object) -> object | None:
        """The reaction of ``kind`` owed under ``key`` now, or None."""
        owed: Mapping[Any, object] = self._prerenders_owed() if kind == "prerenders" else getattr(self.owed_now(prerenders=False), kind)
        return owed.get(key)

    def _start(self, nursery: trio.Nursery, kind: str, key: object, worker: Callable[[Any], Awaitable[None]], item: object) -> None:
        """Run ``worker(item)`` unless it runs already; one that ends with its item still owed failed:
        its slot is held through a backoff, so a failing reaction is retried slowly, never in a loop."""
        slot = (kind, key)
        if slot in self._in_flight:
            return
        self._in_flight.add(slot)

        async def run() -> None:
            try:
                await worker(item)
                if self._owes(kind, key) == item:
                    failures = self._failures[slot] = self._failures.get(slot, 0) + 1
                    await trio.sleep(self._backoff(failures))
                else:
                    self._failures.pop(slot, None)
            finally:
                self._in_flight.discard(slot)
                self.wake.set()

        nursery.start_soon(run)

    async def _settle(self, kind: str, item: object, command: Result, *more: object) -> None:
        """Apply the result of the reaction owed as ``item``. The core refuses a stale one (its check moved on
        meanwhile): that item is no longer owed here (after a restart it may run once more, and is refused again).
        Only that item: what is owed later under the same key (the check's new copies, after its checker was caught
        and replaced) is another item, and runs (dropping the key left such a check comparing for ever)."""
        try:
            await self.apply(command, *more)
        except Refused as exc:
            log.info("job %d: %s not applied: %s", command.job, type(command).__name__, exc)
            self._dropped.add((kind, item))

    async def _release_opening(self, event: JobOpening) -> None:
        """Close, unpaid, whatever job the master opened for an opening that never became a job here."""
        head = self.log.head
        try:
            released = await self._ask_master(msg.ReleaseOpening(opening=event.opening, head_seq=head.seq, head_hash=head.hash))
        except Refused as exc:  # owed still: asked again after a backoff
            log.error("the opening for %s's job was not released: %s", event.submitter, exc)
            return
        await self.apply(JobOpeningReleased(opening=event.opening, job=released.job))
        if released.job is not None:
            log.warning("job %d was opened at the master but never accepted here: closed, its points refunded", released.job)

    async def _more_friends(self, event: core.OwedFriends) -> None:
        accepted = self.jobs[event.job]
        failures = 0
        while self._owes("more_friends", event.job) is not None:
            try:
                granted = await self._ask_master(
                    msg.AskFriends(
                        job=event.job,
                        submitter=accepted.submitter,
                        submitter_key=accepted.submitter_key,
                        frames=core.frame_count(self.state, event.job),
                        want=event.count,
                        profile=accepted.profile,
                        exclude=event.exclude,
                        blend_sha256=accepted.blend_sha256,
                        address=str(self.address),
                    )
                )
            except Refused as exc:
                self.short_why[event.job] = (exc.code, exc.reason)
                failures += 1
                delay = self._backoff(failures)
                log.info("job %d: no more friends yet (%s); asking again in %.1f s", event.job, exc.reason, delay)
                await trio.sleep(delay)
                continue
            self.short_why.pop(event.job, None)
            await self._settle(
                "more_friends",
                event,
                _joining(granted, entropy=self._entropy(), now=self._now()),
                _keys(granted),
            )
            return

    async def grow_forever(self) -> None:
        """Jobs granted fewer friends than they asked for grow as friends free up (asked every ``grow_every`` s)."""
        while True:
            await trio.sleep(self.settings.grow_every)
            for number in core.running_jobs(self.state):
                short = self._short_of(number)
                if short > 0 and number not in self.owed.more_friends:
                    await self._grow(number, short)

    def _short_of(self, job: int) -> int:
        """Friends the job asked for and does not have (evicted and gone ones count as missing)."""
        wants = self.wants.get(job)
        if wants is None:
            return 0
        return wants.friends - sum(1 for p in core.progress(self.state, job) if p.status == "active")

    async def _grow(self, job: int, short: int) -> None:
        accepted = self.jobs[job]
        try:
            granted = await self._ask_master(
                msg.AskFriends(
                    job=job,
                    submitter=accepted.submitter,
                    submitter_key=accepted.submitter_key,
                    frames=core.frame_count(self.state, job),
                    want=short,
                    profile=accepted.profile,
                    exclude=tuple(core.evictions(self.state, job)),
                    blend_sha256=accepted.blend_sha256,
                    address=str(self.address),
                ),
                retry=False,
            )
        except Refused as exc:  # none free yet (or the balance is spent): asked again later
            log.debug("job %d: still %d friends short (%s)", job, short, exc.reason)
            self.short_why[job] = (exc.code, exc.reason)  # shown in the progress while the job has no friend
            return
        self.short_why.pop(job, None)
        if core.is_finished(self.state, job) or not granted.friends:
            return
        try:
            await self.apply(
                _joining(granted, entropy=self._entropy(), now=self._now()),
                _keys(granted),
            )
        except Refused as exc:  # finished or cancelled meanwhile: the closing report releases them at the master
            log.info("job %d: friends granted too late: %s", job, exc)
            return
        log.info("job %d grew by %d friends (%s)", job, len(granted.friends), ", ".join(f.friend for f in granted.friends))

    async def _report_evictions(self, owed: core.OwedEvictions) -> None:
        """Tell the master now of friends caught in a running job (an interim report: evictions and evidence, nothing
        paid), so their owners are fined and their trust is gone farm-wide before the job ends."""
        evictions = core.evictions(self.state, owed.job)
        head = self.log.head
        request = msg.Report(
            job=owed.job,
            evicted=owed.friends,
            evidence={f: _evidence(evictions[f], _window_of_check(self.state, owed.job, evictions[f].check)) for f in owed.friends},
            head_seq=head.seq,
            head_hash=head.hash,
            close=False,
        )
        try:
            await self._ask_master(request)
        except Refused as exc:  # "closed": the job's closing report got there first and named them; anything else lasts
            log.warning("job %d: the master did not take the eviction of %s now (%s); the closing report names it", owed.job,
                        ", ".join(owed.friends), exc)  # fmt: skip
        await self.apply(EvictionsReported(job=owed.job, friends=owed.friends))
        log.info("job %d: the master knows %s was caught", owed.job, ", ".join(owed.friends))

    async def _report(self, event: core.OwedReport) -> None:
        await self.close_own_session(event.job)  # the job is over: so are our own renders of it
        head = self.log.head
        report = event.report
        request = msg.Report(
            job=event.job,
            payouts=dict(report.payouts),
            check_outcomes=dict(report.check_outcomes),
            evicted=tuple(report.evictions),
            own_outcomes=_own_outcomes(core.checks(self.state, event.job)),
            evidence={friend: _evidence(e, _window_of_check(self.state, event.job, e.check)) for friend, e in report.evictions.items()},
            head_seq=head.seq,
            head_hash=head.hash,
            outcome=str(event.ended),
        )
        try:
            await self._ask_master(request)
        except Refused as exc:
            if exc.code != "closed":  # "closed": an earlier attempt landed before we crashed
                # For good: asking again gets the same answer. Logged once, shown to the client.
                log.error("job %d: the master refused the report: %s", event.job, exc)
                await self.apply(ReportRefused(job=event.job, code=exc.code, reason=exc.reason))
                return
        await self.apply(ReportDelivered(job=event.job, head_seq=head.seq, head_hash=head.hash))
        log.info("job %d %s and reported", event.job, event.ended)

    async def tick_forever(self) -> None:
        """Deadlines, and friends that went silent: the core learns of both here."""
        started = trio.current_time()
        while True:
            await trio.sleep(self.settings.tick)
            for number in core.running_jobs(self.state):
                if not await self._timed(core.Tick(job=number, entropy=self._entropy(), now=self._now())):
                    continue
                for friend in core.silent_candidates(self.state, number):
                    if (number, friend) in self._asking:  # its call for work is held here now
                        continue
                    silent = trio.current_time() - self._contact.get((number, friend), started)
                    if silent > self.settings.friend_silence:
                        log.info("job %d: %s silent for %.0f s: gone", number, friend, silent)
                        if not await self._timed(core.DropFriend(job=number, friend=friend, entropy=self._entropy(), now=self._now())):
                            break

    async def _timed(self, command: core.Tick | core.DropFriend) -> bool:
        """Apply a timer's command; False if the job ended meanwhile.

        The jobs ticked are read from the committed state, but a command is decided on the draft, where
        another call may already have decided the job's end (its last frame, a cancel) and not yet committed it.
        """
        try:
            await self.apply(command)
        except Refused as exc:
            if exc.code != "job-state":
                raise
            return False
        return True


def _joining(granted: msg.FriendsGranted, *, entropy: str, now: float) -> core.AddFriends:
    """The one way granted friends join a job: with the standing the master gave them (reputation, clean run).

    Every grant (a new job, more friends after evictions, a job that grows) goes through here, so no path
    can treat a trusted friend as a stranger, or thin checks for nobody.
    """
    friends = tuple(
        core.GrantedFriend(friend=f.friend, owner=f.user, clean_run=max(0, f.clean_run), reputation=max(0, f.reputation)) for f in granted.friends
    )
    return core.AddFriends(job=granted.job, friends=friends, entropy=entropy, now=now)


def _keys(granted: msg.FriendsGranted) -> FriendKeys:
    """The key each granted friend proves, logged with the grant."""
    return FriendKeys(job=granted.job, keys={f.friend: f.key for f in granted.friends})


def _own_outcomes(checks: tuple[core.Check, ...]) -> dict[str, tuple[bool, ...]]:
    """Per friend, passed? for every check the requester's own render settled: its own checks and arbitrations.

    Only these earn reputation at the master: no friend can be the party that rendered them.
    """
    outcomes: dict[str, list[bool]] = {}
    for c in checks:
        if c.own and c.verifier is None and c.outcome in ("agreed", "subject_wrong"):
            outcomes.setdefault(c.subject, []).append(c.outcome == "agreed")
        elif c.arbitration_sha256 and c.outcome == "agreed":  # a spot check: our own render agreed with both
            for friend in (c.subject, c.verifier):
                if friend is not None:
                    outcomes.setdefault(friend, []).append(True)
        elif c.arbitration_sha256 and c.outcome in ("subject_wrong", "verifier_wrong", "both_wrong"):
            outcomes.setdefault(c.subject, []).append(c.outcome == "verifier_wrong")
            if c.verifier is not None:
                outcomes[c.verifier] = outcomes.get(c.verifier, []) + [c.outcome == "subject_wrong"]
    return {friend: tuple(passed) for friend, passed in sorted(outcomes.items())}


def _window_of_check(state: core.Requester, job: int, check: int) -> core.CropWindow | None:
    found = core.check_of(state, job, check)
    return None if found is None else found.window


def _evidence(e: core.Evidence, window: core.CropWindow | None = None) -> str:
    """An eviction's evidence in words, for the master's ledger (bounded like every message)."""
    figures = e.vs_subject or e.pair
    text = (
        f"check {e.check}, frame {e.frame}: {e.subject}'s copy {e.subject_sha256[:16]}"
        f" vs {e.verifier or 'the requester'}'s {e.verifier_sha256[:16]}, arbitration {e.arbitration_sha256[:16]}"
    )
    if window is not None:
        text += f"; crop window {window.x},{window.y} {window.w}x{window.h} of {core.events.WINDOW_GRID}"
    if figures is not None:
        text += f"; {figures.fraction_off:.2%} of pixels off, max diff {figures.max_diff}/255, PSNR {figures.psnr:.1f} dB"
    return text[:1024]
