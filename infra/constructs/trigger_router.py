"""The ways in (functions/trigger_router/): the HTTP API and its intake Lambda, the intake queue, the archive bucket,
the router's consumers (queue, table stream, execution status, schedules, messaging feedback), the schedule group
and the role EventBridge Scheduler assumes, and the fixed-date broadcast machine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aws_cdk import Annotations, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import names
from infra.assets import stage_code
from infra.config import StackConfig
from infra.constructs.function import StepwiseFunction, lambda_code, nag_arn, powertools_layer
from infra.constructs.step_runner import EXECUTION_ACTIONS, MACHINE_ACTIONS
from infra.nag import acknowledge
from shared import constants as C
from shared.history import dump_entry_plans
from shared.runtime.broadcast import SNAPSHOT_PREFIX as BROADCASTS_PREFIX
from shared.runtime.broadcast import ScheduleSpec, schedule_specs
from shared.runtime.engagement import EVERY as ENGAGEMENT_EVERY
from shared.runtime.engagement import KIND_ENGAGEMENT
from shared.runtime.workflows_file import dump_workflows
from shared.store.archive import DEAD_LETTERS_PREFIX, DELIVERIES_PREFIX
from shared.store.schedules import at_expression
from shared.workflow.broadcast import broadcast_definition
from shared.workflow.compiler import entry_plans
from shared.workflow.model import Workflow

CODE_PARTS = ("functions/__init__.py", "functions/trigger_router", "shared")
SCHEDULE_HANDLER_PLACEHOLDER = "ScheduleHandlerArn"  # ${ScheduleHandlerArn} in the broadcast definition

ROUTER_TIMEOUT = Duration.seconds(60)
INTAKE_TIMEOUT = Duration.seconds(10)  # Shopify waits 5 s; the intake answers in well under one
# Lambda's own advice for SQS sources: visibility at least six times the function's timeout, so a batch retried
# by the poller is not received again while a slow first attempt still runs.
QUEUE_VISIBILITY = Duration.seconds(ROUTER_TIMEOUT.to_seconds() * 6)
MAX_RECEIVE_COUNT = 5  # a record failing five receives goes to the dead-letter queue (and the dead-letter store)
STREAM_RETRIES = 5  # per record, after bisecting the batch down to it
DELIVERIES_DAYS = 30
DEAD_LETTERS_DAYS = 30
BROADCASTS_DAYS = 7

# Exactly what the router's code calls (the IAM drift test, tests/infra/test_iam_drift.py, checks this against
# the boto3 call sites reachable from functions/trigger_router/router.py).
ROUTER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",  # ContactStore.batch_get (identity_owners: who holds an identity)
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",  # shared/lifecycle.py: the workflow's activation checked in the enrolment
    "dynamodb:Query",
    "dynamodb:BatchWriteItem",  # ArchiveIndex.add: a dead letter indexed by the identities it names (erasure)
)
ROUTER_INDEX_ACTIONS = ("dynamodb:Query",)  # GSI1: a list's members (broadcasts), an identity's contact
ROUTER_ARCHIVE_READ = ("s3:GetObject",)  # deliveries too large for SQS; a broadcast's snapshot (HeadObject too)
ROUTER_ARCHIVE_WRITE = ("s3:PutObject",)  # dead letters; broadcast list snapshots
SCHEDULE_ACTIONS = ("scheduler:CreateSchedule", "scheduler:DeleteSchedule")
INTAKE_TABLE_ACTIONS = (
    "dynamodb:GetItem",  # /unsubscribe: the contact the token names (ContactStore.get)
    "dynamodb:PutItem",  # the dedupe claim; apply_event's writes for email.unsubscribed
    "dynamodb:UpdateItem",  # the claim marked "enqueued"; the contact's consent
    "dynamodb:DeleteItem",  # apply_event: a membership the unsubscribe ends
    "dynamodb:BatchWriteItem",  # ArchiveIndex.add: an unrouted, duplicate or unresolved delivery indexed (erasure)
)
INTAKE_ARCHIVE_ACTIONS = ("s3:PutObject",)  # the raw delivery; an unresolved one's dead letter
INTAKE_QUEUE_ACTIONS = ("sqs:SendMessage",)

STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
ENGAGEMENT_SCHEDULE = "engagement-checks"  # the recurring poll's name in the stage's schedule group

# The access log of the API: no path (tokens travel in it: /webhooks/jotform/<token>, /unsubscribe/<token>) and
# no query string; the route key names the template of the path only (POST /webhooks/{provider}/{token}).
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "method": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "userAgent": "$context.identity.userAgent",
}
ROUTES: tuple[tuple[str, apigw.HttpMethod], ...] = (
    ("/webhooks/{provider}", apigw.HttpMethod.POST),
    ("/webhooks/{provider}/{token}", apigw.HttpMethod.POST),
    ("/events", apigw.HttpMethod.POST),
    ("/health", apigw.HttpMethod.GET),
    ("/unsubscribe/{token}", apigw.HttpMethod.GET),
    ("/unsubscribe/{token}", apigw.HttpMethod.POST),  # RFC 8058 one-click
)


def generated(workflows: Sequence[Workflow]) -> dict[str, bytes]:
    """Files made at synth for the router's asset: the deployed workflow models it matches events against, and
    their entry plans (the enroller records the passive steps a run starts at)."""
    return {
        C.WORKFLOWS_FILE: dump_workflows(list(workflows)),
        C.ENTRY_PLANS_FILE: dump_entry_plans(entry_plans(list(workflows))),
    }


def schedule_input(payload: dict[str, object]) -> str:
    """A schedule's Input as shared/store/schedules.py writes it at run time (sorted keys)."""
    return json.dumps(payload, sort_keys=True, default=str)


