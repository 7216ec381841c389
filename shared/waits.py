"""Completing a wait-until step: the task token first, then the `resumed` record and the wait's deletion in one
transaction, so a record never says resumed for a run that was not (and a throttled send is retried)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import constants as C
from shared.history import Run, cut_at_bound, passive_end, passive_metric, passive_records
from shared.store.contacts import ContactStore, epoch

# What SendTaskSuccess answers for a token nothing waits on any more: the run was stopped (a goal, an
# unsubscribe), the wait timed out, or an earlier send completed it. (moto says InvalidToken.)
STALE_TOKEN_ERRORS = ("TaskDoesNotExist", "TaskTimedOut", "InvalidToken")
# Answers that say "not now": raised, so the caller's batch is retried and the event resumes the wait then.
RETRYABLE_ERRORS = ("ThrottlingException", "ServiceUnavailable", "InternalServerError", "RequestLimitExceeded")


class ResumeDeferred(Exception):
    """SendTaskSuccess was throttled or unavailable: nothing was recorded, the wait is intact; retry the event."""


def resume_wait(
    store: ContactStore,
    sfn: Any,
    wait: dict[str, Any],
    why: str,
    now: datetime,
    metrics: Callable[[str, str, str, dict[str, str]], None] | None = None,
) -> bool:
    """Complete a waiting step's task token, then record it: the `resumed` history record and the wait item's
    deletion in one transaction. True when this call resumed the run.

    The send comes first, so a crash or a throttled call never leaves a record of a resume that did not happen
    (the run would wait on to its timeout): a throttled send raises ResumeDeferred with nothing written, and the
    retried event finds the wait and sends again. A token already completed (by a racing event, or by a first
    try that died before recording) answers TaskDoesNotExist / InvalidToken: the wait is over, its item is
    deleted, and only the call that completed it writes the record."""
    contact_id = wait[C.PK].removeprefix("CONTACT#")
    loops = int(wait.get("loops", 0))
    execution_name = wait["execution"].rsplit(":", 1)[-1]
    # What the contact meets once resumed, up to the next step-runner call (the wait Task's `ahead`): recorded
    # below, and the go-tos among it counted where met; a jump over the bound makes the next Task end the run.
    ahead = wait.get("ahead")
    if isinstance(ahead, list):
        max_loops = int(wait.get("max_loops", 100))  # the settings default
        reached, next_loops, over = cut_at_bound(ahead, loops, max_loops, bool(wait.get("goto")))
    else:  # a wait item written before `ahead` was kept on it
        reached, over, max_loops = [], False, 0
        next_loops = loops + 1 if wait.get("goto") else loops
    # Stamped before the send: the resumed run's next records are made after it and must sort after this one.
    entered = f"{now.isoformat()}|{time.time_ns():020d}"
    try:
        sfn.send_task_success(taskToken=wait["token"], output=json.dumps({"loops": next_loops, "branch": "resumed"}))
    except ClientError as err:
        code = err.response["Error"]["Code"]
        if code in RETRYABLE_ERRORS:
            raise ResumeDeferred(f"wait {wait['step']}: SendTaskSuccess answered {code}; retry the event") from err
        if code not in STALE_TOKEN_ERRORS:
            raise
        # Nothing waits on this token any more: the wait item is stale.
        store.delete_item(wait[C.PK], wait[C.SK])
        return False
    hist = {
        C.SK: f"HIST#{execution_name}#{loops:04d}#{wait['step']}#resumed",
        "contact_id": contact_id,
        "workflow": wait["workflow"],
        "execution": wait["execution"],
        "step": wait["step"],
        "kind": "wait_until",
        "outcome": "resumed",
        "why": why,
        "at": now.isoformat(),
        "seq": 0,
        # Orders it after the "waiting" record of the same instant (a condition that already held), as the step
        # runner's records are ordered: virtual entry time, then wall-clock write order.
        "entered": entered,
        C.TTL_ATTRIBUTE: epoch(now + timedelta(days=int(wait.get("history_days", 30)))),
    }
    store.commit_step(contact_id, hist, [store.delete(wait[C.PK], wait[C.SK])])
    if reached or over:
        run = Run(
            contact_id=contact_id,
            workflow=wait["workflow"],
            version=str(wait.get("version", "")),
            execution=wait["execution"],
            history_days=int(wait.get("history_days", 30)),
            entered=now.isoformat(),
        )
        for rec in passive_records(run, loops, reached, now):
            if store.commit_step(contact_id, rec, []) and metrics is not None:
                name, dims = passive_metric(rec)
                metrics(name, wait["workflow"], rec["step"], dims)
        if over:
            why = f"go-to jumped {max_loops} times (settings.max_loops)"
            at = passive_end(reached, now)
            # Keyed as the step runner keys it (its `_loop_limit_record`): whichever writes it, written once.
            store.commit_step(
                contact_id, run.record(max_loops, "loop-limit", "end", "ended", why, at, len(reached) + 1), []
            )
    return True
