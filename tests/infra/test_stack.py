"""The synthesized stack: what `cdk deploy` would create, asserted on the template (see conftest.synth)."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from functions.step_runner.handler import Settings, emit_metric
from infra.constructs.observability import workflow_metrics
from infra.constructs.state_machines import load_workflows
from shared import constants as C
from shared.store.contacts import table_definition
from shared.webhooks import WebhookPolicy, WebhookRefused
from shared.workflow.compiler import compile_workflow
from shared.workflow.model import DEPLOYMENT_FILE, load_workflow, workflow_files
from tests.infra.conftest import REPO, Synth

WORKFLOWS = workflow_files(REPO / "workflows")
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:stepwise-dev-step-runner"


def _machines(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    """Workflow name -> (logical id, properties) of its state machine (not the broadcast machine's)."""
    out = {}
    for lid, r in synth.of_type("AWS::StepFunctions::StateMachine").items():
        name = r["Properties"]["StateMachineName"]
        if name.startswith("stepwise-dev-"):
            out[name.removeprefix("stepwise-dev-")] = (lid, r["Properties"])
    return out


def _step_runner(synth: Synth) -> dict[str, Any]:
    return synth.resources[synth.logical_id(synth.stack.step_runner.function)]


def _policies_of(synth: Synth, role_id: str) -> list[dict[str, Any]]:
    return [
        p["Properties"]
        for p in synth.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]


# ---- storage -------------------------------------------------------------------------------------


def test_table_is_the_contact_store_definition_with_ttl_stream_pitr_and_encryption(synth: Synth) -> None:
    spec = table_definition("any")
    (table,) = synth.of_type("AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["KeySchema"] == spec["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(spec["AttributeDefinitions"], key=str)
    assert props["GlobalSecondaryIndexes"] == spec["GlobalSecondaryIndexes"]
    assert props["GlobalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": C.TTL_ATTRIBUTE, "Enabled": True}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}  # KMS with the AWS-managed key
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


# ---- step runner ---------------------------------------------------------------------------------


def test_step_runner_policy_is_exactly_what_its_code_calls(synth: Synth) -> None:
    role = synth.logical_id(synth.stack.step_runner.role)
    table = synth.logical_id(synth.stack.storage.table)
    logs = synth.logical_id(synth.stack.step_runner.log_group)
    (role_props,) = [r["Properties"] for lid, r in synth.resources.items() if lid == role]
    assert "ManagedPolicyArns" not in role_props and "Policies" not in role_props
    assert role_props["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
    ]
    (policy,) = _policies_of(synth, role)
    statements = synth.resolve(policy["PolicyDocument"]["Statement"])
    assert statements == [
        # Its own log group and tracing first, as every StepwiseFunction's (infra/constructs/function.py).
        {"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow", "Resource": f"<{logs}.Arn>"},
        {"Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Effect": "Allow", "Resource": "*"},
        {
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:ConditionCheckItem",
                "dynamodb:Query",
            ],
            "Effect": "Allow",
            "Resource": f"<{table}.Arn>",  # the table only: the step runner never reads the GSI
        },
        {
            "Action": ["states:StartExecution", "states:SendTaskSuccess", "states:DescribeStateMachine"],
            "Effect": "Allow",
            "Resource": "arn:aws:states:eu-west-1:123456789012:stateMachine:stepwise-dev-*",
        },
        {
            "Action": ["states:DescribeExecution", "states:StopExecution"],
            "Effect": "Allow",
            "Resource": "arn:aws:states:eu-west-1:123456789012:execution:stepwise-dev-*:*",
        },
    ]


