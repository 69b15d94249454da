"""Rule 19: a window never evicts alone; when an engine renders a window unlike its frame, nobody honest pays for it."""

from __future__ import annotations

import hashlib

import pytest

from frender import codec
from frender.apps.replay import story_line
from frender.core import job as J
from frender.core._decider import fold
from test_job_crop import crop_run  # the hand-driven crop job (pytest puts tests/core on sys.path)
from test_job_schedule import Run, image, of

BLACK = "b" * 64


def engine_window(frame: int) -> str:
    """What an engine whose border crop differs from its frame renders for a window of ``frame`` (every time)."""
    return hashlib.sha256(f"window of frame {frame}".encode()).hexdigest()


def play(run: Run, cheats: dict[str, str] | None = None, unequal: bool = True, rounds: int = 600) -> list[object]:
    """Friends pull in turn and render honestly (but for ``cheats``); with ``unequal`` every window, the
    requester's own included, comes out unlike the same pixels of the frame, as EEVEE's do on a real file."""
    cheats = cheats or {}
    out: list[object] = []
    names = sorted(run.job.friends)
    for i in range(rounds):
        if run.finished:
            break
        friend = names[i % len(names)]
        asked = run.do(J.AskForTask, friend=friend)
        out += asked
        answer(run, out, unequal)
        tasks = of(asked, J.TaskAssigned)
        if not tasks or run.job.friends[friend].status == "evicted":
            continue
        task = tasks[0]
        windows = {c.frame for c in J.checks(run.state, 1) if c.task == task.task and c.window is not None}

        def sha(frame: int, task=task, windows=windows) -> str:
            cheat = cheats.get(task.friend)
            if cheat == "black" or (cheat == "smart" and frame not in windows):  # smart: renders every window it is given
                return BLACK
            return engine_window(frame) if unequal and frame in windows else image(frame)

        out += run.deliver(task, sha=sha)
        answer(run, out, unequal)
    return out


def answer(run: Run, events: list[object], unequal: bool) -> None:
    """The shell: a comparator on content hashes, and the requester's own honest renders (a window or the whole frame)."""
    done = run.__dict__.setdefault("answered", set())
    for e in list(events):
        if not isinstance(e, (J.ComparisonRequested, J.OwnRenderRequested)):
            continue
        key = (type(e).__name__, e.check, getattr(e, "against", None), getattr(e, "purpose", None))
        if key in done:
            continue
        done.add(key)
        if isinstance(e, J.ComparisonRequested):
            same = e.a_sha256 == e.b_sha256
            more = run.do(J.RecordComparison, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256,
                          verdict="identical" if same else "disagree", fraction_off=0.0 if same else 0.72, max_diff=0 if same else 115,
                          psnr=99.0 if same else 21.0)
        else:
            c = J.check_of(run.state, 1, e.check)
            window = c is not None and c.window is not None and e.purpose != J.Purpose.FRAME
            more = run.do(J.RecordOwnRender, check=e.check, sha256=engine_window(e.frame) if unequal and window else image(e.frame))
        answer(run, more, unequal)
        events += more


def test_honest_friends_are_never_evicted_when_the_engine_crops_unlike_its_frame() -> None:
    """Every window differs from its frame (the engine's doing): the requester's whole frame clears the friend, the job
    switches to whole frames, finishes, and every final frame is the honest one."""
    run = crop_run()
    events = play(run)
    assert run.finished
    assert of(events, J.CheaterEvicted) == []
    unequal = of(events, J.CropsUnequal)
    assert unequal and all(u.window.verdict == "disagree" and u.whole.verdict != "disagree" for u in unequal)
    assert not run.job.settings.crop_checks
    finals = [ff for e in of(events, J.FramesFinal) for ff in e.frames]
    assert sorted(ff.frame for ff in finals) == list(range(1, 13))
    assert all(ff.sha256 == image(ff.frame) for ff in finals)
    whole = [e for e in of(events, J.OwnRenderRequested) if e.purpose == J.Purpose.FRAME]
    assert whole and len(whole) <= len(of(events, J.CheckResolved))


