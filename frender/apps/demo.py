"""`frender demo`: the whole system on this machine, as separate processes on 127.0.0.1.

It writes the demo scene, starts a master, a requester and N friends (K of
them cheating), trusts the requester and grants the artist points as the
master's operator, submits the job with a live view, checks every frame it
got against a direct render, and ends with a summary and the audit commands.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from frender import blender
from frender.apps import messages as msg
from frender.apps import video
from frender.apps.client import SubmitResult, create_account, operator_call, remembered_fps, status
from frender.apps.progress import follow
from frender.apps.terminal import safe_text
from frender.apps.web import OPERATOR, sign_token
from frender.transports import Address, Identity, RemoteError, TransportError

__all__ = ["CHEATS", "Cluster", "run_demo", "start_master", "start_requester", "start_friend", "wait_for_friends"]

CHEATS = ("black", "noise", "stale")
console = Console(stderr=True)


class Cluster:
    """Processes of one local fRender: started, watched, stopped; logs under ``root/logs``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, wrap: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """Start ``frender ARGS`` logging to logs/NAME.log, under ``wrap`` (a command such as bwrap) if given. Ctrl-C
        (SIGINT) is its graceful stop, so it is handled even when this process was started with SIGINT ignored (as a
        shell's background job is)."""
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [*wrap, sys.executable, "-c", _FRENDER_WITH_SIGINT, *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.procs[name] = proc
        return proc

    def wait_for_address(self, name: str, path: Path, timeout: float = 60.0) -> Address:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return Address.parse(path.read_text().strip())
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited early; see {self.logs / (name + '.log')}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start within {timeout:g} s; see {self.logs / (name + '.log')}")

    def wait_for_line(self, name: str, start: str, timeout: float = 30.0) -> str:
        """The rest of the first line of ``name``'s log that starts with ``start`` (e.g. a dashboard's URL)."""
        deadline = time.monotonic() + timeout
        path = self.logs / f"{name}.log"
        while time.monotonic() < deadline:
            for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
                if line.startswith(start):
                    return line.removeprefix(start)
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited early; see {path}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} printed no {start!r} within {timeout:g} s; see {path}")

    def stop(self, name: str, *, graceful: bool = True) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT if graceful else signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        """Friends first (they hand back what they hold), then the servers; each group stopped together."""
        friends = [n for n in self.procs if n.startswith("friend")]
        self.stop_together(friends)
        self.stop_together(list(self.procs))

    def stop_together(self, names: list[str], grace: float = 10.0) -> None:
        """SIGINT each of ``names`` at once, then kill what has not exited within ``grace`` seconds."""
        procs = [p for p in (self.procs.pop(n) for n in names) if p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ``python -m frender ARGS`` with Ctrl-C turned into KeyboardInterrupt even when inherited ignored. Done by the child
# itself: a preexec function would run Python in a forked child of this (threaded) process, where a lock held by
# another thread at the fork can hang it.
_FRENDER_WITH_SIGINT = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'frender'; runpy.run_module('frender', run_name='__main__', alter_sys=True)"
)


def start_master(
    cluster: Cluster, *, friend_timeout_ms: int = 2000, listen: str = "127.0.0.1:0", sync: str = "full", web: str | None = None
) -> tuple[Address, Path]:
    home = cluster.root / "homes" / "master"
    address_file = home / "address"
    address_file.unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    cluster.start(
        "master", "run", "master", "--listen", listen, "--db", str(cluster.root / "master.db"),
        "--home", str(home), "--friend-timeout", str(friend_timeout_ms), "--address-file", str(address_file),
        "--max-per-host", "4096",  # every process of a local farm is 127.0.0.1
        "--sync", sync, *(("--web", web) if web else ()),
    )
    return cluster.wait_for_address("master", address_file), home


def start_requester(
    cluster: Cluster, master: Address, *, seconds_per_frame: float = 2.0, startup_seconds: float = 5.0, listen: str = "127.0.0.1:0", web: str | None = None,
    blenders: tuple[str, ...] = (), measure_crops: bool = True, extra: Sequence[str] = (),
) -> Address:
    """Start `frender run requester` in ``cluster`` (``extra``: more of its options) and wait for its address."""
    home = cluster.root / "homes" / "requester"
    address_file = home / "address"
    address_file.unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    cluster.start(
        "requester", "run", "requester", "--master", str(master), "--listen", listen,
        "--db", str(cluster.root / "requester.db"), "--home", str(home), "--address-file", str(address_file),
        "--seconds-per-frame", str(seconds_per_frame), "--startup-seconds", str(startup_seconds),
        "--max-per-host", "4096", *(("--web", web) if web else ()), *(a for b in blenders for a in ("--blender", b)),
        *(() if measure_crops else ("--no-measure-crops",)), *extra,
    )
    return cluster.wait_for_address("requester", address_file)


