"""Names both sides must agree on: environment keys, table keys, state names, error names."""

from __future__ import annotations

# Environment variables of the Lambda functions (infra sets them, the handlers' settings read them).
ENV_TABLE_NAME = "STEPWISE_TABLE"
ENV_STAGE = "STEPWISE_STAGE"
ENV_POWERTOOLS_SERVICE = "POWERTOOLS_SERVICE_NAME"
ENV_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

SERVICE_NAME = "stepwise"
METRICS_NAMESPACE = "Stepwise"
STATE_MACHINE_ALIAS = "live"

# Metric names (EMF, namespace METRICS_NAMESPACE). Dimensions: workflow and step, plus branch (BranchTaken) or
# reason (Ended); never a contact id. The dashboards read the same names.
METRIC_ENTERED = "Entered"
METRIC_ENTRY_STEP = "entry"  # the step dimension of Entered
METRIC_STEP_COMPLETED = "StepCompleted"
METRIC_BRANCH_TAKEN = "BranchTaken"
METRIC_GOAL_REACHED = "GoalReached"
METRIC_ENDED = "Ended"
METRIC_WAIT_TIMED_OUT = "WaitTimedOut"
METRIC_WAIT_STARTED = "WaitStarted"  # a contact reached a wait or wait_until step
METRIC_MESSAGE_SENT = "MessageSent"  # a send or notify step handed its message over (not when skipped)
METRIC_MESSAGE_OPENED = "MessageOpened"  # the first open of an email, by the step that sent it
METRIC_MESSAGE_CLICKED = "MessageClicked"  # the first click in an email, by the step that sent it

# Events the engine itself emits (besides those of the actions: tag.added, field.changed...).
EVENT_STAGE_ENTERED = "campaign.stage_entered"
EVENT_CAMPAIGN_COMPLETED = "campaign.completed"

# Single-table keys.
PK = "pk"
SK = "sk"
GSI1 = "gsi1"
GSI1_PK = "gsi1pk"
GSI1_SK = "gsi1sk"
TTL_ATTRIBUTE = "expires_at"

# State names the compiler emits besides the step ids.
STATE_ENTRY = "Entry"
STATE_START_DELAY = "StartDelay"
STATE_DONE = "Done"
STATE_LOOP_LIMIT = "LoopLimitReached"
STATE_FAILED_PREFIX = "Failed-"
CHOICE_SUFFIX = ".branch"
TIMEOUT_SUFFIX = ".timed-out"  # the Task recording a wait's timeout when nothing else would
# Where a wait's States.Timeout Catch puts the error in $.run: the Task it leads to records the timeout. The second
# key says a go-to lies between the wait and that Task (on_timeout: [goto: x]): the Task counts the jump.
RUN_TIMED_OUT = "timed_out"
RUN_TIMED_OUT_GOTO = "timed_out_goto"

# Typed errors the step runner raises and the state machine catches (exception class names).
ERROR_LOOP_LIMIT = "LoopLimitReached"
ERROR_WEBHOOK = "WebhookFailed"
# Hosts or networks (comma/space separated) a call_webhook step may reach beyond public https (shared/webhooks.py).
ENV_WEBHOOK_ALLOW = "STEPWISE_WEBHOOK_ALLOW"
# The step runner's own timeout: a webhook timeout must end before it (infra/constructs/step_runner.py).
STEP_RUNNER_TIMEOUT_SECONDS = 60
TYPED_ERRORS = ("ContactNotFound", "InvalidStep", ERROR_WEBHOOK)
# A send outside its window or over the frequency cap: the message is the UTC time to try again (ISO, Z). The
# machine catches it on the Task into DEFERRED_SUFFIX (a Pass parsing the cause) and HELD_SUFFIX (a Wait), then
# enters the same Task again; only Tasks with a send that can defer carry that Catch.
ERROR_SEND_DEFERRED = "SendDeferred"
DEFERRED_SUFFIX = ".deferred"
HELD_SUFFIX = ".held"
DEFERRAL_TRANSITIONS = 3  # the Pass, the Wait and the Task entered again
# ARN of a workflow's state machine: `{workflow}` is replaced by the workflow name. In AWS it names the
# `live` alias, so a contact entering now runs the version deployed now.
ENV_STATE_MACHINE_ARN_TEMPLATE = "STEPWISE_STATE_MACHINE_ARN_TEMPLATE"
# Path of the entry plans file (shared/history.py EntryPlan, one per workflow), relative to the code root. The
# build writes it beside the code as ENTRY_PLANS_FILE; unset, a start records no passive steps.
ENV_ENTRY_PLANS = "STEPWISE_ENTRY_PLANS"
ENTRY_PLANS_FILE = "entry_plans.json"

