"""The master's dashboard, for the operator: friends, jobs and the ledger, live over SSE."""

from __future__ import annotations

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from frender.apps.web._page import HEADERS, claims_of, live, page, render
from frender.apps.web._server import serve_web
from frender.apps.web._token import OPERATOR, Claims
from frender.apps.views import MasterView

__all__ = ["master_app", "serve_master_web"]


def master_app(node: MasterView) -> Starlette:
    """``/`` (the page) and ``/events`` (its live part), for tokens signed by an operator's key."""

    def allowed(claims: Claims) -> bool:
        return claims.scope == OPERATOR and claims.signer in node.operators

    def body() -> str:
        s = node.status()
        balances_sum = sum(s.balances.values())
        return render("master_live.html", s=s, held=s.granted - balances_sum, balances_sum=balances_sum)

    async def index(request: Request) -> Response:
        claims = claims_of(request, allowed)
        if isinstance(claims, Response):
            return claims
        return page("master.html", live=body(), events=f"/events?t={request.query_params['t']}")

    async def events(request: Request) -> Response:
        claims = claims_of(request, allowed)
        if isinstance(claims, Response):
            return claims
        # Liveness changes with time alone, so the master's page is simply re-read each second.
        return live(body, trio.sleep_forever, every=1.0)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204, headers=HEADERS)

    return Starlette(routes=[Route("/", index), Route("/events", events), Route("/favicon.ico", no_icon)])


async def serve_master_web(node: MasterView, host: str, port: int, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the operator's dashboard; ``started`` gets the base URL."""
    await serve_web(master_app(node), host, port, task_status=task_status)