def start_friend(
    cluster: Cluster, master: Address, index: int, *, cheat: str | None = None, threads: int = 1, blender: str | None = None, wrap: Sequence[str] = ()
) -> str:
    name = f"friend{index}"
    args = ["run", "friend", "--master", str(master), "--user", name, "--name", "box", "--threads", str(threads), "--home", str(cluster.root / "homes" / name)]
    if cheat:
        args += ["--cheat", cheat]
    if blender:
        args += ["--blender", blender]
    cluster.start(name, *args, wrap=wrap)
    return f"{name}/box"


async def wait_for_friends(master: Address, home: Path, count: int, timeout: float = 90.0) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                reply = await status(master, home)
                if sum(1 for f in reply.friends if f.live) >= count:
                    return
            except TransportError:
                pass
            await trio.sleep(0.2)


def run_demo(
    *, friends: int, frames: tuple[int, ...], cheaters: int, out: Path, web: str = "127.0.0.1:0", linger: float = 0.0, cheat_kind: str | None = None
) -> int:
    """The demo; with ``web``, both dashboards (their URLs printed), kept up ``linger`` seconds after the job and its
    check (``math.inf``: until Ctrl-C)."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("master.db", "requester.db", "homes", "frames", "logs", "demo.mp4"):
        target = out / stale
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    scene = out / "scene.blend"
    console.print(f"[bold]fRender demo[/bold]: {friends} friends ({cheaters} cheating), frames {frames[0]}-{frames[-1]}, output in {out}")
    blender.build_demo_scene(scene, frames=frames[-1], resolution=(160, 90), samples=16)
    cluster = Cluster(out)
    try:
        host, _, port = web.rpartition(":")
        master_web = f"{host}:{int(port) + 1 if port not in ('', '0') else 0}" if web else None  # the requester's page is on PORT
        master, master_home = start_master(cluster, web=master_web)
        requester = start_requester(cluster, master, web=web or None)
        console.print(f"master    {master}\nrequester {requester}", soft_wrap=True)
        # Accounts are keys: each friend's user and the artist bind their names before the grant.
        homes = {f"friend{i + 1}": cluster.root / "homes" / f"friend{i + 1}" for i in range(friends)} | {"artist": out / "homes" / "artist"}
        keys = trio.run(_accounts, master, homes)
        if web:
            _print_operator_link(cluster, master_home)
        trio.run(_operate, master, master_home, requester, keys)
        names = [start_friend(cluster, master, i + 1, cheat=(cheat_kind or CHEATS[i % 3]) if i < cheaters else None) for i in range(friends)]
        trio.run(wait_for_friends, master, master_home, friends)
        t0 = time.monotonic()
        result = follow(scene, requester=requester, user="artist", home=out / "homes" / "artist", friends=friends, out=out / "frames", frames=frames)
        farm_seconds = time.monotonic() - t0
        final = trio.run(_settled, master, master_home, result.job)
    except (RemoteError, TransportError, RuntimeError, blender.BlenderError) as exc:
        cluster.stop_all()
        console.print("[red]demo failed:[/red]", safe_text(exc))  # a peer's reason: text, never markup
        return 1
    except BaseException:
        cluster.stop_all()
        raise
    try:
        code = _check(scene, out, frames, result, final, names, cheaters, farm_seconds, started)
        _linger(linger)
    finally:
        cluster.stop_all()
    return code


def demo_linger(asked: float | None, *, terminal: bool, web: str) -> float:
    """How long the demo keeps its farm and dashboards up after the job: as asked, else until Ctrl-C when run at a
    terminal with dashboards (their printed links keep working), else not at all."""
    if asked is not None:
        return asked
    return math.inf if terminal and web else 0.0


def _linger(seconds: float) -> None:
    if seconds <= 0:
        return
    until = "until Ctrl-C" if math.isinf(seconds) else f"for {seconds:g} s (Ctrl-C: stop now)"
    console.print(f"\nthe farm and its dashboards stay up {until}: the links above work until then")
    try:
        while seconds > 0:
            step = min(seconds, 3600.0)
            time.sleep(step)
            seconds -= step
    except KeyboardInterrupt:
        console.print("stopped")


def _check(
    scene: Path, out: Path, frames: tuple[int, ...], result: SubmitResult, final: msg.StatusReply, names: list[str], cheaters: int,
    farm_seconds: float, started: float,
) -> int:
    """The frames against a direct render, the summary and the video; 1 if a frame is wrong."""
    console.print(f"\nchecking the {len(result.frames)} frames against a direct render ...")
    t0 = time.monotonic()
    direct = _direct_render(scene, out / "direct", frames)
    direct_seconds = time.monotonic() - t0
    wrong = [  # the frames as the job named them (result.files), not by a fixed frame_####
        f for f, path in zip(result.frames, result.files)
        if blender.compare(path, direct[f], width=160, height=90).verdict == "disagree"
    ]
    made = video.assemble(result.files, out / "demo.mp4", fps=remembered_fps(out / "frames") or 24.0)
    _summary(result, final, names, cheaters, farm_seconds, direct_seconds, time.monotonic() - started, wrong, out)
    console.print(f"video: {made.path} ({made.frames} frames, {float(made.fps):g} fps)", soft_wrap=True)
    return 1 if wrong else 0


def _print_operator_link(cluster: Cluster, master_home: Path) -> None:
    """The operator's dashboard, opened with a token signed by the master's key (what `frender operator web-token` prints)."""
    url = cluster.wait_for_line("master", "master dashboard at ").split()[0]
    token = sign_token(Identity.load_or_create(master_home), OPERATOR, now=time.time(), seconds=12 * 3600)
    console.print(f"operator  {url}?t={token}", soft_wrap=True)


async def _accounts(master: Address, homes: dict[str, Path]) -> dict[str, str]:
    """Bind each user to the key in its home; each user's key fingerprint, as the operator's grants name it."""
    return {user: (await create_account(master, home, user)).key for user, home in homes.items()}


STAKE = 20  # points each friend's user starts with, as if earned before: what a cheater's fine is taken from


async def _operate(master: Address, master_home: Path, requester: Address, keys: dict[str, str]) -> None:
    await operator_call(master, master_home, msg.Trust(key=requester.fingerprint, name="demo-requester"))
    await operator_call(master, master_home, msg.Grant(user="artist", key=keys["artist"], amount=1000, reason="demo"))
    for user in [u for u in keys if u != "artist"]:  # a stake, so a cheater's owner has something to lose
        await operator_call(master, master_home, msg.Grant(user=user, key=keys[user], amount=STAKE, reason="demo stake"))


async def _settled(master: Address, home: Path, job: int) -> msg.StatusReply:
    """The master's view once the requester's report for ``job`` landed."""
    with trio.move_on_after(30):
        while True:
            reply = await status(master, home)
            if any(j.job == job and j.closed for j in reply.jobs):
                return reply
            await trio.sleep(0.2)
    return await status(master, home)


def _direct_render(scene: Path, work: Path, frames: tuple[int, ...]) -> dict[int, Path]:
    """One plain Blender process rendering the same frames, for the check and the timing."""
    work.mkdir(parents=True, exist_ok=True)
    blend = work / "scene.blend"
    shutil.copyfile(scene, blend)
    backend = blender.find_backend()
    rendered = trio.run(lambda: blender.render(backend, blend, work, frames, threads=None))
    return {r.frame: r.path for r in rendered}


def _summary(
    result: SubmitResult, final: msg.StatusReply, names: list[str], cheaters: int, farm_seconds: float, direct_seconds: float,
    total_seconds: float, wrong: list[int], out: Path,
) -> None:
    job = next(j for j in final.jobs if j.job == result.job)
    progress = result.progress
    table = Table(title=f"job {result.job}: {len(result.frames)} frames", header_style="bold")
    for column in ("friend", "final frames", "checks", "balance", ""):
        table.add_column(column)
    lines = {line.friend: line for line in progress.friends}
    for name in names:
        line = lines.get(name)
        user = name.split("/")[0]
        evicted = name in job.evicted
        table.add_row(
            name,
            str(line.final if line else 0),
            str(line.checks if line else 0),
            str(final.balances.get(user, 0)),
            "[red]cheat: evicted, fined[/red]" if evicted else ("cheats" if names.index(name) < cheaters else ""),
        )
    console.print(table)
    console.print(f"each friend's user started with {STAKE} points; a cheater's fine went to the artist")
    console.print(
        f"farm wall time {farm_seconds:.1f} s (direct Blender, one process, all threads: {direct_seconds:.1f} s); "
        f"demo total {total_seconds:.1f} s"
    )
    console.print(f"checks resolved {progress.checks}, disagreements {progress.disagreements}, evicted: {', '.join(job.evicted) or 'none'}")
    console.print(f"artist paid {job.paid} of {job.escrow} escrowed; balance now {final.balances.get('artist', 0)}")
    if wrong:
        console.print(f"[red]{len(wrong)} frames differ from the direct render: {wrong}[/red]")
    else:
        console.print(f"[green]every frame matches a direct render[/green]: {out / 'frames'}")
    console.print(f"audit it:  frender replay {out / 'master.db'}   and   frender replay {out / 'requester.db'}", soft_wrap=True)

