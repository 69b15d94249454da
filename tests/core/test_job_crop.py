"""Crop checks in the requester's core: a secret window over every delivered frame, checkers drawn at random, trusted first."""

from __future__ import annotations

import pytest

from frender import codec
from frender.core import job as J
from test_job_schedule import Run, image, of  # the hand-driven job (pytest puts tests/core on sys.path)

BLACK = "b" * 64


def crop_run(frames=range(1, 13), reputations=None, **settings) -> Run:
    reputations = reputations or {"a": 0, "b": 0, "c": 0}
    settings = {"crop_checks": True, "random_order": True, "max_chunk": 2, "batch_size": 2, **settings}
    run = Run(frames=frames, friends=(), escrow=J.JobSettings(**settings).checks_to_escrow(len(frames), len(reputations)), **settings)
    run.do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner="o-" + f, reputation=r) for f, r in reputations.items()))
    return run


def play(run: Run, cheats: dict[str, str] | None = None, rounds: int = 400, deliver: bool = True) -> list[object]:
    """Friends pull in turn; a crop of a frame hashes as the frame's own image, so honest crops agree at once.
    ``deliver`` False: friends take tasks and never deliver (a job left to its deadlines)."""
    cheats = cheats or {}
    out: list[object] = []
    names = sorted(run.job.friends)
    for i in range(rounds):
        if run.finished:
            break
        friend = names[i % len(names)]
        asked = run.do(J.AskForTask, friend=friend)
        out += asked
        answer(run, out)
        tasks = of(asked, J.TaskAssigned)
        if not tasks or not deliver:
            continue
        out += run.deliver(tasks[0], sha=(lambda f: BLACK) if cheats.get(friend) == "black" else image)
        answer(run, out)
    return out


def answer(run: Run, events: list[object]) -> None:
    """The shell: a comparator on content hashes and the requester's own honest renders, each request answered once."""
    done = run.__dict__.setdefault("answered", set())
    for e in list(events):
        key = (type(e).__name__, getattr(e, "check", None), getattr(e, "against", None), getattr(e, "purpose", None))
        if key in done or not isinstance(e, (J.ComparisonRequested, J.OwnRenderRequested)):
            continue
        done.add(key)
        if isinstance(e, J.ComparisonRequested):
            same = e.a_sha256 == e.b_sha256
            more = run.do(J.RecordComparison, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256,
                          verdict="identical" if same else "disagree", fraction_off=0.0 if same else 0.9, psnr=99.0 if same else 9.0)
        else:
            c = J.check_of(run.state, 1, e.check)
            if c is None or c.state not in ("own", "arbitrating", "framing"):
                continue  # voided meanwhile (its subject was caught): the shell renders only live requests
            more = run.do(J.RecordOwnRender, check=e.check, sha256=image(e.frame))
        answer(run, more)  # extends ``more`` with what follows
        events += more


def test_every_delivered_frame_gets_a_crop_check_over_a_secret_window_of_a_sixteenth() -> None:
    """Each delivered frame is drawn once for a crop check whose window covers at least 1/16 of the grid, inside it."""
    run = crop_run()
    events = play(run)
    assert run.finished
    drawn = of(events, J.ChecksDrawn)
    tests = [f for d in drawn for f in d.tests]
    assert sorted(tests) == list(range(1, 13))
    for d in drawn:
        assert len(d.windows) == len(d.tests) == len(d.draws)
        for w in d.windows:
            assert w.w * w.h * 16 >= J.events.WINDOW_GRID ** 2
            assert 0 <= w.x and w.x + w.w <= J.events.WINDOW_GRID and 0 <= w.y and w.y + w.h <= J.events.WINDOW_GRID
    assert len({(w.x, w.y) for d in drawn for w in d.windows}) > 1  # placed at random, not in one spot


def test_a_crop_check_is_one_task_of_one_frame_rendered_by_another_owner() -> None:
    """A crop check task holds one frame, and its verifier never is the subject nor a friend of the subject's owner."""
    run = crop_run()
    events = play(run)
    checks = {c.check: c for c in J.checks(run.state, 1)}
    for t in of(events, J.TaskAssigned):
        if t.kind == "check":
            assert len(t.frames) == 1
            c = checks[t.checks[0]]
            assert c.window is not None and t.friend != c.subject
            assert run.job.friends[t.friend].owner != run.job.friends[c.subject].owner


