"""Message templates: files beside the workflows, rendered with Jinja2 in a sandbox, strict about undefined names.

Layout of a templates folder (see docs/workflows.md, "Templates"):
  <name>.html       email (and notify / site message) HTML body, opening with a front-matter block that holds
                    its subject:   ---\nsubject: Your cart is waiting\n---\n<html>...
  <name>.txt        optional text part of that email; generated from the HTML when absent
  <name>.sms.txt    an SMS body (plain text)
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.messaging import front_matter

if TYPE_CHECKING:  # Jinja2 itself is loaded on the first compile (_environment): see the decision log, cold start
    from jinja2 import Template as JinjaTemplate
    from jinja2 import UndefinedError
    from jinja2.sandbox import SandboxedEnvironment

HTML_SUFFIX = ".html"
TEXT_SUFFIX = ".txt"
SMS_SUFFIX = ".sms.txt"
EMAIL_CHANNELS = frozenset({"email", "alert", "site"})  # rendered from <name>.html (+ .txt)
SMS_CHANNELS = frozenset({"sms"})
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_FRONT_KEYS = frozenset({"subject"})

# A notify step without a template: the team is told who the contact is and what workflow sent it.
BUILTIN_ALERT_HTML = (
    "<p>Workflow <strong>{{ message.workflow }}</strong>, step {{ message.step }}:</p>\n"
    "<p>Contact {{ contact.id }}{% if contact.email is defined %} ({{ contact.email }}){% endif %}"
    "{% if contact.score is defined %}, score {{ contact.score }}{% endif %}.</p>\n"
)


class TemplateError(Exception):
    """A template that cannot be rendered: missing file, bad syntax, an undefined variable or a sandbox refusal.
    `template` names the template, `variable` the undefined name when that is the cause."""

    def __init__(self, template: str, problem: str, variable: str | None = None) -> None:
        super().__init__(f"template {template!r}: {problem}")
        self.template = template
        self.problem = problem
        self.variable = variable


class TemplateNotFound(TemplateError):
    """The template a step names has no file for its channel."""


@dataclass(frozen=True)
class Rendered:
    """One message as it leaves: subject (email channels), HTML (email channels) and text (always)."""

    subject: str | None
    html: str | None
    text: str


@dataclass(frozen=True)
class Source:
    """One template's files as read: the subject from the front matter, the bodies' Jinja sources."""

    name: str
    channel_kind: str  # "email" or "sms"
    subject: str | None
    html: str | None
    text: str | None
    files: tuple[Path, ...]


def split_front_matter(raw: str, where: str) -> tuple[dict[str, Any], str]:
    """(front matter, body) of an HTML template; a template without a front-matter block has none."""
    m = _FRONT.match(raw)
    if not m:
        return {}, raw
    try:
        # YAML's one-line `key: value` subset, read without PyYAML (compile time only): front_matter.py.
        meta = front_matter.read(m.group(1))
    except front_matter.FrontMatterError as err:
        raise TemplateError(where, f"front matter: {err}") from None
    unknown = sorted(set(meta) - _FRONT_KEYS)
    if unknown:
        raise TemplateError(where, f"front matter has unknown key(s) {', '.join(unknown)} (known: subject)")
    if "subject" in meta and not isinstance(meta["subject"], str):
        raise TemplateError(where, "front matter subject must be text (a number, yes/no or a date: put it in quotes)")
    return meta, raw[m.end() :]


def front_matter_block(raw: str) -> str | None:
    """The text between a template's opening `---` lines; None when it opens with none."""
    m = _FRONT.match(raw)
    return m.group(1) if m else None


