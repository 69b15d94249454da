"""The attacks benchmark's simulation: a lone forger is caught and a colluding half too; honest jobs evict no one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import attacks  # noqa: E402

from frender.core import job as J  # noqa: E402

SETTINGS = J.JobSettings(seconds_per_frame=1.0, startup_seconds=0.0, adaptive=False)


@pytest.mark.parametrize("row", ["naive-black f=1", "lazy f=1", "colluding 50% nobody trusted", "honest only"])
def test_a_row_of_one_job(row: str) -> None:
    """One job of each kind on 8 friends: cheaters that forged are evicted, nothing forged is final, honest friends stay,
    and every frame costs one window of checks."""
    result = attacks.run_job(0, attacks.roster(row, 8, 0), SETTINGS, attacks.CROP_COST)
    assert result["forged_final"] == 0 and result["honest_evicted"] == 0
    assert result["caught"] == result["forged"] == (row != "honest only")
    assert result["checks"] + result["own"] >= attacks.CROP_COST  # at least one window a frame, a friend's or the requester's
    if row == "naive-black f=1":
        assert result["forged_delivered"] <= 2 * SETTINGS.batch_size  # Rule 13: two batches at most before the first check


@pytest.mark.parametrize("row", ["farmer then forges f=1", "trusted colluders 2 alone f=1 M=48"])
def test_farmed_trust_buys_no_forgery_and_the_caught_owner_ends_below_where_it_started(row: str) -> None:
    """With the bench's settings, accounts that farmed trust and then forge are caught, none of their forgeries is
    final, and their owners end the job below where they were before farming (holds forfeited, stake fined)."""
    settings = J.JobSettings(seconds_per_frame=1.0, startup_seconds=0.0, adaptive=False, **attacks.BENCH_SETTINGS)
    result = attacks.run_job(0, attacks.roster(row, 8, 0), settings, attacks.CROP_COST, attacks.frames_of(row))
    assert result["caught"] and result["forged_final"] == 0 and result["honest_evicted"] == 0
    assert result["net"] < 0
