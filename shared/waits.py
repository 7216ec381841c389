"""Completing a wait-until step: the task token is sent once, with the wait record deleted in one transaction."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from shared import constants as C
from shared.store.contacts import ContactStore, epoch


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
        C.TTL_ATTRIBUTE: epoch(now + timedelta(days=int(wait.get("history_days", 30)))),
    }
    if not store.commit_step(contact_id, hist, [store.delete(wait[C.PK], wait[C.SK])]):
        return False
    next_loops = loops + 1 if wait.get("goto") else loops
    sfn.send_task_success(taskToken=wait["token"], output=json.dumps({"loops": next_loops, "branch": "resumed"}))
    return True
