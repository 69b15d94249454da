"""The requester's decider: scheduling, the verification circle, finality and the job report.

Theory of operation
-------------------
One aggregate, ``Requester``, holds a ``Job`` per job number. A job keeps its
settings, its phase and its roster of friends, and four sub-machines, each with
its own record and module:

- tasks  (``_tasks``):  the queue, who renders what, deadlines, retries, backups (Rules 3, 8, 9);
- checks (``_checks``, draws in ``_draws``): test frames and crop windows, who renders them, judging, eviction (Rules 4-6, 10);
- frames (``_frames``): delivered copies, batches and finality (Rules 1-2);
- escrow (``_escrow``): the check budget and the report (Rule 7).

Unravelling (``_unravel``, Rule 15) is a policy over checks and frames: it undoes what a caught
friend's word made final.

``decide`` validates a command, plays it on a *draft* (``Job.clone``: a few
container copies) through the same evolvers as ``evolve``, and runs the job's
policies on the draft until nothing more follows (batches close, orphaned checks
go to the requester, frames become final, more friends are wanted, the job
finishes). It returns every event it played; the real state is untouched until
the shell evolves them. Every state change goes through one transition table
(``_states``: the job's phase, a friend's status, a check's state); a step the
table does not allow raises ``Rejected`` naming the job, the state and the step,
and changes nothing.

Rule 1: a frame has at most one final copy at a time, and a final frame is
        withdrawn only by unravelling (Rule 15); the client is served final
        frames only, and told of recalled ones (``queries.recalled``).
Rule 2: a frame becomes final once its batch's checks are drawn and every
        check covering it is resolved in its author's favour.
Rule 3: a task that misses its deadline, is handed back, or whose friend is
        gone goes back to the queue; a frame is not retried on a friend that
        lost it while another live friend has not. A task's deadline counts
        the frames its friend has still to deliver before it (tasks it holds
        ahead of it or is still sending), as well as its own.
Rule 4: test frames are drawn (from the command's entropy) only after the
        subject delivered them, and a check task looks to the verifier like
        any render task: the friend sees task number, frames and deadline only.
Rule 5: a friend is checked by the nearest eligible friend to its left in the
        ring (frender.core._circle): never itself, its owner, or a friend it
        was found mis-calibrated against; with none, the requester renders.
Rule 6: a disagreement is arbitrated by the requester's own render; a party
        is evicted only when its image is far from the arbitration's (beyond
        the calibration tier). Evicted friends get nothing; their non-final
        frames are discarded and re-queued, their checks re-assigned.
Rule 7: check renders (test frames, losing backup copies) are drawn only
        within the escrowed budget ``checks_escrowed x friends granted``, so
        the report never pays beyond the escrow: one point per final frame,
        one per check render not found wrong. Arbitration is unpaid. The room
        left in the budget is computed in one place (``_escrow.room``).
Rule 8: faults (undecodable, wrong size, lost) are retried, never punished.
Rule 9: a friend may ask ahead, while it still renders the last frame of a
        task it keeps (``AskForTask.keeping``), so its next task is waiting
        when that frame is done. Asking ahead gets at most one more task;
        near the end of the queue (no more frames than active friends) it
        gets only checks, and never a backup: the last frames and backups go
        to friends that are really idle. A task whose frames are all rendered
        and only being sent (``AskForTask.sending``) is kept but does not
        count toward the one ahead (up to ``_tasks.SENDING_FREE`` of them), so
        a friend's Blender goes on to its next check or frame while the last
        one's file is still on its way.
Rule 10: with ``crop_checks`` (the default) every delivered frame is checked:
        a secret window of 1/16 of the frame placed at random (``CropWindow``,
        grid units; the shell pads and aligns it) rendered, as a task of that
        one frame, by an eligible friend (Rule 5's eligibility) drawn at
        random, among trusted ones (``GrantedFriend.reputation >=
        trusted_from``) while any is eligible; with none, by the requester.
        With ``even_checkers`` (new jobs) the draw only breaks ties: the
        check goes to the friend of that pool owing the fewest checks in the
        job (``_draws.even_draws``). A crop check covers its own frame only. ``crop_checks=False`` keeps
        the full-frame test frames drawn per batch (Rules 4-5).
Rule 11: the requester's own spot checks (crop checks): ``spots_per_batch``
        test frames of every friend's first batch in the job, of every
        probationary friend's batch, and of a trusted friend's with
        probability ``_draws.spot_chance`` (every batch until its reputation
        reaches ``spot_trust_scale``, then falling to ``spot_floor``), are
        rendered by the requester: alone, in the friend's stead
        (``spot_alone``, the default: one window's work, where a peer's
        window judged again was two), or, with ``spot_alone`` off, on top
        of the peer's window, judging both parties (a checker that vouched
        for a forgery is wrong too: both are evicted). A spot check covers its whole batch,
        so none of its frames is final before it. The requester's own load is
        at most spots_per_batch x M / batch_size windows plus Rules 14-15, and
        reported (``JobSummary.own_renders``, ``JobReport.spot_checks``).
Rule 12: renders are handed out as runs from a random place in the queue,
        so a task says nothing about which frames are re-renders or checks.
Rule 13: a friend holds at most ``unverified_batches`` batches of frames no
        check has passed yet (``unverified_batches_trusted`` once trusted):
        the undelivered frames of its live renders and backups and its
        candidate copies. Beyond that it gets checks only, so a forger that
        delivers at once cannot take the queue before its first batch is
        judged: its harm is bounded by those batches.
Rule 14: peer agreement alone is never the last word (``anchored_finality``,
        with crop checks): a frame whose checks agreed is final only once the
        requester's own render has found its author and every peer that
        vouched for it right in this job; an agreed check with a party not
        yet so found (nor being judged) is arbitrated like a spot check, and a
        frame still waiting on one gets one of its checks judged again.
Rule 15: unravelling: when a friend is caught, every frame that was final on
        its word is recalled (``FramesRecalled``): its own copies go back to
        the queue, others' copies it vouched for are held until the
        requester's render of the same window judges them again
        (``ChecksReopened``); every agreed peer check over its copies is
        judged again too, so a peer that vouched for one of its forgeries is
        caught and unravelled in turn. A job finishes only when every frame,
        recalled ones included, is final.
Rule 16: the requester's own renders over untrusted friends' frames are
        bounded per account (owner) and per job (``own_untrusted_bounds``,
        which grow with ``spots_per_batch`` beyond 2);
        past a bound, an untrusted friend the requester has not found right
        in this job gets no more frames, and a job no friend can go on with
        asks the master for others (``MoreFriendsWanted``) and says why
        (``queries.starved``).
Rule 17: a render error handed back with a task (``_failures``) is the file's,
        never the friend's: nobody is evicted, fined or judged for it. The
        same error from friends of two owners, or of every owner the job has,
        fails the job with it (``JobFailed``): over like a cancel, final frames
        kept and paid, the rest of the escrow refunded.
Rule 18: a starved job never waits forever: once it has asked the master for
        friends (``MoreFriendsWanted``) and no friend took frames from it nor
        did a frame become final for ``starved_after`` seconds (a ``Tick``
        decides it), it fails (``JobFailed`` with cause "starved" and the
        reason ``queries.starved`` gives), over like a render failure.
Rule 19: a window never evicts alone. When a crop check's window finds its
        subject wrong, the requester renders the whole frame and compares it
        with the subject's (``Purpose.FRAME``, ``Against.FRAME``): only a
        subject far from that is evicted. A subject whose frame agrees rendered
        it right; the window's difference is the engine's (how it crops a
        render border: EEVEE's screen-space effects, a compositor's glow), so
        ``CropsUnequal`` is logged, nobody is evicted for it, and the job
        checks whole frames from then on (its pending windows become whole
        test frames; a disagreeing window still in flight goes straight to the
        requester's whole frame).
Rule 20: a still in tiles (``JobSettings.tiles``, ``_tiles``): the job's "frames" are work
        units ``frame * count + tile`` and every rule above applies to a unit as to a
        frame (tasks, deadlines, retries, crop and spot checks inside the tile,
        finality, recalls). A task is one tile (one window); a friend is given the
        queued tile of the frame its owner has the fewest tiles of, so a frame's
        tiles go to friends of different owners where the job allows. An
        animation (``whole_frames_first``) is given whole frames, every tile of
        one frame a task, while the friend's units in hand and the frame stay
        within half a fair share of the queue (guided self-scheduling), and
        single tiles after: its tail is shared out in tiles. A final tile
        earns its share of the frame's ``count`` points by area, rounded by largest
        remainder, so the shares add up to one point per unit, as escrowed. A
        frame is whole once all its tiles are final; the shell stitches it.
        With ``windows_ahead`` (new tiled jobs) the window of a check the
        requester renders alone is drawn from the job's secret seed
        (``JobStarted.seed``) and its tile, so the shell renders it while the
        friend renders the tile (``queries.windows_ahead``); a window a friend
        renders is drawn with its check, after the tile arrived.
Rule 21: admission. A friend that asks with ``admit`` False (the shell's
        own checks are behind: ``RequesterSettings.own_backlog``) gets checks
        only, as under Rule 13: the requester takes no more frames than it
        can make final, so a frame accepted becomes final within the backlog's
        time, whatever the number of friends. Only friends whose every batch
        the requester checks itself are held back (``spotted_always``): fresh
        accounts flooding its renders never hold back a trusted friend.

How a shell drives this
-----------------------
One task owns ``state = Requester()`` (or ``fold(evolve, Requester(), log)``
at start-up). For every input it builds a command, then commits before it
evolves::

    events = decide(state, command)          # or Rejected: answer the peer
    log.append([e for e in events if is_durable(e)])
    for e in events: evolve(state, e)
    for e in events: react(e)

Commands (all carry ``job`` and ``now``; those that may draw carry
``entropy = secrets.token_hex(16)``):

- ``StartJob(frames, settings, checks_escrowed)`` once the master opened the
  job (pass ``settings.checks_to_escrow(M, N)`` as the master's
  ``checks_per_friend``), then ``AddFriends`` with each ``FriendsAssigned``.
- ``AskForTask(friend, keeping, sending)`` when a friend pulls work; ``keeping``
  names the live tasks it is still rendering (Rule 9), ``sending`` those it has
  rendered and is still sending; every other live task of its is given up. React to ``TaskAssigned`` for that friend by sending it
  ``task, frames, deadline`` only (never ``kind``, ``checks`` or
  ``backup_of``). No event for it: ask ``outlook(state, job, friend)``.
- ``DeliverFrame(friend, task, frame, sha256, ok, reason)`` after the file is
  stored and its container and size checked (``ok=False`` is a fault).
- ``ComparisonRequested`` -> run the comparator on the two named copies,
  send ``RecordComparison(check, against, a_sha256, b_sha256, verdict,
  fraction_off, max_diff, psnr)`` (the shas echo the request; stale answers are refused).
- ``OwnRenderRequested`` -> render the frame with the requester's own Blender
  (a crop check's window, or with ``purpose="frame"`` the whole frame),
  send ``RecordOwnRender(check, sha256)``.
- ``Tick`` every second or so; ``DropFriend`` when a connection drops or a
  friend stops polling (``silent_candidates`` names those that hold nothing);
  ``ReturnTask`` on a give-back.
- ``MoreFriendsWanted`` -> ``RequestFriends(job=J, want=count, exclude=...)``.
- ``FramesFinal`` -> serve those frames to the client.
- ``FramesRecalled`` -> those frames are no longer final: tell the client to
  drop them (``recalled`` maps each to its new final copy once there is one).
- ``JobFinished`` -> report ``event.report`` to the master.
- ``ReturnTask(error=...)`` when a friend's Blender could not render the
  task (its one-line reason) -> ``RenderFailed``; once friends of two owners
  (or every owner of the job) report the same error, ``JobFailed``: report it
  to the master as for ``JobCancelled``, show the error to the artist.
- ``CancelJob`` when the submitter stops the job -> ``JobCancelled``: report
  ``event.report`` to the master as for ``JobFinished`` (the closing report
  releases the friends and refunds the unearned escrow); final frames stay
  final and served, friends asking for work hear the job is over.

The shell reads a job only through ``queries``: ``job_numbers``, ``running_jobs``,
``is_finished``, ``frame_count``, ``frame_numbers``, ``delivered_and_final``, ``candidates``, ``final_copy``,
``holder_of``, ``task_friend``, ``live_tasks``, ``silent_candidates``, ``friend_status``,
``outlook``, ``progress``, ``summary``, ``queued``, ``holders``, ``checks``,
``verifier_of``, ``report``, ``recalled``, ``starved``, ``tile_grid``,
``windows_ahead``, ``own_renders_ahead``, ``check_takers``, ``spotted_always``.
"""

