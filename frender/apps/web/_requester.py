"""The requester's dashboard: one page per job, for its submitter (or the operator), live over SSE.

The ``Gallery`` runs beside the requester and does the slow work once:
a thumbnail per final frame (``jobs/J/web/thumb_####.jpg``) and, when the job
finishes, its video (``jobs/J/web/video.mp4``). Pages only read what it made.
The time estimate is the one `frender jobs` prints (``ProgressReply.eta``, from
``words.time_left``); the time a finished job took is what this process watched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
import trio
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from frender.apps import video, words
from frender.apps.job_view import FRAME_STATES, eviction_story
from frender.apps.web._page import HEADERS, claims_of, forbidden, live, page, render
from frender.apps.web._server import serve_web
from frender.apps.web._token import OPERATOR, Claims, job_scope
from frender.apps.requester_messages import ProgressReply
from frender.apps.views import RequesterView, media_type_of

__all__ = ["LINK_SECONDS", "THUMB_SIZE", "Gallery", "requester_app", "serve_requester_web"]

log = logging.getLogger("frender.web")

LINK_SECONDS = 7 * 24 * 3600  # how long the link `frender submit` prints stays valid
THUMB_SIZE = (320, 180)  # at most, aspect kept
SHOWN = 240  # thumbnails on a page: the latest final ones, so a long job's page stays light


def _thumb(source: Path, target: Path) -> None:
    image = Image.fromarray(video.read_rgb(source))
    image.thumbnail(THUMB_SIZE)
    temp = target.with_name(f".{target.name}.partial")
    image.save(temp, format="JPEG", quality=85)
    temp.replace(target)


class Gallery:
    """Thumbnails of final frames, made once each, and each finished job's video."""

    def __init__(self, node: RequesterView) -> None:
        self.node = node
        self.thumbs: dict[int, dict[int, None]] = {}  # job -> frames with a thumbnail, in the order they were made
        self.videos: dict[int, Path] = {}
        self.video_errors: dict[int, str] = {}
        self.first_seen: dict[int, float] = {}  # job -> when this process first saw it (monotonic)
        self.finished_after: dict[int, float] = {}
        self.recalls_seen: dict[tuple[int, int], int] = {}  # (job, frame) -> recalls whose thumbnail was dropped

    def web_dir(self, job: int) -> Path:
        return self.node.job_dir(job) / "web"

    def thumb_path(self, job: int, frame: int) -> Path:
        return self.web_dir(job) / f"thumb_{frame:04d}.jpg"

    def video_path(self, job: int) -> Path:
        return self.web_dir(job) / "video.mp4"

    def estimate(self, job: int, progress: ProgressReply) -> str:
        """What the page says about time: the one estimate `frender jobs` prints too, the time taken once done."""
        if progress.cancelled:
            return f"cancelled: {len(progress.final)} final frames kept"
        if progress.finished:
            took = self.finished_after.get(job)
            return f"finished in {words.duration(took)}" if took is not None else "finished"
        return words.time_left_text(progress.eta)

    async def run(self) -> None:
        """Watch every job; make what is missing; wait for the next change."""
        while True:
            for job in self.node.job_numbers():
                await self._catch_up(job)
            with trio.move_on_after(5.0):
                await self.node.changed()

    async def _catch_up(self, job: int) -> None:
        progress = self.node.progress_of(job)
        if job not in self.first_seen:
            self.first_seen[job] = time.monotonic()
        if progress.finished and job not in self.finished_after:
            self.finished_after[job] = time.monotonic() - self.first_seen[job]
        made = self.thumbs.setdefault(job, {})
        for r in progress.recalled:  # a recalled frame's thumbnail shows the copy withdrawn: made again once final again
            if self.recalls_seen.get((job, r.frame), 0) < r.times:
                self.recalls_seen[(job, r.frame)] = r.times
                made.pop(r.frame, None)
                self.thumb_path(job, r.frame).unlink(missing_ok=True)
        for frame in sorted(set(progress.final) - made.keys()):
            target = self.thumb_path(job, frame)
            source = self.node.final_path(job, frame)
            if source is None:
                continue
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    await trio.to_thread.run_sync(_thumb, source, target)
                except video.VideoError as exc:
                    log.warning("job %d: no thumbnail of frame %d: %s", job, frame, exc)
            made[frame] = None
        if progress.finished and job not in self.videos and job not in self.video_errors:
            target = self.video_path(job)
            if not target.exists():
                frames = [self.node.final_path(job, f) for f in sorted(progress.final)]
                fps = self.node.job_facts(job).fps
                try:
                    await trio.to_thread.run_sync(lambda: video.assemble([f for f in frames if f is not None], target, fps=fps))
                except video.VideoError as exc:
                    self.video_errors[job] = str(exc)
                    log.warning("job %d: no video: %s", job, exc)
                    return
            self.videos[job] = target


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}" if whole > 0 else "0"


