"""The `stepwise` command: validate, compile, graph, cost and schema of workflow files; simulate and demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared import constants as C
from shared.messaging.template_lint import template_problems
from shared.workflow.compiler import CompileError, compile_workflow
from shared.workflow.conditions import Where
from shared.workflow.cost import PRICE_PER_1000_TRANSITIONS, analyse, price, transitions
from shared.workflow.durations import DURATION_SCHEMA, format_duration
from shared.workflow.lint import END, Flow, FlowNode, flow, lint, lint_together
from shared.workflow.model import (
    STEP_KINDS,
    AddTagStep,
    AdjustScoreStep,
    BranchStep,
    CallWebhookStep,
    EndStep,
    GenerateCouponStep,
    GoalStep,
    GotoStep,
    IfStep,
    MoveToStageStep,
    NotifyStep,
    RemoveFromCampaignStep,
    RemoveTagStep,
    ScheduleTrigger,
    SendEmailStep,
    SendSiteMessageStep,
    SendSmsStep,
    SetFieldStep,
    SplitStep,
    StartWorkflowStep,
    SubscribeStep,
    Trigger,
    UnsubscribeStep,
    WaitStep,
    WaitUntilStep,
    Workflow,
    WorkflowFileError,
    load_workflow,
    workflow_files,
)
from stepwise import errors

DEFAULT_STEP_RUNNER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stepwise-step-runner"


# ---- validate ------------------------------------------------------------------------------------------------


def check_file(path: Path) -> tuple[Workflow | None, list[str]]:
    """The workflow in `path` (None if it does not load) and every problem: load errors, lint, compile."""
    try:
        wf = load_workflow(path)
    except WorkflowFileError as err:
        return None, list(err.problems)
    problems = [f"{path}: {v}" for v in lint(wf)]
    # The compiler's errors are a subset of lint's, in rougher words: only ask it once lint is satisfied.
    if not problems:
        try:
            compile_workflow(wf, DEFAULT_STEP_RUNNER_ARN)
        except CompileError as err:
            problems.append(f"{path}: {err}")
    problems.extend(template_problems(wf, path))  # templates/ beside the workflows (shared/messaging/template_lint.py)
    return wf, problems


def expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files named, plus every *.yaml / *.yml of folders named; problems for paths that give none."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = workflow_files(p)
            if not found:
                problems.append(f"{p}: no *.yaml or *.yml workflow files in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    return files, problems


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def validate_command(args: argparse.Namespace) -> int:
    files, problems = expand(args.paths)
    bad = 0
    loaded: dict[str, Workflow] = {}
    for f in files:
        wf, found = check_file(f)
        if wf is not None:
            loaded[str(f)] = wf
        bad += bool(found)
        problems.extend(found)
    # Workflows refer to each other (start one, subscribe to a campaign): check those names across the files
    # asked for and the other workflow files of their folders, which are deployed with them.
    context = dict(loaded)
    for folder in {f.parent for f in files}:
        for sibling in workflow_files(folder):
            if str(sibling) not in context:
                with contextlib.suppress(WorkflowFileError):
                    context[str(sibling)] = load_workflow(sibling)
    asked = {str(f) for f in files}
    together = [line for line in lint_together(context) if line.split(":", 1)[0] in asked]
    bad += len({line.split(":", 1)[0] for line in together} - {line.split(":", 1)[0] for line in problems})
    problems.extend(together)
    for line in problems:
        print(line)
    if problems:
        print(f"{_count(len(problems), 'problem')} in {bad} of {_count(len(files), 'workflow')}")
        return 1
    print(f"{_count(len(files), 'workflow')} OK")
    return 0


def _load_valid(path: str) -> Workflow | None:
    """The workflow if it passes validate, else None with its problems printed to stderr."""
    wf, problems = check_file(Path(path))
    if wf is None or problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{path}: refused: fix the {_count(len(problems), 'problem')} above first", file=sys.stderr)
        return None
    return wf


# ---- compile -------------------------------------------------------------------------------------------------


def compile_command(args: argparse.Namespace) -> int:
    wf = _load_valid(args.file)
    if wf is None:
        return 1
    print(json.dumps(compile_workflow(wf, args.step_runner_arn), indent=2))
    return 0


# ---- graph ---------------------------------------------------------------------------------------------------


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(where: Where | None) -> str:
    if where is None:
        return ""
    return " where " + ", ".join(f"{k} {c.describe()}" for k, c in where.comparisons().items())


def _list_ref(list_: str | None, campaign: str | None) -> str:
    return f"list {list_}" if list_ is not None else f"campaign {campaign}"


def step_detail(node: FlowNode) -> str:
    """A few words on what the step does, for graph labels."""
    r = node.step.root
    detail: str
    if isinstance(r, SendEmailStep | SendSmsStep):
        m = r.send_email if isinstance(r, SendEmailStep) else r.send_sms
        detail = m.template + (f" ({m.campaign})" if m.campaign else "")
    elif isinstance(r, SendSiteMessageStep):
        detail = r.send_site_message.template
    elif isinstance(r, NotifyStep):
        detail = f"{r.notify.subject} to {', '.join(r.notify.to)}"
    elif isinstance(r, AddTagStep | RemoveTagStep):
        detail = ", ".join(r.add_tag if isinstance(r, AddTagStep) else r.remove_tag)
    elif isinstance(r, SubscribeStep | UnsubscribeStep):
        ref = r.subscribe if isinstance(r, SubscribeStep) else r.unsubscribe
        detail = _list_ref(ref.list, ref.campaign)
    elif isinstance(r, MoveToStageStep):
        detail = f"{r.move_to_stage.pipeline}: {r.move_to_stage.stage}"
    elif isinstance(r, SetFieldStep):
        detail = ", ".join(f"{k} = {v}" for k, v in r.set_field.items())
    elif isinstance(r, AdjustScoreStep):
        detail = f"+{r.adjust_score.add}" if r.adjust_score.add is not None else f"= {r.adjust_score.set}"
    elif isinstance(r, GenerateCouponStep):
        c = r.generate_coupon
        off = f"{c.percent_off}% off" if c.percent_off else f"{c.amount_off} off" if c.amount_off else "coupon"
        detail = f"{c.prefix or 'code'} {off}, valid {format_duration(c.valid_for)}"
    elif isinstance(r, StartWorkflowStep):
        detail = r.start_workflow.workflow + (f" at {r.start_workflow.at}" if r.start_workflow.at else "")
    elif isinstance(r, RemoveFromCampaignStep):
        detail = r.remove_from_campaign
    elif isinstance(r, CallWebhookStep):
        detail = f"{r.call_webhook.method} {r.call_webhook.url}"
    elif isinstance(r, IfStep):
        detail = r.if_.describe()
    elif isinstance(r, BranchStep):
        detail = " / ".join(c.name for c in r.branch)
    elif isinstance(r, SplitStep):
        detail = " / ".join(f"{p.name} {p.percent:g}%" for p in r.split)
    elif isinstance(r, WaitStep):
        detail = format_duration(r.wait)
    elif isinstance(r, WaitUntilStep):
        wu = r.wait_until
        if wu.at is not None:
            detail = wu.at.isoformat()
        else:
            what = wu.event + _where(wu.where) if wu.event else wu.condition.describe() if wu.condition else ""
            detail = f"{what}, timeout {format_duration(wu.timeout or 0)}"
    elif isinstance(r, GotoStep):
        detail = r.goto
    elif isinstance(r, GoalStep):
        g = r.goal
        detail = g.event + _where(g.where) if g.event else g.condition.describe() if g.condition else ""
    elif isinstance(r, EndStep):
        detail = r.end.reason
    else:
        raise TypeError(f"unhandled step model {type(r).__name__}")  # exhaustiveness guard
    return detail


def _label(text: str) -> str:
    # Mermaid reads quotes and angle brackets inside labels as syntax; its entity codes are safe.
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


_SHAPES = {"decision": ('{"', '"}'), "wait": ('(["', '"])'), "goal": ('{{"', '"}}'), "goto": ('>"', '"]'),
           "end": ('(("', '"))'), "action": ('["', '"]')}  # fmt: skip


def _shape(node: FlowNode) -> str:
    kind = node.step.kind
    if kind in ("if", "branch", "split"):
        return "decision"
    if kind in ("wait", "wait_until", "goal", "goto", "end"):
        return kind if kind != "wait_until" else "wait"
    return "action"


def trigger_text(wf: Workflow) -> str:
    parts = []
    for t in wf.triggers:
        r = t.root
        if isinstance(r, ScheduleTrigger):
            parts.append(_label(f"at {r.at.isoformat()} for list {r.list}"))
        elif isinstance(r, Trigger):
            delay = f", after {format_duration(r.delay)}" if r.delay else ""
            parts.append(_label(_short(r.event + _where(r.where)) + delay))
    return "<br/>".join(parts) if parts else "started by another workflow"


def mermaid(wf: Workflow) -> str:
    """A Mermaid flowchart of the workflow: steps as nodes, decisions' branches, go-tos dashed."""
    f: Flow = flow(wf)
    names = {key: f"n{i}" for i, key in enumerate(f.nodes)}
    names[END] = "done"
    lines = ["flowchart TD", f'    start[["{_label(wf.name)}<br/>{trigger_text(wf)}"]]']
    for key, node in f.nodes.items():
        label = getattr(node.step.root, "name", None)  # go-to and end steps have no name field
        title = node.id + (f" ({label})" if label else "")
        text = f"{_label(title)}<br/>{node.step.kind}: {_label(_short(step_detail(node)))}"
        left, right = _SHAPES[_shape(node)]
        lines.append(f"    {names[key]}{left}{text}{right}")
    if f.first == END or any(e.dst == END for e in f.edges):
        lines.append('    done(("done"))')
    lines.append(f"    start --> {names[f.first]}")
    # Contacts jump to a goal from wherever they are once they meet it.
    lines.extend(
        f'    start -.->|"goal met"| {names[k]}' for k, n in f.nodes.items() if isinstance(n.step.root, GoalStep)
    )
    order = {key: i for i, key in enumerate(f.nodes)}
    for e in sorted(f.edges, key=lambda e: order[e.src]):
        arrow = "-.->" if e.kind == "goto" else "-->"
        label = f'|"{_label(e.label)}"|' if e.label else ""
        lines.append(f"    {names[e.src]} {arrow}{label} {names[e.dst]}")
    return "\n".join(lines)


