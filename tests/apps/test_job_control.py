"""Job control on a real master, requester and in-process friends (the modelled backend): a job short of
friends grows as they free up, a cancel releases its friends, refunds what was not earned and keeps its
final frames, and `frender jobs` lists it all."""

from __future__ import annotations

import functools
import logging

import trio
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from frender.apps import messages as msg
from frender.apps import artist, out_folder, words
from frender.apps.cli import app
from frender.apps.friend import run_friend
from frender.apps.progress import job_view, print_jobs
from frender.apps.replay import audit
from frender.apps.web._page import job_state
from frender.apps.requester import RequesterSettings
from frender.blender import ModelledBackend
from frender.core import job as job_core
from frender.transports import FileHeader, FileLink
from test_requester_node import Job, requester
from test_security import LIMITS, World

SLOW = ModelledBackend(0.4, resolution=(32, 18), frame_range=(1, 30))  # 30 frames of 0.4 s: time to cancel mid-job
SETTINGS = RequesterSettings(
    job=job_core.JobSettings(seconds_per_frame=1.0, startup_seconds=1.0, check_timing="batch", batch_size=1, max_chunk=1),
    tick=0.1,
    grow_every=0.2,
)


async def _until(check, timeout: float = 30.0, every: float = 0.1):
    with trio.fail_after(timeout):
        while not (result := await check()):
            await trio.sleep(every)
        return result


async def _friend(world: World, nursery: trio.Nursery, user: str) -> None:
    nursery.start_soon(
        functools.partial(run_friend, master=world.master, user=user, name="pc", home=world.tmp / user, backend=SLOW, threads=1, log=lambda line: None)
    )


async def test_a_short_job_grows_then_a_cancel_releases_refunds_and_keeps_final_frames(tmp_path, nursery):
    """--friends 2 with one live friend starts on one and says so, grows when a second frees up; a cancel
    pays only final frames, refunds the rest, releases both friends and leaves the final frames fetchable."""
    world = World(tmp_path, SETTINGS, bound=("alice", "bob", "carol"), backend=SLOW)
    world.person("carol")
    await world.start(nursery)
    node = world.requester_node
    world.run_requester(nursery)
    await _friend(world, nursery, "bob")
    await _until(lambda: _live(world, 1))
    job = (await world.alice_submits(friends=2, checks=0)).job

    first = await world.call("alice", world.requester, msg.Progress(job=job))
    assert (first.wanted, first.active) == (2, 1)
    await _friend(world, nursery, "carol")  # a friend frees up: the job grows to the two it asked for
    grown = await _until(lambda: _progress_if(world, job, lambda p: p.active == 2))
    assert {line.friend for line in grown.friends} == {"bob/pc", "carol/pc"}

    await _until(lambda: _progress_if(world, job, lambda p: len(p.final) >= 3))
    done = await world.call("alice", world.requester, msg.Cancel(job=job))
    assert isinstance(done, msg.Cancelled) and done.final >= 3 and done.total == 30
    assert done.escrowed == 30 and done.spent == done.final  # no checks: one point per final frame, nothing else
    after = await world.call("alice", world.requester, msg.Progress(job=job))
    assert after.finished and after.cancelled and len(after.final) == done.final

    # The closing report reaches the master: the job closes, friends are released, the rest is refunded.
    master = world.master_node.state
    await _until(lambda: _true(master.jobs[job].closed))
    record = master.jobs[job]
    assert record.paid == done.spent and record.refunded == record.escrow - done.spent
    assert master.accounts["alice"].balance == 100 - done.spent
    assert sum(master.accounts[u].balance + master.accounts[u].held for u in ("bob", "carol")) == done.spent  # held until confirmed (Rule 12)
    assert all(master.friends[f].job is None for f in ("bob/pc", "carol/pc"))

    # Final frames stay final and are served; frames after the cancel are not.
    async with FileLink(world.requester, world.person("alice"), limits=LIMITS) as link:
        for frame in after.final:
            await link.get(FileHeader(kind="frame", job=job, frame=frame), tmp_path / f"got-{frame}.png", max_size=1 << 20)
    assert all((tmp_path / f"got-{frame}.png").stat().st_size > 0 for frame in after.final)
    assert len(job_core.summary(node.state, job).final) == done.final
    story = [line["text"] for line in audit(tmp_path / "requester.db")["story"]]
    assert any(f"job {job} CANCELLED by its submitter: {done.final} of 30 frames final" in line for line in story)

    # `frender jobs` lists the cancelled job with what it cost; a second cancel says it was cancelled before (exit 0).
    runner = CliRunner()
    listed = await trio.to_thread.run_sync(lambda: runner.invoke(app, ["jobs", "--requester", str(world.requester), "--home", str(tmp_path / "alice")]))
    assert listed.exit_code == 0, listed.output
    [row] = [line.split() for line in listed.output.splitlines() if line.strip().startswith(f"{job} ")]
    assert row == [str(job), "(a", "lone", ".blend)", "cancelled", f"{done.final}/30", "0", f"{done.spent}/30"]
    assert "1-30" in listed.output  # its frames, on the line below
    again = await trio.to_thread.run_sync(
        lambda: runner.invoke(app, ["cancel", str(job), "--requester", str(world.requester), "--home", str(tmp_path / "alice")])
    )
    assert again.exit_code == 0 and f"job {job} was cancelled before: {done.final} of 30 frames final; nothing to cancel" in again.output
    others = await trio.to_thread.run_sync(lambda: runner.invoke(app, ["jobs", "--requester", str(world.requester), "--home", str(tmp_path / "bob")]))
    assert others.exit_code == 0 and "no jobs of yours" in others.output


