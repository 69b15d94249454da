"""Event log speed: appends (single and batched) and replay (verify + fold) of a large master log.

    python bench/replay.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from frender.core import master as m
from frender.core.profile import RenderProfile
from frender.store import SqliteLog, replay, verify

PROFILE = RenderProfile(blender_version="5.0.1", build_hash="a3db93c5b259", cpu_class="x86_64-avx2")


def a_busy_master(n: int):
    """Yield n durable events of a master that runs many 8-friend jobs (valid for folding)."""
    friends = [f"user{i}/laptop" for i in range(64)]
    yield m.RequesterTrusted(key="sha256:" + "r" * 64, name="requester")
    yield m.PointsGranted(user="artist", amount=10**12, reason="bench")
    for f in friends:
        yield m.UserBound(user=f.split("/")[0], key="sha256:" + f.ljust(64, "k")[:64], grant=0)
        yield m.FriendRegistered(friend=f, user=f.split("/")[0], profile=PROFILE, capacity=2, now=0.0)
    count, job = 2 + 2 * len(friends), 0
    while True:
        job += 1
        crew = tuple(friends[(job * 8 + k) % 64] for k in range(8))
        batch = [
            m.JobOpened(job=job, requester="sha256:" + "r" * 64, submitter="artist", frames=240, checks_per_friend=1, profile=PROFILE, now=job * 10.0),
            m.FriendsAssigned(job=job, friends=crew, shortfall=0, expires=job * 10.0 + 3600, now=job * 10.0),
            m.EscrowFunded(job=job, user="artist", amount=248),
            *[m.FriendPaid(job=job, friend=f, user=f.split("/")[0], points=31) for f in crew],
            *[m.CheckRunUpdated(friend=f, run=job) for f in crew],
            m.JobClosed(job=job, refund=0, head_seq=job * 300, head_hash="ab" * 32, now=job * 10.0 + 60),
        ]
        for event in batch:
            if count >= n:
                return
            count += 1
            yield event


def run(n_events: int = 1_000_000, single: int = 2_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        log = SqliteLog(Path(tmp) / "single.db")
        evs = list(a_busy_master(single))
        t = time.perf_counter()
        for e in evs:
            log.append([e])
        single_rate = len(evs) / (time.perf_counter() - t)
        log.close()

        log = SqliteLog(Path(tmp) / "big.db")
        t = time.perf_counter()
        batch: list[object] = []
        for e in a_busy_master(n_events):
            batch.append(e)
            if len(batch) == 1000:
                log.append(batch)
                batch = []
        log.append(batch)
        batched_rate = n_events / (time.perf_counter() - t)
        size = (Path(tmp) / "big.db").stat().st_size

        t = time.perf_counter()
        verify(log)
        t_verify = time.perf_counter() - t  # the chain alone, for the record
        state = m.Master()
        t = time.perf_counter()
        replay(log, lambda event: m.evolve(state, event))  # what start-up and `frender replay` do
        t_replay = time.perf_counter() - t
        assert state.balances() + state.escrow() == state.granted
        log.close()
    return {
        "events": n_events,
        "append_single_per_s": round(single_rate),
        "append_batched_per_s": round(batched_rate),
        "bytes_per_event": round(size / n_events),
        "verify_s": round(t_verify, 2),
        "replay_s": round(t_replay, 2),
        "replay_events_per_s": round(n_events / t_replay),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    print(json.dumps(run(parser.parse_args().events), indent=2))
