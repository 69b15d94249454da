"""The friend: a volunteer's computer lending its CPU to other people's renders.

The life of a friend:

1. It loads its key from ``home`` and probes its Blender once for the render
   profile it offers, and says whether renders run inside bubblewrap.
2. It dials the master, registers as ``user/name``, then heartbeats every
   ``Registered.heartbeat_every`` seconds. A lost master (network, restart:
   "unknown-friend") is redialled with a short, capped, jittered backoff while any render
   goes on; a refusal that retrying cannot cure ("name-taken") ends the friend
   with ``FriendRefused``.
3. A heartbeat reply may carry a signed assignment and the address of the
   requester (an idle friend's heartbeat waits at the master until it is
   granted a job, up to one interval). For a job it is not already on, the
   friend checks the assignment (signed by this master, for this key, naming
   the requester's pinned key) and starts a worker, which dials the requester
   and asks for work until the requester says the job is over for it. That job is then reported as
   ``last_done`` in the following heartbeats, so the master frees the friend.
4. A task: the job's .blend comes from a small cache keyed by its sha256
   (fetched once per job, checked against the assignment) and is copied into
   the job's directory (the only place the sandboxed render can see), where
   one Blender process per job (a render session) loaded and guarded it once
   and renders task after task; starting Blender costs more than a small
   task's frames. While a task's last frame renders, the next task is asked
   for (keeping this one), so Blender goes on without waiting. Each saved
   frame moves to the job's outbox and is sent to the requester, in order, by
   a task of its own while Blender renders on; every WantWork keeps the tasks
   with frames still in the outbox. The task's deadline is enforced here too.
   The session ends with the job, and after any task that fails (the next
   task opens a fresh one).
5. A task that does not deliver all its frames (Blender failed, the deadline
   passed, Ctrl-C, cancellation, a lost requester) is given back, under a
   shielded short deadline, so the requester reassigns it at once instead of
   waiting for the deadline.
6. Availability (``frender.apps.availability``): every ``poll`` seconds the
   friend reads its owner's pause file, its schedule and (``--when-idle``) the
   owner's activity. An away friend says why in every heartbeat, so the master
   assigns it nothing; it finishes the frame in hand (or stops it at once for
   ``pause --now`` and a returning owner), sends what it rendered, hands the
   rest of its task back and leaves its jobs. It declines assignments while
   away, and the users it refuses are declared with every heartbeat, so their
   jobs are never assigned to it. Its one-line state is kept in ``home/status``.

Friends open every connection themselves, so they need no open port.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from attrs import define, field

from frender.apps.friend_work import FILE_ERRORS, MAX_ERROR, OUTBOX_SIZE, SENDERS, Backoff, BlendCache, JobRenderer, Outbox, Unworkable, frames_text, plainest
from frender.apps.friend_work import FriendRefused, FriendSettings  # this module's public names too
from frender.apps import standing
from frender.apps.availability import AVAILABLE, Away, IdlePolicy, IdleReading, IdleSensor, Schedule, decide, local_time, read_pause, write_status, STOPPED
from frender.apps.messages import FrameStored, GiveBack, Heartbeat, NoWork, RegisterFriend, WantWork, Work, ask
from frender.blender import Backend, BlenderError, RenderedFrame, probe, sandbox_available
from frender.core.profile import RenderProfile
from frender.transports import (
    Address,
    AssignmentRefused,
    FileLink,
    Identity,
    PeerGone,
    ProtocolError,
    RemoteError,
    Session,
    SignedAssignment,
    WrongFingerprint,
    check_assignment,
    connect,
    file_header,
    get_file,
    single_error,
)
from frender.transports.messages import FileHeader

if TYPE_CHECKING:  # loaded at run time only for a cheat (frender/apps/cheats.py)
    from frender.apps.cheats import Cheat

__all__ = ["FriendRefused", "FriendSettings", "run_friend"]

TREE_FILES_CACHED = 256  # files of job trees kept by sha256 across jobs
# Refusals at registration that no retry can cure: the name or the key is wrong.
FATAL_REFUSALS = frozenset({"name-taken", "bad-user", "bad-friend", "wrong-key", "unknown-user", "bad-input"})
# What a broken link looks like: a lost or garbled connection, or a reply that never came.
LINK_FAILURES = (PeerGone, OSError, trio.TooSlowError)


async def run_friend(
    *,
    master: Address,
    user: str,
    name: str,
    home: Path,
    backend: Backend,
    threads: int | None = None,
    cheat: str | None = None,
    busy: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    settings: FriendSettings = FriendSettings(),
    clock: Callable[[], float] = time.time,
    schedule: Schedule | None = None,
    idle: IdlePolicy | None = None,
    sense_idle: Callable[[], IdleReading] | None = None,
    refuse: Iterable[str] = (),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Lend this computer to the master at ``master`` until cancelled or interrupted.

    ``backend`` is a frender.blender backend; ``threads`` the render threads
    (None: all cores); ``busy`` says when the owner wants the machine to
    itself (reported to the master, which then assigns no new job). ``cheat``
    forges every frame sent (frender/apps/cheats.py, loaded only then), for demos and tests
    of verification only. ``clock`` is the wall clock that assignments'
    expiry is read against (waits use trio's clock). ``schedule``, ``idle``
    (read with ``sense_idle``, psutil by default) and the pause file in ``home``
    say when it may render; ``refuse`` names users whose jobs it declines.
    Starts once first registered; raises FriendRefused
    when the master refuses the name, and a plain KeyboardInterrupt on Ctrl-C
    after giving unfinished work back.
    """
    if cheat is not None:  # the demo's cheats live in the demo's module, loaded only for them
        from frender.apps.cheats import CHEATS

        if cheat not in CHEATS:
            raise ValueError(f"cheat is one of {CHEATS}, not {cheat!r}")
    home = Path(home)
    identity = Identity.load_or_create(home)
    standing.note(home, master, f"{user}/{name}")  # `frender friend status` asks this master how the friend stands
    profile = await probe(backend)
    sandbox = "sandbox: bubblewrap" if sandbox_available() else "no sandbox: install bubblewrap"
    log(f"friend {user}/{name}: {profile}; {sandbox}")
    friend = _Friend(
        master=master,
        user=user,
        name=name,
        identity=identity,
        home=home,
        backend=backend,
        profile=profile,
        threads=threads,
        cheat=cheat,
        busy=busy or (lambda: False),
        log=log,
        settings=settings,
        clock=clock,
        schedule=schedule,
        idle=idle,
        sense_idle=sense_idle or (IdleSensor(idle, clock=clock).read if idle is not None else None),
        refuse=tuple(sorted(set(refuse))),
    )
    friend.look()
    try:
        async with trio.open_nursery() as workers:
            friend.workers = workers
            workers.start_soon(friend.watch)
            await friend.keep_master(task_status)
    except BaseExceptionGroup as group:
        raise plainest(group) from None
    finally:
        write_status(home, STOPPED)  # `frender friend status` says so, not its last "available"


