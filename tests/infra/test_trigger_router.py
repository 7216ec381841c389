"""The ways in, as deployed: the HTTP API, the intake and router functions, queues, archive, schedules, broadcast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.trigger_router.intake_settings import IntakeSettings
from functions.trigger_router.settings import RouterSettings
from infra.constructs import trigger_router as tr
from shared import constants as C
from shared.runtime import schedules
from shared.runtime.broadcast import KIND_FIRE, schedule_all, schedule_specs
from shared.runtime.engagement import KIND_ENGAGEMENT
from shared.runtime.workflows_file import load_workflows
from shared.workflow import runtime
from shared.workflow.broadcast import broadcast_definition
from shared.workflow.model import load_workflow, workflow_files
from tests.infra.conftest import REPO, Synth, synthesize

ARN = "arn:aws:{}:eu-west-1:123456789012:{}"
XRAY = {"Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Effect": "Allow", "Resource": "*"}
STREAM_PLUMBING = {
    "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
    "Effect": "Allow",
}


def staged_asset(synth: Synth, function: Any) -> Path:
    """The folder `cdk synth` staged a function's code from (cdk.out/asset.<hash>, the hash its S3Key names)."""
    key = _props(synth, function)["Code"]["S3Key"]
    return synth.outdir / f"asset.{key.removesuffix('.zip')}"


def _props(synth: Synth, construct: Any) -> dict[str, Any]:
    return synth.resources[synth.logical_id(construct)]["Properties"]  # type: ignore[no-any-return]


def _statements(synth: Synth, role: Any) -> list[dict[str, Any]]:
    rid = synth.logical_id(role)
    (policy,) = [p for p in synth.of_type("AWS::IAM::Policy").values() if {"Ref": rid} in p["Properties"]["Roles"]]
    return synth.resolve(policy["Properties"]["PolicyDocument"]["Statement"])  # type: ignore[no-any-return]


def _ids(synth: Synth) -> dict[str, str]:
    r = synth.stack.trigger_router
    return {
        "table": synth.logical_id(synth.stack.storage.table),
        "bucket": synth.logical_id(r.bucket),
        "queue": synth.logical_id(r.queue),
        "failed": synth.logical_id(r.failed_events),
        "scheduler_role": synth.logical_id(r.scheduler_role),
    }