def graph_command(args: argparse.Namespace) -> int:
    try:
        wf = load_workflow(args.file)
    except WorkflowFileError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return 1
    print(mermaid(wf))
    return 0


# ---- cost ----------------------------------------------------------------------------------------------------


def cost_command(args: argparse.Namespace) -> int:
    wf = _load_valid(args.file)
    if wf is None:
        return 1
    asl = compile_workflow(wf, DEFAULT_STEP_RUNNER_ARN)
    report = analyse(asl, contacts=args.contacts, max_loops=wf.settings.max_loops)
    if args.json:
        print(json.dumps({"workflow": wf.name, **report.as_dict()}, indent=2))
        return 0
    print(f"{wf.name}: {_count(len(report.paths), 'path')} from Entry to the end")
    for p in report.paths:
        print(f"  {transitions(p):3d} transitions: {' -> '.join(p)}")
    print(f"fewest {report.fewest}, most {report.most} transitions per contact", end="")
    print(f" (+{report.start_delay_extra} when a trigger has a delay)" if report.start_delay_extra else "")
    for lp in report.loops:
        print(f"loop {' -> '.join([*lp, lp[0]])}: +{transitions(lp)} transitions per iteration")
    low, high = price(report.fewest, args.contacts), price(report.most, args.contacts)
    print(
        f"Step Functions price for {args.contacts:,} contacts at ${PRICE_PER_1000_TRANSITIONS} per 1,000 "
        f"state transitions: ${low:,.4f} (fewest) to ${high:,.4f} (most)"
    )
    if report.loops:
        print(
            f"ceiling with loops: {report.ceiling} transitions per contact (settings.max_loops "
            f"{report.max_loops}), ${price(report.ceiling, args.contacts):,.4f} for {args.contacts:,} contacts"
        )
    if report.webhook_retries:
        print(f"retries: a webhook that stays down adds up to {report.webhook_retries} transitions per contact")
    print(
        f"retries: Lambda errors retried to the limit add up to {report.error_retries} more "
        "(each retry is a billed transition; none in a run without errors)"
    )
    if report.deferrable:
        print(
            f"send windows / frequency cap: +{report.deferral_extra} transitions per deferred send "
            f"(steps that can be held: {', '.join(report.deferrable)}; none when a send is not held)"
        )
    return 0


