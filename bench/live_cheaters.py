"""Cheating friends for bench/attacks_live.py: small clients of the real protocol, not the friend's --cheat switch.

Each cheater registers with the master under its own account and key,
heartbeats, takes the assignments the master signs for it, asks the
requester for work (``WantWork``), renders with the modelled backend and
delivers each frame through ``FileLink.put``, exactly as ``frender run
friend`` does. What it renders is its coalition's choice:

- ``honest``: every frame and window as the modelled Blender makes it (farming trust);
- ``away`` (any mode): a member listed there stops heartbeating, so the master counts its machine gone;
- ``forge``: after the first ``honest_first`` frames of each job (the batch it knows is spot-checked), a fraction
  ``fraction`` of its frames is forged (noise or black, drawn from the job and frame, so the choice is the same in
  every member's head) at next to no cost, and a window it is asked to render of a frame a fellow member delivered
  forged is cut from that forgery: it vouches for its coalition.

Members of one coalition run in one process and share what they forged (the attacker shares everything).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trio
from attrs import define, field
from PIL import Image

from frender.apps.messages import FrameStored, Heartbeat, HeartbeatReply, NoWork, RegisterFriend, Registered, WantWork, Work
from frender.blender import ModelledBackend, Window, decode_png, forge_frame
from frender.transports import Address, FileLink, Identity, PeerGone, RemoteError, SignedAssignment, connect, file_header

__all__ = ["Coalition", "run_cheater"]

LINK_FAILURES = (PeerGone, OSError, trio.TooSlowError, RemoteError)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@define
class Coalition:
    """What the members share: the mode, what each forged, and their counts (the harness reads them)."""

    resolution: tuple[int, int]
    mode: str = "honest"  # "honest" or "forge"
    kind: str = "noise"  # "noise" or "black"
    fraction: float = 1.0
    honest_first: int = 8  # frames each member renders honestly at the start of every job
    vouch: bool = True  # members render fellow members' forgeries when checking them
    away: set[str] = field(factory=set)  # members whose machine is off for now (no heartbeat: the master counts them gone)
    forged: dict[tuple[int, int], bytes] = field(factory=dict)  # (job, frame) -> the forgery a member delivered
    rendered: dict[tuple[int, str], int] = field(factory=dict)  # (job, friend) -> frames rendered in the job
    counts: dict[str, int] = field(factory=dict)  # "forged", "vouched", "honest_frames", "honest_windows"

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def forges(self, job: int, friend: str, frame: int) -> bool:
        if self.mode != "forge" or self.rendered.get((job, friend), 0) < self.honest_first:
            return False
        draw = int(hashlib.sha256(f"{job}/{frame}".encode()).hexdigest()[:8], 16) / 2**32
        return draw < self.fraction

    def forgery(self, job: int, frame: int) -> bytes:
        width, height = self.resolution
        if self.kind == "black":
            return forge_frame("black", width=width, height=height)
        rng = np.random.default_rng(int(hashlib.sha256(f"noise/{job}/{frame}".encode()).hexdigest()[:12], 16))
        pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        pixels[..., 3] = 255
        return _png(pixels)


async def run_cheater(
    *, master: Address, user: str, home: Path, coalition: Coalition, seconds: float, frame_range: tuple[int, int],
    log: Callable[[str], None] = lambda line: None,
) -> None:
    """One cheating friend ``user/box``, until cancelled: registered and heartbeating, working on what it is granted."""
    identity = Identity.load_or_create(home)
    backend = ModelledBackend(seconds, resolution=coalition.resolution, frame_range=frame_range)
    friend = f"{user}/box"
    done: set[int] = set()
    running: set[int] = set()
    last_done: int | None = None
    work_dir = home / "jobs"

    async def work_on(job: int, signed: SignedAssignment, requester: Address) -> None:
        nonlocal last_done
        try:
            await _work(job, signed, requester)
        except LINK_FAILURES as exc:
            log(f"{friend} job {job}: {exc}")
        finally:
            running.discard(job)
            done.add(job)
            last_done = job

    async def _work(job: int, signed: SignedAssignment, requester: Address) -> None:
        async with connect(requester, identity) as session, FileLink(requester, identity) as link:
            while True:
                with trio.fail_after(15):
                    reply = await session.call(WantWork(assignment=signed, keeping=()))
                if isinstance(reply, NoWork):
                    if reply.over:
                        log(f"{friend} job {job}: over ({reply.why})")
                        return
                    await trio.sleep(max(reply.retry_after, 0.01))
                    continue
                assert isinstance(reply, Work)
                await _task(job, reply, link)

    async def _task(job: int, work: Work, link: FileLink) -> None:
        out = work_dir / str(job)
        out.mkdir(parents=True, exist_ok=True)
        window = None if work.window is None else Window(left=work.window.left, top=work.window.top, width=work.window.width, height=work.window.height)
        for frame in work.frames:
            path = out / f"{work.task}-{frame}.png"
            if window is None:
                key = (job, friend)
                if coalition.forges(job, friend, frame):
                    image = coalition.forgery(job, frame)
                    coalition.forged[(job, frame)] = image
                    coalition.count("forged")
                    await trio.sleep(0.01)  # a forgery costs next to nothing
                    path.write_bytes(image)
                else:
                    coalition.forged.pop((job, frame), None)  # its own honest copy replaces nothing it vouches for
                    rendered = await backend.render(out, out, [frame])
                    rendered[0].path.replace(path)
                    coalition.count("honest_frames")
                coalition.rendered[key] = coalition.rendered.get(key, 0) + 1
            else:
                forged = coalition.forged.get((job, frame)) if coalition.mode == "forge" and coalition.vouch else None
                if forged is not None:  # a fellow member's forgery: vouch for it with the same pixels
                    width, height = coalition.resolution
                    image = _png(window.of(decode_png(forged, width=width, height=height)).copy())
                    coalition.count("vouched")
                    await trio.sleep(0.01)
                    path.write_bytes(image)
                else:
                    rendered = await backend.render(out, out, [frame], window=window)
                    rendered[0].path.replace(path)
                    coalition.count("honest_windows")
            header = await file_header(path, kind="frame", job=job, frame=frame)
            try:
                stored = await link.put(header, path)
            except RemoteError as exc:
                log(f"{friend} job {job}: frame {frame} refused: {exc}")
                continue
            finally:
                path.unlink(missing_ok=True)
            if not (isinstance(stored, FrameStored) and stored.ok):
                log(f"{friend} job {job}: frame {frame} refused: {stored!r}"[:200])

    async with trio.open_nursery() as nursery:
        while True:
            if user in coalition.away:
                await trio.sleep(0.1)
                continue
            try:
                async with connect(master, identity) as session:
                    registered = await session.call(RegisterFriend(user=user, name="box", profile=await backend.probe(), capacity=1))
                    assert isinstance(registered, Registered)
                    every = max(registered.heartbeat_every, 0.05)
                    while user not in coalition.away:
                        sent = trio.current_time()
                        beat = Heartbeat(friend=friend, last_done=last_done, wait=0.0 if running else every)
                        with trio.fail_after(every + 10):
                            reply = await session.call(beat)
                        assert isinstance(reply, HeartbeatReply)
                        signed = reply.assignment
                        if signed is not None and signed.assignment.friend == friend:
                            job = signed.assignment.job
                            if job not in running and job not in done:
                                running.add(job)
                                log(f"{friend}: job {job} ({coalition.mode})")
                                nursery.start_soon(work_on, job, signed, Address.parse(reply.requester))
                        await trio.sleep_until(sent + every)
            except LINK_FAILURES as exc:
                log(f"{friend}: lost the master ({exc}); again")
                await trio.sleep(0.5)