def test_after_crops_are_found_unequal_checks_are_whole_frames() -> None:
    """Checks drawn after ``CropsUnequal`` carry no window, and windows no one rendered yet became whole test frames."""
    run = crop_run(frames=range(1, 25))
    events = play(run)
    assert run.finished
    at = next(i for i, e in enumerate(events) if isinstance(e, J.CropsUnequal))
    assert all(not d.windows for d in of(events[at:], J.ChecksDrawn))
    before = {c for t in of(events[:at], J.TaskAssigned) for c in t.checks}
    after = [c for t in of(events[at:], J.TaskAssigned) if t.kind == "check" for c in t.checks if c not in before]
    assert after and all(J.check_of(run.state, 1, c).window is None for c in after)


@pytest.mark.parametrize("cheat", ["black", "smart"])
def test_a_forger_is_still_caught_when_the_engine_crops_unlike_its_frame(cheat: str) -> None:
    """A friend forging its frames in a job whose windows are unequal is evicted (a smart one, rendering every window
    honestly, on the requester's whole frame: ``vs_frame``); no forged frame is final."""
    run = crop_run()
    events = play(run, cheats={"b": cheat})
    assert run.finished
    evicted = of(events, J.CheaterEvicted)
    assert {e.friend for e in evicted} == {"b"}
    for e in evicted:  # a subject is evicted on a whole frame only: a whole test frame, or the requester's (Rule 19)
        if e.evidence.subject == e.friend:
            assert J.check_of(run.state, 1, e.evidence.check).window is None or e.evidence.vs_frame.verdict == "disagree"
    finals = [ff for e in of(events, J.FramesFinal) for ff in e.frames]
    assert sorted(ff.frame for ff in finals) == list(range(1, 13))
    assert all(ff.sha256 == image(ff.frame) for ff in finals)


def test_equal_crops_cost_no_whole_frame() -> None:
    """Where windows equal their frames, no whole frame is rendered and crops stay on: the rule costs honest jobs nothing."""
    run = crop_run()
    events = play(run, unequal=False)
    assert run.finished
    assert of(events, J.CropsUnequal) == [] and run.job.settings.crop_checks
    assert all(e.purpose != J.Purpose.FRAME for e in of(events, J.OwnRenderRequested))


def test_the_log_explains_the_switch_and_replays_to_the_same_state() -> None:
    """``crops_unequal.v1`` round-trips through the codec, replay folds the log to the state that decided, and the
    story says why nobody was evicted."""
    run = logged_run()
    events = play(run)
    for e in run.log:
        assert codec.from_json(codec.tag_of(e), codec.to_json(e)) == e
    replayed = fold(J.evolve, J.Requester(), run.log)
    assert replayed.jobs[1].settings == run.job.settings and not replayed.jobs[1].settings.crop_checks
    assert J.checks(replayed, 1) == J.checks(run.state, 1)
    line = story_line(of(events, J.CropsUnequal)[0])
    assert "engine" in line and "whole frames" in line
    # Old bodies keep their bytes: the new fields are left out at their defaults.
    assert "whole" not in codec.to_json(J.OwnRenderReceived(job=1, check=1, sha256="s", now=0.0))
    evidence = J.Evidence(check=1, frame=1, subject="a", subject_sha256="s", verifier=None, verifier_sha256="s", arbitration_sha256="s")
    assert "vs_frame" not in codec.to_json(J.CheaterEvicted(job=1, friend="a", evidence=evidence, discarded=(), now=0.0))


class LoggedRun(Run):
    """The hand-driven job, keeping every event it evolved: its log."""

    def do(self, command: type, **kw) -> list[object]:
        events = super().do(command, **kw)
        self.__dict__.setdefault("log", []).extend(events)
        return events


def logged_run() -> LoggedRun:
    settings = {"crop_checks": True, "random_order": True, "max_chunk": 2, "batch_size": 2}
    frames = range(1, 13)
    run = LoggedRun(frames=frames, friends=(), escrow=J.JobSettings(**settings).checks_to_escrow(len(frames), 3), **settings)
    run.do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner="o-" + f) for f in "abc"))
    return run
