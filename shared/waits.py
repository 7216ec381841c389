"""Completing a wait-until step: the task token is sent once, with the wait record deleted in one transaction."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import constants as C
from shared.store.contacts import ContactStore, epoch

# What SendTaskSuccess answers for a token nothing waits on any more: the run was stopped (a goal, an
# unsubscribe) or the wait timed out. (moto says InvalidToken.)
STALE_TOKEN_ERRORS = ("TaskDoesNotExist", "TaskTimedOut", "InvalidToken")


def resume_wait(store: ContactStore, sfn: Any, wait: dict[str, Any], why: str, now: datetime) -> bool:
    """Complete a waiting step's task token, once: the wait record is deleted in the same transaction."""
    contact_id = wait[C.PK].removeprefix("CONTACT#")
    loops = int(wait.get("loops", 0))
    execution_name = wait["execution"].rsplit(":", 1)[-1]
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
        "entered": f"{now.isoformat()}|{time.time_ns():020d}",
        C.TTL_ATTRIBUTE: epoch(now + timedelta(days=int(wait.get("history_days", 30)))),
    }
    if not store.commit_step(contact_id, hist, [store.delete(wait[C.PK], wait[C.SK])]):
        return False
    next_loops = loops + 1 if wait.get("goto") else loops
    try:
        sfn.send_task_success(taskToken=wait["token"], output=json.dumps({"loops": next_loops, "branch": "resumed"}))
    except ClientError as err:
        if err.response["Error"]["Code"] not in STALE_TOKEN_ERRORS:
            raise
        # Nothing was resumed: take back the record that says so (the wait record was stale, and is gone).
        store.delete_item(wait[C.PK], hist[C.SK])
        return False
    return True
