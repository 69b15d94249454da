"""Names cannot be stolen or confused, and every name shown is safe: tried as an attacker would, through the real CLI.

The grant race runs against a real master process; the hostile names come from
a master log written before names had an alphabet (today's master refuses
them), which the master, `frender status` and `frender replay` must still show
as plain, visible text.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from frender.apps import messages as msg
from frender.apps.demo import Cluster, start_master
from frender.apps.progress import job_view, print_jobs
from frender.core import master as m
from frender.core.profile import RenderProfile
from frender.store import SqliteLog

PROFILE = RenderProfile(blender_version="5.0.1", build_hash="a3db93c5b259")
# A friend name Rich reads as markup, and one that clears the screen and plants a link to another site.
MARKUP = "[/bold]"
ESCAPES = "\x1b[2J\x1b]8;;https://evil.example/\x07click me\x1b]8;;\x07\x9b31m"
HOSTILE = (MARKUP, ESCAPES)
SHOWN = "\\x1b[2J\\x1b]8;;https://evil.example/\\x07click me\\x1b]8;;\\x07\\x9b31m"  # how ESCAPES must read on a screen


def frender(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}  # no wrapping inside a name
    return subprocess.run([sys.executable, "-m", "frender", *args], capture_output=True, text=True, timeout=120, env=env)


def fingerprint(home: Path) -> str:
    """The key fingerprint `frender account show` prints: what an artist gives the operator with her name."""
    done = frender("account", "show", "--home", str(home))
    assert done.returncode == 0, done.stderr
    [key] = [word for word in done.stdout.split() if word.startswith("sha256:")]
    return key


def balances(master: str, master_home: Path) -> dict[str, int]:
    done = frender("status", "--master", master, "--home", str(master_home), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["balances"]


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.stop_all()


def test_a_stranger_who_binds_alice_first_never_gets_her_grant(cluster, tmp_path):
    """The operator grants to the key alice gave; a stranger who bound `alice` first is refused the grant, and says so."""
    address, master_home = start_master(cluster)
    master = str(address)
    homes = {who: tmp_path / "homes" / who for who in ("stranger", "alice", "carol", "mallory")}
    assert frender("account", "create", "alice", "--master", master, "--home", str(homes["stranger"])).returncode == 0
    taken = frender("account", "create", "alice", "--master", master, "--home", str(homes["alice"]))
    assert taken.returncode == 1 and "name-taken" in taken.stderr
    alice = fingerprint(homes["alice"])
    # The operator follows the README: alice's name and the key she gave.
    grant = frender("operator", "grant", "alice", "500", "--key", alice, "--master", master, "--home", str(master_home))
    assert grant.returncode == 1 and "wrong-key" in grant.stderr and "someone else" in grant.stderr, grant.stderr
    nameless = frender("operator", "grant", "alice", "500", "--master", master, "--home", str(master_home))
    assert nameless.returncode == 1 and "--key" in nameless.stderr and "Traceback" not in nameless.stderr
    assert balances(master, master_home) == {"alice": 0}
    # Alice binds another name; her grant reaches her key, and says which key it funded.
    created = frender("account", "create", "alice-b", "--master", master, "--home", str(homes["alice"]))
    assert created.returncode == 0 and alice in created.stdout
    grant = frender("operator", "grant", "alice-b", "500", "--key", alice, "--master", master, "--home", str(master_home))
    assert grant.returncode == 0 and f"(key {alice})" in grant.stdout, grant.stderr
    shown = frender("account", "show", "--master", master, "--home", str(homes["alice"]))
    assert shown.returncode == 0 and "account alice-b" in shown.stdout and "balance 500" in shown.stdout
    assert balances(master, master_home) == {"alice": 0, "alice-b": 500}
    # Look-alike names: a Cyrillic а is not in the alphabet; `Carol` is `carol`, bound already.
    assert frender("account", "create", "carol", "--master", master, "--home", str(homes["carol"])).returncode == 0
    lookalike = frender("account", "create", "c\u0430rol", "--master", master, "--home", str(homes["mallory"]))
    assert lookalike.returncode == 1 and "bad-user" in lookalike.stderr
    cased = frender("account", "create", "Carol", "--master", master, "--home", str(homes["mallory"]))
    assert cased.returncode == 1 and "name-taken" in cased.stderr
    # The log records the key each grant funded.
    story = frender("replay", str(tmp_path / "master.db"))
    assert story.returncode == 0 and f"500 points granted to alice-b (key {alice.removeprefix('sha256:')[:12]}…)" in story.stdout


def old_master_log(path: Path) -> None:
    """A master log from before names had an alphabet: hostile friend names, an account named in markup."""
    log = SqliteLog(path)
    log.append(
        [
            m.UserBound(user="bob", key="sha256:" + "b" * 64, grant=0),
            *(m.FriendRegistered(friend=f"bob/{name}", user="bob", profile=PROFILE, capacity=1, now=1.0) for name in HOSTILE),
            m.UserBound(user=MARKUP, key="sha256:" + "c" * 64, grant=0),
            m.PointsGranted(user=MARKUP, amount=5, reason=ESCAPES),
        ]
    )
    log.close()


def shows_plainly(out: str) -> None:
    """``out`` shows each hostile name as visible text and holds no control character of its own."""
    assert MARKUP in out and SHOWN in out
    assert not any(ch in out for ch in "\x1b\x07\x9b"), repr(out)


def test_status_shows_hostile_friend_names_as_text(cluster, tmp_path):
    """`frender status` prints a friend named `[/bold]` or full of escape sequences as text, for every user."""
    old_master_log(tmp_path / "master.db")
    address, master_home = start_master(cluster)
    for home in (master_home, tmp_path / "homes" / "anyone"):
        done = frender("status", "--master", str(address), "--home", str(home))
        assert done.returncode == 0, done.stderr
        shows_plainly(done.stdout)


def test_replay_shows_hostile_names_as_text(tmp_path):
    """`frender replay` tells an old log's story with its hostile names escaped; its JSON holds them as data."""
    old_master_log(tmp_path / "master.db")
    done = frender("replay", str(tmp_path / "master.db"))
    assert done.returncode == 0, done.stderr
    shows_plainly(done.stdout)
    done = frender("replay", str(tmp_path / "master.db"), "--json")
    assert done.returncode == 0 and "\x1b" not in done.stdout
    assert f"bob/{ESCAPES}" in json.loads(done.stdout)["master"]["friends"]


