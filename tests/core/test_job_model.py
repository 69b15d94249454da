"""The requester's core against a simulated pool of honest, crashing and cheating friends (hypothesis stateful)."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from frender import codec
from frender.core import job as J
from frender.core._decider import Rejected, fold
from frender.core.job._tasks import SENDING_FREE

HONEST = ("honest", "crashy")
KINDS = ("honest", "crashy", "black", "noise", "stale", "partial", "liar", "sybil", "colluding", "smart", "coalition")
# "coalition": friends of different owners that forge the same frames (half of them, one shared forgery each) and vouch
# for each other's forgeries while rendering every other check honestly; with trusted=True they start trusted (farmed).
FORGE_ALL = ("black", "noise", "stale", "sybil", "colluding", "smart")  # forge every frame they render (not checks)


def truth(frame: int) -> str:
    return hashlib.sha256(f"frame {frame}".encode()).hexdigest()


def fake(kind: str, friend: str, frame: int) -> str:
    if kind == "stale":
        return truth(frame + 1)  # another frame's image
    if kind == "noise":
        return hashlib.sha256(f"noise {friend} {frame}".encode()).hexdigest()
    if kind == "colluding":  # one forgery per frame, shared by the group (of different owners)
        return hashlib.sha256(f"colluded {frame}".encode()).hexdigest()
    return hashlib.sha256(b"black").hexdigest()  # black; sybils share it, so they would agree


def coalition_forges(frame: int) -> bool:
    return int(hashlib.sha256(f"coalition {frame}".encode()).hexdigest(), 16) % 2 == 1


def render(kind: str, friend: str, frame: int, is_check: bool, subject_kind: str = "") -> str:
    """What a friend of ``kind`` returns for ``frame`` (the liar lies only on test frames, the smart one only off them).

    A crop of an image hashes as the image itself: an honest crop agrees with an honest frame, and a
    colluder's crop of the group's forgery agrees with it (the colluders vouch for each other)."""
    if kind == "coalition":  # forges its share; on a check, vouches for a fellow's forgery and is honest otherwise
        forge = coalition_forges(frame) and (not is_check or subject_kind == "coalition")
        return hashlib.sha256(f"coalition forgery {frame}".encode()).hexdigest() if forge else truth(frame)
    if kind in HONEST or (kind == "liar" and not is_check) or (kind == "smart" and is_check):
        return truth(frame)
    if kind == "partial" and int(hashlib.sha256(f"{friend}{frame}".encode()).hexdigest(), 16) % 2:
        return truth(frame)
    return fake(kind, friend, frame)


def windowed(sha: str) -> str:
    """A window of an image as an engine renders it when its crops differ from its frames (EEVEE's screen-space effects)."""
    return hashlib.sha256(f"window of {sha}".encode()).hexdigest()


def compare(a: str, b: str) -> dict:
    """The simulated comparator: same content is identical; stale frames 33.5 dB, others far off."""
    if a == b:
        return dict(verdict="identical", fraction_off=0.0, max_diff=0, psnr=99.0)
    psnr = 33.5 if {a, b} & {truth(f) for f in range(0, 40)} == {a, b} else 9.0
    return dict(verdict="disagree", fraction_off=0.3, max_diff=200, psnr=psnr)


RULES: dict = {}  # JobSettings overrides for every job (to run the model under other rules)


class Pool(RuleBasedStateMachine):
    """Friends pull tasks and deliver; the shell answers comparison and render requests; a clock ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.state = J.Requester()
        self.log: list[str] = []  # tag + JSON, as the store keeps them
        self.now = 0.0
        self.n = 0
        self.requests: list[object] = []
        self.held: dict[str, list[J.TaskAssigned]] = {}
        self.crashed: set[str] = set()
        self.final_seen: dict[int, J.FinalFrame] = {}
        self.recalled: set[int] = set()
        self.disagreements = 0
        self.finished: J.JobReport | None = None
        self.cancelled = False
        self.model: dict[int, dict[int, str]] = {}  # naive scheduler: frame -> {live render/backup task: its friend}

    # ---------------------------------------------------------- plumbing

    def apply(self, command: object) -> list[object]:
        try:
            events = J.decide(self.state, command)
        except Rejected as exc:
            note(f"rejected {type(command).__name__}: {exc}")
            return []
        for e in events:
            self.log.append(codec.tag_of(e) + "\n" + codec.to_json(e))
            J.evolve(self.state, e)
            self.observe(e)
        return events

    def observe(self, e: object) -> None:
        if isinstance(e, J.TaskAssigned):
            self.held.setdefault(e.friend, []).append(e)
            if e.kind != "check":
                for frame in e.frames:
                    self.model.setdefault(frame, {})[e.task] = e.friend
        elif isinstance(e, J.TaskDropped):
            self.held[e.friend] = [t for t in self.held.get(e.friend, []) if t.task != e.task]
            for tasks in self.model.values():
                tasks.pop(e.task, None)
        elif isinstance(e, (J.CopyReceived, J.CopyFaulted)):
            if getattr(e, "role", "") != "late":
                self.model.get(e.frame, {}).pop(e.task, None)
        elif isinstance(e, (J.ComparisonRequested, J.OwnRenderRequested)):
            self.requests.append(e)
        elif isinstance(e, J.ComparisonMade) and e.against == "pair" and e.figures.verdict == "disagree":
            self.disagreements += 1
        elif isinstance(e, J.CropsUnequal):
            assert self.unequal, "crops found unequal where windows equal their frames"
            self.switched = True  # whole-frame checks from here: the circle's guarantees, as for any whole-frame job
        elif isinstance(e, J.FramesRecalled):
            for frame in e.requeued + e.held:
                assert frame in self.final_seen, f"frame {frame} recalled but not final"
                del self.final_seen[frame]
                self.recalled.add(frame)
        elif isinstance(e, J.FramesFinal):
            for ff in e.frames:
                assert ff.frame not in self.final_seen, f"frame {ff.frame} final twice"
                assert J.friend_status(self.state, 1, ff.friend) != "evicted"
                if self.kind[ff.friend] in HONEST:
                    assert ff.sha256 == truth(ff.frame)
                self.final_seen[ff.frame] = ff
        elif isinstance(e, J.JobFinished):
            self.finished = e.report
        elif isinstance(e, J.JobCancelled):
            self.finished, self.cancelled = e.report, True

    def cmd(self, command: type, **kw) -> list[object]:
        self.n += 1
        return self.apply(command(job=1, now=self.now, entropy=f"{self.seed}{self.n:08x}", **kw))

    @property
    def running(self) -> bool:
        return not J.is_finished(self.state, 1)

    @property
    def summary(self) -> J.JobSummary:
        return J.summary(self.state, 1)

    # ---------------------------------------------------------- set-up

    @initialize(
        frames=st.integers(1, 24),
        kinds=st.lists(st.sampled_from(KINDS), min_size=0, max_size=5) | st.lists(st.sampled_from(("colluding", "coalition")), min_size=2, max_size=4),
        trusted=st.booleans(),
        honest=st.integers(1, 3),
        s=st.integers(0, 3),
        timing=st.sampled_from(("end", "batch")),
        batch=st.integers(1, 6),
        chunk=st.integers(1, 5),
        backups=st.booleans(),
        crop=st.booleans(),
        unequal=st.booleans(),
        seed=st.integers(0, 2**32),
        even=st.booleans(),
    )
    def start(self, frames, kinds, honest, s, timing, batch, chunk, backups, crop, unequal, seed, trusted, even) -> None:
        self.crop = crop
        self.unequal = unequal  # the engine renders every window unlike the same pixels of its frame (Rule 19)
        self.switched = False
        self.checking = s > 0
        self.seed = f"{seed:08x}"
        self.frames = frames
        roster = ["honest"] * honest + kinds
        self.kind = {f"f{i}": k for i, k in enumerate(roster)}
        owners = {f: ("mallory" if k == "sybil" else f"owner{f}") for f, k in self.kind.items()}
        if list(self.kind.values()).count("sybil") == 1:
            self.kind["f99"], owners["f99"] = "sybil", "mallory"
        settings_ = J.JobSettings(
            checks_per_friend=s, check_timing=timing, batch_size=batch, max_chunk=chunk, backups=backups,
            adaptive=False, seconds_per_frame=1.0, startup_seconds=1.0, crop_checks=crop, random_order=crop, even_checkers=even, **RULES,
        )
        # Trusted: every friend starts with a farmed reputation, colluders included (they behaved until trusted).
        self.reputation = {f: (10 if trusted else 0) for f in self.kind}
        note(f"friends {self.kind}, settings {settings_}")
        self.apply(J.StartJob(job=1, frames=tuple(range(frames)), settings=settings_,
                              checks_escrowed=settings_.checks_to_escrow(frames, len(self.kind)), now=0.0))
        self.cmd(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner=owners[f], reputation=self.reputation[f]) for f in self.kind))

    # ---------------------------------------------------------- rules

    friends = st.integers(0, 99)

    def pick(self, i: int) -> str:
        names = sorted(self.kind)
        return names[i % len(names)]

    @precondition(lambda self: self.running)
    @rule(i=friends)
    def ask(self, i: int) -> None:
        friend = self.pick(i)
        self.crashed.discard(friend)
        self.cmd(J.AskForTask, friend=friend)

    @precondition(lambda self: self.running)
    @rule(i=friends, greedy=st.booleans(), sending=st.booleans())
    def ask_ahead(self, i: int, greedy: bool, sending: bool) -> None:
        """Rule 9: a friend asks while still rendering the task it holds first (a greedy one keeps all, or names
        the rest as only being sent)."""
        friend = self.pick(i)
        tasks = self.held.get(friend)
        if tasks and friend not in self.crashed:
            keeping = tuple(t.task for t in tasks) if greedy else (tasks[0].task,)
            self.cmd(J.AskForTask, friend=friend, keeping=keeping, sending=tuple(t.task for t in tasks[1:]) if sending else ())

    @precondition(lambda self: self.running)
    @rule(i=friends, ok=st.booleans() | st.just(True))
    def deliver(self, i: int, ok: bool) -> None:
        friend = self.pick(i)
        tasks = self.held.get(friend)
        if not tasks or friend in self.crashed:
            return
        task = tasks[0]
        frame = task.frames[0]
        rest = task.frames[1:]
        self.held[friend] = ([J.TaskAssigned(**{**_fields(task), "frames": rest})] if rest else []) + tasks[1:]
        subject_kind = ""
        check = None
        if task.kind == "check":
            check = J.check_of(self.state, 1, task.checks[task.frames.index(frame)])
            subject_kind = self.kind.get(check.subject, "") if check is not None else ""
        sha = render(self.kind[friend], friend, frame, task.kind == "check", subject_kind)
        if task.kind == "check" and self.unequal and check is not None and check.window is not None:
            sha = windowed(sha)
        self.cmd(J.DeliverFrame, friend=friend, task=task.task, frame=frame, sha256=sha, ok=ok, reason="" if ok else "bad png")

    @precondition(lambda self: self.running)
    @rule(i=friends)
    def crash(self, i: int) -> None:
        friend = self.pick(i)
        self.crashed.add(friend)
        self.held.pop(friend, None)
        self.cmd(J.DropFriend, friend=friend)

    @precondition(lambda self: self.running)
    @rule(i=friends)
    def give_back(self, i: int) -> None:
        friend = self.pick(i)
        tasks = self.held.get(friend)
        if tasks:
            self.cmd(J.ReturnTask, friend=friend, task=tasks[0].task)

    @precondition(lambda self: self.running)
    @rule(roll=st.integers(0, 9))
    def cancel(self, roll: int) -> None:
        """The submitter stops the job (now and then: most runs go on to finish)."""
        if roll == 0:
            events = self.cmd(J.CancelJob)
            assert [type(e) for e in events] == [J.JobCancelled]

    @rule(dt=st.floats(0.5, 30.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.cmd(J.Tick)

    @precondition(lambda self: self.running and self.requests)
    @rule()
    def shell(self) -> None:
        self.answer(self.requests.pop(0))

    def answer(self, request: object) -> None:
        if isinstance(request, J.OwnRenderRequested):
            check = J.check_of(self.state, 1, request.check)
            window = check is not None and check.window is not None and request.purpose != J.Purpose.FRAME
            self.cmd(J.RecordOwnRender, check=request.check, sha256=windowed(truth(request.frame)) if self.unequal and window else truth(request.frame))
        elif isinstance(request, J.ComparisonRequested):
            self.cmd(J.RecordComparison, check=request.check, against=request.against, a_sha256=request.a_sha256,
                     b_sha256=request.b_sha256, **compare(request.a_sha256, request.b_sha256))

    @precondition(lambda self: self.running)
    @rule(
        which=st.sampled_from([c for c in J.COMMANDS if c is not J.CancelJob]),
        number=st.integers(-1, 12),
        frame=st.integers(-1, 30),
        verdict=st.sampled_from(("identical", "agree", "disagree", "maybe")),
        against=st.sampled_from(("pair", "subject", "verifier", "x")),
        x=st.floats(allow_nan=True, allow_infinity=True),
        i=friends,
    )
    def garbage(self, which, number, frame, verdict, against, x, i) -> None:
        """h2-style: any command, any fields: events or a clean Rejected, never another exception."""
        friend = self.pick(i) if i % 7 else "stranger"
        checks = {c.check: c for c in J.checks(self.state, 1)}
        kw = {
            J.StartJob: dict(frames=(frame,)),
            J.AddFriends: dict(friends=(J.GrantedFriend(friend=friend, owner="o"),)),
            J.AskForTask: dict(friend=friend),
            # An honest friend's garbage is still its own honest image: a forged copy in its name would be a cheat the model cannot tell.
            J.DeliverFrame: dict(friend=friend, task=number, frame=frame, sha256=truth(frame) if self.kind.get(friend) in HONEST else f"{x}", ok=bool(i % 3)),
            J.RecordComparison: dict(check=number, against=against, verdict=verdict, fraction_off=x, psnr=x,
                                     a_sha256=truth(frame), b_sha256=truth(frame + 1)),
            # The requester's own render is trusted input: garbage never forges one for a live check.
            J.RecordOwnRender: dict(check=number, sha256=truth(checks[number].frame))
            if number in checks else dict(check=number, sha256=truth(frame)),
            J.Tick: dict(),
            J.DropFriend: dict(friend=friend),
            J.ReturnTask: dict(friend=friend, task=number),
        }[which]
        if which is J.StartJob:
            self.apply(J.StartJob(job=1 + number % 2, now=self.now, **kw))
            return
        if which is J.AskForTask:
            self.crashed.discard(friend)  # asking again is coming back
        if which is J.DropFriend and friend in self.kind:
            self.crashed.add(friend)
            self.held.pop(friend, None)
        if self.cmd(which, **kw) and which is J.AddFriends:
            self.kind[friend] = "honest"  # a later grant: an honest newcomer

    # ---------------------------------------------------------- invariants

    @invariant()
    def a_friend_holds_two_tasks_at_most(self) -> None:
        """Asking ahead never lets a friend hoard tasks: two it renders, and a bounded few it only sends (Rule 9)."""
        for friend in self.kind:
            tasks = J.live_tasks(self.state, 1, friend)
            assert len(tasks) <= 2 + SENDING_FREE, f"{friend} holds tasks {sorted(tasks)}"

    @invariant()
    def honest_friends_are_never_evicted(self) -> None:
        """No honest friend is ever evicted."""
        for friend in self.summary.evicted:
            assert self.kind[friend] not in HONEST, f"honest {friend} evicted"

    @invariant()
    def no_forgery_of_a_whole_forger_is_ever_final(self) -> None:
        """With crop checks on (and checking on), a friend that forges all it renders never has a forgery final: each of
        its frames meets a checker's window, and its batch a spot check by the requester (every batch of a friend below
        the reputation at which spots thin out, the first one of any friend), which a forged frame always fails,
        colluders' vouching or not, trusted or not."""
        if not self.crop or self.switched or not self.checking:  # whole frames: the circle's guarantees only
            return
        for frame, ff in self.final_seen.items():
            if self.kind.get(ff.friend) in FORGE_ALL:
                assert ff.sha256 == truth(frame), f"forged frame {frame} of {ff.friend} ({self.kind[ff.friend]}) is final"

    @invariant()
    def no_final_frame_rests_on_a_caught_friend(self) -> None:
        """Unravelling (Rule 15): no final frame's author was caught, and none rests only on the word of caught peers."""
        evicted = set(self.summary.evicted)
        by_frame: dict[int, list[J.Check]] = {}
        for c in J.checks(self.state, 1):
            by_frame.setdefault(c.frame, []).append(c)
        for frame, ff in self.final_seen.items():
            assert ff.friend not in evicted, f"frame {frame} of caught {ff.friend} is final"
            mine = [c for c in by_frame.get(frame, []) if c.kind == "test" and c.subject_sha256 == ff.sha256 and c.outcome is not None]
            confirmed = any(c.outcome != "void" and (c.own or (c.arbitration_sha256 and c.outcome in ("agreed", "verifier_wrong"))) for c in mine)
            vouchers = {c.verifier for c in mine if c.outcome == "agreed" and c.verifier is not None and not c.arbitration_sha256}
            if self.crop and not self.switched and vouchers and not confirmed:
                assert vouchers - evicted, f"frame {frame} is final on the word of caught {sorted(vouchers)} only"

    @invariant()
    def each_frame_is_accepted_once(self) -> None:
        """At most one final copy per frame, and a frame is never both queued and final."""
        assert not set(self.final_seen) & set(J.queued(self.state, 1))

    @invariant()
    def final_frames_only_grow(self) -> None:
        """The final frames are those announced final and not recalled since, unchanged."""
        final = {f: J.final_copy(self.state, 1, f) for f in self.summary.final}
        assert final == self.final_seen

    @invariant()
    def arbitrations_never_exceed_disagreements(self) -> None:
        """The requester arbitrates only disagreements, and the agreed pairs it spot-checks."""
        assert self.summary.arbitrations - self.summary.spot_checks <= self.disagreements

    @invariant()
    def scheduler_matches_the_naive_model(self) -> None:
        """Who holds which frame (live render and backup tasks) is what the tasks handed out and not yet delivered say."""
        model = {frame: frozenset(tasks.values()) for frame, tasks in self.model.items() if tasks}
        assert J.holders(self.state, 1) == model

    @invariant()
    def every_frame_is_queued_held_copied_or_final(self) -> None:
        """No frame is lost: a frame is queued exactly when nobody holds it and it has no copy (Rule 3)."""
        queued = set(J.queued(self.state, 1))
        held = {frame for frame, tasks in self.model.items() if tasks}
        copied = set(J.candidates(self.state, 1)) | set(self.final_seen)
        for frame in range(self.frames):
            assert (frame in queued) == (frame not in held and frame not in copied), f"frame {frame}: queued {frame in queued}"

    @invariant()
    def report_pays_honest_work_within_escrow(self) -> None:
        """Honest friends are paid per final frame and per paid check; the total stays within the escrow."""
        if self.finished is None:
            return
        r = self.finished
        assert sum(r.payouts.values()) <= r.escrow
        assert not set(r.payouts) & set(r.evictions)
        for friend, kind in self.kind.items():
            if kind in HONEST:
                frames = sum(ff.friend == friend for ff in self.final_seen.values())
                checks = {p.friend: p.checks_paid for p in J.progress(self.state, 1)}.get(friend, 0)
                assert r.payouts.get(friend, 0) == frames + checks

    def teardown(self) -> None:
        if not hasattr(self, "kind"):
            return
        # Liveness: the live friends keep working (crashed honest ones come back); the job must finish.
        for _ in range(4000):
            if not self.running or self.cancelled:
                break
            if self.requests:
                self.answer(self.requests.pop(0))
                continue
            progressed = False
            for friend in sorted(self.kind):
                if self.kind[friend] not in HONEST and friend in self.crashed:
                    continue
                if self.held.get(friend):
                    self.crashed.discard(friend)
                    self.deliver(sorted(self.kind).index(friend), True)
                    progressed = True
                elif J.friend_status(self.state, 1, friend) != "evicted":
                    self.ask(sorted(self.kind).index(friend))
                    progressed = progressed or bool(self.held.get(friend))
            if not progressed and not self.requests:
                if J.starved(self.state, 1) and self.running:  # the master answers MoreFriendsWanted with a trusted friend
                    newcomer = f"n{len(self.kind)}"
                    self.kind[newcomer] = "honest"
                    self.cmd(J.AddFriends, friends=(J.GrantedFriend(friend=newcomer, owner="o-" + newcomer, reputation=10),))
                    continue
                self.now += 1000.0
                self.cmd(J.Tick)
        assert not self.running, (
            f"the job did not finish: queue {J.queued(self.state, 1)} holders {J.holders(self.state, 1)} "
            f"candidates {J.candidates(self.state, 1)} checks "
            f"{ {c.check: (c.state, c.kind, c.subject, c.verifier) for c in J.checks(self.state, 1) if c.state != 'resolved'} } "
            f"friends { {p.friend: p.status for p in J.progress(self.state, 1)} } requests {self.requests} held {self.held}"
        )
        assert self.finished is not None
        if self.cancelled:  # over for good: every command is refused, the final frames stay final and paid
            assert self.summary.cancelled and not self.cmd(J.AskForTask, friend=sorted(self.kind)[0]) and not self.cmd(J.CancelJob)
            assert sum(self.finished.frame_points.values()) == len(self.final_seen)
        self.final_frames_only_grow()
        self.report_pays_honest_work_within_escrow()
        self.no_forgery_of_a_whole_forger_is_ever_final()  # over the whole job, run to its end
        self.no_final_frame_rests_on_a_caught_friend()
        if self.crop and not self.switched and self.checking and not self.cancelled:
            # Run to its end, no forgery is final, whoever forged it and whoever vouched for it (Rules 14-15).
            for frame, ff in self.final_seen.items():
                assert ff.sha256 == truth(frame), f"forged frame {frame} of {ff.friend} ({self.kind[ff.friend]}) is final at the end"
        # Replay: the logged events, through the codec's JSON, rebuild the same state.
        events = [codec.from_json(*row.split("\n", 1)) for row in self.log]
        assert fold(J.evolve, J.Requester(), events) == self.state


def _fields(task: J.TaskAssigned) -> dict:
    return {k: getattr(task, k) for k in ("job", "task", "friend", "kind", "frames", "checks", "backup_of", "deadline", "now")}


Pool.TestCase.settings = settings(
    max_examples=120, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestPool = Pool.TestCase
