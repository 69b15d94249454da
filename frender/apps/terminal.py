"""What reaches a terminal: text from peers and logs made safe to show, and the one-line failure.

Names, reasons and states come from other people (a friend's name, a
requester's refusal, an old log). Shown raw, an escape sequence in one can
clear the viewer's screen or plant a link to another site, and Rich would read
``[/bold]`` in one as markup and fail. So every such text goes through
``safe``: control characters (C0, C1, DEL, and Unicode's format and line
separators, which can reorder or hide what follows) become visible escapes
such as ``\\x1b``; and text for Rich goes in as a ``Text`` (``safe_text``), which
Rich never parses as markup.
"""

from __future__ import annotations

import logging
import os
import sys
import unicodedata
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.text import Text

__all__ = ["DEFAULT_HOME", "call_or_fail", "fail", "log_handler", "safe", "safe_text"]

DEFAULT_HOME = Path(os.environ.get("FRENDER_HOME", Path.home() / ".frender"))

_HIDDEN = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))  # controls, format (bidi overrides), line/paragraph separators, lone surrogates


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe(text: object, *, lines: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``); with ``lines``, newlines are kept."""
    text = str(text)
    if text.isprintable():  # the common case, and what the C loop decides fastest
        return text
    return "".join(
        char if (lines and char == "\n") or unicodedata.category(char) not in _HIDDEN else _escape(char) for char in text
    )


def safe_text(text: object, style: str = "") -> Text:
    """``safe(text)`` as a Rich ``Text``: shown as it reads, never parsed as markup."""
    return Text(safe(text), style=style)


def fail(message: str) -> NoReturn:
    """One clear line on stderr and exit status 1: the contract for bad input."""
    typer.echo(f"frender: {safe(message, lines=True)}", err=True)
    raise typer.Exit(1)


_R = TypeVar("_R")


def call_or_fail(who: str, call: Callable[..., Awaitable[_R]], *args: Any) -> _R:
    """Run one client call on a fresh trio loop; ``who`` ("the master") refusing, or a peer that is gone, is one line, exit 1."""
    import trio

    from frender.transports import RemoteError, TransportError

    try:
        return trio.run(call, *args)
    except RemoteError as exc:
        fail(f"{who} refused: {exc.reason} ({exc.code})")
    except TransportError as exc:
        fail(str(exc))


class _SafeFormatter(logging.Formatter):
    """Log lines carry peers' names and reasons: their control characters are shown escaped, never sent to the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record), lines=True)


def log_handler(form: str) -> logging.Handler:
    """A handler writing log lines in ``form`` to stderr, each made ``safe``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter(form))
    return handler
