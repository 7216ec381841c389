"""Workflow files: the pydantic models of everything a user writes in `workflows/*.yaml`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.budgets import Budgets
from shared.intake.form_types import FormMapping, check_keys
from shared.messaging.authoring import FrequencyCap, SendWindow
from shared.workflow.conditions import Condition, EventSpec, Where
from shared.workflow.durations import Duration
from shared.workflow.runtime import ANYTIME, MESSAGE_KINDS, branches, walk_steps  # noqa: F401  (one for both forms)

STEP_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
# Deployment-wide settings beside the workflow files: every workflow of the folder gets them (not a workflow).
DEPLOYMENT_FILE = "stepwise.yaml"
ONE_YEAR = 365 * 86400


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---- triggers ----------------------------------------------------------------------------------


class Trigger(Strict):
    """An event that enrols a contact, with filters and an optional start delay."""

    event: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    where: Where | None = None
    delay: Duration | None = None


class ScheduleTrigger(Strict):
    """A fixed date and time: every contact of `list` is enrolled then."""

    at: datetime
    list: str

    @field_validator("at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-20T09:00:00+01:00 or ...Z")
        return v


class TriggerEntry(RootModel[Trigger | ScheduleTrigger]):
    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, value: Any, handler: Any) -> TriggerEntry:
        if isinstance(value, dict) and "at" in value and "event" not in value:
            return cls.model_construct(root=ScheduleTrigger.model_validate(value))
        if isinstance(value, dict):
            return cls.model_construct(root=Trigger.model_validate(value))
        raise ValueError("a trigger is a mapping: {event: ..., where: ...} or {at: ..., list: ...}")


class Reentry(Strict):
    """Whether a contact may enter again: never, always, or once per period."""

    mode: Literal["once", "always", "once_per"] = "once"
    period: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"mode": v}
        if isinstance(v, dict) and "once_per" in v:
            return {"mode": "once_per", "period": v["once_per"]}
        return v

    @model_validator(mode="after")
    def _period(self) -> Reentry:
        if (self.mode == "once_per") != (self.period is not None):
            raise ValueError("once_per needs a period (reentry: {once_per: 30d}); other modes take none")
        return self


class Settings(Strict):
    max_loops: int = Field(default=100, ge=1, le=10_000, description="Go-to jumps before the run ends")
    history_days: int = Field(default=30, ge=1, le=365)
    send_window: SendWindow | None = Field(
        default=None, description="Local hours emails and SMS may go out; a send outside holds the contact"
    )
    frequency_cap: FrequencyCap | None = Field(
        default=None, description=f"Marketing sends per contact per day across workflows: set in {DEPLOYMENT_FILE}"
    )
    budgets: Budgets | None = Field(
        default=None, description=f"Runaway budgets (messages per contact per day, entries per hour): {DEPLOYMENT_FILE}"
    )
    forms: dict[str, FormMapping] | None = Field(
        default=None,
        description=f"Form id (or name) -> its form type and name, for every form provider: {DEPLOYMENT_FILE}",
    )

    @field_validator("forms")
    @classmethod
    def _form_keys(cls, v: dict[str, FormMapping] | None) -> dict[str, FormMapping] | None:
        if v is not None:
            check_keys(v)
        return v


# ---- actions -----------------------------------------------------------------------------------


class SendEmail(Strict):
    template: str
    subject: str | None = None
    campaign: str | None = None
    # None rather than False when unset: the dumped step (its Task payload, the workflow's version) stays as it was.
    transactional: bool | None = Field(default=None, description="Not marketing: exempt from the frequency cap")
    send_window: SendWindow | Literal["anytime"] | None = Field(
        default=None, description="This step's own window (anytime: none), over the workflow's"
    )


class SendSms(Strict):
    template: str
    campaign: str | None = None
    # None rather than False when unset: the dumped step (its Task payload, the workflow's version) stays as it was.
    transactional: bool | None = Field(default=None, description="Not marketing: exempt from the frequency cap")
    send_window: SendWindow | Literal["anytime"] | None = Field(
        default=None, description="This step's own window (anytime: none), over the workflow's"
    )


class SendSiteMessage(Strict):
    template: str


class Notify(Strict):
    to: list[str] = Field(min_length=1, max_length=5)
    subject: str
    template: str | None = None

    @field_validator("to")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if "@" not in a]
        if bad:
            raise ValueError(f"not email addresses: {', '.join(bad)}")
        return [a.lower() for a in v]


class ListRef(Strict):
    list: str | None = None
    campaign: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ListRef:
        if (self.list is None) == (self.campaign is None):
            raise ValueError("name exactly one of list or campaign")
        return self


class Stage(Strict):
    pipeline: str
    stage: str


class Score(Strict):
    add: int | None = None
    set: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return {"add": v} if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _one(self) -> Score:
        if (self.add is None) == (self.set is None):
            raise ValueError("write a number to add (adjust_score: 10) or {set: N}")
        return self


class Coupon(Strict):
    prefix: str = Field(default="", pattern=r"^[A-Z0-9-]{0,12}$")
    percent_off: int | None = Field(default=None, ge=1, le=100)
    amount_off: float | None = Field(default=None, gt=0)
    valid_for: Duration = 30 * 86400
    field: str = "coupon_code"


class StartWorkflow(Strict):
    workflow: str
    at: str | None = Field(default=None, description="Step id to start at")


class CallWebhook(Strict):
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    secret: str | None = Field(default=None, description="SSM parameter name of the signing secret")
    body: dict[str, Any] | None = None
    timeout: Duration = 10


def _names(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def _yaml_text(v: Any, info: ValidationInfo) -> Any:
    """A step id (or go-to target) is text; YAML reads a bare true/false as a boolean, so say how to write it."""
    if isinstance(v, bool):
        text = str(v).lower()
        raise ValueError(f'{text} is a YAML boolean, not text: write {info.field_name}: "{text}" in quotes')
    return v


class StepBase(Strict):
    id: str = Field(pattern=STEP_ID, description="Stable id: go-to targets, goals and history use it")
    name: str | None = Field(default=None, description="Label shown in graphs and timelines")

    _text_id = field_validator("id", mode="before")(_yaml_text)


class SendEmailStep(StepBase):
    send_email: SendEmail


class SendSmsStep(StepBase):
    send_sms: SendSms


class SendSiteMessageStep(StepBase):
    send_site_message: SendSiteMessage


class NotifyStep(StepBase):
    notify: Notify


class AddTagStep(StepBase):
    add_tag: Annotated[list[str], Field(min_length=1)]
    _n = field_validator("add_tag", mode="before")(classmethod(lambda cls, v: _names(v)))


class RemoveTagStep(StepBase):
    remove_tag: Annotated[list[str], Field(min_length=1)]
    _n = field_validator("remove_tag", mode="before")(classmethod(lambda cls, v: _names(v)))


class SubscribeStep(StepBase):
    subscribe: ListRef


class UnsubscribeStep(StepBase):
    unsubscribe: ListRef


class MoveToStageStep(StepBase):
    move_to_stage: Stage


class SetFieldStep(StepBase):
    set_field: dict[str, Any] = Field(min_length=1)


class AdjustScoreStep(StepBase):
    adjust_score: Score


class GenerateCouponStep(StepBase):
    generate_coupon: Coupon


class StartWorkflowStep(StepBase):
    start_workflow: StartWorkflow


class RemoveFromCampaignStep(StepBase):
    remove_from_campaign: str


class CallWebhookStep(StepBase):
    call_webhook: CallWebhook


ActionStep = (
    SendEmailStep
    | SendSmsStep
    | SendSiteMessageStep
    | NotifyStep
    | AddTagStep
    | RemoveTagStep
    | SubscribeStep
    | UnsubscribeStep
    | MoveToStageStep
    | SetFieldStep
    | AdjustScoreStep
    | GenerateCouponStep
    | StartWorkflowStep
    | RemoveFromCampaignStep
    | CallWebhookStep
)

# Actions that only change the contact record: consecutive ones merge into one Task state.
CONTACT_DATA_KINDS = frozenset(
    {"add_tag", "remove_tag", "subscribe", "unsubscribe", "move_to_stage", "set_field", "adjust_score",
     "generate_coupon"}
)  # fmt: skip

# ---- control steps -----------------------------------------------------------------------------


class IfStep(StepBase):
    if_: Condition = Field(alias="if")
    then: list[Step] = Field(default_factory=list)
    else_: list[Step] = Field(default_factory=list, alias="else")


class Case(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    when: Condition
    steps: list[Step] = Field(default_factory=list)


def _distinct_names(names: list[str], what: str) -> None:
    """Branch names become state transitions and metric dimensions: each must say one thing."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what} name {n!r} is used twice; each {what} needs its own name")
        seen.add(n)


