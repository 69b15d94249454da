"""A job as its page shows it: each frame's state, and each eviction in words with the numbers behind it.

Pure reads of the requester's folded state through the job core's queries;
the node hands these to the dashboard as view data.
"""

from __future__ import annotations

from attrs import frozen

from frender.core import job as core

__all__ = ["FRAME_STATES", "EvictionStory", "eviction_story", "frame_states"]

# In the order a frame lives them; "recalled": a final frame withdrawn when a friend that rendered or vouched for it
# was caught forging (shown once the core reports it).
FRAME_STATES = ("waiting", "rendering", "delivered", "checked", "final", "recalled")


def frame_states(state: core.Requester, job: int) -> dict[int, str]:
    """Frame -> its state: waiting (queued), rendering (in a friend's live task), delivered (a copy is in),
    checked (a check over it agreed, others may be pending), final, recalled (final once, withdrawn by unravelling and
    not final again yet). Frames in frame order."""
    out: dict[int, str] = {}
    for frame in core.queued(state, job):
        out[frame] = "waiting"
    for frame in core.holders(state, job):
        out[frame] = "rendering"
    delivered = set(core.candidates(state, job))
    agreed = {
        frame
        for c in core.checks(state, job)
        if c.state == core.CheckState.RESOLVED and c.outcome == core.Outcome.AGREED
        for frame in c.covers
    }
    for frame in delivered:
        out[frame] = "checked" if frame in agreed else "delivered"
    summary = core.summary(state, job)
    for frame in summary.final:
        out[frame] = "final"
    for frame in summary.recalled:  # withdrawn and not final again: whatever it waits for now, the artist must know
        out[frame] = "recalled"
    return dict(sorted(out.items()))


@frozen(kw_only=True)
class EvictionStory:
    """One eviction for people: what was compared, by whom, and the verdict; the numbers apart."""

    words: str
    numbers: tuple[str, ...]


def _figures(f: core.Figures) -> str:
    return f"{f.verdict}: {f.fraction_off * 100:.1f}% of pixels off by more than 4/255, largest difference {f.max_diff}/255, PSNR {f.psnr:.1f} dB"


def eviction_story(friend: str, e: core.Evidence) -> EvictionStory:
    """Why ``friend`` was evicted, from its Evidence, as a sentence and the hashes and figures behind it."""
    checker = e.verifier or "the requester itself"
    if friend == e.subject:
        compared = f"its copy of frame {e.frame} was checked by {checker}"
    else:
        compared = f"it checked {e.subject}'s copy of frame {e.frame}"
    if e.arbitration_sha256:
        judged = "the two copies disagreed, so the requester rendered the frame itself as the referee"
        if friend == e.subject:
            verdict = "and its copy did not match the requester's render" + (f", {checker}'s did" if e.verifier else "")
        else:
            verdict = f"and its check did not match the requester's render, {e.subject}'s copy did"
        text = f"{compared}; {judged}, {verdict}: evicted, unpaid, its frames rendered again by others."
    else:
        text = f"{compared}, and it did not match: evicted, unpaid, its frames rendered again by others."
    numbers = [f"check {e.check}, frame {e.frame}", f"{e.subject}'s copy: sha256 {e.subject_sha256}"]
    if e.verifier_sha256:
        numbers.append(f"{checker}'s copy: sha256 {e.verifier_sha256}")
    if e.pair is not None:
        numbers.append(f"the two copies: {_figures(e.pair)}")
    if e.arbitration_sha256:
        numbers.append(f"the requester's render: sha256 {e.arbitration_sha256}")
    if e.vs_subject is not None:
        numbers.append(f"the requester's render vs {e.subject}'s copy: {_figures(e.vs_subject)}")
    if e.vs_verifier is not None:
        numbers.append(f"the requester's render vs {checker}'s copy: {_figures(e.vs_verifier)}")
    return EvictionStory(words=text, numbers=tuple(numbers))