# ---- schema --------------------------------------------------------------------------------------------------


def workflow_schema() -> dict[str, Any]:
    """JSON Schema of workflow files, with the short forms the models accept before validating."""
    schema = Workflow.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    # Short forms accepted by `mode="before"` validators, which the generated schema cannot see.
    defs["Reentry"] = {
        "anyOf": [
            {"enum": ["once", "always"]},
            {"type": "object", "properties": {"once_per": DURATION_SCHEMA}, "required": ["once_per"],
             "additionalProperties": False},
            defs["Reentry"],
        ],
        "title": "Reentry",
        "description": defs["Reentry"].get("description", ""),
    }  # fmt: skip
    defs["Score"] = {"anyOf": [{"type": "integer"}, defs["Score"]], "title": "Score"}
    for name, key in (("AddTagStep", "add_tag"), ("RemoveTagStep", "remove_tag")):
        prop = defs[name]["properties"][key]
        defs[name]["properties"][key] = {"anyOf": [{"type": "string"}, prop], "title": prop.get("title", key)}
    end = defs["EndStep"]["properties"]["end"]
    defs["EndStep"]["properties"]["end"] = {"anyOf": [{"const": True}, {"type": "string"}, {"type": "null"}, end]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "Stepwise workflow file",
        "description": (
            "A marketing-automation workflow: triggers that enrol contacts and the steps they go through. "
            f"Each step holds an id and exactly one kind key: {', '.join(STEP_KINDS)}."
        ),
    }


