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

# Typed errors the step runner raises and the state machine catches (exception class names).
ERROR_LOOP_LIMIT = "LoopLimitReached"
ERROR_WEBHOOK = "WebhookFailed"
TYPED_ERRORS = ("ContactNotFound", "InvalidStep", ERROR_WEBHOOK)
# ARN of a workflow's state machine: `{workflow}` is replaced by the workflow name. In AWS it names the
# `live` alias, so a contact entering now runs the version deployed now.
ENV_STATE_MACHINE_ARN_TEMPLATE = "STEPWISE_STATE_MACHINE_ARN_TEMPLATE"
# Path of the entry plans file (shared/history.py EntryPlan, one per workflow), relative to the code root. The
# build writes it beside the code as ENTRY_PLANS_FILE; unset, a start records no passive steps.
ENV_ENTRY_PLANS = "STEPWISE_ENTRY_PLANS"
ENTRY_PLANS_FILE = "entry_plans.json"
