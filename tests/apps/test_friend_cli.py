"""`frender friend pause|resume|status` and the friend's options: what a volunteer types, and one clear line for a mistake."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from frender.apps.availability import read_pause, write_status


def frender(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "frender", *args], capture_output=True, text=True, timeout=60)


def test_pause_and_resume_with_no_friend_running(tmp_path):
    """Without a running friend, pause leaves the pause file (the friend starts paused) and resume removes it."""
    done = frender("friend", "pause", "--home", str(tmp_path), "--now")
    assert done.returncode == 0 and "it will start paused" in done.stdout
    assert read_pause(tmp_path) == "now"
    assert "it will start paused" in frender("friend", "status", "--home", str(tmp_path)).stdout
    done = frender("friend", "resume", "--home", str(tmp_path))
    assert done.returncode == 0 and read_pause(tmp_path) is None


def test_pause_reports_what_the_friend_says_when_it_does_not_answer_in_time(tmp_path):
    """A friend that has not handed its job back within --wait is reported as it stands, not as paused."""
    write_status(tmp_path, "rendering job 7")
    done = frender("friend", "pause", "--home", str(tmp_path), "--wait", "0.5")
    assert done.returncode == 0
    assert done.stdout.strip() == "paused, but after 0.5 s the friend says: rendering job 7"
    assert read_pause(tmp_path) == "frame"


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        (["--schedule", "mon-fry 19:00-07:00"], "--schedule: schedule days 'mon-fry'"),
        (["--max-memory", "lots"], "--max-memory wants a size like 4G or 512M, not 'lots'"),
        (["--max-memory", "1M"], "Blender needs at least 64M"),
        (["--nice", "30"], "--nice is 0 to 19"),
        (["--idle-minutes", "0"], "--idle-minutes must be positive"),
    ],
)
def test_bad_friend_options_are_one_clear_line(tmp_path, option, complaint):
    """A wrong schedule, size, niceness or idle time is refused with one line naming it, exit status 1."""
    master = "frender://127.0.0.1:1#sha256:" + "0" * 64
    done = frender("run", "friend", "--master", master, "--user", "bob", "--home", str(tmp_path), "--blender", "modelled:0.1", *option)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("frender: ") and complaint in line, done.stderr


def test_pause_refuses_a_home_that_does_not_exist(tmp_path):
    """Pausing a home that does not exist is a clear error, not a new directory."""
    done = frender("friend", "pause", "--home", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and "no such friend home" in done.stderr
    assert not (tmp_path / "nowhere").exists()


def test_pause_of_a_friend_that_is_paused_says_it_once(tmp_path):
    """A friend that answers "paused" is reported as "paused", not "paused: paused"."""
    write_status(tmp_path, "paused")
    done = frender("friend", "pause", "--home", str(tmp_path), "--wait", "5")
    assert done.returncode == 0 and done.stdout.strip() == "paused", done.stdout


def test_a_developer_after_the_readme_first_line(tmp_path):
    """`frender --version` answers; the README's developer section installs the test extra (pytest) and runs one file."""
    done = frender("--version")
    assert done.returncode == 0 and done.stdout.startswith("frender 0."), done.stdout + done.stderr
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    assert readme.splitlines()[3].startswith("python3 -m pip install -e '.[bpy]' && python3 -m frender demo")
    assert "python3.11 -m pip install -e '.[bpy,test]'" in readme and "python3.11 -m pytest tests/core/test_circle.py" in readme
    assert "frender scene shot.blend" in readme
    test_extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(dependency.startswith("pytest>=") for dependency in test_extra)
    assert (root / "tests" / "core" / "test_circle.py").is_file()


def test_a_friend_stopped_by_sigterm_says_stopped(tmp_path):
    """`frender friend status` after SIGTERM says "stopped", not the friend's last "available"."""
    import os
    import signal
    import time

    master = "frender://127.0.0.1:1#sha256:" + "0" * 64  # nobody listens: the friend keeps redialling, available
    friend = subprocess.Popen(
        [sys.executable, "-m", "frender", "run", "friend", "--master", master, "--user", "bob", "--home", str(tmp_path), "--blender", "modelled:0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ,
    )
    try:
        deadline = time.monotonic() + 60
        while "available" not in frender("friend", "status", "--home", str(tmp_path)).stdout and time.monotonic() < deadline:
            time.sleep(0.2)
        said = frender("friend", "status", "--home", str(tmp_path)).stdout.splitlines()
        assert said[0] == "available" and "bob/" in said[1] and "does not answer" in said[1]  # its standing is asked of its master
        friend.send_signal(signal.SIGTERM)
        friend.wait(timeout=60)
    finally:
        friend.kill()
    assert frender("friend", "status", "--home", str(tmp_path)).stdout.startswith("stopped")
    assert (tmp_path / "status").read_text().strip() == "stopped"  # written on its way out


def test_a_status_file_whose_process_is_gone_reads_stopped(tmp_path):
    """A friend killed without a goodbye leaves its last line; once its process is gone, that line reads "stopped"."""
    done = subprocess.run([sys.executable, "-c", "from pathlib import Path; import sys; "
                           "from frender.apps.availability import write_status; write_status(Path(sys.argv[1]), 'available')", str(tmp_path)],
                          check=True)  # fmt: skip
    assert done.returncode == 0 and "pid" in (tmp_path / "status").read_text()
    assert frender("friend", "status", "--home", str(tmp_path)).stdout.startswith("stopped: no friend is running")
    write_status(tmp_path, "rendering job 3")  # this process: running
    assert frender("friend", "status", "--home", str(tmp_path)).stdout.strip() == "rendering job 3"
