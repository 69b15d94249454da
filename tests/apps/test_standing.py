"""`frender friend status` shows how the friend stands at its master: probationary or trusted and how far from
trusted, points earned, held and fined. The master answers the friend's owner (or its operator) only, from its
records and a tally folded from its log, and changes nothing."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from frender.apps import messages as msg
from frender.apps.master import MasterNode
from frender.apps.standing import note, noted, standing_lines
from frender.core import master as core
from frender.store import SqliteLog
from frender.transports import Address, Identity, Peer, Refused
from test_master_node import PROFILE, Clock, _assign, _register

ALICE = "sha256:" + "a" * 64


@pytest.fixture
def master(tmp_path):
    """A master with bob/pc and carol/pc registered, a trusted requester and a funded submitter, on an SQLite log."""
    node = MasterNode(Identity.load_or_create(tmp_path / "master"), SqliteLog(tmp_path / "master.db"), core.MasterSettings(friend_timeout=60),
                      clock=Clock())  # fmt: skip
    bob = Peer(fingerprint="sha256:" + "b" * 64, public_key=b"b" * 32, host="127.0.0.1")
    carol = Peer(fingerprint="sha256:" + "c" * 64, public_key=b"c" * 32, host="127.0.0.1")
    requester = Peer(fingerprint="sha256:" + "e" * 64, public_key=b"e" * 32, host="127.0.0.1")
    node.apply(core.TrustRequester(key=requester.fingerprint, name="requester"))
    node.apply(core.CreateAccount(user="alice", key=ALICE))
    node.apply(core.CreateAccount(user="bob", key=bob.fingerprint))
    node.apply(core.CreateAccount(user="carol", key=carol.fingerprint))
    node.apply(core.GrantPoints(user="alice", key=ALICE, amount=100))
    node.apply(core.GrantPoints(user="carol", key=carol.fingerprint, amount=30))
    return node, bob, carol, requester


async def test_a_friends_owner_reads_its_trust_and_points_earned_held_and_fined(tmp_path, master) -> None:
    """After a paid job bob/pc reads its points earned and its reputation; while it holds a job the points there
    are said to be held; carol/pc, caught forging, reads its fine; nobody reads another owner's friend; a restarted
    master tells the same from its log."""
    node, bob, carol, requester = master
    await _register(node, bob)
    await node.call(carol, msg.RegisterFriend(user="carol", name="pc", profile=PROFILE))
    job = await _assign(node, requester, want=2)
    held = await node.call(bob, msg.FriendStanding(friend="bob/pc"))
    assert held.job == job and held.earned == 0 and held.reputation == 0 and held.trust_threshold == 3
    assert any("held: its points in job" in line for line in standing_lines(held))
    await node.call(requester, msg.Report(job=job, payouts={"bob/pc": 3}, own_outcomes={"bob/pc": (True, True)}, evicted=("carol/pc",),
                                          evidence={"carol/pc": "check 1, frame 2: black"}, outcome="finished"))  # fmt: skip
    standing = await node.call(bob, msg.FriendStanding(friend="bob/pc"))
    assert (standing.earned, standing.jobs_paid, standing.fined, standing.evictions, standing.reputation, standing.job) == (3, 1, 0, 0, 2, None)
    # Rule 12: the pay is held until a later job's own checks confirm it; Rule 7: trust takes jobs and requesters too.
    assert standing.balance == node.state.accounts["bob"].balance == 0 and standing.held == node.state.accounts["bob"].held == 3
    assert (standing.trusted, standing.trust_jobs, standing.trust_jobs_needed, standing.requesters, standing.requesters_needed) == (False, 1, 3, 1, 2)
    lines = standing_lines(standing)
    assert lines[0] == (
        "standing: probation 2/3: 1 more of the requesters' own checks passed in a row; passes in 2 more jobs; 1 more requester"
        " checking it make it trusted (a failed check starts again from 0)"
    )
    assert lines[1] == (
        "points: 3 earned in 1 job; fined 0; bob's balance 0, 3 of them held until a later job's checks confirm them (forfeited if it is caught)"
    )
    assert len(lines) == 2
    caught = await node.call(carol, msg.FriendStanding(friend="carol/pc"))
    assert caught.fined > 0 and caught.evictions == 1 and caught.earned == 0 and caught.balance == 30 - caught.fined
    assert f"fined {caught.fined} (caught forging in 1 job)" in standing_lines(caught)[1]
    with pytest.raises(Refused) as refused:
        await node.call(bob, msg.FriendStanding(friend="carol/pc"))
    assert refused.value.code == "not-yours"
    with pytest.raises(Refused):
        await node.call(bob, msg.FriendStanding(friend="nobody/pc"))
    operator = Peer(fingerprint=node.identity.fingerprint, public_key=b"m" * 32, host="127.0.0.1")
    assert (await node.call(operator, msg.FriendStanding(friend="carol/pc"))) == caught
    node.log.close()
    reborn = MasterNode(node.identity, SqliteLog(tmp_path / "master.db"), core.MasterSettings(friend_timeout=60), clock=Clock())
    assert (await reborn.call(bob, msg.FriendStanding(friend="bob/pc"))) == attrs.evolve(standing, live=False)  # live again once it heartbeats


def test_a_trusted_friend_reads_trusted() -> None:
    """At or past the threshold the standing says trusted, and what would lose it."""
    s = msg.Standing(friend="bob/pc", user="bob", reputation=5, trust_threshold=3, clean_run=5, earned=40, jobs_paid=4, fined=0, evictions=0,
                     balance=40)  # fmt: skip
    assert standing_lines(s)[0] == "standing: trusted 5/3: trusted (a failed check of the requesters' own drops it to 0)"
    assert standing_lines(s)[1] == "points: 40 earned in 4 jobs; fined 0; bob's balance 40"


def test_friend_status_says_where_no_master_answers(tmp_path) -> None:
    """`frender friend status` of a home whose friend noted its master: the master's silence is said, exit 0."""
    home = tmp_path / "friend"
    home.mkdir()
    note(home, Address(host="127.0.0.1", port=9, fingerprint="sha256:" + "0" * 64), "bob/pc")
    assert noted(home) == (Address(host="127.0.0.1", port=9, fingerprint="sha256:" + "0" * 64), "bob/pc")
    done = subprocess.run([sys.executable, "-m", "frender", "friend", "status", "--home", str(home)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no friend is running" in done.stdout and "bob/pc: the master at 127.0.0.1:9 does not answer" in done.stdout
