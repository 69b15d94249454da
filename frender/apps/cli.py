"""The `frender` command: run the processes, submit jobs, audit logs."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="fRender: a volunteer render farm for Blender.",
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(no_args_is_help=True, help="Run a master, a requester or a friend.")
operator_app = typer.Typer(no_args_is_help=True, help="Operator commands, signed with the master's key (its --home).")
app.add_typer(run_app, name="run")
app.add_typer(operator_app, name="operator")

DEFAULT_HOME = Path(os.environ.get("FRENDER_HOME", Path.home() / ".frender"))


@app.callback()
def root() -> None:
    """fRender: friends render, requesters verify, a master keeps the points."""


def fail(message: str) -> None:
    """One clear line on stderr and exit status 1: the contract for bad input."""
    typer.echo(f"frender: {message}", err=True)
    raise typer.Exit(1)


def _address(text: str):
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


def _announce(address_file: Path | None):
    def announce(line: str) -> None:
        typer.echo(line, err=True)
        if address_file is not None and " at frender://" in line:
            url = line.split(" at ", 1)[1].split()[0]
            tmp = address_file.with_suffix(".tmp")
            tmp.write_text(url + "\n")
            tmp.replace(address_file)

    return announce


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)


def _backend(blender_path: str | None):
    """A real Blender, or "modelled:SECONDS[:WxH[:A-B]]": a stand-in that sleeps and writes real PNGs (benchmarks, tests)."""
    from frender.blender import BlenderNotFound, ModelledBackend, find_backend, parse_resolution

    if blender_path and blender_path.startswith("modelled:"):
        seconds, _, rest = blender_path.removeprefix("modelled:").partition(":")
        size, _, span = rest.partition(":")
        first, _, last = (span or "1-24").partition("-")
        try:
            return ModelledBackend(float(seconds), resolution=parse_resolution(size or "160x90"), frame_range=(int(first), int(last)))
        except ValueError as exc:
            fail(f"--blender {blender_path}: {exc}")
    try:
        return find_backend(blender_path)
    except BlenderNotFound as exc:
        fail(str(exc))


def _trio_run(fn, *args) -> None:
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
    max_per_host: int = typer.Option(64, help="Connections allowed from one IP address."),
    sync: str = typer.Option(
        "full", help="full: every commit reaches the disk before its answer; normal: faster, but a power cut may lose the last commits."
    ),
    address_file: Optional[Path] = typer.Option(None, help="Also write the address here."),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Run the master: the registry of friends and the points ledger."""
    from frender.apps.master import run_master as run
    from frender.core.master import MasterSettings
    from frender.transports import Limits

    _logging(verbose)
    host, port = _listen(listen)
    pairs = []
    for item in trust:
        name, _, key = item.partition("=")
        if not key.startswith("sha256:"):
            fail(f"--trust wants NAME=sha256:..., not {item!r}")
        pairs.append((key, name))
    if sync not in ("full", "normal"):
        fail(f"--sync is full or normal, not {sync!r}")
    settings = MasterSettings(friend_timeout=friend_timeout / 1000, starting_grant=starting_grant)

    async def main() -> None:
        await run(
            host=host, port=port, db=db, home=home, settings=settings, trust=tuple(pairs),
            limits=Limits(max_per_host=max_per_host), sync=sync, announce=_announce(address_file),
        )

    _trio_run(main)


