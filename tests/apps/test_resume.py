"""The artist's day through the real `frender` command against a farm of processes: Ctrl-C and the printed
resume command, a job found again by its number, cancel's words, a job cancelled before any frame, an
untrusted requester, and a dashboard port already in use."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import attrs
import trio

from frender.apps import messages as msg
from frender.apps.client import create_account, operator_call, status
from frender.apps.demo import Cluster, start_master, start_requester
from frender.apps.out_folder import STATE_FILE, fetch_command, held, read_state

FRENDER = [sys.executable, "-m", "frender"]


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # in the child: Python turns Ctrl-C into KeyboardInterrupt


async def frender(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `frender ARGS` as a person would, in a worker thread so the test's farm calls go on."""
    command = [*FRENDER, *map(str, args)]
    return await trio.to_thread.run_sync(lambda: subprocess.run(command, capture_output=True, text=True, timeout=timeout))


async def _submitted(out: Path, proc: subprocess.Popen) -> int:
    """The job number once `submit` wrote OUT's job file."""
    with trio.fail_after(180):
        while read_state(out) is None:
            assert proc.poll() is None, proc.communicate()
            await trio.sleep(0.1)
    return int(read_state(out)["job"])  # type: ignore[index]


async def _one_paused_friend(farm) -> Path:
    """A farm whose one friend is paused: a job waits for it (a job no friend could ever render is refused)."""
    await farm.start(friends=1)
    friend_home = farm.root / "homes" / "friend1"
    paused = await frender("friend", "pause", "--home", friend_home, "--wait", "60")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    with trio.fail_after(60):
        while next(f for f in (await status(farm.master, farm.master_home)).friends).away != "paused":
            await trio.sleep(0.1)
    return friend_home


def _submit(farm, scene: Path, out: Path, *more: str) -> subprocess.Popen:
    home = farm.root / "homes" / "artist"
    args = ["submit", str(scene), "--requester", str(farm.requester), "--user", "artist", "--home", str(home), "--friends", "1", "--out", str(out)]
    return subprocess.Popen([*FRENDER, *args, *more], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)


async def test_ctrl_c_then_the_printed_command_resumes_the_same_job(farm, tiny_scene):
    """Ctrl-C of `submit --frames 1-4` prints a command that follows that very job (with --home); the command
    without --frames is refused naming it, not a second job; `fetch J` fills OUT and a fresh folder, named as
    the job names them; a cancel of the finished job says it finished, exit 0."""
    friend_home = await _one_paused_friend(farm)  # the job waits for its friend: Ctrl-C lands while it runs
    out, home = farm.root / "shot", farm.root / "homes" / "artist"
    proc = _submit(farm, tiny_scene, out, "--frames", "1-4")
    job = await _submitted(out, proc)
    proc.send_signal(signal.SIGINT)
    _, said = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=60))
    assert proc.returncode == 130, said
    resume = next(line for line in said.splitlines() if line.startswith("resume")).split(": ", 1)[1]
    assert resume == fetch_command(job, str(farm.requester), out, home)

    other = await trio.to_thread.run_sync(lambda: _submit(farm, tiny_scene, out).communicate(timeout=180))  # the old hint: no --frames
    assert f"still running: 0 of 4 frames final; fetch it with `{resume}`" in other[1], other[1]
    assert json.loads((out / STATE_FILE).read_text())["job"] == job  # OUT's job file is kept

    assert (await frender("friend", "resume", "--home", friend_home)).returncode == 0
    fetched = await frender(*shlex.split(resume)[1:])
    assert fetched.returncode == 0 and f"job {job}: 4 frames in {out}" in fetched.stdout, fetched.stdout + fetched.stderr
    assert held(out, read_state(out) or {}) == [1, 2, 3, 4]
    fresh = await frender("fetch", str(job), "--requester", str(farm.requester), "--out", farm.root / "again", "--home", home)
    assert fresh.returncode == 0, fresh.stderr
    assert sorted(p.name for p in (farm.root / "again").iterdir() if not p.name.startswith(".")) == sorted(p.name for p in out.glob("frame_*"))
    assert [j["job"] for j in farm.audit("master")["master"]["jobs"]] == [job]  # one job, never a second

    over = await frender("cancel", str(job), "--requester", str(farm.requester), "--home", home)
    assert over.returncode == 0 and f"job {job} already finished: 4 of 4 frames final; nothing to cancel" in over.stdout, over.stdout + over.stderr
    assert fetch_command(job, str(farm.requester), "DIR", home) in over.stdout


