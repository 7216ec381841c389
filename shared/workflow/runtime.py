"""Workflows at run time: plain classes (no pydantic) read from data the authoring models already validated.

`stepwise validate` and `cdk synth` validate every workflow with the pydantic models of model.py and conditions.py;
what the Lambdas get from them is plain data: the workflows file the build writes into the router's asset
(shared/runtime/workflows_file.py, each workflow dumped by alias, unset fields left out), a Task payload's step
specs (compiler `step_spec`), a wait item's condition. Building the authoring models' validators costs ~100 ms of
every cold start; the router and the step runner read that data into these classes instead, which have the same
names, attributes and methods the runtime code reads (`isinstance(r, GoalStep)`, `r.goal.condition`,
`cond.describe()`), and no validation: nothing here checks what the models checked (a malformed step still fails
the step runner's `parse_step` as InvalidStep, through the KeyError or TypeError reading it).

The evaluation of conditions lives here too (conditions.py `evaluate` converts an authoring condition and calls
this one), so there is one implementation. An authoring object passed where a run-time one is read (tests, the
local runtime) is converted on the way in (`as_runtime`), from its dump with unset fields left out, so what a model
says was set (Compare's operators) is what is set here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from shared import history_plans as history  # the authoring EntryPlan (shared.history re-exports it)
    from shared.workflow import conditions as authoring

ANYTIME = "anytime"  # a send step's send_window that lifts the workflow's window
# Actions that hand a message over (counted as MessageSent when not skipped).
MESSAGE_KINDS = frozenset({"send_email", "send_sms", "send_site_message", "notify"})
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "starts_with", "in", "exists")
_NUMERIC = ("gt", "gte", "lt", "lte")
_TRUE = {"1", "on", "t", "true", "y", "yes"}


class Form:
    """A run-time form: slots named as the authoring model's fields, filled from keyword values or defaults."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._fields = (*cls._fields, *cls.__dict__.get("__slots__", ()))

    def __init__(self, **values: Any) -> None:
        for name in self._fields:
            if name in values:
                value = values[name]
            else:
                value = self._defaults.get(name)
                value = list(value) if isinstance(value, list) else value
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self._fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"

    __hash__ = None  # type: ignore[assignment]


def _at(v: Any) -> datetime | None:
    return v if v is None or isinstance(v, datetime) else datetime.fromisoformat(str(v))


def _seconds(v: Any) -> Any:
    """A duration as the models dump it (`1d`, the human form) or seconds, in seconds; None stays None."""
    if v is None or isinstance(v, int):
        return v
    from shared.workflow.durations import parse_duration

    return parse_duration(v)