async def _live(world: World, count: int) -> bool:
    return sum(1 for seen in world.master_node.state.seen.values() if not seen[1]) >= count


async def _progress_if(world: World, job: int, test) -> msg.ProgressReply | None:
    p = await world.call("alice", world.requester, msg.Progress(job=job))
    return p if test(p) else None


async def _true(value: bool) -> bool:
    return value


async def test_an_unreachable_master_is_said_and_retried_visibly(tmp_path, nursery, autojump_clock, caplog):
    """While the master does not answer, the requester logs each retry and the client's progress says so; the cancel is not lost."""
    node = requester(tmp_path)  # its master's address has nobody listening
    run = Job(node, (1, 2, 3), {"a": "bob"}, checks_per_friend=0)
    await run.start()
    await node.apply(job_core.CancelJob(job=1, now=node._now()))
    nursery.start_soon(node.react_forever, nursery)
    with caplog.at_level(logging.WARNING, logger="frender.requester"):
        await trio.sleep(20)
    retries = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(retries) >= 3 and all("retrying in" in line for line in retries)
    problem = node._progress(node.jobs[1]).problem
    assert "master does not answer" in problem and "retrying" in problem
    assert 1 in node.owed.reports  # the closing report is still owed: sent once the master answers


async def test_a_submitted_priority_reaches_the_master_and_frender_jobs(tmp_path, nursery):
    """`submit --priority` travels client -> requester -> master: the master's job holds it and `jobs` shows it."""
    world = World(tmp_path)
    await world.start(nursery)
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    sha = await world.upload("alice")
    submitted = await world.call("alice", world.requester, msg.Submit(user="alice", blend_sha256=sha, friends=3, checks_per_friend=0, priority=7))
    assert world.master_node.state.jobs[submitted.job].priority == 7
    assert world.master_node.state.jobs[submitted.job].waiting == 2  # bob alone was free: two places wait
    [line] = (await world.call("alice", world.requester, msg.Jobs())).jobs
    assert (line.job, line.state, line.priority, line.active, line.wanted, line.final) == (submitted.job, "running", 7, 1, 3, 0)
    assert line.frames == artist.frame_ranges(submitted.frames) and line.frames  # "1-24": which frames, not just how many
    assert (await world.call("bob", world.requester, msg.Jobs())).jobs == ()


async def test_a_job_submitted_while_every_friend_is_busy_waits_then_runs_and_a_waiting_cancel_refunds_all(tmp_path, nursery):
    """With the farm's one friend busy a submit is accepted and waits (progress and `frender jobs` say so and why, only M
    escrowed); a waiting job cancelled gets every point back; once the friend frees up the other runs to the end;
    the master's status then says cancelled and finished, as the requester does."""
    world = World(tmp_path, SETTINGS, bound=("alice", "bob"), backend=SLOW)
    await world.start(nursery)
    node = world.requester_node
    world.run_requester(nursery)
    await _friend(world, nursery, "bob")
    await _until(lambda: _live(world, 1))
    busy = (await world.alice_submits(friends=1, checks=0)).job  # bob's only friend renders this one
    master = world.master_node.state
    assert master.friends["bob/pc"].job == busy

    submit = msg.Submit(user="alice", blend_sha256=world.blend_sha256, frames=(1, 2, 3), friends=1, checks_per_friend=0)
    waiting = (await world.call("alice", world.requester, submit)).job
    cancelled = (await world.call("alice", world.requester, submit)).job
    for job in (waiting, cancelled):
        assert master.jobs[job].friends == [] and master.jobs[job].waiting == 1 and master.jobs[job].escrow == 3
    assert master.accounts["alice"].balance == 100 - 30 - 3 - 3
    p = await world.call("alice", world.requester, msg.Progress(job=waiting))
    assert (p.wanted, p.active, p.delivered, p.finished) == (1, 0, 0, False)
    lines = {line.job: line for line in (await world.call("alice", world.requester, msg.Jobs())).jobs}
    assert lines[waiting].state == "waiting" and (lines[waiting].active, lines[waiting].wanted, lines[waiting].escrowed) == (0, 1, 3)
    await _until(lambda: _true(bool(node.short_why.get(waiting))))  # its requester asked again and heard why not
    p = await world.call("alice", world.requester, msg.Progress(job=waiting))
    assert p.problem == "" and p.waiting == "busy" and "no live, available friend" in p.waiting_detail  # waiting, not stopped
    assert job_state(p) == "waiting" and words.waiting_text(p.waiting) == "waiting: every friend that can render it is busy with other jobs"
    lines = {line.job: line for line in (await world.call("alice", world.requester, msg.Jobs())).jobs}
    assert (lines[waiting].state, lines[waiting].waiting) == ("waiting", "busy")

    # A cancel while it waits: nothing was earned, the master closes it and refunds the whole escrow.
    done = await world.call("alice", world.requester, msg.Cancel(job=cancelled))
    assert isinstance(done, msg.Cancelled) and (done.final, done.escrowed, done.spent) == (0, 3, 0)
    await _until(lambda: _true(master.jobs[cancelled].closed))
    assert master.jobs[cancelled].refunded == 3 and cancelled not in master.waiting
    assert master.accounts["alice"].balance == 100 - 30 - 3

    # The busy job ends (cancelled here): its friend frees up, and the waiting job gets it and runs to the end.
    await world.call("alice", world.requester, msg.Cancel(job=busy))
    finished = await _until(lambda: _progress_if(world, waiting, lambda p: p.finished), timeout=60.0)
    assert sorted(finished.final) == [1, 2, 3] and not finished.cancelled and [line.friend for line in finished.friends] == ["bob/pc"]
    await _until(lambda: _true(master.jobs[waiting].closed))
    assert master.jobs[waiting].paid == 3 and master.jobs[waiting].refunded == 0
    states = {j.job: j.state for j in world.master_node.status().jobs}
    assert (states[busy], states[cancelled], states[waiting]) == ("cancelled", "cancelled", "finished")
    assert master.balances() + master.held() + master.escrow() == master.granted


