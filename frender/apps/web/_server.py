"""Serve an ASGI app with Hypercorn's trio worker, inside the caller's nursery."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from starlette.applications import Starlette

__all__ = ["WebUnavailable", "parse_bind", "serve_web"]


class WebUnavailable(Exception):
    """The dashboard cannot listen where it was asked to (port in use, bad address)."""


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: any free port); ValueError with a clear message otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--web wants HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


async def serve_web(app: Starlette, host: str, port: int, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``host:port`` and serve ``app`` until cancelled; ``started`` gets the base URL."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("frender.web")
    config.graceful_timeout = 1.0
    try:
        sockets = config.create_sockets()  # bind here, so a port in use is one clear error
    except OSError as exc:
        raise WebUnavailable(f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)

    class _Relay:
        """Hands hypercorn's bound URLs on as one base URL."""

        @staticmethod
        def started(binds: list[str] | None = None) -> None:
            task_status.started((binds or [f"http://{host}:{port}"])[0])

    await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config, sockets=sockets, task_status=_Relay())  # type: ignore[arg-type]
