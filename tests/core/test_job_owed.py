"""What the requester owes is a query of the core's state: it agrees, after every event, with the reactions that
the events asked for and nothing has answered since (the shell's former projection, kept here as the naive model)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, settings
from test_job_model import Pool

from frender import codec
from frender.core import job as J

LOGS = Path(__file__).parent / "data" / "job_logs_v1.tsv"


class Asked:
    """The naive model: reactions asked for by events and not yet answered, voided or ended."""

    def __init__(self) -> None:
        self.comparisons: dict[tuple[int, int, str], tuple[str, str]] = {}
        self.renders: dict[tuple[int, int], int] = {}
        self.friends: set[int] = set()
        self.reports: set[int] = set()

    def see(self, event: object) -> None:
        match event:
            case J.ComparisonRequested(job=j, check=c, against=a):
                self.comparisons[(j, c, a)] = (event.a_sha256, event.b_sha256)
            case J.ComparisonMade(job=j, check=c, against=a):
                self.comparisons.pop((j, c, a), None)
            case J.CheaterEvicted(job=j):  # pair checks it verified go back to pending: their comparison is void
                pass
            case J.OwnRenderRequested(job=j, check=c, frame=f):
                self.renders[(j, c)] = f
            case J.OwnRenderReceived(job=j, check=c):
                self.renders.pop((j, c), None)
            case J.CheckResolved(job=j, check=c):
                self.renders.pop((j, c), None)
                for key in [k for k in self.comparisons if k[:2] == (j, c)]:
                    del self.comparisons[key]
            case J.MoreFriendsWanted(job=j):
                self.friends.add(j)
            case J.FriendsJoined(job=j):
                self.friends.discard(j)
            case J.JobFinished(job=j) | J.JobCancelled(job=j) | J.JobFailed(job=j):
                self.reports.add(j)
                self.friends.discard(j)
                for owed in (self.comparisons, self.renders):
                    for key in [k for k in owed if k[0] == j]:
                        del owed[key]


def _agree(state: J.Requester, asked: Asked) -> None:
    owed = J.owed(state)
    un_assigned = {  # a check whose verifier was evicted waits for a verifier again: its old comparison is void
        key for key in asked.comparisons if J.check_of(state, key[0], key[1]).state == J.CheckState.PENDING
    }
    assert {c.key: (c.a_sha256, c.b_sha256) for c in owed.comparisons} == {
        k: v for k, v in asked.comparisons.items() if k not in un_assigned
    }
    assert {r.key: r.frame for r in owed.own_renders} == asked.renders
    assert {f.job for f in owed.more_friends} == asked.friends
    assert {r.job for r in owed.reports} == asked.reports


class OwedPool(Pool):
    """The job model's run, with the naive model fed every event and compared with the query after each decision."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = Asked()

    def apply(self, command: object) -> list[object]:
        events = super().apply(command)
        for event in events:
            self.asked.see(event)
        _agree(self.state, self.asked)
        return events


OwedPool.TestCase.settings = settings(max_examples=60, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TestOwedPool = OwedPool.TestCase


def test_an_ended_job_owes_its_report_and_nothing_else() -> None:
    """Once a job ends, its open checks owe no comparison or render: only the report, until it is settled."""
    logs = [block.splitlines() for block in LOGS.read_text().split("\n\n") if block.strip()]
    state = J.Requester()
    for row in logs[0]:
        J.evolve(state, codec.from_json(*row.split("\t", 1)))
    [number] = J.job_numbers(state)
    owed = J.owed(state)
    assert [r.job for r in owed.reports] == [number] and not owed.comparisons and not owed.own_renders and not owed.more_friends