def _kms_via_ssm() -> dict[str, Any]:
    return {
        "Action": "kms:Decrypt",
        "Condition": {"StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}},
        "Effect": "Allow",
        "Resource": ARN.format("kms", "key/*"),
    }


def _env(synth: Synth, fn: Any) -> dict[str, str]:
    return synth.resolve(_props(synth, fn.function)["Environment"]["Variables"])  # type: ignore[no-any-return]


def _from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], settings: Any) -> Any:
    for key in [k for k in __import__("os").environ if k.startswith("STEPWISE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return settings.from_env()


# ---- IAM ------------------------------------------------------------------------------------------------


def test_intake_policy_is_exact(synth: Synth) -> None:
    i = _ids(synth)
    fn = synth.stack.trigger_router.intake
    logs = synth.logical_id(fn.log_group)
    assert _statements(synth, fn.role) == [
        {"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow", "Resource": f"<{logs}.Arn>"},
        XRAY,
        {"Action": list(tr.INTAKE_TABLE_ACTIONS), "Effect": "Allow", "Resource": f"<{i['table']}.Arn>"},
        {
            "Action": "s3:PutObject",
            "Effect": "Allow",
            "Resource": [f"<{i['bucket']}.Arn>/deliveries/*", f"<{i['bucket']}.Arn>/dead-letters/*"],
        },
        {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": f"<{i['queue']}.Arn>"},
        {
            "Action": "ssm:GetParameter",
            "Effect": "Allow",
            "Resource": [
                ARN.format("ssm", "parameter/stepwise/dev/webhooks/*"),
                ARN.format("ssm", "parameter/stepwise/dev/api-key"),
                ARN.format("ssm", "parameter/stepwise/dev/unsubscribe-key"),
            ],
        },
        _kms_via_ssm(),
    ]


def _router_statements(i: dict[str, str], logs: str) -> list[dict[str, Any]]:
    bucket = i["bucket"]
    return [
        {"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow", "Resource": f"<{logs}.Arn>"},
        XRAY,
        {"Action": list(tr.ROUTER_TABLE_ACTIONS), "Effect": "Allow", "Resource": f"<{i['table']}.Arn>"},
        {"Action": "dynamodb:Query", "Effect": "Allow", "Resource": f"<{i['table']}.Arn>/index/{C.GSI1}"},
        {
            "Action": ["states:StartExecution", "states:SendTaskSuccess", "states:DescribeStateMachine"],
            "Effect": "Allow",
            "Resource": ARN.format("states", "stateMachine:stepwise-dev-*"),
        },
        {
            "Action": ["states:DescribeExecution", "states:StopExecution"],
            "Effect": "Allow",
            "Resource": ARN.format("states", "execution:stepwise-dev-*:*"),
        },
        {
            "Action": "states:StartExecution",
            "Effect": "Allow",
            "Resource": ARN.format("states", "stateMachine:stepwise-dev_broadcast"),
        },
        {
            "Action": "states:DescribeExecution",
            "Effect": "Allow",
            "Resource": ARN.format("states", "execution:stepwise-dev_broadcast:*"),
        },
        {
            "Action": "s3:GetObject",
            "Effect": "Allow",
            "Resource": [f"<{bucket}.Arn>/deliveries/*", f"<{bucket}.Arn>/broadcasts/*"],
        },
        {
            "Action": "s3:PutObject",
            "Effect": "Allow",
            "Resource": [f"<{bucket}.Arn>/dead-letters/*", f"<{bucket}.Arn>/broadcasts/*"],
        },
        {
            "Action": ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"],
            "Effect": "Allow",
            "Resource": ARN.format("scheduler", "schedule/stepwise-dev/*"),
        },
        {
            "Action": "iam:PassRole",
            "Condition": {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            "Effect": "Allow",
            "Resource": f"<{i['scheduler_role']}.Arn>",
        },
    ]


@pytest.mark.parametrize("key", ["queue", "stream", "status", "schedule", "feedback"])
def test_router_policies_are_exact_with_only_their_own_event_source_on_top(synth: Synth, key: str) -> None:
    i = _ids(synth)
    fn = synth.stack.trigger_router.routers[key]
    statements = _statements(synth, fn.role)
    common = _router_statements(i, synth.logical_id(fn.log_group))
    assert statements[: len(common)] == common
    source = statements[len(common) :]  # what the function's own event source adds
    if key == "queue":
        assert source == [
            {
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueUrl",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                ],
                "Effect": "Allow",
                "Resource": f"<{i['queue']}.Arn>",
            }
        ]
    elif key == "stream":
        assert source == [
            {
                "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                "Effect": "Allow",
                "Resource": f"<{i['failed']}.Arn>",
            },
            {"Action": "dynamodb:ListStreams", "Effect": "Allow", "Resource": "*"},
            {**STREAM_PLUMBING, "Resource": f"<{i['table']}.StreamArn>"},
        ]
    elif key == "feedback":
        # The reputation guard's alert (SnsAlert) on the alarm topic, encrypted with its key; nothing to read.
        topic = synth.logical_id(synth.stack.observability.topic)
        topic_key = synth.logical_id(synth.stack.observability.node.find_child("AlarmTopicKey"))
        assert source == [
            {"Action": "sns:Publish", "Effect": "Allow", "Resource": f"<{topic}>"},
            {"Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Effect": "Allow", "Resource": f"<{topic_key}.Arn>"},
        ]
    else:
        assert source == []  # invoked by EventBridge or Scheduler: nothing to read


def test_scheduler_role_only_invokes_the_schedule_handler_for_this_account(synth: Synth) -> None:
    r = synth.stack.trigger_router
    props = _props(synth, r.scheduler_role)
    assert props["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
        }
    ]
    assert _statements(synth, r.scheduler_role) == [
        {
            "Action": "lambda:InvokeFunction",
            "Effect": "Allow",
            "Resource": ARN.format("lambda", "function:stepwise-dev-router-schedule"),
        }
    ]
    schedule_fn = _props(synth, r.routers["schedule"].function)
    assert schedule_fn["FunctionName"] == "stepwise-dev-router-schedule"
    group = synth.of_type("AWS::Scheduler::ScheduleGroup")
    assert [g["Properties"]["Name"] for g in group.values()] == ["stepwise-dev"]


# ---- environment ------------------------------------------------------------------------------------------


def test_intake_environment_is_what_its_settings_read(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    i = _ids(synth)
    env = _env(synth, synth.stack.trigger_router.intake)
    settings = _from_env(monkeypatch, env, IntakeSettings)
    assert (settings.table_name, settings.archive_bucket, settings.queue_url) == (
        f"<{i['table']}>",
        f"<{i['bucket']}>",
        f"<{i['queue']}>",
    )
    assert (settings.secrets_prefix, settings.api_key_parameter) == ("/stepwise/dev", "/stepwise/dev/api-key")
    assert settings.namespace == C.METRICS_NAMESPACE
    assert env[C.ENV_UNSUBSCRIBE_KEY_PARAMETER] == "/stepwise/dev/unsubscribe-key"  # read by intake._unsubscribe
    assert C.ENV_POWERTOOLS_SERVICE not in env  # the metrics' dimensions are exactly the dashboards'


@pytest.mark.parametrize("key", ["queue", "stream", "status", "schedule", "feedback"])
def test_router_environment_is_what_its_settings_read(synth: Synth, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    i = _ids(synth)
    env = _env(synth, synth.stack.trigger_router.routers[key])
    settings = _from_env(monkeypatch, env, RouterSettings)
    assert settings.table_name == f"<{i['table']}>" and settings.archive_bucket == f"<{i['bucket']}>"
    assert settings.state_machine_arn_template == ARN.format("states", "stateMachine:stepwise-dev-{workflow}:live")
    assert (settings.workflows, settings.entry_plans) == (C.WORKFLOWS_FILE, C.ENTRY_PLANS_FILE)
    assert settings.max_receive_count == (tr.MAX_RECEIVE_COUNT if key == "queue" else None)
    assert env[C.ENV_SCHEDULE_GROUP] == "stepwise-dev"
    assert env[C.ENV_SCHEDULE_TARGET_ARN] == ARN.format("lambda", "function:stepwise-dev-router-schedule")
    assert env[C.ENV_SCHEDULER_ROLE_ARN] == f"<{i['scheduler_role']}.Arn>"
    assert env[C.ENV_BROADCAST_MACHINE_ARN] == ARN.format("states", "stateMachine:stepwise-dev_broadcast")
    if key == "feedback":  # the reputation guard: the sender's configuration set, the alarm topic
        topic = synth.logical_id(synth.stack.observability.topic)
        assert env[C.ENV_SES_CONFIGURATION_SET] == synth.stack.senders.configuration_set_name == "stepwise-dev"
        assert env[C.ENV_ALERT_TOPIC_ARN] == f"<{topic}>"
    else:
        assert C.ENV_SES_CONFIGURATION_SET not in env and C.ENV_ALERT_TOPIC_ARN not in env


def test_router_asset_carries_the_deployed_workflows_and_the_settings_find_them(synth: Synth) -> None:
    asset = staged_asset(synth, synth.stack.trigger_router.routers["queue"].function)
    deployed = {w.name: w for w in load_workflows(asset / C.WORKFLOWS_FILE)}
    expected = {w.name: w for w in (load_workflow(p) for p in workflow_files(REPO / "workflows"))}
    # The router reads the run-time forms (shared/workflow/runtime.py) of the validated models.
    assert deployed == {name: runtime.as_runtime(w) for name, w in expected.items()}
    assert json.loads((asset / C.ENTRY_PLANS_FILE).read_text()).keys() == expected.keys()
    assert (asset / "functions/trigger_router/router.py").exists() and not (asset / "functions/senders").exists()
    assert not (asset / "functions/step_runner").exists()


# ---- event sources and rules ----------------------------------------------------------------------------


def _mappings(synth: Synth, fn: Any) -> list[dict[str, Any]]:
    lid = synth.logical_id(fn.function)
    return [
        m["Properties"]
        for m in synth.of_type("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": lid}
    ]


def test_queue_consumer_reports_partial_failures_and_the_queue_redrives_after_five(synth: Synth) -> None:
    r = synth.stack.trigger_router
    i = _ids(synth)
    (mapping,) = _mappings(synth, r.routers["queue"])
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [i["queue"], "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = _props(synth, r.queue)
    dlq = synth.logical_id(r.dead_letters)
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}, "maxReceiveCount": 5}
    router_timeout = _props(synth, r.routers["queue"].function)["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * router_timeout
    for q in (r.queue, r.dead_letters, r.failed_events):
        assert _props(synth, q)["SqsManagedSseEnabled"] is True


def test_stream_consumer_gets_only_outbox_inserts_with_bisect_retries_and_a_failure_destination(synth: Synth) -> None:
    i = _ids(synth)
    (mapping,) = _mappings(synth, synth.stack.trigger_router.routers["stream"])
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [i["table"], "StreamArn"]}
    (pattern,) = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert pattern == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "EVENT#"}]}}}}
    assert mapping["BisectBatchOnFunctionError"] is True and mapping["MaximumRetryAttempts"] == tr.STREAM_RETRIES
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [i["failed"], "Arn"]}}}