def test_trusted_friends_check_before_probationary_ones() -> None:
    """With a trusted friend eligible, probationary friends never check each other: every check of theirs goes to it."""
    run = crop_run(reputations={"a": 0, "b": 0, "t": 5})
    events = play(run)
    checks = {c.check: c for c in J.checks(run.state, 1)}
    for t in of(events, J.TaskAssigned):
        if t.kind == "check" and checks[t.checks[0]].subject != "t":
            assert t.friend == "t"


def test_checkers_are_drawn_at_random_among_eligible_friends() -> None:
    """Among several eligible friends of one tier, a subject's checks go to more than one of them."""
    run = crop_run(frames=range(1, 41), reputations={f: 0 for f in "abcdef"}, spots_per_batch=1)  # one window a batch for peers
    events = play(run, rounds=2000)
    checks = {c.check: c for c in J.checks(run.state, 1)}
    by_subject: dict[str, set[str]] = {}
    for t in of(events, J.TaskAssigned):
        if t.kind == "check":
            by_subject.setdefault(checks[t.checks[0]].subject, set()).add(t.friend)
    assert any(len(v) > 1 for v in by_subject.values())


def test_a_spot_window_is_rendered_by_the_requester_alone() -> None:
    """Rule 11 (spot_alone): a spotted window is the requester's render only, never a peer's task judged again."""
    run = crop_run(frames=range(1, 25), reputations={f: 0 for f in "abc"}, batch_size=4, max_chunk=4, spot_alone=True)
    events = play(run, rounds=2000)
    drawn = of(events, J.ChecksDrawn)
    assert drawn and all(d.spots and set(d.spots) <= set(d.own) for d in drawn)
    spotted = {d.first_check + d.tests.index(f) for d in drawn for f in d.spots}
    peer_checked = {cid for t in of(events, J.TaskAssigned) if t.kind == "check" for cid in t.checks}
    assert peer_checked and not peer_checked & spotted
    own = {e.check for e in of(events, J.OwnRenderRequested)}
    assert spotted <= own


def test_a_lone_forger_is_caught_and_none_of_its_frames_is_final() -> None:
    """A friend delivering black frames meets a crop check on its first batch: evicted, and every final frame is honest."""
    run = crop_run()
    events = play(run, cheats={"b": "black"})
    assert run.finished
    assert {e.friend for e in of(events, J.CheaterEvicted)} == {"b"}
    finals = [ff for e in of(events, J.FramesFinal) for ff in e.frames]
    assert sorted(ff.frame for ff in finals) == list(range(1, 13))
    assert all(ff.sha256 == image(ff.frame) for ff in finals)


@pytest.mark.parametrize("crop", [True, False])
def test_settings_and_draws_round_trip_and_old_bodies_keep_their_bytes(crop: bool) -> None:
    """New settings and fields are left out of a body at their defaults; every event decodes to itself."""
    run = crop_run(crop_checks=crop)
    for e in play(run):
        assert codec.from_json(codec.tag_of(e), codec.to_json(e)) == e
    body = codec.to_json(J.JobStarted(job=1, frames=(1,), settings=J.JobSettings(), adaptive=False, checks_escrowed=1, now=0.0))
    assert "crop_checks" not in body and "trusted_from" not in body
    assert '"crop_checks":false' in codec.to_json(J.JobStarted(job=1, frames=(1,), settings=J.JobSettings(crop_checks=False), adaptive=False,
                                                                checks_escrowed=1, now=0.0))


def owners_run(owners: dict[str, str], reputations: dict[str, int], frames=range(1, 25), **settings) -> Run:
    settings = {"crop_checks": True, "random_order": True, "max_chunk": 2, "batch_size": 2, **settings}
    run = Run(frames=frames, friends=(), escrow=J.JobSettings(**settings).checks_to_escrow(len(frames), len(owners)), **settings)
    run.do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner=o, reputation=reputations.get(f, 0)) for f, o in owners.items()))
    return run


