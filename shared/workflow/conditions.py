"""Conditions: the models users write for decisions, goals and filters (their evaluation is runtime.py's)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from shared.workflow import runtime
from shared.workflow.durations import Duration

# The evaluation is the run time's (runtime.py, no pydantic: the Lambdas use it): one evaluator for both forms,
# named here for the authoring code and its tests; `evaluate` reads an authoring condition into its run-time form.
from shared.workflow.runtime import Evaluation, Facts, _leaf, compare, evaluate, lookup, pick  # noqa: F401

OPERATORS = runtime.OPERATORS


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
        return runtime.describe_ops(self)


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
        return runtime.Where(self.root).matches(data)


# ---- leaf conditions ---------------------------------------------------------------------------


def _described(kind: BaseModel) -> str:
    """A condition kind in the words of the trail history shows (the run-time form's `describe`, from its dump)."""
    return runtime.condition(kind.model_dump(by_alias=True, exclude_unset=True)).describe()


class _Kind(Strict):
    """A kind of condition (its key names it)."""

    def describe(self) -> str:
        return _described(self)


class HasTag(_Kind):
    has_tag: str


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
        return _described(self)


class ScoreCondition(_Kind):
    score: Compare


class InList(_Kind):
    in_list: str


class InCampaign(_Kind):
    in_campaign: str
    at_stage: str | None = None


class PipelineRef(Strict):
    pipeline: str
    stage: str


class InStage(_Kind):
    in_stage: PipelineRef


class OpenedEmail(_Kind):
    opened_email: str
    within: Duration | None = None


class ClickSpec(Strict):
    template: str
    link: str | None = None


class ClickedEmail(_Kind):
    clicked_email: str | ClickSpec
    within: Duration | None = None

    def spec(self) -> ClickSpec:
        c = self.clicked_email
        return ClickSpec(template=c) if isinstance(c, str) else c


class EventSpec(Strict):
    event: str
    where: Where | None = None
    within: Duration | None = None


class DidEvent(_Kind):
    did_event: str | EventSpec

    def spec(self) -> EventSpec:
        d = self.did_event
        return EventSpec(event=d) if isinstance(d, str) else d


class TriggerField(_Operand):
    """A field of the event that started this execution (`event_field: cart_value, gt: 50`)."""

    _subject: ClassVar[str] = "event_field"
    event_field: str

    def describe(self) -> str:
        return _described(self)


# ---- combinators -------------------------------------------------------------------------------


class AllOf(_Kind):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Kind):
    any: list[Condition] = Field(min_length=1)


class Not(_Kind):
    not_: Condition = Field(alias="not")


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
