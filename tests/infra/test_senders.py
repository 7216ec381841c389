"""The way out, as deployed: the sender on the table stream, its layer and templates, SES and SMS configuration,
IAM limited to the configured identity and origination, and the feedback rules to the router."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from functions.senders.handler import Settings
from infra.app import build_app
from infra.assets import build_layer
from infra.config import StackConfig
from infra.constructs import senders as S
from shared import constants as C
from tests.infra.conftest import SENDING_CONTEXT, Synth, cdk_json_context, synthesize
from tests.infra.test_trigger_router import ARN, STREAM_PLUMBING, XRAY, _env, _props, _statements, staged_asset

POOL = SENDING_CONTEXT["sms_origination"]
HELLO = "name: hello\ntriggers: [{event: list.subscribed}]\nsteps:\n  - id: hi\n    send_email: {template: hi}\n"
HI = "---\nsubject: Hi\n---\n<p>Hi {{ contact.first_name }}</p>\n"
TEXT = "name: text\ntriggers: [{event: list.subscribed}]\nsteps:\n  - id: hi\n    send_sms: {template: hi-sms}\n"


def test_sender_policy_is_exact_to_the_identity_the_configuration_sets_and_the_pool(synth: Synth) -> None:
    fn = synth.stack.senders.sender
    table = synth.logical_id(synth.stack.storage.table)
    failed = synth.logical_id(synth.stack.trigger_router.failed_events)
    logs = synth.logical_id(fn.log_group)
    topic = synth.logical_id(synth.stack.observability.topic)
    topic_key = synth.logical_id(synth.stack.observability.node.find_child("AlarmTopicKey"))
    assert _statements(synth, fn.role) == [
        {"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow", "Resource": f"<{logs}.Arn>"},
        XRAY,
        {"Action": list(S.SENDER_TABLE_ACTIONS), "Effect": "Allow", "Resource": f"<{table}.Arn>"},
        {"Action": "dynamodb:Query", "Effect": "Allow", "Resource": f"<{table}.Arn>/index/{C.GSI1}"},
        {
            "Action": "ses:SendEmail",
            "Effect": "Allow",
            "Resource": [
                ARN.format("ses", "identity/example.com"),
                ARN.format("ses", "identity/news@example.com"),
                ARN.format("ses", "configuration-set/stepwise-dev"),
            ],
        },
        {
            "Action": "sms-voice:SendTextMessage",
            "Effect": "Allow",
            "Resource": [
                ARN.format("sms-voice", f"pool/{POOL}"),
                ARN.format("sms-voice", "configuration-set/stepwise-dev"),
            ],
        },
        {
            "Action": "ssm:GetParameter",
            "Effect": "Allow",
            "Resource": ARN.format("ssm", "parameter/stepwise/dev/unsubscribe-key"),
        },
        {
            "Action": "kms:Decrypt",
            "Condition": {"StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}},
            "Effect": "Allow",
            "Resource": ARN.format("kms", "key/*"),
        },
        {"Action": "sns:Publish", "Effect": "Allow", "Resource": f"<{topic}>"},
        {"Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Effect": "Allow", "Resource": f"<{topic_key}.Arn>"},
        {
            "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
            "Effect": "Allow",
            "Resource": f"<{failed}.Arn>",
        },
        {"Action": "dynamodb:ListStreams", "Effect": "Allow", "Resource": "*"},
        {**STREAM_PLUMBING, "Resource": f"<{table}.StreamArn>"},
    ]


def test_sender_environment_is_what_its_settings_read(synth: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(synth, synth.stack.senders.sender)
    for key in [k for k in os.environ if k.startswith("STEPWISE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    api = synth.logical_id(synth.stack.trigger_router.api)
    assert settings.table_name == f"<{synth.logical_id(synth.stack.storage.table)}>"
    assert (settings.email_from, settings.configuration_set) == ("news@example.com", "stepwise-dev")
    assert (settings.sms_origination, settings.sms_configuration_set) == (POOL, "stepwise-dev")
    assert settings.unsubscribe_url == f"<{api}.ApiEndpoint>/unsubscribe/"
    assert settings.unsubscribe_key_parameter == "/stepwise/dev/unsubscribe-key"
    assert settings.templates_dir == C.TEMPLATES_FOLDER
    assert env[C.ENV_ALERT_TOPIC_ARN] == f"<{synth.logical_id(synth.stack.observability.topic)}>"
    assert C.ENV_POWERTOOLS_SERVICE not in env


def test_sender_reads_only_new_message_items_from_the_stream(synth: Synth) -> None:
    lid = synth.logical_id(synth.stack.senders.sender.function)
    (mapping,) = [
        m["Properties"]
        for m in synth.of_type("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": lid}
    ]
    (pattern,) = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert pattern == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"sk": {"S": [{"prefix": "MSG#"}]}}}}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    failed = synth.logical_id(synth.stack.trigger_router.failed_events)
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [failed, "Arn"]}}}
    # Two consumers of the table's stream (router, sender): DynamoDB's advice is at most two per shard.
    streams = [m for m in synth.of_type("AWS::Lambda::EventSourceMapping").values() if "StreamArn" in json.dumps(m)]
    assert len(streams) == 2


def test_sender_has_its_jinja2_layer_and_python312(synth: Synth) -> None:
    props = _props(synth, synth.stack.senders.sender.function)
    assert (props["Runtime"], props["Handler"], props["TracingConfig"]) == (
        "python3.12",
        C.HANDLER_SENDER,
        {"Mode": "Active"},
    )
    _powertools, deps = props["Layers"]
    assert deps == {"Ref": synth.logical_id(synth.stack.senders.node.find_child("Dependencies"))}
    layer = build_layer(S.REQUIREMENTS, "senders-deps")
    assert (layer / "python" / "jinja2" / "sandbox.py").exists() and (layer / "python" / "markupsafe").is_dir()
    assert not (layer / "python" / "yaml").exists()  # front matter without PyYAML (shared/messaging/front_matter.py)


def test_ses_configuration_set_reputation_and_every_feedback_event_to_eventbridge(synth: Synth) -> None:
    (cs,) = synth.of_type("AWS::SES::ConfigurationSet").values()
    props = cs["Properties"]
    assert props["Name"] == "stepwise-dev"
    assert props["SendingOptions"] == {"SendingEnabled": True}
    assert props["ReputationOptions"] == {"ReputationMetricsEnabled": True}
    (dest,) = synth.of_type("AWS::SES::ConfigurationSetEventDestination").values()
    d = synth.resolve(dest["Properties"]["EventDestination"])
    assert d["Enabled"] is True
    assert sorted(d["MatchingEventTypes"]) == sorted(
        ["send", "delivery", "bounce", "complaint", "open", "click", "reject", "deliveryDelay", "subscription"]
    )
    assert d["EventBridgeDestination"] == {"EventBusArn": ARN.format("events", "event-bus/default")}
    (sms,) = synth.of_type("AWS::SMSVOICE::ConfigurationSet").values()
    assert sms["Properties"] == {"ConfigurationSetName": "stepwise-dev", "Tags": sms["Properties"].get("Tags", [])}


def test_feedback_rules_bring_this_stages_ses_events_and_sms_receipts_to_the_router(synth: Synth) -> None:
    s = synth.stack.senders
    feedback = synth.logical_id(synth.stack.trigger_router.routers["feedback"].function)
    failed = synth.logical_id(synth.stack.trigger_router.failed_events)
    email = synth.resolve(_props(synth, s.email_rule))
    assert email["EventPattern"] == {
        "source": ["aws.ses"],
        "detail": {"mail": {"tags": {"ses:configuration-set": ["stepwise-dev"]}}},
    }
    sms = synth.resolve(_props(synth, s.sms_rule))
    assert sms["EventPattern"] == {"source": ["aws.sms-voice"], "detail-type": ["Text Message Delivery Status Updated"]}
    for rule in (email, sms):
        (target,) = rule["Targets"]
        assert target["Arn"] == f"<{feedback}.Arn>"
        assert target["DeadLetterConfig"] == {"Arn": f"<{failed}.Arn>"}
    permissions = [
        p["Properties"]
        for p in synth.of_type("AWS::Lambda::Permission").values()
        if p["Properties"].get("FunctionName") == {"Fn::GetAtt": [feedback, "Arn"]}
    ]
    sources = {synth.resolve(p["SourceArn"]) for p in permissions}
    assert sources == {f"<{synth.logical_id(s.email_rule)}.Arn>", f"<{synth.logical_id(s.sms_rule)}.Arn>"}


def test_templates_beside_the_workflows_are_in_the_asset_and_no_sms_grant_without_sms(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    (folder / C.TEMPLATES_FOLDER / "emails").mkdir(parents=True)
    (folder / "hello.yaml").write_text(HELLO)
    (folder / C.TEMPLATES_FOLDER / "hi.html").write_text(HI)
    (folder / C.TEMPLATES_FOLDER / "emails" / "deep.txt").write_text("text")
    synth = synthesize(tmp_path / "out", workflows=str(folder), sms_origination="")
    asset = staged_asset(synth, synth.stack.senders.sender.function)
    assert (asset / C.TEMPLATES_FOLDER / "hi.html").read_text() == HI
    assert (asset / C.TEMPLATES_FOLDER / "emails" / "deep.txt").exists()
    assert (asset / "functions/senders/handler.py").exists() and not (asset / "functions/trigger_router").exists()
    actions = {
        a
        for st in _statements(synth, synth.stack.senders.sender.role)
        for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert "ses:SendEmail" in actions and not any(a.startswith("sms-voice:") for a in actions)
    assert _env(synth, synth.stack.senders.sender)[C.ENV_SMS_ORIGINATION] == ""


def test_synth_refuses_workflows_that_send_without_the_identity_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(HELLO)
    (tmp_path / "text.yaml").write_text(TEXT)
    (tmp_path / C.TEMPLATES_FOLDER).mkdir()
    (tmp_path / C.TEMPLATES_FOLDER / "hi.html").write_text(HI)
    (tmp_path / C.TEMPLATES_FOLDER / "hi-sms.sms.txt").write_text("Hi {{ contact.first_name }}\n")
    context = {**cdk_json_context(), "workflows": str(tmp_path)}
    with pytest.raises(S.SendersConfigError) as err:
        build_app(context=context, outdir=str(tmp_path / "out"))
    message = str(err.value)
    assert "context value email_from is required: workflow(s) hello, text send messages" in message
    assert "context value sms_origination is required: workflow(s) text send SMS" in message
    # With the identities given it builds (no synth needed to know: the check is the constructor's first step).
    build_app(context={**context, **SENDING_CONTEXT}, outdir=str(tmp_path / "out2"))


def test_channels_of_the_examples() -> None:
    from shared.workflow.model import load_workflow, workflow_files
    from tests.infra.conftest import REPO

    used = S.channels([load_workflow(p) for p in workflow_files(REPO / "workflows")])
    assert "welcome-series" in used["email"] and "welcome-series" in used["sms"]
    assert "sms-not-delivered" in used["email"]


@pytest.mark.parametrize(
    "value",
    [
        POOL,
        "phone-0123456789abcdef0123456789abcdef",
        "arn:aws:sms-voice:eu-west-1:123456789012:phone-number/phone-0123456789abcdef0123456789abcdef",
        "arn:aws:sms-voice:eu-west-1:123456789012:pool/pool-0123456789abcdef0123456789abcdef",
        "arn:aws:sms-voice:eu-west-1:123456789012:sender-id/STEPWISE/GB",
    ],
)
def test_sms_origination_accepts_what_iam_can_name(value: str) -> None:
    assert StackConfig(sms_origination=value).sms_origination == value


@pytest.mark.parametrize("value", ["+447700900123", "pool-xyz", "arn:aws:sns:eu-west-1:123456789012:topic"])
def test_sms_origination_refuses_what_iam_cannot_name(value: str) -> None:
    with pytest.raises(ValidationError, match="sms_origination"):
        StackConfig(sms_origination=value)


def test_email_from_and_throttling_are_checked() -> None:
    with pytest.raises(ValidationError, match="email_from 'news' is not an e-mail address"):
        StackConfig(email_from="news")
    with pytest.raises(ValidationError):
        StackConfig(api_throttle_rate=0)
    assert StackConfig.model_validate({"api_throttle_rate": "200"}).api_throttle_rate == 200  # -c gives strings


# ---- unsubscribe by email: an SES receipt rule for List-Unsubscribe's mailto: -------------------------------


def test_without_a_mail_domain_there_is_no_mailto_and_no_receipt_rule(synth: Synth) -> None:
    assert synth.of_type("AWS::SES::ReceiptRuleSet") == {} and synth.of_type("AWS::SES::ReceiptRule") == {}
    assert _env(synth, synth.stack.senders.sender)[C.ENV_UNSUBSCRIBE_MAILTO] == ""
    assert synth.stack.senders.unsubscribe_mail is None


def test_a_mail_domain_gives_the_mailto_a_receipt_rule_and_a_least_privilege_lambda(tmp_path: Path) -> None:
    from tests.infra.test_iam_drift import granted_actions, needed_actions

    synth = synthesize(tmp_path / "out", unsubscribe_mail_domain="mail.example.com")  # raises on a cdk-nag finding
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    assert [(p["conclusion"], p["violations"]) for p in report["pluginReports"]] == [("success", [])]
    s = synth.stack.senders
    assert _env(synth, s.sender)[C.ENV_UNSUBSCRIBE_MAILTO] == "unsubscribe@mail.example.com"
    fn = s.unsubscribe_mail
    assert fn is not None
    (rule_set,) = synth.of_type("AWS::SES::ReceiptRuleSet").values()
    assert rule_set["Properties"] == {"RuleSetName": "stepwise-dev-inbound"}
    (rule,) = synth.of_type("AWS::SES::ReceiptRule").values()
    props = synth.resolve(rule["Properties"])
    lid = synth.logical_id(fn.function)
    assert props["RuleSetName"] == f"<{synth.logical_id(s.inbound_rules)}>"
    assert props["Rule"] == {
        "Name": "stepwise-dev-unsubscribe",
        "Enabled": True,
        "Recipients": ["unsubscribe@mail.example.com"],
        "ScanEnabled": True,
        "TlsPolicy": "Optional",
        "Actions": [{"LambdaAction": {"FunctionArn": f"<{lid}.Arn>", "InvocationType": "Event"}}],
    }
    (permission,) = [
        synth.resolve(p["Properties"])
        for p in synth.of_type("AWS::Lambda::Permission").values()
        if p["Properties"].get("FunctionName") == {"Fn::GetAtt": [lid, "Arn"]}
    ]
    assert (permission["Principal"], permission["SourceAccount"]) == ("ses.amazonaws.com", "123456789012")
    props = _props(synth, fn.function)
    assert props["Handler"] == S.HANDLER_UNSUBSCRIBE_MAIL and props["Runtime"] == "python3.12"
    logs = synth.logical_id(fn.log_group)
    table = synth.logical_id(synth.stack.storage.table)
    assert _statements(synth, fn.role) == [
        {"Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Effect": "Allow", "Resource": f"<{logs}.Arn>"},
        XRAY,
        {"Action": list(S.UNSUBSCRIBE_MAIL_TABLE_ACTIONS), "Effect": "Allow", "Resource": f"<{table}.Arn>"},
        {
            "Action": "ssm:GetParameter",
            "Effect": "Allow",
            "Resource": ARN.format("ssm", "parameter/stepwise/dev/unsubscribe-key"),
        },
        {
            "Action": "kms:Decrypt",
            "Condition": {"StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}},
            "Effect": "Allow",
            "Resource": ARN.format("kms", "key/*"),
        },
    ]
    # The grants are exactly what its code's calls need (the drift test's own reading of the import closure).
    needed = needed_actions(
        "functions.senders.unsubscribe_mail",
        {"shared/store/contacts.py": "ContactStore: get, apply_event, the outbox item's put_item"},
        {},
        {
            "batch_get_item": "ContactStore.batch_get: routing's identity lookups",
            "query": "ContactStore queries: routing's; unsubscribe reads one profile",
            "transact_write_items": "ContactStore transactions (upsert, commit_step): not apply_event's",
            "get_object": "not called",
        },
    )
    assert needed == granted_actions(synth, fn, [])
    env = _env(synth, fn)
    assert (
        env[C.ENV_TABLE_NAME] == f"<{table}>"
        and env[C.ENV_UNSUBSCRIBE_KEY_PARAMETER] == "/stepwise/dev/unsubscribe-key"
    )


def test_unsubscribe_mail_domain_is_checked() -> None:
    with pytest.raises(ValidationError, match="unsubscribe_mail_domain"):
        StackConfig(unsubscribe_mail_domain="unsubscribe@mail.example.com")
    assert StackConfig(unsubscribe_mail_domain="mail.example.com").unsubscribe_mailto == "unsubscribe@mail.example.com"