class _TextMaker(HTMLParser):
    """HTML to readable plain text: blocks become lines, links 'text (url)', list items '- ', scripts dropped."""

    BLOCKS = frozenset({"p", "div", "br", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.href: list[str | None] = []
        self.link_text: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_text.append("")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag in self.BLOCKS:
            self.out.append("\n\n" if tag not in ("br", "tr") else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag == "a" and self.href:
            href, text = self.href.pop(), self.link_text.pop().strip()
            shown = text if not href or href == text or href.startswith("#") else f"{text} ({href})" if text else href
            self._emit(shown)
        elif tag in self.BLOCKS and tag != "br":
            self.out.append("\n\n" if tag not in ("tr",) else "\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self._emit(re.sub(r"\s+", " ", data))

    def _emit(self, text: str) -> None:
        if self.link_text:
            self.link_text[-1] += text
        else:
            self.out.append(text)

    def text(self) -> str:
        lines = [re.sub(r"[ \t]+", " ", line).strip() for line in "".join(self.out).splitlines()]
        joined = "\n".join(lines)
        return re.sub(r"\n{3,}", "\n\n", joined).strip() + "\n"


def html_to_text(body: str) -> str:
    """The text part generated from an HTML body: readable, links kept as 'text (url)'."""
    maker = _TextMaker()
    maker.feed(body)
    maker.close()
    return maker.text()


@cache
def _environment(autoescape: bool) -> SandboxedEnvironment:
    """The sandbox for HTML (autoescaped) or text, made on first use: a sender whose records render nothing (a
    suppressed or capped contact, a duplicate) never loads Jinja2."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(autoescape=autoescape, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["money"] = lambda v, currency="": f"{float(v):,.2f}" + (f" {currency}" if currency else "")
    return env


def _undefined_name(err: UndefinedError) -> str | None:
    # StrictUndefined words it "'x' is undefined" or "'dict object' has no attribute 'y'".
    msg = str(err)
    m = re.match(r"^'([^']+)' is undefined", msg) or re.search(r"has no attribute '([^']+)'", msg)
    return m.group(1) if m else None


class TemplateSet:
    """The templates of one folder, parsed once (the sender keeps one per cold start)."""

    def __init__(self, folder: Path, sources: dict[tuple[str, str], Source]) -> None:
        self.folder = folder
        self.sources = sources
        self._compiled: dict[tuple[str, str, str], JinjaTemplate] = {}

    @classmethod
    def load(cls, folder: str | Path) -> TemplateSet:
        """Every template of `folder`; a folder that does not exist holds none. Syntax errors surface per template
        when it is checked or rendered, so one broken file does not hide the others."""
        root = Path(folder)
        sources: dict[tuple[str, str], Source] = {}
        if not root.is_dir():
            return cls(root, sources)
        for path in sorted(root.iterdir()):
            if not path.is_file():
                continue
            name = path.name
            if name.endswith(SMS_SUFFIX):
                stem = name[: -len(SMS_SUFFIX)]
                sources[(stem, "sms")] = Source(stem, "sms", None, None, path.read_text(encoding="utf-8"), (path,))
            elif name.endswith(HTML_SUFFIX):
                stem = name[: -len(HTML_SUFFIX)]
                meta, body = split_front_matter(path.read_text(encoding="utf-8"), stem)
                text_path = root / f"{stem}{TEXT_SUFFIX}"
                text = text_path.read_text(encoding="utf-8") if text_path.is_file() else None
                files = (path, text_path) if text is not None else (path,)
                sources[(stem, "email")] = Source(stem, "email", meta.get("subject"), body, text, files)
        return cls(root, sources)

    @staticmethod
    def kind(channel: str) -> str:
        if channel in SMS_CHANNELS:
            return "sms"
        if channel in EMAIL_CHANNELS:
            return "email"
        raise ValueError(f"unknown channel {channel!r}")

    def source(self, name: str, channel: str) -> Source:
        kind = self.kind(channel)
        found = self.sources.get((name, kind))
        if found is None:
            wanted = f"{name}{SMS_SUFFIX}" if kind == "sms" else f"{name}{HTML_SUFFIX}"
            raise TemplateNotFound(name, f"no file {self.folder / wanted}")
        return found

    def has(self, name: str, channel: str) -> bool:
        return (name, self.kind(channel)) in self.sources

    def compiled(self, name: str, part: str, text: str, autoescape: bool) -> JinjaTemplate:
        key = (name, part, text)
        tpl = self._compiled.get(key)
        if tpl is None:
            from jinja2 import TemplateSyntaxError

            try:
                tpl = _environment(autoescape).from_string(text)
            except TemplateSyntaxError as err:
                raise TemplateError(name, f"{part}: syntax error on line {err.lineno}: {err.message}") from None
            self._compiled[key] = tpl
        return tpl

    def parts(self, name: str, channel: str, subject: str | None = None) -> dict[str, tuple[str, bool]]:
        """The Jinja sources a message of `channel` renders: part -> (source, autoescaped)."""
        if channel == "alert" and not name:
            return {"subject": (subject or "Stepwise alert", False), "html": (BUILTIN_ALERT_HTML, True)}
        src = self.source(name, channel)
        if src.channel_kind == "sms":
            return {"text": (src.text or "", False)}
        out: dict[str, tuple[str, bool]] = {}
        subj = subject if subject is not None else src.subject
        if subj is not None:
            out["subject"] = (subj, False)
        out["html"] = (src.html or "", True)
        if src.text is not None:
            out["text"] = (src.text, False)
        return out

    def render(
        self, template_name: str | None, channel: str, context: dict[str, Any], subject: str | None = None
    ) -> Rendered:
        """The message as sent. `subject` (the step's own) wins over the template's front matter. Raises
        TemplateError (TemplateNotFound) naming the template, and the variable when one is undefined."""
        name = template_name or ""
        parts = self.parts(name, channel, subject)
        if self.kind(channel) == "email" and "subject" not in parts:
            raise TemplateError(name, "no subject: add 'subject:' to the template's front matter or to the step")
        from jinja2 import UndefinedError
        from jinja2.sandbox import SecurityError

        out: dict[str, str] = {}
        for part, (text, escape) in parts.items():
            tpl = self.compiled(name or "(built-in alert)", part, text, escape)
            try:
                out[part] = tpl.render(context)
            except UndefinedError as err:
                var = _undefined_name(err)
                raise TemplateError(name, f"{part}: {err.message or err}", var) from None
            except SecurityError as err:
                raise TemplateError(name, f"{part}: refused by the sandbox: {err}") from None
        if "html" in out:
            subject_line = " ".join(html.unescape(out["subject"]).split()) if "subject" in out else None
            text = out.get("text") or html_to_text(out["html"])
            return Rendered(subject=subject_line, html=out["html"], text=text)
        return Rendered(subject=None, html=None, text=out["text"].strip() + "\n")


def render_context(
    contact: dict[str, Any],
    event: dict[str, Any] | None = None,
    *,
    coupon: str | None = None,
    unsubscribe_url: str | None = None,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees. `contact` is the profile as stored or as a contact.json gives it: custom
    fields are reachable as contact.fields.x and as contact.x; unset values are left out (so `| default(...)`
    applies and a bare use is an error, never an empty string). `event` is the triggering event's data."""
    fields = {k: v for k, v in (contact.get("fields") or {}).items() if v is not None}
    core = {k: v for k, v in contact.items() if v is not None and k != "fields"}
    if "contact_id" in core and "id" not in core:
        core["id"] = core["contact_id"]
    if "tags" in core:
        core["tags"] = sorted(core["tags"])
    ctx: dict[str, Any] = {"contact": {**fields, **core, "fields": fields}}
    # A whole event (as the execution input holds it) or its data alone.
    ev = event or {}
    ctx["event"] = ev["data"] if "type" in ev and isinstance(ev.get("data"), dict) else ev
    if coupon is not None:
        ctx["coupon"] = coupon
    if unsubscribe_url is not None:
        ctx["unsubscribe_url"] = unsubscribe_url
    ctx["message"] = message or {}
    return ctx