from __future__ import annotations

from frender.core.job._checks import Check
from frender.core.job._job import Friend, Job, Requester
from frender.core.job._machine import decide, evolve
from frender.core.job._states import CheckState, FriendStatus, Phase
from frender.core.job._tasks import Task, chunk_size
from frender.core.job._tiles import LONG_FRAME_SECONDS, MAX_TILES, TAIL_FRAMES_PER_FRIEND, TileGrid, auto_grid
from frender.core.job.commands import (
    COMMANDS,
    AddFriends,
    AskForTask,
    CancelJob,
    DeliverFrame,
    DropFriend,
    RecordComparison,
    RecordOwnRender,
    ReturnTask,
    StartJob,
    Tick,
)
from frender.core.job.events import (
    EVENTS,
    VERDICTS,
    Against,
    CheaterEvicted,
    CheckKind,
    CheckResolved,
    ChecksDrawn,
    CheckTiming,
    ComparisonMade,
    ComparisonRequested,
    CopyFaulted,
    CopyReceived,
    CropWindow,
    DropReason,
    Evidence,
    Figures,
    FinalFrame,
    FramesFinal,
    FramesRecalled,
    ChecksReopened,
    CropsUnequal,
    FriendLeft,
    FriendReturned,
    FriendsJoined,
    GrantedFriend,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobReport,
    JobSettings,
    JobStarted,
    Judgement,
    MoreFriendsWanted,
    Failure,
    Outcome,
    OwnRenderReceived,
    OwnRenderRequested,
    Purpose,
    RenderFailed,
    Role,
    TaskAssigned,
    TaskDropped,
    TaskKind,
    Verdict,
)
from frender.core.job._owed import Owed, OwedComparison, OwedEvictions, OwedFriends, OwedRender, OwedReport, owed
from frender.core.job.queries import (
    FriendProgress,
    JobSummary,
    Outlook,
    candidates,
    check_of,
    checks,
    checks_in,
    delivered_and_final,
    evictions,
    final_copy,
    frame_count,
    frame_numbers,
    friend_status,
    holder_of,
    holders,
    is_finished,
    job_numbers,
    live_tasks,
    outlook,
    points,
    progress,
    queued,
    recalled,
    report,
    running_jobs,
    silent_candidates,
    starved,
    summary,
    tile_grid,
    own_renders_ahead,
    check_takers,
    spotted_always,
    task_friend,
    verifier_of,
    window_of,
    windows_ahead,
    is_check_task,
)

