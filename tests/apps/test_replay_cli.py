"""`frender replay`: the story of a good log; one clear line and exit 1 for anything else."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from frender.core import master as m
from frender.core.profile import RenderProfile
from frender.store import SqliteLog

PROFILE = RenderProfile(blender_version="5.0.1", build_hash="a3db93c5b259")


def frender(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "frender", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def master_log(tmp_path):
    """A master log with one job: granted, assigned, paid, one friend evicted and fined, closed."""
    state, log = m.Master(), SqliteLog(tmp_path / "master.db")
    for command in [
        m.CreateAccount(user="artist", key="k-art"),
        m.GrantPoints(user="artist", key="k-art", amount=50),
        m.TrustRequester(key="R", name="studio"),
        m.CreateAccount(user="ann", key="k-ann"),
        m.CreateAccount(user="bob", key="k-bob"),
        m.RegisterFriend(user="ann", key="k-ann", friend="ann/pc", profile=PROFILE, now=1),
        m.RegisterFriend(user="bob", key="k-bob", friend="bob/pc", profile=PROFILE, now=1),
        m.RequestFriends(requester="R", submitter="artist", submitter_key="k-art", frames=6, want=2, profile=PROFILE, now=2),
        m.ReportJob(
            requester="R", job=1, payouts={"ann/pc": 7}, evicted=("bob/pc",), evidence={"bob/pc": "frame 4: black"}, head_seq=40, head_hash="ab" * 32, now=3,
            own_outcomes={"ann/pc": (True,)}, outcome="finished",
        ),
    ]:
        events = m.decide(state, command)
        log.append([e for e in events if getattr(type(e), "durable", True)])
        for e in events:
            m.evolve(state, e)
    log.close()
    return tmp_path / "master.db"


def test_replay_tells_the_story_and_the_ledger(master_log):
    """The text names jobs, friends, evictions and points; the JSON form carries the same numbers."""
    out = frender("replay", str(master_log))
    assert out.returncode == 0, out.stderr
    assert "chain verified" in out.stdout and "friend bob/pc evicted, unpaid" in out.stdout
    assert "7 points to ann for friend ann/pc" in out.stdout and "Ledger: 50 points granted" in out.stdout
    assert "friend bob/pc found wrong" in out.stdout and "Evidence: frame 4: black" in out.stdout
    report = json.loads(frender("replay", str(master_log), "--json", "--job", "1").stdout)
    assert report["master"]["ledger"]["balanced"] and report["master"]["users"]["ann"] == 7
    assert report["master"]["jobs"][0]["evicted"] == ["bob/pc"]


def test_replay_says_states_and_standing_as_status_does(master_log):
    """Replay names a job's state and a friend's standing in the words `frender status` uses: finished, not closed;
    probation 1/3, not a bare reputation number."""
    out = frender("replay", str(master_log))
    assert out.returncode == 0, out.stderr
    assert "Job 1 (finished)" in out.stdout and "(closed)" not in out.stdout and "job 1 finished:" in out.stdout
    assert "ann/pc                   probation 1/3" in out.stdout and "now probation 1/3" in out.stdout
    assert "reputation 1" not in out.stdout


@pytest.mark.parametrize("what", ["missing", "garbage", "foreign", "tampered"])
def test_bad_logs_give_one_clear_line_and_exit_1(master_log, tmp_path, what):
    """A missing path, garbage, a foreign database and an edited row: exit 1, one line, no traceback."""
    path = tmp_path / f"{what}.db"
    if what == "garbage":
        path.write_bytes(b"\x00garbage" * 500)
    elif what == "foreign":
        sqlite3.connect(path).execute("create table t (x)").connection.commit()
    elif what == "tampered":
        path.write_bytes(master_log.read_bytes())
        conn = sqlite3.connect(path)
        conn.execute("drop trigger events_no_update")
        conn.execute("update events set body = replace(body, '50', '5000') where seq = 2")
        conn.commit()
        conn.close()
    out = frender("replay", str(path))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("frender: ") and "Traceback" not in out.stderr
    if what == "tampered":
        assert "seq 2" in lines[0]


def test_help_lists_the_commands():
    """`frender --help` lists replay, run, submit, status, demo, scene and operator."""
    out = frender("--help").stdout
    for command in ("replay", "run", "submit", "status", "demo", "scene", "operator"):
        assert command in out
