"""`stepwise resume CONTACT WORKFLOW [--at STEP]`: continue a contact's failed run. Without --at, RedriveExecution
(the run goes on from the state that failed, in AWS); with --at, the run is restarted at that step as a goal's
jump restarts it (the same entry, pinned to the version the run executes). It says what it did."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from shared import constants as C
from shared.enrollment import Enroller
from shared.history import EntryPlan
from shared.store.contacts import ContactStore
from shared.store.operations import BadContactReference, NotRedrivable, OperationsStore, RedriveUnavailable

REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")


class ResumeError(Exception):
    """Nothing to resume: no such contact, no run of the workflow, or no step of that name."""


@dataclass
class ResumeResult:
    action: str  # redriven, restarted, not-redriven, nothing
    contact_id: str
    execution_arn: str  # the run acted on (for a restart: the new run)
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_step(ops: OperationsStore, contact_id: str, workflow: str, execution_arn: str) -> str:
    records = [
        h for h in ops.partition(contact_id, workflow=workflow).of("HIST#") if h.get("execution") == execution_arn
    ]
    if not records:
        return ""
    last = max(records, key=lambda h: (str(h["at"]), str(h.get("entered", "")), int(h.get("seq", 0))))
    return str(last["step"])


def _payloads(node: Any) -> Any:
    """Every step-runner payload of a definition (a Task's Parameters.Payload), nested states included."""
    if isinstance(node, dict):
        if "ahead" in node and "version" in node and "history_days" in node:
            yield node
        for v in node.values():
            yield from _payloads(v)
    elif isinstance(node, list):
        for v in node:
            yield from _payloads(v)


def restart_plan(definition: dict[str, Any], at: str) -> EntryPlan | None:
    """The entry plan of a restart at step `at`, read from the deployed definition of the version the run executes
    (so it is that version's, whatever the workflow files say now): the passive steps (waits, ends) the restarted
    run meets from `at` before its first Task, which no Task records (the enroller does, as for a run that opens
    with a wait). Every passive step a Task leads to is in that Task's `ahead` (Compiler.ahead); one no Task leads
    to (the wait a workflow opens with) is walked through its Wait states. None when `at` is no passive step:
    its Task records it."""
    payloads = list(_payloads(definition.get("States", {})))
    if not payloads:
        return None
    version, history_days = str(payloads[0]["version"]), int(payloads[0]["history_days"])
    for payload in payloads:
        ids = [p.get("id") for p in payload["ahead"]]
        if at in ids:
            chain = [p for p in payload["ahead"][ids.index(at) :] if p["kind"] != "goto"]  # as entry_plan's
            return EntryPlan(version=version, history_days=history_days, ahead={at: chain})
    states, chain, name = definition.get("States", {}), [], at
    while isinstance(states.get(name), dict) and states[name].get("Type") == "Wait" and len(chain) < len(states):
        state = states[name]
        if "Seconds" in state:
            chain.append({"id": name, "kind": "wait", "seconds": int(state["Seconds"])})
        elif "Timestamp" in state:
            chain.append({"id": name, "kind": "wait_until", "at": str(state["Timestamp"]).replace("Z", "+00:00")})
        else:
            break  # a wait whose length is in the run's data: not a step of the workflow file
        name = str(state.get("Next", ""))
    return EntryPlan(version=version, history_days=history_days, ahead={at: chain}) if chain else None


def resume(
    ops: OperationsStore, enroller: Enroller, contact: str, workflow: str, at: str | None = None
) -> ResumeResult:
    contact_id = ops.find_contact(contact)
    if contact_id is None:
        raise ResumeError(f"CONTACT {contact!r}: no contact has this identity")
    record = enroller.current(contact_id, workflow)
    if record is None:
        raise ResumeError(f"contact {contact_id} has no run of workflow {workflow}")
    arn = str(record["execution_arn"])
    desc = ops.describe_execution(arn)
    status = str(desc["status"]) if desc else "MISSING"
    if at is None:
        step = _last_step(ops, contact_id, workflow, arn)
        offer = f"restart it at a step: stepwise resume {contact_id} {workflow} --at {step or 'STEP'}"
        if status not in REDRIVABLE:
            return ResumeResult("nothing", contact_id, arn, f"run is {status}: nothing to redrive; {offer}")
        # The step runner's progress writes require the record to read running: it does again before the redrive
        # (one conditional UpdateItem), and takes back its final status when the redrive is refused.
        was = str(record.get("status", ""))
        reopened = was != "running" and enroller.set_run_status(contact_id, workflow, record, "running", expect=was)
        try:
            try:
                when = ops.redrive(arn)
            except (RedriveUnavailable, NotRedrivable):
                if reopened:
                    enroller.set_run_status(contact_id, workflow, record, was, expect="running")
                raise
        except RedriveUnavailable as err:
            return ResumeResult(
                "not-redriven",
                contact_id,
                arn,
                f"RedriveExecution is not available on this endpoint (moto does not implement it: {err}); {offer}",
            )
        except NotRedrivable as err:
            return ResumeResult("not-redriven", contact_id, arn, f"Step Functions refuses the redrive ({err}); {offer}")
        return ResumeResult("redriven", contact_id, arn, f"redriven at {when.isoformat()}: the {status} run goes on")
    if status == "SUCCEEDED":  # not stuck; a second resume finds the restart's run ended: nothing sent twice
        return ResumeResult("nothing", contact_id, arn, "run ended normally (SUCCEEDED): nothing to resume")
    pinned = enroller.pinned_version(record)
    definition = ops.deployed_definition(pinned or enroller.machine_arn(workflow))
    if at not in definition.get("States", {}):
        raise ResumeError(f"--at {at!r}: no step of that id in the version this run executes")
    stopped = status == "RUNNING" and enroller.stop(contact_id, workflow, f"restarted at {at} by stepwise resume")
    event = json.loads((desc or {}).get("input") or "{}").get("event", {})
    # A restart at a wait: the enroller writes the wait's records (as a run reaching it does), from the plan of the
    # version the run executes, so history, stuck and the run index see the contact waiting there.
    plan = restart_plan(definition, at)
    if plan is not None:
        enroller = Enroller(
            enroller.store,
            enroller.sfn,
            enroller.arn_template,
            enroller.metrics,
            {**enroller.plans, workflow: plan},
            enroller.activated_at,
        )
    got = enroller.enrol(
        contact_id, workflow, event, key=f"resume:{arn}", resume_at=at, restart=True, version_arn=pinned
    )
    if not got.started:
        return ResumeResult("nothing", contact_id, arn, f"not restarted: {got.reason}")
    version = f"version {pinned.rsplit(':', 1)[-1]}" if pinned else "the machine (no versions published)"
    was = "stopped the running run, " if stopped else f"the {status} run left as it is, "
    return ResumeResult(
        "restarted", contact_id, str(got.execution_arn), f"{was}restarted at {at} in {version}: {got.execution_arn}"
    )


def resume_command(args: argparse.Namespace) -> int:
    from stepwise.errors import aws

    with aws("resume", table=args.table, machine=_machine(args)):  # an AWS error: one line, exit 2
        return _resume(args)


def _machine(args: argparse.Namespace) -> str | None:
    template = args.arn_template
    return template.replace("{workflow}", args.workflow) if template else None


def _resume(args: argparse.Namespace) -> int:
    from stepwise.ops import clients, need

    need(
        args,
        ("--table", args.table, C.ENV_TABLE_NAME),
        ("--machine-arn-template", args.arn_template, C.ENV_STATE_MACHINE_ARN_TEMPLATE),
    )
    ddb, sfn = clients("dynamodb", "stepfunctions")
    store = ContactStore(args.table, ddb)
    ops = OperationsStore(store, sfn=sfn)
    try:
        result = resume(ops, Enroller(store, sfn, args.arn_template), args.contact, args.workflow, args.at)
    except (ResumeError, BadContactReference) as err:
        print(f"stepwise resume: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"{result.action}: {result.message}")
    return 0 if result.action in ("redriven", "restarted") else 1  # it ran; what it found is a problem


def add_parser(sub: Any) -> None:
    from stepwise.ops import add_stack_options

    p = sub.add_parser("resume", help="redrive a contact's failed run, or restart it at a step (--at)")
    p.add_argument("contact", metavar="CONTACT", help="email, phone (+E.164), provider:id or contact id")
    p.add_argument("workflow", metavar="WORKFLOW")
    p.add_argument("--at", metavar="STEP", help="restart the run at this step (pinned to the run's version)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_stack_options(p, machines=True)
    p.set_defaults(func=resume_command)
