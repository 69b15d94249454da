"""The dashboards over real HTTP: who may see which page, what the pages show, and the live stream.

The real master and requester nodes (modelled backend) serve their dashboards
on 127.0.0.1 port 0 with Hypercorn's trio worker; pages are fetched with urllib.
"""

from __future__ import annotations

import attrs

import socket
import time
import urllib.error
import urllib.request

import pytest
import trio

from frender.apps import messages as msg
from frender.apps import words
from frender.apps.views import JobFacts
from frender.apps.web._page import job_state
from frender.apps.web import OPERATOR, BadToken, WebUnavailable, job_scope, read_token, serve_master_web, serve_requester_web, serve_web, sign_token
from frender.transports import Identity
from test_security import World, refused


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def get(url: str) -> tuple[int, str]:
    return await trio.to_thread.run_sync(_get, url)


def _first_event(url: str) -> str:
    """The data of the first server-sent event at ``url``."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        data = []
        while True:
            line = reply.readline().decode().rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and data:
                return "\n".join(data)


@pytest.fixture
async def web(tmp_path, nursery):
    world = World(tmp_path)
    await world.start(nursery)
    world.requester_web = await nursery.start(serve_requester_web, world.requester_node, "127.0.0.1", 0)
    world.master_web = await nursery.start(serve_master_web, world.master_node, "127.0.0.1", 0)
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    world.job = (await world.alice_submits()).job
    return world


def test_tokens_are_signed_scoped_and_expire(tmp_path):
    """A token reads back with its scope and signer; tampered, truncated or expired ones are refused."""
    me = Identity.load_or_create(tmp_path / "me")
    token = sign_token(me, job_scope(3), now=1000.0, seconds=60)
    claims = read_token(token, now=1059.0)
    assert (claims.scope, claims.signer) == ("job:3", me.fingerprint)
    with pytest.raises(BadToken, match="expired"):
        read_token(token, now=1060.0)
    body, _, signature = token.partition(".")
    other = sign_token(me, job_scope(4), now=1000.0, seconds=60)
    with pytest.raises(BadToken):
        read_token(other.partition(".")[0] + "." + signature, now=1001.0)  # job 4's claims under job 3's signature
    for junk in ("", "x", "a.b", body, token[:-3], "." * 5):
        with pytest.raises(BadToken):
            read_token(junk, now=1001.0)


async def test_the_submitter_gets_a_link_that_opens_its_job_only(web):
    """The link from DashboardLink opens the submitter's job page; another user's key gets no link."""
    reply = await web.call("alice", web.requester, msg.DashboardLink(job=web.job))
    assert reply.url.startswith(f"{web.requester_web}/job/{web.job}?t=")
    status, html = await get(reply.url)
    assert status == 200
    assert f"Job {web.job}" in html and "bob/pc" in html and "escrowed" in html and "EventSource" in html
    await refused("unknown-job", web.call("mallory", web.requester, msg.DashboardLink(job=web.job)))


async def test_wrong_missing_and_expired_tokens_get_403(web):
    """No token, a forged one, another job's, an expired one, or the requester's own token on the master: 403."""
    node = web.requester_node
    base = f"{web.requester_web}/job/{web.job}"
    good = sign_token(node.identity, job_scope(web.job), now=time.time(), seconds=60)
    expired = sign_token(node.identity, job_scope(web.job), now=time.time() - 120, seconds=60)
    other_job = sign_token(node.identity, job_scope(web.job + 1), now=time.time(), seconds=60)
    stranger = sign_token(web.people["mallory"], job_scope(web.job), now=time.time(), seconds=60)
    assert (await get(f"{base}?t={good}"))[0] == 200
    for token in ("", "nonsense", expired, other_job, stranger, good[:-4] + "AAAA"):
        for path in ("", "/events", "/thumb/1", "/frame/1", "/video.mp4"):
            status, _ = await get(f"{base}{path}?t={token}")
            assert status == 403, (path, token)
    assert (await get(f"{web.master_web}/?t={good}"))[0] == 403  # a job's token is not the operator's
    assert (await get(f"{web.requester_web}/?t={good}"))[0] == 403


async def test_the_operator_token_opens_the_master_and_every_job(web):
    """A token signed by the master's key opens the operator's page (friends, jobs, ledger) and any job's page,
    which names the Blender the job renders with."""
    token = sign_token(web.master_node.identity, OPERATOR, now=time.time(), seconds=60)
    status, html = await get(f"{web.master_web}/?t={token}")
    assert status == 200
    assert "bob/pc" in html and "alice" in html and "Ledger" in html and "100 points granted" in html
    status, html = await get(f"{web.requester_web}/job/{web.job}?t={token}")
    assert status == 200 and "Rendered with Blender modelled on CPU" in html  # the job's own Blender and device
    status, html = await get(f"{web.requester_web}/?t={token}")
    assert status == 200 and f"/job/{web.job}?t=" in html
    event = await trio.to_thread.run_sync(_first_event, f"{web.master_web}/events?t={token}")
    assert "bob/pc" in event and "<table" in event


async def test_the_job_page_streams_its_live_part(web):
    """The first server-sent event carries the job's progress, its estimate line and its friends."""
    url = (await web.call("alice", web.requester, msg.DashboardLink(job=web.job))).url
    event = await trio.to_thread.run_sync(_first_event, url.replace("?t=", "/events?t="))
    assert 'id="eta"' in event and "of 4 frames final" in event and "bob/pc" in event


