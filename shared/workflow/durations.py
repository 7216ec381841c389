"""Human durations in workflow files: `90s`, `10m`, `2h`, `1d`, `2w`, `1d12h`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"^(\d+[smhdw])+$")


class DurationError(ValueError):
    """A duration string that cannot be read."""


def parse_duration(text: str | int) -> int:
    """Seconds in a duration such as `1d12h`; a bare integer is seconds."""
    if isinstance(text, bool):
        raise DurationError(f"{text!r} is not a duration; write e.g. 10m, 1d, 2w")
    if isinstance(text, int):
        if text < 0:
            raise DurationError(f"duration {text} is negative")
        return text
    cleaned = text.strip().replace(" ", "")
    if not _WHOLE.match(cleaned):
        raise DurationError(f"{text!r} is not a duration; write e.g. 90s, 10m, 2h, 1d, 2w or 1d12h")
    return sum(int(n) * _UNITS[u] for n, u in _PART.findall(cleaned))


def format_duration(seconds: int) -> str:
    """The shortest readable form of a number of seconds (`86400` -> `1d`)."""
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def _coerce(value: object) -> int:
    if isinstance(value, str | int):
        return parse_duration(value)
    raise DurationError(f"{value!r} is not a duration; write e.g. 10m, 1d, 2w")


# What a workflow file may write where a duration goes (the JSON Schema of `stepwise schema`).
DURATION_SCHEMA: dict[str, object] = {
    "description": "A duration: seconds, or e.g. 90s, 10m, 2h, 1d, 2w, 1d12h",
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^(\d+[smhdw])+$"}],
}


def _duration_type() -> Any:
    """The authoring models' Duration annotation, built on first use: pydantic belongs to validate and synth, not
    to the step runner's import (which reads durations with parse_duration)."""
    from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

    return Annotated[
        int,
        BeforeValidator(_coerce),
        PlainSerializer(format_duration, return_type=str),
        WithJsonSchema(DURATION_SCHEMA),
    ]


if TYPE_CHECKING:
    # Seconds in the model, the human form when dumped back.
    Duration = Annotated[int, "duration"]
else:
    _lazy: dict[str, Any] = {}

    def __getattr__(name: str) -> Any:
        if name != "Duration":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        if name not in _lazy:
            _lazy[name] = _duration_type()
        return _lazy[name]
