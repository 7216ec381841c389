"""The way out (functions/senders/): the sender Lambda on the table stream (message items), its templates and
Jinja2 layer, the SES configuration set and its EventBridge destination, the SMS configuration set, and the rules
that bring SES events and SMS delivery receipts to the router's feedback handler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_ses as ses
from aws_cdk import aws_ses_actions as ses_actions
from aws_cdk import aws_smsvoice as smsvoice
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import names
from infra.assets import REPO, build_layer, stage_code
from infra.config import StackConfig
from infra.constructs.function import ARCHITECTURE, RUNTIME, StepwiseFunction, lambda_code, powertools_layer
from infra.constructs.trigger_router import STREAM_RETRIES, stream_filter
from infra.nag import acknowledge
from shared import constants as C
from shared.messaging.template_lint import templates_folder
from shared.workflow.model import Workflow

CODE_PARTS = ("functions/__init__.py", "functions/senders", "shared")
REQUIREMENTS = REPO / "infra" / "requirements" / "senders.txt"
SENDER_TIMEOUT = Duration.seconds(60)
MESSAGE_PREFIX = "MSG#"

# Exactly what the sender's code calls (tests/infra/test_iam_drift.py checks it against its boto3 call sites).
SENDER_TABLE_ACTIONS = (
    "dynamodb:GetItem",  # MessageStore: the message, a check, a cap counter
    "dynamodb:BatchGetItem",  # MessageStore: reputation state, profile and suppression in one read
    "dynamodb:PutItem",  # suppression items
    "dynamodb:UpdateItem",  # the claim before the provider call, then sent / failed / deferred
    "dynamodb:DeleteItem",  # take_check: a not-opened / not-clicked check taken once
    "dynamodb:Query",  # a contact's messages, the due checks (GSI1)
)
SENDER_INDEX_ACTIONS = ("dynamodb:Query",)
EMAIL_ACTIONS = ("ses:SendEmail",)  # SES v2 SendEmail (Raw content included) is authorised as ses:SendEmail
SMS_ACTIONS = ("sms-voice:SendTextMessage",)
# The unsubscribe-mail Lambda (functions/senders/unsubscribe_mail.py): what unsubscribe.handle and the outbox put do.
HANDLER_UNSUBSCRIBE_MAIL = "functions.senders.unsubscribe_mail.handler"
UNSUBSCRIBE_MAIL_TABLE_ACTIONS = (
    "dynamodb:GetItem",  # ContactStore.get: the contact the token names
    "dynamodb:PutItem",  # apply_event's writes; the email.unsubscribed outbox item (conditional: once)
    "dynamodb:UpdateItem",  # apply_event: the contact's consent
    "dynamodb:DeleteItem",  # apply_event: a membership the unsubscribe ends
)
UNSUBSCRIBE_MAIL_TIMEOUT = Duration.seconds(30)

# Every SES event a configuration set can publish that the router turns into a contact event (or a suppression).
SES_EVENTS = (
    ses.EmailSendingEvent.SEND,
    ses.EmailSendingEvent.DELIVERY,
    ses.EmailSendingEvent.BOUNCE,
    ses.EmailSendingEvent.COMPLAINT,
    ses.EmailSendingEvent.OPEN,
    ses.EmailSendingEvent.CLICK,
    ses.EmailSendingEvent.REJECT,
    ses.EmailSendingEvent.DELIVERY_DELAY,
    ses.EmailSendingEvent.SUBSCRIPTION,
)
# End User Messaging SMS sends its delivery receipts to the default event bus by itself (no event destination:
# AWS::SMSVOICE::ConfigurationSet's destinations are CloudWatch Logs, Firehose and SNS only).
SMS_SOURCE = "aws.sms-voice"
SMS_DETAIL_TYPE = "Text Message Delivery Status Updated"


class SendersConfigError(ValueError):
    """A context value the workflows need is missing; the message names the context key and the workflows."""


def channels(workflows: Sequence[Workflow]) -> dict[str, list[str]]:
    """Workflow names by the channel they send on: 'email' (send_email, notify) and 'sms' (send_sms)."""
    out: dict[str, list[str]] = {"email": [], "sms": []}
    for wf in workflows:
        kinds = _kinds(wf)
        if kinds & {"send_email", "notify"}:
            out["email"].append(wf.name)
        if "send_sms" in kinds:
            out["sms"].append(wf.name)
    return out


def _kinds(wf: Workflow) -> set[str]:
    """Every step kind of the workflow, nested branches included (read from the JSON: no compiler needed)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            found.update(k for k in value if k in ("send_email", "send_sms", "notify"))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(wf.model_dump(mode="json", by_alias=True, exclude_none=True).get("steps", []))
    return found


