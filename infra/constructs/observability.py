"""Dashboards and alarms: one dashboard per workflow (the step runner's EMF metrics, the funnel by metric math, the
machine's executions) and alarms on failed and timed-out executions, throttling and step runner errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import StackConfig
from infra.constructs.senders import Senders
from infra.constructs.state_machines import Machine
from infra.constructs.trigger_router import TriggerRouter
from shared import constants as C
from shared.messaging.reputation import BOUNCE_LIMIT, COMPLAINT_LIMIT, METRIC_BOUNCE_RATE, METRIC_COMPLAINT_RATE
from shared.workflow.compiler import build_graph
from shared.workflow.model import (
    ACTION_KINDS,
    MESSAGE_KINDS,
    BranchStep,
    EndStep,
    GoalStep,
    GotoStep,
    IfStep,
    SplitStep,
    WaitStep,
    WaitUntilStep,
    Workflow,
)

FUNNEL_PERIOD = Duration.days(1)
ACTIVITY_PERIOD = Duration.minutes(5)
T = TypeVar("T")
LOOP_LIMIT_STEP = "loop-limit"  # the step dimension the runner uses when settings.max_loops ends a run

# CloudWatch's dashboard quotas (docs/decision_log.md 2026-12-02): 500 widgets per dashboard, 500 metrics per
# widget and 2,500 per dashboard, counting the metrics a math expression reads as well as the expressions.
DASHBOARD_WIDGETS_LIMIT = 500
WIDGET_METRICS_LIMIT = 500
DASHBOARD_METRICS_LIMIT = 2500
# What we put in one graph: well under the quota, and a legend of 100 lines is already more than one reads.
GRAPH_SERIES = 100


@dataclass(frozen=True)
class MetricKey:
    """One CloudWatch metric the step runner emits for a workflow: its name and its exact dimension set."""

    name: str
    dimensions: tuple[tuple[str, str], ...]

    @property
    def step(self) -> str:
        return dict(self.dimensions)["step"]

    @property
    def label(self) -> str:
        extra = [v for k, v in self.dimensions if k not in ("workflow", "step")]
        return " / ".join([self.step, *extra])

    def metric(self, period: Duration) -> cw.Metric:
        return cw.Metric(
            namespace=C.METRICS_NAMESPACE,
            metric_name=self.name,
            dimensions_map=dict(self.dimensions),
            statistic=cw.Stats.SUM,
            period=period,
            label=self.label,
        )


def _key(name: str, workflow: str, step: str, **extra: str) -> MetricKey:
    return MetricKey(name, (("workflow", workflow), ("step", step), *extra.items()))


def workflow_metrics(wf: Workflow) -> dict[str, list[MetricKey]]:
    """Every (metric, dimensions) the step runner can emit for `wf`, by metric name, known from the model alone.

    Step ids come from the compiler's own graph, so unnamed end and go-to steps get the ids the runner sees."""
    graph = build_graph(wf.model_copy(deep=True))
    name = wf.name
    out: dict[str, list[MetricKey]] = {
        C.METRIC_ENTERED: [_key(C.METRIC_ENTERED, name, C.METRIC_ENTRY_STEP)],
        C.METRIC_STEP_COMPLETED: [],
        C.METRIC_BRANCH_TAKEN: [],
        C.METRIC_GOAL_REACHED: [],
        C.METRIC_WAIT_TIMED_OUT: [],
        C.METRIC_ENDED: [],
        C.METRIC_WAIT_STARTED: [],
        C.METRIC_MESSAGE_SENT: [],
        C.METRIC_MESSAGE_OPENED: [],
        C.METRIC_MESSAGE_CLICKED: [],
    }
    has_goto = False
    for sid in graph.order:
        step = graph.nodes[sid].step
        r = step.root
        if step.kind in ACTION_KINDS:
            out[C.METRIC_STEP_COMPLETED].append(_key(C.METRIC_STEP_COMPLETED, name, sid))
            if step.kind in MESSAGE_KINDS:
                out[C.METRIC_MESSAGE_SENT].append(_key(C.METRIC_MESSAGE_SENT, name, sid))
            if step.kind == "send_email":
                out[C.METRIC_MESSAGE_OPENED].append(_key(C.METRIC_MESSAGE_OPENED, name, sid))
                out[C.METRIC_MESSAGE_CLICKED].append(_key(C.METRIC_MESSAGE_CLICKED, name, sid))
        elif isinstance(r, IfStep):
            for b in ("then", "else"):
                out[C.METRIC_BRANCH_TAKEN].append(_key(C.METRIC_BRANCH_TAKEN, name, sid, branch=b))
        elif isinstance(r, BranchStep):
            for b in [*(c.name for c in r.branch), "otherwise"]:
                out[C.METRIC_BRANCH_TAKEN].append(_key(C.METRIC_BRANCH_TAKEN, name, sid, branch=b))
        elif isinstance(r, SplitStep):
            for p in r.split:
                out[C.METRIC_BRANCH_TAKEN].append(_key(C.METRIC_BRANCH_TAKEN, name, sid, branch=p.name))
        elif isinstance(r, GoalStep):
            out[C.METRIC_GOAL_REACHED].append(_key(C.METRIC_GOAL_REACHED, name, sid))
        elif isinstance(r, WaitStep | WaitUntilStep):
            out[C.METRIC_WAIT_STARTED].append(_key(C.METRIC_WAIT_STARTED, name, sid))
            if isinstance(r, WaitUntilStep) and r.wait_until.timeout is not None:
                out[C.METRIC_WAIT_TIMED_OUT].append(_key(C.METRIC_WAIT_TIMED_OUT, name, sid))
        elif isinstance(r, EndStep):
            out[C.METRIC_ENDED].append(_key(C.METRIC_ENDED, name, sid, reason="end_step"))
        elif isinstance(r, GotoStep):
            has_goto = True
    if has_goto:
        out[C.METRIC_ENDED].append(_key(C.METRIC_ENDED, name, LOOP_LIMIT_STEP, reason="loop_limit"))
    return out


