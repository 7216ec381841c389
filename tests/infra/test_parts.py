"""The infra's pure parts, no synth: configuration, the Lambda asset, the metric catalogue, version digests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.assets import COMPILE_TIME_ONLY, AssetBuildError, folder_size, pyc_path, stage_code
from infra.config import StackConfig
from infra.constructs.observability import workflow_metrics
from infra.constructs.state_machines import WorkflowLintError, load_workflows
from infra.constructs.step_runner import CODE_PARTS, generated
from shared import constants as C
from shared.workflow.compiler import entry_plan
from shared.workflow.model import load_workflow
from tests.infra.conftest import REPO

WELCOME = """\
name: welcome
triggers: [{event: list.subscribed}]
steps:
  - id: settle-in
    wait: 10m
  - id: hello
    send_email: {template: hello}
"""


def test_config_defaults_and_refusals(tmp_path: Path) -> None:
    config = StackConfig()
    assert (config.stage, config.workflows, config.alarm_email) == ("dev", REPO / "workflows", "")
    assert config.prefix == "stepwise-dev"
    assert StackConfig(stage="prod2", workflows=tmp_path, alarm_email="ops@example.com").prefix == "stepwise-prod2"
    for bad in (
        {"stage": "dev-eu"},  # a hyphen would let stepwise-dev-* match stage dev-eu's machines
        {"stage": "Prod"},
        {"workflows": tmp_path / "missing"},
        {"alarm_email": "not-an-address"},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            StackConfig.model_validate(bad)


def test_webhook_allow_is_a_list_or_the_cli_string_of_exact_hosts_and_networks() -> None:
    listed = StackConfig.model_validate({"webhook_allow": ["CRM.Internal.", "10.1.2.3/16", "192.0.2.7", "localhost"]})
    assert listed.webhook_allow == ("crm.internal", "10.1.0.0/16", "192.0.2.7/32", "localhost")
    # `cdk deploy -c webhook_allow=...` gives a string: comma or space separated, as STEPWISE_WEBHOOK_ALLOW is.
    assert StackConfig.model_validate({"webhook_allow": "crm.internal, 10.1.0.0/16"}).webhook_allow == (
        "crm.internal",
        "10.1.0.0/16",
    )
    assert StackConfig().webhook_allow == ()
    for bad in ("https://crm.internal", "*.example.com", "crm.internal:8443", "crm.internal/hooks"):
        with pytest.raises(ValidationError) as info:
            StackConfig.model_validate({"webhook_allow": [bad]})
        assert (
            f"webhook_allow entry {bad!r} is not a host name (crm.internal: exact, no scheme, port or wildcard) "
            "or an IP network (10.1.0.0/16, 192.0.2.7)"
        ) in str(info.value)
    with pytest.raises(ValidationError, match="webhook_allow is a list of host names and networks"):
        StackConfig.model_validate({"webhook_allow": {"crm.internal": True}})


def test_asset_holds_the_function_and_shared_only_and_imports_on_its_own() -> None:
    asset = stage_code(CODE_PARTS, "step-runner")
    files = {p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file()}
    assert "functions/step_runner/handler.py" in files and "functions/__init__.py" in files
    assert "shared/store/contacts.py" in files and "shared/workflow/model.py" in files
    # Bytecode: python3.12's, one per source (tests/infra/test_assets_bytecode.py checks its content).
    sources = {f for f in files if f.endswith(".py")}
    assert {f for f in files if "__pycache__" in f or f.endswith(".pyc")} == {pyc_path(f) for f in sources}
    assert not COMPILE_TIME_ONLY & files
    assert {f.split("/")[0] for f in files} == {"functions", "shared"}
    assert {f.split("/")[1] for f in sources if f.startswith("functions/")} == {"__init__.py", "step_runner"}
    assert sum((asset / f).stat().st_size for f in sources) < 1_000_000
    assert folder_size(asset) < 2_500_000  # with the bytecode
    assert stage_code(CODE_PARTS, "step-runner") == asset  # same content, same folder
    # Imported from the asset alone (the repo taken off sys.path): every project module resolves inside it.
    probe = (
        "import sys, json; repo = sys.argv[1]; asset = sys.argv[2];"
        "sys.path[:] = [asset] + [p for p in sys.path if p not in ('', repo)];"
        "import functions.step_runner.handler;"
        "mods = [m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('functions', 'shared')];"
        "print(json.dumps(mods))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(REPO), str(asset)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # the asset is shipped: no 3.11 bytecode in it
    )
    modules = json.loads(out.stdout)
    assert modules and all(m.startswith(str(asset)) for m in modules), modules


def test_asset_carries_the_entry_plans_of_the_deployed_workflows_and_the_handler_reads_them() -> None:
    workflows = [c.workflow for c in load_workflows(REPO / "workflows")]
    asset = stage_code(CODE_PARTS, "step-runner", generated=generated(workflows))
    assert asset != stage_code(CODE_PARTS, "step-runner")  # the plans are part of the content hash
    on_disk = json.loads((asset / C.ENTRY_PLANS_FILE).read_text())
    assert on_disk == {wf.name: entry_plan(wf).model_dump(mode="json") for wf in workflows}
    # welcome-series opens with a 10-minute wait: the only place a run of the examples starts at a passive step.
    starts = {name: sorted(plan["ahead"]) for name, plan in on_disk.items() if "" in plan["ahead"]}
    assert starts == {"welcome-series": ["", "settle-in"]}
    # The handler, imported from the asset alone, finds the file through the environment the stack sets.
    probe = (
        "import sys, os; asset = sys.argv[1]; sys.path[:] = [asset] + [p for p in sys.path if p != ''];"
        f"os.environ.update({{'{C.ENV_TABLE_NAME}': 't', '{C.ENV_STATE_MACHINE_ARN_TEMPLATE}': 'a',"
        f" '{C.ENV_ENTRY_PLANS}': '{C.ENTRY_PLANS_FILE}'}});"
        "from functions.step_runner.handler import Settings;"
        "print(Settings.from_env().plans()['welcome-series'].passive('')[0]['id'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(asset)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert out.stdout.strip() == "settle-in"


def test_generated_asset_files_may_not_replace_code() -> None:
    with pytest.raises(AssetBuildError, match=r"shared/constants\.py would replace a file of the code"):
        stage_code(CODE_PARTS, "step-runner", generated={"shared/constants.py": b""})


def test_metric_catalogue_of_an_example_workflow() -> None:
    metrics = workflow_metrics(load_workflow(REPO / "workflows" / "welcome-series.yaml"))
    by_name = {name: [dict(k.dimensions) for k in keys] for name, keys in metrics.items()}
    assert by_name == {
        C.METRIC_ENTERED: [{"workflow": "welcome-series", "step": "entry"}],
        C.METRIC_STEP_COMPLETED: [
            {"workflow": "welcome-series", "step": "welcome-sms"},
            {"workflow": "welcome-series", "step": "welcome-email"},
        ],
        C.METRIC_BRANCH_TAKEN: [],
        C.METRIC_GOAL_REACHED: [],
        C.METRIC_WAIT_TIMED_OUT: [],
        C.METRIC_ENDED: [],
        C.METRIC_WAIT_STARTED: [{"workflow": "welcome-series", "step": "settle-in"}],
        C.METRIC_MESSAGE_SENT: [
            {"workflow": "welcome-series", "step": "welcome-sms"},
            {"workflow": "welcome-series", "step": "welcome-email"},
        ],
        C.METRIC_MESSAGE_OPENED: [{"workflow": "welcome-series", "step": "welcome-email"}],
        C.METRIC_MESSAGE_CLICKED: [{"workflow": "welcome-series", "step": "welcome-email"}],
    }


def test_metric_catalogue_names_branches_goals_timeouts_and_unnamed_ends(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        """\
name: wf
triggers: [{event: order.placed}]
steps:
  - id: check
    if: {has_tag: vip}
    then:
      - end: vip
  - id: pick
    split:
      - {name: a, percent: 50, steps: [{id: mail-a, send_email: {template: a}}]}
      - {name: b, percent: 50}
  - id: await
    wait_until: {event: order.paid, timeout: 1d}
  - id: paid
    goal: {event: order.paid}
  - goto: check