def _bool(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    return str(v).strip().lower() in _TRUE


# ---- comparisons and filters ---------------------------------------------------------------------------------


class Compare(Form):
    """Operators applied to one value; several operators must all hold. `model_fields_set` is the operators given
    (`in` as `in_`), as the authoring model has it."""

    __slots__ = ("contains", "eq", "exists", "gt", "gte", "in_", "lt", "lte", "model_fields_set", "ne", "starts_with")
    eq: Any
    ne: Any
    gt: float | None
    gte: float | None
    lt: float | None
    lte: float | None
    contains: str | None
    starts_with: str | None
    in_: list[Any] | None
    exists: bool | None
    model_fields_set: set[str]

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if "model_fields_set" not in values:
            self.model_fields_set = {k for k in values if k in self._fields}

    @classmethod
    def read(cls, data: dict[str, Any], subject: str = "") -> Compare:
        """From a dumped Compare (or a condition with operators, less the key `subject` naming its value)."""
        values: dict[str, Any] = {}
        for key, v in data.items():
            if key == subject or key not in OPERATORS:
                continue
            if key in _NUMERIC and v is not None:
                v = float(v)
            elif key == "exists":
                v = _bool(v)
            values["in_" if key == "in" else key] = v
        return cls(**values)

    def describe(self) -> str:
        return describe_ops(self)


def describe_ops(cmp: Any) -> str:
    """A Compare's operators as a marketer reads them (`gt 50 and lt 100`): the run-time form's or the authoring
    model's (conditions.py), which both name the operators given `model_fields_set`."""
    return " and ".join(f"{'in' if k == 'in_' else k} {_shown(getattr(cmp, k))}" for k in sorted(cmp.model_fields_set))


def _shown(value: Any) -> str:
    """A value as a marketer wrote it: 10, not 10.0 (bounds are kept as floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def compare(value: Any, cmp: Compare | authoring.Compare) -> bool:
    """Whether `value` satisfies every operator set in `cmp` (a missing value fails all but exists=false)."""
    for name in cmp.model_fields_set:
        want = getattr(cmp, name)
        if name == "exists":
            if (value is not None) != bool(want):
                return False
            continue
        if value is None:
            return False
        if name == "eq" and not _equal(value, want):
            return False
        if name == "ne" and _equal(value, want):
            return False
        if name in ("gt", "gte", "lt", "lte"):
            num = _number(value)
            if num is None:
                return False
            if name == "gt" and not num > want:
                return False
            if name == "gte" and not num >= want:
                return False
            if name == "lt" and not num < want:
                return False
            if name == "lte" and not num <= want:
                return False
        if name == "contains" and not any(
            str(want).casefold() in str(item).casefold() for item in (value if isinstance(value, list) else [value])
        ):
            return False  # the text, or any item of a list, contains it (docs/workflows.md "Operators")
        if name == "starts_with" and not _text(value).casefold().startswith(str(want).casefold()):
            return False
        if name == "in_" and not any(_equal(value, w) for w in want):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None and not isinstance(a, bool) and not isinstance(b, bool):
        return na == nb
    return bool(a == b)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float | Decimal):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _text(v: Any) -> str:
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v)


class Where:
    """A filter on event data: `{field: value}` (equality) or `{field: {gt: 50}}`."""

    __slots__ = ("root",)

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return type(other) is Where and other.root == self.root

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Where({self.root!r})"

    def comparisons(self) -> dict[str, Compare]:
        out = {}
        for key, value in self.root.items():
            out[key] = Compare.read(value) if isinstance(value, dict) else Compare(eq=value)
        return out

    def matches(self, data: dict[str, Any]) -> bool:
        return all(compare(lookup(data, k), c) for k, c in self.comparisons().items())


def _where(v: Any) -> Where | None:
    if v is None or isinstance(v, Where):
        return v
    return Where(dict(v))  # a dump's mapping (an authoring Where is read by as_runtime)


def pick(data: Any, paths: set[str]) -> dict[str, Any]:
    """The parts of `data` at the dotted `paths`, nested as they were, so `lookup` finds them again: what a
    parked wait keeps of its triggering event for the conditions that read it later."""
    out: dict[str, Any] = {}
    for path in sorted(paths):
        value = lookup(data, path)
        if value is None:
            continue
        *parents, last = path.split(".")
        cur = out
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[last] = value
    return out


def lookup(data: Any, path: str) -> Any:
    """Dotted lookup (`cart.value`); None when any part is missing."""
    cur = data
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


# ---- conditions ------------------------------------------------------------------------------------------------


class HasTag(Form):
    __slots__ = ("has_tag",)
    has_tag: str

    def describe(self) -> str:
        return f"has tag {self.has_tag!r}"


class _Operand(Form):
    """A condition that names a value and applies Compare's operators to it."""

    __slots__ = ("_ops",)
    _subject: ClassVar[str]
    _ops: Compare

    def ops(self) -> Compare:
        """The operators alone, without the key that names the value."""
        return self._ops


class FieldCondition(_Operand):
    """A custom field ("detail") of the contact, or a built-in one: email, phone, timezone, first_name."""

    __slots__ = ("field",)
    _subject: ClassVar[str] = "field"
    field: str

    def describe(self) -> str:
        return f"field {self.field} {self.ops().describe()}"


class TriggerField(_Operand):
    """A field of the event that started this execution (`event_field: cart_value, gt: 50`)."""

    __slots__ = ("event_field",)
    _subject: ClassVar[str] = "event_field"
    event_field: str

    def describe(self) -> str:
        return f"trigger event {self.event_field} {self.ops().describe()}"


class ScoreCondition(Form):
    __slots__ = ("score",)
    score: Compare

    def describe(self) -> str:
        return f"score {self.score.describe()}"


class InList(Form):
    __slots__ = ("in_list",)
    in_list: str

    def describe(self) -> str:
        return f"in list {self.in_list!r}"


class InCampaign(Form):
    __slots__ = ("at_stage", "in_campaign")
    in_campaign: str
    at_stage: str | None

    def describe(self) -> str:
        stage = f" at stage {self.at_stage!r}" if self.at_stage else ""
        return f"in campaign {self.in_campaign!r}{stage}"


class PipelineRef(Form):
    __slots__ = ("pipeline", "stage")
    pipeline: str
    stage: str


class InStage(Form):
    __slots__ = ("in_stage",)
    in_stage: PipelineRef

    def describe(self) -> str:
        return f"in pipeline {self.in_stage.pipeline!r} stage {self.in_stage.stage!r}"


class OpenedEmail(Form):
    __slots__ = ("opened_email", "within")
    opened_email: str
    within: int | None

    def describe(self) -> str:
        return f"opened email {self.opened_email!r}"


class ClickSpec(Form):
    __slots__ = ("link", "template")
    template: str
    link: str | None


class ClickedEmail(Form):
    __slots__ = ("clicked_email", "within")
    clicked_email: str | ClickSpec
    within: int | None

    def spec(self) -> ClickSpec:
        c = self.clicked_email
        return ClickSpec(template=c) if isinstance(c, str) else c

    def describe(self) -> str:
        s = self.spec()
        link = f" link {s.link!r}" if s.link else ""
        return f"clicked email {s.template!r}{link}"


class EventSpec(Form):
    __slots__ = ("event", "where", "within")
    event: str
    where: Where | None
    within: int | None


class DidEvent(Form):
    __slots__ = ("did_event",)
    did_event: str | EventSpec

    def spec(self) -> EventSpec:
        d = self.did_event
        return EventSpec(event=d) if isinstance(d, str) else d

    def describe(self) -> str:
        s = self.spec()
        where = f" where {s.where.root}" if s.where else ""
        within = f" within {s.within}s" if s.within else ""
        return f"did event {s.event}{where}{within}"


class AllOf(Form):
    __slots__ = ("all",)
    all: list[Condition]

    def describe(self) -> str:
        return "all of (" + "; ".join(c.describe() for c in self.all) + ")"


class AnyOf(Form):
    __slots__ = ("any",)
    any: list[Condition]

    def describe(self) -> str:
        return "any of (" + "; ".join(c.describe() for c in self.any) + ")"


class Not(Form):
    __slots__ = ("not_",)
    not_: Condition

    def describe(self) -> str:
        return f"not ({self.not_.describe()})"


ConditionModel = (
    HasTag
    | FieldCondition
    | ScoreCondition
    | InList
    | InCampaign
    | InStage
    | OpenedEmail
    | ClickedEmail
    | DidEvent
    | TriggerField
    | AllOf
    | AnyOf
    | Not
)


class Condition:
    """One condition: `root` is its kind's form; `data` what it was read from (its dump, by alias)."""

    __slots__ = ("data", "root")

    def __init__(self, root: ConditionModel, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other) is Condition and other.root == self.root

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Condition({self.root!r})"

    @classmethod
    def model_validate(cls, data: Any) -> Condition:
        """Read a dumped condition (the wait item's, a payload's); named as the model's for the code that reads it."""
        return condition(data)

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """What it was read from: a dump by alias without unset fields, as the authoring model dumps it."""
        return _copy(self.data)

    def describe(self) -> str:
        return self.root.describe()

    def leaves(self) -> list[Any]:
        r = self.root
        if isinstance(r, AllOf):
            return [leaf for c in r.all for leaf in c.leaves()]
        if isinstance(r, AnyOf):
            return [leaf for c in r.any for leaf in c.leaves()]
        if isinstance(r, Not):
            return r.not_.leaves()
        return [r]

    def event_fields(self) -> set[str]:
        """The fields of the triggering event this condition reads (`event_field` leaves)."""
        return {leaf.event_field for leaf in self.leaves() if isinstance(leaf, TriggerField)}


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _event_spec(v: Any) -> str | EventSpec:
    if isinstance(v, str):
        return v
    return EventSpec(event=v["event"], where=_where(v.get("where")), within=_seconds(v.get("within")))


def _click_spec(v: Any) -> str | ClickSpec:
    return v if isinstance(v, str) else ClickSpec(template=v["template"], link=v.get("link"))


def _operand(cls: type[_Operand], d: dict[str, Any]) -> _Operand:
    leaf = cls(**{cls._subject: d[cls._subject]})
    leaf._ops = Compare.read(d, cls._subject)
    return leaf


_LEAF_READERS: dict[str, Any] = {
    "has_tag": lambda d: HasTag(has_tag=d["has_tag"]),
    "field": lambda d: _operand(FieldCondition, d),
    "score": lambda d: ScoreCondition(score=Compare.read(d["score"])),
    "in_list": lambda d: InList(in_list=d["in_list"]),
    "in_campaign": lambda d: InCampaign(in_campaign=d["in_campaign"], at_stage=d.get("at_stage")),
    "in_stage": lambda d: InStage(
        in_stage=PipelineRef(pipeline=d["in_stage"]["pipeline"], stage=d["in_stage"]["stage"])
    ),
    "opened_email": lambda d: OpenedEmail(opened_email=d["opened_email"], within=_seconds(d.get("within"))),
    "clicked_email": lambda d: ClickedEmail(
        clicked_email=_click_spec(d["clicked_email"]), within=_seconds(d.get("within"))
    ),
    "did_event": lambda d: DidEvent(did_event=_event_spec(d["did_event"])),
    "event_field": lambda d: _operand(TriggerField, d),
    "all": lambda d: AllOf(all=[condition(c) for c in d["all"]]),
    "any": lambda d: AnyOf(any=[condition(c) for c in d["any"]]),
    "not": lambda d: Not(not_=condition(d["not"])),
}
CONDITION_KEYS = tuple(_LEAF_READERS)


def condition(data: Any) -> Condition:
    """A condition from its dump (by alias), validated when it was written."""
    if isinstance(data, Condition):
        return data
    if hasattr(data, "model_dump"):
        return as_runtime(data)  # type: ignore[no-any-return]
    kinds = [k for k in data if k in _LEAF_READERS]
    if len(kinds) != 1:
        raise ValueError(f"a condition needs exactly one of {', '.join(CONDITION_KEYS)} (found: {kinds or 'none'})")
    return Condition(_LEAF_READERS[kinds[0]](data), data)


def _condition(v: Any) -> Condition | None:
    return None if v is None else condition(v)


# ---- evaluation ------------------------------------------------------------------------------------------------


@dataclass
class Facts:
    """What a condition can look at: the contact, its recent activity, the triggering event."""

    tags: set[str] = field(default_factory=set)
    fields: dict[str, Any] = field(default_factory=dict)
    score: float = 0
    lists: set[str] = field(default_factory=set)
    campaigns: dict[str, str | None] = field(default_factory=dict)  # campaign -> stage step id
    stages: dict[str, str] = field(default_factory=dict)  # pipeline -> stage
    activity: list[dict[str, Any]] = field(default_factory=list)  # {"type", "data", "at": datetime}
    trigger: dict[str, Any] = field(default_factory=dict)
    now: datetime | None = None


@dataclass
class Evaluation:
    """One leaf's verdict, recorded in history so a marketer can see why a branch was taken."""

    condition: str
    value: Any
    result: bool


def evaluate(cond: Condition | authoring.Condition, facts: Facts, trail: list[Evaluation]) -> bool:
    """Evaluate `cond`; every leaf evaluated is appended to `trail` with the value it looked at. The one evaluator:
    an authoring condition (conditions.py, what validate and the tests hold) is read into its run-time form first."""
    if not isinstance(cond, Condition):
        cond = condition(cond)  # an authoring condition
    r = cond.root
    if isinstance(r, AllOf):
        results = [evaluate(c, facts, trail) for c in r.all]
        return all(results)
    if isinstance(r, AnyOf):
        results = [evaluate(c, facts, trail) for c in r.any]
        return any(results)
    if isinstance(r, Not):
        return not evaluate(r.not_, facts, trail)
    value, result = _leaf(r, facts)
    trail.append(Evaluation(condition=r.describe(), value=value, result=result))
    return result


def _case_insensitive_in(name: str, names: set[str]) -> bool:
    folded = name.casefold()
    return any(n.casefold() == folded for n in names)


def _recent(facts: Facts, within: int | None) -> list[dict[str, Any]]:
    if within is None or facts.now is None:
        return facts.activity
    since = facts.now - timedelta(seconds=within)
    return [a for a in facts.activity if a.get("at") is None or a["at"] >= since]


def _leaf(r: Any, facts: Facts) -> tuple[Any, bool]:
    if isinstance(r, HasTag):
        return sorted(facts.tags), _case_insensitive_in(r.has_tag, facts.tags)
    if isinstance(r, FieldCondition):
        value = facts.fields.get(r.field)
        return value, compare(value, r.ops())
    if isinstance(r, ScoreCondition):
        return facts.score, compare(facts.score, r.score)
    if isinstance(r, InList):
        return sorted(facts.lists), _case_insensitive_in(r.in_list, facts.lists)
    if isinstance(r, InCampaign):
        stage = facts.campaigns.get(r.in_campaign, "__absent__")
        if stage == "__absent__":
            return None, False
        return stage, r.at_stage is None or stage == r.at_stage
    if isinstance(r, InStage):
        current = facts.stages.get(r.in_stage.pipeline)
        return current, current is not None and current.casefold() == r.in_stage.stage.casefold()
    if isinstance(r, OpenedEmail):
        hits = [
            a
            for a in _recent(facts, r.within)
            if a["type"] == "email.opened" and a["data"].get("template") == r.opened_email
        ]
        return len(hits), bool(hits)
    if isinstance(r, ClickedEmail):
        s = r.spec()
        hits = [
            a
            for a in _recent(facts, r.within)
            if a["type"] == "email.clicked"
            and a["data"].get("template") == s.template
            and (s.link is None or a["data"].get("link") == s.link)
        ]
        return len(hits), bool(hits)
    if isinstance(r, DidEvent):
        ev = r.spec()
        hits = [
            a
            for a in _recent(facts, ev.within)
            if a["type"] == ev.event and (ev.where is None or ev.where.matches(a["data"]))
        ]
        return len(hits), bool(hits)
    if isinstance(r, TriggerField):
        value = lookup(facts.trigger, r.event_field)
        return value, compare(value, r.ops())
    raise TypeError(f"unhandled condition kind {type(r).__name__}")  # exhaustiveness guard


# ---- steps -----------------------------------------------------------------------------------------------------


class SendEmail(Form):
    __slots__ = ("campaign", "send_window", "subject", "template", "transactional")
    template: str
    subject: str | None
    campaign: str | None
    transactional: bool | None
    send_window: Any  # SendWindow, "anytime" or None


class SendSms(Form):
    __slots__ = ("campaign", "send_window", "template", "transactional")
    template: str
    campaign: str | None
    transactional: bool | None
    send_window: Any  # SendWindow, "anytime" or None


class SendSiteMessage(Form):
    __slots__ = ("template",)
    template: str


class Notify(Form):
    __slots__ = ("subject", "template", "to")
    to: list[str]
    subject: str
    template: str | None


class ListRef(Form):
    __slots__ = ("campaign", "list")
    list: str | None
    campaign: str | None


class Stage(Form):
    __slots__ = ("pipeline", "stage")
    pipeline: str
    stage: str


class Score(Form):
    __slots__ = ("add", "set")
    add: int | None
    set: int | None


class Coupon(Form):
    __slots__ = ("amount_off", "field", "percent_off", "prefix", "valid_for")
    _defaults: ClassVar[dict[str, Any]] = {"prefix": "", "valid_for": 30 * 86400, "field": "coupon_code"}
    prefix: str
    percent_off: int | None
    amount_off: float | None
    valid_for: int
    field: str


class StartWorkflow(Form):
    __slots__ = ("at", "workflow")
    workflow: str
    at: str | None


class CallWebhook(Form):
    __slots__ = ("body", "method", "secret", "timeout", "url")
    _defaults: ClassVar[dict[str, Any]] = {"method": "POST", "timeout": 10}
    url: str
    method: str
    secret: str | None
    body: dict[str, Any] | None
    timeout: int


class StepBase(Form):
    __slots__ = ("id", "name")
    KIND: ClassVar[str]
    id: str | None
    name: str | None


class SendEmailStep(StepBase):
    __slots__ = ("send_email",)
    send_email: SendEmail


class SendSmsStep(StepBase):
    __slots__ = ("send_sms",)
    send_sms: SendSms


class SendSiteMessageStep(StepBase):
    __slots__ = ("send_site_message",)
    send_site_message: SendSiteMessage


class NotifyStep(StepBase):
    __slots__ = ("notify",)
    notify: Notify


class AddTagStep(StepBase):
    __slots__ = ("add_tag",)
    add_tag: list[str]


class RemoveTagStep(StepBase):
    __slots__ = ("remove_tag",)
    remove_tag: list[str]


class SubscribeStep(StepBase):
    __slots__ = ("subscribe",)
    subscribe: ListRef


class UnsubscribeStep(StepBase):
    __slots__ = ("unsubscribe",)
    unsubscribe: ListRef


class MoveToStageStep(StepBase):
    __slots__ = ("move_to_stage",)
    move_to_stage: Stage


class SetFieldStep(StepBase):
    __slots__ = ("set_field",)
    set_field: dict[str, Any]


class AdjustScoreStep(StepBase):
    __slots__ = ("adjust_score",)
    adjust_score: Score


class GenerateCouponStep(StepBase):
    __slots__ = ("generate_coupon",)
    generate_coupon: Coupon


class StartWorkflowStep(StepBase):
    __slots__ = ("start_workflow",)
    start_workflow: StartWorkflow


class RemoveFromCampaignStep(StepBase):
    __slots__ = ("remove_from_campaign",)
    remove_from_campaign: str


class CallWebhookStep(StepBase):
    __slots__ = ("call_webhook",)
    call_webhook: CallWebhook


class IfStep(StepBase):
    __slots__ = ("else_", "if_", "then")
    _defaults: ClassVar[dict[str, Any]] = {"then": [], "else_": []}
    if_: Condition
    then: list[Step]
    else_: list[Step]


class Case(Form):
    __slots__ = ("name", "steps", "when")
    _defaults: ClassVar[dict[str, Any]] = {"steps": []}
    name: str
    when: Condition
    steps: list[Step]


class BranchStep(StepBase):
    __slots__ = ("branch", "otherwise")
    _defaults: ClassVar[dict[str, Any]] = {"otherwise": []}
    branch: list[Case]
    otherwise: list[Step]


class SplitPath(Form):
    __slots__ = ("name", "percent", "steps")
    _defaults: ClassVar[dict[str, Any]] = {"steps": []}
    name: str
    percent: float
    steps: list[Step]


class Winner(Form):
    __slots__ = ("after", "by", "goal", "min_contacts")
    _defaults: ClassVar[dict[str, Any]] = {"by": "goal", "min_contacts": 100, "after": 86400}
    by: str
    goal: str | None
    min_contacts: int
    after: int


class SplitStep(StepBase):
    __slots__ = ("split", "winner")
    split: list[SplitPath]
    winner: Winner | None


class WaitUntil(Form):
    __slots__ = ("at", "condition", "event", "on_timeout", "same", "timeout", "where")
    _defaults: ClassVar[dict[str, Any]] = {"same": []}
    at: datetime | None
    event: str | None
    where: Where | None
    same: list[str]
    condition: Condition | None
    timeout: int | None
    on_timeout: list[Step] | None


class WaitStep(StepBase):
    __slots__ = ("wait",)
    wait: int


class WaitUntilStep(StepBase):
    __slots__ = ("wait_until",)
    wait_until: WaitUntil


class GotoStep(StepBase):
    __slots__ = ("goto",)
    goto: str


class Goal(Form):
    __slots__ = ("condition", "event", "otherwise", "where")
    _defaults: ClassVar[dict[str, Any]] = {"otherwise": "continue"}
    event: str | None
    where: Where | None
    condition: Condition | None
    otherwise: str

    def event_spec(self) -> EventSpec | None:
        return EventSpec(event=self.event, where=self.where) if self.event else None


class GoalStep(StepBase):
    __slots__ = ("goal",)
    goal: Goal


class EndSpec(Form):
    __slots__ = ("reason",)
    _defaults: ClassVar[dict[str, Any]] = {"reason": "ended"}
    reason: str


class EndStep(StepBase):
    __slots__ = ("end",)
    end: EndSpec


StepModel = (
    SendEmailStep | SendSmsStep | SendSiteMessageStep | NotifyStep | AddTagStep | RemoveTagStep | SubscribeStep
    | UnsubscribeStep | MoveToStageStep | SetFieldStep | AdjustScoreStep | GenerateCouponStep | StartWorkflowStep
    | RemoveFromCampaignStep | CallWebhookStep | IfStep | BranchStep | SplitStep | WaitStep | WaitUntilStep | GotoStep
    | GoalStep | EndStep
)  # fmt: skip


class Step:
    """One step: `root` is its kind's form."""

    __slots__ = ("root",)

    def __init__(self, root: StepModel) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return type(other) is Step and other.root == self.root

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Step({self.root!r})"

    @property
    def kind(self) -> str:
        return self.root.KIND

    @property
    def id(self) -> str | None:
        return self.root.id


def _window(v: Any) -> Any:
    if v is None or v == "anytime" or not isinstance(v, dict):
        return v
    from shared.messaging.windows import SendWindow  # the step runner's send rules read it; the router never

    return SendWindow.model_validate(v)


def _durations(v: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: _seconds(v[k]) for k in keys if k in v}


def _names(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def _list_ref(v: dict[str, Any]) -> ListRef:
    return ListRef(list=v.get("list"), campaign=v.get("campaign"))


def _score(v: Any) -> Score:
    return Score(add=v) if isinstance(v, int) and not isinstance(v, bool) else Score(**v)


def _end(v: Any) -> EndSpec:
    if v is True or v is None:
        return EndSpec()
    return EndSpec(reason=v) if isinstance(v, str) else EndSpec(**v)


def _wait_until(v: dict[str, Any]) -> WaitUntil:
    on_timeout = v.get("on_timeout")
    return WaitUntil(
        at=_at(v.get("at")),
        event=v.get("event"),
        where=_where(v.get("where")),
        same=list(v.get("same") or []),
        condition=_condition(v.get("condition")),
        timeout=_seconds(v.get("timeout")),
        on_timeout=None if on_timeout is None else steps(on_timeout),
    )


def _goal(v: dict[str, Any]) -> Goal:
    return Goal(
        event=v.get("event"),
        where=_where(v.get("where")),
        condition=_condition(v.get("condition")),
        otherwise=v.get("otherwise") or "continue",
    )


# The key that names a step's kind -> its form and how its value is read.
_STEP_READERS: dict[str, tuple[type[StepBase], Any]] = {
    "send_email": (SendEmailStep, lambda v: SendEmail(**{**v, "send_window": _window(v.get("send_window"))})),
    "send_sms": (SendSmsStep, lambda v: SendSms(**{**v, "send_window": _window(v.get("send_window"))})),
    "send_site_message": (SendSiteMessageStep, lambda v: SendSiteMessage(**v)),
    "notify": (NotifyStep, lambda v: Notify(**v)),
    "add_tag": (AddTagStep, _names),
    "remove_tag": (RemoveTagStep, _names),
    "subscribe": (SubscribeStep, _list_ref),
    "unsubscribe": (UnsubscribeStep, _list_ref),
    "move_to_stage": (MoveToStageStep, lambda v: Stage(pipeline=v["pipeline"], stage=v["stage"])),
    "set_field": (SetFieldStep, dict),
    "adjust_score": (AdjustScoreStep, _score),
    "generate_coupon": (GenerateCouponStep, lambda v: Coupon(**{**v, **_durations(v, "valid_for")})),
    "start_workflow": (StartWorkflowStep, lambda v: StartWorkflow(**v)),
    "remove_from_campaign": (RemoveFromCampaignStep, str),
    "call_webhook": (CallWebhookStep, lambda v: CallWebhook(**{**v, **_durations(v, "timeout")})),
    "if": (IfStep, _condition),
    "branch": (
        BranchStep,
        lambda v: [Case(name=c["name"], when=condition(c["when"]), steps=steps(c.get("steps") or [])) for c in v],
    ),
    "split": (
        SplitStep,
        lambda v: [
            SplitPath(name=p["name"], percent=float(p["percent"]), steps=steps(p.get("steps") or [])) for p in v
        ],
    ),
    "wait": (WaitStep, _seconds),
    "wait_until": (WaitUntilStep, _wait_until),
    "goto": (GotoStep, str),
    "goal": (GoalStep, _goal),
    "end": (EndStep, _end),
}
STEP_KINDS = tuple(_STEP_READERS)
for _kind, (_cls, _) in _STEP_READERS.items():
    _cls.KIND = _kind
# Fields of a step besides its kind, with how each is read (the control steps' nested lists).
_STEP_EXTRAS: dict[str, dict[str, Any]] = {
    "if": {"then": lambda v: steps(v or []), "else": lambda v: steps(v or [])},
    "branch": {"otherwise": lambda v: steps(v or [])},
    "split": {"winner": lambda v: None if v is None else Winner(**{**v, **_durations(v, "after")})},
}
_ATTRIBUTE = {"if": "if_", "else": "else_"}


def step(data: Any) -> Step:
    """A step from its dump (by alias), validated when it was written. A mapping without exactly one kind key, or
    with a field its kind does not have, raises ValueError; a missing field KeyError or TypeError."""
    if isinstance(data, Step):
        return data
    if hasattr(data, "model_dump"):
        return as_runtime(data)  # type: ignore[no-any-return]
    if not isinstance(data, dict):
        raise ValueError("a step is a mapping with an id and one kind")
    kinds = [k for k in data if k in _STEP_READERS]
    if len(kinds) != 1:
        raise ValueError(f"a step needs exactly one kind key (found: {', '.join(kinds) or 'none'})")
    kind = kinds[0]
    cls, read = _STEP_READERS[kind]
    extras = _STEP_EXTRAS.get(kind, {})
    unknown = [k for k in data if k not in (kind, "id", "name", *extras)]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a field of a {kind} step")
    values: dict[str, Any] = {str(_ATTRIBUTE.get(k, k)): extras[k](v) for k, v in data.items() if k in extras}
    values[_ATTRIBUTE.get(kind, kind)] = read(data[kind])
    if kind in ("branch", "split") and not values[kind]:
        raise ValueError(f"a {kind} step needs its {kind}")
    return Step(cls(id=data.get("id"), name=data.get("name"), **values))  # type: ignore[arg-type]


def steps(data: list[Any]) -> list[Step]:
    return [step(s) for s in data]


class Nested(Protocol):
    """A step of either form: the run-time `Step` here or the authoring one (model.py), whose kinds' forms name
    their nested step lists alike (`then`, `else_`, `branch[].steps`, `otherwise`, `split[].steps`,
    `wait_until.on_timeout`)."""

    @property
    def root(self) -> Any: ...

    @property
    def kind(self) -> str: ...


S = TypeVar("S", bound=Nested)


def branches(s: S) -> list[tuple[str, list[S]]]:
    """The nested step lists of a control step, each with the name of its field (a step of either form)."""
    r, kind = s.root, s.kind
    if kind == "if":
        return [("then", r.then), ("else", r.else_)]
    if kind == "branch":
        return [*((f"branch.{c.name}", c.steps) for c in r.branch), ("otherwise", r.otherwise)]
    if kind == "split":
        return [(f"split.{p.name}", p.steps) for p in r.split]
    if kind == "wait_until" and r.wait_until.on_timeout is not None:
        return [("on_timeout", r.wait_until.on_timeout)]
    return []


def walk_steps(items: list[S], where: tuple[str, ...]) -> Iterator[tuple[S, tuple[str, ...]]]:
    """Every step of `items` and of their nested lists, in document order, with its location below `where`."""
    for i, s in enumerate(items):
        loc = (*where, str(i))
        yield s, loc
        for name, inner in branches(s):
            yield from walk_steps(inner, (*loc, *name.split(".")))


# ---- workflows -------------------------------------------------------------------------------------------------


class Trigger(Form):
    """An event that enrols a contact, with filters and an optional start delay (seconds)."""

    __slots__ = ("delay", "event", "where")
    event: str
    where: Where | None
    delay: int | None


class ScheduleTrigger(Form):
    """A fixed date and time: every contact of `list` is enrolled then."""

    __slots__ = ("at", "list")
    at: datetime
    list: str


class TriggerEntry:
    __slots__ = ("root",)

    def __init__(self, root: Trigger | ScheduleTrigger) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return type(other) is TriggerEntry and other.root == self.root

    __hash__ = None  # type: ignore[assignment]


class Reentry(Form):
    """Whether a contact may enter again: never, always, or once per period (seconds)."""

    __slots__ = ("mode", "period")
    _defaults: ClassVar[dict[str, Any]] = {"mode": "once"}
    mode: str
    period: int | None


class Settings(Form):
    """A workflow's settings as the run time reads them: `forms` as form_types.FormType; the send window,
    frequency cap and budgets as their dumps (the compiler put what the Lambdas need of them in the Task payloads
    and plans)."""

    __slots__ = ("budgets", "forms", "frequency_cap", "history_days", "max_loops", "send_window")
    _defaults: ClassVar[dict[str, Any]] = {"max_loops": 100, "history_days": 30}
    max_loops: int
    history_days: int
    send_window: dict[str, Any] | None
    frequency_cap: dict[str, Any] | None
    budgets: dict[str, Any] | None
    forms: dict[str, Any] | None


class Workflow(Form):
    __slots__ = ("description", "name", "reentry", "settings", "steps", "triggers")
    name: str
    description: str | None
    triggers: list[TriggerEntry]
    reentry: Reentry
    settings: Settings
    steps: list[Step]

    def walk(self) -> Iterator[tuple[Step, tuple[str, ...]]]:
        """Every step in document order with its location (e.g. ('steps', '2', 'then', '0'))."""
        yield from walk_steps(self.steps, ("steps",))


def trigger(v: dict[str, Any]) -> Trigger | ScheduleTrigger:
    if "at" in v and "event" not in v:
        return ScheduleTrigger(at=_at(v["at"]), list=v["list"])
    return Trigger(event=v["event"], where=_where(v.get("where")), delay=_seconds(v.get("delay")))


def reentry(v: Any) -> Reentry:
    if v is None:
        return Reentry()
    if isinstance(v, str):
        return Reentry(mode=v)
    if "once_per" in v:
        return Reentry(mode="once_per", period=_seconds(v["once_per"]))
    return Reentry(**{**v, **_durations(v, "period")})


def _settings(v: dict[str, Any] | None) -> Settings:
    v = dict(v or {})
    if v.get("forms") is not None:
        from shared.intake.form_types import form_type  # what the router applies to form submissions (no pydantic)

        v["forms"] = {k: form_type(m) for k, m in v["forms"].items()}
    return Settings(**{k: x for k, x in v.items() if x is not None})


def workflow(data: Any) -> Workflow:
    """A workflow from its dump (by alias), validated when it was written (`stepwise validate`, synth)."""
    if isinstance(data, Workflow):
        return data
    if hasattr(data, "model_dump"):
        return as_runtime(data)  # type: ignore[no-any-return]
    return Workflow(
        name=data["name"],
        description=data.get("description"),
        triggers=[TriggerEntry(trigger(t)) for t in data.get("triggers") or []],
        reentry=reentry(data.get("reentry")),
        settings=_settings(data.get("settings")),
        steps=steps(data["steps"]),
    )


def workflows(items: Any) -> list[Workflow]:
    return [workflow(w) for w in items]


class EntryPlan(Form):
    """The run-time form of shared/history.py's EntryPlan (what a workflow's machine meets before its first
    step-runner call, per place a run can start), read from the plans file the build wrote (`load_entry_plans`)."""

    __slots__ = ("ahead", "budgets", "history_days", "reentry", "version")
    version: str
    history_days: int
    reentry: Reentry | None
    ahead: dict[str, list[dict[str, Any]]]
    budgets: dict[str, Any]

    def passive(self, resume_at: str) -> list[dict[str, Any]]:
        return self.ahead.get(resume_at, [])  # type: ignore[no-any-return]


if TYPE_CHECKING:  # what the enroller takes: plans read here (the Lambdas) or compiled (tests, the local runtime)
    AnyEntryPlan = EntryPlan | history.EntryPlan
else:
    AnyEntryPlan = EntryPlan


def entry_plan(v: Any) -> EntryPlan:
    """An entry plan from its dump (or an authoring EntryPlan), as the build wrote it (history.dump_entry_plans)."""
    if isinstance(v, EntryPlan):
        return v
    if hasattr(v, "model_dump"):
        return EntryPlan(
            version=v.version, history_days=v.history_days, reentry=v.reentry, ahead=v.ahead, budgets=v.budgets
        )
    r = v.get("reentry")
    return EntryPlan(
        version=v["version"],
        history_days=v["history_days"],
        reentry=None if r is None else reentry(r),
        ahead=dict(v.get("ahead") or {}),
        budgets=dict(v.get("budgets") or {}),
    )


def load_entry_plans(path: str | Path) -> dict[str, EntryPlan]:
    """The plans file the build writes beside the code (infra/assets.py), keyed by workflow name: JSON, read
    without pydantic (history.load_entry_plans reads the authoring model)."""
    return {name: entry_plan(v) for name, v in json.loads(Path(path).read_bytes()).items()}


_AUTHORING: dict[str, Any] = {
    "EntryPlan": entry_plan,
    "Workflow": workflow,
    "Step": step,
    "Condition": condition,
    "Trigger": trigger,
    "ScheduleTrigger": trigger,
    "TriggerEntry": trigger,
    "Reentry": reentry,
    "Where": _where,
}


def as_runtime(obj: Any) -> Any:
    """The run-time form of an authoring model (pydantic: Workflow, Step, Condition, a trigger, Reentry, Where), or
    `obj` itself when it is one already (or None)."""
    if obj is None or not hasattr(obj, "model_dump"):
        return obj
    read = _AUTHORING.get(type(obj).__name__)
    if read is None:
        raise TypeError(f"no run-time form of {type(obj).__name__}")
    if read is _where:
        return Where(dict(obj.root))
    if read is entry_plan:
        return entry_plan(obj)
    return read(obj.model_dump(mode="python", by_alias=True, exclude_unset=True))
