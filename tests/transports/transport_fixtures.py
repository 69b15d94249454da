"""Test messages and a handler shared by the transport tests."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import trio
from attrs import frozen

from frender import codec
from frender.transports import FileHeader, Handler, Peer, Refused


@frozen
class Echo:
    """A test request and reply."""

    tag: ClassVar[str] = "test.transports.echo.v1"
    text: str
    delay: float = 0.0


@frozen
class WhoAmI:
    """Asks the server which key it saw."""

    tag: ClassVar[str] = "test.transports.who_am_i.v1"


@frozen
class Instant:
    """A test request the handler answers at once (``call_at_once``), echoed back."""

    tag: ClassVar[str] = "test.transports.instant.v1"
    text: str


codec.register(Echo, WhoAmI, Instant)


class EchoHandler(Handler):
    """Echoes (Instant at once), tells the caller its fingerprint, refuses "no", crashes on "boom"; stores files by ids."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def call(self, peer: Peer, request: object) -> object:
        if isinstance(request, WhoAmI):
            return Echo(peer.fingerprint)
        assert isinstance(request, Echo)
        if request.text == "no":
            raise Refused("nope", "refused on purpose")
        if request.text == "boom":
            raise RuntimeError("handler bug")
        await trio.sleep(request.delay)
        return request

    def call_at_once(self, peer: Peer, request: object) -> object | None:
        if not isinstance(request, Instant):
            return None
        if request.text == "no":
            raise Refused("nope", "refused at once")
        if request.text == "boom":
            raise RuntimeError("handler bug")
        return request

    async def accept_put(self, peer: Peer, header: FileHeader) -> Path:
        folder = self.root / str(header.job)
        folder.mkdir(exist_ok=True)
        return folder / f"{header.kind}_{header.frame:04d}"

    async def put_done(self, peer: Peer, header: FileHeader, path: Path) -> object:
        return Echo(path.name)

    async def open_get(self, peer: Peer, header: FileHeader) -> Path:
        path = self.root / str(header.job) / f"{header.kind}_{header.frame:04d}"
        if not path.exists():
            raise Refused("no_file", "no such file")
        return path
