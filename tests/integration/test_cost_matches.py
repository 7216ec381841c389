"""What `stepwise cost` predicts is what Step Functions bills: for every path of every example workflow, the state
transitions of the predicted path equal the states moto's interpreter entered for a contact who took it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from shared.workflow.cost import CostReport, analyse, transitions
from shared.workflow.model import Workflow, load_workflow
from stepwise.simulate import Simulation, TimedEvent
from tests.integration.support import NAG, contact, executions, run_in_order, states_entered, timed, workflow

D0 = timedelta(0)
CART = {"checkout_id": "1001", "cart_value": 89.5, "idle_minutes": 12}
PURCHASED = {"tag": "Purchased"}
FUNNEL = {"form": "offer-1-signup", "form_type": "funnel"}
CUSTOMERS = {"list": "customers"}

# Per example: its workflow files and events that between them take every path `stepwise cost` lists.
EXAMPLES: dict[str, tuple[list[str], list[TimedEvent]]] = {
    "abandoned-checkout": (
        ["abandoned-checkout"],
        [
            # bought on day 2: else branch, wait resumed
            timed(D0, "a1", "checkout.abandoned", CART, email="ana@example.com"),
            timed(timedelta(days=2), "a2", "tag.added", PURCHASED, email="ana@example.com"),
            # bought before the day was out: the go-to into the wait, which a later purchase resumes
            timed(D0, "c1", "checkout.abandoned", CART, email="cy@example.com"),
            timed(timedelta(hours=3), "c2", "tag.added", PURCHASED, email="cy@example.com"),
            timed(timedelta(days=3), "c3", "tag.added", PURCHASED, email="cy@example.com"),
            # bought early, nothing after: the go-to into the wait, which times out
            timed(D0, "d1", "checkout.abandoned", CART, email="dan@example.com"),
            timed(timedelta(hours=3), "d2", "tag.added", PURCHASED, email="dan@example.com"),
            # never bought: the else branch's wait times out
            timed(D0, "e1", "checkout.abandoned", CART, email="eve@example.com"),
        ],
    ),
    "two-offers": (
        ["two-offers", "campaign-1", "campaign-2"],
        [
            timed(D0, "f1", "form.submitted", FUNNEL, email="dario@example.com"),
            timed(D0, "f2", "form.submitted", FUNNEL, email="elena@example.com"),
            timed(timedelta(days=2), "t1", "tag.added", {"tag": "Customer 1"}, email="dario@example.com"),
        ],
    ),
    "welcome-series": (
        ["welcome-series"],
        [timed(D0, "s1", "list.subscribed", {"list": "newsletter"}, email="fabio@example.com", phone="+447700900123")],
    ),
    "sms-not-delivered": (
        ["sms-not-delivered"],
        [timed(D0, "n1", "sms.not_delivered", {"campaign": "spring-sale", "message_id": "m-9"}, phone="+393471234567")],
    ),
    "lead-score-alert": (
        ["lead-score-alert"],
        [timed(D0, "s1", "score.changed", {"score": 85, "previous": 60, "delta": 25}, email="elena@example.com")],
    ),
    "holiday-series": (
        ["holiday-series"],
        [
            timed(D0, "l1", "list.subscribed", CUSTOMERS, email="ana@example.com"),
            timed(D0, "l2", "list.subscribed", CUSTOMERS, email="dario@example.com"),
            timed(timedelta(days=1, hours=1), "c1", "coupon.used", {"coupon": "XMAS"}, email="ana@example.com"),
        ],
    ),
}


def deployed_report(sim: Simulation, name: str) -> CostReport:
    """The cost report of the definition the local stack runs (the one `stepwise cost` compiles the same way)."""
    definition = sim.stack.sfn.describe_state_machine(stateMachineArn=sim.machines[name])["definition"]
    return analyse(json.loads(definition))


def real_runs(sim: Simulation, name: str) -> list[dict[str, Any]]:
    runs = executions(sim, name)
    assert runs and {r["status"] for r in runs} == {"SUCCEEDED"}
    return [{**r, "states": states_entered(sim, r["executionArn"])} for r in runs]


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_predicted_transitions_equal_the_states_entered_on_every_path(example: str) -> None:
    names, events = EXAMPLES[example]
    with Simulation([load_workflow(f"workflows/{n}.yaml") for n in names]) as sim:
        run_in_order(sim, events)
        for name in names:
            report = deployed_report(sim, name)
            taken = set()
            for run in real_runs(sim, name):
                # Matched by the sequence of states: a run that took no predicted path fails here.
                matching = [p for p in report.paths if p == run["states"]]
                assert matching, f"{name}: {run['states']} is no path `stepwise cost` lists"
                assert transitions(matching[0]) == len(run["states"])
                taken.add(tuple(matching[0]))
            assert taken == {tuple(p) for p in report.paths}, f"{name}: not every predicted path was taken"


LOOP = NAG % 5


def test_a_loop_costs_its_path_plus_the_reported_transitions_per_iteration() -> None:
    loop_workflow: Workflow = workflow(LOOP)
    with Simulation([loop_workflow]) as sim:
        run_in_order(
            sim,
            [
                timed(D0, "s1", "list.subscribed", {"list": "trial"}, email="ana@example.com"),
                timed(timedelta(days=2, hours=12), "t1", "tag.added", PURCHASED, email="ana@example.com"),
            ],
        )
        report = deployed_report(sim, "nag")
        (path,) = report.paths
        (loop,) = report.loops
        (run,) = real_runs(sim, "nag")
        jumps = 2  # the checks on days 1 and 2 found no purchase; the one on day 3 did
        assert len(contact(sim, email="ana@example.com")["messages"]) == 1 + jumps
        assert len(run["states"]) == transitions(path) + jumps * transitions(loop)
        # The run is the predicted path with the loop taken `jumps` times where it starts.
        start = path.index(loop[0])
        assert run["states"] == path[:start] + loop * jumps + path[start:]
