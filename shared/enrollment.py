"""Starting and stopping a contact's run of a workflow: re-entry policy, deterministic execution names, and the
claim that makes an enrolment race-free (a conditional write on the ENROLL# item before StartExecution)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import budgets, clock
from shared import constants as C
from shared.events import stable_hash
from shared.history import Run, drop_unreached, passive_metric, passive_records, stage_entered, visit_key
from shared.lifecycle import STATUS_SK, ensure_activated, entry_check, read_status, status_pk, write_status
from shared.store.contacts import ContactStore, contact_pk, epoch, serialise
from shared.store.run_index import (
    ENTERED_PREFIX,
    PROGRESS,
    funnel_pk,
    funnel_sk,
    progress_sk,
    run_index_pk,
    run_index_sk,
)
from shared.workflow.runtime import AnyEntryPlan as EntryPlan
from shared.workflow.runtime import Reentry


def execution_arn(machine_arn: str, name: str) -> str:
    """The ARN of execution `name` of a machine, given the machine's ARN or that of its alias or version:
    arn:partition:states:region:account:stateMachine:NAME[:qualifier] -> ...:execution:NAME:name."""
    parts = machine_arn.split(":")
    return ":".join([*parts[:5], "execution", parts[6], name])


# The event a run was started with is kept in the contact's partition, not in the execution's input: Step Functions
# histories cannot be deleted (erasure cannot reach them), so they carry ids only. The input's `event` is a
# reference (its type and the item's sort key); the step runner reads the event back (`stored_trigger`). Kept for
# the run's life: a Standard execution lasts at most a year, a restart (a goal's jump, a resume) reuses it. The
# router deletes it when the run succeeds (`Router.execution_ended`); a failed, timed-out or stopped run keeps it
# (resume redrives or restarts it) until its TTL.
# "~" sorts after every kind the router's partition Query reads (ACT# to WAIT$): routing never reads these items.
TRIGGER_PREFIX = "~TRIGGER#"
TRIGGER_DAYS = 400
STORED = "stored"


def trigger_reference(
    contact_id: str, workflow: str, key: str, event: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(what the execution input carries as its event, the item keeping the event or None): an event that is
    already a reference (a restart passes its run's on) is kept as it is."""
    if STORED in event and "contact" not in event:
        return event, None
    sk = f"{TRIGGER_PREFIX}{stable_hash(workflow, key)}"
    item = {
        C.PK: contact_pk(contact_id),
        C.SK: sk,
        "workflow": workflow,
        "event": event,
        C.TTL_ATTRIBUTE: int((now + timedelta(days=TRIGGER_DAYS)).timestamp()),
    }
    return {"type": str(event.get("type") or ""), STORED: sk}, item