def test_the_progress_view_says_a_job_waits_for_friends() -> None:
    """A job with no friend yet reads "waiting for friends: none free yet (N asked for)", or the master's cause in words;
    one short of friends says how many it has."""
    def shown(**kw: object) -> str:
        bars = Progress()
        ids = (bars.add_task("delivered"), bars.add_task("final"))
        p = msg.ProgressReply(job=4, total=3, delivered=0, final=(), friends=(), checks=0, disagreements=0, evictions=(), finished=False, **kw)
        console = Console(record=True, width=160)
        console.print(job_view(p, bars, ids))
        return console.export_text()

    assert "waiting for friends: none free yet (3 asked for)" in shown(wanted=3, active=0)
    assert "friends: 1 of the 3 asked for" in shown(wanted=3, active=1) and "waiting" not in shown(wanted=3, active=1)
    assert "waiting" not in shown(wanted=3, active=3)
    paused = shown(wanted=2, active=0, waiting="paused", waiting_detail="no live, available friend has the profile …")
    assert "waiting: its friends are paused by their owners (2 asked for)" in paused and "profile" not in paused


def test_frender_jobs_tells_forty_jobs_apart(tmp_path, capsys, monkeypatch) -> None:
    """`frender jobs` names each job's file, its frames and the folder its frames go to, not numbers only."""
    monkeypatch.setenv("COLUMNS", "80")
    home, requester = tmp_path / "client", "frender://127.0.0.1:7100#sha256:" + "0" * 64
    lines = []
    for job in range(1, 41):
        out = tmp_path / f"shot{job:02d}"
        out_folder.remember_folder(home, requester, job, out)
        lines.append(msg.JobLine(job=job, state="finished", final=24, total=24, active=0, wanted=2, eta=-1, escrowed=26, spent=24,
                                 file=f"scenes/shot{job:02d}.blend", frames="1-24" if job % 2 else "1-48x2"))  # fmt: skip
    assert out_folder.job_folders(home, requester)[7] == str((tmp_path / "shot07").resolve())
    assert out_folder.job_folders(home, "frender://elsewhere:1#sha256:" + "1" * 64) == {}
    monkeypatch.setenv("HOME", str(tmp_path))  # folders under the home folder read as ~/...
    print_jobs(msg.JobsReply(jobs=tuple(lines)), out_folder.job_folders(home, requester))
    shown = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(shown) if "shot07.blend" in line)
    assert shown[at].split()[:3] == ["7", "shot07.blend", "finished"] and shown[at + 1].split() == ["1-24", "→", "~/shot07"]
    at = next(i for i, line in enumerate(shown) if "shot08.blend" in line)
    assert shown[at + 1].split() == ["1-48x2", "→", "~/shot08"]
    assert max(len(line) for line in shown) <= 80  # readable at 80 columns


def test_frames_read_back_as_blender_ranges() -> None:
    """A job's frames print as the ranges `--frames` reads, and read back as the same frames."""
    for frames in [(1, 2, 3, 5, 7, 9, 20), tuple(range(1, 49)), (7,), (1, 3), tuple(range(1, 25, 2))]:
        text = artist.frame_ranges(frames)
        assert sorted(artist.parse_frames(text)) == sorted(frames), text
    assert artist.frame_ranges((1, 2, 3, 5, 7, 9, 20)) == "1-3,5-9x2,20"