@pytest.mark.parametrize("seed", range(6))
def test_colluders_vouching_for_each_other_are_both_evicted_and_no_forgery_is_final(seed: int) -> None:
    """Two probationary friends of different owners forge the same image and vouch for each other: the requester's
    spot check on every probationary batch convicts both, no forged frame becomes final, the honest friend stays."""
    run = owners_run({"a": "m1", "b": "m2", "c": "honest"}, {}, frames=range(1, 13 + seed))
    run.n = seed * 1000  # another entropy stream per case
    events = play(run, cheats={"a": "black", "b": "black"}, rounds=4000)
    assert run.finished
    assert {e.friend for e in of(events, J.CheaterEvicted)} == {"a", "b"}
    finals = [ff for e in of(events, J.FramesFinal) for ff in e.frames]
    assert sorted(ff.frame for ff in finals) == list(range(1, 13 + seed))
    assert all(ff.sha256 == image(ff.frame) for ff in finals)


def test_every_probationary_batch_is_spot_checked_and_trusted_ones_rarely() -> None:
    """A probationary friend's every batch carries its spot checks; a long-trusted friend's fewer batches (its first in
    the job always), never none in the long run."""
    trusted_friends = {f: 1000 for f in "tuvw"}
    run = owners_run({"p": "o1"} | {f: "o-" + f for f in trusted_friends}, trusted_friends, frames=range(1, 301), spot_floor=0.15)
    events = play(run, rounds=9000)
    assert run.finished
    drawn = of(events, J.ChecksDrawn)
    probation = [d for d in drawn if d.subject == "p"]
    trusted = [d for d in drawn if d.subject != "p"]
    assert probation and all(len(d.spots) == min(run.job.settings.spots_per_batch, len(d.tests)) for d in probation)
    spotted = sum(1 for d in trusted if d.spots)
    assert 0 < spotted < len(trusted) / 2  # the first batch of each, then the floor (15% here): far from every batch
    [finished] = of(events, J.JobFinished)
    # Drawn spot checks, plus the agreed checks the requester judged to anchor a friend it had not checked yet (Rule 14).
    agreed_judged = [c for c in J.checks(run.state, 1) if c.arbitration_sha256 and c.pair is not None and c.pair.verdict != "disagree"]
    # With spot_alone a spot is the requester's render alone (own), counted with them.
    spots_alone = sum(1 for c in J.checks(run.state, 1) if c.spot and c.own)
    assert finished.report.spot_checks == len(agreed_judged) + spots_alone >= sum(len(d.spots) for d in drawn)


def test_renders_are_handed_out_from_random_places_so_order_tells_no_re_render_apart() -> None:
    """With random order, first renders often start below frames the friend already had: "lower than before" marks no check."""
    run = owners_run({f: f"o{f}" for f in "abcdefgh"}, {}, frames=range(1, 241), checks_per_friend=0)
    seen: dict[str, int] = {}
    lower = renders = 0
    for i in range(4000):
        if run.finished:
            break
        friend = "abcdefgh"[i % 8]
        task = run.ask(friend)
        if task is None:
            continue
        assert list(task.frames) == sorted(task.frames)
        if task.kind == "render" and friend in seen:
            renders += 1
            lower += min(task.frames) <= seen[friend]
        seen[friend] = max(seen.get(friend, 0), max(task.frames))
        run.deliver(task)
    assert run.finished
    assert renders > 20 and lower / renders > 0.3


def test_frames_beyond_the_escrowed_budget_are_checked_by_the_requester_never_left_unchecked() -> None:
    """When the escrow pays for fewer crop checks than frames, the rest are the requester's own (unpaid) crop checks:
    every delivered frame is still checked before it is final, and a forger is still caught."""
    frames = range(1, 13)
    settings = {"crop_checks": True, "random_order": True, "max_chunk": 2, "batch_size": 2}
    run = Run(frames=frames, friends=(), escrow=1, **settings)  # one check per friend: 3 of the 12 frames
    run.do(J.AddFriends, friends=tuple(J.GrantedFriend(friend=f, owner="o-" + f, reputation=5) for f in ("a", "b", "c")))
    events = play(run, cheats={"c": "black"})
    assert run.finished
    drawn = of(events, J.ChecksDrawn)
    assert {f for d in drawn for f in d.tests} == {f for d in drawn for f in d.frames}  # every frame drawn (a redone one again)
    own = {f for d in drawn for f in d.own}
    assert own  # the budget ran out: the requester took the rest
    rendered_by_us = {e.frame for e in of(events, J.OwnRenderRequested) if e.purpose == "check"}
    assert own <= rendered_by_us
    assert "c" in {e.friend for e in of(events, J.CheaterEvicted)}
    report = J.report(run.state, 1)
    assert report is not None and sum(report.check_points.values()) <= 3  # friends are paid within the escrow only
    assert all(J.final_copy(run.state, 1, f).sha256 == image(f) for f in frames)  # the forger's frames were all redone