"""
    )
    metrics = workflow_metrics(load_workflow(tmp_path / "wf.yaml"))
    dims = {name: [dict(k.dimensions) for k in keys] for name, keys in metrics.items()}
    wf = {"workflow": "wf"}
    assert dims[C.METRIC_BRANCH_TAKEN] == [
        {**wf, "step": "check", "branch": "then"},
        {**wf, "step": "check", "branch": "else"},
        {**wf, "step": "pick", "branch": "a"},
        {**wf, "step": "pick", "branch": "b"},
    ]
    assert dims[C.METRIC_STEP_COMPLETED] == [{**wf, "step": "mail-a"}]
    assert dims[C.METRIC_GOAL_REACHED] == [{**wf, "step": "paid"}]
    assert dims[C.METRIC_WAIT_TIMED_OUT] == [{**wf, "step": "await"}]
    assert dims[C.METRIC_WAIT_STARTED] == [{**wf, "step": "await"}]
    assert dims[C.METRIC_MESSAGE_SENT] == dims[C.METRIC_MESSAGE_OPENED] == [{**wf, "step": "mail-a"}]
    assert dims[C.METRIC_ENDED] == [
        {**wf, "step": "end-0-then-0", "reason": "end_step"},  # the compiler's id for an unnamed end
        {**wf, "step": "loop-limit", "reason": "loop_limit"},  # there is a go-to
    ]


def test_a_changed_definition_gets_a_new_version_digest_and_samples_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "welcome.yaml").write_text(WELCOME)
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "events.jsonl").write_text("{}\n")
    (before,) = load_workflows(tmp_path)
    assert json.loads(before.definition)["StartAt"] == C.STATE_ENTRY
    assert "${StepRunnerArn}" in before.definition
    (again,) = load_workflows(tmp_path)
    assert again.digest == before.digest
    (tmp_path / "welcome.yaml").write_text(WELCOME.replace("10m", "20m"))
    (after,) = load_workflows(tmp_path)
    assert after.digest != before.digest


def test_two_files_may_not_name_the_same_workflow(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(WELCOME)
    (tmp_path / "b.yml").write_text(WELCOME)
    with pytest.raises(ValueError, match="also the name") as err:
        load_workflows(tmp_path)
    # Once: lint_together, which also finds duplicate names, is not asked about the second file.
    assert (
        err.value.args[0] == f"{tmp_path / 'b.yml'}: workflow name 'welcome' is also the name in {tmp_path / 'a.yaml'}"
    )


SPLIT_90 = """\
name: ab-test
triggers: [{event: list.subscribed}]
steps:
  - id: pick
    split:
      - {name: a, percent: 50, steps: [{id: mail-a, send_email: {template: a}}]}
      - {name: b, percent: 40, steps: [{id: mail-b, send_email: {template: b}}]}