class BranchStep(StepBase):
    """Multi-way branch: the first case whose condition holds, else `otherwise`."""

    branch: list[Case] = Field(min_length=1)
    otherwise: list[Step] = Field(default_factory=list)

    @field_validator("branch")
    @classmethod
    def _names(cls, cases: list[Case]) -> list[Case]:
        names = [c.name for c in cases]
        if "otherwise" in names:
            raise ValueError("a case cannot be named 'otherwise': that name is the branch taken when no case matches")
        _distinct_names(names, "case")
        return cases


class SplitPath(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    percent: float = Field(gt=0, le=100)
    steps: list[Step] = Field(default_factory=list)


class Winner(Strict):
    """Pick the winning path automatically: once every path has `min_contacts`, `after` has passed since the
    first contact took the split and some contact converted, the path converting best takes every later contact."""

    by: Literal["goal", "email_opened", "email_clicked"] = "goal"
    goal: str | None = Field(default=None, description="Goal step id (by: goal); any goal step when omitted")
    min_contacts: int = Field(default=100, ge=10)
    after: Duration = Field(default=86400, description="Time for contacts to convert before the first decision")


class SplitStep(StepBase):
    split: list[SplitPath] = Field(min_length=2)
    winner: Winner | None = None

    @field_validator("split")
    @classmethod
    def _names(cls, paths: list[SplitPath]) -> list[SplitPath]:
        _distinct_names([p.name for p in paths], "path")
        return paths


class WaitUntil(Strict):
    """Wait until a time, or until an event / condition, with a timeout branch."""

    at: datetime | None = None
    event: str | None = Field(default=None, pattern=r"^[a-z_]+\.[a-z_]+$")
    where: Where | None = None
    same: list[str] = Field(default_factory=list, description="Fields that must equal the trigger's")
    condition: Condition | None = None
    timeout: Duration | None = None
    on_timeout: list[Step] | None = None

    @model_validator(mode="after")
    def _shape(self) -> WaitUntil:
        kinds = [k for k in ("at", "event", "condition") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("wait_until needs exactly one of at, event, condition")
        if self.at is not None:
            if self.at.tzinfo is None:
                raise ValueError("at: needs a time zone, e.g. 2026-12-24T09:00:00Z")
            if self.timeout is not None or self.on_timeout is not None:
                raise ValueError("wait_until at: a time takes no timeout")
        elif self.timeout is None:
            raise ValueError(f"wait_until {kinds[0]}: needs a timeout (e.g. timeout: 7d)")
        if (self.where or self.same) and self.event is None:
            raise ValueError("where and same go with event")
        return self


class WaitStep(StepBase):
    wait: Duration


class WaitUntilStep(StepBase):
    wait_until: WaitUntil


class GotoStep(Strict):
    """Jump to another step; only last in its branch. Has no id of its own unless given one."""

    id: str | None = Field(default=None, pattern=STEP_ID)
    goto: str = Field(pattern=STEP_ID)

    _text_id = field_validator("id", "goto", mode="before")(_yaml_text)


class Goal(Strict):
    event: str | None = Field(default=None, pattern=r"^[a-z_]+\.[a-z_]+$")
    where: Where | None = None
    condition: Condition | None = None
    otherwise: Literal["continue", "end"] = "continue"

    @model_validator(mode="after")
    def _one(self) -> Goal:
        if (self.event is None) == (self.condition is None):
            raise ValueError("a goal needs exactly one of event or condition")
        if self.where is not None and self.event is None:
            raise ValueError("where goes with event")
        return self

    def event_spec(self) -> EventSpec | None:
        return EventSpec(event=self.event, where=self.where) if self.event else None


class GoalStep(StepBase):
    goal: Goal


class EndSpec(Strict):
    reason: str = "ended"


class EndStep(Strict):
    id: str | None = Field(default=None, pattern=STEP_ID)
    end: EndSpec

    _text_id = field_validator("id", mode="before")(_yaml_text)

    @field_validator("end", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        if v is True or v is None:
            return {}
        if isinstance(v, str):
            return {"reason": v}
        return v


ControlStep = IfStep | BranchStep | SplitStep | WaitStep | WaitUntilStep | GotoStep | GoalStep | EndStep
StepModel = ActionStep | ControlStep

# The key that names a step's kind -> its model. A step mapping holds exactly one of these keys.
STEP_KINDS: dict[str, type[StepModel]] = {
    "send_email": SendEmailStep,
    "send_sms": SendSmsStep,
    "send_site_message": SendSiteMessageStep,
    "notify": NotifyStep,
    "add_tag": AddTagStep,
    "remove_tag": RemoveTagStep,
    "subscribe": SubscribeStep,
    "unsubscribe": UnsubscribeStep,
    "move_to_stage": MoveToStageStep,
    "set_field": SetFieldStep,
    "adjust_score": AdjustScoreStep,
    "generate_coupon": GenerateCouponStep,
    "start_workflow": StartWorkflowStep,
    "remove_from_campaign": RemoveFromCampaignStep,
    "call_webhook": CallWebhookStep,
    "if": IfStep,
    "branch": BranchStep,
    "split": SplitStep,
    "wait": WaitStep,
    "wait_until": WaitUntilStep,
    "goto": GotoStep,
    "goal": GoalStep,
    "end": EndStep,
}
ACTION_KINDS = frozenset(list(STEP_KINDS)[:15])
assert MESSAGE_KINDS <= ACTION_KINDS


class Step(RootModel[StepModel]):
    """One step; the kind key present decides the model so errors name the right fields."""

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, value: Any, handler: Any) -> Step:
        if isinstance(value, Step):
            return value
        if not isinstance(value, dict):
            raise ValueError("a step is a mapping with an id and one kind, e.g. {id: remind, send_email: {...}}")
        kinds = [k for k in value if k in STEP_KINDS]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"a step needs exactly one kind key of {', '.join(STEP_KINDS)} (found: {found})")
        return cls.model_construct(root=STEP_KINDS[kinds[0]].model_validate(value))

    @property
    def kind(self) -> str:
        return step_kind(self.root)

    @property
    def id(self) -> str | None:
        return self.root.id  # type: ignore[no-any-return]


def step_kind(model: BaseModel) -> str:
    for key, cls in STEP_KINDS.items():
        if type(model) is cls:
            return key
    raise TypeError(f"unhandled step model {type(model).__name__}")


IfStep.model_rebuild()
Case.model_rebuild()
BranchStep.model_rebuild()
SplitPath.model_rebuild()
SplitStep.model_rebuild()
WaitUntil.model_rebuild()
WaitUntilStep.model_rebuild()


class Workflow(Strict):
    """One workflow file."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str | None = None
    triggers: list[TriggerEntry] = Field(default_factory=list)
    reentry: Reentry = Field(default_factory=Reentry)
    settings: Settings = Field(default_factory=Settings)
    steps: list[Step] = Field(min_length=1)

    def walk(self) -> Iterator[tuple[Step, tuple[str, ...]]]:
        """Every step in document order with its location (e.g. ('steps', '2', 'then', '0'))."""
        yield from walk_steps(self.steps, ("steps",))


# ---- loading -----------------------------------------------------------------------------------


class WorkflowFileError(Exception):
    """A workflow file that cannot be read; `problems` name the file, the step and the field."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


def _step_id_at(raw: Any, loc: tuple[Any, ...]) -> tuple[str | None, tuple[Any, ...]]:
    """The id of the innermost step on an error location, and the field path below it."""
    cur, step_id, rest_from = raw, None, 0
    for i, part in enumerate(loc):
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(cur, dict) and "id" in cur and isinstance(part, int):
            step_id, rest_from = str(cur["id"]).lower() if isinstance(cur["id"], bool) else str(cur["id"]), i + 1
    return step_id, loc[rest_from:]


_NOISE = re.compile(r"^(function-wrap\[.*\]|function-after\[.*\]|function-before\[.*\]|tagged-union\[.*\])$")


def format_validation_error(path: str, raw: Any, err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and _NOISE.match(p)))
        step_id, rest = _step_id_at(raw, loc)
        field = ".".join(str(p) for p in rest) or "(step)"
        msg = e["msg"].removeprefix("Value error, ")
        where = f"step {step_id}, field {field}" if step_id else f"field {'.'.join(str(p) for p in loc)}"
        problems.append(f"{path}: {where}: {msg}")
    return problems