def test_every_machine_the_step_runner_starts_is_covered_and_no_other_stage_is(synth: Synth) -> None:
    fn = _step_runner(synth)
    template = synth.resolve(fn["Properties"]["Environment"]["Variables"][C.ENV_STATE_MACHINE_ARN_TEMPLATE])
    role = synth.logical_id(synth.stack.step_runner.role)
    (policy,) = _policies_of(synth, role)
    statements = synth.resolve(policy["PolicyDocument"]["Statement"])
    by_action = {a: st["Resource"] for st in statements for a in st["Action"]}
    machines, executions = by_action["states:StartExecution"], by_action["states:DescribeExecution"]
    for wf in _machines(synth):
        alias = template.replace("{workflow}", wf)
        assert alias == f"arn:aws:states:eu-west-1:123456789012:stateMachine:stepwise-dev-{wf}:{C.STATE_MACHINE_ALIAS}"
        # Step Functions authorises an alias through its state machine's unqualified ARN.
        assert fnmatch.fnmatchcase(alias.removesuffix(f":{C.STATE_MACHINE_ALIAS}"), machines)
        assert fnmatch.fnmatchcase(f"arn:aws:states:eu-west-1:123456789012:execution:stepwise-dev-{wf}:x-1", executions)
    assert not fnmatch.fnmatchcase("arn:aws:states:eu-west-1:123456789012:stateMachine:stepwise-dev2-a", machines)


