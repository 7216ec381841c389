"""Lint: a registry of named checks a workflow must pass before it is compiled (metaflow's lint.py style)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from shared.events import CATALOGUE
from shared.workflow.conditions import AllOf, AnyOf, Condition, DidEvent, Not, TriggerField, Where
from shared.workflow.durations import format_duration
from shared.workflow.model import (
    ONE_YEAR,
    BranchStep,
    CallWebhookStep,
    EndStep,
    GoalStep,
    GotoStep,
    IfStep,
    RemoveFromCampaignStep,
    SplitStep,
    StartWorkflowStep,
    Step,
    SubscribeStep,
    Trigger,
    UnsubscribeStep,
    WaitStep,
    WaitUntilStep,
    Workflow,
    WorkflowFileError,
    branches,
    load_workflow,
)

END = "__end__"  # edge target: the execution ends here
SCHEDULE_EVENT = "schedule.fired"  # the event a fixed-date trigger fires for every contact of its list


@dataclass(frozen=True)
class Violation:
    """One problem a check found, named by step id and field like the model's load errors."""

    check: str
    step: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [f"step {self.step}"] if self.step else []
        if self.field:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


# A check yields (step id, field, message); the registry turns those into Violations carrying the check's name.
Finding = tuple[str | None, str | None, str]
CheckFunction = Callable[[Workflow], list[Violation]]
CHECKS: dict[str, CheckFunction] = {}


def check(name: str) -> Callable[[Callable[[Workflow], Iterator[Finding]]], CheckFunction]:
    """Register a check under `name`; checks run in the order they are registered."""

    def register(fn: Callable[[Workflow], Iterator[Finding]]) -> CheckFunction:
        if name in CHECKS:
            raise ValueError(f"lint check {name!r} registered twice")

        def run(wf: Workflow) -> list[Violation]:
            return [Violation(name, step, fld, msg) for step, fld, msg in fn(wf)]

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        CHECKS[name] = run
        return run

    return register


def lint(wf: Workflow) -> list[Violation]:
    """Every violation of every registered check, checks in registration order, steps in document order."""
    return [v for fn in CHECKS.values() for v in fn(wf)]


def lint_file(path: str | Path) -> list[str]:
    """'FILE: step X, field F: message' lines: the load errors if the file does not load, else the violations."""
    try:
        wf = load_workflow(path)
    except WorkflowFileError as err:
        return list(err.problems)
    return [f"{Path(path)}: {v}" for v in lint(wf)]


# ---- the flow graph: steps as nodes, where a contact can go next as edges -------------------------------------


def display_id(step: Step, loc: tuple[str, ...]) -> str:
    """The step's id, or the one the compiler derives for a go-to / end written without one."""
    if step.id is not None:
        return step.id
    from shared.workflow.compiler import derived_id

    return derived_id(step.kind, loc)


@dataclass
class FlowNode:
    key: str  # the step's position by indexes ("2.0.1"): unique even when ids or branch names are not
    id: str
    step: Step
    parent: str | None  # key of the enclosing control step
    stopped_by: str | None  # id of a go-to / end written earlier in the same list


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str  # node key or END
    label: str | None = None
    kind: Literal["next", "branch", "goto", "timeout"] = "next"


@dataclass
class Flow:
    nodes: dict[str, FlowNode]  # document order
    edges: list[Edge]
    first: str
    by_id: dict[str, str] = field(default_factory=dict)  # id -> key of the first step with it

    def successors(self, key: str) -> list[str]:
        return [e.dst for e in self.edges if e.src == key and e.dst != END]

    def reachable(self, starts: list[str]) -> set[str]:
        seen: set[str] = set()
        todo = [s for s in starts if s != END]
        while todo:
            key = todo.pop()
            if key not in seen:
                seen.add(key)
                todo.extend(self.successors(key))
        return seen


