"""The verification circle in the requester's core: checks, arbitration, eviction, calibration, finality, report."""

from __future__ import annotations

import pytest

from frender import codec
from frender.core import job as J
from frender.core._decider import Rejected
from test_job_schedule import Run, image, of  # the hand-driven job (pytest puts tests/core on sys.path)

BLACK = "b" * 64


def rendered(run: Run, friend: str, sha=image) -> list[object]:
    """``friend`` asks and delivers until it gets nothing."""
    out: list[object] = []
    while not run.finished:
        task = run.ask(friend)
        if task is None:
            return out
        out += run.deliver(task, sha)
    return out


def answer(run: Run, events: list[object]) -> None:
    """The shell: a comparator on content hashes and the requester's own honest renders."""
    for e in events:
        if isinstance(e, J.ComparisonRequested):
            same = e.a_sha256 == e.b_sha256
            answer(run, run.do(J.RecordComparison, check=e.check, against=e.against, a_sha256=e.a_sha256, b_sha256=e.b_sha256,
                               verdict="identical" if same else "disagree",
                               fraction_off=0.0 if same else 0.9, psnr=99.0 if same else 9.0))
        elif isinstance(e, J.OwnRenderRequested):
            answer(run, run.do(J.RecordOwnRender, check=e.check, sha256=image(e.frame)))


@pytest.mark.parametrize(
    ("vs_subject", "vs_verifier", "outcome", "evicted"),
    [
        ("disagree", "identical", "subject_wrong", {"subject"}),
        ("identical", "disagree", "verifier_wrong", {"verifier"}),
        ("disagree", "disagree", "both_wrong", {"subject", "verifier"}),
        ("close", "identical", "calibration", set()),
        ("close", "close", "calibration", set()),
        ("lazy", "identical", "subject_wrong", {"subject"}),
        ("identical", "lazy", "verifier_wrong", {"verifier"}),
    ],
)
def test_arbitration_decides_who_was_wrong(vs_subject: str, vs_verifier: str, outcome: str, evicted: set) -> None:
    """Disagree -> the requester renders; far from the arbitration is evicted, close is calibration."""
    run = Run(frames=(1, 2), friends=("a", "b"), escrow=1, check_timing="end", max_chunk=1, checks_per_friend=1)
    ta, tb = run.ask("a"), run.ask("b")
    assert ta and tb
    events = run.deliver(ta) + run.deliver(tb)
    drawn = of(events, J.ChecksDrawn)
    assert {d.subject for d in drawn} == {"a", "b"}
    # Each checks the other: a's test task is b's frame and vice versa.
    ca, cb = run.ask("a"), run.ask("b")
    assert ca.kind == cb.kind == "check"
    run.deliver(cb)  # b renders a's frame honestly: agreed
    events = run.deliver(ca, sha=lambda f: BLACK)  # a returns a wrong copy of b's frame
    [request] = of(events, J.ComparisonRequested)
    events = run.do(J.RecordComparison, check=request.check, a_sha256=request.a_sha256, b_sha256=request.b_sha256,
                    verdict="disagree", fraction_off=0.4, max_diff=255, psnr=9.0)
    [arb] = of(events, J.OwnRenderRequested)
    assert arb.purpose == "arbitration"
    events = run.do(J.RecordOwnRender, check=arb.check, sha256="c" * 64)
    shas = {r.against: (r.a_sha256, r.b_sha256) for r in of(events, J.ComparisonRequested)}
    figures = {
        "identical": dict(verdict="agree", fraction_off=0.0, max_diff=2, psnr=50.0),
        "close": dict(verdict="disagree", fraction_off=0.0003, max_diff=6, psnr=60.0),
        "lazy": dict(verdict="disagree", fraction_off=0.022, max_diff=41, psnr=48.3),  # a quarter of the samples, denoised
        "disagree": dict(verdict="disagree", fraction_off=0.5, max_diff=255, psnr=9.0),
    }
    for against, how in (("subject", vs_subject), ("verifier", vs_verifier)):
        a, b = shas[against]
        events = run.do(J.RecordComparison, check=arb.check, against=against, a_sha256=a, b_sha256=b, **figures[how])
    [resolved] = of(events, J.CheckResolved)[:1]
    assert resolved.outcome == outcome and resolved.subject == "b" and resolved.verifier == "a"
    names = {"subject": "b", "verifier": "a"}
    assert {e.friend for e in of(events, J.CheaterEvicted)} == {names[p] for p in evicted}
    for e in of(events, J.CheaterEvicted):
        assert e.evidence.frame == resolved.frame and e.evidence.arbitration_sha256 == "c" * 64
        assert e.evidence.pair is not None and e.evidence.pair.psnr == 9.0
    if outcome == "calibration":
        assert ("a", "b") in run.job.checks.calibrated


