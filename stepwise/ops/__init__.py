"""The operating commands of a live deployment: history, capacity, diff, stats, erase, stuck, resume and sending
(each its own module)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from shared import constants as C


def add_stack_options(p: argparse.ArgumentParser, *, bucket: bool = False, machines: bool = False) -> None:
    """The options the lifecycle commands take for a deployed stack (its outputs), with the same env defaults."""
    p.add_argument("--table", default=os.environ.get(C.ENV_TABLE_NAME), help="the contact table (stack output)")
    if machines:
        p.add_argument(
            "--machine-arn-template",
            dest="arn_template",
            default=os.environ.get(C.ENV_STATE_MACHINE_ARN_TEMPLATE),
            metavar="ARN",
            help="a workflow's state machine (or alias) ARN with {workflow} for its name",
        )
    if bucket:
        p.add_argument(
            "--bucket", default=os.environ.get(C.ENV_ARCHIVE_BUCKET), help="the archive bucket (stack output)"
        )


def need(args: argparse.Namespace, *flags: tuple[str, str | None, str]) -> None:
    """A usage error (exit 2) naming every missing option (flag, value, env key)."""
    from stepwise.errors import CliError

    missing = [f"{flag} (or {env})" for flag, value, env in flags if not value]
    if missing:
        raise CliError(
            f"{args.command}: {' and '.join(missing)} needed; the stack's outputs name the table, "
            "the bucket and each workflow's alias"
        )


def clients(*names: str) -> list[Any]:
    """boto3 clients, pointed wherever the environment says (AWS, or `stepwise local` via AWS_ENDPOINT_URL)."""
    import boto3

    return [boto3.client(n) for n in names]


def add_parsers(sub: Any) -> None:
    """Register the operating commands on the `stepwise` parser."""
    from stepwise.ops import capacity, diff, erase, history, resume, sending, stats, stuck

    history.add_parser(sub)
    capacity.add_parser(sub)
    diff.add_parser(sub)
    stats.add_parser(sub)
    erase.add_parser(sub)
    stuck.add_parser(sub)
    resume.add_parser(sub)
    sending.add_parser(sub)
