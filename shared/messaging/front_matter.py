"""A template's front matter read without PyYAML: the one-line `key: value` subset of YAML the templates use.

The sender reads every template's front matter at its cold start; PyYAML (a parser for all of YAML, and a layer to
ship) is compile time only (issue 11 item 9). What is read here is what `yaml.safe_load` reads, for every block of
the subset (tests/unit/test_front_matter.py compares the two on generated blocks, and `stepwise validate` checks
each template a workflow uses with both: shared/messaging/template_lint.py). Outside the subset a block is refused
with the line and what to write instead, never read differently.

The subset, line by line:
  - blank lines and comment lines (`# ...`) are skipped;
  - `key: value` at the start of the line, the key a name (letters, digits, `_`, `-`), the value one of:
      plain text           subject: Your cart is waiting     (a trailing ` # comment` is dropped)
      single-quoted text   subject: 'It''s here'             ('' is one quote)
      double-quoted text   subject: "Hi {{ name }}: 20% off"  (YAML's backslash escapes)
      nothing              subject:                          (YAML's null)
  - a plain value YAML reads as another type (a number, yes/no/on/off/true/false, null or ~, a date or time) is read
    as that kind of value, not text, so the checks that want text refuse it as YAML would give it;
  - refused: indented or continued lines, plain values that begin with YAML syntax (`[ { & * ! | > % @` ...) or hold
    `: `, tabs outside quotes, flow collections, anchors, tags, block scalars."""

from __future__ import annotations

import re
from functools import cache

# PyYAML 6's implicit resolvers (yaml/resolver.py, MIT licence): a plain scalar matching one is not a string.
# The booleans and nulls are sets; the numbers and times a pattern, compiled only for a value that begins as one
# (compiling the patterns at import was a tenth of the sender's own import).
_BOOLS = frozenset(w for b in ("yes", "no", "true", "false", "on", "off") for w in (b, b.capitalize(), b.upper()))
_NULLS = frozenset({"~", "null", "Null", "NULL"})
_NUMBER_STARTS = frozenset("-+.0123456789")
_NUMBER_OR_TIME = r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]\ -[0-9][0-9]?\ -[0-9][0-9]?
     (?:[Tt]|[\ \t]+)[0-9][0-9]?
     :[0-9][0-9]\ :[0-9][0-9]\ (?:\.[0-9]*)?
     (?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$"""


@cache
def _number_or_time() -> re.Pattern[str]:
    return re.compile(_NUMBER_OR_TIME, re.X)


def _printable(ch: str) -> bool:
    """What PyYAML's reader accepts (its NON_PRINTABLE pattern, as ranges: the pattern takes ~20 ms to compile)."""
    c = ord(ch)
    return (
        c in (0x09, 0x0A, 0x0D, 0x85)
        or 0x20 <= c <= 0x7E
        or 0xA0 <= c <= 0xD7FF
        or 0xE000 <= c <= 0xFFFD
        or 0x10000 <= c <= 0x10FFFF
    )


def non_printable(text: str) -> str | None:
    """The first character of `text` PyYAML refuses anywhere in a document; None when there is none."""
    return next((ch for ch in text if not _printable(ch)), None)


_ODD_BREAK = re.compile("[\r\x85\u2028\u2029]")
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*) *:(?: +(.*))?$")
_ESCAPES = {
    "0": "\0",
    "a": "\x07",
    "b": "\x08",
    "t": "\x09",
    "\t": "\x09",
    "n": "\x0a",
    "v": "\x0b",
    "f": "\x0c",
    "r": "\x0d",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "\\": "\\",
    "/": "/",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_HEX = frozenset("0123456789abcdefABCDEF")
# A plain scalar cannot begin with these (YAML's indicators); `-`, `?` and `:` only when a space or the end follows.
_INDICATORS = frozenset("[]{},#&*!|>'\"%@`")
QUOTE_IT = "put the value in double quotes"


class NotText:
    """A plain value YAML reads as something other than text (a number, a boolean, a date): its words kept."""

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"NotText({self.raw!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotText) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


class FrontMatterError(ValueError):
    """A block outside the subset; the message names the line and what to write."""


def read(block: str) -> dict[str, str | NotText | None]:
    """The keys and values of a front-matter block (the text between the `---` lines); {} for an empty one."""
    bad = non_printable(block)
    if bad is not None:
        raise FrontMatterError(f"character {bad!r} is not allowed in front matter")
    lines = [line.removesuffix("\r") for line in block.split("\n")]
    odd = next((m for line in lines if (m := _ODD_BREAK.search(line))), None)
    if odd:  # YAML reads these as line breaks
        raise FrontMatterError(f"character {odd.group()!r} is a line break in YAML: write the value on one line")
    out: dict[str, str | NotText | None] = {}
    for n, line in enumerate(lines, start=1):
        stripped = line.strip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] == " ":
            raise FrontMatterError(f"line {n} is indented: one `key: value` per line, at the start of the line")
        m = _LINE.match(line)
        if m is None:
            if "\t" in line:
                raise FrontMatterError(f"line {n} has a tab: use spaces")
            raise FrontMatterError(f"line {n} is not `key: value` (front matter must be a mapping, e.g. subject: Hi)")
        out[m.group(1)] = _value(m.group(2) or "", n)  # a repeated key: the last one, as YAML reads it
    return out