__all__ = [
    # words
    "Phase",
    "FriendStatus",
    "CheckState",
    "CheckTiming",
    "TaskKind",
    "CheckKind",
    "Role",
    "DropReason",
    "Verdict",
    "VERDICTS",
    "Against",
    "Purpose",
    "Outcome",
    "Failure",
    "Judgement",
    "Outlook",
    # settings, records and state
    "JobSettings",
    "GrantedFriend",
    "Figures",
    "Evidence",
    "CropWindow",
    "FinalFrame",
    "JobReport",
    "Friend",
    "FriendProgress",
    "JobSummary",
    "Task",
    "Check",
    "Job",
    "Requester",
    # commands
    "StartJob",
    "AddFriends",
    "AskForTask",
    "DeliverFrame",
    "RecordComparison",
    "RecordOwnRender",
    "Tick",
    "DropFriend",
    "ReturnTask",
    "CancelJob",
    "COMMANDS",
    # events
    "JobStarted",
    "FriendsJoined",
    "FriendLeft",
    "FriendReturned",
    "MoreFriendsWanted",
    "TaskAssigned",
    "TaskDropped",
    "CopyReceived",
    "CopyFaulted",
    "ChecksDrawn",
    "ComparisonRequested",
    "ComparisonMade",
    "OwnRenderRequested",
    "OwnRenderReceived",
    "CheckResolved",
    "CheaterEvicted",
    "FramesFinal",
    "JobFinished",
    "JobCancelled",
    "RenderFailed",
    "JobFailed",
    "FramesRecalled",
    "ChecksReopened",
    "CropsUnequal",
    "EVENTS",
    # the decider and its queries
    "decide",
    "evolve",
    "chunk_size",
    "job_numbers",
    "running_jobs",
    "is_finished",
    "frame_count",
    "frame_numbers",
    "delivered_and_final",
    "candidates",
    "final_copy",
    "holder_of",
    "live_tasks",
    "task_friend",
    "silent_candidates",
    "friend_status",
    "outlook",
    "progress",
    "summary",
    "queued",
    "holders",
    "checks",
    "checks_in",
    "verifier_of",
    "window_of",
    "is_check_task",
    "check_of",
    "report",
    "evictions",
    "points",
    "recalled",
    "starved",
    "tile_grid",
    "own_renders_ahead",
    "check_takers",
    "spotted_always",
    "windows_ahead",
    "TileGrid",
    "LONG_FRAME_SECONDS",
    "MAX_TILES",
    "TAIL_FRAMES_PER_FRIEND",
    "auto_grid",
    "owed", "Owed", "OwedComparison", "OwedRender", "OwedFriends", "OwedReport", "OwedEvictions",  # what the shell's reactions are
]