@run_app.command("requester")
def run_requester(
    master: str = typer.Option(..., help="The master's address, frender://HOST:PORT#sha256:..."),
    listen: str = typer.Option("127.0.0.1:7100", help="HOST:PORT to listen on (port 0: any)."),
    db: Path = typer.Option(Path("requester.db"), help="The requester's event log."),
    home: Path = typer.Option(DEFAULT_HOME / "requester", help="Key, uploads and job files."),
    blender: Optional[str] = typer.Option(None, help="A blender executable (default: the bpy module, else blender on PATH)."),
    seconds_per_frame: float = typer.Option(5.0, help="Render time estimate per frame, for deadlines."),
    startup_seconds: float = typer.Option(5.0, help="Blender start-up estimate per task, for deadlines."),
    max_per_host: int = typer.Option(64, help="Connections allowed from one IP address."),
    address_file: Optional[Path] = typer.Option(None, help="Also write the address here."),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Run a requester: hosts clients' jobs, hands out work, verifies frames, reports to the master."""
    from frender.apps.requester import RequesterSettings, run_requester as run
    from frender.core.job import JobSettings
    from frender.transports import Limits

    _logging(verbose)
    host, port = _listen(listen)
    backend = _backend(blender)
    settings = RequesterSettings(job=JobSettings(seconds_per_frame=seconds_per_frame, startup_seconds=startup_seconds))

    async def main() -> None:
        await run(
            master=_address(master), host=host, port=port, db=db, home=home, backend=backend, settings=settings,
            limits=Limits(max_per_host=max_per_host), announce=_announce(address_file),
        )

    _trio_run(main)


@run_app.command("friend")
def run_friend(
    master: str = typer.Option(..., help="The master's address, frender://HOST:PORT#sha256:..."),
    user: str = typer.Option(..., help="Your username; its points are yours."),
    name: str = typer.Option(os.uname().nodename.split(".")[0], help="This computer's name among your friends."),
    blender: Optional[str] = typer.Option(None, help="A blender executable (default: the bpy module, else blender on PATH)."),
    threads: Optional[int] = typer.Option(None, help="Render threads to lend (default: all)."),
    home: Path = typer.Option(DEFAULT_HOME / "friend", help="Key and the .blend cache."),
    cheat: Optional[str] = typer.Option(None, hidden=True, help="Demo and tests only: black, noise or stale."),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Lend this computer: render other people's Blender jobs, earn points."""
    from frender.apps.friend import FriendRefused, run_friend as run

    _logging(verbose)
    if cheat not in (None, "black", "noise", "stale"):
        fail("--cheat is black, noise or stale")
    backend = _backend(blender)

    def say(line: str) -> None:
        typer.echo(line, err=True)

    async def main() -> None:
        await run(master=_address(master), user=user, name=name, home=home, backend=backend, threads=threads, cheat=cheat, log=say)

    try:
        _trio_run(main)
    except FriendRefused as exc:
        fail(str(exc))


@app.command()
def submit(
    blend: Path = typer.Argument(..., help="The .blend to render."),
    requester: str = typer.Option(..., help="The requester's address."),
    user: str = typer.Option(..., help="Your username (its points pay for the job)."),
    friends: int = typer.Option(4, help="How many friends to render on."),
    frames: Optional[str] = typer.Option(None, help="A-B, A-BxSTEP or a list 1,5,10-20 (default: the file's range and step)."),
    checks: int = typer.Option(1, help="Test frames per friend (per batch)."),
    out: Path = typer.Option(Path("frames"), help="Where the frames go, in the file's own format and names."),
    home: Path = typer.Option(DEFAULT_HOME / "client", help="Your key."),
    name: Optional[str] = typer.Option(None, help="Name frames by this pattern (shot_####) instead of the file's output path."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Render frames outside the file's frame range."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Render although files the .blend uses are missing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be packed and uploaded, then stop."),
) -> None:
    """Upload a .blend, follow the job and write its frames as they become final."""
    from frender.apps.progress import follow
    from frender.transports import RemoteError, TransportError

    from frender.apps.client import SubmitRefused

    if not blend.is_file():
        fail(f"{blend}: no such file")
    if dry_run:
        import shutil

        from frender.apps.pack import describe, pack

        packed = pack(blend)
        shutil.rmtree(packed.root, ignore_errors=True)
        typer.echo("\n".join(describe(packed)))
        if packed.missing and not allow_missing:
            fail(f"{len(packed.missing)} missing files: a submit would be refused (--allow-missing renders without them)")
        return
    address = _address(requester)
    try:
        result = follow(
            blend, requester=address, user=user, home=home, friends=friends, out=out, frames=_frames(frames), checks=checks,
            name=name, allow_outside=allow_outside, allow_missing=allow_missing,
        )  # fmt: skip
    except SubmitRefused as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"--name {name}: {exc}")
    except RemoteError as exc:
        fail(f"the requester refused: {exc.reason} ({exc.code})")
    except TransportError as exc:
        fail(str(exc))
    typer.echo(f"job {result.job}: {len(result.frames)} frames in {out}")


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


@operator_app.command("grant")
def operator_grant(
    user: str,
    amount: int,
    master: str = typer.Option(..., help="The master's address."),
    home: Path = typer.Option(DEFAULT_HOME / "master", help="The master's home (its key)."),
    reason: str = typer.Option("operator grant"),
) -> None:
    """Grant points to a user."""
    _operator(master, home, "grant", user=user, amount=amount, reason=reason)


@operator_app.command("trust")
def operator_trust(
    key: str = typer.Argument(..., help="The requester's key fingerprint, sha256:..."),
    name: str = typer.Option("requester", help="A name for the log."),
    master: str = typer.Option(..., help="The master's address."),
    home: Path = typer.Option(DEFAULT_HOME / "master", help="The master's home (its key)."),
) -> None:
    """Trust a requester's key to ask for friends."""
    _operator(master, home, "trust", key=key, name=name)


def _operator(master: str, home: Path, what: str, **fields) -> None:
    import trio

    from frender.apps import messages as msg
    from frender.apps.client import operator_call
    from frender.transports import RemoteError, TransportError

    request = msg.Grant(**fields) if what == "grant" else msg.Trust(**fields)
    try:
        trio.run(operator_call, _address(master), home, request)
    except RemoteError as exc:
        fail(f"the master refused: {exc.reason} ({exc.code})")
    except TransportError as exc:
        fail(str(exc))
    typer.echo("done")


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
) -> None:
    """The whole system on this machine: a master, a requester and friends render the demo scene."""
    from frender.apps.demo import run_demo

    if not 1 <= friends <= 32:
        fail("--friends is 1 to 32")
    if not 0 <= cheaters < friends:
        fail("--cheaters must leave at least one honest friend")
    chosen = _frames(frames)
    if chosen[0] < 1:
        fail("--frames start at 1")
    code = run_demo(friends=friends, frames=chosen, cheaters=cheaters, out=out)
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


def main() -> None:
    app(prog_name="frender")


if __name__ == "__main__":
    sys.exit(main())