async def test_a_port_in_use_is_one_clear_error(nursery):
    """Serving on a port that is taken raises WebUnavailable naming host and port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WebUnavailable, match=f"127.0.0.1:{port}"):
            await nursery.start(serve_web, None, "127.0.0.1", port)


def test_an_eviction_reads_in_words_with_the_numbers_apart():
    """An eviction says what was compared, by whom and the verdict in words; hashes and figures are the numbers behind it."""
    from frender.apps.job_view import eviction_story
    from frender.core.job import Evidence, Figures

    e = Evidence(
        check=2, frame=8, subject="friend2/box", subject_sha256="a" * 64, verifier="friend1/box", verifier_sha256="b" * 64,
        arbitration_sha256="c" * 64, pair=Figures(verdict="disagree", fraction_off=1.0, max_diff=224, psnr=5.1),
        vs_subject=Figures(verdict="identical"), vs_verifier=Figures(verdict="disagree", fraction_off=1.0, max_diff=224, psnr=5.1),
    )
    verifier = eviction_story("friend1/box", e)
    assert verifier.words == (
        "it checked friend2/box's copy of frame 8; the two copies disagreed, so the requester rendered the frame itself as the referee,"
        " and its check did not match the requester's render, friend2/box's copy did: evicted, unpaid, its frames rendered again by others."
    )
    assert "sha256" not in verifier.words and "PSNR" not in verifier.words
    assert "friend1/box's copy: sha256 " + "b" * 64 in verifier.numbers
    figures = "disagree: 100.0% of pixels off by more than 4/255, largest difference 224/255, PSNR 5.1 dB"
    assert f"the requester's render vs friend1/box's copy: {figures}" in verifier.numbers
    subject = eviction_story("friend2/box", e)
    assert subject.words.startswith("its copy of frame 8 was checked by friend1/box;") and "its copy did not match the requester's render" in subject.words


class _Node:
    """Just the read-only views the gallery uses, over real frame files."""

    def __init__(self, home, frames):
        self.home, self.final, self.finished = home, [], False
        self.frames = frames

    def job_numbers(self):
        return [1]

    def job_facts(self, job):  # the gallery reads only the .blend's rate
        return JobFacts(submitter="alice", blender="5.0.1 on CPU", fps=12.0, extension=".png")

    def progress_of(self, job):
        return msg.ProgressReply(
            job=job, total=len(self.frames), delivered=len(self.final), final=tuple(self.final), friends=(), checks=0, disagreements=0,
            evictions=(), finished=self.finished,
        )

    def final_path(self, job, frame):
        return self.frames[frame] if frame in self.final else None

    def job_dir(self, job):
        return self.home / "jobs" / str(job)


async def test_the_gallery_makes_each_thumbnail_once_and_the_video_when_the_job_finishes(tmp_path):
    """Thumbnails appear for final frames only, each written once; the video (at the .blend's rate) once the job finishes."""
    import av
    import numpy as np
    from PIL import Image

    from frender.apps.web import Gallery

    frames = {}
    for n in (1, 2, 3):
        frames[n] = tmp_path / f"copy-{n}.png"
        Image.fromarray(np.full((90, 160, 3), 60 * n, np.uint8)).save(frames[n])
    node = _Node(tmp_path, frames)
    gallery = Gallery(node)
    node.final = [2]
    await gallery._catch_up(1)
    thumb = gallery.thumb_path(1, 2)
    assert set(gallery.thumbs[1]) == {2} and thumb.exists() and not gallery.thumb_path(1, 1).exists()
    written = thumb.stat().st_mtime_ns
    node.final = [2, 1, 3]
    await gallery._catch_up(1)
    assert set(gallery.thumbs[1]) == {1, 2, 3} and thumb.stat().st_mtime_ns == written and 1 not in gallery.videos
    running = node.progress_of(1)
    assert gallery.estimate(1, running) == "time left: not known until a frame is final"  # the requester's eta: not known
    assert gallery.estimate(1, attrs.evolve(running, eta=349.0)) == "about 5m49s left"  # the words `frender jobs` uses
    node.finished = True
    await gallery._catch_up(1)
    with av.open(str(gallery.videos[1])) as container:
        stream = container.streams.video[0]
        assert (sum(1 for _ in container.decode(stream)), stream.average_rate) == (3, 12)


@pytest.mark.parametrize("flag", ["--listen", "--web"])
def test_a_port_in_use_is_one_line_from_the_cli(tmp_path, flag):
    """`frender run master` on a taken port (its own or the dashboard's) exits 1 with one line, no traceback."""
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--listen", f"127.0.0.1:{port}"] if flag == "--listen" else ["--listen", "127.0.0.1:0", "--web", f"127.0.0.1:{port}"]
        done = subprocess.run(
            [sys.executable, "-m", "frender", "run", "master", "--db", str(tmp_path / "m.db"), "--home", str(tmp_path / "m"), *args],
            capture_output=True, text=True, timeout=60,
        )
    lines = [line for line in done.stderr.splitlines() if line.startswith("frender:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


async def test_operator_commands_print_what_they_did_and_the_web_token_opens_the_page(web):
    """`operator grant` prints the key funded and the new balance, `trust` the key trusted; `web-token --url` prints a link that opens the master's page."""
    from typer.testing import CliRunner

    from frender.apps.cli import app

    home = str(web.tmp / "master")
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args))

    alice = web.people["alice"].fingerprint
    result = await trio.to_thread.run_sync(run, "operator", "grant", "alice", "25", "--key", alice, "--master", str(web.master), "--home", home)
    assert result.exit_code == 0 and f"granted 25 points to alice (key {alice}): balance now" in result.output, result.output
    key = web.people["mallory"].fingerprint
    result = await trio.to_thread.run_sync(run, "operator", "trust", key, "--name", "spare", "--master", str(web.master), "--home", home)
    assert result.exit_code == 0 and f"trusted requester spare ({key})" in result.output, result.output
    result = await trio.to_thread.run_sync(run, "operator", "web-token", "--home", home, "--url", web.master_web + "/")
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert link.startswith(f"{web.master_web}/?t=") and (await get(link))[0] == 200
    result = await trio.to_thread.run_sync(run, "operator", "web-token", "--home", str(web.tmp / "nobody"))
    assert result.exit_code == 1 and "holds no key" in result.output


def test_ctrl_c_of_submit_says_the_job_goes_on_and_how_to_resume(tmp_path, capsys):
    """After Ctrl-C, submit names the job, says it goes on, and prints the command that fetches that very job."""
    import typer

    from frender.apps.cli import _named
    from frender.apps.cli_artist import interrupted

    (tmp_path / ".frender-job.json").write_text('{"job": 7, "sha256": "x", "requester": "frender://h:1#sha256:ab"}')
    with pytest.raises(typer.Exit) as stopped:
        interrupted(tmp_path, "frender://h:1#sha256:ab", tmp_path / "key")
    said = capsys.readouterr().err
    assert stopped.value.exit_code == 130
    assert said.startswith("\nstopped following job 7; it goes on at the requester")
    assert f"frender fetch 7 --requester 'frender://h:1#sha256:ab' --out {tmp_path} --home {tmp_path / 'key'}" in said
    reason = f"refused: uploads/{'ab' * 32}.blend has an auto-run script"
    assert _named(reason, tmp_path / "shot.blend") == "refused: shot.blend has an auto-run script"


def test_a_job_says_whether_it_waits_runs_or_ended_in_the_one_vocabulary():
    """The pages name a job's state as `frender jobs` does: waiting (also while its master is unreachable), running,
    finished, cancelled or failed; never "stopped" for a job that only waits."""
    base = dict(job=1, total=4, delivered=0, final=(), friends=(), checks=0, disagreements=0, evictions=(), finished=False)
    assert job_state(msg.ProgressReply(**base, wanted=2, active=0)) == "waiting"
    assert job_state(msg.ProgressReply(**base, wanted=2, active=0, waiting="paused")) == "waiting"
    assert job_state(msg.ProgressReply(**base, wanted=2, active=1)) == "running"
    assert job_state(msg.ProgressReply(**base, active=0, problem="every friend of this job is gone")) == "waiting"
    assert job_state(msg.ProgressReply(**{**base, "finished": True})) == "finished"
    assert job_state(msg.ProgressReply(**{**base, "finished": True}, failed="Blender said no")) == "failed"
    assert job_state(msg.ProgressReply(**{**base, "finished": True}, cancelled=True)) == "cancelled"


async def test_the_requesters_printed_address_says_how_to_get_a_link_and_frender_link_prints_one(web, tmp_path):
    """The requester's root without a token is a page that says how to get a job's link (not a 403), and
    `frender link J` prints the job's link, which opens its page."""
    from typer.testing import CliRunner

    from frender.apps.cli import app

    status, html = await get(f"{web.requester_web}/")
    assert status == 200 and "frender link J --requester" in html and "frender submit" in html
    assert (await get(f"{web.requester_web}/?t=nonsense"))[0] == 403  # a token that is wrong still gets 403
    args = ["link", str(web.job), "--requester", str(web.requester), "--home", str(tmp_path / "alice")]
    done = await trio.to_thread.run_sync(lambda: CliRunner().invoke(app, args))
    assert done.exit_code == 0, done.output
    url = done.stdout.strip().splitlines()[0]
    assert url.startswith(f"{web.requester_web}/job/{web.job}?t=")
    status, html = await get(url)
    assert status == 200 and f"Job {web.job}" in html
    done = await trio.to_thread.run_sync(lambda: CliRunner().invoke(app, [*args[:-1], str(tmp_path / "mallory")]))
    assert done.exit_code == 1 and "unknown-job" in done.output  # not mallory's job: no link


async def test_the_job_page_tells_the_whole_story_and_the_operator_page_links_jobs_and_standing(web):
    """The job page has the two-layer bar (delivered under final), the friends granted of those asked for, and a
    grid with a cell per frame; the operator's page shows each friend's standing and links its job's row."""
    url = (await web.call("alice", web.requester, msg.DashboardLink(job=web.job))).url
    status, html = await get(url)
    assert status == 200
    assert 'id="bar-delivered"' in html and 'id="bar-final"' in html and "delivered</span>" in html
    p = web.requester_node.progress_of(web.job)
    assert f"{p.active} of {p.wanted} friends" in html
    assert html.count('class="cell ') == p.total and ('class="cell rendering"' in html or 'class="cell waiting"' in html)
    token = sign_token(web.master_node.identity, OPERATOR, now=time.time(), seconds=60)
    status, html = await get(f"{web.master_web}/?t={token}")
    assert status == 200 and "probation 0/3" in html and f'id="job-{web.job}"' in html and f'href="#job-{web.job}"' in html
    assert "closed" not in html and "running" in html


def test_the_job_page_says_gone_for_a_friend_that_left_and_why_a_job_waits():
    """A friend that left reads "gone" (not "ok" or rendering); a job with no friend says it waits and why, in words."""
    from frender.apps.web._page import render

    gone = msg.FriendLine(friend="bob/pc", delivered=2, final=1, checks=0, evicted=False, gone=True)
    p = msg.ProgressReply(job=1, total=4, delivered=2, final=(1,), friends=(gone,), checks=0, disagreements=0, evictions=(), finished=False,
                          wanted=2, active=0, waiting="paused")  # fmt: skip
    html = render(
        "job_live.html", job=1, p=p, final=1, delivered_pct="50.00", final_pct="25.00", waiting=words.waiting_text(p.waiting), grid={1: "final"},
        counts={"final": 1}, stories={}, estimate="", escrowed=0, earned=0, thumbs=[], more=0, video=False, video_error="", t="token",
    )
    assert '<tr class="gone">' in html and "gone (its frames went to others)" in html and ">ok<" not in html
    assert "waiting: its friends are paused by their owners" in html and "<b>0 of 2 friends</b>" in html
    assert '<span id="state">waiting</span>' in html
def _headers(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        reply.read()
        return reply.headers["Content-Type"], reply.headers["Content-Disposition"]


@pytest.mark.parametrize("extension, media", [(".exr", "image/x-exr"), (".tif", "image/tiff"), (".jpg", "image/jpeg"), (".png", "image/png")])
async def test_a_final_frame_is_served_in_its_own_format(tmp_path, nursery, extension, media):
    """The dashboard serves an EXR, TIFF, JPEG or PNG job's frame with that format's media type and extension."""
    from frender.apps.web import Gallery, requester_app

    identity = Identity.load_or_create(tmp_path / "requester")
    frame = tmp_path / f"frame{extension}"
    frame.write_bytes(b"the frame's bytes")

    class Formats(_Node):
        key, master_key = identity.fingerprint, "sha256:" + "0" * 64

        def job_facts(self, job):
            return JobFacts(submitter="alice", blender="5.0.1 on CPU", fps=24.0, extension=extension)

    node = Formats(tmp_path, {1: frame})
    node.final = [1]
    url = await nursery.start(serve_web, requester_app(node, Gallery(node)), "127.0.0.1", 0)
    token = sign_token(identity, job_scope(1), now=time.time(), seconds=60)
    kind, disposition = await trio.to_thread.run_sync(_headers, f"{url}/job/1/frame/1?t={token}")
    assert kind == media and f'filename="frame_0001{extension}"' in disposition


def test_the_web_depends_on_the_views_not_on_the_nodes() -> None:
    """No module of the dashboards imports a node module, not even for type checking: pages read the view protocols."""
    import ast

    from pathlib import Path

    import frender.apps.web as web_package

    for module in Path(web_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("frender.apps.requester", "frender.apps.master"), module.name


def test_a_still_in_tiles_fills_its_grid_tile_by_tile():
    """A tiled job's page lays each frame's tiles out in the grid's columns, names each cell by frame and tile, and its bars count tiles."""
    from frender.apps.web._page import render

    p = msg.ProgressReply(job=1, total=1, delivered=3, final=(), friends=(), checks=2, disagreements=0, evictions=(), finished=False,
                          tiles=4, tiles_final=2, tiles_delivered=3, tile_cols=2)  # fmt: skip
    grid = {4: "final", 5: "final", 6: "delivered", 7: "rendering"}  # frame 1's four tiles (work units 4-7)
    html = render(
        "job_live.html", job=1, p=p, final=0, delivered_pct="75.00", final_pct="50.00", waiting="", grid=grid,
        counts={"final": 2}, stories={}, estimate="", escrowed=0, earned=0, thumbs=[], more=0, video=False, video_error="", t="token",
    )
    assert "grid-template-columns: repeat(2, 24px)" in html
    assert 'title="frame 1, tile 0: final"' in html and 'title="frame 1, tile 3: rendering"' in html