def test_a_friend_holds_at_most_its_batches_of_unverified_frames_so_a_fast_forger_cannot_take_the_queue() -> None:
    """Rule 13: a probationary friend that delivers at once gets no more renders while two batches of its frames
    await their checks (a trusted one, four); once its checks pass it renders again."""
    run = owners_run({"p": "o1", "t": "o2", "u": "o3"}, {"t": 10, "u": 10}, frames=range(1, 61))
    taken = 0
    early: list[object] = []  # what the requester is asked meanwhile (its own spot renders), answered below
    while (task := run.ask("p")) is not None and task.kind == "render":
        taken += len(task.frames)
        early += run.deliver(task)
    assert taken == 2 * 2  # two batches of two: nothing more until a check passes
    assert J.queued(run.state, 1)  # frames are left: the limit, not the queue, stopped it
    run_t = owners_run({"t": "o2", "u": "o3"}, {"t": 10, "u": 10}, frames=range(1, 61))
    taken = 0
    while (task := run_t.ask("t")) is not None and task.kind == "render":
        taken += len(task.frames)
        run_t.deliver(task)
    assert taken == 4 * 2
    answer(run, early)
    events = play(run, rounds=4000)  # everyone renders and checks: the job completes, the limit lifting as checks pass
    assert run.finished and not of(events, J.CheaterEvicted)


def test_a_friend_asking_while_the_requester_is_behind_gets_checks_only_and_renders_again_once_admitted() -> None:
    """Rule 21: an ask with ``admit`` False (the requester's own checks are behind) hands out the friend's pending
    checks, never frames to render; with ``admit`` True the same friend renders again, and the job completes."""
    run = owners_run({"a": "o1", "b": "o2", "c": "o3"}, {"a": 10, "b": 10, "c": 10}, frames=range(1, 13), spot_floor=0.0, spot_trust_scale=0.0)
    first = run.ask("a")
    assert first is not None and first.kind == "render"
    events = run.deliver(first)  # a's batch closes: checks of its frames are drawn for b or c
    drawn = [t for e in of(events, J.ChecksDrawn) for t in e.tests]
    assert drawn
    takers = J.check_takers(run.state, 1)
    assert takers and takers <= {"b", "c"}  # who a pending check goes to: never a's own
    checked = 0
    for friend in ("b", "c"):
        while (task := run.do(J.AskForTask, friend=friend, admit=False)) and of(task, J.TaskAssigned):
            [got] = of(task, J.TaskAssigned)
            assert got.kind == "check"  # checks only
            checked += len(got.frames)
            answer(run, run.deliver(got))
        assert not of(run.do(J.AskForTask, friend=friend, admit=False), J.TaskAssigned)
        assert friend not in J.check_takers(run.state, 1)
    assert checked == len(drawn)  # every check of a's batch was taken while renders were held back
    assert J.queued(run.state, 1)  # frames were left: admission, not the queue, held them back
    again = run.ask("b")
    assert again is not None and again.kind == "render"
    events = play(run, rounds=4000)
    assert run.finished and not of(events, J.CheaterEvicted)


