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
from shared.history import EntryPlan, Run, passive_records
from shared.store.contacts import ContactStore, contact_pk
from shared.workflow.model import Reentry


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
    ) -> Enrolment:
        """Start `workflow` for the contact unless policy forbids it. `key` makes the execution name:
        the same key (a redelivered event, a retried step) can never start a second execution."""
        record = self.current(contact_id, workflow)
        now = clock.now()
        if not restart:
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
            if err.response["Error"]["Code"] == "ExecutionAlreadyExists":
                return Enrolment(False, None, "duplicate delivery: this execution already exists")
            raise
        exec_arn = started["executionArn"]
        self.store.put_item(
            {
                C.PK: contact_pk(contact_id),
                C.SK: f"ENROLL#{workflow}",
                "workflow": workflow,
                "execution_arn": exec_arn,
                "status": "running",
                "entered_at": now.isoformat() if not restart or not record else record["entered_at"],
                "count": (record or {}).get("count", 0) + (0 if restart else 1),
                "goals": (record or {}).get("goals", []) if restart else [],
            }
        )
        if not restart and self.metrics is not None:
            # Counted here, once per new execution (a goal's restart is the same entry): the funnel's denominator.
            self.metrics(C.METRIC_ENTERED, workflow, C.METRIC_ENTRY_STEP, {})
        self._record_start(contact_id, workflow, exec_arn, resume_at, now, start_delay)
        return Enrolment(True, exec_arn, "started")

    def _record_start(
        self, contact_id: str, workflow: str, exec_arn: str, resume_at: str, now: datetime, start_delay: int
    ) -> None:
        """History records of the passive steps the run starts at (a first step that is a wait): the machine
        goes from its Entry Choice straight into a Wait state, so no Task exists to write them. Keyed like the
        step runner's, so a repeat writes nothing."""
        plan = self.plans.get(workflow)
        ahead = plan.passive(resume_at) if plan else []
        if not plan or not ahead:
            return
        # A resume_at wins over the trigger's start delay in the Entry Choice, as here.
        start = now if resume_at else now + timedelta(seconds=start_delay)
        run = Run(contact_id, workflow, plan.version, exec_arn, plan.history_days, entered=now.isoformat())
        for rec in passive_records(run, 0, ahead, start):
            if self.store.commit_step(contact_id, rec, []) and rec["kind"] == "end" and self.metrics is not None:
                self.metrics(C.METRIC_ENDED, workflow, rec["step"], {"reason": "end_step"})

    def stop(self, contact_id: str, workflow: str, reason: str) -> bool:
        record = self.current(contact_id, workflow)
        if not self.is_running(record):
            return False
        assert record is not None
        self.sfn.stop_execution(executionArn=record["execution_arn"], error="Stopped", cause=reason[:200])
        self.store.put_item({**record, "status": "stopped", "stopped_because": reason})
        return True
