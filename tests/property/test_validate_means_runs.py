""" "Validate OK means it deploys and runs" (issue 11): for every generated workflow file that `stepwise validate`
accepts, the compiled definition fits Step Functions' size limit, passes cfn-lint's state machine rule (E3601, the
ASL checks AWS applies), is accepted by moto's CreateStateMachine, and one contact is driven down each path of it
(tests/property/paths.py: each if's then/else, branch case/otherwise, split path, wait met/timed out, goal met or
not) on the local stack: each contact's history must show its path's records in order, and no execution FAILED.
A workflow with more than paths.MAX_PATHS paths gets a subset of them that takes every choice some path takes.

Seeded and bounded for CI: two explicit files first (strategies.explicit_files: every step kind, trigger kind,
nesting, wait and goal kind), then PROPERTY_EXAMPLES (default 16) generated ones; the run must have driven every
kind of choice and validated every kind of step. The `slow` run takes PROPERTY_SLOW_EXAMPLES (100) from
PROPERTY_SEED (1), only when PROPERTY_SLOW_EXAMPLES is set (`make property`). No shrinking unless PROPERTY_SHRINK=1
(a shrink on moto takes many minutes)."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path as FilePath
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, seed, settings

from shared import constants as C
from shared.events import ContactEvent
from shared.store.contacts import new_contact_id
from shared.workflow.compiler import compile_workflow
from shared.workflow.lint import DEFINITION_LIMIT, LONGEST_FUNCTION_ARN, lint_together
from shared.workflow.model import STEP_KINDS, Workflow, branches
from stepwise.cli import check_file
from stepwise.simulate import DEFAULT_START, Simulation
from tests.property.paths import TRIGGER_DATA, Path, Paths, address, covering, taken
from tests.property.strategies import NAME, OTHER, OTHER_WORKFLOW, STEER, TRIGGER, explicit_files, workflow_files

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "16"))
SLOW_EXAMPLES = int(os.environ.get("PROPERTY_SLOW_EXAMPLES", "100"))
SLOW_SEED = int(os.environ.get("PROPERTY_SEED", "1"))  # another seed, other files: the slow run explores
HORIZON = timedelta(days=40)  # longer than any generated path: 3 loops of the longest waits
STATS: dict[str, Any] = {
    "generated": 0, "validated": 0, "executions": 0, "paths": 0, "contacts": 0, "most_paths": 0, "subsets": 0,
    "kinds": set(), "triggers": set(), "nesting": set(), "choices": set(),
}  # fmt: skip


class _Receiver(BaseHTTPRequestHandler):
    """A webhook receiver on loopback (the local stack allows it): answers 200 to everything."""

    def _ok(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT = do_PATCH = _ok

    def log_message(self, *args: Any) -> None:
        pass


def _receiver() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook"


WEBHOOK_URL = _receiver()


def validated(folder: FilePath, text: str) -> list[Workflow] | None:
    """The workflows of the folder if `stepwise validate` accepts both files (load, lint, compile, together)."""
    (folder / f"{NAME}.yaml").write_text(text, encoding="utf-8")
    (folder / f"{OTHER}.yaml").write_text(OTHER_WORKFLOW, encoding="utf-8")
    found = {}
    for name in (NAME, OTHER):
        wf, problems = check_file(folder / f"{name}.yaml")
        if problems or wf is None:
            return None
        found[name] = wf
    if lint_together({str(folder / f"{n}.yaml"): wf for n, wf in found.items()}):
        return None
    return list(found.values())


@functools.cache
def _cfn_lint() -> Any:
    """One cfn-lint runner for the session: loading its rules (every plugin, the IAM policy data) is 3.5 s of a
    5 s lint; the CLI keeps one runner for many templates too."""
    from cfnlint.config import ConfigMixIn
    from cfnlint.runner import Runner

    return Runner(ConfigMixIn(regions=["us-east-1"]))


def asl_problems(definitions: list[dict[str, Any]]) -> list[str]:
    """cfn-lint's state machine rule (E3601) on each definition, run in process on a template that holds them."""
    from cfnlint.decode.decode import decode_str

    resources = {
        f"Machine{i}": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/stepwise", "DefinitionString": json.dumps(d)},
        }
        for i, d in enumerate(definitions)
    }
    template, errors = decode_str(json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}))
    assert template is not None and not errors, errors
    matches = _cfn_lint().validate_template(template)
    return [f"{m.rule.id}: {m.message}" for m in matches if m.rule.id.startswith("E")]


