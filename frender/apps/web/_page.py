"""What both dashboards share: templates, the token check, and the live stream of a page's body."""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import trio
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from frender.apps import words
from frender.apps.web._token import BadToken, Claims, read_token

if TYPE_CHECKING:
    from frender.apps.messages import ProgressReply

__all__ = [
    "HEADERS",
    "TEMPLATES",
    "claims_of",
    "forbidden",
    "live",
    "page",
    "render",
]

# Every name on a page comes from a peer: every template escapes what it shows, and the live part the
# page's script puts in place (innerHTML) is this same escaped HTML, never a name as the server got it.
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def job_state(progress: ProgressReply) -> str:
    """A job's state in the one vocabulary (``words.JOB_STATES``), from its progress reply; why it waits or
    failed is a line of its own."""
    return words.job_state(finished=progress.finished, cancelled=progress.cancelled, failed=bool(progress.failed), active=progress.active)


TEMPLATES.filters["job_state"] = job_state
TEMPLATES.filters["recalled_text"] = words.recalled_text  # frames withdrawn and not final again, in words
TEMPLATES.filters["friend_state"] = lambda f: words.friend_state(live=f.live, away=f.away, busy=f.busy, job=f.job)
TEMPLATES.filters["standing"] = lambda f: words.standing(f.reputation, f.trust_threshold)
TEMPLATES.filters["short_profile"] = words.short_profile
# The token rides in the query string, so no page may leak it to another site.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'",
}


def forbidden(why: str) -> Response:
    return HTMLResponse(f"<!doctype html><title>403</title><h1>403 forbidden</h1><p>{html.escape(why)}</p>", status_code=403, headers=HEADERS)


def claims_of(request: Request, allowed: Callable[[Claims], bool]) -> Claims | Response:
    """The request's token (``?t=``) if it is valid and ``allowed``; a 403 response otherwise."""
    token = request.query_params.get("t", "")
    if not token:
        return forbidden("this page needs the link's token")
    try:
        claims = read_token(token, now=time.time())
    except BadToken as exc:
        return forbidden(f"the token is not valid ({exc})")
    if not allowed(claims):
        return forbidden("the token is not for this page")
    return claims


def render(name: str, **context: object) -> str:
    return TEMPLATES.get_template(name).render(**context)


def page(name: str, **context: object) -> HTMLResponse:
    return HTMLResponse(render(name, **context), headers=HEADERS)


def live(render: Callable[[], str], changed: Callable[[], Awaitable[None]], *, every: float = 0.5) -> EventSourceResponse:
    """Server-sent ``update`` events carrying the page's live part, sent whenever it changes."""

    async def updates() -> AsyncIterator[dict[str, str]]:
        last = None
        while True:
            html = render()
            if html != last:
                yield {"event": "update", "data": html}
                last = html
            with trio.move_on_after(every):  # also for what moves without a state change: the estimate, thumbnails
                await changed()

    return EventSourceResponse(updates(), ping=15, headers={k: v for k, v in HEADERS.items() if k != "Content-Security-Policy"})