def test_step_runner_environment_is_what_its_settings_read(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    fn = _step_runner(synth)
    env = synth.resolve(fn["Properties"]["Environment"]["Variables"])
    table = synth.logical_id(synth.stack.storage.table)
    assert env == {
        C.ENV_TABLE_NAME: f"<{table}>",
        C.ENV_STATE_MACHINE_ARN_TEMPLATE: (
            "arn:aws:states:eu-west-1:123456789012:stateMachine:stepwise-dev-{workflow}:live"
        ),
        C.ENV_METRICS_NAMESPACE: C.METRICS_NAMESPACE,
        C.ENV_STAGE: "dev",
        C.ENV_ENTRY_PLANS: C.ENTRY_PLANS_FILE,
    }
    for key in (*env, C.ENV_POWERTOOLS_SERVICE, "POWERTOOLS_METRICS_DISABLED"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert (settings.table_name, settings.state_machine_arn_template) == (
        env[C.ENV_TABLE_NAME],
        env[C.ENV_STATE_MACHINE_ARN_TEMPLATE],
    )
    assert settings.namespace == C.METRICS_NAMESPACE and settings.metrics_enabled
    assert settings.entry_plans == C.ENTRY_PLANS_FILE


def test_step_runner_function_code_layers_and_runtime(synth: Synth) -> None:
    fn = _step_runner(synth)
    props = synth.resolve(fn["Properties"])
    assert props["Handler"] == "functions.step_runner.handler.handler"
    assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["x86_64"])
    assert props["TracingConfig"] == {"Mode": "Active"}
    # Powertools only: the step runner needs nothing else (infra/requirements/step_runner.txt names no package,
    # PyYAML is compile time only), so no dependency layer is built or attached.
    (powertools,) = props["Layers"]
    assert powertools.startswith(
        "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:"
    )
    assert synth.stack.step_runner.deps is None
    assert not [
        r
        for r in synth.resources.values()
        if r["Type"] == "AWS::Lambda::LayerVersion" and "Step runner" in str(r["Properties"].get("Description", ""))
    ]


def test_emf_dimensions_under_the_deployed_environment_match_the_dashboards(
    synth: Synth, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fn = _step_runner(synth)
    env = synth.resolve(fn["Properties"]["Environment"]["Variables"])
    monkeypatch.delenv(C.ENV_POWERTOOLS_SERVICE, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for path in WORKFLOWS:
        for keys in workflow_metrics(load_workflow(path)).values():
            for key in keys:
                dims = dict(key.dimensions)
                extra = {k: v for k, v in dims.items() if k not in ("workflow", "step")}
                emit_metric(env[C.ENV_METRICS_NAMESPACE])(key.name, dims["workflow"], dims["step"], extra)
                blob = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
                (directive,) = blob["_aws"]["CloudWatchMetrics"]
                assert directive["Namespace"] == C.METRICS_NAMESPACE
                assert directive["Dimensions"] == [list(dims)], key
                assert {k: blob[k] for k in dims} == dims


# ---- state machines ------------------------------------------------------------------------------


def test_one_machine_per_workflow_file_and_samples_are_not_workflows(synth: Synth) -> None:
    assert sorted(_machines(synth)) == sorted(load_workflow(p).name for p in WORKFLOWS)
    # Every workflow file of workflows/ is deployed; the samples folder (event files) and the deployment's
    # settings file (stepwise.yaml: form types, budgets) are not.
    settings = {DEPLOYMENT_FILE, "stepwise.yml"}
    shipped = sorted(
        p for p in (REPO / "workflows").iterdir() if p.suffix in (".yaml", ".yml") and p.name not in settings
    )
    assert (REPO / "workflows" / DEPLOYMENT_FILE).is_file()
    assert shipped and shipped == WORKFLOWS and not any("samples" in p.parts for p in WORKFLOWS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_definition_is_the_compilers_output(synth: Synth, path: Any) -> None:
    wf = load_workflow(path)
    _, props = _machines(synth)[wf.name]
    fn = synth.logical_id(synth.stack.step_runner.function)
    assert props["DefinitionSubstitutions"] == {"StepRunnerArn": {"Fn::GetAtt": [fn, "Arn"]}}
    deployed = json.loads(props["DefinitionString"].replace("${StepRunnerArn}", FUNCTION_ARN))
    assert deployed == compile_workflow(wf, FUNCTION_ARN)


def test_machines_are_standard_logged_traced_and_share_one_role(synth: Synth) -> None:
    role = synth.logical_id(synth.stack.state_machines.role)
    for wf, (_lid, props) in _machines(synth).items():
        assert props["StateMachineType"] == "STANDARD"
        assert props["TracingConfiguration"] == {"Enabled": True}
        logging = synth.resolve(props["LoggingConfiguration"])
        assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is False
        (dest,) = logging["Destinations"]
        group = dest["CloudWatchLogsLogGroup"]["LogGroupArn"].strip("<>").removesuffix(".Arn")
        assert synth.resources[group]["Properties"]["LogGroupName"] == f"/aws/vendedlogs/states/stepwise-dev-{wf}"
        assert props["RoleArn"] == {"Fn::GetAtt": [role, "Arn"]}


def test_machine_role_may_invoke_only_the_step_runner(synth: Synth) -> None:
    role = synth.logical_id(synth.stack.state_machines.role)
    fn = synth.logical_id(synth.stack.step_runner.function)
    (policy,) = _policies_of(synth, role)
    statements = synth.resolve(policy["PolicyDocument"]["Statement"])
    invoke = [s for s in statements if any(a.startswith("lambda:") for a in _actions(s))]
    assert invoke == [{"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": f"<{fn}.Arn>"}]
    others = {a for s in statements if s not in invoke for a in _actions(s)}
    assert all(a.startswith(("logs:", "xray:")) for a in others), others
    assert not any(a.startswith("logs:") and a.endswith(("PutLogEvents", "GetLogEvents")) for a in others)


def _actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else list(a)


def test_each_machine_publishes_a_version_per_definition_and_a_live_alias(synth: Synth) -> None:
    versions = synth.of_type("AWS::StepFunctions::StateMachineVersion")
    aliases = synth.of_type("AWS::StepFunctions::StateMachineAlias")
    digests = {c.name: c.digest for c in load_workflows(REPO / "workflows")}
    for wf, (lid, _) in _machines(synth).items():
        (vid,) = [k for k, v in versions.items() if v["Properties"]["StateMachineArn"] == {"Ref": lid}]
        version = versions[vid]
        assert version["Properties"]["StateMachineRevisionId"] == {"Fn::GetAtt": [lid, "StateMachineRevisionId"]}
        assert version["Properties"]["Description"] == f"{wf} definition {digests[wf]}"
        assert version["DeletionPolicy"] == version["UpdateReplacePolicy"] == "Retain"
        (alias,) = [
            a["Properties"]
            for a in aliases.values()
            if a["Properties"]["RoutingConfiguration"][0]["StateMachineVersionArn"] == {"Fn::GetAtt": [vid, "Arn"]}
        ]
        assert alias["Name"] == C.STATE_MACHINE_ALIAS
        assert alias["RoutingConfiguration"] == [
            {"StateMachineVersionArn": {"Fn::GetAtt": [vid, "Arn"]}, "Weight": 100}
        ]


# ---- observability -------------------------------------------------------------------------------


def _dashboard_metrics(body: dict[str, Any]) -> tuple[set[tuple[str, str, frozenset[tuple[str, str]]]], list[str]]:
    """(namespace, metric, dimensions) of every metric on a dashboard, and every math expression."""
    metrics, expressions = set(), []
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            if isinstance(row[0], dict):
                expressions.append(row[0]["expression"])
                continue
            names = [x for x in row if isinstance(x, str)]
            if names[0] == ".":
                continue
            ns, name, *dims = names
            metrics.add((ns, name, frozenset(zip(dims[::2], dims[1::2], strict=True))))
    return metrics, expressions


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_dashboard_per_workflow_shows_its_metrics_executions_and_funnel(synth: Synth, path: Any) -> None:
    wf = load_workflow(path)
    lid, _ = _machines(synth)[wf.name]
    (dashboard,) = [
        d["Properties"]
        for d in synth.of_type("AWS::CloudWatch::Dashboard").values()
        if d["Properties"]["DashboardName"] == f"stepwise-dev-{wf.name}"
    ]
    body = json.loads(synth.resolve(dashboard["DashboardBody"]))
    metrics, expressions = _dashboard_metrics(body)
    expected = workflow_metrics(wf)
    for keys in expected.values():
        for key in keys:
            assert (C.METRICS_NAMESPACE, key.name, frozenset(key.dimensions)) in metrics, key
    assert {m[1] for m in metrics if m[0] == C.METRICS_NAMESPACE} == {n for n, keys in expected.items() if keys}
    machine = frozenset({("StateMachineArn", f"<{lid}>")})
    for name in (
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
    ):
        assert ("AWS/States", name, machine) in metrics
    goals = len(expected[C.METRIC_GOAL_REACHED])
    steps = len(expected[C.METRIC_STEP_COMPLETED])
    assert sorted(expressions) == sorted(
        [f"100 * g{i} / entered" for i in range(goals)] + [f"100 * s{i} / entered" for i in range(steps)]
    )
    assert expressions, "every example workflow has an action step or a goal"


def test_alarms_per_workflow_and_on_the_step_runner_all_notify_the_topic(synth: Synth) -> None:
    alarms = [a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()]
    topic = synth.logical_id(synth.stack.observability.topic)
    fn = synth.logical_id(synth.stack.step_runner.function)

    def find(namespace: str, metric: str, dims: list[dict[str, Any]]) -> dict[str, Any]:
        (alarm,) = [
            a for a in alarms if (a["Namespace"], a["MetricName"], a["Dimensions"]) == (namespace, metric, dims)
        ]
        return alarm

    for lid, _ in _machines(synth).values():
        dims = [{"Name": "StateMachineArn", "Value": {"Ref": lid}}]
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled"):
            alarm = find("AWS/States", metric, dims)
            assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    find("AWS/Lambda", "Errors", [{"Name": "FunctionName", "Value": {"Ref": fn}}])
    find("AWS/Lambda", "Throttles", [{"Name": "FunctionName", "Value": {"Ref": fn}}])
    # + the ways in and out's (tests/infra/test_trigger_router.py): 2 dead-letter queues, intake 5xx, 7 functions.
    assert len(alarms) == 3 * len(_machines(synth)) + 2 + 10
    for alarm in alarms:
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": topic}]
        assert alarm["TreatMissingData"] == "notBreaching"


def test_alarm_topic_is_encrypted_and_refuses_plain_http(synth: Synth) -> None:
    t = synth.assertions
    topic = synth.logical_id(synth.stack.observability.topic)
    key = synth.resources[topic]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    assert synth.resources[key]["Properties"]["EnableKeyRotation"] is True
    key_policy = synth.resources[key]["Properties"]["KeyPolicy"]["Statement"]
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for s in key_policy)
    t.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    t.resource_count_is("AWS::SNS::Subscription", 0)  # cdk.json's alarm_email is empty


# ---- cdk-nag ------------------------------------------------------------------------------------


def test_cdk_nag_has_no_unacknowledged_finding_and_no_stale_acknowledgement(synth: Synth) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    (pack,) = report["pluginReports"]
    assert (pack["pluginName"], pack["conclusion"], pack["violations"]) == ("AwsSolutions", "success", [])
    used = {(v["acknowledgedId"], v["acknowledgedAt"]) for v in pack["suppressedViolations"]}
    metadata = json.loads((synth.outdir / f"{synth.stack.artifact_id}.metadata.json").read_text())
    given = {
        (rule, path.lstrip("/"), reason)
        for path, entries in metadata.items()
        for e in entries
        if e["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in e["data"].items()
    }
    assert given, "the stack acknowledges some findings"
    for rule, path, reason in given:
        assert (rule, path) in used, f"{rule} at {path} acknowledges nothing any more"
        assert len(reason) >= 40


def test_step_runner_may_read_exactly_the_webhook_secrets_the_workflows_name_and_gets_the_allowlist(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.infra.conftest import synthesize

    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "hook.yaml").write_text(
        "name: hook\ntriggers: [{event: order.placed}]\nsteps:\n"
        "  - id: crm\n    call_webhook: {url: 'https://crm.example.com/hook', secret: /stepwise/dev/crm-signing}\n"
        "  - id: erp\n    call_webhook: {url: 'https://erp.example.com/hook', secret: erp-signing}\n"
        "  - id: plain\n    call_webhook: {url: 'https://erp.example.com/plain'}\n"
    )
    # cdk.json's webhook_allow (this synth carries one, to save a synth of its own) reaches the step runner as
    # STEPWISE_WEBHOOK_ALLOW, and its Settings build the policy that lets those hosts through (the default synth
    # has no such variable: test_step_runner_environment_is_what_its_settings_read).
    synth = synthesize(tmp_path / "out", workflows=str(folder), webhook_allow=["crm.internal", "10.1.0.0/16"])
    env = synth.resolve(_step_runner(synth)["Properties"]["Environment"]["Variables"])
    assert env[C.ENV_WEBHOOK_ALLOW] == "crm.internal 10.1.0.0/16"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    policy_of_hooks = WebhookPolicy.from_allowlist(settings.webhook_allow, lambda host, port: ["10.1.2.3"])
    assert policy_of_hooks.check("http://crm.internal/hook") == ("http", "crm.internal", 80, "10.1.2.3")
    assert policy_of_hooks.check("https://erp.example.com/hook")[3] == "10.1.2.3"  # resolves into 10.1.0.0/16
    with pytest.raises(WebhookRefused, match=r"resolves to 10\.9\.0\.1, a private address"):
        WebhookPolicy.from_allowlist(settings.webhook_allow, lambda host, port: ["10.9.0.1"]).check(
            "https://erp.example.com/hook"
        )
    (policy,) = _policies_of(synth, synth.logical_id(synth.stack.step_runner.role))
    statements = synth.resolve(policy["PolicyDocument"]["Statement"])
    assert {
        "Action": "ssm:GetParameter",
        "Effect": "Allow",
        "Resource": [
            "arn:aws:ssm:eu-west-1:123456789012:parameter/stepwise/dev/crm-signing",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/erp-signing",
        ],
    } in statements
    assert {
        "Action": "kms:Decrypt",
        "Condition": {"StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}},
        "Effect": "Allow",
        "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*",
    } in statements


def test_step_runner_reads_no_parameter_when_no_workflow_signs(synth: Synth) -> None:
    (policy,) = _policies_of(synth, synth.logical_id(synth.stack.step_runner.role))
    assert "ssm:" not in json.dumps(policy)  # the examples' webhooks are unsigned
