"""Compiles a workflow into Amazon States Language (JSONPath): Wait, Choice and Task states, one machine per file."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import constants as C
from shared.history import EntryPlan
from shared.messaging.template_lint import coupon_fields
from shared.workflow.model import (
    ACTION_KINDS,
    ANYTIME,
    BranchStep,
    EndStep,
    GoalStep,
    GotoStep,
    IfStep,
    SendEmailStep,
    SendSmsStep,
    SplitStep,
    Step,
    Trigger,
    WaitStep,
    WaitUntilStep,
    Workflow,
    branches,
    walk_steps,
)
from shared.workflow.runtime import as_runtime

NOT_RETRIED = [e for e in C.TYPED_ERRORS if e != C.ERROR_WEBHOOK]
END = "__end__"  # continuation marker: the execution ends here


class CompileError(Exception):
    """The workflow cannot be compiled (lint catches these first, with friendlier messages)."""


def workflow_version(wf: Workflow) -> str:
    """Content hash of the workflow: history records name the version a contact ran."""
    canon = json.dumps(wf.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def step_spec(step: Step) -> dict[str, Any]:
    """What the step runner receives for one step: its id, kind and the user's settings, nested steps dropped."""
    dumped = step.root.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key in ("then", "else", "otherwise", "on_timeout"):
        dumped.pop(key, None)
    kind = step.kind
    if kind == "branch":
        dumped["branch"] = [{k: v for k, v in case.items() if k != "steps"} for case in dumped["branch"]]
    elif kind == "split":
        dumped["split"] = [{k: v for k, v in path.items() if k != "steps"} for path in dumped["split"]]
    elif kind == "wait_until":
        dumped["wait_until"].pop("on_timeout", None)
    dumped["kind"] = kind
    _refuse_path_keys(dumped, step.id or "?")
    return dumped


def _refuse_path_keys(value: Any, step_id: str) -> None:
    # ASL reads a key ending in ".$" as a path; user data must never be interpreted that way.
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith(".$"):
                raise CompileError(f"step {step_id}: key {k!r} ends in '.$', which Step Functions reserves")
            _refuse_path_keys(v, step_id)
    elif isinstance(value, list):
        for v in value:
            _refuse_path_keys(v, step_id)


def deferrable(wf: Workflow, step: Step) -> bool:
    """Whether a send step can be held: it has a send window (its own or the workflow's), or the frequency cap
    counts its channel and it is not transactional."""
    r = step.root
    if not isinstance(r, SendEmailStep | SendSmsStep):
        return False
    send = r.send_email if isinstance(r, SendEmailStep) else r.send_sms
    window = send.send_window if send.send_window is not None else wf.settings.send_window
    if window is not None and window != ANYTIME:
        return True
    cap = wf.settings.frequency_cap
    return cap is not None and not send.transactional and cap.limit(step.kind.removeprefix("send_")) is not None


# ---- the flat graph ------------------------------------------------------------------------------


@dataclass
class Node:
    """One step with where the flow goes after it."""

    step: Step
    next: str  # step id, or END
    branch_heads: dict[str, str] = field(default_factory=dict)  # branch name -> first step id or continuation


@dataclass
class Graph:
    nodes: dict[str, Node]
    order: list[str]
    first: str
    goto_targets: set[str]


