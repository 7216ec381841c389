"""Conditions: the models users write for decisions, goals and filters, and their evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from shared.workflow.durations import Duration

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "starts_with", "in", "exists")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Compare(Strict):
    """Operators applied to one value; several operators in one mapping must all hold."""

    eq: Any = None
    ne: Any = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    contains: str | None = None
    starts_with: str | None = None
    in_: list[Any] | None = Field(default=None, alias="in")
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_operator_at_least(self) -> Compare:
        if not self.model_fields_set:
            raise ValueError(f"needs an operator: one of {', '.join(OPERATORS)}")
        return self

    def describe(self) -> str:
        return " and ".join(
            f"{'in' if k == 'in_' else k} {_shown(getattr(self, k))}" for k in sorted(self.model_fields_set)
        )


def _shown(value: Any) -> str:
    """A value as a marketer wrote it: 10, not 10.0 (bounds are kept as floats)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def compare(value: Any, cmp: Compare) -> bool:
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
        if name == "contains" and str(want).lower() not in _text(value).lower():
            return False
        if name == "starts_with" and not _text(value).lower().startswith(str(want).lower()):
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


class Where(RootModel[dict[str, Any]]):
    """A filter on event data: `{field: value}` (equality) or `{field: {gt: 50}}`."""

    def comparisons(self) -> dict[str, Compare]:
        out = {}
        for key, value in self.root.items():
            if isinstance(value, dict):
                out[key] = Compare.model_validate(value)
            else:
                out[key] = Compare(eq=value)
        return out

    @model_validator(mode="after")
    def _check(self) -> Where:
        for key, value in self.root.items():
            if isinstance(value, dict):
                try:
                    Compare.model_validate(value)
                except ValueError as err:
                    raise ValueError(f"where.{key}: {err}") from None
        return self

    def matches(self, data: dict[str, Any]) -> bool:
        return all(compare(lookup(data, k), c) for k, c in self.comparisons().items())


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


# ---- leaf conditions ---------------------------------------------------------------------------


class HasTag(Strict):
    has_tag: str

    def describe(self) -> str:
        return f"has tag {self.has_tag!r}"


class _Operand(Compare):
    """A condition that names a value and applies Compare's operators to it."""

    _subject: ClassVar[str]

    def ops(self) -> Compare:
        """The operators alone, without the key that names the value."""
        return Compare.model_validate(self.model_dump(by_alias=True, exclude={self._subject}, exclude_unset=True))


class FieldCondition(_Operand):
    """A custom field ("detail") of the contact, or a built-in one: email, phone, timezone, first_name."""

    _subject: ClassVar[str] = "field"
    field: str

    def describe(self) -> str:
        return f"field {self.field} {self.ops().describe()}"


class ScoreCondition(Strict):
    score: Compare

    def describe(self) -> str:
        return f"score {self.score.describe()}"


class InList(Strict):
    in_list: str

    def describe(self) -> str:
        return f"in list {self.in_list!r}"


class InCampaign(Strict):
    in_campaign: str
    at_stage: str | None = None

    def describe(self) -> str:
        stage = f" at stage {self.at_stage!r}" if self.at_stage else ""
        return f"in campaign {self.in_campaign!r}{stage}"


class PipelineRef(Strict):
    pipeline: str
    stage: str


class InStage(Strict):
    in_stage: PipelineRef

    def describe(self) -> str:
        return f"in pipeline {self.in_stage.pipeline!r} stage {self.in_stage.stage!r}"


class OpenedEmail(Strict):
    opened_email: str
    within: Duration | None = None

    def describe(self) -> str:
        return f"opened email {self.opened_email!r}"


class ClickSpec(Strict):
    template: str
    link: str | None = None


class ClickedEmail(Strict):
    clicked_email: str | ClickSpec
    within: Duration | None = None

    def spec(self) -> ClickSpec:
        c = self.clicked_email
        return ClickSpec(template=c) if isinstance(c, str) else c

    def describe(self) -> str:
        s = self.spec()
        link = f" link {s.link!r}" if s.link else ""
        return f"clicked email {s.template!r}{link}"


class EventSpec(Strict):
    event: str
    where: Where | None = None
    within: Duration | None = None


class DidEvent(Strict):
    did_event: str | EventSpec

    def spec(self) -> EventSpec:
        d = self.did_event
        return EventSpec(event=d) if isinstance(d, str) else d

    def describe(self) -> str:
        s = self.spec()
        where = f" where {s.where.root}" if s.where else ""
        within = f" within {s.within}s" if s.within else ""
        return f"did event {s.event}{where}{within}"


class TriggerField(_Operand):
    """A field of the event that started this execution (`event_field: cart_value, gt: 50`)."""

    _subject: ClassVar[str] = "event_field"
    event_field: str

    def describe(self) -> str:
        return f"trigger event {self.event_field} {self.ops().describe()}"


# ---- combinators -------------------------------------------------------------------------------


class AllOf(Strict):
    all: list[Condition] = Field(min_length=1)

    def describe(self) -> str:
        return "all of (" + "; ".join(c.describe() for c in self.all) + ")"


class AnyOf(Strict):
    any: list[Condition] = Field(min_length=1)

    def describe(self) -> str:
        return "any of (" + "; ".join(c.describe() for c in self.any) + ")"


class Not(Strict):
    not_: Condition = Field(alias="not")

    def describe(self) -> str:
        return f"not ({self.not_.describe()})"


_LEAF_KEYS: dict[str, type[ConditionModel]] = {
    "has_tag": HasTag,
    "field": FieldCondition,
    "score": ScoreCondition,
    "in_list": InList,
    "in_campaign": InCampaign,
    "in_stage": InStage,
    "opened_email": OpenedEmail,
    "clicked_email": ClickedEmail,
    "did_event": DidEvent,
    "event_field": TriggerField,
    "all": AllOf,
    "any": AnyOf,
    "not": Not,
}
CONDITION_KEYS = tuple(_LEAF_KEYS)

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


class Condition(RootModel[ConditionModel]):
    """One condition; the key that names its kind decides the model (errors then name only that kind)."""

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, value: Any, handler: Any) -> Condition:
        if isinstance(value, Condition):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"a condition is a mapping with one of: {', '.join(CONDITION_KEYS)}")
        kinds = [k for k in value if k in _LEAF_KEYS]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"a condition needs exactly one of {', '.join(CONDITION_KEYS)} (found: {found})")
        model = _LEAF_KEYS[kinds[0]]
        return cls.model_construct(root=model.model_validate(value))

    def describe(self) -> str:
        return self.root.describe()  # type: ignore[no-any-return]

    def leaves(self) -> list[BaseModel]:
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


AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()


# ---- evaluation --------------------------------------------------------------------------------


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


def evaluate(cond: Condition, facts: Facts, trail: list[Evaluation]) -> bool:
    """Evaluate `cond`; every leaf evaluated is appended to `trail` with the value it looked at."""
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


def _leaf(r: BaseModel, facts: Facts) -> tuple[Any, bool]:
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