def parse_workflow(data: Any, path: str = "<workflow>") -> Workflow:
    try:
        return Workflow.model_validate(data)
    except ValidationError as err:
        raise WorkflowFileError(path, format_validation_error(path, data, err)) from None


class DeploymentSettings(Strict):
    """stepwise.yaml beside the workflow files: settings every workflow of the deployment shares (the frequency
    cap) or starts from (a default send window, which a workflow's own settings replace)."""

    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("settings")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - {"send_window", "frequency_cap", "history_days", "max_loops", "budgets", "forms"})
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
        Settings.model_validate(v)
        return v


def load_deployment_settings(folder: Path) -> dict[str, Any]:
    """The settings of the folder's stepwise.yaml (none when there is no such file)."""
    from shared.workflow.loader import YamlFileError, load_file  # PyYAML: compile time only, not the Lambdas'

    p = folder / DEPLOYMENT_FILE
    if not p.is_file():
        return {}
    try:
        data = load_file(p) or {}
        return DeploymentSettings.model_validate(data).settings
    except YamlFileError as err:
        raise WorkflowFileError(str(p), [str(err)]) from None
    except ValidationError as err:
        raise WorkflowFileError(str(p), format_validation_error(str(p), data, err)) from None


def load_workflow(path: str | Path) -> Workflow:
    from shared.workflow.loader import YamlFileError, load_file  # PyYAML: compile time only, not the Lambdas'

    p = Path(path)
    try:
        # Bounded size, depth and alias expansion; UTF-8 only; yes/no stay strings (shared/workflow/loader.py).
        data = load_file(p)
    except YamlFileError as err:
        raise WorkflowFileError(str(p), [str(err)]) from None
    if not isinstance(data, dict):
        raise WorkflowFileError(str(p), [f"{p}: a workflow file is a mapping with name, triggers and steps"])
    own = data.get("settings")
    if isinstance(own, dict) and "frequency_cap" in own:
        raise WorkflowFileError(
            str(p),
            [
                f"{p}: field settings.frequency_cap: the cap counts sends across every workflow; set it once in "
                f"{DEPLOYMENT_FILE} beside the workflow files"
            ],
        )
    if isinstance(own, dict) and "forms" in own:
        raise WorkflowFileError(
            str(p),
            [
                f"{p}: field settings.forms: which form is which serves every workflow of the deployment; set it "
                f"once in {DEPLOYMENT_FILE} beside the workflow files"
            ],
        )
    shared = load_deployment_settings(p.parent)
    if shared:
        data = {**data, "settings": {**shared, **(own if isinstance(own, dict) else {})}}
    return parse_workflow(data, str(p))


def workflow_files(folder: str | Path) -> list[Path]:
    p = Path(folder)
    if p.is_file():
        return [p]
    found = [*p.glob("*.yaml"), *p.glob("*.yml")]
    return sorted(f for f in found if f.name not in (DEPLOYMENT_FILE, "stepwise.yml"))
