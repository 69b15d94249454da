"""A starved job never waits forever, through real processes: a master, a requester and two forging friends of two
fresh accounts (modelled renders), no honest friend. Both are caught, the master has no other friend to give, and
the job fails with why: in `submit`, `frender jobs`, the progress the dashboard shows, and `frender replay`; the
forgers' owners read their fines with `frender friend status`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from frender.apps import messages as msg
from frender.apps.client import SubmitRefused, create_account, jobs, operator_call, submit
from frender.apps.demo import _settled, start_friend, start_master, wait_for_friends
from frender.apps.replay import render_text
from frender.transports import Identity, connect

MODELLED = "modelled:0.05:64x36:1-16"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_job_whose_friends_are_all_caught_fails_with_why_when_no_other_comes(farm, tiny_scene):
    """Every friend caught forging and none other registered: after --starved-after the job fails ("starved"), the
    artist's submit says why and exits in error, `jobs` and the progress say it, replay tells it; the master closed
    it, the forgers' owners were fined, and the artist got back all but what final frames earned."""
    cluster = farm.cluster
    farm.master, farm.master_home = await trio.to_thread.run_sync(lambda: start_master(cluster))
    farm.seconds_per_frame, farm.blenders = 1.0, (MODELLED,)
    farm.requester_options = ("--starved-after", "5")
    await farm.start_requester()
    await operator_call(farm.master, farm.master_home, msg.Trust(key=farm.requester.fingerprint, name="test"))
    artist_home = farm.root / "homes" / "artist"
    artist = await create_account(farm.master, artist_home, "artist")
    await operator_call(farm.master, farm.master_home, msg.Grant(user="artist", amount=500, key=artist.key))
    for index in (1, 2):  # two fresh accounts, one friend each, both forging black frames (and vouching for each other's)
        account = await create_account(farm.master, farm.root / "homes" / f"friend{index}", f"friend{index}")
        await operator_call(farm.master, farm.master_home, msg.Grant(user=f"friend{index}", amount=20, key=account.key))  # a stake to fine
        start_friend(cluster, farm.master, index, cheat="black", blender=MODELLED)
    await wait_for_friends(farm.master, farm.master_home, 2)

    seen: list[msg.ProgressReply] = []
    with trio.fail_after(180), pytest.raises(SubmitRefused) as caught:
        await submit(tiny_scene, requester=farm.requester, user="artist", home=artist_home, friends=2, out=farm.root / "out", on_progress=seen.append)
    said = str(caught.value)
    assert "failed: no friend could go on with it" in said and "caught forging" in said and "within 5 s" in said, said
    # While it starved, before it failed, the artist read why and what comes next (the client asks every ~0.5 s of those 5).
    assert any(not p.finished and "no friend can go on with it" in p.problem and "asking the master for others" in p.problem for p in seen)

    [line] = (await jobs(farm.requester, artist_home)).jobs
    assert line.state == "failed" and line.failed_cause == "starved" and "caught forging" in line.failed
    async with connect(farm.requester, Identity.load_or_create(artist_home)) as session:
        progress = await session.call(msg.Progress(job=line.job))  # what the job's page shows
    assert progress.finished and progress.failed_cause == "starved" and "no friend could go on with it" in progress.problem
    assert set(progress.evictions) == {"friend1/box", "friend2/box"}

    await _settled(farm.master, farm.master_home, line.job)
    master = farm.audit("master")["master"]
    closed = next(j for j in master["jobs"] if j["job"] == line.job)
    assert closed["closed"] and set(closed["evicted"]) == {"friend1/box", "friend2/box"} and master["ledger"]["balanced"]
    fines = {i: 20 - master["users"][f"friend{i}"] for i in (1, 2)}
    assert all(fines.values()), fines  # both owners fined
    assert master["users"]["artist"] == 500 - closed["paid"] + sum(fines.values())  # refunded, and the fines went to the artist
    story = render_text(farm.audit("requester"))  # what `frender replay requester.db` prints
    assert f"job {line.job} FAILED: starved, no friend could go on with it" in story

    # The forger's owner reads its standing with `frender friend status`, from the master.
    command = [sys.executable, "-m", "frender", "friend", "status", "--home", str(farm.root / "homes" / "friend1")]
    done = await trio.to_thread.run_sync(lambda: subprocess.run(command, capture_output=True, text=True, timeout=60))
    assert done.returncode == 0, done.stderr
    assert (
        "friend1/box standing: probation 0/3: 3 more of the requesters' own checks passed in a row; passes in 3 more jobs;"
        " 2 more requesters checking it make it trusted" in done.stdout
    )
    assert f"points: 0 earned in 0 jobs; fined {fines[1]} (caught forging in 1 job); friend1's balance {20 - fines[1]}" in done.stdout