def flow(wf: Workflow) -> Flow:
    """The graph the compiler builds, but tolerant of the mistakes lint reports (duplicates, unknown targets)."""
    nodes: dict[str, FlowNode] = {}
    edges: list[Edge] = []
    gotos: list[tuple[str, str]] = []

    def visit(steps: list[Step], where: tuple[str, ...], path: str, parent: str | None, cont: str) -> str:
        keys = [f"{path}{i}" for i in range(len(steps))]
        stopped_by: str | None = None
        for i, step in enumerate(steps):
            key, loc = keys[i], (*where, str(i))
            nxt = keys[i + 1] if i + 1 < len(steps) else cont
            node = FlowNode(key=key, id=display_id(step, loc), step=step, parent=parent, stopped_by=stopped_by)
            nodes[key] = node
            r = step.root
            # Heads in branches() order; a list, not a dict, so repeated branch names still get their own edge.
            heads = [
                visit(inner, (*loc, *name.split(".")), f"{key}.{j}.", key, nxt)
                for j, (name, inner) in enumerate(branches(step))
            ]
            if isinstance(r, GotoStep):
                gotos.append((key, r.goto))
            elif isinstance(r, EndStep):
                pass
            elif isinstance(r, IfStep):
                edges.extend(Edge(key, h, b, "branch") for b, h in zip(("then", "else"), heads, strict=True))
            elif isinstance(r, BranchStep):
                names = [c.name for c in r.branch] + ["otherwise"]
                edges.extend(Edge(key, h, b, "branch") for b, h in zip(names, heads, strict=True))
            elif isinstance(r, SplitStep):
                labels = [f"{p.name} {p.percent:g}%" for p in r.split]
                edges.extend(Edge(key, h, b, "branch") for b, h in zip(labels, heads, strict=True))
            elif isinstance(r, WaitUntilStep) and r.wait_until.at is None:
                edges.append(Edge(key, nxt, "event" if r.wait_until.event else "condition met"))
                edges.append(Edge(key, heads[0] if heads else nxt, "timeout", "timeout"))
            elif isinstance(r, GoalStep) and r.goal.otherwise == "end":
                edges.append(Edge(key, nxt, "met"))
                edges.append(Edge(key, END, "not met"))
            else:
                edges.append(Edge(key, nxt))
            if isinstance(r, GotoStep | EndStep) and stopped_by is None:
                stopped_by = node.id
        return keys[0] if keys else cont

    first = visit(wf.steps, ("steps",), "", None, END)
    by_id: dict[str, str] = {}
    for key, node in nodes.items():
        by_id.setdefault(node.id, key)
    edges.extend(Edge(key, by_id[target], None, "goto") for key, target in gotos if target in by_id)
    return Flow(nodes=nodes, edges=edges, first=first, by_id=by_id)


def step_lists(steps: list[Step], where: tuple[str, ...] = ("steps",)) -> Iterator[tuple[list[Step], tuple[str, ...]]]:
    """Every list of steps (the top level and each branch) with its location."""
    yield steps, where
    for i, step in enumerate(steps):
        for name, inner in branches(step):
            yield from step_lists(inner, (*where, str(i), *name.split(".")))


def condition_leaves(cond: Condition, path: str) -> Iterator[tuple[BaseModel, str]]:
    """The leaves of a condition, each with its field path (`if.any.0.all.1`)."""
    r = cond.root
    if isinstance(r, AllOf | AnyOf):
        kind = "all" if isinstance(r, AllOf) else "any"
        for i, c in enumerate(r.all if isinstance(r, AllOf) else r.any):
            yield from condition_leaves(c, f"{path}.{kind}.{i}")
    elif isinstance(r, Not):
        yield from condition_leaves(r.not_, f"{path}.not")
    else:
        yield r, path


def step_conditions(step: Step) -> Iterator[tuple[Condition, str]]:
    """The conditions a step holds, each with the field that holds it."""
    r = step.root
    if isinstance(r, IfStep):
        yield r.if_, "if"
    elif isinstance(r, BranchStep):
        for i, case in enumerate(r.branch):
            yield case.when, f"branch.{i}.when"
    elif isinstance(r, WaitUntilStep) and r.wait_until.condition is not None:
        yield r.wait_until.condition, "wait_until.condition"
    elif isinstance(r, GoalStep) and r.goal.condition is not None:
        yield r.goal.condition, "goal.condition"


def trigger_events(wf: Workflow) -> list[str]:
    """The event types that can start the workflow, each once, in the order written."""
    out: list[str] = []
    for t in wf.triggers:
        event = t.root.event if isinstance(t.root, Trigger) else SCHEDULE_EVENT
        if event not in out:
            out.append(event)
    return out


def _field_problem(event: str, name: str, what: str) -> str | None:
    """Why `name` cannot be a data field of `event` (None if it can, or if the event type is custom)."""
    fields = CATALOGUE.get(event)
    first = name.split(".")[0]  # nested data (`products.0.sku`) is only known down to its top-level field
    if fields is None or first in fields:
        return None
    return f"{what} {event} has no field {first!r} (it has: {', '.join(sorted(fields))})"