def asl_timestamp(at: datetime) -> str:
    """`at` as a Wait state's Timestamp: in UTC with a Z. Step Functions (and moto) refuse a numeric offset such
    as +01:00 at CreateStateMachine, although the workflow file may be written with one."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def derived_id(kind: str, loc: tuple[str, ...]) -> str:
    """The id of a go-to or end step written without one, from its position (('steps', '0', 'on_timeout', '1')
    gives end-0-on-timeout-1). It must match the step id pattern the step runner checks: field names' underscores
    become hyphens, and a position too deep for 63 characters becomes a hash of it."""
    text = f"{kind}-{'-'.join(loc[1:])}".replace("_", "-").replace(".", "-")
    if len(text) > 63:
        text = f"{kind}-{hashlib.sha256('/'.join(loc).encode()).hexdigest()[:16]}"
    return text


def with_synthetic_ids(wf: Workflow) -> Workflow:
    """A copy of `wf` in which go-to and end steps written without an id have a stable one from their position."""
    wf = wf.model_copy(deep=True)
    for step, loc in wf.walk():
        if step.id is None:
            kind = "goto" if isinstance(step.root, GotoStep) else "end"
            step.root.id = derived_id(kind, loc)  # type: ignore[union-attr]
    return wf


def build_graph(wf: Workflow) -> Graph:
    """The step graph of `wf` (on a copy with synthetic ids: `wf` is left as it was)."""
    wf = with_synthetic_ids(wf)
    nodes: dict[str, Node] = {}
    order: list[str] = []

    def visit(steps: list[Step], cont: str) -> str:
        """Register `steps`; returns the id the list starts at (or `cont` when empty)."""
        heads = [s.id for s in steps if s.id is not None]
        assert len(heads) == len(steps)  # with_synthetic_ids named every step
        for i, step in enumerate(steps):
            sid = heads[i]
            nxt = heads[i + 1] if i + 1 < len(steps) else cont
            if isinstance(step.root, GotoStep):
                nxt = step.root.goto
            elif isinstance(step.root, EndStep):
                nxt = END
            node = Node(step=step, next=nxt)
            if sid in nodes:
                raise CompileError(f"duplicate step id {sid!r}")
            nodes[sid] = node
            order.append(sid)
            for name, inner in branches(step):
                node.branch_heads[name] = visit(inner, nxt)
        return heads[0] if heads else cont

    first = visit(wf.steps, END)
    targets = {n.step.root.goto for n in nodes.values() if isinstance(n.step.root, GotoStep)}
    for t in targets:
        if t not in nodes:
            raise CompileError(f"go-to target {t!r} is not a step id")
    return Graph(nodes=nodes, order=order, first=first, goto_targets=targets)


# ---- states ------------------------------------------------------------------------------------


class Compiler:
    def __init__(self, wf: Workflow, step_runner_arn: str) -> None:
        self.wf = with_synthetic_ids(wf)
        self.arn = step_runner_arn
        self.graph = build_graph(self.wf)
        self.version = workflow_version(self.wf)
        self.states: dict[str, dict[str, Any]] = {}
        self.coupons = coupon_fields(self.wf)
        self.state_of: dict[str, str] = {}  # step id -> state that performs/starts it
        self.need_done = False
        self._previous: dict[str, str] = {}  # step id -> the step written just before it in the same list

        def neighbours(steps: list[Step]) -> None:
            for a, b in itertools.pairwise(steps):
                assert a.id is not None and b.id is not None  # with_synthetic_ids named every step
                self._previous[b.id] = a.id
            for s in steps:
                for _, inner in branches(s):
                    neighbours(inner)

        neighbours(self.wf.steps)

    # Which state the flow enters when it arrives at step `sid` (go-tos and empty branches resolved).
    def resolve(self, sid: str, seen: frozenset[str] = frozenset()) -> str:
        if sid == END:
            self.need_done = True
            return C.STATE_DONE
        if sid in seen:
            raise CompileError(f"go-to cycle with no step in it through {sid!r}")
        node = self.graph.nodes[sid]
        if isinstance(node.step.root, GotoStep):
            return self.resolve(node.next, seen | {sid})
        return self.state_of[sid]

    def passes_goto(self, sid: str) -> bool:
        """Whether a go-to jump lies between here and the next step-runner call, passing only waits on the way
        (the loop counter is carried by the step runner, so the Task before the jump counts it)."""
        seen: set[str] = set()
        while sid != END and sid not in seen:
            seen.add(sid)
            r = self.graph.nodes[sid].step.root
            if isinstance(r, GotoStep):
                return True
            if isinstance(r, WaitStep) or (isinstance(r, WaitUntilStep) and r.wait_until.at is not None):
                sid = self.graph.nodes[sid].next
                continue
            return False
        return False

    def ahead(self, sid: str) -> list[dict[str, Any]]:
        """Passive steps (waits, ends) met from `sid` before the next step-runner call: the runner records them.
        The go-tos on the way are in it too (kind "goto"), where they are met: the runner counts each jump when
        the contact reaches it, after the waits before it (a jump one too many ends the run there)."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        while sid != END and sid not in seen:
            seen.add(sid)
            node = self.graph.nodes[sid]
            r = node.step.root
            if isinstance(r, GotoStep):
                out.append({"id": sid, "kind": "goto"})
                sid = node.next
                continue
            if isinstance(r, WaitStep):
                out.append({"id": sid, "kind": "wait", "seconds": r.wait})
                sid = node.next
                continue
            if isinstance(r, WaitUntilStep) and r.wait_until.at is not None:
                out.append({"id": sid, "kind": "wait_until", "at": r.wait_until.at.isoformat()})
                sid = node.next
                continue
            if isinstance(r, EndStep):
                out.append({"id": sid, "kind": "end", "reason": r.end.reason})
            break
        return out

    def compile(self) -> dict[str, Any]:
        self._assign_states()
        self._emit_states()
        entry = self._entry()
        states = {C.STATE_ENTRY: entry, **self.states}
        if self.need_done:
            states[C.STATE_DONE] = {"Type": "Succeed", "Comment": "End of the workflow"}
        states[C.STATE_LOOP_LIMIT] = {
            "Type": "Succeed",
            "Comment": f"Ended after {self.wf.settings.max_loops} go-to jumps (settings.max_loops)",
        }
        for err in C.TYPED_ERRORS:
            states[f"{C.STATE_FAILED_PREFIX}{err}"] = {
                "Type": "Fail",
                "Error": err,
                # The caught error's own message (the Catch put it at $.error), not a generic text.
                "CausePath": "$.error.Cause",
            }
        return {
            "Comment": f"Stepwise workflow {self.wf.name} version {self.version}",
            "QueryLanguage": "JSONPath",
            "StartAt": C.STATE_ENTRY,
            "States": reachable(states, C.STATE_ENTRY),
        }

    # Each step becomes at most one state; runs of consecutive actions share one Task.
    def _assign_states(self) -> None:
        self.runs: dict[str, list[str]] = {}  # task state name -> action step ids
        for sid in self.graph.order:
            node = self.graph.nodes[sid]
            r = node.step.root
            kind = node.step.kind
            if kind in ACTION_KINDS:
                prev = self._run_predecessor(sid)
                if prev is not None:
                    self.state_of[sid] = self.state_of[prev]
                    self.runs[self.state_of[prev]].append(sid)
                else:
                    self.state_of[sid] = sid
                    self.runs[sid] = [sid]
            elif isinstance(r, GotoStep):
                continue
            elif isinstance(r, EndStep):
                prev = self._run_predecessor(sid)
                # An end right after an action run ends that Task; elsewhere it needs a terminal state.
                self.state_of[sid] = self.state_of[prev] if prev is not None else sid
            else:
                self.state_of[sid] = sid

    def _run_predecessor(self, sid: str) -> str | None:
        """The action step written directly before `sid` in the same list, if `sid` may join its Task."""
        if sid in self.graph.goto_targets:
            return None
        prev = self._previous.get(sid)
        if prev is not None and self.graph.nodes[prev].step.kind in ACTION_KINDS:
            return prev
        return None

    def _task(self, op: str, payload: dict[str, Any], *, callback: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {
            "op": op,
            "workflow": self.wf.name,
            "version": self.version,
            "max_loops": self.wf.settings.max_loops,
            "history_days": self.wf.settings.history_days,
            **payload,
            "contact_id.$": "$.contact_id",
            "event.$": "$.event",
            "run.$": "$.run",
            "execution.$": "$$.Execution.Id",
            "entered.$": "$$.State.EnteredTime",
        }
        if callback:
            params["task_token.$"] = "$$.Task.Token"
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken"
            if callback
            else "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": self.arn, "Payload": params},
            "ResultSelector": {"loops.$": "$.loops", "branch.$": "$.branch"}
            if callback
            else {"loops.$": "$.Payload.loops", "branch.$": "$.Payload.branch"},
            "ResultPath": "$.run",
            # Every Task carries these, so they are kept short (ASL defaults: 1 s, 3 attempts, backoff 2).
            "Retry": [
                # Our typed errors are answers, not accidents: never retried (they go to their Catch).
                {"ErrorEquals": [C.ERROR_LOOP_LIMIT, *NOT_RETRIED], "MaxAttempts": 0},
                # A receiving app that is down gets time to come back: 30s, 1m, 2m, 4m, 8m.
                {"ErrorEquals": [C.ERROR_WEBHOOK], "IntervalSeconds": 30, "MaxAttempts": 5},
                # Anything else: Lambda's own errors, the function throttled by DynamoDB or Step Functions, a crash
                # between a step's commit and its start of another workflow. Steps are idempotent: try again.
                {"ErrorEquals": ["States.TaskFailed"], "JitterStrategy": "FULL"},
            ],
            "Catch": [
                {"ErrorEquals": [C.ERROR_LOOP_LIMIT], "ResultPath": "$.error", "Next": C.STATE_LOOP_LIMIT},
                *(
                    {"ErrorEquals": [err], "ResultPath": "$.error", "Next": f"{C.STATE_FAILED_PREFIX}{err}"}
                    for err in C.TYPED_ERRORS
                ),
            ],
        }
        return state

    def _sending(self, name: str, task: dict[str, Any], steps: list[Step]) -> None:
        """What the sends of a Task need besides their own settings (the workflow's window and the deployment's
        cap, the field of a coupon generated before), and, when one of them can be held, the deferral loop: a
        Catch of SendDeferred into a Pass parsing its cause and a Wait until the time it names, back into this
        Task. Nothing is added for a Task that cannot defer, so it costs what it did."""
        payload = task["Parameters"]["Payload"]
        coupons = {s.id: self.coupons[s.id] for s in steps if s.id in self.coupons}
        held = [s.id for s in steps if deferrable(self.wf, s)]
        if not held and not coupons:
            return
        sending: dict[str, Any] = {}
        settings = self.wf.settings
        if held and settings.send_window is not None:
            sending["send_window"] = settings.send_window.model_dump(mode="json")
        if held and settings.frequency_cap is not None:
            sending["frequency_cap"] = settings.frequency_cap.model_dump(mode="json", exclude_none=True)
        if coupons:
            sending["coupons"] = coupons
        payload["sending"] = sending
        if not held:
            return
        payload["deferrable"] = held
        task["Retry"][0]["ErrorEquals"].append(C.ERROR_SEND_DEFERRED)  # an answer, never retried
        pass_name, wait_name = f"{name}{C.DEFERRED_SUFFIX}", f"{name}{C.HELD_SUFFIX}"
        # ResultPath under $.run keeps the run's loop count, so the Task entered again visits the same steps.
        task["Catch"].insert(
            0, {"ErrorEquals": [C.ERROR_SEND_DEFERRED], "ResultPath": "$.run.deferred", "Next": pass_name}
        )
        self.states[pass_name] = {
            "Type": "Pass",
            "Comment": "A send is held: read when from the step runner's error (its message is the time, UTC)",
            "Parameters": {"Cause.$": "States.StringToJson($.run.deferred.Cause)"},
            "ResultPath": "$.run.deferred",
            "Next": wait_name,
        }
        self.states[wait_name] = {
            "Type": "Wait",
            "Comment": "Until the send window opens or the frequency cap allows the next send",
            "TimestampPath": "$.run.deferred.Cause.errorMessage",
            "Next": name,
        }

    def _then(self, state: dict[str, Any], nxt: str) -> None:
        target = self.resolve(nxt)
        if state["Type"] in ("Task", "Wait") and (target == C.STATE_DONE or self.states_end_step(target)):
            # Ending right after a Task or Wait costs nothing; a Succeed state would be one more transition
            # (an end step's record is written ahead by the Task before, see `ahead`).
            state["End"] = True
            return
        state["Next"] = target

    def _timeout_target(self, sid: str, head: str) -> str:
        """Where a wait's timeout leads. The step runner records the timeout when it next runs; when the timeout
        leads to a Wait or to the end, a Task of its own records it then (ending the execution itself, it costs
        what the Succeed state would have)."""
        target = self.resolve(head)
        if self._runs_step_runner(target):
            return target
        name = f"{sid}{C.TIMEOUT_SUFFIX}"
        steps, nxt, jumps = [], head, []
        while nxt != END and isinstance(self.graph.nodes[nxt].step.root, GotoStep):
            jumps.append({"id": nxt, "kind": "goto"})  # met at the timeout, before what comes after
            nxt = self.graph.nodes[nxt].next
        if nxt != END and self.states_end_step(self.state_of[nxt]):
            steps, nxt = [step_spec(self.graph.nodes[nxt].step)], END
        ahead = [*jumps, *(self.ahead(nxt) if nxt != END else [])]
        task = self._task("actions", {"steps": steps, "ahead": ahead, "goto": self.passes_goto(head)})
        self._then(task, nxt)
        self.states[name] = task
        return name

    def _runs_step_runner(self, state_name: str) -> bool:
        if state_name in self.runs:
            return True
        node = self.graph.nodes.get(state_name)
        if node is None or self.state_of.get(state_name) != state_name:
            return False
        r = node.step.root
        return isinstance(r, IfStep | BranchStep | SplitStep | GoalStep) or (
            isinstance(r, WaitUntilStep) and r.wait_until.at is None
        )

    def states_end_step(self, state_name: str) -> bool:
        node = self.graph.nodes.get(state_name)
        return node is not None and isinstance(node.step.root, EndStep) and self.state_of.get(state_name) == state_name

    def _emit_states(self) -> None:
        g = self.graph
        for name, ids in self.runs.items():
            last = g.nodes[ids[-1]]
            nxt = last.next
            steps = [step_spec(g.nodes[i].step) for i in ids]
            end_after = self.ahead(nxt) if nxt != END else []
            if nxt != END and isinstance(g.nodes[nxt].step.root, EndStep) and self.state_of[nxt] == name:
                steps.append(step_spec(g.nodes[nxt].step))
                nxt, end_after = END, []
            task = self._task("actions", {"steps": steps, "ahead": end_after, "goto": self.passes_goto(last.next)})
            self._sending(name, task, [g.nodes[i].step for i in ids])
            self._then(task, nxt)
            self.states[name] = task
        for sid in g.order:
            node = g.nodes[sid]
            r = node.step.root
            spec = step_spec(node.step)
            if isinstance(r, WaitStep):
                w: dict[str, Any] = {"Type": "Wait", "Seconds": r.wait}
                self._then(w, node.next)
                self.states[sid] = w
            elif isinstance(r, WaitUntilStep):
                wu = r.wait_until
                if wu.at is not None:
                    w = {"Type": "Wait", "Timestamp": asl_timestamp(wu.at)}
                    self._then(w, node.next)
                    self.states[sid] = w
                    continue
                timeout_head = node.branch_heads.get("on_timeout", node.next)
                task = self._task(
                    "wait",
                    # `ahead`: what the contact meets once resumed (the router records it, shared/waits.py).
                    {"step": spec, "ahead": self.ahead(node.next), "goto": self.passes_goto(node.next)},
                    callback=True,
                )
                task["TimeoutSeconds"] = wu.timeout
                after_timeout = self._timeout_target(sid, timeout_head)
                # Straight into a step-runner Task through a go-to: no Task of its own counts the jump, that one does.
                jumped = after_timeout == self.resolve(timeout_head) and self.passes_goto(timeout_head)
                key = C.RUN_TIMED_OUT_GOTO if jumped else C.RUN_TIMED_OUT
                task["Catch"].insert(
                    0,
                    {"ErrorEquals": ["States.Timeout"], "ResultPath": f"$.run.{key}", "Next": after_timeout},
                )
                self._then(task, node.next)
                self.states[sid] = task
            elif isinstance(r, IfStep | BranchStep | SplitStep):
                heads = node.branch_heads
                if isinstance(r, IfStep):
                    options = {"then": heads["then"], "else": heads["else"]}
                elif isinstance(r, BranchStep):
                    options = {k.removeprefix("branch."): v for k, v in heads.items() if k != "otherwise"}
                    options["otherwise"] = heads["otherwise"]
                else:
                    options = {k.removeprefix("split."): v for k, v in heads.items()}
                payload: dict[str, Any] = {
                    "step": spec,
                    "ahead": {b: self.ahead(h) for b, h in options.items()},
                    "goto": {b: self.passes_goto(h) for b, h in options.items()},
                }
                if isinstance(r, SplitStep) and r.winner is not None and r.winner.by != "goal":
                    # Opens and clicks count for a path only for messages its own steps sent.
                    payload["path_steps"] = {
                        p.name: [s.id for s, _ in walk_steps(p.steps, ()) if s.id] for p in r.split
                    }
                task = self._task("decide", payload)
                choice_name = f"{sid}{C.CHOICE_SUFFIX}"
                task["Next"] = choice_name
                self.states[sid] = task
                names = list(options)
                default = names[-1]
                self.states[choice_name] = {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.run.branch", "StringEquals": b, "Next": self.resolve(options[b])}
                        for b in names[:-1]
                    ],
                    "Default": self.resolve(options[default]),
                }
            elif isinstance(r, GoalStep):
                task = self._task(
                    "goal",
                    {"step": spec, "ahead": self.ahead(node.next), "goto": self.passes_goto(node.next)},
                )
                if r.goal.otherwise == "end":
                    choice_name = f"{sid}{C.CHOICE_SUFFIX}"
                    task["Next"] = choice_name
                    after = self.resolve(node.next)
                    self.need_done = True
                    self.states[choice_name] = {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.run.branch", "StringEquals": "met", "Next": after}],
                        "Default": C.STATE_DONE,
                    }
                else:
                    self._then(task, node.next)
                self.states[sid] = task
            elif isinstance(r, EndStep) and self.state_of[sid] == sid:
                self.states[sid] = {"Type": "Succeed", "Comment": r.end.reason}

    def _entry(self) -> dict[str, Any]:
        first = self.resolve(self.graph.first)
        choices: list[dict[str, Any]] = []
        for sid in self.graph.order:
            node = self.graph.nodes[sid]
            if isinstance(node.step.root, GotoStep):
                continue
            choices.append(
                {
                    "And": [
                        {"Variable": "$.run.resume_at", "IsPresent": True},
                        {"Variable": "$.run.resume_at", "StringEquals": sid},
                    ],
                    "Next": self.resolve(sid),
                }
            )
        if any(isinstance(t.root, Trigger) and t.root.delay for t in self.wf.triggers):
            self.states[C.STATE_START_DELAY] = {
                "Type": "Wait",
                "SecondsPath": "$.start_delay",
                "Next": first,
                "Comment": "The trigger's start delay",
            }
            choices.append(
                {
                    "And": [
                        {"Variable": "$.start_delay", "IsPresent": True},
                        {"Variable": "$.start_delay", "NumericGreaterThan": 0},
                    ],
                    "Next": C.STATE_START_DELAY,
                }
            )
        return {
            "Type": "Choice",
            "Comment": "Resume at a step (goals, restarts, start-at) or wait out the trigger's delay",
            "Choices": choices,
            "Default": first,
        }


