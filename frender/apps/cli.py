"""The `frender` command: run the processes, submit jobs, audit logs."""

from __future__ import annotations

import json
import logging
import platform
import sys
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Optional, TypeVar

import typer

from frender.apps.accounts import account_app, operator_app
from frender.apps.blenders import backend_of, blender_app, runtimes_of
from frender.apps.terminal import DEFAULT_HOME, call_or_fail, fail, log_handler, safe

if TYPE_CHECKING:  # the commands import what they use when they run: the CLI starts fast
    from frender.transports import Address

E = TypeVar("E", bound=BaseException)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fRender: a volunteer render farm for Blender.",
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(no_args_is_help=True, help="Run a master, a requester or a friend.")
app.add_typer(run_app, name="run")
app.add_typer(operator_app, name="operator")
friend_app = typer.Typer(no_args_is_help=True, help="Control a running friend through its --home: pause, resume, status.")
app.add_typer(friend_app, name="friend")
app.add_typer(account_app, name="account")
app.add_typer(blender_app, name="blender")


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"frender {version('frender')}")
        except PackageNotFoundError:
            typer.echo("frender (not installed: run `python3.11 -m pip install -e .` in its folder)")
        raise typer.Exit()


@app.callback()
def root(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and stop."),
) -> None:
    """fRender: friends render, requesters verify, a master keeps the points."""


def _address(text: str) -> Address:
    from frender.transports import Address

    try:
        return Address.parse(text)
    except ValueError as exc:
        fail(f"bad address {text!r}: {exc}")


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        fail(f"--listen wants HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _frames(text: str | None) -> tuple[int, ...]:
    from frender.apps.artist import parse_frames

    if not text:
        return ()
    try:
        return parse_frames(text)
    except ValueError as exc:
        fail(f"--frames {text}: {exc} (frames are A, A-B, A-BxSTEP or a comma list of these)")
    return ()


def _announce(address_file: Path | None) -> Callable[[str], None]:
    def announce(line: str) -> None:
        typer.echo(line, err=True)
        if address_file is not None and " at frender://" in line:
            url = line.split(" at ", 1)[1].split()[0]
            tmp = address_file.with_suffix(".tmp")
            tmp.write_text(url + "\n")
            tmp.replace(address_file)

    return announce


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[log_handler("%(asctime)s %(name)s: %(message)s")])


def _web(text: str | None) -> tuple[str, int] | None:
    """``--web HOST:PORT`` for a dashboard; None when not asked for."""
    if text is None:
        return None
    from frender.apps.web import parse_bind

    try:
        return parse_bind(text)
    except ValueError as exc:
        fail(str(exc))


def _serving(main: Callable[[], Awaitable[object]], listen: str) -> None:
    """Run a server's ``main``; a port in use (its own or the dashboard's) is one line, not a traceback."""
    import errno

    from frender.apps.web import WebUnavailable

    problem = None
    try:
        _trio_run(main)
    except* WebUnavailable as group:  # nested as deep as the nurseries it came through
        problem = f"{_leaves(group)[0]} (is another frender already running there? choose another --web)"
    except* OSError as group:
        bind = [e for e in _leaves(group) if e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)]
        if len(bind) != len(_leaves(group)):
            raise
        problem = f"cannot listen on {listen}: {bind[0].strerror} (is another frender already running there? choose another --listen)"
    if problem is not None:
        fail(problem)


def _leaves(group: BaseExceptionGroup[E]) -> list[E]:
    """The exceptions in a group, however deeply nested."""
    return [leaf for e in group.exceptions for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])]


def _trio_run(fn: Callable[..., Awaitable[object]], *args: object) -> None:
    import trio

    try:
        trio.run(fn, *args)
    except* KeyboardInterrupt:  # Ctrl-C, also when it reached a nursery and came out in a group
        typer.echo("stopped", err=True)