# ---- the ways in (functions/trigger_router/) and out (functions/senders/) ---------------------------------------
# Handlers (module.function, as the CDK sets them and the local runtime imports them).
HANDLER_INTAKE = "functions.trigger_router.intake.handler"  # HTTP API: POST /webhooks/{provider}[/{token}], /events
HANDLER_ROUTER_QUEUE = "functions.trigger_router.router.queue_handler"  # SQS: accepted deliveries
HANDLER_ROUTER_STREAM = "functions.trigger_router.router.stream_handler"  # table stream: the step runner's outbox
HANDLER_ROUTER_STATUS = "functions.trigger_router.router.status_handler"  # EventBridge: execution status changes
HANDLER_ROUTER_SCHEDULE = "functions.trigger_router.router.schedule_handler"  # Scheduler: abandonment, broadcasts
HANDLER_SENDER = "functions.senders.handler.handler"  # table stream: message items (MSG#) to deliver
HANDLER_FEEDBACK = "functions.trigger_router.router.feedback_handler"  # EventBridge: SES events, SMS receipts

# Environment keys of those functions (besides ENV_TABLE_NAME, ENV_STATE_MACHINE_ARN_TEMPLATE, ENV_ENTRY_PLANS).
ENV_ARCHIVE_BUCKET = "STEPWISE_ARCHIVE_BUCKET"  # raw deliveries, 30-day lifecycle; dead letters; broadcast snapshots
ENV_INTAKE_QUEUE_URL = "STEPWISE_INTAKE_QUEUE_URL"  # accepted deliveries, consumed by the router
ENV_SECRETS_PREFIX = "STEPWISE_SECRETS_PREFIX"  # SSM parameter path of webhook secrets: {prefix}/webhooks/{provider}
ENV_API_KEY_PARAMETER = "STEPWISE_API_KEY_PARAMETER"  # SSM parameter (SecureString) holding the /events API key
ENV_WORKFLOWS_FILE = "STEPWISE_WORKFLOWS"  # the deployed workflow models (JSON) the router matches events against
ENV_SCHEDULER_ROLE_ARN = "STEPWISE_SCHEDULER_ROLE_ARN"  # the role EventBridge Scheduler assumes to call the router
ENV_SCHEDULE_TARGET_ARN = "STEPWISE_SCHEDULE_TARGET_ARN"  # the schedule handler's function ARN
ENV_SCHEDULE_GROUP = "STEPWISE_SCHEDULE_GROUP"  # this stage's schedule group
ENV_BROADCAST_MACHINE_ARN = "STEPWISE_BROADCAST_MACHINE_ARN"  # the Distributed Map machine of fixed-date lists
ENV_SES_CONFIGURATION_SET = "STEPWISE_SES_CONFIGURATION_SET"
ENV_EMAIL_FROM = "STEPWISE_EMAIL_FROM"  # the verified SES identity marketing email is sent from
ENV_SMS_ORIGINATION = "STEPWISE_SMS_ORIGINATION"  # phone number / pool ARN SMS are sent from
ENV_UNSUBSCRIBE_URL = "STEPWISE_UNSUBSCRIBE_URL"  # the intake API's base URL, for one-click unsubscribe links
ENV_UNSUBSCRIBE_KEY_PARAMETER = "STEPWISE_UNSUBSCRIBE_KEY_PARAMETER"  # SSM parameter: the key signing those links
ENV_TEMPLATES_DIR = "STEPWISE_TEMPLATES"  # the message templates in the sender's asset, relative to the code root
ENV_SMS_CONFIGURATION_SET = "STEPWISE_SMS_CONFIGURATION_SET"  # End User Messaging SMS configuration set (optional)
ENV_UNSUBSCRIBE_MAILTO = "STEPWISE_UNSUBSCRIBE_MAILTO"  # address for List-Unsubscribe's mailto form (optional)
ENV_ALERT_TOPIC_ARN = "STEPWISE_ALERT_TOPIC_ARN"  # SNS topic the reputation guard alerts the team on (optional)
# Locally (stepwise local / simulate): a provider's webhook secret from STEPWISE_WEBHOOK_SECRET_<PROVIDER>.
ENV_LOCAL_SECRET_PREFIX = "STEPWISE_WEBHOOK_SECRET_"
ENV_LOCAL_API_KEY = "STEPWISE_API_KEY"
WORKFLOWS_FILE = "workflows.json"
TEMPLATES_FOLDER = "templates"
# The maxReceiveCount of the queues the router consumes: on a record's last receive the router writes it to the
# dead-letter store (S3 dead-letters/) before SQS moves it to the DLQ, so `stepwise replay` can re-run it.
ENV_MAX_RECEIVE_COUNT = "STEPWISE_MAX_RECEIVE_COUNT"
# Intake and router metrics (EMF, namespace METRICS_NAMESPACE); dimensions provider and status / source only.
METRIC_DELIVERY_ACCEPTED = "DeliveryAccepted"  # provider; a duplicate counts under DeliveryDuplicate instead
METRIC_DELIVERY_DUPLICATE = "DeliveryDuplicate"  # provider
METRIC_DELIVERY_REJECTED = "DeliveryRejected"  # provider, status (400, 401, 404, 413)
METRIC_DEAD_LETTER = "DeadLetter"  # source (queue, stream, status, schedule, feedback, unresolved)