def stored_trigger(store: ContactStore, contact_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The event an execution input's reference names, read back from the contact's partition ({} with its type
    when it is gone: erased, or a run older than TRIGGER_DAYS); an input carrying the event itself, as it is."""
    if STORED not in event or "contact" in event:
        return event
    item = store.get_item(contact_pk(contact_id), str(event[STORED]))
    found = (item or {}).get("event")
    return dict(found) if isinstance(found, dict) else {"type": event.get("type", ""), "data": {}}


def stored_key(event: Any) -> str | None:
    """The sort key of the ~TRIGGER# item an execution input's event references; None for an event carried whole
    (or none). A run that succeeded has its item deleted by the router (`Router.execution_ended`)."""
    if not isinstance(event, dict) or STORED not in event or "contact" in event:
        return None
    return str(event[STORED])


def execution_input(
    contact_id: str, workflow: str, event: dict[str, Any], *, resume_at: str = "", start_delay: int = 0
) -> dict[str, Any]:
    """The input every compiled machine expects (the Entry Choice reads run.resume_at and start_delay)."""
    return {
        "contact_id": contact_id,
        "workflow": workflow,
        "event": event,
        "start_delay": start_delay,
        "run": {"loops": 0, "branch": "", "resume_at": resume_at},
    }


DUPLICATE = "duplicate delivery: this execution already exists"


@dataclass(frozen=True)
class _Start:
    """One enrolment under way: who, where, and what the enrolment record said before it."""

    contact_id: str
    workflow: str
    record: dict[str, Any] | None
    resume_at: str
    start_delay: int
    restart: bool
    rev: int = 0  # the claim's revision of the ENROLL# item
    version_arn: str = ""  # the version the run is pinned to (a restart keeps the version it entered with)


@dataclass
class Enrolment:
    started: bool
    execution_arn: str | None
    reason: str


@dataclass
class Claim:
    """An enrolment decided and not yet made: its writes (the entry check and the claim on the ENROLL# item)
    go into one transaction, the caller's or the enroller's own; `launch` then starts the execution."""

    start: _Start
    name: str
    machine: str
    event: dict[str, Any]
    occurred_at: datetime | None
    writes: list[dict[str, Any]]
    checks_status: bool  # writes[0] is the workflow's entry check
    budget_at: int | None = None  # the position in `writes` of the entry budget's counter, when it has one
    keeps_event: bool = False  # `writes` put the ~TRIGGER# item `event` references (the last write)

    @property
    def execution_arn(self) -> str:
        return execution_arn(self.machine, self.name)


# A claim younger than this whose execution does not exist (yet) belongs to an enrolment under way: respected.
# Older, it is a claim whose writer died before StartExecution, and another event takes it over. Longer than a
# Lambda invocation can last (15 minutes).
CLAIM_GRACE = timedelta(minutes=15)
RACED = "another event entered the contact in this workflow at the same moment"
BEING_ENTERED = "already in this workflow (being entered by another event)"
_UNSET: Any = object()


def confirmed(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The enrolment record an ENROLL# item holds, without its claim bookkeeping (a pending claim, the revision
    claims count); None when no run was ever confirmed."""
    if raw is None or "execution_arn" not in raw:
        return None
    return {k: v for k, v in raw.items() if k not in ("claim", "rev")}


# metrics(name, workflow, step, extra_dimensions): the step runner's EMF emitter, or None.
MetricsSink = Callable[[str, str, str, dict[str, str]], None]


class Enroller:
    def __init__(
        self,
        store: ContactStore,
        sfn: Any,
        arn_template: str,
        metrics: MetricsSink | None = None,
        plans: Mapping[str, EntryPlan] | None = None,
        activated_at: datetime | None = None,
    ) -> None:
        self.store = store
        self.sfn = sfn
        self.arn_template = arn_template
        self.metrics = metrics
        # Each workflow's entry plan (compiler `entry_plan`): the waits or end a run starts at, which no Task
        # records. A workflow without one records nothing at enrolment.
        self.plans: Mapping[str, EntryPlan] = plans or {}
        # When this deployment's workflows became active (the build's deployed_at; locally the simulation's
        # start): recorded, once, for a workflow with no status yet. None: its state machine's creation (deployed_at).
        self.activated_at = activated_at

    def machine_arn(self, workflow: str) -> str:
        return self.arn_template.replace("{workflow}", workflow)

    def deployed_at(self, workflow: str) -> datetime:
        """When the workflow was first deployed: its state machine's creation (a redeploy publishes versions of
        the same machine, so the date stays). Recording the first entry's time instead would refuse that very
        entry, whose event happened a moment before it was delivered. A clock behind the machine's date (the local
        runtime's virtual clock) or a machine that cannot be described: now."""
        now = clock.now()
        parts = self.machine_arn(workflow).split(":")
        try:
            created: datetime = self.sfn.describe_state_machine(stateMachineArn=":".join(parts[:7]))["creationDate"]
        except ClientError:
            return now
        return created if created <= now else now

    def pinned_version(self, record: dict[str, Any] | None) -> str:
        """The version ARN the contact's run executes: the one its record noted at a restart, else what
        DescribeExecution says (stateMachineVersionArn: AWS gives it for a run started through an alias or a
        version). "" for a run started through the unqualified machine (then there is no version to keep)."""
        if not record:
            return ""
        if record.get("version_arn"):
            return str(record["version_arn"])
        try:
            desc = self.sfn.describe_execution(executionArn=record["execution_arn"])
        except ClientError:
            return ""
        return str(desc.get("stateMachineVersionArn") or "")

    def current(self, contact_id: str, workflow: str) -> dict[str, Any] | None:
        """The contact's latest confirmed run of the workflow (a claim not yet confirmed is not one)."""
        return confirmed(self.store.get_item(contact_pk(contact_id), f"ENROLL#{workflow}"))

    def is_running(self, record: dict[str, Any] | None) -> bool:
        if not record or record.get("status") != "running":
            return False
        try:
            status = self.sfn.describe_execution(executionArn=record["execution_arn"])["status"]
        except ClientError:
            return False
        return bool(status == "RUNNING")

    def _started_at(self, exec_arn: str) -> datetime | None:
        try:
            desc = self.sfn.describe_execution(executionArn=exec_arn)
        except ClientError as err:
            if err.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return None
            raise
        started: datetime = desc["startDate"]
        return started

    def enrol(
        self,
        contact_id: str,
        workflow: str,
        event: dict[str, Any],
        *,
        key: str,
        reentry: Reentry | None = None,
        resume_at: str = "",
        start_delay: int = 0,
        restart: bool = False,
        occurred_at: datetime | None = None,
        version_arn: str = "",
        item: dict[str, Any] | None = _UNSET,
    ) -> Enrolment:
        """Start `workflow` for the contact unless policy forbids it. `key` makes the execution name:
        the same key (a redelivered event, a retried step) can never start a second execution. Without a
        `reentry`, the workflow's own policy from its entry plan applies. A deactivated workflow takes nobody,
        and an event that happened (`occurred_at`) before the workflow was activated does not count. Two
        enrolments racing for one contact and workflow claim the ENROLL# item: one wins, the other re-reads.
        `item`: the ENROLL# item as the caller already read it (a broadcast batch reads its contacts' at once; None
        when there is none), used by the first try only."""
        for attempt in range(4):
            claim = self.prepare(
                contact_id,
                workflow,
                event,
                key=key,
                reentry=reentry,
                resume_at=resume_at,
                start_delay=start_delay,
                restart=restart,
                occurred_at=occurred_at,
                version_arn=version_arn,
                item=item if attempt == 0 else _UNSET,
            )
            if isinstance(claim, Enrolment):
                return claim
            failed = self.store.transact_failures(claim.writes)
            if failed is None:
                return self.launch(claim)
            refused = self.refused(claim, failed)
            if refused is not None:
                return refused
        return Enrolment(False, None, RACED)

    def prepare(
        self,
        contact_id: str,
        workflow: str,
        event: dict[str, Any],
        *,
        key: str,
        reentry: Reentry | None = None,
        resume_at: str = "",
        start_delay: int = 0,
        restart: bool = False,
        occurred_at: datetime | None = None,
        item: dict[str, Any] | None = _UNSET,
        version_arn: str = "",
    ) -> Claim | Enrolment:
        """Decide an enrolment from the ENROLL# item (`item` as the caller read it, else read here): an
        Enrolment when policy refuses it, else the Claim to write. A restart (a goal's jump, `stepwise resume`)
        starts the version the run entered with (`version_arn`, else the record's), never the alias's newest."""
        if reentry is None and workflow in self.plans:
            reentry = self.plans[workflow].reentry
        raw = self.store.get_item(contact_pk(contact_id), f"ENROLL#{workflow}") if item is _UNSET else item
        record = confirmed(raw)
        now = clock.now()
        name = f"{workflow[:40]}-{stable_hash(contact_id, workflow, key, resume_at, length=24)}"
        pinned = version_arn or (self.pinned_version(record) if restart else "")
        machine = pinned or self.machine_arn(workflow)
        mine = execution_arn(machine, name)  # the same ARN through any qualifier: names are per machine
        pending = (raw or {}).get("claim")
        if (
            pending
            and pending["execution_arn"] != mine
            and pending["execution_arn"] != (record or {}).get("execution_arn")
        ):
            # Another key's claim, never confirmed: its run started (its writer stopped before recording it: the
            # run is the contact's), is still being started, or its writer died before starting it (taken over).
            started_at = self._started_at(pending["execution_arn"])
            if started_at is not None:
                other = _Start(
                    contact_id,
                    workflow,
                    record,
                    pending.get("resume_at", ""),
                    0,
                    False,
                    int(raw.get("rev", 0)) if raw else 0,
                )
                self._record(other, pending["execution_arn"], started_at)
                # Read again whole: its revision is what this claim must name (the confirmed record has none).
                raw = self.store.get_item(contact_pk(contact_id), f"ENROLL#{workflow}")
                record = confirmed(raw)
            elif now - datetime.fromisoformat(pending["at"]) < CLAIM_GRACE:
                return Enrolment(False, None, BEING_ENTERED)
        if not restart:  # a goal's restart is the same entry: it goes on whatever the status
            if self.is_running(record):
                return Enrolment(False, record["execution_arn"] if record else None, "already in this workflow")
            if record and reentry is not None:
                if reentry.mode == "once":
                    return Enrolment(False, None, "entered before and re-entry is once")
                if reentry.mode == "once_per" and reentry.period is not None:
                    last = datetime.fromisoformat(record["entered_at"])
                    if now - last < timedelta(seconds=reentry.period):
                        return Enrolment(False, None, f"entered {record['entered_at']}, within once_per period")
        rev = int((raw or {}).get("rev", 0))
        start = _Start(contact_id, workflow, record, resume_at, start_delay, restart, rev + 1, pinned)
        writes = [] if restart else [entry_check(workflow, occurred_at)]
        writes.append(
            self.store.claim_write(
                contact_pk(contact_id),
                f"ENROLL#{workflow}",
                {"key": key, "execution_arn": mine, "resume_at": resume_at, "at": now.isoformat()},
                workflow=workflow,
                rev=rev + 1,
                expected=rev if raw is not None and "rev" in raw else None,
            )
        )
        budget_at = None
        limit = self._entry_budget(workflow)
        if limit is not None and not restart:  # a goal's restart or a resume is the same entry: not counted again
            budget_at = len(writes)
            writes.append(budgets.entry_counter(self.store, workflow, now, limit))
        reference, trigger = trigger_reference(contact_id, workflow, key, event, now)
        if trigger is not None:  # last: the positions refused() reads (entry check, budget) stay where they are
            writes.append(self.store.put(trigger))
        elif restart and stored_key(reference) is not None:
            # A restart goes on with the entry's event for up to another year: its item lives as long (a write in
            # the claim's transaction; never failing, so an item gone already comes back as a TTL with no event).
            ttl = int((now + timedelta(days=TRIGGER_DAYS)).timestamp())
            writes.append(
                self.store.update_if(
                    contact_pk(contact_id),
                    str(stored_key(reference)),
                    {C.TTL_ATTRIBUTE: ttl},
                    "attribute_exists(#pk) OR attribute_not_exists(#pk)",
                )
            )
        return Claim(start, name, machine, reference, occurred_at, writes, not restart, budget_at, trigger is not None)

    def _entry_budget(self, workflow: str) -> int | None:
        plan = self.plans.get(workflow)
        limit = plan.budgets.get("entries_per_hour") if plan else None
        return int(limit) if limit else None

    def refused(self, claim: Claim, failed: list[int]) -> Enrolment | None:
        """Why a claim's transaction failed, or None when it is worth trying again (a status recorded or brought
        up to date meanwhile, or a claim lost to an enrolment that re-reading will show)."""
        if claim.budget_at is not None and claim.budget_at in failed:
            workflow, now = claim.start.workflow, clock.now()
            limit = self._entry_budget(workflow)
            if limit is not None and budgets.entry_budget_reached(self.store, workflow, now, limit):
                reason = f"runaway budget: {limit} entries per hour reached ({now.strftime('%Y-%m-%dT%H')}:00Z)"
                plan = self.plans[workflow]
                alert = list(plan.budgets.get("alert") or [])
                budgets.trip(
                    self.store,
                    workflow,
                    reason,
                    now,
                    contact_id=claim.start.contact_id,
                    alert=alert,
                    history_days=plan.history_days,
                )
                return Enrolment(False, None, f"{reason}: workflow paused")
        if claim.checks_status and 0 in failed:
            workflow = claim.start.workflow
            item = self.store.get_item(*_status_key(workflow))
            if item is None:
                ensure_activated(self.store, workflow, self.activated_at or self.deployed_at(workflow))
                return None
            status = read_status(self.store, workflow)
            reason = status.refuses(claim.occurred_at)
            if reason:
                return Enrolment(False, None, reason)
            if "since_ms" not in item and status.since is not None:  # written before the claim compared it
                write_status(self.store, workflow, active=status.active, since=status.since, cancelled=status.cancelled)
            return None
        return None

    def launch(self, claim: Claim) -> Enrolment:
        """Start the claimed execution and confirm the enrolment record. A retry of the same key after a crash
        at any point finds the claim (or the run) and completes it."""
        start, name, arn = claim.start, claim.name, claim.machine
        now = clock.now()
        try:
            started = self.sfn.start_execution(
                stateMachineArn=arn,
                name=name,
                input=json.dumps(
                    execution_input(
                        start.contact_id,
                        start.workflow,
                        claim.event,
                        resume_at=start.resume_at,
                        start_delay=start.start_delay,
                    ),
                    default=str,
                ),
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            # The execution of this name has ended, or was started with another input: describe it.
            try:
                desc = self.sfn.describe_execution(executionArn=execution_arn(arn, name))
            except ClientError:
                return Enrolment(False, None, DUPLICATE)
            if desc["status"] == "SUCCEEDED" and claim.keeps_event:
                # A repeat of an entry whose run is over put its event back; the run's end had deleted it (the
                # router's Router.execution_ended): it goes again. A failed run's is kept (resume reads it).
                self.store.delete_item(contact_pk(start.contact_id), str(claim.event[STORED]))
            return self._repeat(start, desc["executionArn"], desc["startDate"], desc["status"] == "RUNNING")
        # StartExecution of a running execution with the same name and input succeeds and answers as it did the
        # first time: a start date before this call began says this is a repeat, not a new run.
        started_at: datetime = started["startDate"]
        if started_at < now.replace(microsecond=now.microsecond // 1000 * 1000):
            return self._repeat(start, started["executionArn"], started_at, True)
        self._record(start, started["executionArn"], now)
        return Enrolment(True, started["executionArn"], "started")

    def _repeat(self, start: _Start, exec_arn: str, started_at: datetime, running: bool) -> Enrolment:
        """The execution of this key exists: a redelivery, or the retry of an enrolment that stopped between
        StartExecution and its records (a Lambda timeout, a throttled write). The second is finished here, dated
        by the execution itself, so the contact is never left in a run with no enrolment record."""
        record = start.record
        if record is not None and record.get("execution_arn") == exec_arn:
            if running:  # the opening waits' records, should the first try have stopped before them
                self._record_start(start, exec_arn, started_at)
            self.store.clear_claim(contact_pk(start.contact_id), f"ENROLL#{start.workflow}", start.rev)
            return Enrolment(False, None, DUPLICATE)
        if record is not None and datetime.fromisoformat(record["entered_at"]) > started_at:
            self.store.clear_claim(contact_pk(start.contact_id), f"ENROLL#{start.workflow}", start.rev)
            return Enrolment(False, None, DUPLICATE)  # an old delivery of a run the contact has left and re-entered
        self._record(start, exec_arn, started_at)
        return Enrolment(True, exec_arn, "started (recorded on a repeat: the first try stopped before recording)")

    def _record(self, start: _Start, exec_arn: str, at: datetime) -> None:
        """Confirm a run that has started: the enrolment item (its claim cleared), the Entered metric, the passive
        steps it opens with."""
        record, restart = start.record, start.restart
        entered_at = at.isoformat() if not restart or not record else record["entered_at"]
        plan = self.plans.get(start.workflow)
        name = exec_arn.rsplit(":", 1)[-1]
        entry = str((record or {}).get("entry") or str((record or {}).get("execution_arn", "")).rsplit(":", 1)[-1])
        entry = entry if restart and record else name  # the entry's first execution name, kept across restarts
        # The run's place before its first step: the step runner moves it on with every step it commits.
        progress = {
            "state": "entered",
            "step": "",
            "at": at.isoformat(),
            "until": "",
            "version": plan.version if plan else "",
            "execution": exec_arn,
            "order": "",  # before any record of the run
        }
        self.store.confirm_claim(
            {
                C.PK: contact_pk(start.contact_id),
                C.SK: f"ENROLL#{start.workflow}",
                "workflow": start.workflow,
                "execution_arn": exec_arn,
                "status": "running",
                "entered_at": entered_at,
                # The run index (GSI1): a workflow's enrolments by status and current step without a Scan
                # (shared/store/run_index.py).
                C.GSI1_PK: run_index_pk(start.workflow, start.contact_id),
                C.GSI1_SK: progress_sk("running", progress, start.contact_id),
                PROGRESS: progress,
                "count": (record or {}).get("count", 0) + (0 if restart else 1),
                "goals": (record or {}).get("goals", []) if restart else [],
                "rev": start.rev,
                **({"version_arn": start.version_arn} if start.version_arn else {}),
                "entry": entry,
            },
            # The entry's marker on the funnel index: `stats` counts entries by it. A restart (a goal's jump, a
            # resume) is the same entry: its marker names the entry the new execution goes on with.
            entry=entry_marker(start, exec_arn, at, plan.history_days if plan else 30, entry),
        )
        if not restart and self.metrics is not None:
            # Counted here, once per new execution (a goal's restart is the same entry): the funnel's denominator.
            self.metrics(C.METRIC_ENTERED, start.workflow, C.METRIC_ENTRY_STEP, {})
        self._record_start(start, exec_arn, at)

    def _record_start(self, start: _Start, exec_arn: str, at: datetime) -> None:
        """History records of the passive steps the run starts at (a first step that is a wait): the machine
        goes from its Entry Choice straight into a Wait state, so no Task exists to write them. Keyed like the
        step runner's, so a repeat writes nothing."""
        plan = self.plans.get(start.workflow)
        ahead = plan.passive(start.resume_at) if plan else []
        if not plan or not ahead:
            return
        # A resume_at wins over the trigger's start delay in the Entry Choice, as here.
        first = at if start.resume_at else at + timedelta(seconds=start.start_delay)
        run = Run(start.contact_id, start.workflow, plan.version, exec_arn, plan.history_days, entered=at.isoformat())
        profile = self.store.get_item(contact_pk(start.contact_id), "PROFILE") or {}
        in_campaign = start.workflow in (profile.get("campaigns") or {})
        for rec in passive_records(run, 0, ahead, first):
            key = visit_key(exec_arn, 0, rec["step"])
            # As the step runner's Ctx.commit does for the steps it performs.
            writes = (
                [stage_entered(self.store, start.contact_id, key, start.workflow, rec["step"], at)]
                if in_campaign
                else []
            )
            if self.store.commit_step(start.contact_id, rec, writes) and self.metrics is not None:
                name, dims = passive_metric(rec)
                self.metrics(name, start.workflow, rec["step"], dims)
        if in_campaign:
            self.store.set_campaign_stage(start.contact_id, start.workflow, ahead[-1]["id"])

    def stop(self, contact_id: str, workflow: str, reason: str) -> bool:
        record = self.current(contact_id, workflow)
        if not self.is_running(record):
            return False
        assert record is not None
        self.sfn.stop_execution(executionArn=record["execution_arn"], error="Stopped", cause=reason[:200])
        # Before the status: a retry that finds the run still marked running deletes what is left.
        drop_unreached(self.store, contact_id, record["execution_arn"], clock.now())
        self.store.put_item(
            {
                **record,
                "status": "stopped",
                "stopped_because": reason,
                C.GSI1_PK: run_index_pk(workflow, contact_id),
                C.GSI1_SK: run_index_sk("stopped", str(record["entered_at"]), contact_id),
            }
        )
        return True

    def set_run_status(
        self, contact_id: str, workflow: str, record: dict[str, Any], status: str, expect: str = "running"
    ) -> bool:
        """One conditional UpdateItem: the ENROLL# record of `record`'s run takes `status`, and its run index
        key (GSI1) the same status, when it still names that run and reads `expect`. False when it did not (a
        report of an older run, a repeat, a run stopped by us): nothing changed."""
        arn = str(record["execution_arn"])
        progress = record.get(PROGRESS)
        sk = (
            progress_sk(status, progress, contact_id)
            if isinstance(progress, dict) and progress
            else run_index_sk(status, str(record.get("entered_at", "")), contact_id)
        )
        try:
            self.store.client.update_item(
                TableName=self.store.table,
                Key=self.store._key(contact_pk(contact_id), f"ENROLL#{workflow}"),
                UpdateExpression="SET #s = :s, #gpk = :gpk, #gsk = :gsk",
                ConditionExpression="#arn = :arn AND #s = :expect",
                ExpressionAttributeNames={
                    "#s": "status",
                    "#arn": "execution_arn",
                    "#gpk": C.GSI1_PK,
                    "#gsk": C.GSI1_SK,
                },
                ExpressionAttributeValues=serialise(
                    {
                        ":s": status,
                        ":gpk": run_index_pk(workflow, contact_id),
                        ":gsk": sk,
                        ":arn": arn,
                        ":expect": expect,
                    }
                ),
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


def entry_marker(start: _Start, exec_arn: str, at: datetime, history_days: int, entry: str) -> dict[str, Any]:
    """An execution's ENTERED# item on the funnel index (FUNNEL#<workflow>) at its start, kept as long as the
    run's history: an entry (`entry` is the execution's own name), or a restart going on with entry `entry`. One
    per entry, so a contact who enters twice counts twice."""
    name = exec_arn.rsplit(":", 1)[-1]
    mark = ("entered", "") if entry == name else ("continued", entry)
    return {
        C.PK: contact_pk(start.contact_id),
        C.SK: f"{ENTERED_PREFIX}{start.workflow}#{name}",
        "workflow": start.workflow,
        "execution_arn": exec_arn,
        "entered_at": at.isoformat(),
        C.GSI1_PK: funnel_pk(start.workflow, start.contact_id),
        C.GSI1_SK: funnel_sk(at.isoformat(), mark[0], mark[1], "", name),
        C.TTL_ATTRIBUTE: epoch(at + timedelta(days=history_days)),
    }


def _status_key(workflow: str) -> tuple[str, str]:
    return status_pk(workflow), STATUS_SK