def test_the_progress_view_shows_hostile_names_as_text(monkeypatch, capsys):
    """The submit view and `frender jobs` show a friend, an eviction and a problem carrying markup and escapes as text."""
    reply = msg.ProgressReply(
        job=3, total=4, delivered=2, final=(1,), checks=1, disagreements=1, finished=False, wanted=2, active=1,
        friends=tuple(msg.FriendLine(friend=f"bob/{name}", delivered=1, final=0, checks=0, evicted=True) for name in HOSTILE),
        evictions=tuple(f"bob/{name}" for name in HOSTILE), problem=f"{MARKUP} {ESCAPES}",
    )  # fmt: skip
    out = io.StringIO()
    console = Console(file=out, width=400, force_terminal=False)
    bars = Progress(console=console)
    ids = (bars.add_task("delivered", total=None), bars.add_task("final", total=None))
    console.print(job_view(reply, bars, ids))
    shows_plainly(out.getvalue())
    monkeypatch.setenv("COLUMNS", "400")
    line = msg.JobLine(job=3, state=f"{MARKUP}{ESCAPES}", final=1, total=4, active=1, wanted=2, eta=-1, escrowed=6, spent=1)
    print_jobs(msg.JobsReply(jobs=(line,)))
    shows_plainly(capsys.readouterr().out)


def test_a_friend_name_outside_the_alphabet_is_refused_before_it_starts(tmp_path):
    """`frender run friend --name` with markup or a look-alike letter stops at once, saying what a name may hold."""
    for name in (MARKUP, "p\u0441"):
        done = frender(
            "run", "friend", "--master", "frender://127.0.0.1:9#sha256:" + "0" * 64, "--user", "bob", "--name", name,
            "--home", str(tmp_path / "friend"), "--blender", "modelled:0.01",
        )  # fmt: skip
        assert done.returncode == 1 and "ASCII letters" in done.stderr, done.stderr


def test_every_page_escapes_the_names_it_shows():
    """Autoescape is on for every template; a friend or user named in HTML or escapes shows as text on the operator's page."""
    from frender.apps.web._page import TEMPLATES, render

    import re

    assert TEMPLATES.autoescape is True
    for name in TEMPLATES.list_templates():
        source = TEMPLATES.loader.get_source(TEMPLATES, name)[0]
        # Only the live part, itself rendered by an escaping template, is put in as it is.
        assert "autoescape" not in source and {e.strip() for e in re.findall(r"{{([^}]*)\|\s*safe", source)} <= {"live"}, name
    script = "<script>alert(1)</script>"
    status = msg.StatusReply(
        friends=(msg.FriendStatus(friend=f"bob/{script}", live=True, busy=False, job=None, profile=PROFILE, clean_run=0),),
        jobs=(msg.JobStatus(job=1, submitter=script, frames=2, friends=(f"bob/{script}",), evicted=(), escrow=2, paid=0, closed=False),),
        balances={script: 3}, granted=3, total_balance=3, escrow=0, accounts=1, page=0, pages=1,
    )  # fmt: skip
    page = render("master_live.html", s=status, held=0, balances_sum=3)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    "text, shown",
    [
        ("café 東京", "café 東京"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("bell\x07 del\x7f c1\x85", "bell\\x07 del\\x7f c1\\x85"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # a right-to-left override would show 'exe.txt'
        ("two\nlines\u2028", "two\\x0alines\\u2028"),
    ],
)
def test_safe_shows_every_control_character_as_an_escape(text, shown):
    """The one function for terminal text keeps what prints and escapes what would act on the terminal or reorder text."""
    from frender.apps.terminal import safe

    assert safe(text) == shown
    assert safe("two\nlines", lines=True) == "two\nlines"