def requester_app(node: RequesterView, gallery: Gallery) -> Starlette:
    """The ASGI app: ``/job/J`` (page), ``/events``, ``/thumb/N``, ``/frame/N``, ``/video.mp4``; ``/`` for the operator."""

    def may_see(job: int) -> Callable[[Claims], bool]:
        def allowed(claims: Claims) -> bool:
            own = claims.scope == job_scope(job) and claims.signer == node.key
            return own or (claims.scope == OPERATOR and claims.signer == node.master_key)

        return allowed

    def job_of(request: Request) -> tuple[int, str] | Response:
        job = int(request.path_params["job"])
        claims = claims_of(request, may_see(job))
        if isinstance(claims, Response):
            return claims
        if job not in node.job_numbers():
            return forbidden(f"no job {job} here")
        return job, request.query_params["t"]

    def body(job: int, token: str) -> str:
        p = node.progress_of(job)
        escrowed, earned = node.points_of(job)
        stories = {f: eviction_story(f, e) for f, e in node.evictions_of(job).items()}
        grid = node.frame_states_of(job)
        counts = {state: sum(1 for s in grid.values() if s == state) for state in FRAME_STATES}
        made = list(gallery.thumbs.get(job, ()))
        thumbs = sorted(made[-SHOWN:])
        return render(
            "job_live.html",
            job=job,
            p=p,
            final=len(p.final),
            # A still in tiles: its bars count tiles, its grid shows each frame's tiles in their places, filling in.
            delivered_pct=_percent(p.tiles_delivered, p.total * p.tiles) if p.tiles else _percent(p.delivered, p.total),
            final_pct=_percent(p.tiles_final, p.total * p.tiles) if p.tiles else _percent(len(p.final), p.total),
            waiting=words.waiting_text(p.waiting, p.waiting_detail) if p.waiting or p.waiting_detail else "",
            grid=grid,
            counts={state: n for state, n in counts.items() if n or state != "recalled"},
            stories=stories,
            estimate=gallery.estimate(job, p),
            escrowed=escrowed,
            earned=earned,
            thumbs=thumbs,
            more=len(made) - len(thumbs),
            video=job in gallery.videos,
            video_error=gallery.video_errors.get(job, ""),
            t=token,
        )

    async def job_page(request: Request) -> Response:
        found = job_of(request)
        if isinstance(found, Response):
            return found
        job, token = found
        facts = node.job_facts(job)
        return page(
            "job.html", job=job, submitter=facts.submitter, blender=facts.blender, live=body(job, token),
            events=f"/job/{job}/events?t={token}",
        )

    async def job_events(request: Request) -> Response:
        found = job_of(request)
        if isinstance(found, Response):
            return found
        job, token = found
        return live(lambda: body(job, token), node.changed)

    async def thumb(request: Request) -> Response:
        found = job_of(request)
        if isinstance(found, Response):
            return found
        job, frame = found[0], int(request.path_params["frame"])
        if frame not in gallery.thumbs.get(job, ()):
            return Response("no thumbnail of that frame yet", status_code=404)
        return FileResponse(gallery.thumb_path(job, frame), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    async def frame(request: Request) -> Response:
        found = job_of(request)
        if isinstance(found, Response):
            return found
        job, number = found[0], int(request.path_params["frame"])
        path = node.final_path(job, number)
        if path is None:
            return Response("that frame is not final", status_code=404)
        extension = node.job_facts(job).extension  # each frame in its own format: PNG, JPEG, TIFF or OpenEXR
        return FileResponse(path, media_type=media_type_of(extension), filename=f"frame_{number:04d}{extension}", content_disposition_type="inline")

    async def job_video(request: Request) -> Response:
        found = job_of(request)
        if isinstance(found, Response):
            return found
        job = found[0]
        if job not in gallery.videos:
            return Response("the video is made when the job finishes", status_code=404)
        return FileResponse(gallery.videos[job], media_type="video/mp4", filename=f"job-{job}.mp4", content_disposition_type="inline")

    async def index(request: Request) -> Response:
        if not request.query_params.get("t"):  # the address the requester printed: say how to get a job's link
            return page("how.html")
        claims = claims_of(request, lambda c: c.scope == OPERATOR and c.signer == node.master_key)
        if isinstance(claims, Response):
            return claims
        token = request.query_params["t"]
        rows = [(j, node.job_facts(j).submitter, node.progress_of(j)) for j in sorted(node.job_numbers())]
        return page("jobs.html", rows=rows, t=token)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204, headers=HEADERS)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/favicon.ico", no_icon),
            Route("/job/{job:int}", job_page),
            Route("/job/{job:int}/events", job_events),
            Route("/job/{job:int}/thumb/{frame:int}", thumb),
            Route("/job/{job:int}/frame/{frame:int}", frame),
            Route("/job/{job:int}/video.mp4", job_video),
        ]
    )


async def serve_requester_web(node: RequesterView, host: str, port: int, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the requester's dashboard and run its gallery; ``started`` gets the base URL, which the node is told."""
    gallery = Gallery(node)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_web, requester_app(node, gallery), host, port)
        node.dashboard_at(url)
        nursery.start_soon(gallery.run)
        task_status.started(url)
