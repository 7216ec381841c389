"""`cdk synth` through the npm-installed CLI, offline and without credentials, and cfn-lint on what it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.workflow.model import load_workflow, workflow_files
from tests.infra.conftest import REPO, SENDING_CONTEXT, synthesize

CDK = REPO / "node_modules" / ".bin" / "cdk"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
# W3005: CDK itself writes a DependsOn on a role that a GetAtt already implies; nothing of ours to change.
LINT_IGNORE = "W3005"

pytestmark = pytest.mark.synth


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        CDK_DISABLE_CLI_TELEMETRY="true",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), "--ignore-checks", LINT_IGNORE, "--", str(template)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assert CDK.exists(), "the CDK CLI is missing: run `make install` (npm ci)"
    out = tmp_path_factory.mktemp("cli-out")
    done = subprocess.run(
        [
            str(CDK),
            "synth",
            "--quiet",
            *("-c", "stage=ci", "-c", "alarm_email=ops@example.com"),
            *(arg for key, value in SENDING_CONTEXT.items() for arg in ("-c", f"{key}={value}")),
            *("-o", str(out)),
        ],
        cwd=REPO,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return {"out": out, "template": out / "Stepwise-ci.template.json"}


def test_cli_synth_deploys_every_workflow_with_context_overrides(cli_synth: dict[str, Any]) -> None:
    template = json.loads(cli_synth["template"].read_text())
    names = sorted(
        r["Properties"]["StateMachineName"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    )
    workflows = sorted(f"stepwise-ci-{load_workflow(p).name}" for p in workflow_files(REPO / "workflows"))
    assert names == sorted([*workflows, "stepwise-ci_broadcast"])
    (subscription,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    report = json.loads((cli_synth["out"] / "validation-report.json").read_text())
    assert [p["conclusion"] for p in report["pluginReports"]] == ["success"]


def test_cfn_lint_passes_and_checks_every_state_machine_definition(cli_synth: dict[str, Any], tmp_path: Path) -> None:
    good = cfn_lint(cli_synth["template"])
    assert good.returncode == 0, good.stdout + good.stderr
    # The definitions are literal strings (the ARN comes by DefinitionSubstitutions), so E3601 reads each one:
    # breaking any one of them must fail the lint.
    template = json.loads(cli_synth["template"].read_text())
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert machines and all(isinstance(m["Properties"]["DefinitionString"], str) for m in machines)
    definition = json.loads(machines[-1]["Properties"]["DefinitionString"])
    definition["States"][definition["StartAt"]]["Type"] = "Bogus"
    machines[-1]["Properties"]["DefinitionString"] = json.dumps(definition)
    broken = tmp_path / "broken.template.json"
    broken.write_text(json.dumps(template))
    bad = cfn_lint(broken)
    assert bad.returncode != 0 and "E3601" in bad.stdout, bad.stdout


def test_stage_and_workflows_folder_come_from_context(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "hello.yaml").write_text(
        "name: hello\ntriggers: [{event: list.subscribed}]\nsteps:\n  - id: hi\n    send_email: {template: hi}\n"
    )
    synth = synthesize(tmp_path / "out", stage="qa", workflows=str(folder))
    machines = [r["Properties"] for r in synth.of_type("AWS::StepFunctions::StateMachine").values()]
    assert sorted(m["StateMachineName"] for m in machines) == ["stepwise-qa-hello", "stepwise-qa_broadcast"]
    dashboards = [d["Properties"]["DashboardName"] for d in synth.of_type("AWS::CloudWatch::Dashboard").values()]
    assert sorted(dashboards) == ["stepwise-qa-hello", "stepwise-qa-ways-in-and-out"]