async def test_a_job_cancelled_before_any_frame_makes_submit_fail(farm, tiny_scene):
    """A job cancelled while it waits ends its `submit` with exit 1 saying no frame came; cancel prints how to
    fetch the job and counts one point as "1 point"; cancelling it again says it was cancelled, exit 0."""
    await _one_paused_friend(farm)
    out, home = farm.root / "shot", farm.root / "homes" / "artist"
    proc = _submit(farm, tiny_scene, out, "--frames", "1")
    job = await _submitted(out, proc)
    done = await frender("cancel", str(job), "--requester", str(farm.requester), "--home", home)
    assert done.returncode == 0, done.stderr
    assert f"job {job} cancelled: 0 of 1 frames final and kept (fetch them: {fetch_command(job, str(farm.requester), 'DIR', home)})" in done.stdout
    assert "0 of 1 point escrowed paid to friends, 1 point refunded" in done.stdout, done.stdout
    _, said = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=120))
    assert proc.returncode == 1 and f"job {job} was cancelled before any frame was final" in said, said
    again = await frender("cancel", str(job), "--requester", str(farm.requester), "--home", home)
    assert again.returncode == 0 and f"job {job} was cancelled before: 0 of 1 frames final; nothing to cancel" in again.stdout, again.stdout + again.stderr


async def test_an_untrusted_requester_says_so_and_a_submit_says_who_must_trust_it(tmp_path, tiny_scene):
    """A requester its master does not trust says so when it starts, with the operator's command; a submit to
    it is refused naming `frender operator trust` with the requester's key."""
    cluster = Cluster(tmp_path)
    try:
        master, master_home = await trio.to_thread.run_sync(lambda: start_master(cluster))
        requester = await trio.to_thread.run_sync(lambda: start_requester(cluster, master))
        home = tmp_path / "homes" / "artist"
        artist = await create_account(master, home, "artist")
        await operator_call(master, master_home, msg.Grant(user="artist", amount=100, key=artist.key))
        trust = f"frender operator trust {requester.fingerprint} --name NAME --master {shlex.quote(str(master))}"
        with trio.fail_after(60):
            while trust not in (log := (cluster.logs / "requester.log").read_text()):
                await trio.sleep(0.1)
        assert "the master does not trust this requester yet" in log
        done = await frender("submit", tiny_scene, "--requester", requester, "--user", "artist", "--home", home, "--out", tmp_path / "out")
        assert done.returncode == 1 and f"its operator must run `frender operator trust {requester.fingerprint}" in done.stderr, done.stderr
    finally:
        cluster.stop_all()


async def test_a_requester_dashboard_on_a_port_in_use_says_which_and_what_to_do(tmp_path):
    """`run requester --web` on a port in use is one line naming the port and what to do, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        master = "frender://127.0.0.1:1#sha256:" + "0" * 64
        done = await frender(
            "run", "requester", "--master", master, "--listen", "127.0.0.1:0", "--db", tmp_path / "r.db", "--home", tmp_path / "home",
            "--blender", "modelled:0.1", "--web", f"127.0.0.1:{port}", timeout=60,
        )
    assert done.returncode == 1, done.stderr
    assert f"frender: the dashboard cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "choose another --web" in done.stderr and "Trio nursery" not in done.stderr


def test_a_jobs_frame_names_are_logged_and_old_logs_read_the_same():
    """job_accepted.v1 keeps the frames' name and extension for `frender fetch`; a body from before them is
    byte for byte what it was, and reads as no name (frame_####)."""
    from frender import codec
    from frender.apps.requester import JobAccepted
    from frender.blender import ModelledBackend

    profile = trio.run(ModelledBackend(0.1).probe)
    old = JobAccepted(job=1, submitter="alice", submitter_key="k", blend_sha256="0" * 64, width=8, height=8, profile=profile)
    body = codec.to_json(old)
    assert '"name"' not in body and '"extension"' not in body
    assert codec.from_json(JobAccepted.tag, body) == old and old.name == "" and old.extension is None
    named = attrs.evolve(old, name="shot_####", extension=".exr")
    assert codec.from_json(JobAccepted.tag, codec.to_json(named)) == named
