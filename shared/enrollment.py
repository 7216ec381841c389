"""Starting and stopping a contact's run of a workflow: re-entry policy and deterministic execution names."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared import clock
from shared import constants as C
from shared.events import stable_hash
from shared.history import EntryPlan, Run, passive_metric, passive_records, stage_entered, visit_key
from shared.lifecycle import read_status
from shared.store.contacts import ContactStore, contact_pk
from shared.workflow.model import Reentry


def execution_arn(machine_arn: str, name: str) -> str:
    """The ARN of execution `name` of a machine, given the machine's ARN or that of its alias or version:
    arn:partition:states:region:account:stateMachine:NAME[:qualifier] -> ...:execution:NAME:name."""
    parts = machine_arn.split(":")
    return ":".join([*parts[:5], "execution", parts[6], name])


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


@dataclass
class Enrolment:
    started: bool
    execution_arn: str | None
    reason: str


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
    ) -> None:
        self.store = store
        self.sfn = sfn
        self.arn_template = arn_template
        self.metrics = metrics
        # Each workflow's entry plan (compiler `entry_plan`): the waits or end a run starts at, which no Task
        # records. A workflow without one records nothing at enrolment.
        self.plans: Mapping[str, EntryPlan] = plans or {}

    def machine_arn(self, workflow: str) -> str:
        return self.arn_template.replace("{workflow}", workflow)

    def current(self, contact_id: str, workflow: str) -> dict[str, Any] | None:
        return self.store.get_item(contact_pk(contact_id), f"ENROLL#{workflow}")

    def is_running(self, record: dict[str, Any] | None) -> bool:
        if not record or record.get("status") != "running":
            return False
        try:
            status = self.sfn.describe_execution(executionArn=record["execution_arn"])["status"]
        except ClientError:
            return False
        return bool(status == "RUNNING")

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
    ) -> Enrolment:
        """Start `workflow` for the contact unless policy forbids it. `key` makes the execution name:
        the same key (a redelivered event, a retried step) can never start a second execution. Without a
        `reentry`, the workflow's own policy from its entry plan applies. A deactivated workflow takes nobody,
        and an event that happened (`occurred_at`) before the workflow was activated does not count."""
        if reentry is None and workflow in self.plans:
            reentry = self.plans[workflow].reentry
        record = self.current(contact_id, workflow)
        now = clock.now()
        if not restart:  # a goal's restart is the same entry: it goes on whatever the status
            refused = read_status(self.store, workflow).refuses(occurred_at)
            if refused:
                return Enrolment(False, None, refused)
            if self.is_running(record):
                return Enrolment(False, record["execution_arn"] if record else None, "already in this workflow")
            if record and reentry is not None:
                if reentry.mode == "once":
                    return Enrolment(False, None, "entered before and re-entry is once")
                if reentry.mode == "once_per" and reentry.period is not None:
                    last = datetime.fromisoformat(record["entered_at"])
                    if now - last < timedelta(seconds=reentry.period):
                        return Enrolment(False, None, f"entered {record['entered_at']}, within once_per period")
        name = f"{workflow[:40]}-{stable_hash(contact_id, workflow, key, resume_at, length=24)}"
        arn = self.machine_arn(workflow)
        start = _Start(contact_id, workflow, record, resume_at, start_delay, restart)
        try:
            started = self.sfn.start_execution(
                stateMachineArn=arn,
                name=name,
                input=json.dumps(
                    execution_input(contact_id, workflow, event, resume_at=resume_at, start_delay=start_delay),
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
            return Enrolment(False, None, DUPLICATE)
        if record is not None and datetime.fromisoformat(record["entered_at"]) > started_at:
            return Enrolment(False, None, DUPLICATE)  # an old delivery of a run the contact has left and re-entered
        self._record(start, exec_arn, started_at)
        return Enrolment(True, exec_arn, "started (recorded on a repeat: the first try stopped before recording)")

    def _record(self, start: _Start, exec_arn: str, at: datetime) -> None:
        """Record a run that has started: the enrolment item, the Entered metric, the passive steps it opens with."""
        record, restart = start.record, start.restart
        self.store.put_item(
            {
                C.PK: contact_pk(start.contact_id),
                C.SK: f"ENROLL#{start.workflow}",
                "workflow": start.workflow,
                "execution_arn": exec_arn,
                "status": "running",
                "entered_at": at.isoformat() if not restart or not record else record["entered_at"],
                "count": (record or {}).get("count", 0) + (0 if restart else 1),
                "goals": (record or {}).get("goals", []) if restart else [],
            }
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
        self.store.put_item({**record, "status": "stopped", "stopped_because": reason})
        return True
