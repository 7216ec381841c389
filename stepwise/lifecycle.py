"""The operator's side of a workflow's lifecycle (`stepwise activate / deactivate / status`): switch the status
item the enroller reads, and on a cancelling deactivation stop every run under way."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from shared import clock
from shared import constants as C
from shared.lifecycle import Status, read_status, write_status
from shared.store.contacts import ContactStore, contact_pk
from shared.store.operations import run_index_pk, run_index_sk

DEACTIVATED = "Deactivated"  # the error name a cancelled execution stops with


class Lifecycle:
    def __init__(self, store: ContactStore, sfn: Any, arn_template: str) -> None:
        self.store = store
        self.sfn = sfn
        self.arn_template = arn_template

    def status(self, workflow: str) -> Status:
        return read_status(self.store, workflow)

    def activate(self, workflow: str) -> Status:
        """Take new contacts again; only events that happen from now on count."""
        return self._put(workflow, active=True, cancelled=0)

    def deactivate(self, workflow: str, *, cancel: bool = False) -> Status:
        """Take no new contacts. With `cancel`, also stop every run under way (their scheduled steps never
        happen); without, the contacts inside finish."""
        status = self._put(workflow, active=False, cancelled=0)
        if not cancel:
            return status
        stopped = 0
        machine = self.arn_template.replace("{workflow}", workflow)
        for page in self.sfn.get_paginator("list_executions").paginate(stateMachineArn=machine, statusFilter="RUNNING"):
            for e in page["executions"]:
                stopped += self._cancel(workflow, e["executionArn"])
        return self._put(workflow, active=False, cancelled=stopped, since=status.since)

    def _cancel(self, workflow: str, execution_arn: str) -> int:
        try:
            desc = self.sfn.describe_execution(executionArn=execution_arn)
            self.sfn.stop_execution(executionArn=execution_arn, error=DEACTIVATED, cause="workflow deactivated")
        except ClientError as err:
            if err.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return 0
            raise
        contact_id = json.loads(desc.get("input") or "{}").get("contact_id")
        record = self.store.get_item(contact_pk(contact_id), f"ENROLL#{workflow}") if contact_id else None
        if record is not None and record.get("execution_arn") == execution_arn:
            # The run index (GSI1) says stopped too, or `stats` and `diff` would count the run as running.
            self.store.put_item(
                {
                    **record,
                    "status": "stopped",
                    "stopped_because": "workflow deactivated",
                    C.GSI1_PK: run_index_pk(workflow, contact_id),
                    C.GSI1_SK: run_index_sk("stopped", str(record["entered_at"]), contact_id),
                }
            )
        return 1

    def _put(self, workflow: str, *, active: bool, cancelled: int, since: datetime | None = None) -> Status:
        return write_status(self.store, workflow, active=active, since=since or clock.now(), cancelled=cancelled)