@run_app.command("master")
def run_master(
    listen: str = typer.Option("127.0.0.1:7000", help="HOST:PORT to listen on (port 0: any)."),
    db: Path = typer.Option(Path("master.db"), help="The master's event log."),
    home: Path = typer.Option(DEFAULT_HOME / "master", help="Where the master's key lives."),
    friend_timeout: int = typer.Option(2000, "--friend-timeout", help="Milliseconds after its last heartbeat a friend is live."),
    trust: list[str] = typer.Option([], help="Trust a requester key: NAME=sha256:..."),
    starting_grant: int = typer.Option(0, help="Points a new username starts with (0: no free points)."),
    trust_jobs: int = typer.Option(3, min=1, help="Jobs whose own checks a friend must pass to be trusted (Rule 7)."),
    trust_requesters: int = typer.Option(2, min=1, help="Distinct requesters among those jobs (a farm with one requester: 1, or no friend is ever trusted)."),
    max_per_host: int = typer.Option(64, help="Connections allowed from one IP address."),
    sync: str = typer.Option(
        "full", help="full: every commit reaches the disk before its answer; normal: faster, but a power cut may lose the last commits."
    ),
    address_file: Optional[Path] = typer.Option(None, help="Also write the address here."),
    web: Optional[str] = typer.Option(None, help="Serve the operator's dashboard on HOST:PORT (e.g. 127.0.0.1:8000; default: none)."),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Run the master: the registry of friends and the points ledger."""
    from frender.apps.master import run_master as run
    from frender.core.master import MasterSettings
    from frender.transports import Limits

    _logging(verbose)
    host, port = _listen(listen)
    from frender.core.names import NAME_RULE, is_valid_name

    pairs = []
    for item in trust:
        name, _, key = item.partition("=")
        if not key.startswith("sha256:"):
            fail(f"--trust wants NAME=sha256:..., not {item!r}")
        if not is_valid_name(name):
            fail(f"--trust {item!r}: the requester's name must be {NAME_RULE}")
        pairs.append((key, name))
    if sync not in ("full", "normal"):
        fail(f"--sync is full or normal, not {sync!r}")
    settings = MasterSettings(friend_timeout=friend_timeout / 1000, starting_grant=starting_grant, trust_jobs=trust_jobs, trust_requesters=trust_requesters)

    async def main() -> None:
        await run(
            host=host, port=port, db=db, home=home, settings=settings, trust=tuple(pairs),
            limits=Limits(max_per_host=max_per_host), sync=sync, announce=_announce(address_file), web=web_bind,
        )

    web_bind = _web(web)
    _serving(main, listen)


@run_app.command("requester")
def run_requester(
    master: str = typer.Option(..., help="The master's address, frender://HOST:PORT#sha256:..."),
    listen: str = typer.Option("127.0.0.1:7100", help="HOST:PORT to listen on (port 0: any)."),
    db: Path = typer.Option(Path("requester.db"), help="The requester's event log."),
    home: Path = typer.Option(DEFAULT_HOME / "requester", help="Key, uploads and job files."),
    blender: list[str] = typer.Option(
        [], help="A Blender to hold: a version added with `frender blender add`, or an executable (repeatable; default: every Blender held here)."
    ),
    device: str = typer.Option("CPU", help="Render own checks on: CPU, or a GPU type (CUDA, OPTIX, HIP, METAL, ONEAPI); jobs go to friends on the same."),
    seconds_per_frame: float = typer.Option(5.0, help="Render time estimate per frame, for deadlines."),
    startup_seconds: float = typer.Option(5.0, help="Blender start-up estimate per task, for deadlines."),
    starved_after: float = typer.Option(
        600.0, min=0.001, help="Seconds a job that no friend can go on with waits for the master's others before it fails."
    ),
    own_renders: int = typer.Option(1, min=1, help="Own check renders side by side (1: the requester's CPU is shared)."),
    own_backlog: float = typer.Option(
        60.0, min=0.0, help="Seconds of own check renders, owed and to come, past which friends get checks only, no frames (admission)."
    ),
    max_per_host: int = typer.Option(64, help="Connections allowed from one IP address."),
    max_connections: int = typer.Option(1024, min=1, help="Connections at once (each friend holds two: work and files)."),
    address_file: Optional[Path] = typer.Option(None, help="Also write the address here."),
    web: Optional[str] = typer.Option(None, help="Serve the artists' dashboard on HOST:PORT (e.g. 127.0.0.1:8100; default: none)."),
    measure_crops: bool = typer.Option(
        True, "--measure-crops/--no-measure-crops", help="At submit, render a job's first frame whole and windows of it; crop-check only if they equal.",
    ),
    long_frame: float = typer.Option(
        120.0, min=0.0, help="Seconds a frame took here past which `--tiles auto` shares the tail of a short animation in tiles."
    ),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Run a requester: hosts clients' jobs, hands out work, verifies frames, reports to the master."""
    from frender.apps.requester import NEW_JOBS, RequesterSettings, run_requester as run
    from frender.core.job import JobSettings
    from frender.transports import Limits

    _logging(verbose)
    host, port = _listen(listen)
    backend = runtimes_of(blender, device.upper())
    settings = RequesterSettings(
        job=JobSettings(seconds_per_frame=seconds_per_frame, startup_seconds=startup_seconds, starved_after=starved_after, **NEW_JOBS),
        measure_crops=measure_crops,
        long_frame=long_frame,
        own_renders_at_once=own_renders,
        own_backlog=own_backlog,
    )

    async def main() -> None:
        await run(
            master=_address(master), host=host, port=port, db=db, home=home, backend=backend, settings=settings,
            limits=Limits(max_per_host=max_per_host, max_connections=max_connections), announce=_announce(address_file), web=web_bind,
        )

    web_bind = _web(web)
    _serving(main, listen)


@run_app.command("friend")
def run_friend(
    master: str = typer.Option(..., help="The master's address, frender://HOST:PORT#sha256:..."),
    user: str = typer.Option(..., help="Your username; its points are yours."),
    name: str = typer.Option(platform.node().split(".")[0] or "friend", help="This computer's name among your friends."),
    blender: Optional[str] = typer.Option(
        None, help="The Blender to render with: a version added by `frender blender add` (4.2), or an executable (default: bpy, else blender on PATH)."
    ),
    device: str = typer.Option("CPU", help="Render on: CPU, or your GPU (CUDA, OPTIX, HIP, METAL, ONEAPI): GPU friends take jobs of requesters on the same."),
    threads: Optional[int] = typer.Option(None, help="Render threads to lend (default: all)."),
    home: Path = typer.Option(DEFAULT_HOME / "friend", help="Key and the .blend cache."),
    schedule: Optional[str] = typer.Option(None, help='Render only in these local-time windows, e.g. "mon-fri 19:00-07:00, sat-sun 00:00-24:00".'),
    when_idle: bool = typer.Option(False, "--when-idle", help="Render only while nobody uses this computer; stop at once when they return."),
    idle_minutes: float = typer.Option(5.0, help="With --when-idle: minutes without input or others' CPU use that count as idle."),
    max_memory: str = typer.Option("8G", help="Blender's memory cap, e.g. 4G or 512M."),
    nice: int = typer.Option(10, help="Blender's niceness: 0 normal priority, 19 the lowest."),
    refuse_user: list[str] = typer.Option([], help="Never render this user's jobs (repeatable); the master is told."),
    cheat: Optional[str] = typer.Option(None, hidden=True, help="Demo and tests only: black, noise, stale, smart or colluding."),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Lend this computer: render other people's Blender jobs, earn points."""
    from frender.apps.availability import IdlePolicy, Schedule
    from frender.apps.friend import FriendRefused, FriendSettings, run_friend as run
    from frender.core.names import NAME_RULE, is_valid_name

    _logging(verbose)
    if not is_valid_name(name):
        fail(f"--name {name!r}: a friend's name must be {NAME_RULE} (give --name, e.g. --name laptop)")
    if cheat not in (None, "black", "noise", "stale", "smart", "colluding"):
        fail("--cheat is black, noise, stale, smart or colluding")
    try:
        plan = Schedule.parse(schedule) if schedule is not None else None
    except ValueError as exc:
        fail(f"--schedule: {exc}")
    if not 0 <= nice <= 19:
        fail("--nice is 0 to 19")
    if idle_minutes <= 0:
        fail("--idle-minutes must be positive")
    settings = FriendSettings(nice=nice, max_memory=_size(max_memory, "--max-memory"))
    idle = IdlePolicy(minutes=idle_minutes) if when_idle else None
    backend = backend_of(blender, device.upper())

    def say(line: str) -> None:
        typer.echo(safe(line, lines=True), err=True)

    async def main() -> None:
        import signal

        import trio

        async with trio.open_nursery() as nursery:

            async def stop_on_sigterm() -> None:  # like Ctrl-C: the friend hands back its work and says "stopped"
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_sigterm)
            await run(
                master=_address(master), user=user, name=name, home=home, backend=backend, threads=threads, cheat=cheat, log=say,
                settings=settings, schedule=plan, idle=idle, refuse=refuse_user,
            )
            nursery.cancel_scope.cancel()

    try:
        _trio_run(main)
    except FriendRefused as exc:
        fail(str(exc))


def _size(text: str, option: str) -> int:
    """Bytes from "4G", "512M", "4GiB" or a plain number."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = number[-1:] if number[-1:] in units else ""
    try:
        value = float(number[: len(number) - len(unit)]) * units[unit]
    except ValueError:
        fail(f"{option} wants a size like 4G or 512M, not {text!r}")
    if value < 64 << 20:
        fail(f"{option} {text}: Blender needs at least 64M")
    return int(value)


@app.command()
def submit(
    blend: Path = typer.Argument(..., help="The .blend to render."),
    requester: str = typer.Option(..., help="The requester's address."),
    user: str = typer.Option(..., help="Your username (its points pay for the job)."),
    friends: int = typer.Option(4, help="How many friends to render on."),
    frames: Optional[str] = typer.Option(None, help="A-B, A-BxSTEP or a list 1,5,10-20 (default: the file's range and step)."),
    checks: int = typer.Option(
        1, help="0 turns checking off. Otherwise every frame of an 8-bit PNG job is crop-checked;"
        " other formats get this many whole test frames per friend's batch.",
    ),
    out: Path = typer.Option(Path("frames"), help="Where the frames go, in the file's own format and names."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key."),
    video: Optional[Path] = typer.Option(None, help="Also assemble the final frames into this H.264 video (.mp4)."),
    name: Optional[str] = typer.Option(None, help="Name frames by this pattern (shot_####) instead of the file's output path."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Render frames outside the file's frame range."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Render although files the .blend uses are missing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be packed and uploaded, check the file, then stop."),
    priority: int = typer.Option(0, min=-100, max=100, help="Jobs waiting for friends get them by priority, higher first."),
    blender: str = typer.Option("", help="Render with this Blender (4.2, 5.0.1) instead of the one that saved the file."),
    include_outside: bool = typer.Option(
        False, "--include-outside", help="Send the files the .blend uses from outside its folder (asked when run in a terminal)."
    ),
    tiles: str = typer.Option(
        "",
        help="Render each frame in tiles on many friends and stitch it: COLSxROWS (4x4; an animation: its tail in tiles), or auto "
        "(when friends outnumber frames, or for the tail of a short animation of long frames).",
    ),
) -> None:
    """Upload a .blend, follow the job and write its frames as they become final."""
    from frender.apps.progress import console, follow
    from frender.transports import RemoteError, TransportError

    from frender.apps.client import SubmitRefused
    from frender.apps.cli_artist import say_ended, interrupted, write_video

    if not blend.is_file():
        fail(f"{blend}: no such file")
    from frender.apps import preflight
    from frender.apps.tiles import parse_tiles

    try:
        parse_tiles(tiles)
    except ValueError as exc:
        fail(str(exc))

    if dry_run:
        lines, refused = preflight.dry_run(
            blend, _frames(frames), include_outside=include_outside, allow_outside=allow_outside, allow_missing=allow_missing, keys=(home,)
        )
        if lines:
            typer.echo("\n".join(lines))
        if refused:
            fail(refused)
        return
    if not include_outside:
        include_outside, refused = preflight.consent(blend, keys=(home,), ask=lambda question: typer.confirm(question, default=False))
        if refused:
            fail(refused)
    address = _address(requester)
    result = None
    try:
        result = follow(
            blend, requester=address, user=user, home=home, friends=friends, out=out, frames=_frames(frames), checks=checks,
            name=name, allow_outside=allow_outside, allow_missing=allow_missing, priority=priority, blender=blender,
            include_outside=include_outside, on_note=lambda line: console.print(line, soft_wrap=True), tiles=tiles,
        )  # fmt: skip
    except* KeyboardInterrupt:  # Ctrl-C, also when it came out of a nursery in a group
        pass
    except* SubmitRefused as group:
        fail(str(_leaves(group)[0]))
    except* ValueError as group:
        fail(f"--name {name}: {_leaves(group)[0]}")
    except* RemoteError as group:
        refusal = _leaves(group)[0]
        if refusal.code == "untrusted":  # the master's words to the requester, passed on
            fail(
                f"the requester's master does not trust it yet, so it takes no job: its operator must run"
                f" `frender operator trust {address.fingerprint} --name NAME --master MASTER` (then submit again)"
            )
        fail(f"the requester refused {blend}: {_named(refusal.reason, blend)} ({refusal.code})")
    except* TransportError as group:
        fail(str(_leaves(group)[0]))
    if result is None:
        interrupted(out, requester, home)
    say_ended(result, out)
    if video is not None and not result.progress.cancelled:
        write_video(video, out, None)


def _named(reason: str, blend: Path) -> str:
    """A reason from the requester names the upload by its hash; the user knows it by its name."""
    import re

    return re.sub(r"\S*[0-9a-f]{64}(\.blend)?", blend.name, reason)


@app.command()
def jobs(
    requester: str = typer.Option(..., help="The requester's address."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List my jobs at a requester: state, frames final/total, friends, time left, points escrowed and spent."""

    from frender.apps.client import jobs as get_jobs
    from frender.apps.progress import print_jobs

    from frender.apps.out_folder import job_folders

    address = _address(requester)
    reply = call_or_fail("the requester", get_jobs, address, home)
    if as_json:
        from frender import codec

        typer.echo(json.dumps(codec.converter.unstructure(reply), indent=2))
    else:
        print_jobs(reply, job_folders(home, str(address)))


@app.command()
def status(
    master: str = typer.Option(..., help="The master's address."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show the master's friends (live, busy, profile), jobs and balances."""
    import trio

    from frender.apps.client import status as get_status
    from frender.apps.progress import print_status
    from frender.transports import TransportError

    try:
        reply = trio.run(get_status, _address(master), home)
    except TransportError as exc:
        fail(str(exc))
    if as_json:
        from frender import codec

        typer.echo(json.dumps(codec.converter.unstructure(reply), indent=2))
    else:
        print_status(reply)


@app.command()
def scene(
    out: Path = typer.Argument(..., help="Where to write the .blend."),
    frames: int = typer.Option(24, help="Number of frames (1..N)."),
    resolution: str = typer.Option("160x90", help="WxH."),
    samples: int = typer.Option(16, help="Cycles samples."),
) -> None:
    """Write the bundled demo scene: Cycles on the CPU, every frame visibly different."""
    from frender.blender import BlenderError, scene_command

    try:
        path = scene_command(out, frames=frames, resolution=resolution, samples=samples)
    except (BlenderError, ValueError) as exc:
        fail(str(exc).splitlines()[0])
    typer.echo(f"wrote {path}")


@app.command()
def demo(
    friends: int = typer.Option(4, help="Friend processes to start."),
    frames: str = typer.Option("1-24", help="Frames to render, A-B."),
    cheaters: int = typer.Option(0, help="How many of the friends cheat (black, noise, stale in turn)."),
    out: Path = typer.Option(Path("frender-demo"), help="Where frames, logs and the event logs go."),
    web: str = typer.Option("127.0.0.1:0", help="Where the dashboards listen, HOST:PORT (port 0: any free port; '' for none)."),
    linger: Optional[float] = typer.Option(
        None, help="Seconds to keep the farm and its dashboards up after the job (default: until Ctrl-C at a terminal, else 0)."
    ),
    cheat_kind: Optional[str] = typer.Option(None, help="What every cheater does: black, noise, stale, smart or colluding (default: the first three in turn)."),
) -> None:
    """The whole system on this machine: a master, a requester and friends render the demo scene."""
    from frender.apps.demo import demo_linger, run_demo

    if not 1 <= friends <= 32:
        fail("--friends is 1 to 32")
    if not 0 <= cheaters < friends:
        fail("--cheaters must leave at least one honest friend")
    if cheat_kind not in (None, "black", "noise", "stale", "smart", "colluding"):
        fail("--cheat-kind is black, noise, stale, smart or colluding")
    chosen = _frames(frames)
    if chosen[0] < 1:
        fail("--frames start at 1")
    if web:
        _web(web)
    if linger is not None and linger < 0:
        fail("--linger is 0 or more seconds")
    linger = demo_linger(linger, terminal=sys.stdin.isatty(), web=web)
    code = run_demo(friends=friends, frames=chosen, cheaters=cheaters, out=out, web=web, linger=linger, cheat_kind=cheat_kind)
    raise typer.Exit(code)


@app.command()
def replay(
    log: Path = typer.Argument(..., help="An event log: master.db or requester.db."),
    job: Optional[int] = typer.Option(None, "--job", help="Only this job's story."),
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
) -> None:
    """Verify a log's hash chain, fold it and print its story: jobs, checks, evictions, points."""
    from frender.apps.replay import audit, render_text
    from frender.store import LogError

    try:
        report = audit(log, job=job)
    except LogError as exc:
        fail(str(exc))
    typer.echo(json.dumps(report, indent=2) if as_json else render_text(report))


from frender.apps import cli_artist  # noqa: E402,F401  (registers fetch, cancel and video on app)
from frender.apps import cli_friend  # noqa: E402,F401  (registers friend pause, resume and status)


def main() -> None:
    app(prog_name="frender")


if __name__ == "__main__":
    main()
