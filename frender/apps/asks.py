"""What every message builds on: ``Asks[R]`` (a request answered with an ``R``) and ``Ok``."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from attrs import frozen

__all__ = ["Asks", "Ok"]

R = TypeVar("R")


class Asks(Generic[R]):
    """A request whose reply is an ``R``: ``call(request: Asks[R]) -> R`` (the reply's class is in ``REPLIES``)."""

    __slots__ = ()

@frozen
class Ok:
    tag: ClassVar[str] = "ok.v1"
