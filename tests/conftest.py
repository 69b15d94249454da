"""Every test leaves the process's handling of Ctrl-C as it found it.

SIGINT's handler and the main thread's signal mask are process-wide and are
inherited: a test that leaves SIGINT ignored or blocked makes every later
Ctrl-C test in the same worker wait for ever, and every process it starts
deaf to a graceful stop (each then waits out its kill timeout).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


def _sigint_state() -> tuple[object, bool]:
    return signal.getsignal(signal.SIGINT), signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.fixture(autouse=True)
def _sigint_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    before = _sigint_state()
    yield
    after = _sigint_state()
    if after != before:
        signal.signal(signal.SIGINT, before[0])  # type: ignore[arg-type]
        signal.pthread_sigmask(signal.SIG_UNBLOCK if not before[1] else signal.SIG_BLOCK, [signal.SIGINT])
        pytest.fail(f"{request.node.nodeid} left SIGINT (handler, blocked) at {after}, found at {before}")