def check_channels(config: StackConfig, workflows: Sequence[Workflow]) -> None:
    used = channels(workflows)
    problems = []
    # The sender needs a From address for any message (team alerts and marketing email; it checks it at start).
    senders = sorted({*used["email"], *used["sms"]})
    if senders and not config.email_from:
        problems.append(
            f"context value email_from is required: workflow(s) {', '.join(senders)} send messages; deploy with "
            "-c email_from=ADDRESS, an address whose domain (or the address itself) is a verified SES identity"
        )
    if used["sms"] and not config.sms_origination:
        problems.append(
            f"context value sms_origination is required: workflow(s) {', '.join(used['sms'])} send SMS; deploy "
            "with -c sms_origination=ARN_OR_ID of an End User Messaging SMS phone number or pool"
        )
    if problems:
        raise SendersConfigError("; ".join(problems))


def templates(folder: Path) -> dict[str, bytes]:
    """The message templates of the workflows folder, found where `stepwise validate` finds them (templates/ in
    the folder, else beside it: template_lint.templates_folder), as files of the sender's asset."""
    root = templates_folder(folder / "any.yaml")
    if root is None:
        return {}
    return {
        f"{C.TEMPLATES_FOLDER}/{p.relative_to(root).as_posix()}": p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


class Senders(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        table: dynamodb.ITable,
        workflows: Sequence[Workflow],
        failed_events: sqs.IQueue,
        feedback: targets.LambdaFunction,
        unsubscribe_url: str,
        alert_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        check_channels(config, workflows)
        prefix = config.prefix
        self.configuration_set_name = prefix
        self.unsubscribe_key_parameter = config.unsubscribe_key_parameter

        # ---- SES ------------------------------------------------------------------------------------------------
        self.configuration_set = ses.ConfigurationSet(
            self,
            "EmailConfigurationSet",
            configuration_set_name=self.configuration_set_name,
            sending_enabled=True,
            reputation_metrics=True,  # the bounce and complaint rates the reputation guard watches
        )
        self.configuration_set.add_event_destination(
            "ToEventBridge",
            configuration_set_event_destination_name="eventbridge",
            destination=ses.EventDestination.event_bus(
                events.EventBus.from_event_bus_name(self, "DefaultBus", "default")
            ),
            events=list(SES_EVENTS),
        )
        self.sms_configuration_set = smsvoice.CfnConfigurationSet(
            self, "SmsConfigurationSet", configuration_set_name=self.configuration_set_name
        )

        # ---- the sender ---------------------------------------------------------------------------------------
        deps = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(build_layer(REQUIREMENTS, "senders-deps"))),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description=f"Sender dependencies not in the runtime or the Powertools layer ({REQUIREMENTS.name})",
        )
        code = lambda_code(stage_code(CODE_PARTS, "senders", generated=templates(config.workflows)))
        self.sender = StepwiseFunction(
            self,
            "Sender",
            config=config,
            role_name="sender",
            handler=C.HANDLER_SENDER,
            code=code,
            layers=[powertools_layer(self, config), deps],
            environment={
                C.ENV_TABLE_NAME: table.table_name,
                C.ENV_SES_CONFIGURATION_SET: self.configuration_set_name,
                C.ENV_EMAIL_FROM: config.email_from,
                C.ENV_SMS_ORIGINATION: config.sms_origination,
                C.ENV_SMS_CONFIGURATION_SET: self.configuration_set_name,
                C.ENV_UNSUBSCRIBE_URL: unsubscribe_url,
                C.ENV_UNSUBSCRIBE_KEY_PARAMETER: self.unsubscribe_key_parameter,
                C.ENV_UNSUBSCRIBE_MAILTO: config.unsubscribe_mailto,
                C.ENV_TEMPLATES_DIR: C.TEMPLATES_FOLDER,
                C.ENV_ALERT_TOPIC_ARN: alert_topic.topic_arn,
                C.ENV_METRICS_NAMESPACE: C.METRICS_NAMESPACE,
                C.ENV_STAGE: config.stage,
            },
            description="delivers the outbox's messages (email through SES v2, SMS through End User Messaging)",
            timeout=SENDER_TIMEOUT,
            star_reason="dynamodb:ListStreams, which the stream event source needs, has no resource-level permissions.",
        )
        self.sender.allow(SENDER_TABLE_ACTIONS, [table.table_arn])
        self.sender.allow(SENDER_INDEX_ACTIONS, [f"{table.table_arn}/index/{C.GSI1}"])
        if config.email_from:
            self.sender.allow(
                EMAIL_ACTIONS,
                [
                    *names.ses_identity_arns(config.email_from),
                    names.ses_configuration_set_arn(self.configuration_set_name),
                ],
            )
        if config.sms_origination:
            self.sender.allow(
                SMS_ACTIONS,
                [
                    names.sms_origination_arn(config.sms_origination),
                    names.sms_configuration_set_arn(self.configuration_set_name),
                ],
            )
        self.sender.allow_parameters([self.unsubscribe_key_parameter])
        # The reputation guard's alert (SnsAlert): the alarm topic, encrypted with its key.
        alert_topic.grant_publish(self.sender.role)
        acknowledge(
            self.sender.role,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "kms:GenerateDataKey* (CDK's grant for publishing to an encrypted topic) on the alarm topic's own key "
            "only: SNS asks for a data key of the key's choosing per message.",
        )
        self.sender.function.add_event_source(
            sources.DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=25,
                bisect_batch_on_error=True,
                retry_attempts=STREAM_RETRIES,
                report_batch_item_failures=True,
                on_failure=sources.SqsDlq(failed_events),
                filters=[stream_filter(C.SK, MESSAGE_PREFIX)],
            )
        )

        # ---- feedback -----------------------------------------------------------------------------------------
        self.email_rule = events.Rule(
            self,
            "EmailFeedback",
            description=f"{prefix}: SES events of this stage's configuration set, to the router",
            event_pattern=events.EventPattern(
                source=["aws.ses"],
                detail={"mail": {"tags": {"ses:configuration-set": [self.configuration_set_name]}}},
            ),
            targets=[feedback],
        )
        self.sms_rule = events.Rule(
            self,
            "SmsFeedback",
            description=f"{prefix}: SMS delivery receipts, to the router",
            event_pattern=events.EventPattern(source=[SMS_SOURCE], detail_type=[SMS_DETAIL_TYPE]),
            targets=[feedback],
        )

        # ---- unsubscribe by email (List-Unsubscribe's mailto:) -------------------------------------------------
        self.unsubscribe_mail: StepwiseFunction | None = None
        self.inbound_rules: ses.ReceiptRuleSet | None = None
        if config.unsubscribe_mailto:
            self._receive_unsubscribe_mail(config, table, code)

    def _receive_unsubscribe_mail(self, config: StackConfig, table: dynamodb.ITable, code: lambda_.Code) -> None:
        """An SES receipt rule for unsubscribe@<unsubscribe_mail_domain> invoking the unsubscribe-mail Lambda
        (asynchronously: SES retries it, the Lambda is idempotent). CloudFormation cannot activate a receipt rule
        set (one is active per account and region): `aws ses set-active-receipt-rule-set --rule-set-name
        <prefix>-inbound` once after the first deploy (docs/operations.md)."""
        fn = StepwiseFunction(
            self,
            "UnsubscribeMail",
            config=config,
            role_name="unsubscribe-mail",
            handler=HANDLER_UNSUBSCRIBE_MAIL,
            code=code,
            layers=lambda scope: [powertools_layer(scope, config)],
            environment={
                C.ENV_TABLE_NAME: table.table_name,
                C.ENV_UNSUBSCRIBE_KEY_PARAMETER: self.unsubscribe_key_parameter,
                C.ENV_STAGE: config.stage,
            },
            description="unsubscribes the contact a mailed List-Unsubscribe request names (SES receipt rule)",
            timeout=UNSUBSCRIBE_MAIL_TIMEOUT,
        )
        fn.allow(UNSUBSCRIBE_MAIL_TABLE_ACTIONS, [table.table_arn])
        fn.allow_parameters([self.unsubscribe_key_parameter])
        self.unsubscribe_mail = fn
        self.inbound_rules = ses.ReceiptRuleSet(self, "InboundMail", receipt_rule_set_name=f"{config.prefix}-inbound")
        self.inbound_rules.add_rule(
            "Unsubscribe",
            receipt_rule_name=f"{config.prefix}-unsubscribe",
            recipients=[config.unsubscribe_mailto],
            actions=[ses_actions.Lambda(function=fn.function, invocation_type=ses_actions.LambdaInvocationType.EVENT)],
            scan_enabled=True,  # the virus verdict the Lambda reads
            tls_policy=ses.TlsPolicy.OPTIONAL,  # a mailbox provider's unsubscribe mailer must not bounce
            enabled=True,
        )