def _where_problems(event: str | None, where: Where | None, path: str, what: str) -> Iterator[tuple[str, str]]:
    if event is None or where is None:
        return
    for key in where.root:
        problem = _field_problem(event, key, what)
        if problem:
            yield f"{path}.{key}", problem


# ---- the checks, in the order they run -----------------------------------------------------------------------


@check("duplicate-ids")
def duplicate_ids(wf: Workflow) -> Iterator[Finding]:
    """Two steps share an id: go-tos, goals, resumes and history could not tell them apart."""
    first: dict[str, str] = {}
    for step, loc in wf.walk():
        if step.id is None:
            continue
        where = ".".join(loc)
        if step.id in first:
            yield step.id, "id", f"id {step.id!r} is already used by the step at {first[step.id]}; ids must be unique"
        else:
            first[step.id] = where


@check("unknown-goto-target")
def unknown_goto_target(wf: Workflow) -> Iterator[Finding]:
    """A go-to, a start_workflow.at into this workflow, or a split's winner.goal names no (suitable) step."""
    f = flow(wf)
    kinds = {node.id: node.step.kind for node in f.nodes.values()}
    for node in f.nodes.values():
        r = node.step.root
        if isinstance(r, GotoStep) and r.goto not in kinds:
            yield node.id, "goto", f"go-to target {r.goto!r} is not a step id of this workflow"
        elif isinstance(r, StartWorkflowStep) and r.start_workflow.workflow == wf.name:
            at = r.start_workflow.at
            if at is not None and at not in kinds:
                yield node.id, "start_workflow.at", f"{at!r} is not a step id of workflow {wf.name}"
        elif isinstance(r, SplitStep) and r.winner is not None:
            goal = r.winner.goal
            if goal is not None and goal not in kinds:
                yield node.id, "winner.goal", f"{goal!r} is not a step id of this workflow"
            elif goal is not None and kinds[goal] != "goal":
                yield node.id, "winner.goal", f"{goal!r} is a {kinds[goal]} step, not a goal step"
            elif r.winner.by == "goal" and goal is None and "goal" not in kinds.values():
                yield node.id, "winner", "winner by goal needs a goal step to measure; this workflow has none"


@check("goto-not-last")
def goto_not_last(wf: Workflow) -> Iterator[Finding]:
    """A go-to or end followed by more steps in the same list: those steps are skipped."""
    lengths = {where: len(steps) for steps, where in step_lists(wf.steps)}
    for step, loc in wf.walk():
        after = lengths[loc[:-1]] - int(loc[-1]) - 1
        if after and isinstance(step.root, GotoStep | EndStep):
            what = "a go-to" if isinstance(step.root, GotoStep) else "an end"
            skipped = "the step after it is skipped" if after == 1 else f"the {after} steps after it are skipped"
            yield display_id(step, loc), step.kind, f"{what} must be the last step of its list; {skipped}"


@check("unreachable-steps")
def unreachable_steps(wf: Workflow) -> Iterator[Finding]:
    """Steps no path from the first step (or from a goal, which contacts jump to) reaches."""
    f = flow(wf)
    goals = [k for k, n in f.nodes.items() if isinstance(n.step.root, GoalStep)]
    reached = f.reachable([f.first, *goals])
    for key, node in f.nodes.items():
        # Inside an unreachable step everything is unreachable too; naming the outer one is enough.
        if key in reached or (node.parent is not None and node.parent not in reached):
            continue
        if node.stopped_by is not None:
            yield node.id, None, f"never runs: it comes after {node.stopped_by!r} in the same list"
        else:
            yield node.id, None, "never runs: no path from the first step reaches it"


