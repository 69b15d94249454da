"""Logs written by an earlier build of the requester's core still replay: same tags, same fields, same bytes."""

from __future__ import annotations

from pathlib import Path

from frender import codec
from frender.core import job as J
from frender.core._decider import fold

LOGS = Path(__file__).parent / "data" / "job_logs_v1.tsv"  # two job logs (tag TAB canonical JSON), blank-line separated
# Events added after those logs were written: new tags, old ones unchanged.
NEWER = {J.JobCancelled.tag, J.RenderFailed.tag, J.JobFailed.tag, J.FramesRecalled.tag, J.ChecksReopened.tag, J.CropsUnequal.tag}


def test_an_earlier_builds_logs_re_encode_byte_for_byte_and_fold() -> None:
    """Every logged body decodes and re-encodes to the same bytes, every tag is known, and each log folds."""
    logs = [block.splitlines() for block in LOGS.read_text().split("\n\n") if block.strip()]
    assert {row.split("\t", 1)[0] for log in logs for row in log} == {e.tag for e in J.EVENTS} - NEWER
    for log in logs:
        events = []
        for row in log:
            tag, body = row.split("\t", 1)
            event = codec.from_json(tag, body)
            assert codec.to_json(event) == body, tag
            events.append(event)
        state = fold(J.evolve, J.Requester(), events)
        [number] = J.job_numbers(state)
        assert J.is_finished(state, number)
