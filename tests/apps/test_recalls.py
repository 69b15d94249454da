"""Recalled frames reach the artist: a frame withdrawn after it was final (a friend it rested on was caught forging)
is deleted from OUT with a plain word, and its re-verified copy written once it is final again; the requester's
progress and dashboard show it; ``frender fetch`` run later replaces what an earlier fetch wrote.

The job's log is played on the requester's core with real images (``unravelled``); the requester node serves it
over TLS on 127.0.0.1 and the artist's real client follows it."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import trio

from frender import blender
from frender.apps import fetch, out_folder, words
from frender.apps import messages as msg
from frender.apps.replay import audit, render_text
from frender.apps.requester import FriendKeys, JobAccepted, RequesterNode
from frender.core import job as core
from frender.transports import Identity, serve
from test_requester_node import requester
from test_security import BACKEND, LIMITS
import unravelled

SEED = 0  # a play in which forger a's own frame and one it vouched for were final before it was caught


class Served:
    """A requester node serving job 1 of ``unravelled``'s play, fed its events a part at a time."""

    def __init__(self, node: RequesterNode, events: list[object], images: dict[str, bytes]) -> None:
        self.node, self.events, self.images = node, events, images
        self.recall = next(i for i, e in enumerate(events) if isinstance(e, core.FramesRecalled))
        self.recalled: core.FramesRecalled = events[self.recall]  # type: ignore[assignment]

    async def feed(self, part: list[object]) -> None:
        for e in part:  # the copies on disk first, as the shell stores them before it commits
            if isinstance(e, core.CopyReceived):
                self.node._copy_path(1, e.task, e.frame).write_bytes(self.images[e.sha256])
            elif isinstance(e, core.OwnRenderReceived):
                self.node._own_path(1, e.check).write_bytes(self.images[e.sha256])
        await self.node.apply(*part)


async def served(tmp_path: Path, nursery: trio.Nursery, artist: Identity) -> Served:
    events, images = unravelled.play(SEED, now=time.time())
    node = requester(tmp_path)
    port = await nursery.start(functools.partial(serve, node.identity, "127.0.0.1", 0, node, limits=LIMITS))
    node.address = type(node.address)(host="127.0.0.1", port=port, fingerprint=node.identity.fingerprint)
    for sub in ("copies", "own"):
        (node._job_dir(1) / sub).mkdir(parents=True, exist_ok=True)
    await node.apply(
        JobAccepted(job=1, submitter="artist", submitter_key=artist.fingerprint, blend_sha256="0" * 64, width=unravelled.SIZE[0],
                    height=unravelled.SIZE[1], profile=await BACKEND.probe()),
        FriendKeys(job=1, keys={f: f"key-{f}" for f in unravelled.OWNERS}),
    )  # fmt: skip
    run = Served(node, events, images)
    assert run.recalled.friend == "a" and run.recalled.requeued and run.recalled.held, run.recalled  # the play is what this test needs
    await run.feed(events[: run.recall])
    return run


async def until(condition, what: str) -> None:
    with trio.fail_after(60):
        while not condition():
            await trio.sleep(0.02)
    assert condition(), what


def file_of(out: Path, frame: int) -> Path:
    return out / blender.frame_name(frame)


async def test_a_recalled_frame_is_deleted_said_and_written_again_once_verified(tmp_path, nursery):
    """A forged frame final in OUT is deleted the moment it is recalled, the artist is told why in plain words, the
    progress and the frame grid say "recalled", and the re-rendered, verified copy is written when final again; the
    job finishes only after every recalled frame is final again."""
    home = tmp_path / "artist"
    artist = Identity.load_or_create(home)
    run = await served(tmp_path, nursery, artist)
    forged, vouched = run.recalled.requeued[0], run.recalled.held[0]
    out = tmp_path / "out"
    notes: list[str] = []
    got: list[object] = []

    async def follow() -> None:
        got.append(await fetch.fetch(run.node.address, home, 1, out, on_note=notes.append, poll=0.05))

    nursery.start_soon(follow)
    await until(lambda: file_of(out, forged).exists() and file_of(out, vouched).exists(), "the forgery was final and fetched")
    assert file_of(out, forged).read_bytes() == unravelled.BLACK_IMAGE  # the forgery reached the artist before the catch

    await run.feed([run.recalled])
    progress = run.node.progress_of(1)
    assert msg.Recall(frame=forged, times=1, rendered=True, final=False) in progress.recalled
    assert msg.Recall(frame=vouched, times=1, rendered=False, final=False) in progress.recalled
    assert run.node.frame_states_of(1)[forged] == run.node.frame_states_of(1)[vouched] == "recalled"
    assert not progress.finished
    await until(lambda: not file_of(out, forged).exists() and not file_of(out, vouched).exists(), "the recalled frames left OUT")
    assert words.recall_text(forged, rendered=True) in notes
    assert f"frame {vouched} was recalled: a friend that vouched for it was caught forging; it is being checked again" in notes
    assert f"frame {forged} was recalled: the friend that rendered it was caught forging; it is being rendered again" in notes

    rest = run.events[run.recall + 1 :]
    finished = next(i for i, e in enumerate(rest) if isinstance(e, core.JobFinished))
    again = {ff.frame for e in rest[:finished] if isinstance(e, core.FramesFinal) for ff in e.frames}
    assert {forged, vouched} <= again  # the core finished the job only once both were final again
    await run.feed(rest)
    await until(lambda: bool(got), "the fetch ended")
    [result] = got
    assert {forged, vouched} <= set(result.replaced)
    assert words.replaced_text(forged, str(file_of(out, forged))) in notes
    for frame in unravelled.FRAMES:
        assert file_of(out, frame).read_bytes() == unravelled.honest(frame), frame  # OUT is right once the job ends
    assert [r.frame for r in run.node.progress_of(1).recalled if not r.final] == []
    assert "recalled" not in run.node.frame_states_of(1).values()
    story = render_text(audit(tmp_path / "requester.db"))  # what `frender replay requester.db` prints
    assert f"final frames RECALLED, a was caught forging: {forged} it rendered, rendered again; {vouched} it vouched for, judged again" in story