@define
class _Job:
    """A job this friend is working on: the latest assignment the master sent, and the requester."""

    signed: SignedAssignment
    requester: Address

    def expired(self, now: float) -> bool:
        return now >= self.signed.assignment.expires


@define(kw_only=True)
class _Friend:
    """One running friend: what it tells the master, and the jobs its workers are on."""

    master: Address
    user: str
    name: str
    identity: Identity
    home: Path
    backend: Backend
    profile: RenderProfile
    threads: int | None
    cheat: str | None
    busy: Callable[[], bool]
    log: Callable[[str], None]
    settings: FriendSettings
    clock: Callable[[], float] = time.time
    schedule: Schedule | None = None
    idle: IdlePolicy | None = None
    sense_idle: Callable[[], IdleReading] | None = None
    refuse: tuple[str, ...] = ()
    away: Away = AVAILABLE
    stoppable: set[trio.CancelScope] = field(factory=set)  # renders a pause --now or a returning owner stops
    shown: str = ""  # the line last written to home/status
    workers: trio.Nursery | None = None
    jobs: dict[int, _Job] = field(factory=dict)
    finished: set[int] = field(factory=set)  # jobs over for this friend: never taken again
    rejected: set[int] = field(factory=set)  # assignments that failed their check (logged once)
    last_done: int | None = None
    cache: BlendCache = field(init=False)
    files: BlendCache = field(init=False)  # the files of job trees, by sha256, kept across jobs

    def __attrs_post_init__(self) -> None:
        # Job directories and unsent frames left by a friend that was killed hold nothing worth keeping.
        shutil.rmtree(self.home / "jobs", ignore_errors=True)
        shutil.rmtree(self.home / "outbox", ignore_errors=True)
        self.cache = BlendCache(self.home / "cache", self.settings.blend_cache_size)
        self.files = BlendCache(self.home / "files", TREE_FILES_CACHED)

    @property
    def friend(self) -> str:
        return f"{self.user}/{self.name}"

    # ------------------------------------------------------------ availability

    def look(self) -> None:
        """Decide availability afresh (module docstring, step 6); stop renders at once if that is asked."""
        away = decide(
            pause=read_pause(self.home),
            when=local_time(self.clock()),
            schedule=self.schedule,
            idle=self.idle,
            reading=self.sense_idle() if self.sense_idle is not None else None,
        )
        if away != self.away:
            self.away = away
            self.log(f"away: {away.reason}" + ("; stopping the render now" if away.now and self.jobs else "") if away else "available again")
        if away.now:
            for scope in self.stoppable:
                scope.cancel()
        self.show()

    async def watch(self) -> None:
        while True:
            await trio.sleep(self.settings.poll)
            self.look()

    def show(self) -> None:
        """Keep ``home/status`` current: "paused" only once no job is in hand any more."""
        jobs = ", ".join(map(str, sorted(self.jobs)))
        if self.away:
            line = f"{self.away.reason}; handing back job {jobs}" if jobs else self.away.reason
        else:
            line = f"rendering job {jobs}" if jobs else "available"
        if line != self.shown:
            write_status(self.home, line)
            self.shown = line

    # ------------------------------------------------------------- the master

    async def keep_master(self, task_status: trio.TaskStatus[None]) -> None:
        """Stay registered and heartbeating, redialling whenever the link breaks; never returns."""
        backoff = Backoff(self.settings)
        started = False
        while True:
            try:
                async with connect(self.master, self.identity) as session:
                    every = await self._register(session)
                    backoff.reset()
                    if not started:
                        task_status.started()
                        started = True
                    await self._heartbeat(session, every)
            except RemoteError as exc:
                if exc.code in FATAL_REFUSALS:
                    # Not logged here: the caller prints the exception once, and exits non-zero.
                    raise FriendRefused(f"the master refused {self.friend}: {exc.reason}") from None
                reason = f"{exc.code}: {exc.reason}"  # e.g. "unknown-friend" after a master restart
            except WrongFingerprint as exc:
                raise FriendRefused(f"the master at {self.master} is not the one its address names: {exc}") from None
            except LINK_FAILURES as exc:
                reason = str(exc) or type(exc).__name__
            if backoff.first_try:
                self.log(f"lost the master ({reason}); reconnecting")
            await backoff.sleep()

    async def _register(self, session: Session) -> float:
        capacity = self.threads or os.cpu_count() or 1
        request = RegisterFriend(
            user=self.user, name=self.name, profile=self.profile, capacity=capacity, away=self.away.reason, refuse=self.refuse
        )
        with trio.fail_after(self.settings.call_deadline):
            reply = await ask(session, request)
        self.log(f"registered as {reply.friend} with the master at {self.master.host}:{self.master.port}")
        # A floor, so a misconfigured master cannot make the friend spin.
        return max(reply.heartbeat_every, 0.01)

    async def _heartbeat(self, session: Session, every: float) -> None:
        """Heartbeat every ``every`` seconds; an idle friend's heartbeat waits at the master for a job meanwhile."""
        while True:
            sent = trio.current_time()
            wait = every if not self.jobs else 0.0
            beat = Heartbeat(
                friend=self.friend, busy=self.busy(), last_done=self.last_done, wait=wait, away=self.away.reason, refuse=self.refuse
            )
            with trio.fail_after(self.settings.call_deadline):
                reply = await ask(session, beat)
            if reply.assignment is not None:
                self._take(reply.assignment, reply.requester)
            await trio.sleep_until(sent + every)

    def _take(self, signed: SignedAssignment, requester_text: str) -> None:
        """Start a worker for a new job; renew the assignment of a job already running."""
        job = signed.assignment.job
        if job in self.finished:
            return  # the master has not seen our last_done yet
        try:
            requester = Address.parse(requester_text)
            check_assignment(
                signed,
                master_fingerprint=self.master.fingerprint,
                now=self.clock(),
                friend_key=self.identity.fingerprint,
                requester_key=requester.fingerprint,
            )
            if signed.assignment.friend != self.friend:
                raise AssignmentRefused(f"job {job} is assigned to {signed.assignment.friend}")
        except (ValueError, AssignmentRefused) as exc:
            if job not in self.rejected:
                self.rejected.add(job)
                self.log(f"job {job}: ignoring the assignment: {exc}")
            return
        if job in self.jobs:
            self.jobs[job].signed = signed
            return
        if self.away:
            # Assigned just before the master heard we are away: say it is over for us at once.
            self.finished.add(job)
            self.last_done = job
            self.log(f"job {job}: declined ({self.away.reason})")
            return
        self.jobs[job] = _Job(signed=signed, requester=requester)
        self.show()
        self.log(f"job {job}: assigned, requester {requester.host}:{requester.port}")
        assert self.workers is not None
        self.workers.start_soon(self._work_on, job)

    # ---------------------------------------------------------- a job's worker

    async def _work_on(self, job: int) -> None:
        """Ask the job's requester for work until the job is over for this friend."""
        cheat = None
        if self.cheat:
            from frender.apps.cheats import Cheat

            cheat = Cheat(self.cheat)
        backoff = Backoff(self.settings)
        renderer = JobRenderer(self, job)
        try:
            try:
                while True:
                    try:
                        async with connect(self.jobs[job].requester, self.identity) as session:
                            backoff.reset()
                            why = await self._ask_for_work(session, job, cheat, renderer)
                        break
                    except Unworkable as exc:
                        why = str(exc)
                        break
                    except WrongFingerprint as exc:
                        why = f"the requester is not the one assigned: {exc}"
                        break
                    except LINK_FAILURES as exc:
                        if self.jobs[job].expired(self.clock()):
                            why = f"requester unreachable until the assignment expired ({exc})"
                            break
                        if backoff.first_try:
                            self.log(f"job {job}: lost the requester ({exc}); reconnecting")
                        await backoff.sleep()
            finally:
                await renderer.finish()  # before last_done: nothing of the job outlives it
            self._job_over(job, why)
        finally:
            del self.jobs[job]
            self.show()

    async def _ask_for_work(self, session: Session, job: int, cheat: Cheat | None, renderer: JobRenderer) -> str:
        """Take tasks until the requester has none left for us; returns why the job is over.

        Frames leave through an outbox, sent in the order they were saved by ``SENDERS`` tasks side
        by side while Blender renders on; the outbox is emptied before this returns."""
        outbox = Outbox(self.home / "outbox" / str(job))
        try:
            with single_error():
                async with trio.open_nursery() as nursery:
                    send, receive = trio.open_memory_channel[tuple[int, RenderedFrame]](OUTBOX_SIZE)
                    first = trio.Event()  # later senders dial only once the first has a frame through
                    with receive:
                        for n in range(SENDERS):
                            nursery.start_soon(self._deliver_all, job, outbox, receive.clone(), first, n > 0)
                    async with send:
                        return await self._take_tasks(session, job, cheat, renderer, outbox, send)
        finally:
            outbox.remove()

    async def _take_tasks(
        self,
        session: Session,
        job: int,
        cheat: Cheat | None,
        renderer: JobRenderer,
        outbox: Outbox,
        send: trio.MemorySendChannel[tuple[int, RenderedFrame]],
    ) -> str:
        want = partial(self._want_work, session, job, outbox)
        reply = await want() if not self.away else "nothing taken"
        while True:
            if self.away:
                if isinstance(reply, Work):
                    await self._give_back(job, reply.task)
                return f"left the job: {self.away.reason}"
            if isinstance(reply, str):
                return reply
            if isinstance(reply, NoWork):
                if reply.over:
                    return reply.why or "no more work"
                await trio.sleep(max(reply.retry_after, 0.01))
                reply = await want()
            else:
                post = partial(outbox.post, send, reply.task)
                ahead = await self._run_task(want, job, reply, cheat, renderer, post, partial(outbox.drained, reply.task))
                if (ahead is None or (isinstance(ahead, NoWork) and not ahead.over)) and not self.away:
                    ahead = await want()  # its hold may have run out mid-task
                reply = ahead if ahead is not None else "stopped"

    async def _want_work(self, session: Session, job: int, outbox: Outbox, rendering: int | None = None) -> Work | NoWork | str:
        """The requester's answer to WantWork: a task, NoWork, or (a string) why it refused us.

        It keeps the task still ``rendering`` and, as ``sending`` (not a task ahead: Blender goes on while they
        leave), every task with frames in the outbox; the requester takes every other task as given up."""
        keeping = () if rendering is None else (rendering,)
        sending = tuple(sorted(outbox.tasks() - set(keeping)))
        try:
            with trio.fail_after(self.settings.call_deadline):
                reply = await ask(session, WantWork(assignment=self.jobs[job].signed, keeping=keeping, sending=sending))
        except RemoteError as exc:
            return f"the requester refused: {exc.reason}"
        if isinstance(reply, NoWork) or reply.job == job:
            return reply
        raise ProtocolError(f"expected Work for job {job} or NoWork, got {reply!r}"[:300])

    def _job_over(self, job: int, why: str) -> None:
        self.finished.add(job)
        self.last_done = job
        sha256 = self.jobs[job].signed.assignment.blend_sha256
        others = (other for number, other in self.jobs.items() if number != job)
        if not any(other.signed.assignment.blend_sha256 == sha256 for other in others):
            self.cache.drop(sha256)
        self.log(f"job {job}: over ({why})")

    # ---------------------------------------------------------------- a task

    async def _run_task(
        self,
        want: Callable[..., Awaitable[Work | NoWork | str]],
        job: int,
        work: Work,
        cheat: Cheat | None,
        renderer: JobRenderer,
        post: Callable[[RenderedFrame], Awaitable[None]],
        drained: Callable[[], Awaitable[None]] | None = None,
    ) -> Work | NoWork | str | None:
        """Render one task, posting each frame as it is saved; returns the next task if it asked ahead.

        While the task's last frame renders, the next task is asked for
        (keeping this one), so Blender goes on without waiting for a round
        trip. Whatever stops the task short gives it back (and ends the session).
        An away friend stops after the frame in hand (or at once, ``Away.now``):
        the frames it rendered are sent (``drained``) before the rest is given back.
        """
        self.log(f"job {job} task {work.task}: rendering frames {frames_text(work.frames)}")
        ahead: list[Work | NoWork | str] = []
        failure: list[BaseException] = []

        async def ask_ahead() -> None:
            try:
                ahead.append(await want(rendering=work.task))
            except (*LINK_FAILURES, ProtocolError) as exc:
                failure.append(exc)  # raised once this task is over: a lost link ends the render no sooner

        left = len(work.tiles) or len(work.frames)  # renders to deliver: a whole frame in tiles delivers each tile

        async def on_frame(frame: RenderedFrame) -> None:
            nonlocal left
            left -= 1
            if left == 1:
                nursery.start_soon(ask_ahead)
            if cheat is not None:
                box = work.window
                size = (work.width, work.height) if box is None or box.in_place else (box.width, box.height)
                await cheat.forge(frame, width=size[0], height=size[1], work=work)
            await post(frame)
            if self.away:
                stop.cancel()  # the frame in hand is finished and on its way: hand back the rest

        delivered = False
        error = ""  # why Blender could not render the file: handed back with the task
        stop = trio.CancelScope()
        with single_error():
            async with trio.open_nursery() as nursery:
                if left == 1:
                    nursery.start_soon(ask_ahead)
                try:
                    with trio.move_on_after(max(work.deadline, 0.0)) as deadline, stop:
                        self.stoppable.add(stop)
                        if self.away.now:
                            stop.cancel()
                        await renderer.render(work, on_frame)
                        delivered = True
                    if stop.cancelled_caught:
                        self.log(f"job {job} task {work.task}: stopped ({self.away.reason or 'away'})")
                    elif deadline.cancelled_caught:
                        self.log(f"job {job} task {work.task}: deadline of {work.deadline:g} s passed")
                except BlenderError as exc:
                    self.log(f"job {job} task {work.task}: {exc}")
                    if isinstance(exc, FILE_ERRORS):  # the file's fault, not this machine's: the requester hears why
                        error = str(exc)
                finally:
                    self.stoppable.discard(stop)
                    if not delivered:
                        await renderer.close()
                        if stop.cancelled_caught and drained is not None:
                            with trio.move_on_after(self.settings.give_back_within):
                                await drained()  # what was rendered is sent first, not requeued
                        await self._give_back(job, work.task, error)
        if failure:
            raise failure[0]
        return ahead[0] if ahead else None

    async def _fetch_blend(self, job: int, sha256: str, dest: Path) -> None:
        """Download the job's .blend; get_file checks it against the assignment's sha256."""
        header = FileHeader(kind="blend", job=job, sha256=sha256)
        try:
            await get_file(self.jobs[job].requester, self.identity, header, dest, max_size=self.settings.max_blend_size)
        except (RemoteError, ProtocolError) as exc:
            # The wrong file, a file too large, or a refusal: asking again gets the same.
            raise Unworkable(f"cannot fetch the .blend: {exc}") from None

    async def _deliver_all(
        self, job: int, outbox: Outbox, frames: trio.MemoryReceiveChannel[tuple[int, RenderedFrame]], first: trio.Event, wait: bool
    ) -> None:
        """Send posted frames, one after another over one connection, until the outbox closes. With ``wait``, only
        once another sender is through with its ``first`` frame (or done): a job's start costs the requester one
        handshake a friend, not one a sender."""
        async with frames, FileLink(self.jobs[job].requester, self.identity) as link:
            try:
                if wait:
                    await first.wait()
                async for task, frame in frames:
                    try:
                        await self._deliver(job, link, frame)
                    finally:
                        outbox.sent(task, frame)
                        first.set()
            finally:
                first.set()

    async def _deliver(self, job: int, link: FileLink, frame: RenderedFrame) -> None:
        """Send one saved frame to the requester; a refused frame is logged, the task goes on."""
        header = await file_header(frame.path, kind="frame", job=job, frame=frame.frame)
        try:
            reply = await link.put(header, frame.path)
        except RemoteError as exc:
            self.log(f"job {job}: frame {frame.frame} refused: {exc.reason}")
            return
        if isinstance(reply, FrameStored) and reply.ok:
            self.log(f"job {job}: frame {frame.frame} sent ({frame.seconds:.1f} s)")
        else:
            self.log(f"job {job}: frame {frame.frame} refused: {getattr(reply, 'reason', reply)}")

    async def _give_back(self, job: int, task: int, error: str = "") -> None:
        """Hand an unfinished task back, even while being cancelled, within a short deadline; with
        ``error``, why Blender could not render the file (several friends saying the same fails the job).

        A fresh connection: the task's own session may be broken, or (when the
        friend is cancelled) its reader already stopped.
        """
        first_line = error.strip().splitlines()[0][:MAX_ERROR] if error.strip() else ""
        request = GiveBack(assignment=self.jobs[job].signed, task=task, error=first_line)
        with trio.CancelScope(shield=True), trio.move_on_after(self.settings.give_back_within):
            try:
                async with connect(self.jobs[job].requester, self.identity) as session:
                    await session.call(request)
                self.log(f"job {job} task {task}: given back")
            except (*LINK_FAILURES, RemoteError, WrongFingerprint) as exc:
                self.log(f"job {job} task {task}: could not give it back ({exc}); its deadline will")
