"""The live attack bench (bench/attacks_live.py): cheating friends of the real protocol on a farm of real processes.

Each test is a row once found by hand on older code, played again through real master, requester and friend
processes with modelled renders; the cheaters farm trust honestly first, on two requesters in turn (as many jobs as
the master's Rule 7 takes to count them trusted: 3 jobs of 2 requesters at its defaults), then forge. Targets: at
most 1% of forged frames final at the job's end, every caught cheater's owner loses points in the attack, no honest
friend evicted, a job no friend can go on with ends saying why.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import attacks_live  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
assert _spec is not None and _spec.loader is not None
bench_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_run)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def plain(name, fn, *args, **kwargs):
    return fn(*args, **kwargs)


def assert_caught_and_fined(row: dict) -> None:
    """Forged frames were delivered; at most 1% of them are final at the end; every cheater that forged is caught
    and its owner loses points in the attack job (forfeited and fined); no honest friend is evicted. (Whether an owner
    ends below its stake counting what the farming jobs paid is the master's fines: docs/verification.md reports it.)"""
    assert row["forged_delivered"] > 0, row
    assert row["forged_final_at_end"] <= row["forged_delivered"] / 100, row
    assert row["cheaters_caught"], row
    assert row["attack_job_net_points"] < 0, row
    assert row["honest_evicted"] == 0


def test_two_trusted_colluders_alone_get_nothing_final_are_spot_checked_fined_and_lose_their_trust() -> None:
    """Two accounts farm trust on their own, then are the only friends of a job, forging after their first batch and
    vouching for each other (once: 48 of 48 forged frames final, 0 spot checks, fined nothing, granted the next job
    still trusted). Through bench/run.py at its tiny size: the bench's own smallest run."""
    entries = bench_run.BENCHES["attacks_live"]("tiny", plain)
    row = entries["attacks_live"]["rows"]["coalition alone"]["runs"][0]
    # Trusted as the master's rule has it (3 jobs of 2 requesters), the farming jobs sent to both requesters in turn.
    assert row["farming_jobs"] >= 3 and {j["requester"] for j in row["farming"]} == {"requester", "requester2"}, row["farming"]
    assert all(v["trusted"] for v in row["cheaters_trusted_before"].values()), row
    assert_caught_and_fined(row)
    assert row["spot_checks"] > 0
    assert not any(v["trusted"] for v in row["cheaters_trusted_after"].values())
    # Caught, each owner forfeits its held pay (Rule 12) and is fined, stake included: the farming's pay is all gone.
    assert row["cheaters_held_forfeited"] > 0 and row["cheaters_stake_asked"] > 0 and row["cheaters_held_at_end"] == 0, row
    assert row["attack_job_net_points"] == -(row["cheaters_held_forfeited"] + row["cheaters_fined"]), row
    # Nobody else is live: the job cannot finish, and it says so rather than waiting for ever.
    assert row["attack"]["ended"] == "failed" and "caught forging" in row["attack"]["why"], row["attack"]
    assert entries["attacks_live"]["value"] is not None


def test_a_trusted_pair_beside_honest_friends_is_caught_and_loses_its_points_in_the_job() -> None:
    """The same pair beside trusted honest friends (once: a net gain for its owners)."""
    row = attacks_live.run_row("coalition beside honest", frames=24)
    assert_caught_and_fined(row)
    assert len(row["cheaters_caught"]) == 2 and row["attack"]["ended"] == "finished"


def test_a_farmer_trusted_then_forging_is_caught_and_loses_its_points_in_the_job() -> None:
    """One friend honest until trusted, then forging everything (once: it ended even)."""
    row = attacks_live.run_row("farmer", frames=24)
    assert_caught_and_fined(row)
    assert row["attack"]["ended"] == "finished"


def test_eight_free_sybils_alone_get_the_job_ended_with_why_not_waiting_for_ever() -> None:
    """Eight fresh accounts with no points forge together, no trusted friend live (once: the job waited for ever).
    Nothing forged is final, no Sybil gains a point, and the job ends failed with its reason."""
    row = attacks_live.run_row("sybils", frames=24)
    assert row["forged_delivered"] > 0 and row["forged_final_at_end"] == 0
    assert row["cheaters_net_points_total"] <= 0
    assert row["attack"]["ended"] == "failed" and "caught forging" in row["attack"]["why"], row["attack"]


def test_eight_free_sybils_beside_trusted_friends_get_nothing_final_and_the_job_finishes() -> None:
    """The same eight Sybils beside four honest friends farmed trusted while they were off: the master lets them be a
    minority of the job (Rule 8); whatever they forge is caught, nothing forged is final, no honest friend is
    evicted, no Sybil gains a point, and the trusted friends finish the job."""
    row = attacks_live.run_row("sybils beside trusted", frames=24)
    assert row["forged_delivered"] > 0 and row["forged_final_at_end"] == 0 and row["forged_served"] == 0, row
    assert row["cheaters_caught"] and row["honest_evicted"] == 0, row
    assert row["cheaters_net_points_total"] <= 0
    assert row["attack"]["ended"] == "finished", row["attack"]
