"""One synth of the app per test session (per xdist worker): the Template tests read its output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from infra.app import build_app
from infra.stack import StepwiseStack

REPO = Path(__file__).resolve().parents[2]
# What Refs to pseudo parameters resolve to in these tests.
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::URLSuffix": ""}


# What an operator must give when the workflows send email and SMS (cdk.json leaves both empty: see
# infra/constructs/senders.py check_channels).
SENDING_CONTEXT = {"email_from": "news@example.com", "sms_origination": "pool-0123456789abcdef0123456789abcdef"}


def cdk_json_context() -> dict[str, Any]:
    """The context the CLI passes (cdk.json), so the tests synthesize what `cdk synth` does."""
    return dict(json.loads((REPO / "cdk.json").read_text())["context"])


@dataclass
class Synth:
    stack: StepwiseStack
    outdir: Path
    template: dict[str, Any]

    @property
    def assertions(self) -> Template:
        return Template.from_json(self.template)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]  # type: ignore[no-any-return]

    def of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == cfn_type}

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)

    def resolve(self, value: Any) -> Any:
        """A template value with Refs and GetAtts made strings ("<LogicalId>", "<LogicalId.Attr>") and Fn::Join
        joined: what CloudFormation would compute, with stand-ins for what only a deploy knows."""
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return PSEUDO.get(arg, f"<{arg}>")
            if key == "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(p)) for p in parts)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


def synthesize(tmp: Path, **context: Any) -> Synth:
    app, stack = build_app(context={**cdk_json_context(), **SENDING_CONTEXT, **context}, outdir=str(tmp))
    assembly = app.synth()  # raises if cdk-nag reports an unacknowledged finding
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    return Synth(stack, tmp, artifact.template)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    """The app as `cdk synth` builds it from cdk.json (stage dev, the repo's workflows/ folder) and a sender."""
    yield synthesize(tmp_path_factory.mktemp("cdk-out"))