def search(metric: str, *dimensions: str) -> str:
    """A dashboard SEARCH over one of our metrics whose dimension values (providers, sources) come at run time."""
    schema = ",".join((C.METRICS_NAMESPACE, *dimensions))
    return f"SEARCH('{{{schema}}} MetricName=\"{metric}\"', 'Sum', 300)"


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def titled(title: str, i: int, n: int) -> str:
    return title if n == 1 else f"{title} ({i + 1} of {n})"


def pack(widgets: Sequence[tuple[cw.IWidget, int]], fixed: int) -> list[list[cw.IWidget]]:
    """Widgets (each with the metrics it reads) in order onto pages of at most the dashboard quotas; the first page
    also holds `fixed` metrics in widgets already placed (the header rows)."""
    pages: list[list[cw.IWidget]] = [[]]
    used = fixed
    for widget, cost in widgets:
        if pages[-1] and (used + cost > DASHBOARD_METRICS_LIMIT or len(pages[-1]) + 3 >= DASHBOARD_WIDGETS_LIMIT):
            pages.append([])
            used = 0
        pages[-1].append(widget)
        used += cost
    return pages


def funnel(metrics: dict[str, list[MetricKey]]) -> list[cw.MathExpression]:
    """Share of entered contacts that completed each action step and reached each goal, in percent."""
    entered = metrics[C.METRIC_ENTERED][0].metric(FUNNEL_PERIOD)
    out = []
    for prefix, name in (("g", C.METRIC_GOAL_REACHED), ("s", C.METRIC_STEP_COMPLETED)):
        for i, key in enumerate(metrics[name]):
            what = "goal" if prefix == "g" else "completed"
            out.append(
                cw.MathExpression(
                    expression=f"100 * {prefix}{i} / entered",
                    using_metrics={f"{prefix}{i}": key.metric(FUNNEL_PERIOD), "entered": entered},
                    label=f"{key.step} {what}, % of entered",
                    period=FUNNEL_PERIOD,
                )
            )
    return out


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        machines: Sequence[Machine],
        step_runner: lambda_.Function,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        # Alarms publish to an encrypted topic; CloudWatch can use a customer-managed key only (the AWS-managed
        # aws/sns key's policy cannot let CloudWatch in).
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description=f"{config.prefix}: encrypts the alarm topic",
            enable_key_rotation=True,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],  # in a key policy "*" means this key
            )
        )
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name=f"Stepwise {config.stage} alarms", master_key=key, enforce_ssl=True
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.alarms: list[cw.Alarm] = []
        self._alarm(
            "StepRunnerErrors",
            step_runner.metric_errors(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
            # Webhook failures are retried and a deleted contact ends its run: a few errors are expected.
            threshold=5,
            description="The step runner failed 5 or more times in 5 minutes (its logs say why)",
        )
        self._alarm(
            "StepRunnerThrottles",
            step_runner.metric_throttles(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
            threshold=1,
            description="The step runner was throttled: the account's Lambda concurrency is exhausted",
        )
        self.dashboards: dict[str, cw.Dashboard] = {}
        # A workflow too large for one dashboard's quotas gets more pages, named <prefix>-<workflow>-2 and on.
        self.more_dashboards: dict[str, list[cw.Dashboard]] = {}
        for machine in machines:
            self._workflow(machine)

    def watch_ways_in_and_out(self, router: TriggerRouter, senders: Senders) -> None:
        """Alarms on everything that can lose or stall a delivery, and one dashboard for the ways in and out.
        Called once both are built (the sender publishes to this construct's topic, so it comes first)."""
        for cid, queue, what in (
            ("IntakeDeadLetters", router.dead_letters, "accepted deliveries failed 5 receives by the router"),
            ("FailedEvents", router.failed_events, "stream records or EventBridge events failed every retry"),
        ):
            self._alarm(
                cid,
                queue.metric_approximate_number_of_messages_visible(period=ACTIVITY_PERIOD, statistic=cw.Stats.MAXIMUM),
                threshold=1,
                description=f"Dead letters waiting: {what} (`stepwise replay` lists them from the archive)",
            )
        api_5xx = cw.Metric(
            namespace="AWS/ApiGateway",
            metric_name="5xx",
            dimensions_map={"ApiId": router.api.api_id, "Stage": "$default"},
            statistic=cw.Stats.SUM,
            period=ACTIVITY_PERIOD,
        )
        self._alarm(
            "Intake5xx",
            api_5xx,
            threshold=1,
            description="The intake API answered 5xx: our fault, never bad input (providers retry, but check why)",
        )
        functions = {"Intake": router.intake, **{f"Router-{k}": f for k, f in router.routers.items()}}
        functions["Sender"] = senders.sender
        for cid, fn in functions.items():
            self._alarm(
                f"{cid}Errors",
                fn.function.metric_errors(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
                threshold=1,
                description=f"{fn.function_name} failed (its records are retried, then dead-lettered; logs say why)",
            )
        deliveries = [
            cw.MathExpression(expression=search(name, "provider"), label=name, period=ACTIVITY_PERIOD)
            for name in (C.METRIC_DELIVERY_ACCEPTED, C.METRIC_DELIVERY_DUPLICATE)
        ]
        rejected = cw.MathExpression(
            expression=search(C.METRIC_DELIVERY_REJECTED, "provider", "status"),
            label=C.METRIC_DELIVERY_REJECTED,
            period=ACTIVITY_PERIOD,
        )
        queue = router.queue
        rows: list[list[cw.IWidget]] = [
            [
                cw.TextWidget(
                    markdown=f"# Ways in and out ({self.config.stage})\nIntake API, the router's queue and "
                    "consumers, dead letters, the sender.",
                    width=24,
                    height=2,
                )
            ],
            [
                cw.GraphWidget(title="Deliveries by provider", left=[*deliveries, rejected], width=12),
                cw.GraphWidget(
                    title="Intake latency (p99, ms)",
                    left=[
                        router.intake.function.metric_duration(period=ACTIVITY_PERIOD, statistic="p99"),
                        cw.Metric(
                            namespace="AWS/ApiGateway",
                            metric_name="Latency",
                            dimensions_map={"ApiId": router.api.api_id, "Stage": "$default"},
                            statistic="p99",
                            period=ACTIVITY_PERIOD,
                        ),
                    ],
                    width=12,
                ),
            ],
            [
                cw.GraphWidget(
                    title="Intake queue: messages in and out",
                    left=[
                        queue.metric_number_of_messages_sent(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
                        queue.metric_number_of_messages_deleted(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
                    ],
                    right=[
                        queue.metric_approximate_age_of_oldest_message(
                            period=ACTIVITY_PERIOD, statistic=cw.Stats.MAXIMUM
                        )
                    ],
                    width=12,
                ),
                cw.GraphWidget(
                    title="Dead letters (depth)",
                    left=[
                        q.metric_approximate_number_of_messages_visible(
                            period=ACTIVITY_PERIOD, statistic=cw.Stats.MAXIMUM, label=label
                        )
                        for label, q in (("intake DLQ", router.dead_letters), ("failed events", router.failed_events))
                    ],
                    right=[
                        cw.MathExpression(
                            expression=search(C.METRIC_DEAD_LETTER, "source"),
                            label=C.METRIC_DEAD_LETTER,
                            period=ACTIVITY_PERIOD,
                        )
                    ],
                    width=12,
                ),
            ],
            [
                cw.GraphWidget(
                    title="Invocations by function",
                    left=[
                        fn.function.metric_invocations(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM, label=cid)
                        for cid, fn in functions.items()
                    ],
                    width=12,
                ),
                cw.GraphWidget(
                    title="Errors by function",
                    left=[
                        fn.function.metric_errors(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM, label=cid)
                        for cid, fn in functions.items()
                    ],
                    width=12,
                ),
            ],
        ]
        rates = [
            cw.Metric(
                namespace=C.METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"configuration_set": senders.configuration_set_name},
                statistic=cw.Stats.MAXIMUM,
                period=Duration.hours(1),
                label=f"{name} (%, 7 days)",
            )
            for name in (METRIC_BOUNCE_RATE, METRIC_COMPLAINT_RATE)
        ]
        rows.append(
            [
                cw.GraphWidget(
                    title="Sender reputation: bounce and complaint rates",
                    left=rates,
                    # The thresholds the guard pauses marketing at (shared/messaging/reputation.py).
                    left_annotations=[
                        cw.HorizontalAnnotation(value=BOUNCE_LIMIT * 100, label="bounces: pause"),
                        cw.HorizontalAnnotation(value=COMPLAINT_LIMIT * 100, label="complaints: pause"),
                    ],
                    width=12,
                ),
                cw.GraphWidget(
                    title="Sender: invocations and errors",
                    left=[
                        senders.sender.function.metric_invocations(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
                        senders.sender.function.metric_errors(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
                    ],
                    width=12,
                ),
            ]
        )
        self.ways_dashboard = cw.Dashboard(
            self,
            "WaysInAndOut",
            dashboard_name=f"{self.config.prefix}-ways-in-and-out",
            default_interval=Duration.days(1),
            widgets=rows,
        )

    def _alarm(self, construct_id: str, metric: cw.IMetric, *, threshold: float, description: str) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def _workflow(self, machine: Machine) -> None:
        wf = machine.compiled.workflow
        sm = machine.state_machine
        scope = Construct(self, wf.name)
        failed = sm.metric_failed(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM)
        timed_out = sm.metric_timed_out(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM)
        throttled = sm.metric_throttled(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM)
        for cid, metric, what in (
            ("Failed", failed, "failed"),
            ("TimedOut", timed_out, "timed out"),
            ("Throttled", throttled, "were throttled (StartExecution or state transitions)"),
        ):
            self._alarm(
                f"{wf.name}-{cid}",
                metric,
                threshold=1,
                description=f"Executions of workflow {wf.name} {what}: a contact's run did not finish as written",
            )
        metrics = workflow_metrics(wf)
        executions = cw.GraphWidget(
            title="Executions",
            left=[
                sm.metric_started(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
                sm.metric_succeeded(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
                failed,
                timed_out,
                sm.metric_aborted(period=ACTIVITY_PERIOD, statistic=cw.Stats.SUM),
            ],
            width=12,
        )
        steps = funnel(metrics)
        parts = chunks(steps, GRAPH_SERIES)
        funnels = [
            (
                cw.GraphWidget(
                    title=titled("Funnel: % of entered (daily)", i, len(parts)),
                    left=list(part),
                    width=12,
                    period=FUNNEL_PERIOD,
                ),
                2 * len(part) + 1,  # each expression, the step's metric it reads, and `entered` once
            )
            for i, part in enumerate(parts)
        ]
        widgets: list[tuple[cw.IWidget, int]] = []
        for name, keys in metrics.items():
            if not keys:
                continue  # e.g. no goal step: nothing to show
            title = f"{name} (per step)" if name != C.METRIC_ENTERED else name
            groups = chunks(keys, GRAPH_SERIES)
            widgets.extend(
                (
                    cw.GraphWidget(
                        title=titled(title, i, len(groups)),
                        left=[k.metric(ACTIVITY_PERIOD) for k in group],
                        width=12,
                        statistic=cw.Stats.SUM,
                    ),
                    len(group),
                )
                for i, group in enumerate(groups)
            )
        header = cw.TextWidget(
            markdown=f"# {wf.name} ({self.config.stage})\n{wf.description or ''}\n\n"
            f"State machine `{sm.state_machine_name}`, alias `{C.STATE_MACHINE_ALIAS}`. "
            "Funnel: share of contacts who entered in each day that completed a step or reached a goal.",
            width=24,
            height=3,
        )
        (first_funnel, funnel_cost), rest_funnels = funnels[0], funnels[1:]
        pages = pack([*rest_funnels, *widgets], fixed=5 + funnel_cost)
        self.dashboards[wf.name] = self._dashboard(
            scope, "Dashboard", f"{self.config.prefix}-{wf.name}", [[header], [executions, first_funnel]], pages[0]
        )
        self.more_dashboards[wf.name] = [
            self._dashboard(
                scope,
                f"Dashboard{n}",
                f"{self.config.prefix}-{wf.name}-{n}",
                [[cw.TextWidget(markdown=f"# {wf.name} ({self.config.stage}), page {n}", width=24, height=1)]],
                page,
            )
            for n, page in enumerate(pages[1:], start=2)
        ]

    def _dashboard(
        self, scope: Construct, cid: str, name: str, head: list[list[cw.IWidget]], widgets: list[cw.IWidget]
    ) -> cw.Dashboard:
        rows = [*head, *(widgets[i : i + 2] for i in range(0, len(widgets), 2))]
        return cw.Dashboard(scope, cid, dashboard_name=name, default_interval=Duration.days(7), widgets=rows)