@check("cycle-without-wait")
def cycle_without_wait(wf: Workflow) -> Iterator[Finding]:
    """A go-to loop with no wait in it: a contact would spin through it max_loops times at once."""
    f = flow(wf)
    waits = {k for k, n in f.nodes.items() if isinstance(n.step.root, WaitStep | WaitUntilStep)}
    # A loop without a wait exists exactly when the graph with the waits taken out still has a cycle.
    graph = {k: [s for s in f.successors(k) if s not in waits] for k in f.nodes if k not in waits}
    for component in _strongly_connected(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        ids = [f.nodes[k].id for k in f.nodes if k in members]
        for key in f.nodes:
            r = f.nodes[key].step.root
            if key in members and isinstance(r, GotoStep) and f.by_id.get(r.goto) in members:
                yield (
                    f.nodes[key].id,
                    "goto",
                    f"the loop through {', '.join(ids)} has no wait or wait_until step; a contact would run it "
                    f"{wf.settings.max_loops} times (settings.max_loops) at once",
                )


@check("cycle-without-step")
def cycle_without_step(wf: Workflow) -> Iterator[Finding]:
    """A go-to loop of waits alone (waits, waits until a time, go-tos): nothing happens in it, and the compiled
    machine, whose go-tos are counted by the step-runner calls a loop passes through, would wait in it forever
    (or spin, once a wait until a time has passed) instead of ending at settings.max_loops."""
    f = flow(wf)

    def passive(key: str) -> bool:
        r = f.nodes[key].step.root
        return isinstance(r, WaitStep | GotoStep) or (isinstance(r, WaitUntilStep) and r.wait_until.at is not None)

    graph = {k: [s for s in f.successors(k) if passive(s)] for k in f.nodes if passive(k)}
    for component in _strongly_connected(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        ids = [f.nodes[k].id for k in f.nodes if k in members and not isinstance(f.nodes[k].step.root, GotoStep)]
        for key in f.nodes:
            r = f.nodes[key].step.root
            if key in members and isinstance(r, GotoStep) and f.by_id.get(r.goto) in members:
                yield (
                    f.nodes[key].id,
                    "goto",
                    f"the loop through {', '.join(ids)} only waits: nothing happens in it and it would never end; "
                    "add a step to the loop (an action, a decision or a wait for an event) or remove the go-to",
                )


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iterative: a run of a thousand steps is a path a thousand deep, past
    Python's recursion limit if walked by recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        while work:
            v, successors = work[-1]
            w = next(successors, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    u = stack.pop()
                    on_stack.discard(u)
                    component.append(u)
                    if u == v:
                        break
                out.append(component)
    return out


@check("split-percentages")
def split_percentages(wf: Workflow) -> Iterator[Finding]:
    """A split's paths must share out all contacts."""
    for step, _ in wf.walk():
        if isinstance(step.root, SplitStep):
            total = sum(p.percent for p in step.root.split)
            if abs(total - 100) > 0.01:
                yield step.id, "split", f"the paths' percent add up to {total:g}, not 100"


@check("wait-too-long")
def wait_too_long(wf: Workflow) -> Iterator[Finding]:
    """A delay beyond a year: a Step Functions execution cannot run longer than one year."""
    limit = "longer than 365 days, the longest a Step Functions execution can run"
    for i, t in enumerate(wf.triggers):
        if isinstance(t.root, Trigger) and t.root.delay is not None and t.root.delay > ONE_YEAR:
            yield None, f"triggers.{i}.delay", f"{format_duration(t.root.delay)} is {limit}"
    for step, _ in wf.walk():
        r = step.root
        if isinstance(r, WaitStep) and r.wait > ONE_YEAR:
            yield step.id, "wait", f"{format_duration(r.wait)} is {limit}"
        elif isinstance(r, WaitUntilStep) and r.wait_until.timeout is not None and r.wait_until.timeout > ONE_YEAR:
            yield step.id, "wait_until.timeout", f"{format_duration(r.wait_until.timeout)} is {limit}"


@check("unknown-event-field")
def unknown_event_field(wf: Workflow) -> Iterator[Finding]:
    """A filter or condition names a data field the (catalogued) event type does not carry."""
    for i, t in enumerate(wf.triggers):
        if isinstance(t.root, Trigger):
            for fld, msg in _where_problems(t.root.event, t.root.where, f"triggers.{i}.where", "event"):
                yield None, fld, msg
    starts = trigger_events(wf)
    for step, _ in wf.walk():
        r = step.root
        sid = step.id
        if isinstance(r, WaitUntilStep):
            wu = r.wait_until
            for fld, msg in _where_problems(wu.event, wu.where, "wait_until.where", "event"):
                yield sid, fld, msg
            # `same` compares a field of the awaited event with the same field of the trigger event.
            for name in wu.same:
                for event, what in [(wu.event, "event"), *((e, "trigger event") for e in starts)]:
                    problem = _field_problem(event, name, what) if event else None
                    if problem:
                        yield sid, "wait_until.same", problem
        elif isinstance(r, GoalStep):
            for fld, msg in _where_problems(r.goal.event, r.goal.where, "goal.where", "event"):
                yield sid, fld, msg
        for cond, path in step_conditions(step):
            for leaf, leaf_path in condition_leaves(cond, path):
                if isinstance(leaf, DidEvent):
                    spec = leaf.spec()
                    for fld, msg in _where_problems(spec.event, spec.where, f"{leaf_path}.did_event.where", "event"):
                        yield sid, fld, msg
                elif isinstance(leaf, TriggerField):
                    for event in starts:
                        problem = _field_problem(event, leaf.event_field, "trigger event")
                        if problem:
                            yield sid, f"{leaf_path}.event_field", problem


@check("empty-branch-decision")
def empty_branch_decision(wf: Workflow) -> Iterator[Finding]:
    """A decision whose every branch is empty changes nothing."""
    for step, _ in wf.walk():
        r = step.root
        if isinstance(r, IfStep) and not r.then and not r.else_:
            yield step.id, "if", "then and else are both empty, so the decision changes nothing"
        elif isinstance(r, BranchStep) and not r.otherwise and not any(c.steps for c in r.branch):
            yield step.id, "branch", "every case and otherwise are empty, so the decision changes nothing"


@check("reserved-key")
def reserved_key(wf: Workflow) -> Iterator[Finding]:
    """A key ending in '.$' in a step's settings: Step Functions would read it as a path (the compiler refuses)."""
    for node in flow(wf).nodes.values():
        dumped = node.step.root.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key in ("then", "else", "otherwise", "on_timeout"):
            dumped.pop(key, None)
        for key in ("branch", "split"):
            if isinstance(dumped.get(key), list):
                dumped[key] = [{k: v for k, v in item.items() if k != "steps"} for item in dumped[key]]
        if isinstance(dumped.get("wait_until"), dict):
            dumped["wait_until"].pop("on_timeout", None)
        for path in _path_keys(dumped, ""):
            yield node.id, path, "keys ending in '.$' are reserved by Step Functions (read as a path); rename it"


@check("webhook-timeout")
def webhook_timeout(wf: Workflow) -> Iterator[Finding]:
    """A webhook's timeout must end before the step runner's own (the Lambda would be killed mid-call)."""
    from shared.constants import STEP_RUNNER_TIMEOUT_SECONDS as LIMIT

    for step, _ in wf.walk():
        r = step.root
        if isinstance(r, CallWebhookStep) and r.call_webhook.timeout >= LIMIT:
            yield (
                step.id,
                "call_webhook.timeout",
                f"{format_duration(r.call_webhook.timeout)} is not less than the step runner's own timeout of "
                f"{LIMIT}s; use at most {LIMIT - 10}s (the receiver can answer 202 and work afterwards)",
            )


# Step Functions refuses a definition longer than this many characters (CreateStateMachine `definition`).
DEFINITION_LIMIT = 1_048_576
# The longest step-runner ARN a deploy can put into the definition: a partition, region and account, plus a
# 64-character function name (the most Lambda allows).
LONGEST_FUNCTION_ARN = "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:" + "f" * 64


@check("definition-too-large")
def definition_too_large(wf: Workflow) -> Iterator[Finding]:
    """The compiled machine, as deployed (compact JSON, the longest possible function ARN), must fit Step
    Functions' definition limit; past it `cdk deploy` fails, so say so here with the size."""
    from shared.workflow.compiler import CompileError, compile_workflow

    try:
        asl = compile_workflow(wf, LONGEST_FUNCTION_ARN)
    except CompileError:
        return  # another check names what stops the compile
    size = len(json.dumps(asl, separators=(",", ":")))
    if size > DEFINITION_LIMIT:
        yield (
            None,
            "steps",
            f"the compiled state machine is {size:,} characters, over Step Functions' limit of "
            f"{DEFINITION_LIMIT:,}; move part of it into another workflow (start_workflow)",
        )


# CloudFormation refuses a template over this many bytes ("Template may not exceed 1000000 bytes in size"), and
# one deployment's template holds every workflow: its state machine's definition as one JSON string (escaped, so
# about 1.15 times the compact definition) and its dashboard's per-step widgets (measured 245 bytes a step;
# 400 allowed). What the rest of the stack takes (135 kB measured, one workflow) is allowed for once.
TEMPLATE_LIMIT = 1_000_000
TEMPLATE_REST = 200_000
TEMPLATE_BYTES_PER_STEP = 400


def template_bytes(wf: Workflow) -> int | None:
    """About how much of the deployment's template `wf` takes (None if it does not compile: other checks say
    why): its definition as the template's DefinitionString holds it, and its dashboard."""
    from shared.workflow.compiler import CompileError, compile_workflow

    try:
        asl = compile_workflow(wf, "${StepRunnerArn}")
    except CompileError:
        return None
    definition = json.dumps(json.dumps(asl, separators=(",", ":")))
    return len(definition) + TEMPLATE_BYTES_PER_STEP * sum(1 for _ in wf.walk())


def _template_message(size: int, what: str) -> str:
    return (
        f"{what} about {size + TEMPLATE_REST:,} bytes of the deployment's CloudFormation template, over its limit "
        f"of {TEMPLATE_LIMIT:,}; use fewer steps (every workflow of a deployment shares the one template)"
    )


@check("template-too-large")
def template_too_large(wf: Workflow) -> Iterator[Finding]:
    """The workflow's state machine and dashboard must fit in the one CloudFormation template of a deployment
    (with the rest of the stack): past it `cdk deploy` fails although the definition alone fits Step Functions."""
    size = template_bytes(wf)
    if size is not None and size + TEMPLATE_REST > TEMPLATE_LIMIT:
        yield None, "steps", _template_message(size, "its state machine and dashboard make")


def _path_keys(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if str(k).endswith(".$"):
                yield here
            yield from _path_keys(v, here)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _path_keys(v, f"{path}.{i}")


# ---- across the files of a folder ---------------------------------------------------------------------------


def lint_together(workflows: dict[str, Workflow]) -> list[str]:
    """Problems no single file shows: two files with one workflow name, and steps naming a workflow (start it,
    subscribe to or leave a campaign) that no file defines, or a step `at` that the named workflow lacks.
    `workflows` maps each file to its workflow; lines read 'FILE: step X, field F: message'."""
    problems: list[str] = []
    by_name: dict[str, str] = {}
    for path, wf in workflows.items():
        if wf.name in by_name:
            problems.append(f"{path}: field name: workflow {wf.name!r} is also defined in {by_name[wf.name]}")
        else:
            by_name[wf.name] = path
    named = {wf.name: wf for wf in workflows.values()}
    for path, wf in workflows.items():
        for step, _ in wf.walk():
            r = step.root
            refs: list[tuple[str, str]] = []
            if isinstance(r, StartWorkflowStep):
                refs.append(("start_workflow.workflow", r.start_workflow.workflow))
            elif isinstance(r, SubscribeStep | UnsubscribeStep):
                ref = r.subscribe if isinstance(r, SubscribeStep) else r.unsubscribe
                kind = "subscribe" if isinstance(r, SubscribeStep) else "unsubscribe"
                if ref.campaign is not None:
                    refs.append((f"{kind}.campaign", ref.campaign))
            elif isinstance(r, RemoveFromCampaignStep):
                refs.append(("remove_from_campaign", r.remove_from_campaign))
            for fld, target in refs:
                if target not in named:
                    problems.append(f"{path}: step {step.id}, field {fld}: no workflow file defines {target!r}")
            # (`at` into the workflow itself is the unknown-goto-target check's.)
            sw = r.start_workflow if isinstance(r, StartWorkflowStep) else None
            if sw is not None and sw.at and sw.workflow in named and sw.workflow != wf.name:
                target_wf = named[sw.workflow]
                ids = {s.id for s, _ in target_wf.walk() if s.id and not isinstance(s.root, GotoStep)}
                if sw.at not in ids:
                    problems.append(
                        f"{path}: step {step.id}, field start_workflow.at: {sw.at!r} is not a step "
                        f"of workflow {target_wf.name!r}"
                    )
    if len(workflows) > 1:  # one workflow over it alone is template-too-large's
        sizes = [template_bytes(wf) for wf in workflows.values()]
        total = sum(s or 0 for s in sizes)
        if total + TEMPLATE_REST > TEMPLATE_LIMIT and all((s or 0) + TEMPLATE_REST <= TEMPLATE_LIMIT for s in sizes):
            first, what = next(iter(workflows)), f"the {len(workflows)} workflows make"
            problems.append(f"{first}: field steps: " + _template_message(total, what))
    return problems