def _event(
    key: str, email: str, etype: str, data: dict[str, Any], fields: dict[str, Any] | None = None
) -> ContactEvent:
    contact: dict[str, Any] = {"email": email, **({"fields": fields} if fields else {})}
    return ContactEvent.model_validate({"id": key, "type": etype, "contact": contact, "data": data})


@dataclass
class Driven:
    """One contact driven down one path: its address, its path, and the waits where its signal was sent."""

    email: str
    path: Path
    sent: set[str] = field(default_factory=set)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # its records by key

    @property
    def contact_id(self) -> str:
        return new_contact_id(("email", self.email))


def _runs(sim: Simulation, d: Driven) -> list[dict[str, Any]]:
    """The contact's records of the generated workflow, over its executions in order (a goal's jump restarts the
    run in an execution of its own; a contact runs one at a time). Kept as read: `history_days` may expire them
    before the run ends."""
    for h in sim.store.history(d.contact_id):
        if h["workflow"] == NAME:
            d.seen.setdefault(h[C.SK], h)
    return sorted(d.seen.values(), key=lambda i: (i["at"], i.get("entered", ""), i.get("seq", 0)))


def drive(workflows: list[Workflow], driven: list[Driven]) -> None:
    """Each contact gets the events a goal on entry needs, the trigger (with its `steer` field), then, whenever
    its history shows it waiting where its path sends something, that event; every execution must end un-FAILED
    and each contact's records must show its path's records in order."""
    with Simulation(workflows) as sim:
        sim.advance(DEFAULT_START)
        for who, d in enumerate(driven):
            for n, sig in enumerate(d.path.before):
                sim.send(_event(f"b{who}-{n}", d.email, sig.type, sig.as_data()))
        sim.advance(DEFAULT_START + timedelta(seconds=60))
        for who, d in enumerate(driven):
            steer = {STEER: "|" + "".join(f"{go}|" for go in sorted(d.path.route))}
            sim.send(_event(f"go{who}", d.email, TRIGGER, dict(TRIGGER_DATA), steer))
        limit = sim.now + HORIZON
        # Records kept for history_days: read every contact's at least twice a day when that is shorter than the
        # horizon, else only those the driver waits on (a read is a DynamoDB query: the loop's main cost).
        keep = min(wf.settings.history_days for wf in workflows)
        every = timedelta(hours=12) if timedelta(days=keep) < HORIZON else HORIZON
        read_at = sim.now
        while True:
            acted, ahead = False, list[str]()
            for who, d in enumerate(driven):
                pending = set(d.path.at_wait) - d.sent
                if not pending:
                    continue
                records = _runs(sim, d)
                now = sim.now.isoformat()
                past = [h for h in records if h["at"] <= now]
                ahead.extend(h["at"] for h in records if h["at"] > now)
                last = past[-1] if past else None
                if last is not None and last["outcome"] == "waiting" and last["step"] in pending:
                    sig = d.path.at_wait[last["step"]]
                    d.sent.add(last["step"])
                    sim.send(_event(f"s{who}-{last['step']}", d.email, sig.type, sig.as_data()))
                    acted = True
            if acted:
                continue
            due = [t for t in (sim._next_due(), min(map(datetime.fromisoformat, ahead), default=None)) if t]
            if not due or min(due) > limit:
                break
            if min(due) - read_at >= every:  # before the clock passes what may expire
                for d in driven:
                    _runs(sim, d)
                read_at = sim.now
            sim.advance(min(due))
        arns = [a for name in sim.machines for a in sim.execution_arns(name)]
        runs = [sim.stack.sfn.describe_execution(executionArn=a) for a in arns]
        STATS["executions"] += len(runs)
        failed = [f"{r['name']}: {r.get('error')}: {r.get('cause', '')[:400]}" for r in runs if r["status"] == "FAILED"]
        assert not failed, "\n".join(failed)
        for d in driven:
            records = _runs(sim, d)
            missing = taken(d.path.expected, [(h["step"], h["outcome"]) for h in records])
            shown = "\n".join(f"  {h['at']} {h['step']}: {h['outcome']} ({h.get('why', '')})" for h in records)
            assert not missing, f"path {d.path.choices} not taken: {missing}; sent at {sorted(d.sent)}\n{shown}"
            STATS["choices"].update(CHOICE_KINDS.get(c.split(":", 1)[1], "case") for c in d.path.choices)


