"""The master's decide path, in one process: the shell's cost per call without the network, TLS or fsync.

A ``MasterNode`` on an in-memory log with ``--friends`` registered friends
(100 per user, one key per user) is driven directly:

- ``at_once_us``: a soft-state heartbeat answered on the spot (``call_at_once``),
  the hot path of a busy master;
- ``batch_us``: calls that decide durable events, ``--batch`` at a time as
  one group commit: a requester asking for 8 friends, and the heartbeats of the
  friends it was granted reporting the job done (a release);
- ``start_s``: folding the log at start-up.

Each figure is the best of ``--repeat`` runs (as ``timeit`` reports), in
microseconds of CPU per call (``time.process_time``): the other load on the
machine only adds to a run, so the best is the least disturbed. Compare runs
taken back to back.

    python bench/master_decide.py --friends 5000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender.apps import messages as msg  # noqa: E402
from frender.apps.master import MasterNode  # noqa: E402
from frender.core import master as core  # noqa: E402
from frender.core.profile import RenderProfile  # noqa: E402
from frender.store import MemoryLog  # noqa: E402
from frender.transports import Address, Identity, Peer  # noqa: E402

PROFILE = RenderProfile(blender_version="5.0.1", build_hash="bench", device="CPU", cpu_class="bench")
PER_USER = 100


def _peer(name: str) -> Peer:
    return Peer(fingerprint="sha256:" + hashlib.sha256(name.encode()).hexdigest(), public_key=name.encode(), host="127.0.0.1")


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _farm(home: Path, friends: int) -> tuple[MasterNode, MemoryLog, _Clock, dict[str, Peer], Peer]:
    log, clock = MemoryLog(), _Clock()
    node = MasterNode(Identity.load_or_create(home), log, core.MasterSettings(friend_timeout=3600.0), clock=clock)
    requester = _peer("requester")
    node.apply(core.TrustRequester(key=requester.fingerprint, name="requester"))
    node.apply(core.CreateAccount(user="alice", key=_peer("alice").fingerprint))
    node.apply(core.GrantPoints(user="alice", key=_peer("alice").fingerprint, amount=10**12))
    owners: dict[str, Peer] = {}
    for i in range(friends):
        user = f"u{i // PER_USER}"
        if user not in owners:
            owners[user] = _peer(user)
            node.apply(core.CreateAccount(user=user, key=owners[user].fingerprint))
        node.apply(core.RegisterFriend(user=user, key=owners[user].fingerprint, friend=f"{user}/f{i}", profile=PROFILE, now=clock.now))
    return node, log, clock, owners, requester


def _at_once(node: MasterNode, owners: dict[str, Peer], friends: int, rounds: int) -> float:
    beats = [(owners[f"u{i // PER_USER}"], msg.Heartbeat(friend=f"u{i // PER_USER}/f{i}")) for i in range(friends)]
    started = time.process_time()
    for _ in range(rounds):
        for peer, beat in beats:
            if node.call_at_once(peer, beat) is None:
                raise AssertionError("a soft heartbeat was not answered at once")
    return (time.process_time() - started) / (rounds * len(beats)) * 1e6


async def _batches(node: MasterNode, owners: dict[str, Peer], requester: Peer, batch: int, batches: int) -> float:
    ask = msg.AskFriends(
        submitter="alice", submitter_key=_peer("alice").fingerprint, frames=8, want=8, profile=PROFILE,
        checks_per_friend=0, blend_sha256="0" * 64, address=str(Address("127.0.0.1", 1, requester.fingerprint)),
    )
    held: list[tuple[str, int]] = []  # friends granted by the last batch, and their job
    calls = 0
    spent = 0.0

    async def one(peer: Peer, request: object) -> None:
        reply = await node.call(peer, request)
        if isinstance(reply, msg.FriendsGranted):
            held.extend((f.friend, reply.job) for f in reply.friends)

    for _ in range(batches):
        done, held[:] = list(held), []
        requests: list[tuple[Peer, object]] = [(owners[f.split("/")[0]], msg.Heartbeat(friend=f, last_done=j)) for f, j in done]
        requests += [(requester, ask)] * max(1, batch - len(requests))
        started = time.process_time()
        async with trio.open_nursery() as nursery:
            for peer, request in requests:
                nursery.start_soon(one, peer, request)
        spent += time.process_time() - started
        calls += len(requests)
    return spent / calls * 1e6


def _start(home: Path, log: MemoryLog) -> float:
    started = time.process_time()
    MasterNode(Identity.load_or_create(home), log, core.MasterSettings(friend_timeout=3600.0))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--friends", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32, help="calls per group commit")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--home", type=Path, default=Path("/tmp/frender-master-decide"))
    args = parser.parse_args()
    node, log, _, owners, requester = _farm(args.home, args.friends)
    at_once = [_at_once(node, owners, args.friends, 3) for _ in range(args.repeat)]
    batch = [trio.run(_batches, node, owners, requester, args.batch, 20) for _ in range(args.repeat)]
    start = [_start(args.home, log) for _ in range(args.repeat)]
    print(
        json.dumps(
            {
                "friends": args.friends,
                "batch": args.batch,
                "at_once_us": round(min(at_once), 2),
                "batch_us": round(min(batch), 2),
                "start_s": round(min(start), 3),
                "events": log.head.seq,
            }
        )
    )


if __name__ == "__main__":
    main()