async def test_a_fetch_run_later_replaces_a_frame_recalled_since(tmp_path, nursery):
    """Frames fetched while forged and final, recalled and verified anew while no client followed: `frender fetch`
    run later deletes the withdrawn copy, says so, and writes the verified one; run once more it changes nothing."""
    home = tmp_path / "artist"
    artist = Identity.load_or_create(home)
    run = await served(tmp_path, nursery, artist)
    forged = run.recalled.requeued[0]
    out = tmp_path / "out"
    with trio.move_on_after(60) as first:
        async with trio.open_nursery() as inner:
            inner.start_soon(functools.partial(fetch.fetch, run.node.address, home, 1, out, poll=0.05))
            await until(lambda: file_of(out, forged).exists(), "the forgery was fetched")
            inner.cancel_scope.cancel()  # the artist stops following
    assert not first.cancelled_caught
    assert file_of(out, forged).read_bytes() == unravelled.BLACK_IMAGE
    await run.feed(run.events[run.recall :])
    assert core.is_finished(run.node.state, 1)

    notes: list[str] = []
    with trio.fail_after(60):
        result = await fetch.fetch(run.node.address, home, 1, out, on_note=notes.append, poll=0.05)
    assert words.recall_text(forged, rendered=True) in notes and forged in result.replaced
    for frame in unravelled.FRAMES:
        assert file_of(out, frame).read_bytes() == unravelled.honest(frame), frame
    assert out_folder.read_state(out)["recalls"][str(forged)] == 1  # type: ignore[index]
    notes.clear()
    with trio.fail_after(60):
        again = await fetch.fetch(run.node.address, home, 1, out, on_note=notes.append, poll=0.05)
    assert notes == [] and again.replaced == ()


def test_out_acts_on_each_recall_once_and_remembers_it(tmp_path):
    """The client's replacing logic: a recall newer than OUT's copy deletes the file and is noted in the job file;
    the same recall again does nothing, a later one acts again, and a frame OUT never held is noted silently."""
    out = tmp_path / "out"
    out.mkdir()
    out_folder.write_state(out, {"job": 3, "requester": "r"})
    for frame in (1, 2):
        file_of(out, frame).write_bytes(b"forged")
    recalls = out_folder.Recalls(out, blender.frame_name)
    first = recalls.take([msg.Recall(frame=1, times=1, rendered=True, final=False), msg.Recall(frame=5, times=1, rendered=False, final=True)])
    assert [(r.frame, held) for r, held in first] == [(1, True), (5, False)]
    assert not file_of(out, 1).exists() and file_of(out, 2).exists()
    assert recalls.generation(1) == 1 and recalls.generation(2) == 0
    again = out_folder.Recalls(out, blender.frame_name)  # a later fetch reads what this one acted on
    assert again.take([msg.Recall(frame=1, times=1, rendered=True, final=True)]) == []
    file_of(out, 1).write_bytes(b"verified")
    [(later, held)] = again.take([msg.Recall(frame=1, times=2, rendered=False, final=False)])
    assert later.times == 2 and held and not file_of(out, 1).exists()
    assert out_folder.read_state(out) == {"job": 3, "requester": "r", "recalls": {"1": 2, "5": 1}}


