"""A requester asks its master, once it listens, whether the master trusts it, and says what to do when not.

An untrusted requester can take no job (the master answers none of its
questions about accounts or friends), so it says so when it starts, naming the
command the master's operator runs, rather than leaving the first artist to find out.
"""

from __future__ import annotations

import shlex
from typing import Callable

import trio

from frender.apps import messages as msg
from frender.transports import Address, Identity, PeerGone, RemoteError, connect

__all__ = ["say_if_untrusted", "trust_command"]

TRIES = 5  # a master started alongside may not listen yet
WAIT = 2.0  # seconds between tries


def trust_command(requester_key: str, master: Address) -> str:
    """What the master's operator runs to trust this requester."""
    return f"frender operator trust {requester_key} --name NAME --master {shlex.quote(str(master))} --home MASTER_HOME"


async def say_if_untrusted(master: Address, identity: Identity, say: Callable[[str], None]) -> bool:
    """Ask the master whose a key is (a question only trusted requesters may ask of another's key); True when trusted.

    An untrusted requester is told with the command that trusts it; a master that
    does not answer is said too, and the requester goes on (it retries the master
    for every job).
    """
    for attempt in range(TRIES):
        try:
            with trio.fail_after(30):
                async with connect(master, identity) as session:
                    # About another key (the master's own): any caller may ask about its own key.
                    await session.call(msg.AccountOf(key=master.fingerprint))
            return True
        except RemoteError as exc:
            if exc.code != "untrusted":
                return True  # an answer that is not a refusal of this requester: trust is not the problem
            say(
                f"the master does not trust this requester yet, so it can take no job; the master's operator runs:"
                f" {trust_command(identity.fingerprint, master)}"
            )
            return False
        except (PeerGone, OSError, trio.TooSlowError):
            if attempt < TRIES - 1:
                await trio.sleep(WAIT)
    say(f"the master {master} does not answer yet; jobs wait until it does")
    return False
