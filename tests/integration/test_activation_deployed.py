"""Activation where no deployment time is given (the router Lambdas): the workflow counts from its state machine's
creation, so the first delivery of an event that happened moments before it arrived enters, and an event from
before the deployment never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.enrollment import Enroller
from shared.events import ContactEvent
from shared.lifecycle import read_status
from shared.routing import Router
from shared.workflow.compiler import entry_plans
from stepwise.simulate import Simulation
from tests.integration.support import workflow

WELCOME = workflow(
    """
name: welcome
triggers: [{event: list.subscribed}]
steps:
  - id: hello
    add_tag: welcomed
"""
)
# A virtual clock ahead of the machine's (real) creation date, as in AWS where the machine predates every event.
LATER = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def signup(eid: str, email: str, occurred_at: datetime) -> ContactEvent:
    return ContactEvent.model_validate(
        {
            "id": eid,
            "type": "list.subscribed",
            "contact": {"email": email},
            "data": {"list": "news"},
            "occurred_at": occurred_at.isoformat(),
        }
    )


def test_the_first_event_enters_and_one_from_before_the_deployment_does_not() -> None:
    with Simulation([WELCOME], start=LATER) as sim:
        enroller = Enroller(sim.store, sim.stack.sfn, sim.arn_template, plans=entry_plans([WELCOME]))
        lambda_router = Router([WELCOME], sim.store, enroller, sim.stack.sfn)  # no activated_at, as in AWS
        created = sim.stack.sfn.describe_state_machine(stateMachineArn=sim.machines["welcome"])["creationDate"]

        # Delivered a little after it happened: the very first entry attempt must not refuse it.
        (first,) = lambda_router.handle(signup("s1", "ann@example.com", sim.now - timedelta(seconds=3)))
        assert (first.action, first.why) == ("entered", "started")
        status = read_status(sim.store, "welcome")
        assert status.since == created  # the deployment, not the first entry

        # An event dated before the machine existed never counts (Shopify retrying an old order, say).
        (old,) = lambda_router.handle(signup("s2", "bo@example.com", created - timedelta(days=1)))
        assert old.action == "not entered" and "before the workflow was activated" in old.why