def transitions_from(state: dict[str, Any]) -> list[str]:
    """Every state name `state` can move to: Next, Default, each Choice rule and each Catch."""
    out = [state[k] for k in ("Next", "Default") if k in state]
    out += [c["Next"] for c in state.get("Choices", [])]
    out += [c["Next"] for c in state.get("Catch", [])]
    return out


def reachable(states: dict[str, Any], start: str) -> dict[str, Any]:
    """The states reachable from `start`, in their order. Step Functions refuses a definition with a state
    nothing leads to (MISSING_TRANSITION_TARGET), so a Done or Failed state no path uses is left out."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in transitions_from(states[todo.pop()]):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return {name: st for name, st in states.items() if name in seen}


def compile_workflow(wf: Workflow, step_runner_arn: str) -> dict[str, Any]:
    """The ASL definition for `wf`, invoking the step runner at `step_runner_arn`."""
    return Compiler(wf, step_runner_arn).compile()


def entry_plan(wf: Workflow) -> EntryPlan:
    """The passive steps at each place a run of `wf` can start (its first step, or a resume_at step) that no
    Task records because none runs before them: a workflow that opens with a wait, a start-at on a wait."""
    c = Compiler(wf, "")
    c.compile()
    ahead: dict[str, list[dict[str, Any]]] = {}
    for sid in ["", *c.graph.order]:
        if sid and isinstance(c.graph.nodes[sid].step.root, GotoStep):
            continue  # not a place to start: the Entry Choice has no rule for it
        step = sid or c.graph.first
        if step == END or c.states[c.resolve(step)]["Type"] == "Task":
            continue  # a Task performs the step, and records what lies ahead of it itself
        found = [p for p in c.ahead(step) if p["kind"] != "goto"]  # no Task before it to count a jump
        if found:
            ahead[sid] = found
    budgets = wf.settings.budgets.model_dump(mode="json", exclude_none=True) if wf.settings.budgets else {}
    return EntryPlan(
        version=c.version,
        history_days=wf.settings.history_days,
        reentry=as_runtime(wf.reentry),
        ahead=ahead,
        budgets=budgets,
    )


def entry_plans(workflows: list[Workflow]) -> dict[str, EntryPlan]:
    return {wf.name: entry_plan(wf) for wf in workflows}


def compile_json(wf: Workflow, step_runner_arn: str) -> str:
    return json.dumps(compile_workflow(wf, step_runner_arn), indent=2)
