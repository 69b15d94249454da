"""The artist's dashboard in a real browser (headless Chromium via Selenium) during `frender demo --cheaters 1`.

Skipped, with the reason, where Chromium, its driver or Selenium is missing
(scripts/test.sh installs Debian's chromium and chromium-driver as root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import pytest

from frender.apps.web import job_scope, sign_token
from frender.transports import Identity

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FRAMES = 12

pytestmark = [
    pytest.mark.browser,
    pytest.mark.blender,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")


SNAPSHOT = """
const all = (s) => Array.from(document.querySelectorAll(s));
const text = (s) => { const e = document.querySelector(s); return e ? e.textContent.trim() : null; };
const video = document.querySelector("#video");
return {
  thumbs: all("#thumbs img").map((i) => i.alt),
  loaded: all("#thumbs img").every((i) => i.complete && i.naturalWidth > 0),
  eta: text("#eta"), state: text("#state"),
  evicted: all("#friends tr.evicted").map((r) => r.textContent),
  evictions: all("#evictions .eviction p").map((p) => p.textContent),
  numbers: all("#evictions details li").map((li) => li.textContent),
  bar: [document.querySelector("#bar-delivered"), document.querySelector("#bar-final")].map((b) => b ? b.getBoundingClientRect().width : null),
  cells: all("#grid .cell").map((c) => c.className.replace("cell ", "")),
  friendsCount: text("#friends-count"),
  video: video ? video.href : null,
  marker: window.frenderLoaded === true,
};
"""


def _line(log: Path, proc: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert proc.poll() is None, f"the demo ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout:g} s:\n{log.read_text()[-3000:]}")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def demo(tmp_path):
    out = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frender", "demo", "--friends", "3", "--cheaters", "1", "--frames", f"1-{FRAMES}", "--out", str(out), "--linger", "600"],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "400"},
        )
    yield out, log, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_dashboard_shows_frames_the_estimate_and_an_eviction_live(demo, browser, tmp_path):
    """Thumbnails appear without a reload, with the two-layer bar, the frame grid, a time estimate and the cheater's
    eviction in words; the operator's page shows standing and links jobs; bad tokens get 403; the demo stays up."""
    out, log, proc = demo
    url = _line(log, proc, r"dashboard: (http://\S+)", 240).group(1)
    browser.get(url)
    browser.execute_script("window.frenderLoaded = true;")  # gone if the page reloads
    seen_thumbs, estimates, layered, cell_states, friend_counts = set(), set(), False, set(), set()
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        page = browser.execute_script(SNAPSHOT)  # one script: the live part may be replaced between two calls
        seen_thumbs.add(len(page["thumbs"]))
        estimates.add(page["eta"])
        cell_states.update(page["cells"])
        friend_counts.add(page["friendsCount"])
        delivered_width, final_width = page["bar"]
        now_layered = delivered_width is not None and final_width is not None and delivered_width > final_width
        if now_layered and page["evictions"] and not (tmp_path / "running.png").exists():  # the whole story, mid-job
            browser.execute_script("const d = document.querySelector('#evictions details'); if (d) d.open = true;")
            browser.save_screenshot(str(tmp_path / "running.png"))
        layered = layered or now_layered
        if page["state"] == "finished" and page["evicted"] and page["video"] and page["loaded"]:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the page never showed the finished job with an eviction and a video; estimates {estimates}")
    assert page["marker"], "the page reloaded"
    assert len(page["thumbs"]) == FRAMES and len(seen_thumbs) > 2, f"frames did not appear one by one: counts seen {sorted(seen_thumbs)}"
    assert any(re.fullmatch(r"about (\d+m\d\ds|\d+s|\d+h\d\dm) left", e or "") for e in estimates), estimates  # the one estimate
    assert "friend1/box" in page["evicted"][0], page["evicted"]  # the black cheater
    # Its eviction in words (what was compared, by whom, the verdict), the hashes and figures folded behind it.
    assert any(e.startswith("friend1/box: ") and "frame" in e and "evicted, unpaid" in e for e in page["evictions"]), page["evictions"]
    assert not any("PSNR" in e or "sha256" in e for e in page["evictions"]) and any("PSNR" in n for n in page["numbers"]), page
    assert layered, "the bar never showed delivered frames ahead of final ones"  # two layers: delivered under final
    assert len(page["cells"]) == FRAMES and set(page["cells"]) == {"final"}, page["cells"]  # a cell per frame
    assert len(cell_states) > 1, f"the grid showed one state only: {cell_states}"
    assert any(c and re.fullmatch(r"\d of 3 friends asked for are rendering.*", c) for c in friend_counts), friend_counts
    browser.execute_script("document.querySelector('#evictions details').open = true;")
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
    if os.environ.get("FRENDER_SCREENSHOT"):  # the README's picture (mid-job if one was taken): FRENDER_SCREENSHOT=docs/dashboard.png
        best = tmp_path / "running.png" if (tmp_path / "running.png").exists() else tmp_path / "dashboard.png"
        shutil.copy(best, os.environ["FRENDER_SCREENSHOT"])

    # The operator's page (the link the demo prints, signed by the master's key): friends, jobs, the ledger.
    browser.get(_line(log, proc, r"operator  (http://\S+)", 5).group(1))
    tables = browser.execute_script("return Array.from(document.querySelectorAll('#friends, #jobs, #ledger')).map(t => t.textContent);")
    assert len(tables) == 3 and all(f"friend{i}/box" in tables[0] for i in (1, 2, 3)) and "friend1/box" in tables[1], tables
    assert "points granted" in tables[2] and re.search(r"(probation|trusted) \d+/\d+", tables[0]) and "finished" in tables[1], tables
    assert browser.execute_script("return document.querySelectorAll('#friends a[href^=\"#job-\"], #jobs a[href^=\"#job-\"]').length;") >= 1
    browser.save_screenshot(str(tmp_path / "operator.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors

    # The job's video, decoded back: every final frame, in H.264.
    video = page["video"]
    with urllib.request.urlopen(video, timeout=30) as reply:
        (tmp_path / "job.mp4").write_bytes(reply.read())
    with av.open(str(tmp_path / "job.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and sum(1 for _ in container.decode(stream)) == FRAMES

    # Forged, another job's and expired tokens are refused, also in the browser.
    base, _, token = url.partition("?t=")
    requester = Identity.load_or_create(out / "homes" / "requester")
    expired = sign_token(requester, job_scope(1), now=time.time() - 3600, seconds=60)
    other = sign_token(requester, job_scope(2), now=time.time(), seconds=60)
    for bad in (token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), expired, other, ""):
        assert _status(f"{base}?t={bad}") == 403
    browser.get(f"{base}?t={expired}")
    assert "403" in browser.find_element("tag name", "h1").text

    # The demo checks the frames and writes its own video while its dashboards stay up, and says so.
    _line(log, proc, r"video: \S*demo\.mp4", 300)
    _line(log, proc, r"dashboards stay up for 600 s", 60)
    proc.send_signal(signal.SIGINT)  # ends the linger
    proc.wait(timeout=120)
    with av.open(str(out / "demo.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "frames" / "frame_0001.png").stat().st_mode & 0o777 == 0o666 & ~umask  # the user's umask, not 0600
