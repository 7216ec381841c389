""" "Validate OK means it deploys and runs" (issue 11): for every generated workflow file that `stepwise validate`
accepts, the compiled definition fits Step Functions' size limit, passes cfn-lint's state machine rule (E3601, the
ASL checks AWS applies), is accepted by moto's CreateStateMachine, and contacts driven through it with several
event sequences on the local stack never end in a FAILED execution.

Seeded and bounded for CI (PROPERTY_EXAMPLES, default 25); the `slow` run takes PROPERTY_SLOW_EXAMPLES (100) from
PROPERTY_SEED (1), only when PROPERTY_SLOW_EXAMPLES is set (`make property`; CI runs the 25): about 5 s a validated
example on an idle core. No shrinking unless PROPERTY_SHRINK=1 (a shrink on moto takes many minutes)."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from shared.events import ContactEvent
from shared.workflow.compiler import compile_workflow
from shared.workflow.lint import DEFINITION_LIMIT, LONGEST_FUNCTION_ARN, lint_together
from shared.workflow.model import STEP_KINDS, Workflow
from stepwise.cli import check_file
from stepwise.simulate import DEFAULT_START, Simulation
from tests.property.strategies import NAME, OTHER, OTHER_WORKFLOW, TRIGGER, contacts, workflow_files

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
SLOW_EXAMPLES = int(os.environ.get("PROPERTY_SLOW_EXAMPLES", "100"))
SLOW_SEED = int(os.environ.get("PROPERTY_SEED", "1"))  # another seed, other files: the slow run explores
HORIZON = timedelta(days=40)  # longer than any generated path: 3 loops of the longest waits
STATS: dict[str, Any] = {"generated": 0, "validated": 0, "executions": 0, "kinds": set(), "triggers": set()}


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


def validated(folder: Path, text: str) -> list[Workflow] | None:
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


def _event(n: int, who: int, etype: str, data: dict[str, Any], fields: dict[str, Any] | None = None) -> ContactEvent:
    contact: dict[str, Any] = {"email": f"c{who}@example.com", "phone": f"+39333123450{who}"}
    if fields:
        contact["fields"] = fields
    return ContactEvent.model_validate({"id": f"e{who}-{n}", "type": etype, "contact": contact, "data": data})


def timed_events(people: list[dict[str, Any]]) -> list[tuple[int, ContactEvent]]:
    """Every contact's events in time order: its starting data at 0, the trigger at +1m, then its own events."""
    out: list[tuple[int, ContactEvent]] = []
    for who, p in enumerate(people):
        setup = [("tag.added", {"tag": t}) for t in p["tags"]] + [("list.subscribed", {"list": x}) for x in p["lists"]]
        for n, (etype, data) in enumerate(setup):
            out.append((0, _event(n, who, etype, data, p["fields"])))
        out.append((60, _event(100, who, TRIGGER, p["trigger"], p["fields"])))
        out.extend((s, _event(200 + n, who, etype, data)) for n, (s, etype, data) in enumerate(p["events"]))
    return sorted(out, key=lambda e: e[0])


def check_runs(workflows: list[Workflow], people: list[dict[str, Any]]) -> None:
    with Simulation(workflows) as sim:
        for offset, ev in timed_events(people):
            sim.advance(DEFAULT_START + timedelta(seconds=offset))
            sim.send(ev)
        sim.finish(HORIZON)
        runs = []
        for name in sim.machines:
            for arn in sim.execution_arns(name):
                runs.append(sim.stack.sfn.describe_execution(executionArn=arn))
        STATS["executions"] += len(runs)
        failed = [f"{r['name']}: {r.get('error')}: {r.get('cause', '')[:400]}" for r in runs if r["status"] == "FAILED"]
        assert not failed, "\n".join(failed)


def check(text: str, people: list[dict[str, Any]], folder: Path) -> None:
    STATS["generated"] += 1
    workflows = validated(folder, text)
    if workflows is None:
        return  # validate refused it, with a message: nothing is promised
    STATS["validated"] += 1
    wf = workflows[0]
    STATS["kinds"].update(step.kind for step, _ in wf.walk())
    STATS["triggers"].update(type(t.root).__name__ for t in wf.triggers)
    definitions = [compile_workflow(wf, LONGEST_FUNCTION_ARN) for wf in workflows]
    for d in definitions:
        assert len(json.dumps(d, separators=(",", ":"))) <= DEFINITION_LIMIT
    problems = asl_problems(definitions)
    assert not problems, "\n".join(problems)
    check_runs(workflows, people)  # the local stack's CreateStateMachine is moto's, with its ASL checks


@pytest.fixture
def folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
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


CASES = st.tuples(workflow_files(WEBHOOK_URL), st.lists(contacts(), min_size=2, max_size=3))
EVERY_KIND = set(STEP_KINDS)


def _property(n: int, seed_value: int, folder: Path) -> None:
    @_settings(n)
    @seed(seed_value)
    @given(CASES)
    def run(case: tuple[str, list[dict[str, Any]]]) -> None:
        try:
            check(case[0], case[1], folder)
        except AssertionError as err:
            raise AssertionError(f"\n{case[0]}\n{err}") from None

    for key in STATS:
        STATS[key] = set() if isinstance(STATS[key], set) else 0
    run()
    # The promise is only tested if most cases validate and the validated ones use the whole format.
    assert STATS["validated"] >= STATS["generated"] * 0.3, STATS
    if n >= 100:
        assert STATS["kinds"] == EVERY_KIND, f"never validated: {sorted(EVERY_KIND - STATS['kinds'])}"
        assert STATS["triggers"] == {"Trigger", "ScheduleTrigger"}


def test_every_workflow_that_validates_deploys_and_runs(folder: Path) -> None:
    _property(EXAMPLES, 0, folder)


@pytest.mark.slow
@pytest.mark.skipif("PROPERTY_SLOW_EXAMPLES" not in os.environ, reason="the larger run, minutes long: make property")
def test_every_workflow_that_validates_deploys_and_runs_many(folder: Path) -> None:
    _property(SLOW_EXAMPLES, SLOW_SEED, folder)
