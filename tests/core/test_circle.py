"""The verification circle: ring order, checker lookup, draws and adaptive checks."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frender.core import _circle


def owner_of(friend: str) -> str:
    return friend.split("/")[0]


pools = st.lists(st.sampled_from("abcdef"), min_size=1, max_size=24).map(
    lambda owners: [f"{o}/{i}" for i, o in enumerate(owners)]
)


@settings(max_examples=200, deadline=None)
@given(pools, st.text("0123456789abcdef", min_size=1, max_size=32))
def test_ring_is_owner_disjoint_whenever_the_pool_allows(friends: list[str], entropy: str) -> None:
    """A permutation of the friends; no same-owner neighbours when no owner holds more than half."""
    ring = _circle.ring_order(entropy, friends, owner_of)
    assert sorted(ring) == sorted(friends)
    largest = max(Counter(map(owner_of, friends)).values())
    if len(friends) >= 2 and largest <= len(friends) // 2:
        assert _circle.adjacent_same_owner(ring, owner_of) == 0


@pytest.mark.parametrize(
    ("owners", "worst"),
    [
        ("ab", 0),
        ("aab", 1),
        ("aaab", 2),
        ("aaaa", 4),
        ("aabb", 0),
        ("aaabbbccc", 0),
    ],
)
def test_ring_table(owners: str, worst: int) -> None:
    """Same-owner edges stay at the unavoidable minimum (never above the table's bound)."""
    friends = [f"{o}/{i}" for i, o in enumerate(owners)]
    for seed in range(20):
        ring = _circle.ring_order(f"{seed:x}", friends, owner_of)
        assert _circle.adjacent_same_owner(ring, owner_of) <= worst


def test_ring_is_a_function_of_the_entropy() -> None:
    """The same entropy gives the same ring (replay), others give others."""
    friends = [f"{o}/{i}" for i, o in enumerate("abcdefgh")]
    assert _circle.ring_order("00ff", friends, owner_of) == _circle.ring_order("00ff", friends, owner_of)
    assert len({_circle.ring_order(f"{i:x}", friends, owner_of) for i in range(20)}) > 10


@pytest.mark.parametrize(
    ("ring", "skip", "subject", "checker"),
    [
        (("a/1", "b/2", "c/3"), set(), "c/3", "b/2"),  # the left neighbour checks
        (("a/1", "b/2", "c/3"), {"b/2"}, "c/3", "a/1"),  # evicted or gone: the ring closes over it
        (("a/1", "b/2", "c/3"), set(), "a/1", "c/3"),  # wraps around
        (("a/1", "a/2", "c/3"), set(), "a/2", "c/3"),  # same owner skipped
        (("a/1", "a/2"), set(), "a/2", None),  # nobody eligible: the requester renders
        (("a/1",), set(), "a/1", None),  # a ring of one
    ],
)
def test_checker_is_the_nearest_eligible_left_neighbour(ring, skip, subject, checker) -> None:
    """Rule 1 and 3: nearest to the left, never itself, its owner, or a skipped friend."""
    position = {f: i for i, f in enumerate(ring)}

    def eligible(f: str) -> bool:
        return f not in skip and f != subject and owner_of(f) != owner_of(subject)

    assert _circle.checker(ring, position, subject, eligible) == checker


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(), min_size=0, max_size=30, unique=True), st.integers(0, 40), st.text(max_size=8))
def test_sample_draws_distinct_members(population: list[int], k: int, entropy: str) -> None:
    """k distinct members (or all of them), always the same for the same entropy."""
    got = _circle.sample(entropy, "x", population, k)
    assert len(got) == min(k, len(population)) and len(set(got)) == len(got) and set(got) <= set(population)
    assert got == _circle.sample(entropy, "x", population, k)


def test_sample_is_roughly_uniform() -> None:
    """Each of 10 frames is drawn about a tenth of the time."""
    counts = Counter(_circle.sample(f"{i}", "batch", range(10), 1)[0] for i in range(5000))
    assert all(400 < counts[f] < 600 for f in range(10))


@pytest.mark.parametrize(("run", "rate"), [(0, 1.0), (9, 1.0), (10, 1 / 10), (40, 1 / 40)])
def test_adaptive_checks_every_job_until_ten_then_one_in_run(run: int, rate: float) -> None:
    """BOINC adaptive replication: checked always below 10 clean results, then with probability 1/run."""
    hits = sum(_circle.checked_this_job(f"{i:x}", "f", run, 10) for i in range(4000))
    assert abs(hits / 4000 - rate) < 0.03