"""

GOTO_NOT_LAST = """\
name: vip-skip
triggers: [{event: list.subscribed}]
steps:
  - id: check
    if: {has_tag: vip}
    then:
      - id: jump
        goto: thanks
      - id: skipped
        send_email: {template: skipped}
  - id: thanks
    send_email: {template: thanks}
"""


def test_synth_refuses_workflows_that_fail_lint_with_every_problem_as_validate_words_it(tmp_path: Path) -> None:
    (tmp_path / "ab.yaml").write_text(SPLIT_90)
    (tmp_path / "vip.yaml").write_text(GOTO_NOT_LAST)
    (tmp_path / "welcome.yaml").write_text(WELCOME)  # a clean file beside them does not make the folder pass
    with pytest.raises(WorkflowLintError) as err:
        load_workflows(tmp_path)
    lines = [
        f"{tmp_path / 'ab.yaml'}: step pick, field split: the paths' percent add up to 90, not 100",
        f"{tmp_path / 'vip.yaml'}: step jump, field goto: a go-to must be the last step of its list; "
        "the step after it is skipped",
        f"{tmp_path / 'vip.yaml'}: step skipped: never runs: it comes after 'jump' in the same list",
    ]
    assert err.value.problems == lines
    assert str(err.value) == "\n".join(lines)
    assert isinstance(err.value, ValueError)
    # The same lines as `stepwise validate` prints for the folder.
    validate = subprocess.run(
        [sys.executable, "-m", "stepwise.cli", "validate", str(tmp_path)], capture_output=True, text=True, cwd=REPO
    )
    assert validate.returncode == 1 and validate.stdout.splitlines()[:-1] == lines


def test_clean_workflows_naming_each_other_still_load(tmp_path: Path) -> None:
    (tmp_path / "welcome.yaml").write_text(WELCOME)
    (tmp_path / "onboard.yaml").write_text(
        "name: onboard\ntriggers: [{event: order.placed}]\nsteps:\n"
        "  - id: start-welcome\n    start_workflow: {workflow: welcome, at: hello}\n"
    )
    assert sorted(c.name for c in load_workflows(tmp_path)) == ["onboard", "welcome"]


def test_a_workflow_naming_one_no_file_defines_is_refused(tmp_path: Path) -> None:
    (tmp_path / "welcome.yaml").write_text(WELCOME)
    (tmp_path / "onboard.yaml").write_text(
        "name: onboard\ntriggers: [{event: order.placed}]\nsteps:\n"
        "  - id: start-welcome\n    start_workflow: {workflow: welcome-series}\n"
    )
    with pytest.raises(WorkflowLintError) as err:
        load_workflows(tmp_path)
    assert err.value.problems == [
        f"{tmp_path / 'onboard.yaml'}: step start-welcome, field start_workflow.workflow: "
        "no workflow file defines 'welcome-series'"
    ]


def test_cdk_app_prints_the_problems_without_a_traceback_and_fails(tmp_path: Path) -> None:
    (tmp_path / "ab.yaml").write_text(SPLIT_90)
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"workflows": str(tmp_path)}), "CDK_OUTDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "infra/app.py"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-2:] == [
        "Refused to synthesize: 1 problem in the workflow files (`stepwise validate` reports the same):",
        f"{tmp_path / 'ab.yaml'}: step pick, field split: the paths' percent add up to 90, not 100",
    ]


def test_cdk_json_runs_the_app_with_the_documented_context() -> None:
    from infra.config import (
        CTX_ALARM_EMAIL,
        CTX_API_THROTTLE_BURST,
        CTX_API_THROTTLE_RATE,
        CTX_EMAIL_FROM,
        CTX_POWERTOOLS_LAYER_VERSION,
        CTX_SMS_ORIGINATION,
        CTX_STAGE,
        CTX_UNSUBSCRIBE_MAIL_DOMAIN,
        CTX_WEBHOOK_ALLOW,
        CTX_WORKFLOWS,
    )

    cdk = json.loads((REPO / "cdk.json").read_text())
    interpreter, script = cdk["app"].split()
    assert (REPO / script).is_file() and interpreter.startswith(".venv/")
    assert cdk["context"] == {
        CTX_STAGE: "dev",
        CTX_WORKFLOWS: "workflows",
        CTX_ALARM_EMAIL: "",
        CTX_EMAIL_FROM: "",  # the operator's: required (and checked) when workflows send
        CTX_SMS_ORIGINATION: "",
        CTX_API_THROTTLE_RATE: 50,
        CTX_API_THROTTLE_BURST: 100,
        CTX_UNSUBSCRIBE_MAIL_DOMAIN: "",  # mailto: unsubscribes are received only once a domain is named
        CTX_WEBHOOK_ALLOW: [],  # call_webhook: https to public addresses only
    }
    readme = (REPO / "README.md").read_text()
    for key in (CTX_STAGE, CTX_WORKFLOWS, CTX_ALARM_EMAIL, CTX_POWERTOOLS_LAYER_VERSION):
        assert f"| `{key}` |" in readme, key
    assert StackConfig.model_validate(cdk["context"]) == StackConfig()


def test_cdk_app_refuses_workflows_that_send_without_a_sending_identity_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "welcome.yaml").write_text(WELCOME)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hello.html").write_text("---\nsubject: Hello\n---\n<p>Hello</p>\n")
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"workflows": str(tmp_path)}), "CDK_OUTDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "infra/app.py"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "Refused to synthesize: context value email_from is required: workflow(s) welcome send messages; deploy "
        "with -c email_from=ADDRESS, an address whose domain (or the address itself) is a verified SES identity"
    )