def check(text: str, folder: FilePath) -> None:
    STATS["generated"] += 1
    workflows = validated(folder, text)
    if workflows is None:
        return  # validate refused it, with a message: nothing is promised
    STATS["validated"] += 1
    wf = workflows[0]
    STATS["kinds"].update(step.kind for step, _ in wf.walk())
    STATS["triggers"].update(type(t.root).__name__ for t in wf.triggers)
    STATS["nesting"].update(name.split(".")[0] for step, _ in wf.walk() for name, inner in branches(step) if inner)
    definitions = [compile_workflow(wf, LONGEST_FUNCTION_ARN) for wf in workflows]
    for d in definitions:
        assert len(json.dumps(d, separators=(",", ":"))) <= DEFINITION_LIMIT
    problems = asl_problems(definitions)
    assert not problems, "\n".join(problems)
    paths = Paths(wf).all()
    chosen = covering(paths)
    STATS["subsets"] += len(chosen) < len(paths)
    STATS["paths"] += len(paths)
    STATS["contacts"] += len(chosen)
    STATS["most_paths"] = max(STATS["most_paths"], len(paths))
    driven = [Driven(address(who, p.splits, wf), p) for who, p in enumerate(chosen)]
    drive(workflows, driven)  # the local stack's CreateStateMachine is moto's, with its ASL checks


@pytest.fixture
def folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[FilePath]:
    """A folder for the files; moto's CreateStateMachine parses each definition only the first time it sees it.

    Its ANTLR parse is about 0.5 s a machine, and every example creates the companion workflow's and the broadcast
    machine's unchanged definitions again; the generated workflow's definition is new each time, so it is always
    parsed (a definition moto refuses still fails: only accepted ones are remembered)."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    validate = StepFunctionsParserBackend._validate_definition
    accepted: set[str] = set()

    def validate_once(definition: str) -> None:
        if definition not in accepted:
            validate(definition=definition)
            accepted.add(definition)

    monkeypatch.setattr(StepFunctionsParserBackend, "_validate_definition", staticmethod(validate_once))
    yield tmp_path_factory.mktemp("flows")


def _settings(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        # No shrinking unless asked (PROPERTY_SHRINK=1): on moto one shrink runs for many minutes, so a failure is
        # reported as generated (the file's text is in the message) and the run ends.
        phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("PROPERTY_SHRINK") else []),
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


CASES = workflow_files(WEBHOOK_URL)
EXPLICIT = explicit_files(WEBHOOK_URL)
EVERY_KIND = set(STEP_KINDS)
EVERY_NESTING = {"then", "else", "branch", "otherwise", "split", "on_timeout"}
# What a path chooses (paths.py's "step:choice"), by kind; a split's p0/p1 and a branch's c0.. are told apart below.
CHOICE_KINDS = {
    "then": "then", "else": "else", "otherwise": "otherwise", "p0": "split path", "p1": "split path",
    "p2": "split path", "resumed": "wait met", "timed out": "wait timed out", "jump": "goal met while waiting",
    "met": "goal met when reached", "not met": "goal not met", "entry": "goal met on entry",
}  # fmt: skip
EVERY_CHOICE = {*CHOICE_KINDS.values(), "case"}


def _property(n: int, seed_value: int, folder: FilePath) -> None:
    def check_case(case: str) -> None:
        try:
            check(case, folder)
        except AssertionError as err:
            raise AssertionError(f"\n{case}\n{err}") from None

    run = given(CASES)(check_case)
    for text in reversed(EXPLICIT):  # checked first, in the explicit phase: the coverage below never rests on luck
        run = example(text)(run)
    run = _settings(n)(seed(seed_value)(run))

    for key in STATS:
        STATS[key] = set() if isinstance(STATS[key], set) else 0
    run()
    # The promise is only tested if most cases validate and the validated ones use the whole format.
    assert STATS["validated"] >= STATS["generated"] * 0.3, STATS
    assert STATS["kinds"] == EVERY_KIND, f"never validated: {sorted(EVERY_KIND - STATS['kinds'])}"
    assert STATS["triggers"] == {"Trigger", "ScheduleTrigger"}
    assert STATS["nesting"] == EVERY_NESTING, f"never nested in: {sorted(EVERY_NESTING - STATS['nesting'])}"
    assert STATS["choices"] == EVERY_CHOICE, f"never driven: {sorted(EVERY_CHOICE - STATS['choices'])}"


def test_every_workflow_that_validates_deploys_and_runs(folder: FilePath) -> None:
    _property(EXAMPLES, 0, folder)


@pytest.mark.slow
@pytest.mark.skipif("PROPERTY_SLOW_EXAMPLES" not in os.environ, reason="the larger run, minutes long: make property")
def test_every_workflow_that_validates_deploys_and_runs_many(folder: FilePath) -> None:
    _property(SLOW_EXAMPLES, SLOW_SEED, folder)