def schema_command(args: argparse.Namespace) -> int:
    print(json.dumps(workflow_schema(), indent=2))
    return 0


# ---- simulate / demo (their module is written separately; imported only when used) --------------------------


def simulate_command(args: argparse.Namespace) -> int:
    from stepwise.simulate import simulate_command as run

    return run(args)


def outbox_command(args: argparse.Namespace) -> int:
    from stepwise.outbox import outbox_command as run

    return run(args)


def demo_command(args: argparse.Namespace) -> int:
    from stepwise.simulate import demo_command as run

    folder = Path(args.folder)
    if not folder.is_dir():
        raise errors.CliError(f"demo: {folder}: no such folder; give a folder of workflow files (default: workflows)")
    return run(args)


def local_command(args: argparse.Namespace) -> int:
    from stepwise.local_api import local_command as run

    return run(args)


# ---- lifecycle: activate, deactivate, status (against the deployed table and machines) ----------------------


def _lifecycle(args: argparse.Namespace) -> Any:
    import boto3

    from shared.store.contacts import ContactStore
    from stepwise.lifecycle import Lifecycle

    missing = [
        flag for flag, value in (("--table", args.table), ("--machine-arn-template", args.arn_template)) if not value
    ]
    if missing:
        raise errors.CliError(  # a usage error: exit 2
            f"{args.command}: {' and '.join(missing)} needed (or {C.ENV_TABLE_NAME} / "
            f"{C.ENV_STATE_MACHINE_ARN_TEMPLATE}); the stack's outputs name the table and each workflow's alias"
        )
    store = ContactStore(args.table, boto3.client("dynamodb"))
    return Lifecycle(store, boto3.client("stepfunctions"), args.arn_template)


def _print_status(workflow: str, status: Any) -> None:
    since = f" since {status.since.isoformat()}" if status.since else " (never switched: active since deployed)"
    why = f": {status.reason}" if getattr(status, "reason", "") else ""  # a runaway budget's pause says why
    print(f"{workflow}: {'active' if status.active else 'inactive'}{since}{why}")


def status_command(args: argparse.Namespace) -> int:
    _print_status(args.workflow, _lifecycle(args).status(args.workflow))
    return 0


def activate_command(args: argparse.Namespace) -> int:
    _print_status(args.workflow, _lifecycle(args).activate(args.workflow))
    return 0


def deactivate_command(args: argparse.Namespace) -> int:
    status = _lifecycle(args).deactivate(args.workflow, cancel=args.cancel_scheduled)
    _print_status(args.workflow, status)
    if args.cancel_scheduled:
        print(f"cancelled {status.cancelled} run(s) under way: their scheduled steps will not happen")
    else:
        print("contacts already inside finish their runs; no new contact enters")
    return 0


