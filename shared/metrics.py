"""The engine's counters as CloudWatch EMF (one JSON line in the function's log per count): the step runner's and the
router's, named by workflow and step (plus a branch, reason...). Never a contact id as a dimension: each distinct
dimension value is a metric of its own, priced per metric."""

from __future__ import annotations

from collections.abc import Callable

# (name, workflow, step, extra dimensions): shared.enrollment.MetricsSink, the step runner's Deps.metrics.
CountSink = Callable[[str, str, str, dict[str, str]], None]


def emit_count(namespace: str, name: str, dims: dict[str, str]) -> None:
    """One count (value 1) of `name` in `namespace` with these dimensions, as one EMF line."""
    # Powertools loads with the first count, not with the handlers' import (any of it loads its Logger and Tracer).
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=namespace, default_dimensions=dims):
        pass


def emit_metric(namespace: str) -> CountSink:
    """A sink that writes each count as EMF in `namespace`, dimensions workflow, step and `dims`."""

    def emit(name: str, workflow: str, step: str, dims: dict[str, str]) -> None:
        emit_count(namespace, name, {"workflow": workflow, "step": step, **dims})

    return emit
