"""Sender reputation guard: bounce and complaint rates per configuration set; above the limits, marketing pauses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.store.messages import MessageStore

# Gmail's and Yahoo's bulk-sender requirements (2024): keep the spam (complaint) rate under 0.3%. Amazon SES puts
# an account under review at a 5% bounce rate (and at 0.1% complaints; it may pause sending at 10% / 0.5%).
COMPLAINT_LIMIT = 0.003
BOUNCE_LIMIT = 0.05
WINDOW = timedelta(days=7)  # rolling window of hourly counters
MIN_SENDS = 200  # below this volume a rate says little (a single bounce of 10 sends is 10%)

METRIC_COMPLAINT_RATE = "ComplaintRate"
METRIC_BOUNCE_RATE = "BounceRate"


@dataclass
class Verdict:
    sends: int
    bounce_rate: float
    complaint_rate: float
    paused_now: bool
    why: str


@dataclass
class ReputationGuard:
    messages: MessageStore
    configuration_set: str
    alert: Callable[[str, str], None] | None = None  # (subject, text): the team's alert (SNS topic in AWS)
    metric: Callable[[str, float, str], None] | None = None  # (name, value, configuration set): EMF in AWS
    complaint_limit: float = COMPLAINT_LIMIT
    bounce_limit: float = BOUNCE_LIMIT
    window: timedelta = WINDOW
    min_sends: int = MIN_SENDS

    def record(self, what: str, at: datetime) -> Verdict:
        """Count a bounce or complaint ("bounces" / "complaints") and judge the window."""
        self.messages.add_counts(self.configuration_set, at, {what: 1}, self.window + timedelta(days=1))
        return self.judge(at)

    def judge(self, at: datetime) -> Verdict:
        totals = self.messages.window(self.configuration_set, at - self.window)
        sends = totals.get("sends", 0)
        bounce = totals.get("bounces", 0) / sends if sends else 0.0
        complaint = totals.get("complaints", 0) / sends if sends else 0.0
        if self.metric is not None:
            self.metric(METRIC_BOUNCE_RATE, bounce, self.configuration_set)
            self.metric(METRIC_COMPLAINT_RATE, complaint, self.configuration_set)
        over = []
        if complaint > self.complaint_limit:
            over.append(f"complaint rate {complaint:.2%} over {self.complaint_limit:.1%}")
        if bounce > self.bounce_limit:
            over.append(f"bounce rate {bounce:.2%} over {self.bounce_limit:.0%}")
        if sends < self.min_sends or not over:
            return Verdict(sends, bounce, complaint, False, "")
        why = f"{' and '.join(over)} in the last {self.window.days} days ({sends} sends)"
        rates = {"bounce_rate": round(bounce, 5), "complaint_rate": round(complaint, 5)}
        paused = self.messages.pause(self.configuration_set, why, at, rates)
        if paused and self.alert is not None:
            self.alert(
                f"Stepwise paused marketing email on {self.configuration_set}",
                f"Marketing sends are paused: {why}. Transactional messages still go. Held messages are sent "
                "when a person resumes sending.",
            )
        return Verdict(sends, bounce, complaint, paused, why)

    def resume(self, at: datetime, by: str) -> int:
        """A person clears the pause: held messages are queued again (the stream hands them to the sender)."""
        self.messages.resume(self.configuration_set, at, by)
        count = 0
        for msg in self.messages.held(self.configuration_set):
            count += self.messages.requeue(str(msg["pk"]).removeprefix("CONTACT#"), msg["message_id"])
        return count


def emf_metric(namespace: str) -> Callable[[str, float, str], None]:
    """BounceRate / ComplaintRate as EMF in the feedback Lambda's logs, by configuration set (no contact id), for
    the dashboards and alarms."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    def emit(name: str, value: float, configuration_set: str) -> None:
        with single_metric(
            name=name,
            unit=MetricUnit.Percent,
            value=round(value * 100, 4),
            namespace=namespace,
            default_dimensions={"configuration_set": configuration_set},
        ):
            pass

    return emit
