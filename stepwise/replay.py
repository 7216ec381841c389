"""`stepwise replay [--list]`: what failed processing, from the dead-letter store, with its error; run it again.

Against a deployed stack (boto3's default credentials; the archive bucket from --bucket or STEPWISE_ARCHIVE_BUCKET,
the table and machines as `stepwise status` finds them), or against a running `stepwise local` (--local), which
replays inside its own process."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from shared import constants as C


def _letter(letter: Any) -> dict[str, Any]:
    return {
        "key": letter.key,
        "source": letter.source,
        "at": letter.at,
        "attempts": letter.attempts,
        "error": letter.error,
    }


def run_replay(archive: Any, router: Any, *, list_only: bool) -> dict[str, Any]:
    """The dead letters (oldest first) and, unless `list_only`, the outcome of running each again."""
    from shared.runtime.replay import list_dead_letters, replay

    letters = [_letter(d) for d in list_dead_letters(archive)]
    if list_only:
        return {"dead_letters": letters}
    results = [{"key": r.key, "source": r.source, "ok": r.ok, "error": r.error} for r in replay(archive, router)]
    return {"dead_letters": letters, "replayed": results}


def print_report(report: dict[str, Any], out: Any = None) -> int:
    """Human-readable lines; 1 when a replay failed again (the letter is kept with its new error)."""
    out = out or sys.stdout
    letters = report["dead_letters"]
    if not letters:
        print("no dead letters", file=out)
        return 0
    if "replayed" not in report:
        for d in letters:
            tries = f", {d['attempts']} attempts" if d["attempts"] > 1 else ""
            print(f"{d['at']}  {d['source']:<10} {d['key']}{tries}\n    {d['error']}", file=out)
        print(f"{len(letters)} dead letter(s); `stepwise replay` runs them again", file=out)
        return 0
    failed = 0
    for r in report["replayed"]:
        if r["ok"]:
            print(f"replayed  {r['source']:<10} {r['key']}", file=out)
        else:
            failed += 1
            print(f"FAILED    {r['source']:<10} {r['key']}\n    {r['error']}", file=out)
    done = len(report["replayed"]) - failed
    print(f"{done} replayed, {failed} failed again (kept with the new error)", file=out)
    return 1 if failed else 0


def _deployed_router(args: argparse.Namespace) -> Any:
    """A router over the deployed table and machines, matching the workflow files of --workflows (the ones
    deployed), with boto3's default credentials."""
    import boto3

    from shared.enrollment import Enroller
    from shared.routing import Router
    from shared.store.contacts import ContactStore
    from shared.workflow.compiler import entry_plans
    from shared.workflow.model import workflow_files
    from stepwise.simulate import _load

    missing = [f for f, v in (("--table", args.table), ("--machine-arn-template", args.arn_template)) if not v]
    if missing:
        raise SystemExit(
            f"stepwise replay: {' and '.join(missing)} needed (or {C.ENV_TABLE_NAME} / "
            f"{C.ENV_STATE_MACHINE_ARN_TEMPLATE}); the stack's outputs name them"
        )
    workflows = _load(workflow_files(Path(args.workflows)), sys.stderr)
    if workflows is None:
        raise SystemExit(1)
    sfn = boto3.client("stepfunctions")
    store = ContactStore(args.table, boto3.client("dynamodb"))
    enroller = Enroller(store, sfn, args.arn_template, lambda *a: None, entry_plans(workflows))
    return Router(workflows, store, enroller, sfn)


def replay_command(args: argparse.Namespace) -> int:
    if args.local:
        from stepwise.local_api import LocalApiError, call_local

        try:
            report = call_local(args.port, "POST", "/_local/replay", {"list": args.list})
        except LocalApiError as err:
            print(f"stepwise replay: {err}", file=sys.stderr)
            return 1
        return print_report(report)
    import boto3

    from shared.store.archive import Archive

    bucket = args.bucket or os.environ.get(C.ENV_ARCHIVE_BUCKET)
    if not bucket:
        print(
            f"stepwise replay: --bucket needed (or {C.ENV_ARCHIVE_BUCKET}): the stack's ArchiveBucket output; "
            "--local for a running stepwise local",
            file=sys.stderr,
        )
        return 1
    archive = Archive(bucket, boto3.client("s3"))
    router = None if args.list else _deployed_router(args)
    return print_report(run_replay(archive, router, list_only=args.list))


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="list the dead letters with their error and run them again")
    p.add_argument("--list", action="store_true", help="only list them")
    p.add_argument("--bucket", help=f"the archive bucket (stack output; default ${C.ENV_ARCHIVE_BUCKET})")
    p.add_argument("--table", default=os.environ.get(C.ENV_TABLE_NAME), help="the contact table (stack output)")
    p.add_argument(
        "--machine-arn-template",
        dest="arn_template",
        default=os.environ.get(C.ENV_STATE_MACHINE_ARN_TEMPLATE),
        metavar="ARN",
        help="a workflow's state machine (or alias) ARN with {workflow} for its name",
    )
    p.add_argument("--workflows", default="workflows", metavar="DIR", help="the deployed workflow files")
    p.add_argument("--local", action="store_true", help="against a running stepwise local instead")
    p.add_argument("--port", type=int, default=8787, help="stepwise local's port (with --local)")
    p.set_defaults(func=replay_command)
