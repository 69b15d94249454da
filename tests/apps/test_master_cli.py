"""`frender run master`'s trust options: what an operator types reaches the master's settings (Rule 7)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from frender.apps import master as master_app
from frender.apps.cli import app
from frender.core.master import MasterSettings


@pytest.fixture
def started(monkeypatch) -> list[MasterSettings]:
    """The settings each `frender run master` would serve with (the master itself is not started: its rules are
    tested in tests/core/test_master_trust.py, and bench/attacks_live.py runs it with these options)."""
    seen: list[MasterSettings] = []

    async def run_master(*, settings: MasterSettings, **_) -> None:
        seen.append(settings)

    monkeypatch.setattr(master_app, "run_master", run_master)
    return seen


def test_a_farm_with_one_requester_can_ask_for_trust_from_one_requester(tmp_path, started):
    """`--trust-requesters 1 --trust-jobs 2` are the master's Rule 7 settings; the other trust settings stay the default."""
    args = ["run", "master", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "m.db"), "--home", str(tmp_path / "m")]
    done = CliRunner().invoke(app, [*args, "--trust-requesters", "1", "--trust-jobs", "2"])
    assert done.exit_code == 0, done.output
    assert len(started) == 1 and (started[0].trust_requesters, started[0].trust_jobs) == (1, 2)
    assert started[0].trust_threshold == MasterSettings().trust_threshold
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0 and (started[1].trust_requesters, started[1].trust_jobs) == (2, 3)


def test_the_help_says_a_farm_with_one_requester_sets_trust_requesters_1(tmp_path, started):
    done = CliRunner().invoke(app, ["run", "master", "--help"], env={"COLUMNS": "200"})
    assert "--trust-requesters" in done.output and "--trust-jobs" in done.output
    assert "one requester: 1" in " ".join(done.output.split())
    assert CliRunner().invoke(app, ["run", "master", "--trust-requesters", "0"]).exit_code != 0
    assert not started