def _value(text: str, n: int) -> str | NotText | None:
    text = text.rstrip(" ")
    if not text or text.startswith("#"):
        return None
    if text[0] == '"':
        value, rest = _double_quoted(text, n)
    elif text[0] == "'":
        value, rest = _single_quoted(text, n)
    else:
        return _plain(text, n)
    if rest and not re.match(r"^ +#", rest):
        raise FrontMatterError(f"line {n}: text after the closing quote (a comment needs a space and #)")
    return value


def _plain(text: str, n: int) -> str | NotText | None:
    first, second = text[0], text[1:2]
    if first in _INDICATORS or (first in "-?:" and second in ("", " ")):
        raise FrontMatterError(f"line {n}: a value beginning with {first!r} is YAML syntax: {QUOTE_IT}")
    if "\t" in text:
        raise FrontMatterError(f"line {n} has a tab outside quotes: use spaces, or {QUOTE_IT}")
    comment = text.find(" #")
    if comment >= 0:
        text = text[:comment].rstrip(" ")
    if ": " in text or text.endswith(":"):
        raise FrontMatterError(f"line {n}: ': ' in a value reads as another key: {QUOTE_IT}")
    if text in ("<<", "="):  # YAML's merge and value keys: safe_load refuses them as values
        raise FrontMatterError(f"line {n}: {text!r} is YAML syntax: {QUOTE_IT}")
    if text in _NULLS:
        return None
    if text in _BOOLS or (text[0] in _NUMBER_STARTS and _number_or_time().match(text)):
        return NotText(text)
    return text


def _single_quoted(text: str, n: int) -> tuple[str, str]:
    chunks: list[str] = []
    i = 1
    while True:
        end = text.find("'", i)
        if end < 0:
            raise FrontMatterError(f"line {n}: the quote is not closed on its line")
        chunks.append(text[i:end])
        if text[end + 1 : end + 2] == "'":
            chunks.append("'")
            i = end + 2
            continue
        return "".join(chunks), text[end + 1 :]


def _double_quoted(text: str, n: int) -> tuple[str, str]:
    chunks: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(chunks), text[i + 1 :]
        if ch != "\\":
            chunks.append(ch)
            i += 1
            continue
        esc = text[i + 1 : i + 2]
        if esc in _ESCAPES and esc:
            chunks.append(_ESCAPES[esc])
            i += 2
        elif esc in _HEX_ESCAPES:
            digits = text[i + 2 : i + 2 + _HEX_ESCAPES[esc]]
            if len(digits) != _HEX_ESCAPES[esc] or not set(digits) <= _HEX:
                raise FrontMatterError(f"line {n}: \\{esc} needs {_HEX_ESCAPES[esc]} hexadecimal digits")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise FrontMatterError(f"line {n}: \\{esc}{digits} is not a character")
            chunks.append(chr(code))
            i += 2 + len(digits)
        else:
            raise FrontMatterError(f"line {n}: unknown escape \\{esc} in double quotes (write \\\\ for a backslash)")
    raise FrontMatterError(f"line {n}: the quote is not closed on its line")
