"""The Stepwise stack: the constructs of infra/constructs/ wired together.

Adding a runtime folder (the trigger router, the senders) is one construct in infra/constructs/ and a few lines
here: build it after the constructs it needs, pass it what it reads, hand what it exposes to the observability."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import StackConfig
from infra.constructs.observability import Observability
from infra.constructs.senders import Senders
from infra.constructs.state_machines import StateMachines, load_workflows
from infra.constructs.step_runner import StepRunner
from infra.constructs.storage import Storage
from infra.constructs.trigger_router import TriggerRouter


class StepwiseStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description=f"Stepwise workflow engine ({config.stage})", **kwargs)
        Tags.of(self).add("stepwise:stage", config.stage)
        self.config = config
        self.workflows = load_workflows(config.workflows)

        self.storage = Storage(self, "Storage")
        self.step_runner = StepRunner(
            self,
            "StepRunner",
            config=config,
            table=self.storage.table,
            workflows=[w.workflow for w in self.workflows],
        )
        self.state_machines = StateMachines(
            self,
            "StateMachines",
            config=config,
            workflows=self.workflows,
            step_runner=self.step_runner.function,
        )
        self.observability = Observability(
            self,
            "Observability",
            config=config,
            machines=list(self.state_machines.machines.values()),
            step_runner=self.step_runner.function,
        )
        models = [w.workflow for w in self.workflows]
        self.trigger_router = TriggerRouter(
            self,
            "TriggerRouter",
            config=config,
            table=self.storage.table,
            workflows=models,
            deps_layer=self.step_runner.deps,
        )
        self.senders = Senders(
            self,
            "Senders",
            config=config,
            table=self.storage.table,
            workflows=models,
            failed_events=self.trigger_router.failed_events,
            feedback=self.trigger_router.feedback_target(),
            unsubscribe_url=f"{self.trigger_router.url}/unsubscribe/",
            alert_topic=self.observability.topic,
        )
        self.trigger_router.guard_reputation(self.senders.configuration_set_name, self.observability.topic)
        self.observability.watch_ways_in_and_out(self.trigger_router, self.senders)

        CfnOutput(self, "TableName", value=self.storage.table.table_name)
        CfnOutput(self, "StepRunnerName", value=self.step_runner.function.function_name)
        CfnOutput(self, "AlarmTopicArn", value=self.observability.topic.topic_arn)
        CfnOutput(self, "WebhookUrl", value=f"{self.trigger_router.url}/webhooks/", description="+ {provider}")
        CfnOutput(self, "EventsUrl", value=f"{self.trigger_router.url}/events", description="POST, with the API key")
        CfnOutput(self, "ArchiveBucket", value=self.trigger_router.bucket.bucket_name)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.trigger_router.dead_letters.queue_url)
        CfnOutput(self, "FailedEventsQueueUrl", value=self.trigger_router.failed_events.queue_url)
        for name, machine in self.state_machines.machines.items():
            CfnOutput(self, f"Alias-{name}", value=machine.alias.ref, description=f"{name}: StartExecution here")
