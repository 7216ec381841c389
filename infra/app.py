"""CDK entry point (cdk.json runs it): one Stepwise stack per stage, checked by cdk-nag's AwsSolutions rules."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (cdk.json): Python put infra/ first on sys.path, where infra/constructs/ would shadow the
    # `constructs` library. The repo root goes there instead, so `infra`, `shared` and `functions` import.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import StackConfig
from infra.constructs.senders import SendersConfigError
from infra.constructs.state_machines import WorkflowLintError
from infra.stack import StepwiseStack


def build_app(context: dict[str, object] | None = None, outdir: str | None = None) -> tuple[cdk.App, StepwiseStack]:
    """The app with its one stack. Tests pass context directly; the CLI passes it through cdk.json and -c."""
    app = cdk.App(context=context, outdir=outdir)
    config = StackConfig.from_context(app.node)
    stack = StepwiseStack(app, f"Stepwise-{config.stage}", config=config)
    # cdk-nag 3: a validation plugin, run at synth; findings fail the synth unless acknowledged (infra/nag.py).
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    try:
        app, _ = build_app()
    except WorkflowLintError as err:
        # The problems, not a traceback: the CLI shows this process's stderr and fails the synth or deploy.
        n = len(err.problems)
        head = f"{n} problem{'' if n == 1 else 's'} in the workflow files"
        print(f"Refused to synthesize: {head} (`stepwise validate` reports the same):", file=sys.stderr)
        for line in err.problems:
            print(line, file=sys.stderr)
        sys.exit(1)
    except SendersConfigError as err:
        print(f"Refused to synthesize: {err}", file=sys.stderr)
        sys.exit(1)
    app.synth()


if __name__ == "__main__":
    main()