def test_execution_status_rule_matches_this_stages_workflow_machines_as_they_end(synth: Synth) -> None:
    r = synth.stack.trigger_router
    rule = synth.resolve(_props(synth, r.status_rule))
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
            "stateMachineArn": [{"prefix": ARN.format("states", "stateMachine:stepwise-dev-")}],
        },
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == f"<{synth.logical_id(r.routers['status'].function)}.Arn>"
    assert target["DeadLetterConfig"] == {"Arn": f"<{synth.logical_id(r.failed_events)}.Arn>"}


# ---- archive ----------------------------------------------------------------------------------------------


def test_archive_bucket_is_private_encrypted_ssl_only_with_its_lifecycle(synth: Synth) -> None:
    r = synth.stack.trigger_router
    bucket = synth.resources[synth.logical_id(r.bucket)]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert {k: (v.get("Prefix"), v.get("ExpirationInDays")) for k, v in rules.items()} == {
        "deliveries": ("deliveries/", 30),
        "dead-letters": ("dead-letters/", 30),
        "broadcasts": ("broadcasts/", 7),
        "incomplete-uploads": (None, None),
    }
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synth.of_type("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": synth.logical_id(r.bucket)}
    ]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy)


# ---- HTTP API ---------------------------------------------------------------------------------------------


