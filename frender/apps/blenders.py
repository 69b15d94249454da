"""``frender blender list|add``: the Blenders this machine holds for friends and requesters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from frender.apps.terminal import fail

if TYPE_CHECKING:  # the commands import what they use when they run: the CLI starts fast
    from frender.blender import Backend, Runtimes

__all__ = ["backend_of", "blender_app", "runtimes_of"]

blender_app = typer.Typer(no_args_is_help=True, help="The Blenders this machine holds: a job renders with the Blender that saved its file.")


@blender_app.command("list")
def list_runtimes(
    root: Optional[Path] = typer.Option(None, help="Where added Blenders live (default: $FRENDER_BLENDERS, else ~/.local/share/frender/blender)."),
) -> None:
    """List the Blenders a friend or requester started here would hold, newest first."""
    import trio

    from frender import blender

    try:
        held = blender.held_runtimes(root=root)
    except blender.BlenderNotFound as exc:
        typer.echo(f"no Blender here: {exc}. `frender blender add 5.0` installs one.", err=True)
        raise typer.Exit(1) from None
    runtimes = blender.Runtimes(held)
    versions = trio.run(runtimes.versions)  # each Blender runs once, to say its version
    for version, backend in sorted(versions.items(), key=lambda item: _key(item[0]), reverse=True):
        typer.echo(f"{version:<10} {backend!r}")


@blender_app.command("add")
def add(
    version: str = typer.Argument(..., help="A bpy version: 4.2, 4.5, 5.0 (Python 3.11) or 5.1 and later (Python 3.13); 4.2 takes its newest patch."),
    root: Optional[Path] = typer.Option(None, help="Where to install (default: $FRENDER_BLENDERS, else ~/.local/share/frender/blender)."),
) -> None:
    """Install a Blender (the bpy module, about 375 MB) in an environment of its own; pip shows the download."""
    from frender import blender

    try:
        typer.echo(f"installing bpy {version} for Python {blender.bpy_python(version)}...", err=True)
        where = blender.add_runtime(version, root=root)
    except blender.BlenderNotFound as exc:
        typer.echo(f"frender: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Blender {where.name} added in {where}; friends and requesters started from now on hold it")


def _key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


DEVICES = ("CPU", "CUDA", "OPTIX", "HIP", "METAL", "ONEAPI")


def backend_of(blender_path: str | None, device: str = "CPU") -> Backend:
    """A Blender rendering on ``device``: a version held here ("4.2", see `frender blender`), an executable, or
    "modelled:SECONDS[:WxH[:A-B]]": a stand-in that sleeps and writes real PNGs (benchmarks, tests)."""
    import attrs

    from frender.blender import BlenderNotFound, ModelledBackend, find_backend, held_runtimes, parse_resolution

    if device not in DEVICES:
        fail(f"--device is one of {', '.join(DEVICES)}")
    if blender_path and blender_path.startswith("modelled:"):
        seconds, _, rest = blender_path.removeprefix("modelled:").partition(":")
        size, _, span = rest.partition(":")
        first, _, last = (span or "1-24").partition("-")
        try:
            modelled = ModelledBackend(float(seconds), resolution=parse_resolution(size or "160x90"), frame_range=(int(first), int(last)))
        except ValueError as exc:
            fail(f"--blender {blender_path}: {exc}")
        modelled.profile = attrs.evolve(modelled.profile, device=device)  # a modelled GPU pairs with modelled GPUs only
        return modelled
    try:  # the device is checked against what Blender finds when it is first probed
        return find_backend(device=device) if blender_path is None else held_runtimes([blender_path], device=device)[0]
    except BlenderNotFound as exc:
        fail(str(exc))


def runtimes_of(blenders: list[str], device: str = "CPU") -> Runtimes:
    """Every Blender a requester holds, rendering on ``device``: those given (versions, executables, modelled),
    else all held here."""
    from frender.blender import BlenderNotFound, Runtimes, held_runtimes

    if blenders:
        return Runtimes([backend_of(given, device) for given in blenders])
    try:
        return Runtimes(held_runtimes(device=device))
    except BlenderNotFound as exc:
        fail(str(exc))
