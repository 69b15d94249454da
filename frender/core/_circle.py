"""The verification circle: ring order, verifier lookup, test-frame draws, adaptive checks.

Theory of operation. Pure functions; every random choice is a deterministic
function of an ``entropy`` string the shell drew with ``secrets`` and a label,
so a decision can record its outcome and replay never needs the entropy again.

Rule 1: a friend is never checked by a friend of the same owner, nor by itself,
        nor by a friend it was found mis-calibrated against; where no such
        friend is live, the requester renders the check itself.
Rule 2: the ring is a random order in which no two adjacent friends share an
        owner whenever the pool allows it (no owner holds more than half of
        the ring); otherwise same-owner neighbours are as few as the greedy
        interleaving makes them, and Rule 1 skips over them.
Rule 3: the checker of a friend is the nearest eligible friend to its left, so
        the ring closes over friends that are gone or evicted.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Sequence

__all__ = ["draw", "sample", "shuffle", "ring_order", "adjacent_same_owner", "checker", "checked_this_job"]


def draw(entropy: str, label: str, n: int) -> int:
    """A uniform integer in ``range(n)`` from ``entropy`` and ``label`` (256-bit hash, bias negligible)."""
    digest = hashlib.sha256(f"{entropy}\x00{label}".encode()).digest()
    return int.from_bytes(digest, "big") % n


def shuffle(entropy: str, label: str, items: Iterable[str]) -> list[str]:
    """Fisher-Yates with draws from ``entropy``."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = draw(entropy, f"{label}/{i}", i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def sample(entropy: str, label: str, population: Sequence[int], k: int) -> tuple[int, ...]:
    """``k`` distinct members of ``population`` (partial Fisher-Yates), in draw order."""
    pool = list(population)
    k = min(k, len(pool))
    for i in range(k):
        j = i + draw(entropy, f"{label}/{i}", len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return tuple(pool[:k])


def adjacent_same_owner(ring: Sequence[str], owner: Callable[[str], str]) -> int:
    """How many neighbouring pairs of the ring (closed) share an owner."""
    if len(ring) < 2:
        return 0
    return sum(owner(ring[i]) == owner(ring[i - 1]) for i in range(len(ring)))


def ring_order(entropy: str, friends: Sequence[str], owner: Callable[[str], str], tries: int = 16) -> tuple[str, ...]:
    """A random ring with no same-owner neighbours where the pool allows it (Rule 2).

    A few plain shuffles first (unbiased, and they succeed quickly when owners
    are mixed); then the constructive interleaving: owners by size, largest
    first, dealt to even then odd places, which is owner-disjoint on a closed
    ring whenever no owner holds more than half the friends.
    """
    if len(friends) < 3:
        return tuple(shuffle(entropy, "ring", friends))
    best = None
    for attempt in range(tries):
        ring = shuffle(entropy, f"ring{attempt}", friends)
        bad = adjacent_same_owner(ring, owner)
        if bad == 0:
            return tuple(ring)
        if best is None or bad < best[0]:
            best = (bad, ring)
    groups: dict[str, list[str]] = {}
    for friend in shuffle(entropy, "members", friends):
        groups.setdefault(owner(friend), []).append(friend)
    owners = shuffle(entropy, "owners", groups)
    owners.sort(key=lambda o: -len(groups[o]))  # stable: ties keep their random order
    dealt = [f for o in owners for f in groups[o]]
    n = len(dealt)
    slots = list(range(0, n, 2)) + list(range(1, n, 2))
    ring = [""] * n
    for slot, friend in zip(slots, dealt):
        ring[slot] = friend
    shift = draw(entropy, "rotate", n)
    ring = ring[shift:] + ring[:shift]
    assert best is not None
    return tuple(ring if adjacent_same_owner(ring, owner) <= best[0] else best[1])


def checker(
    ring: Sequence[str],
    position: dict[str, int],
    subject: str,
    eligible: Callable[[str], bool],
) -> str | None:
    """The nearest friend left of ``subject`` that may check it (Rules 1 and 3), or None."""
    at = position.get(subject)
    if at is None:
        return None
    n = len(ring)
    for step in range(1, n):
        candidate = ring[(at - step) % n]
        if eligible(candidate):
            return candidate
    return None


def checked_this_job(entropy: str, friend: str, clean_run: int, trust_after: int) -> bool:
    """BOINC-style adaptive replication: always until ``trust_after`` clean results, then 1/run."""
    if clean_run < trust_after:
        return True
    return draw(entropy, f"adaptive/{friend}", clean_run) == 0