def test_api_routes_all_go_to_the_intake(synth: Synth) -> None:
    routes = [r["Properties"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()]
    assert sorted(r["RouteKey"] for r in routes) == sorted(
        [
            "POST /webhooks/{provider}",
            "POST /webhooks/{provider}/{token}",
            "POST /events",
            "GET /health",
            "GET /unsubscribe/{token}",
            "POST /unsubscribe/{token}",
        ]
    )
    (integration,) = synth.of_type("AWS::ApiGatewayV2::Integration").values()
    intake = synth.logical_id(synth.stack.trigger_router.intake.function)
    assert synth.resolve(integration["Properties"]["IntegrationUri"]) == f"<{intake}.Arn>"
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"


def test_access_log_never_holds_a_path_or_query_string_and_the_stage_is_throttled(synth: Synth) -> None:
    (stage,) = synth.of_type("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    fmt = props["AccessLogSettings"]["Format"]
    fields = json.loads(fmt)
    assert "$context.path" not in fmt and "querystring" not in fmt.lower() and "resourcePath" not in fmt
    assert fields["routeKey"] == "$context.routeKey"  # POST /webhooks/{provider}/{token}: the template only
    group = synth.logical_id(synth.stack.trigger_router.api_log_group)
    assert props["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": [group, "Arn"]}
    assert synth.resources[group]["Properties"]["RetentionInDays"] == 30
    assert props["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50}
    assert (props["StageName"], props["AutoDeploy"]) == ("$default", True)


# ---- broadcast --------------------------------------------------------------------------------------------


def test_broadcast_machine_is_the_distributed_map_invoking_the_schedule_handler(synth: Synth) -> None:
    r = synth.stack.trigger_router
    props = _props(synth, r.broadcast)
    assert props["StateMachineName"] == "stepwise-dev_broadcast"
    schedule = synth.logical_id(r.routers["schedule"].function)
    assert props["DefinitionSubstitutions"] == {tr.SCHEDULE_HANDLER_PLACEHOLDER: {"Fn::GetAtt": [schedule, "Arn"]}}
    fn_arn = ARN.format("lambda", "function:stepwise-dev-router-schedule")
    deployed = json.loads(props["DefinitionString"].replace("${ScheduleHandlerArn}", fn_arn))
    assert deployed == broadcast_definition(fn_arn)
    bucket = synth.logical_id(r.bucket)
    statements = _statements(synth, r.broadcast_role)
    assert statements[:4] == [
        {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": f"<{schedule}.Arn>"},
        {"Action": "s3:GetObject", "Effect": "Allow", "Resource": f"<{bucket}.Arn>/broadcasts/*"},
        {
            "Action": "states:StartExecution",
            "Effect": "Allow",
            "Resource": ARN.format("states", "stateMachine:stepwise-dev_broadcast"),
        },
        {
            "Action": ["states:DescribeExecution", "states:StopExecution"],
            "Effect": "Allow",
            "Resource": ARN.format("states", "execution:stepwise-dev_broadcast/*"),
        },
    ]
    rest = {a for s in statements[4:] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert all(a.startswith(("logs:", "xray:")) for a in rest), rest


# ---- schedules declared at deploy ----------------------------------------------------------------------


def _schedules(synth: Synth) -> list[dict[str, Any]]:
    return [synth.resolve(r["Properties"]) for r in synth.of_type("AWS::Scheduler::Schedule").values()]


def _one_time(synth: Synth) -> list[dict[str, Any]]:
    return [s for s in _schedules(synth) if s["ScheduleExpression"].startswith("at(")]


def test_engagement_checks_are_polled_every_five_minutes_by_the_schedule_handler(synth: Synth) -> None:
    i = _ids(synth)
    schedule_fn = synth.logical_id(synth.stack.trigger_router.routers["schedule"].function)
    (poll,) = [s for s in _schedules(synth) if s["Name"] == tr.ENGAGEMENT_SCHEDULE]
    assert poll["ScheduleExpression"] == "rate(5 minutes)"
    assert poll["GroupName"] == "stepwise-dev" and poll["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert "ActionAfterCompletion" not in poll  # recurring: kept
    assert (poll["Target"]["Arn"], poll["Target"]["RoleArn"]) == (
        f"<{schedule_fn}.Arn>",
        f"<{i['scheduler_role']}.Arn>",
    )
    assert json.loads(poll["Target"]["Input"]) == {"kind": KIND_ENGAGEMENT}
    assert KIND_ENGAGEMENT in schedules.kinds()  # the handler serves what the schedule sends
    (resource,) = [r for r in synth.of_type("AWS::Scheduler::Schedule").values() if "rate(" in str(r)]
    group = synth.stack.get_logical_id(synth.stack.trigger_router.schedule_group)
    assert group in resource["DependsOn"]
    # The role the schedule assumes may invoke exactly that function (test_scheduler_role_only_invokes_...).
    assert synth.resources[schedule_fn]["Properties"]["FunctionName"] == "stepwise-dev-router-schedule"


CAMPAIGN = """
name: {name}
triggers:
  - at: 2031-03-01T09:00:00+01:00
    list: customers
  - at: 2020-01-01T09:00:00Z
    list: customers
steps:
  - id: hi
    add_tag: winter
"""


def test_fixed_date_triggers_deploy_as_the_one_time_schedules_the_local_runtime_creates(tmp_path: Path) -> None:
    from aws_cdk.assertions import Annotations, Match
    from moto import mock_aws

    from shared.store.schedules import ScheduleStore

    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "winter.yaml").write_text(CAMPAIGN.format(name="winter"))
    synth = synthesize(tmp_path / "out", workflows=str(folder))
    i = _ids(synth)
    schedule_fn = synth.logical_id(synth.stack.trigger_router.routers["schedule"].function)
    (deployed,) = _one_time(synth)
    assert deployed["ScheduleExpression"] == "at(2031-03-01T08:00:00)"  # UTC
    # CloudFormation has no ActionAfterCompletion: the stack deletes it (the first deploy after its date).
    assert "ActionAfterCompletion" not in deployed
    assert deployed["GroupName"] == "stepwise-dev"
    assert deployed["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert (deployed["Target"]["Arn"], deployed["Target"]["RoleArn"]) == (
        f"<{schedule_fn}.Arn>",
        f"<{i['scheduler_role']}.Arn>",
    )
    payload = json.loads(deployed["Target"]["Input"])
    assert payload == {"kind": KIND_FIRE, "workflow": "winter", "at": "2031-03-01T09:00:00+01:00", "list": "customers"}

    # What the local runtime creates for the same workflow (broadcast.schedule_all on moto's Scheduler): the same
    # name, expression and input, so the deployed schedule and a local one are the same schedule.
    with mock_aws():
        import boto3

        client = boto3.client("scheduler", region_name="us-east-1")
        store = ScheduleStore(client, "g", "arn:aws:lambda:us-east-1:123456789012:function:f", "arn:aws:iam::1:role/r")
        store.create_group()
        schedule_all([w.workflow for w in synth.stack.workflows], schedules.Schedules(store))
        local = client.get_schedule(Name=deployed["Name"], GroupName="g")
    assert local["ScheduleExpression"] == deployed["ScheduleExpression"]
    assert json.loads(local["Target"]["Input"]) == payload
    assert local["FlexibleTimeWindow"] == {"Mode": "OFF"}

    # The trigger whose date has passed: no schedule, and the synth says so, naming the workflow and trigger.
    assert [s.workflow for s in synth.stack.trigger_router.skipped_broadcasts] == ["winter"]
    Annotations.from_stack(synth.stack).has_warning(
        "*", Match.string_like_regexp(r"workflow winter: fixed-date trigger at 2020-01-01T09:00:00\+00:00")
    )


def test_every_fixed_date_trigger_of_the_examples_is_scheduled_or_skipped_never_refused(synth: Synth) -> None:
    # holiday-series (1 December 2026, 09:00 Rome): a deploy after its date still synthesizes, without it.
    specs = {s.name for s in schedule_specs([w.workflow for w in synth.stack.workflows])}
    assert specs
    deployed = {s["Name"] for s in _one_time(synth)}
    skipped = {s.name for s in synth.stack.trigger_router.skipped_broadcasts}
    assert deployed | skipped == specs and not deployed & skipped


# ---- alarms, dashboard, outputs ---------------------------------------------------------------------------


def test_alarms_on_dead_letters_intake_5xx_and_every_new_function(synth: Synth) -> None:
    r = synth.stack.trigger_router
    alarms = [a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()]
    topic = synth.logical_id(synth.stack.observability.topic)

    def find(namespace: str, metric: str, dims: list[dict[str, Any]]) -> dict[str, Any]:
        key = (namespace, metric, dims)
        (alarm,) = [a for a in alarms if (a["Namespace"], a["MetricName"], a["Dimensions"]) == key]
        assert alarm["AlarmActions"] == [{"Ref": topic}]
        return alarm

    for q in (r.dead_letters, r.failed_events):
        dims = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [synth.logical_id(q), "QueueName"]}}]
        alarm = find("AWS/SQS", "ApproximateNumberOfMessagesVisible", dims)
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    api = synth.logical_id(r.api)
    stage = [{"Name": "ApiId", "Value": {"Ref": api}}, {"Name": "Stage", "Value": "$default"}]
    five = find("AWS/ApiGateway", "5xx", stage)
    assert five["Threshold"] == 1
    for fn in (r.intake, *r.routers.values(), synth.stack.senders.sender):
        find("AWS/Lambda", "Errors", [{"Name": "FunctionName", "Value": {"Ref": synth.logical_id(fn.function)}}])


def test_dashboard_shows_deliveries_queue_flow_dead_letters_and_intake_p99(synth: Synth) -> None:
    (dash,) = [
        d["Properties"]
        for d in synth.of_type("AWS::CloudWatch::Dashboard").values()
        if d["Properties"]["DashboardName"] == "stepwise-dev-ways-in-and-out"
    ]
    body = json.loads(synth.resolve(dash["DashboardBody"]))
    titles = [w["properties"].get("title") for w in body["widgets"] if w["type"] == "metric"]
    assert titles == [
        "Deliveries by provider",
        "Intake latency (p99, ms)",
        "Intake queue: messages in and out",
        "Dead letters (depth)",
        "Invocations by function",
        "Errors by function",
        "Sender reputation: bounce and complaint rates",
        "Sender: invocations and errors",
    ]
    text = json.dumps(body)
    for metric in ("NumberOfMessagesSent", "NumberOfMessagesDeleted", "ApproximateNumberOfMessagesVisible"):
        assert metric in text
    assert '"stat":"p99"' in text.replace(" ", "")
    assert C.METRIC_DELIVERY_ACCEPTED in text and C.METRIC_DEAD_LETTER in text
    assert '"BounceRate","configuration_set","stepwise-dev"' in text.replace(" ", "")
    assert '"ComplaintRate","configuration_set","stepwise-dev"' in text.replace(" ", "")


def test_outputs_name_the_urls_the_bucket_and_the_dead_letter_queue(synth: Synth) -> None:
    outputs = {k: synth.resolve(v["Value"]) for k, v in synth.template["Outputs"].items()}
    api = synth.logical_id(synth.stack.trigger_router.api)
    assert outputs["WebhookUrl"] == f"<{api}.ApiEndpoint>/webhooks/"  # the $default stage is served at the root
    assert outputs["EventsUrl"] == f"<{api}.ApiEndpoint>/events"
    assert outputs["ArchiveBucket"] == f"<{synth.logical_id(synth.stack.trigger_router.bucket)}>"
    assert outputs["DeadLetterQueueUrl"] == f"<{synth.logical_id(synth.stack.trigger_router.dead_letters)}>"


def test_resources_per_workflow_leave_room_under_cloudformations_500(synth: Synth) -> None:
    machines = [
        r
        for r in synth.of_type("AWS::StepFunctions::StateMachine").values()
        if r["Properties"]["StateMachineName"].startswith("stepwise-dev-")
    ]
    per_workflow = 8  # machine, version, alias, log group, dashboard, 3 alarms
    fixed = len(synth.resources) - per_workflow * len(machines)
    assert fixed < 150, fixed
    assert (500 - fixed) // per_workflow >= 40  # README: workflows per stack


def test_cdk_json_leaves_sending_identities_to_the_operator() -> None:
    context = json.loads(Path(REPO / "cdk.json").read_text())["context"]
    assert (context["email_from"], context["sms_origination"]) == ("", "")
