"""The keys the operating commands read on GSI1 (KEYS_ONLY), so that `stuck`, `stats` and `diff` read bounded Query
pages of the index by workflow, never a Scan and never one Query per contact.

- The run index: every ENROLL#<workflow> item carries gsi1pk RUN#<workflow>#<shard> and a gsi1sk that says where the run
  is now. The step runner rewrites it in the transaction of every step it commits (`progress_write`), so the key
  is the contact's current step:
      <status>#<state>#<step>#<at>#<until>#<version>#<contact id>
  state: entered (no step yet), waiting, held (a send held to `until`), ended, passed (an action, a decision, a
  goal, a timed-out or resumed wait: the run has moved on from it). An entry written before the step was on the
  key (and a stopped run's) is <status>#<entered_at>#<contact id>; `parse_run_sk` reads both.
- The funnel index: gsi1pk FUNNEL#<workflow>#<shard>, gsi1sk beginning with the record's ISO time, so `stats --since` is
  one key range: every history record of a run (`funnel_keys`), one marker per entry (ENTERED# items, written with
  the confirmed enrolment) and the message events of the workflow's messages (ACT# items of email/sms.sent,
  delivered, opened, clicked), each naming the run that sent the message, so they are counted per entry too.
- Shards: <shard> is `shard_of(contact id)`, a stable hash of the contact id modulo `SHARDS`, so one workflow's
  index writes spread over SHARDS partition keys (each takes about 1,000 writes/s) instead of one. A reader
  Queries every key `index_pks` lists (the SHARDS shards, then the unsharded key items written before sharding
  still carry) and merges them in sort-key order: SHARDS + 1 Query pages at least, never one per contact."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from shared import constants as C

RUN_INDEX_PREFIX = "RUN#"
FUNNEL_PREFIX = "FUNNEL#"
ENTERED_PREFIX = "ENTERED#"  # sort-key prefix of an entry's marker in the contact's partition
PROGRESS = "progress"  # the ENROLL# attribute holding the current step (a map)
NONE = "-"

# The message events the funnel counts (ACT# items naming a workflow's message), by what they count as.
MESSAGE_EVENTS = {
    "email.sent": "sent",
    "sms.sent": "sent",
    "email.delivered": "delivered",
    "sms.delivered": "delivered",
    "email.opened": "opened",
    "email.clicked": "clicked",
}


# Index partition keys per workflow and family (docs/decision_log.md, "Sharded run and funnel index keys"): 16 x
# about 1,000 writes/s a key. Changing it moves where new items go; readers then still need the old shards.
SHARDS = 16


def shard_of(contact_id: str) -> int:
    """The index shard of a contact: the same in every process and release (CRC-32, not Python's salted hash),
    so all of a contact's index keys of a workflow are on one shard."""
    return zlib.crc32(contact_id.encode()) % SHARDS


def index_pks(prefix: str, workflow: str) -> list[str]:
    """The partition keys a reader Queries for a workflow (prefix RUN_INDEX_PREFIX or FUNNEL_PREFIX): every
    shard, then the unsharded key of the items written before sharding."""
    return [f"{prefix}{workflow}#{shard}" for shard in range(SHARDS)] + [f"{prefix}{workflow}"]


def run_index_pk(workflow: str, contact_id: str) -> str:
    return f"{RUN_INDEX_PREFIX}{workflow}#{shard_of(contact_id)}"


def funnel_pk(workflow: str, contact_id: str) -> str:
    return f"{FUNNEL_PREFIX}{workflow}#{shard_of(contact_id)}"


def run_index_sk(status: str, entered_at: str, contact_id: str) -> str:
    """The entry of a run with no step on its key (a stopped run, a cancelling deactivation)."""
    return f"{status}#{entered_at}#{contact_id}"


def progress_state(history: dict[str, Any]) -> str:
    """What a history record says of the run at its step: waiting, held, ended or passed."""
    outcome = str(history.get("outcome", ""))
    sk = str(history.get(C.SK, ""))
    if outcome == "waiting" and not sk.endswith("#resumed"):
        return "waiting"
    if outcome == "held":
        return "held"
    if outcome == "ended" or history.get("kind") == "end":
        return "ended"
    return "passed"


def progress_sk(status: str, progress: dict[str, Any], contact_id: str) -> str:
    parts = [progress.get(k) or NONE for k in ("state", "step", "at", "until", "version")]
    return "#".join([status, *(str(p) for p in parts), contact_id])


def order_key(history: dict[str, Any]) -> str:
    """Orders a run's records as the readers always have: time, then entry stamp, then sequence."""
    return f"{history.get('at', '')}|{history.get('entered', '')}|{int(history.get('seq', 0)):06d}"


@dataclass(frozen=True)
class IndexedRun:
    """One enrolment as the run index holds it (keys only: no read of the item itself)."""

    contact_id: str
    status: str
    entered_at: str = ""  # on the entries without a step only
    state: str = ""  # entered, waiting, held, ended, passed; "" when the entry has no step
    step: str = ""
    at: str = ""  # when the run reached `step`
    until: str = ""  # a held send's time to go
    version: str = ""  # the definition's version (the Task payloads' `version`)


def parse_run_sk(sk: str) -> IndexedRun:
    parts = sk.split("#")
    if len(parts) == 7:
        status, state, step, at, until, version, contact = (_value(p) for p in parts)
        return IndexedRun(contact, status, "", state, step, at, until, version)
    status, rest = sk.split("#", 1)
    entered_at, contact_id = rest.rsplit("#", 1)
    return IndexedRun(contact_id, status, entered_at)


def _value(part: str) -> str:
    return "" if part == NONE else part


@dataclass(frozen=True)
class FunnelEntry:
    """One key of the funnel index: an entry, a step's record, or a message event."""

    at: str
    mark: str  # entered, continued, step, goal, unmet, held, split, msg
    name: str  # the step (step, goal, split), the count a message event is (sent, delivered, ...), "" for an entry
    branch: str  # the branch a decision took ("" otherwise)
    run: str  # the execution name (entries, records); message events: <execution>/<message id> (`message_run`)


def funnel_sk(at: str, mark: str, name: str, branch: str, run: str) -> str:
    return "#".join([at, mark, name or NONE, branch or NONE, run])


def parse_funnel_sk(sk: str) -> FunnelEntry:
    at, mark, name, branch, run = sk.split("#", 4)
    return FunnelEntry(at, mark, _value(name), _value(branch), run)


def funnel_keys(history: dict[str, Any], contact_id: str) -> dict[str, str]:
    """The funnel index keys of a history record of `contact_id` (none for a resumed wait's second record, which
    the readers never counted). A held send's record is marked "held": the contact has not reached the step until
    the send goes (its "sent" record), as StepCompleted / MessageSent (the dashboard) count it; keys written before
    this say "step" and still count as reaching it."""
    sk = str(history.get(C.SK, ""))
    workflow, step, execution = history.get("workflow"), history.get("step"), history.get("execution")
    if not workflow or not step or not execution or sk.endswith("#resumed"):
        return {}
    kind, outcome = history.get("kind"), str(history.get("outcome", ""))
    # A goal passed without being met is "unmet": it is not reaching the goal, as the GoalReached metric (the
    # dashboard's goal line) counts it; keys written before this say "step" and still count as reaching it.
    mark = ("goal" if outcome == "reached" else "unmet") if kind == "goal" else "split" if kind == "split" else "step"
    if outcome == "held":
        mark = "held"
    branch = str(history.get("branch") or "")
    run = str(execution).rsplit(":", 1)[-1]
    keys = funnel_sk(str(history["at"]), mark, str(step), branch, run)
    return {C.GSI1_PK: funnel_pk(str(workflow), contact_id), C.GSI1_SK: keys}


def message_event_keys(
    etype: str, data: dict[str, Any], at: str, execution: str = "", *, contact_id: str
) -> dict[str, str]:
    """The funnel index keys of a message event (an ACT# item of `contact_id`) that names its workflow and
    message. `execution`:
    the name of the run that sent the message (its MSG# item says it), so `stats` counts the event for that run's
    entry like the run's records; the key's run is then `<execution>/<message id>` (`message_run`)."""
    what = MESSAGE_EVENTS.get(etype)
    workflow, message_id = data.get("workflow"), data.get("message_id")
    if what is None or not workflow or not message_id:
        return {}
    run = f"{execution}/{message_id}" if execution else str(message_id)
    return {C.GSI1_PK: funnel_pk(str(workflow), contact_id), C.GSI1_SK: funnel_sk(at, "msg", what, "", run)}


def message_run(run: str) -> tuple[str, str]:
    """(execution name, message id) of a message event's key; the execution is "" on a key written before the
    events named their run."""
    execution, _, message_id = run.rpartition("/")
    return execution, message_id