def deployable_broadcasts(
    workflows: Sequence[Workflow], now: datetime
) -> tuple[list[ScheduleSpec], list[ScheduleSpec]]:
    """The fixed-date schedules to declare (date still ahead) and those skipped (date passed: it fired after an
    earlier deploy, or was missed; leaving it out deletes a fired schedule with the stack's next update)."""
    specs = schedule_specs(list(workflows))
    return [s for s in specs if s.at > now], [s for s in specs if s.at <= now]


def stream_filter(attribute: str, prefix: str) -> Mapping[str, Any]:
    """A Lambda event filter: only INSERTs of items whose `attribute` (pk or sk) starts with `prefix`. Filtered
    records are never delivered (nor billed), so the step runner's other writes cost the consumers nothing."""
    return lambda_.FilterCriteria.filter(
        {
            "eventName": lambda_.FilterRule.is_equal("INSERT"),
            "dynamodb": {"NewImage": {attribute: {"S": lambda_.FilterRule.begins_with(prefix)}}},
        }
    )


class TriggerRouter(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        table: dynamodb.ITable,
        workflows: Sequence[Workflow],
        deps_layer: lambda_.ILayerVersion | None,
        now: datetime | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        prefix = config.prefix
        self.secrets_prefix = config.parameters_prefix
        self.api_key_parameter = f"{config.parameters_prefix}/api-key"
        self.webhook_parameters = f"{config.parameters_prefix}/webhooks/*"

        # ---- archive bucket -------------------------------------------------------------------------------
        self.bucket = s3.Bucket(
            self,
            "Archive",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,  # deliveries and dead letters are what `stepwise replay` re-runs
            lifecycle_rules=[
                s3.LifecycleRule(id="deliveries", prefix=DELIVERIES_PREFIX, expiration=Duration.days(DELIVERIES_DAYS)),
                s3.LifecycleRule(
                    id="dead-letters", prefix=DEAD_LETTERS_PREFIX, expiration=Duration.days(DEAD_LETTERS_DAYS)
                ),
                s3.LifecycleRule(id="broadcasts", prefix=BROADCASTS_PREFIX, expiration=Duration.days(BROADCASTS_DAYS)),
                s3.LifecycleRule(id="incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "No server access logs: only this stack's functions read and write the archive (their roles name its "
            "prefixes), and a log bucket would need its own lifecycle and its own exemption; CloudTrail data "
            "events can be enabled for it where an audit trail is required.",
        )

        # ---- queues -------------------------------------------------------------------------------------------
        self.dead_letters = sqs.Queue(
            self,
            "IntakeDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "IntakeQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=QUEUE_VISIBILITY,
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVE_COUNT),
        )
        # Where stream records and EventBridge events go after their retries: a pointer (stream) or the event
        # itself (EventBridge), kept 14 days. Never consumed automatically: it is the alarm's and replay's.
        self.failed_events = sqs.Queue(
            self,
            "FailedEvents",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.failed_events,
            "AwsSolutions-SQS3",
            "This queue is itself a dead-letter destination: the on-failure destination of the stream consumers "
            "and the dead-letter queue of the EventBridge targets, read by operators, never by a consumer.",
        )

        # ---- functions ------------------------------------------------------------------------------------
        layers = [powertools_layer(self, config), *([deps_layer] if deps_layer else [])]
        code = lambda_code(stage_code(CODE_PARTS, "trigger-router", generated=generated(workflows)))
        self.schedule_group = scheduler.CfnScheduleGroup(self, "ScheduleGroup", name=names.schedule_group_name(prefix))
        schedule_target = names.function_arn(prefix, "router-schedule")
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="EventBridge Scheduler: invoke the router's schedule handler (abandonment, broadcasts)",
        )
        self.scheduler_role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[schedule_target])
        )

        router_env = {
            C.ENV_TABLE_NAME: table.table_name,
            C.ENV_STATE_MACHINE_ARN_TEMPLATE: names.alias_arn_template(prefix),
            C.ENV_ARCHIVE_BUCKET: self.bucket.bucket_name,
            C.ENV_WORKFLOWS_FILE: C.WORKFLOWS_FILE,
            C.ENV_ENTRY_PLANS: C.ENTRY_PLANS_FILE,
            C.ENV_METRICS_NAMESPACE: C.METRICS_NAMESPACE,
            C.ENV_STAGE: config.stage,
            C.ENV_SCHEDULER_ROLE_ARN: self.scheduler_role.role_arn,
            C.ENV_SCHEDULE_TARGET_ARN: schedule_target,
            C.ENV_SCHEDULE_GROUP: names.schedule_group_name(prefix),
            C.ENV_BROADCAST_MACHINE_ARN: names.broadcast_machine_arn(prefix),
        }
        self.intake = StepwiseFunction(
            self,
            "Intake",
            config=config,
            role_name="intake",
            handler=C.HANDLER_INTAKE,
            code=code,
            layers=layers,
            environment={
                C.ENV_TABLE_NAME: table.table_name,
                C.ENV_ARCHIVE_BUCKET: self.bucket.bucket_name,
                C.ENV_INTAKE_QUEUE_URL: self.queue.queue_url,
                C.ENV_SECRETS_PREFIX: self.secrets_prefix,
                C.ENV_API_KEY_PARAMETER: self.api_key_parameter,
                C.ENV_UNSUBSCRIBE_KEY_PARAMETER: config.unsubscribe_key_parameter,
                C.ENV_METRICS_NAMESPACE: C.METRICS_NAMESPACE,
                C.ENV_STAGE: config.stage,
            },
            description="verifies, archives, de-duplicates and enqueues webhook deliveries and API events",
            timeout=INTAKE_TIMEOUT,
            memory_size=512,
        )
        self.intake.allow(INTAKE_TABLE_ACTIONS, [table.table_arn])
        self.intake.allow(
            INTAKE_ARCHIVE_ACTIONS,
            [
                self.bucket.arn_for_objects(f"{DELIVERIES_PREFIX}*"),
                self.bucket.arn_for_objects(f"{DEAD_LETTERS_PREFIX}*"),
            ],
        )
        self.intake.allow(INTAKE_QUEUE_ACTIONS, [self.queue.queue_arn])
        self.intake.allow_parameters(
            [self.webhook_parameters, self.api_key_parameter, config.unsubscribe_key_parameter],
            wildcard_reason="The webhook secrets of this stage, one SecureString per provider under one path, created "
            "by the operator for the providers in use: the provider list is not known at deploy time.",
        )

        self.routers: dict[str, StepwiseFunction] = {}
        for key, handler, description, extra in (
            (
                "queue",
                C.HANDLER_ROUTER_QUEUE,
                "routes accepted deliveries from the intake queue",
                {C.ENV_MAX_RECEIVE_COUNT: str(MAX_RECEIVE_COUNT)},
            ),
            ("stream", C.HANDLER_ROUTER_STREAM, "routes the step runner's outbox events from the table stream", {}),
            ("status", C.HANDLER_ROUTER_STATUS, "routes execution status changes (campaign completion)", {}),
            ("schedule", C.HANDLER_ROUTER_SCHEDULE, "fires abandonment and broadcast schedules", {}),
            ("feedback", C.HANDLER_FEEDBACK, "routes SES events and SMS receipts as contact events", {}),
        ):
            fn = StepwiseFunction(
                self,
                f"Router-{key}",
                config=config,
                role_name=f"router-{key}",
                handler=handler,
                code=code,
                layers=layers,
                environment={**router_env, **extra},
                description=description,
                timeout=ROUTER_TIMEOUT,
                star_reason=""
                if key != "stream"
                else ("dynamodb:ListStreams, which the stream event source needs, has no resource-level permissions."),
            )
            self._router_policy(fn, table)
            self.routers[key] = fn

        # Accepted deliveries: partial batch failures, so one bad record does not redeliver the nine good ones.
        self.routers["queue"].function.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=10, report_batch_item_failures=True)
        )
        # The outbox: only the step runner's EVENT# items as they are written.
        self.routers["stream"].function.add_event_source(
            sources.DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=100,
                bisect_batch_on_error=True,
                retry_attempts=STREAM_RETRIES,
                report_batch_item_failures=True,
                on_failure=sources.SqsDlq(self.failed_events),
                filters=[stream_filter(C.PK, "EVENT#")],
            )
        )
        # Execution status changes of this stage's workflow machines (the prefix cannot match another stage's:
        # stage names have no hyphen; nor the broadcast machine, whose name has an underscore).
        self.status_rule = events.Rule(
            self,
            "ExecutionStatus",
            description=f"{prefix}: workflow executions that ended, for campaign completion",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": list(STATUSES),
                    "stateMachineArn": [{"prefix": names.machine_arn(prefix, "")}],
                },
            ),
            targets=[self._target(self.routers["status"])],
        )
        self._broadcast_machine(config)
        self._schedules(workflows, now or datetime.now(UTC))
        self._archive_acknowledgements(self.intake, (DELIVERIES_PREFIX, DEAD_LETTERS_PREFIX))
        for fn in self.routers.values():
            self._archive_acknowledgements(fn, (DELIVERIES_PREFIX, DEAD_LETTERS_PREFIX, BROADCASTS_PREFIX))

        # ---- HTTP API -----------------------------------------------------------------------------------------
        self.api_log_group = logs.LogGroup(
            self,
            "ApiAccessLogs",
            log_group_name=f"/aws/vendedlogs/apigateway/{prefix}-api",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api = apigw.HttpApi(
            self,
            "Api",
            api_name=f"{prefix}-intake",
            description=f"Stepwise {config.stage}: webhooks, events, unsubscribe",
            create_default_stage=False,
        )
        integration = integrations.HttpLambdaIntegration(
            "Intake",
            self.intake.function,
            payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0,
        )
        for path, method in ROUTES:
            self.api.add_routes(path=path, methods=[method], integration=integration)
        self.stage = apigw.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=config.api_throttle_rate, burst_limit=config.api_throttle_burst),
        )
        cfn_stage: apigw.CfnStage = self.stage.node.default_child  # type: ignore[assignment]
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.api_log_group.log_group_arn,
            format=json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
        )
        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "No API Gateway authorizer: each provider's webhook is authenticated in the intake by its own HMAC "
            "signature over the raw body (or a secret path token), /events by an API key compared in constant "
            "time, /unsubscribe by a signed token; an authorizer cannot check a signature over the body.",
        )
        self.url = self.api.api_endpoint  # the $default stage is served at the endpoint's root

    def _broadcast_machine(self, config: StackConfig) -> None:
        """The fixed-date broadcast: a Distributed Map over the list snapshot in S3 (shared/workflow/broadcast.py),
        each batch entered by the schedule handler, which the router starts at the date."""
        prefix = config.prefix
        name = names.broadcast_machine_name(prefix)
        scope = Construct(self, "Broadcast")
        self.broadcast_role = iam.Role(
            scope,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Stepwise broadcast machine: read list snapshots, enter batches, run its map children",
        )
        schedule_fn = self.routers["schedule"].function
        for actions, resources in (
            (["lambda:InvokeFunction"], [schedule_fn.function_arn]),
            (["s3:GetObject"], [self.bucket.arn_for_objects(f"{BROADCASTS_PREFIX}*")]),
            # A Distributed Map in STANDARD mode runs its items as child executions of this machine.
            (["states:StartExecution"], [names.broadcast_machine_arn(prefix)]),
            (["states:DescribeExecution", "states:StopExecution"], [names.broadcast_children_arn(prefix)]),
        ):
            self.broadcast_role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
        log_group = logs.LogGroup(
            scope,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.broadcast = sfn.StateMachine(
            scope,
            "StateMachine",
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(
                json.dumps(broadcast_definition("${" + SCHEDULE_HANDLER_PLACEHOLDER + "}"), separators=(",", ":"))
            ),
            definition_substitutions={SCHEDULE_HANDLER_PLACEHOLDER: schedule_fn.function_arn},
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
            role=self.broadcast_role,
        )
        bucket = Stack.of(self).get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        for finding, reason in (
            (
                "Resource::*",
                "Resource * is only on the log-delivery and X-Ray actions CDK adds for logging and "
                "tracing, which have no resource-level permissions.",
            ),
            (
                f"Resource::<{bucket}.Arn>/{BROADCASTS_PREFIX}*",
                "The list snapshots under broadcasts/ only: one object per broadcast, named at run time.",
            ),
            (
                f"Resource::{nag_arn(names.broadcast_children_arn(prefix))}",
                "The Distributed Map's child executions of this machine: their names are made by Step Functions.",
            ),
        ):
            acknowledge(self.broadcast_role, f"AwsSolutions-IAM5[{finding}]", reason)

    def _schedules(self, workflows: Sequence[Workflow], now: datetime) -> None:
        """What EventBridge Scheduler fires in the stage's group at deploy: the engagement checks' poll every five
        minutes, and one one-time schedule per fixed-date trigger whose date is ahead (named and shaped exactly as
        broadcast.schedule_all creates them locally: shared/runtime/broadcast.schedule_specs)."""
        target = self.routers["schedule"].function.function_arn
        scope = Construct(self, "Schedules")
        self.engagement_schedule = scheduler.CfnSchedule(
            scope,
            "EngagementChecks",
            name=ENGAGEMENT_SCHEDULE,
            group_name=self.schedule_group.name,
            description="email.not_opened / email.not_clicked whose window passed (shared/runtime/engagement.py)",
            schedule_expression=f"rate({int(ENGAGEMENT_EVERY.total_seconds() // 60)} minutes)",
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=target, role_arn=self.scheduler_role.role_arn, input=schedule_input({"kind": KIND_ENGAGEMENT})
            ),
        )
        self.engagement_schedule.add_dependency(self.schedule_group)
        ahead, passed = deployable_broadcasts(workflows, now)
        self.broadcast_schedules: dict[str, scheduler.CfnSchedule] = {}
        for spec in ahead:
            schedule = scheduler.CfnSchedule(
                scope,
                f"Broadcast-{spec.name}",
                name=spec.name,
                group_name=self.schedule_group.name,
                description=f"{spec.workflow}: list {spec.list_name} at {spec.at.isoformat()}"[:512],
                schedule_expression=at_expression(spec.at),  # UTC, the expression's default time zone
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                # No ActionAfterCompletion: AWS::Scheduler::Schedule has no such property (the API's DELETE is not
                # in CloudFormation), and the stack owns this schedule: the first deploy after its date leaves it
                # out (deployable_broadcasts), so CloudFormation deletes it then.
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=target, role_arn=self.scheduler_role.role_arn, input=schedule_input(spec.payload)
                ),
            )
            schedule.add_dependency(self.schedule_group)
            self.broadcast_schedules[spec.workflow + "@" + spec.at.isoformat()] = schedule
        for spec in passed:
            Annotations.of(self).add_warning_v2(
                f"stepwise:broadcast-date-passed:{spec.name}",
                f"workflow {spec.workflow}: fixed-date trigger at {spec.at.isoformat()} (list {spec.list_name}) "
                "is in the past: no schedule is deployed for it (it fired at an earlier deploy, or was missed)",
            )
        self.skipped_broadcasts = passed

    def guard_reputation(self, configuration_set: str, alert_topic: sns.ITopic) -> None:
        """The feedback handler's reputation guard: the SES configuration set it counts bounces and complaints
        for, and the alarm topic it alerts the team on when it pauses marketing email."""
        fn = self.routers["feedback"]
        fn.function.add_environment(C.ENV_SES_CONFIGURATION_SET, configuration_set)
        fn.function.add_environment(C.ENV_ALERT_TOPIC_ARN, alert_topic.topic_arn)
        alert_topic.grant_publish(fn.role)
        acknowledge(
            fn.role,
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "kms:GenerateDataKey* (CDK's grant for publishing to an encrypted topic) on the alarm topic's own key "
            "only: SNS asks for a data key of the key's choosing per message.",
        )

    # ---- helpers ----------------------------------------------------------------------------------------------

    def _router_policy(self, fn: StepwiseFunction, table: dynamodb.ITable) -> None:
        prefix = self.config.prefix
        fn.allow(ROUTER_TABLE_ACTIONS, [table.table_arn])
        fn.allow(ROUTER_INDEX_ACTIONS, [f"{table.table_arn}/index/{C.GSI1}"])
        fn.allow(MACHINE_ACTIONS, [names.machines_arn_pattern(prefix)])
        fn.allow(EXECUTION_ACTIONS, [names.executions_arn_pattern(prefix)])
        fn.allow(["states:StartExecution"], [names.broadcast_machine_arn(prefix)])
        fn.allow(["states:DescribeExecution"], [names.broadcast_executions_arn(prefix)])
        fn.allow(
            ROUTER_ARCHIVE_READ,
            [
                self.bucket.arn_for_objects(f"{DELIVERIES_PREFIX}*"),
                self.bucket.arn_for_objects(f"{BROADCASTS_PREFIX}*"),
            ],
        )
        fn.allow(
            ROUTER_ARCHIVE_WRITE,
            [
                self.bucket.arn_for_objects(f"{DEAD_LETTERS_PREFIX}*"),
                self.bucket.arn_for_objects(f"{BROADCASTS_PREFIX}*"),
            ],
        )
        fn.allow(SCHEDULE_ACTIONS, [names.schedules_arn_pattern(prefix)])
        fn.allow(
            ["iam:PassRole"],
            [self.scheduler_role.role_arn],
            StringEquals={"iam:PassedToService": "scheduler.amazonaws.com"},
        )
        for arn, reason in (
            (
                names.machines_arn_pattern(prefix),
                "StartExecution (through the live alias) and SendTaskSuccess on this stage's workflow machines only, "
                "matched by their name prefix.",
            ),
            (
                names.executions_arn_pattern(prefix),
                "DescribeExecution and StopExecution on executions of this stage's machines: execution names are "
                "made per contact at run time.",
            ),
            (
                names.broadcast_executions_arn(prefix),
                "DescribeExecution on the broadcast machine's executions: one per broadcast, named at run time.",
            ),
            (
                names.schedules_arn_pattern(prefix),
                "Create and delete one-time schedules in this stage's schedule group only; schedule names are made "
                "per checkout or broadcast at run time.",
            ),
        ):
            acknowledge(fn.role, f"AwsSolutions-IAM5[Resource::{nag_arn(arn)}]", reason)

    def _archive_acknowledgements(self, fn: StepwiseFunction, prefixes: Sequence[str]) -> None:
        bucket = Stack.of(self).get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        for p in prefixes:
            acknowledge(
                fn.role,
                f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{p}*]",
                f"Objects under {p} of the archive bucket only: their keys are made per delivery, dead letter or "
                "broadcast at run time.",
            )

    def _target(self, fn: StepwiseFunction) -> targets.LambdaFunction:
        """An EventBridge target with retries for a day and the failed-events queue after them."""
        return targets.LambdaFunction(
            fn.function,
            dead_letter_queue=self.failed_events,
            retry_attempts=185,
            max_event_age=Duration.hours(24),
        )

    def feedback_target(self) -> targets.LambdaFunction:
        return self._target(self.routers["feedback"])