def test_eviction_closes_the_ring_and_requeues_non_final_frames() -> None:
    """The evicted friend leaves the ring; its non-final frames go back; its checks are re-assigned."""
    run = Run(frames=range(1, 7), friends=("a", "b", "c"), escrow=2, check_timing="end", max_chunk=2)
    cheat = run.ask("c")
    assert cheat
    answer(run, run.deliver(cheat, sha=lambda f: BLACK))
    assert J.verifier_of(run.state, 1, "c") in ("a", "b")
    for _ in range(6):
        for friend in ("a", "b", "c"):
            answer(run, rendered(run, friend, sha=lambda f: BLACK if friend == "c" else image(f)))
        if "c" in J.summary(run.state, 1).evicted:
            break
    assert "c" in J.summary(run.state, 1).evicted and "c" not in run.job.checks.ring
    assert all(J.final_copy(run.state, 1, f).friend != "c" for f in J.summary(run.state, 1).final)
    answer(run, rendered(run, "a") + rendered(run, "b"))
    answer(run, rendered(run, "a") + rendered(run, "b"))
    assert run.finished
    report = J.report(run.state, 1)
    assert report is not None and "c" not in report.payouts and "c" in report.evictions
    assert sum(report.payouts.values()) <= report.escrow
    assert tuple(report.evictions) == ("c",)


def test_batch_timing_makes_frames_final_while_the_job_runs() -> None:
    """Per batch, a friend's first frames become final before the queue empties."""
    run = Run(frames=range(1, 41), friends=("a", "b"), escrow=5, check_timing="batch", batch_size=4, max_chunk=4)
    events = run.deliver(run.ask("a")) + run.deliver(run.ask("b"))
    assert of(events, J.ChecksDrawn) and run.queue
    events = run.deliver(run.ask("a")) + run.deliver(run.ask("b"))
    assert of(events, J.FramesFinal) and run.queue


def test_end_timing_finalises_only_when_the_share_is_done() -> None:
    """The paper's scheme: no frame is final while the queue still has work."""
    run = Run(frames=range(1, 21), friends=("a", "b"), escrow=1, check_timing="end", max_chunk=2)
    while run.queue:
        for friend in ("a", "b"):
            task = run.ask(friend)
            if task:
                assert not of(run.deliver(task), J.FramesFinal) or not run.queue


def test_a_single_friend_is_checked_by_the_requester() -> None:
    """A ring of one: the requester renders the test frames itself."""
    run = Run(frames=(1,), friends=("a",), escrow=1, check_timing="end")
    events = run.deliver(run.ask("a"))
    [own] = of(events, J.OwnRenderRequested)
    assert own.purpose == "check"
    events = run.do(J.RecordOwnRender, check=own.check, sha256=image(own.frame))
    assert of(events, J.JobFinished)


def test_events_round_trip_through_the_codec() -> None:
    """Every event the core emits has a tag and survives canonical JSON."""
    run = Run(frames=(1,), friends=("a",), escrow=1)
    events = run.deliver(run.ask("a"))
    events += run.do(J.RecordOwnRender, check=of(events, J.OwnRenderRequested)[0].check, sha256=image(1))
    for e in events:
        assert codec.from_json(codec.tag_of(e), codec.to_json(e)) == e


def test_a_step_the_table_lacks_is_refused_naming_the_job_the_state_and_the_step() -> None:
    """A second own render for a resolved check misses the transition table: one clean error, state unchanged."""
    run = Run(frames=(1, 2), friends=("a",), escrow=2, check_timing="batch", batch_size=1, max_chunk=1)
    [own] = of(run.deliver(run.ask("a")), J.OwnRenderRequested)
    assert of(run.do(J.RecordOwnRender, check=own.check, sha256=image(own.frame)), J.CheckResolved)
    before = run.job.clone()
    with pytest.raises(Rejected) as err:
        run.do(J.RecordOwnRender, check=own.check, sha256=image(own.frame))
    assert err.value.code == "check-state"
    assert err.value.reason == f"can't handle rendered when check {own.check} of job 1 is resolved"
    assert run.job == before