def test_a_damaged_recall_note_reads_as_none(tmp_path):
    """A job file whose recall note is damaged reads as no recall acted on: the next recall is acted on again."""
    out_folder.write_state(tmp_path, {"job": 3, "recalls": {"x": 1, "2": "two", "4": 1}})
    recalls = out_folder.Recalls(tmp_path, blender.frame_name)
    assert recalls.seen == {4: 1}


def test_the_job_page_shows_recalled_frames_in_the_grid_and_in_words():
    """The dashboard's frame grid marks a recalled frame "recalled" and the page says which frames are verified again."""
    from frender.apps.web._page import render

    recalls = (msg.Recall(frame=3, times=1, rendered=True, final=False), msg.Recall(frame=2, times=1, rendered=False, final=True))
    p = msg.ProgressReply(job=1, total=4, delivered=3, final=(1, 2), friends=(), checks=0, disagreements=0, evictions=("a",), finished=False,
                          recalled=recalls)  # fmt: skip
    html = render(
        "job_live.html", job=1, p=p, final=2, delivered_pct="75.00", final_pct="50.00", waiting="", grid={1: "final", 2: "final", 3: "recalled"},
        counts={"final": 2, "recalled": 1}, stories={}, estimate="", escrowed=0, earned=0, thumbs=[], more=0, video=False, video_error="", t="t",
    )
    assert 'class="cell recalled" title="frame 3: recalled"' in html
    assert "recalled: frame 3 (a friend they rested on was caught forging); being verified again" in html


async def test_the_dashboard_drops_a_recalled_frames_thumbnail_and_makes_it_again_from_the_verified_copy(tmp_path):
    """A thumbnail made of a forged final frame is deleted once the frame is recalled (not shown while it is redone),
    and made again from the re-verified copy once it is final again."""
    from frender.apps.web._requester import Gallery

    job_dir = tmp_path / "jobs" / "1"
    job_dir.mkdir(parents=True)
    forged, verified = job_dir / "forged.png", job_dir / "verified.png"
    forged.write_bytes(unravelled.BLACK_IMAGE)
    verified.write_bytes(unravelled.honest(3))

    class View:  # what Gallery reads of the node (the real node's view is served in test_web.py)
        progress: msg.ProgressReply
        path: Path | None = forged

        def job_numbers(self) -> list[int]:
            return [1]

        def progress_of(self, job: int) -> msg.ProgressReply:
            return self.progress

        def final_path(self, job: int, frame: int) -> Path | None:
            return self.path

        def job_dir(self, job: int) -> Path:
            return job_dir

    def reply(final: tuple[int, ...], recalled: tuple[msg.Recall, ...] = ()) -> msg.ProgressReply:
        return msg.ProgressReply(job=1, total=4, delivered=4, final=final, friends=(), checks=0, disagreements=0, evictions=(), finished=False,
                                 recalled=recalled)  # fmt: skip

    view = View()
    gallery = Gallery(view)  # type: ignore[arg-type]
    view.progress = reply((3,))
    await gallery._catch_up(1)
    thumb = gallery.thumb_path(1, 3)
    black = thumb.read_bytes()
    view.progress, view.path = reply((), (msg.Recall(frame=3, times=1, rendered=True, final=False),)), None
    await gallery._catch_up(1)
    assert not thumb.exists() and 3 not in gallery.thumbs[1]
    view.progress, view.path = reply((3,), (msg.Recall(frame=3, times=1, rendered=True, final=True),)), verified
    await gallery._catch_up(1)
    assert thumb.exists() and thumb.read_bytes() != black and 3 in gallery.thumbs[1]


def test_the_submit_view_lists_frames_being_verified_again():
    """`frender submit`'s live view names the recalled frames not final again, and none once they all are."""
    from rich.console import Console
    from rich.progress import Progress

    from frender.apps.progress import job_view

    def shown(*recalls: msg.Recall) -> str:
        bars = Progress()
        ids = (bars.add_task("delivered"), bars.add_task("final"))
        p = msg.ProgressReply(job=4, total=20, delivered=20, final=(1, 2), friends=(), checks=0, disagreements=0, evictions=("a",),
                              finished=False, recalled=recalls)  # fmt: skip
        console = Console(record=True, width=200)
        console.print(job_view(p, bars, ids))
        return console.export_text()

    again = shown(msg.Recall(frame=12, times=1, rendered=False, final=False), msg.Recall(frame=3, times=1, rendered=True, final=False),
                  msg.Recall(frame=2, times=1, rendered=True, final=True))  # fmt: skip
    assert "recalled: frames 3, 12 (a friend they rested on was caught forging); being verified again" in again
    assert "recalled" not in shown(msg.Recall(frame=2, times=1, rendered=True, final=True))
