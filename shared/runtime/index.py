"""The routing index: which triggers, goals and waits listen to each event type, built once per deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from shared.store.contacts import ACTIVITY_DAYS
from shared.workflow.runtime import (
    ClickedEmail,
    Condition,
    DidEvent,
    GoalStep,
    OpenedEmail,
    Step,
    Trigger,
    WaitUntilStep,
    Workflow,
)
from shared.workflow.runtime import condition as runtime_condition
from shared.workflow.runtime import workflows as runtime_workflows

# A condition that reads activity with no `within` looks back this far: as far as activity is kept (its TTL).
ACTIVITY_CEILING = timedelta(days=ACTIVITY_DAYS)


@dataclass(frozen=True)
class GoalRef:
    """One goal step of a workflow, in file order."""

    step: Step

    @property
    def id(self) -> str:
        return self.step.id or ""

    @property
    def goal(self):  # type: ignore[no-untyped-def]
        return self.step.root.goal  # type: ignore[union-attr]


@dataclass
class RoutingIndex:
    """What listens to what. The router asks it, per event, only about the workflows that can care:

    - `triggers[type]`: each workflow with a trigger on the type, with those triggers in file order;
    - `event_goals[type]`: workflows with a goal on the event type;
    - `condition_goals`: workflows with a goal on a condition (any change to a contact's data may meet it);
    - `goals[workflow]`: a workflow's goal steps in file order;
    - `wait_events`: event types some `wait_until` waits for; `condition_waits`: whether any waits on a condition;
    - `activity_window`: how far back the conditions the router evaluates (goal and wait conditions, goals met
      on entry) read the contact's activity: the longest `within` they name, the ceiling when one names none,
      None when none reads activity at all (then no activity is read)."""

    workflows: dict[str, Workflow] = field(default_factory=dict)
    triggers: dict[str, list[tuple[Workflow, list[Trigger]]]] = field(default_factory=dict)
    event_goals: dict[str, set[str]] = field(default_factory=dict)
    condition_goals: set[str] = field(default_factory=set)
    goals: dict[str, list[GoalRef]] = field(default_factory=dict)
    wait_events: set[str] = field(default_factory=set)
    condition_waits: bool = False
    activity_window: timedelta | None = None

    @classmethod
    def build(cls, workflows: list[Workflow]) -> RoutingIndex:
        idx = cls()
        windows: list[timedelta] = []
        for wf in runtime_workflows(workflows):
            idx.workflows[wf.name] = wf
            by_type: dict[str, list[Trigger]] = {}
            for entry in wf.triggers:
                if isinstance(entry.root, Trigger):
                    by_type.setdefault(entry.root.event, []).append(entry.root)
            for etype, triggers in by_type.items():
                idx.triggers.setdefault(etype, []).append((wf, triggers))
            for step, _ in wf.walk():
                r = step.root
                if isinstance(r, GoalStep):
                    idx.goals.setdefault(wf.name, []).append(GoalRef(step))
                    if r.goal.event is not None:
                        idx.event_goals.setdefault(r.goal.event, set()).add(wf.name)
                    if r.goal.condition is not None:
                        idx.condition_goals.add(wf.name)
                        windows += activity_windows(r.goal.condition)
                elif isinstance(r, WaitUntilStep):
                    if r.wait_until.event is not None:
                        idx.wait_events.add(r.wait_until.event)
                    if r.wait_until.condition is not None:
                        idx.condition_waits = True
                        windows += activity_windows(r.wait_until.condition)
        idx.activity_window = max(windows, default=None)
        return idx

    def listens(self, etype: str) -> bool:
        """Whether anything could act on an event of this type for a contact not waiting on a condition or in a
        workflow with condition goals."""
        return etype in self.triggers or etype in self.event_goals or etype in self.wait_events


def activity_windows(condition: Condition) -> list[timedelta]:
    """How far back each leaf of `condition` that reads activity looks (the ceiling for one with no `within`)."""
    out = []
    for leaf in runtime_condition(condition).leaves():
        within: int | None
        if isinstance(leaf, DidEvent):
            within = leaf.spec().within
        elif isinstance(leaf, OpenedEmail | ClickedEmail):
            within = leaf.within
        else:
            continue
        out.append(min(timedelta(seconds=within), ACTIVITY_CEILING) if within else ACTIVITY_CEILING)
    return out


def condition_window(condition: Condition | None) -> timedelta | None:
    """The activity one condition reads (None: none)."""
    return max(activity_windows(condition), default=None) if condition is not None else None