# ---- entry point ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepwise",
        description="Marketing-automation workflows as code.",
        epilog="exit codes: 0 ok; 1 problems found or a run failed; 2 usage or input error; 3 internal error "
        "(run again with --debug and report it)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="load, lint and compile workflow files; print every problem")
    p.add_argument("paths", nargs="+", metavar="PATH", help="workflow files, or folders of *.yaml / *.yml")
    p.set_defaults(func=validate_command)

    p = sub.add_parser("compile", help="print the Step Functions definition (ASL JSON) of a workflow")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--step-runner-arn", default=DEFAULT_STEP_RUNNER_ARN, metavar="ARN")
    p.set_defaults(func=compile_command)

    p = sub.add_parser("graph", help="print a Mermaid flowchart of a workflow")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=graph_command)

    p = sub.add_parser("cost", help="paths through the compiled state machine, their transitions and price")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--contacts", type=errors.contact_count, default=1000, help="contacts to price (default 1000)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cost_command)

    p = sub.add_parser("schema", help="print the JSON Schema of workflow files")
    p.set_defaults(func=schema_command)

    p = sub.add_parser("simulate", help="run workflows locally against a file of events and raw deliveries")
    p.add_argument("path", metavar="PATH", help="a workflow file, or a folder of them (run together)")
    p.add_argument(
        "--events", required=True, metavar="EVENTS.jsonl", help="one contact event or provider delivery per line"
    )
    p.add_argument("--start", type=errors.iso_time, metavar="ISO", help="virtual clock start (ISO 8601 with a zone)")
    p.add_argument(
        "--activated-at",
        metavar="ISO",
        help="when the workflows count as deployed (default: the start); events that happened before never enter",
    )
    p.add_argument("--outbox", action="store_true", help="also print every message the local stack sent (JSON lines)")
    p.add_argument("--templates", metavar="FOLDER", help="message templates (default: templates beside the workflows)")
    p.set_defaults(func=simulate_command)

    p = sub.add_parser("outbox", help="run workflows locally against events; list every message sent, as sent")
    p.add_argument("path", metavar="PATH", help="a workflow file, or a folder of them (run together)")
    p.add_argument("--events", required=True, metavar="EVENTS.jsonl", help="one contact event or delivery per line")
    p.add_argument("--start", type=errors.iso_time, metavar="ISO", help="virtual clock start (ISO 8601 with a zone)")
    p.add_argument("--templates", metavar="FOLDER", help="message templates (default: templates beside the workflows)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.set_defaults(func=outbox_command)

    p = sub.add_parser("demo", help="run the example workflows locally and show what contacts receive")
    p.add_argument("folder", nargs="?", default="workflows", metavar="FOLDER")
    p.set_defaults(func=demo_command)

    from stepwise import render

    render.add_parser(sub)

    from stepwise import local_api, replay

    local_api.add_parsers(sub, local_command)
    replay.add_parser(sub)

    from stepwise import ops

    ops.add_parsers(sub)  # history, capacity, diff, stats, erase

    for name, helptext, func in (
        ("status", "whether a deployed workflow takes new contacts", status_command),
        ("activate", "let a deployed workflow take new contacts again", activate_command),
        ("deactivate", "stop new contacts entering a deployed workflow", deactivate_command),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("workflow", metavar="WORKFLOW", help="the workflow's name")
        p.add_argument("--table", default=os.environ.get(C.ENV_TABLE_NAME), help="the contact table (stack output)")
        p.add_argument(
            "--machine-arn-template",
            dest="arn_template",
            default=os.environ.get(C.ENV_STATE_MACHINE_ARN_TEMPLATE),
            metavar="ARN",
            help="a workflow's state machine (or alias) ARN with {workflow} for its name",
        )
        if name == "deactivate":
            p.add_argument(
                "--cancel-scheduled",
                action="store_true",
                help="also stop every run under way (default: contacts inside finish)",
            )
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug anywhere on the line (before or after the command): the traceback of a failure, not one line.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    return errors.run(lambda: _dispatch(argv), debug=debug)


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