def test_own_renders_ahead_counts_the_frames_out_with_friends_the_requester_will_spot() -> None:
    """Rule 21: frames in live renders and open batches count as the requester's own renders to come, each by the
    chance its batch is spotted: all of a probationary friend's and of a friend's first batch, a trusted friend's
    later ones at its spot chance; and all of them again for a friend only one account may check."""
    trusted = {"t": 1000, "u": 1000, "v": 1000}
    run = owners_run({"p": "o1", "t": "o2", "u": "o3", "v": "o4"}, trusted, frames=range(1, 41), spots_per_batch=1, batch_size=2)
    assert J.own_renders_ahead(run.state) == 0
    task = run.ask("p")
    assert task is not None and task.kind == "render" and len(task.frames) == 2
    assert J.own_renders_ahead(run.state) == 1  # probationary: its batch spotted, one window of two
    run.do(J.DeliverFrame, friend="p", task=task.task, frame=task.frames[0], sha256=image(task.frames[0]), ok=True)
    assert J.own_renders_ahead(run.state) == 1  # one delivered, its batch not closed yet: still to come
    first = run.ask("t")
    assert first is not None
    assert J.own_renders_ahead(run.state) == 2  # t's first batch in the job: spotted
    answer(run, run.deliver(first))  # its batch closes and its spot is judged
    later = run.ask("t")
    assert later is not None and later.kind == "render"
    floor = J.JobSettings().spot_floor  # reputation 1000: the floor
    assert J.own_renders_ahead(run.state) == pytest.approx(1 + floor * len(later.frames) / 2)
    alone = owners_run({"p": "o1", "t": "o2"}, {"t": 1000}, frames=range(1, 41), spots_per_batch=1, batch_size=2)
    task = alone.ask("t")
    assert task is not None and J.own_renders_ahead(alone.state) == len(task.frames)  # p alone may check it: every window


def test_only_friends_whose_every_batch_the_requester_checks_are_held_back() -> None:
    """Rule 21: ``spotted_always`` names the friends admission holds back: a probationary one, any friend before its
    first batch in the job is spotted, one only a single account may check; not a trusted friend past its first
    batch, whose batches are spotted now and then (a flood of fresh accounts never holds it back)."""
    run = owners_run({"p": "o1", "t": "o2", "u": "o3", "v": "o4"}, {"t": 1000, "u": 1000, "v": 1000}, frames=range(1, 41),
                     spots_per_batch=1, batch_size=2)  # fmt: skip
    assert J.spotted_always(run.state, 1, "p") and J.spotted_always(run.state, 1, "t")  # p probationary, t's first batch
    first = run.ask("t")
    assert first is not None
    answer(run, run.deliver(first))  # t's first batch spotted and judged
    assert not J.spotted_always(run.state, 1, "t") and J.spotted_always(run.state, 1, "p")
    alone = owners_run({"p": "o1", "t": "o2"}, {"t": 1000}, frames=range(1, 41), spots_per_batch=1, batch_size=2)
    first = alone.ask("t")
    assert first is not None
    answer(alone, alone.deliver(first))
    assert J.spotted_always(alone.state, 1, "t")  # only p's account may check it: every window is the requester's


def test_a_fast_forger_loses_at_most_its_unverified_batches() -> None:
    """While its checkers are busy rendering, a forger delivering black at once takes at most two batches: the rest of
    the queue waits for honest friends instead of being forged and rendered again. It is then evicted."""
    run = owners_run({"x": "o1", "t": "o2", "u": "o3"}, {"t": 10, "u": 10}, frames=range(1, 41))
    busy = [run.ask("t"), run.ask("u")]  # the trusted friends are rendering their first tasks
    forged = 0
    events: list[object] = []
    while (task := run.ask("x")) is not None and task.kind == "render":
        forged += len(task.frames)
        events += run.deliver(task, sha=lambda f: BLACK)
    assert forged == 2 * 2
    events += [e for task in busy if task is not None for e in run.deliver(task)]
    answer(run, events)  # the requester's own spot renders asked meanwhile
    events += play(run, cheats={"x": "black"}, rounds=4000)
    assert run.finished
    assert {e.friend for e in of(events, J.CheaterEvicted)} == {"x"}
    assert all(ff.sha256 == image(ff.frame) for e in of(events, J.FramesFinal) for ff in e.frames)


def test_is_check_task_tells_check_renders_from_frame_renders() -> None:
    """The shell sends a check's render before frames (the requester's turns): the query names exactly the check tasks."""
    run = crop_run()
    events = play(run)
    assigned = of(events, J.TaskAssigned)
    assert any(t.kind == "check" for t in assigned) and any(t.kind != "check" for t in assigned)
    for t in assigned:
        assert J.is_check_task(run.state, 1, t.task) == (t.kind == "check")
    assert not J.is_check_task(run.state, 1, 10_000)  # no such task
