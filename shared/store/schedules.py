"""EventBridge Scheduler access: one-time `at(...)` schedules of a group that call the router's schedule handler."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

_AT_FORMAT = "%Y-%m-%dT%H:%M:%S"


def at_expression(when: datetime) -> str:
    """`at(yyyy-mm-ddThh:mm:ss)` in UTC (the expression's time zone is left at its UTC default)."""
    if when.tzinfo is None:
        raise ValueError(f"schedule time {when!r} needs a time zone")
    return f"at({when.astimezone(UTC).strftime(_AT_FORMAT)})"


def parse_at_expression(expression: str) -> datetime:
    """The UTC time of an `at(...)` expression (ValueError for rate/cron ones, which Stepwise never creates)."""
    if not expression.startswith("at(") or not expression.endswith(")"):
        raise ValueError(f"not a one-time schedule expression: {expression!r}")
    return datetime.strptime(expression[3:-1], _AT_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class StoredSchedule:
    name: str
    at: datetime
    payload: dict[str, Any]


class ScheduleStore:
    """The only code that speaks to EventBridge Scheduler. Names are the caller's deterministic names, so a
    repeated create is a no-op (ConflictException) and a repeated delete too (ResourceNotFoundException)."""

    def __init__(self, client: Any, group: str, target_arn: str, role_arn: str) -> None:
        self.client = client
        self.group = group
        self.target_arn = target_arn
        self.role_arn = role_arn

    def create(self, name: str, when: datetime, payload: dict[str, Any]) -> bool:
        """Create a one-time schedule; False when one of this name exists already (a repeat)."""
        try:
            self.client.create_schedule(
                Name=name,
                GroupName=self.group,
                ScheduleExpression=at_expression(when),
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={
                    "Arn": self.target_arn,
                    "RoleArn": self.role_arn,
                    "Input": json.dumps(payload, sort_keys=True, default=str),
                },
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConflictException":
                return False
            raise
        return True

    def delete(self, name: str) -> bool:
        """Delete a schedule by name; False when it is gone already (fired and deleted, or cancelled before)."""
        try:
            self.client.delete_schedule(Name=name, GroupName=self.group)
        except ClientError as err:
            if err.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise
        return True

    def names(self) -> list[str]:
        """Names of every schedule of the group (all pages)."""
        out: list[str] = []
        kwargs: dict[str, Any] = {"GroupName": self.group}
        while True:
            page = self.client.list_schedules(**kwargs)
            out.extend(s["Name"] for s in page.get("Schedules", []))
            token = page.get("NextToken")
            if not token:
                return out
            kwargs["NextToken"] = token

    def get(self, name: str) -> StoredSchedule | None:
        try:
            got = self.client.get_schedule(Name=name, GroupName=self.group)
        except ClientError as err:
            if err.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return StoredSchedule(name, parse_at_expression(got["ScheduleExpression"]), json.loads(got["Target"]["Input"]))

    def create_group(self) -> None:
        """Create the group (the local stack; in AWS the CDK app declares it). An existing group is kept."""
        try:
            self.client.create_schedule_group(Name=self.group)
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConflictException":
                raise
