"""What a compiled Task state sends the step runner (shared/workflow/compiler.py `_task`), read without pydantic.

A plain slotted class checked as the pydantic model it replaces checked it (issue 11 item 9: the step runner's import
loads no pydantic): every field's type, the required ones present, no field this runner does not know. What is
wrong is reported as RequestError, whose errors() reads like pydantic's ValidationError.errors() (loc, msg), so
the handler's InvalidStep message names the field as before: `payload field priority: Extra inputs are not
permitted (1 problem(s))`. Values are not coerced (the compiler writes each field in its type), except an integral
number written as a float (1.0), as pydantic's lax mode read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

Op = Literal["actions", "decide", "wait", "goal"]
OPS: tuple[str, ...] = ("actions", "decide", "wait", "goal")
Loc = tuple[str | int, ...]


class RequestError(ValueError):
    """A Task payload this runner cannot read: each problem with where it is (loc) and what is wrong (msg)."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self._problems = problems
        first_loc, first_msg = problems[0]
        where = ".".join(str(p) for p in first_loc) or "(payload)"
        super().__init__(f"{where}: {first_msg} ({len(problems)} problem(s))")

    def errors(self) -> list[dict[str, Any]]:
        return [{"loc": loc, "msg": msg} for loc, msg in self._problems]

    def error_count(self) -> int:
        return len(self._problems)


Check = Callable[[Any, Loc, list[tuple[Loc, str]]], Any]


def _str(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
    if not isinstance(v, str):
        out.append((loc, "Input should be a valid string"))
    return v


def _int(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        out.append((loc, "Input should be a valid integer"))
    return v


def _bool(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
    if not isinstance(v, bool):
        out.append((loc, "Input should be a valid boolean"))
    return v


def _dict(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
    if not isinstance(v, dict):
        out.append((loc, "Input should be a valid dictionary"))
    return v


def _list_of(item: Check) -> Check:
    def check(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
        if not isinstance(v, list):
            out.append((loc, "Input should be a valid list"))
            return v
        return [item(x, (*loc, i), out) for i, x in enumerate(v)]

    return check


def _dict_of(value: Check) -> Check:
    def check(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
        if not isinstance(v, dict):
            out.append((loc, "Input should be a valid dictionary"))
            return v
        for k in v:
            _str(k, (*loc, "[key]"), out)
        return {k: value(x, (*loc, k), out) for k, x in v.items()}

    return check


def _optional(inner: Check) -> Check:
    def check(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
        return None if v is None else inner(v, loc, out)

    return check


def _either(first: Check, second: Check, what: str) -> Check:
    """A union: the value as the first form reads it, else as the second; neither, one problem saying both."""

    def check(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
        for form in (first, second):
            problems: list[tuple[Loc, str]] = []
            read = form(v, loc, problems)
            if not problems:
                return read
        out.append((loc, f"Input should be {what}"))
        return v

    return check


def _op(v: Any, loc: Loc, out: list[tuple[Loc, str]]) -> Any:
    if v not in OPS or not isinstance(v, str):
        out.append((loc, "Input should be 'actions', 'decide', 'wait' or 'goal'"))
    return v


_STEPS = _list_of(_dict)
REQUIRED: dict[str, Check] = {
    "op": _op,
    "workflow": _str,
    "version": _str,
    "max_loops": _int,
    "history_days": _int,
    "contact_id": _str,
    "event": _dict,
    "run": _dict,
    "execution": _str,
}
# Optional fields: how each is checked, and its default (a fresh copy per request).
OPTIONAL: dict[str, tuple[Check, Any]] = {
    "entered": (_str, ""),  # $$.State.EnteredTime: orders records of one instant of virtual time
    "steps": (_optional(_STEPS), None),
    "step": (_optional(_dict), None),
    "ahead": (_either(_STEPS, _dict_of(_STEPS), "a list of steps or a mapping of them"), []),
    "goto": (_either(_bool, _dict_of(_bool), "a boolean or a mapping of booleans"), False),
    "path_steps": (_dict_of(_list_of(_str)), {}),  # a split judged by opens/clicks: each path's step ids
    "sending": (_dict, {}),  # the workflow's send window, the deployment's frequency cap, coupon fields
    "deferrable": (_list_of(_str), []),  # the send steps of this Task that can be held (informational)
    "task_token": (_optional(_str), None),
}
FIELDS = (*REQUIRED, *OPTIONAL)


def _fresh(default: Any) -> Any:
    return type(default)(default) if isinstance(default, list | dict) else default


class StepRequest:
    """What a compiled Task state sends (see shared/workflow/compiler.py `_task`)."""

    __slots__ = FIELDS

    op: Op
    workflow: str
    version: str
    max_loops: int
    history_days: int
    contact_id: str
    event: dict[str, Any]
    run: dict[str, Any]
    execution: str
    entered: str
    steps: list[dict[str, Any]] | None
    step: dict[str, Any] | None
    ahead: list[dict[str, Any]] | dict[str, list[dict[str, Any]]]
    goto: bool | dict[str, bool]
    path_steps: dict[str, list[str]]
    sending: dict[str, Any]
    deferrable: list[str]
    task_token: str | None

    def __init__(self, **values: Any) -> None:
        problems: list[tuple[Loc, str]] = []
        for name in values:
            if name not in REQUIRED and name not in OPTIONAL:
                problems.append(((name,), "Extra inputs are not permitted"))
        for name, check in REQUIRED.items():
            if name in values:
                object.__setattr__(self, name, check(values[name], (name,), problems))
            else:
                problems.append(((name,), "Field required"))
        for name, (check, default) in OPTIONAL.items():
            value = check(values[name], (name,), problems) if name in values else _fresh(default)
            object.__setattr__(self, name, value)
        if problems:
            problems.sort(key=lambda p: FIELDS.index(str(p[0][0])) if p[0][0] in FIELDS else len(FIELDS))  # extras last
            raise RequestError(problems)

    @classmethod
    def model_validate(cls, data: Any) -> StepRequest:
        """The request in a Task payload (a JSON object); RequestError naming the first field that is wrong."""
        if isinstance(data, StepRequest):
            return data
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise RequestError([((), "Input should be a valid dictionary or instance of StepRequest")])
        return cls(**data)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> StepRequest:
        """A shallow copy with `update`'s fields replaced, unchecked (as pydantic's model_copy)."""
        copy = object.__new__(StepRequest)
        for name in FIELDS:
            object.__setattr__(copy, name, getattr(self, name))
        for name, value in (update or {}).items():
            if name not in FIELDS:
                raise AttributeError(f"StepRequest has no field {name}")
            object.__setattr__(copy, name, value)
        return copy

    def model_dump(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def __eq__(self, other: object) -> bool:
        return type(other) is StepRequest and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StepRequest({', '.join(f'{n}={getattr(self, n)!r}' for n in FIELDS)})"
