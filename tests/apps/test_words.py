"""What people read: `frender status` at 80 columns, one vocabulary of states and standing, one time estimate."""

from __future__ import annotations

from frender.apps import messages as msg
from frender.apps import words
from frender.apps.progress import print_jobs, print_status
from frender.core.profile import RenderProfile

PROFILE = RenderProfile(
    blender_version="5.0.1", build_hash="a3db93c5b259", cpu_class="x86_64-avx512f", engine="CYCLES",
    gl_backend="OPENGL", gl_renderer="llvmpipe (LLVM 15.0.6, 256 bits)", gl_version="4.5 (Core Profile) Mesa 22.3.6",
)


def _status() -> msg.StatusReply:
    friends = tuple(
        msg.FriendStatus(friend=f"volunteer{i}/workstation", live=i != 2, busy=i == 1, job=3 if i == 1 else None, profile=PROFILE,
                         clean_run=i, away="paused" if i == 3 else "", reputation=i, trust_threshold=3)
        for i in range(5)
    )  # fmt: skip
    jobs = (
        msg.JobStatus(job=3, submitter="artist", frames=240, friends=("volunteer1/workstation",), evicted=(), escrow=250, paid=0,
                      closed=False, friend_count=1, state="running"),
        msg.JobStatus(job=2, submitter="artist", frames=24, friends=(), evicted=(), escrow=30, paid=30, closed=True, state="cancelled"),
    )  # fmt: skip
    return msg.StatusReply(friends=friends, jobs=jobs, balances={"artist": 720, "volunteer1": 30}, granted=1000, total_balance=750,
                           escrow=250, accounts=7)  # fmt: skip


def test_status_reads_at_80_columns(monkeypatch, capsys):
    """At 80 columns a friend is one line (its profile shortened), no caption or note runs past 2 lines, and the
    friends show their standing (trusted or probation, with the count) and the jobs their state in the one vocabulary."""
    monkeypatch.setenv("COLUMNS", "80")
    print_status(_status())
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    for i in range(5):
        (row,) = [line for line in lines if f"volunteer{i}/workstation" in line]  # one line per friend
        assert "5.0.1 CPU x86_64-avx512f" in row and (f"trusted {i}/3" if i >= 3 else f"probation {i}/3") in row
    assert "llvmpipe" not in out
    totals = [n for n, line in enumerate(lines) if "points granted" in line]
    assert len(totals) == 1 and totals[0] >= len(lines) - 2  # the ledger's totals: at most 2 lines, at the end
    assert any("running" in line for line in lines) and any("cancelled" in line for line in lines) and "closed" not in out
    assert len(lines) <= 40, out


def test_jobs_and_the_page_share_one_estimate(monkeypatch, capsys):
    """`frender jobs` prints the estimate the page prints (words.duration of the same eta), never two different numbers."""
    monkeypatch.setenv("COLUMNS", "120")
    eta = words.time_left(elapsed=60.0, done=4, total=24)
    assert eta == 300.0 and words.time_left(10.0, 0, 24) == -1.0 and words.time_left(10.0, 24, 24) == 0.0
    line = msg.JobLine(job=1, state="running", final=4, total=24, active=2, wanted=2, eta=eta, escrowed=30, spent=4)
    print_jobs(msg.JobsReply(jobs=(line,)))
    assert "5m00s" in capsys.readouterr().out and words.time_left_text(eta) == "about 5m00s left"


def test_standing_and_states_are_one_vocabulary():
    """Standing is trusted or probation with the count behind it; every state a job shows is one of JOB_STATES."""
    assert words.standing(2, 3) == "probation 2/3" and words.standing(3, 3) == "trusted 3/3"
    states = {
        words.job_state(finished=f, cancelled=c, failed=x, active=a) for f in (False, True) for c in (False, True) for x in (False, True) for a in (0, 1)
    }
    assert states == set(words.JOB_STATES)
    assert {words.master_job_state(closed=c, outcome=o, friends=n) for c, o, n in
            ((False, "", 0), (False, "", 1), (True, "finished", 1), (True, "cancelled", 0), (True, "failed", 0))} == set(words.JOB_STATES)  # fmt: skip
    assert words.waiting_cause("no-friends:paused") == "paused" and words.waiting_cause("short-balance") == "balance"
    assert words.waiting_cause("no-friends") == "" and words.waiting_text("", "the master's own words") == "waiting: the master's own words"


def test_the_demo_keeps_its_dashboards_up_until_ctrl_c_at_a_terminal():
    """`frender demo` at a terminal keeps the farm (and the links it printed) up until Ctrl-C; off a terminal, or
    without dashboards, it ends with the job; --linger always wins."""
    import math

    from frender.apps.demo import demo_linger

    assert demo_linger(None, terminal=True, web="127.0.0.1:0") == math.inf
    assert demo_linger(None, terminal=False, web="127.0.0.1:0") == 0.0
    assert demo_linger(None, terminal=True, web="") == 0.0
    assert demo_linger(5.0, terminal=True, web="127.0.0.1:0") == 5.0 and demo_linger(0.0, terminal=True, web="127.0.0.1:0") == 0.0
