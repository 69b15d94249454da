"""The requester's one link to the master: a persistent RPC session, redialled when lost, with typed replies.

Every call to the master goes over one TLS session (the transport multiplexes
calls, so they run concurrently: no lock, no handshake per call). The session
is dialled when a call needs it, by the link's own task (a trio system task: a
session's reader lives in a nursery that its opener must own), and again
after it is lost or sat idle for half the server's ``idle_timeout``. A call
whose session was already closed before it was sent is sent again on a new
one; a call that loses its session in flight raises ``PeerGone``, since the
master may have acted on it (callers retry what is safe to retry; a new job's
opening is released otherwise).

``call(request: Asks[R]) -> R``: each request message names its reply
(``messages.checked_reply``); any other reply is the master's fault, a
``ProtocolError``.
"""

from __future__ import annotations

import math
from typing import TypeVar

import trio

from frender.apps import messages as msg
from frender.transports import Address, Identity, Limits, PeerGone, Session, TransportError, connect

__all__ = ["MasterLink"]

R = TypeVar("R")


class MasterLink:
    """One persistent, typed session to the master for all of a requester's calls."""

    def __init__(self, address: Address, identity: Identity, *, limits: Limits = Limits()) -> None:
        self.address = address
        self.identity = identity
        self.limits = limits
        self.dials = 0  # sessions opened, for the curious (tests, logs)
        self._session: Session | None = None
        self._failure: BaseException | None = None  # why the last dial failed
        self._needed = trio.Event()  # a call waits for a session
        self._opened = trio.Event()  # the dial it asked for is done (session or failure)
        self._lost = trio.Event()  # the session is to be closed (lost, or idle too long)
        self._used = 0.0  # trio time of the last call's end
        self._in_flight = trio.Semaphore(max(1, limits.max_in_flight - 1))  # the server's bound per session
        self._running = False

    async def _run(self) -> None:
        """Own the session: dial when a call needs one, hold it until it is lost, forever (a system task)."""
        while True:
            await self._needed.wait()
            opened = self._opened
            try:
                with trio.CancelScope(deadline=trio.current_time() + self.limits.handshake_deadline * 2) as dialling:
                    async with connect(self.address, self.identity, limits=self.limits) as session:
                        dialling.deadline = math.inf  # dialled: the session lasts until it is lost
                        self.dials += 1
                        self._session, self._failure, self._used = session, None, trio.current_time()
                        opened.set()
                        await self._lost.wait()
                if dialling.cancelled_caught and self._failure is None and not opened.is_set():
                    self._failure = trio.TooSlowError(f"no session within {self.limits.handshake_deadline * 2:g} s")
            except (TransportError, OSError) as exc:
                self._failure = exc
            finally:
                self._session = None
                self._needed, self._opened, self._lost = trio.Event(), trio.Event(), trio.Event()
                opened.set()  # a dial that failed wakes its callers with ``_failure``

    async def _open(self) -> Session:
        """The session, dialled first if there is none (or it sat idle long enough for the master to close it)."""
        session = self._session
        if session is not None and (session.closed or trio.current_time() - self._used > self.limits.idle_timeout / 2):
            self._lost.set()
            while self._session is session:  # the runner closes it and is ready to dial again
                await trio.sleep(0)
            session = None
        if session is None:
            if not self._running:  # the session's reader needs a nursery this link owns: trio's system nursery
                self._running = True
                trio.lowlevel.spawn_system_task(self._run, name="frender master link")
            opened = self._opened
            self._needed.set()
            await opened.wait()
            session = self._session
            if session is None:
                failure = self._failure
                raise PeerGone(f"cannot reach the master at {self.address}: {failure or 'no session'}")
        return session

    async def call(self, request: msg.Asks[R]) -> R:
        """Send ``request`` to the master and return its reply, of the type the request names.

        Raises ``RemoteError`` when the master refuses, ``PeerGone`` when it
        cannot be reached or the session is lost with the call in flight.
        """
        async with self._in_flight:
            session = await self._open()  # a session closed before anything was sent is replaced here
            try:
                reply = await session.call(request)
            except PeerGone:
                if self._session is session:
                    self._lost.set()
                raise
            finally:
                self._used = trio.current_time()
        return msg.checked_reply(request, reply)
