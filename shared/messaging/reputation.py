"""Sender reputation guard: bounce and complaint rates per configuration set; above the limits, marketing pauses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
class Rates:
    """The window the guard judges, without judging (no pause, no metric): what `stepwise sending status` shows."""

    since: datetime  # the window's start: 7 days back, or the last resume when later (a resume starts afresh)
    sends: int
    bounces: int
    complaints: int
    bounce_rate: float
    complaint_rate: float
    over: list[str]  # the limits crossed, in words ([] = none)
    enough: bool  # at least min_sends in the window (below it the guard never pauses)


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

    def rates(self, at: datetime, state: dict[str, Any] | None = None) -> Rates:
        """The counters of the window: the last 7 days, or since the last resume when that is later (a person
        who resumed sending judged the earlier rates; the guard judges afresh from there, by the hour)."""
        since = at - self.window
        state = self.messages.reputation_state(self.configuration_set) if state is None else state
        resumed = (state or {}).get("resumed_at")
        if resumed:
            # From the hour after the resume: the counters are hourly, and the resume's own hour holds the counts
            # that caused the pause (what is counted later in that hour is left out: at most an hour's worth).
            hour = datetime.fromisoformat(str(resumed)).replace(minute=0, second=0, microsecond=0)
            since = max(since, hour + timedelta(hours=1))
        totals = self.messages.window(self.configuration_set, since)
        sends, bounces, complaints = (totals.get(k, 0) for k in ("sends", "bounces", "complaints"))
        bounce = bounces / sends if sends else 0.0
        complaint = complaints / sends if sends else 0.0
        over = []
        if complaint > self.complaint_limit:
            over.append(f"complaint rate {complaint:.2%} over {self.complaint_limit:.1%}")
        if bounce > self.bounce_limit:
            over.append(f"bounce rate {bounce:.2%} over {self.bounce_limit:.0%}")
        return Rates(since, sends, bounces, complaints, bounce, complaint, over, sends >= self.min_sends)

    def judge(self, at: datetime) -> Verdict:
        r = self.rates(at)
        sends, bounce, complaint, over = r.sends, r.bounce_rate, r.complaint_rate, r.over
        if self.metric is not None:
            self.metric(METRIC_BOUNCE_RATE, bounce, self.configuration_set)
            self.metric(METRIC_COMPLAINT_RATE, complaint, self.configuration_set)
        if not r.enough or not over:
            return Verdict(sends, bounce, complaint, False, "")
        days = f"the last {self.window.days} days" if r.since == at - self.window else f"since {r.since:%Y-%m-%d %H:%M}"
        why = f"{' and '.join(over)} in {days} ({sends} sends)"
        rates = {"bounce_rate": round(bounce, 5), "complaint_rate": round(complaint, 5)}
        paused = self.messages.pause(self.configuration_set, why, at, rates)
        if paused and self.alert is not None:
            self.alert(
                f"Stepwise paused marketing email on {self.configuration_set}",
                f"Marketing sends are paused: {why}. Transactional messages still go. Held messages are sent "
                "when a person resumes sending.",
            )
        return Verdict(sends, bounce, complaint, paused, why)

    def resume(self, at: datetime, by: str, reason: str = "") -> int:
        """A person clears the pause (with an audit record: who, why, the pause lifted, the rates then): held
        messages are queued again (the stream hands them to the sender). The count requeued."""
        r = self.rates(at)
        rates = {"sends": r.sends, "bounce_rate": round(r.bounce_rate, 5), "complaint_rate": round(r.complaint_rate, 5)}
        held = self.messages.held(self.configuration_set)
        self.messages.resume(self.configuration_set, at, by, reason, {"rates_then": rates, "held": len(held)})
        count = 0
        for msg in held:
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
