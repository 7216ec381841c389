"""Checks of the templates a workflow's send steps name: the file exists, it parses, and every variable it uses
bare can be known (event fields by trigger type, a coupon generated before the send on every path).

`stepwise validate` (stepwise/cli.py check_file) and the synth (infra load_workflows, through check_file) call
`template_problems`; the compiler calls `coupon_fields` to tell the step runner where each send's coupon is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from jinja2 import nodes

from shared import constants as C
from shared.events import CATALOGUE
from shared.messaging.templates import Source, TemplateError, TemplateSet, front_matter_block
from shared.workflow.lint import END, flow, trigger_events
from shared.workflow.model import (
    GenerateCouponStep,
    GoalStep,
    NotifyStep,
    SendEmailStep,
    SendSiteMessageStep,
    SendSmsStep,
    Workflow,
)

KNOWN_NAMES = frozenset({"contact", "event", "coupon", "unsubscribe_url", "message"})
GUARD_FILTERS = frozenset({"default", "d"})
GUARD_TESTS = frozenset({"defined", "undefined", "none"})


@dataclass(frozen=True)
class TemplateUse:
    """A step that renders a template: which, on which channel, and the step's own subject."""

    step: str
    field: str  # e.g. send_email.template
    template: str
    channel: str
    subject: str | None = None


def template_uses(wf: Workflow) -> list[TemplateUse]:
    out: list[TemplateUse] = []
    for step, _ in wf.walk():
        r, sid = step.root, step.id or "?"
        if isinstance(r, SendEmailStep):
            out.append(TemplateUse(sid, "send_email.template", r.send_email.template, "email", r.send_email.subject))
        elif isinstance(r, SendSmsStep):
            out.append(TemplateUse(sid, "send_sms.template", r.send_sms.template, "sms"))
        elif isinstance(r, SendSiteMessageStep):
            out.append(TemplateUse(sid, "send_site_message.template", r.send_site_message.template, "site", ""))
        elif isinstance(r, NotifyStep) and r.notify.template:
            out.append(TemplateUse(sid, "notify.template", r.notify.template, "alert", r.notify.subject))
    return out


def templates_folder(workflow_path: str | Path) -> Path | None:
    """The templates of a workflow file: `templates/` in its folder, else beside its folder (the repository
    layout: workflows/ and templates/ at the top). None when there is neither."""
    folder = Path(workflow_path).resolve().parent
    for candidate in (folder / C.TEMPLATES_FOLDER, folder.parent / C.TEMPLATES_FOLDER):
        if candidate.is_dir():
            return candidate
    return None


def coupon_fields(wf: Workflow) -> dict[str, str]:
    """Send step id -> the contact field of the coupon generated before it on every path (the last one when
    several are), for the steps that have one. A goal is entered from anywhere, so nothing precedes it for sure."""
    f = flow(wf)
    preds: dict[str, list[str]] = {k: [] for k in f.nodes}
    for e in f.edges:
        if e.dst != END:
            preds[e.dst].append(e.src)
    entry = {f.first} | {k for k, n in f.nodes.items() if isinstance(n.step.root, GoalStep)}
    # out[k]: field -> order of generation, for coupons generated on every path up to and including k.
    universe = {
        n.step.root.generate_coupon.field for n in f.nodes.values() if isinstance(n.step.root, GenerateCouponStep)
    }
    full = dict.fromkeys(universe, 0)
    out: dict[str, dict[str, int]] = {k: dict(full) for k in f.nodes}
    changed = True
    while changed:
        changed = False
        for k, node in f.nodes.items():
            ins = [out[p] for p in preds[k]]
            if k in entry:
                ins.append({})
            have = {fld: max(i[fld] for i in ins) for fld in set.intersection(*(set(i) for i in ins))} if ins else {}
            r = node.step.root
            if isinstance(r, GenerateCouponStep):
                have = {**have, r.generate_coupon.field: max(have.values(), default=0) + 1}
            if have != out[k]:
                out[k] = have
                changed = True
    result: dict[str, str] = {}
    for k, node in f.nodes.items():
        if isinstance(node.step.root, SendEmailStep | SendSmsStep | SendSiteMessageStep | NotifyStep):
            before = [out[p] for p in preds[k]] + ([{}] if k in entry else [])
            common = set.intersection(*(set(b) for b in before)) if before else set()
            if common:
                result[node.id] = max(common, key=lambda fld: max(b[fld] for b in before))
    return result


def _bare_uses(tree: nodes.Template) -> list[tuple[str, str | None]]:
    """(name, attribute) of every variable read outside a `| default(...)`, an `is defined` test, or the body of
    an `{% if x.y is defined %}`."""
    found: list[tuple[str, str | None]] = []
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}

    def ref(node: nodes.Node) -> tuple[str, str | None] | None:
        if isinstance(node, nodes.Name) and node.ctx == "load":
            return node.name, None
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            return node.node.name, node.attr
        if isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and isinstance(node.arg, nodes.Const):
            return node.node.name, str(node.arg.value)
        return None

    def visit(node: nodes.Node, guarded: bool, safe: frozenset[tuple[str, str | None]]) -> None:
        child: nodes.Node
        guard = (isinstance(node, nodes.Filter) and node.name in GUARD_FILTERS) or (
            isinstance(node, nodes.Test) and node.name in GUARD_TESTS
        )
        if guard:
            assert isinstance(node, nodes.Filter | nodes.Test)
            if node.node is not None:
                visit(node.node, True, safe)
            for child in [*node.args, *(kw.value for kw in node.kwargs)]:
                visit(child, guarded, safe)
            return
        if isinstance(node, nodes.If) and isinstance(node.test, nodes.Test) and node.test.name == "defined":
            tested = ref(node.test.node)
            visit(node.test, guarded, safe)
            inner = safe | {tested} if tested else safe
            for child in node.body:
                visit(child, guarded, inner)
            for child in [*node.elif_, *node.else_]:
                visit(child, guarded, safe)
            return
        found_ref = ref(node)
        if found_ref is not None:
            name = found_ref[0]
            if not guarded and name not in assigned and found_ref not in safe and (name, None) not in safe:
                found.append(found_ref)
            return
        for child in node.iter_child_nodes():
            visit(child, guarded, safe)

    visit(tree, False, frozenset())
    return found


def template_problems(wf: Workflow, path: str | Path, folder: str | Path | None = None) -> list[str]:
    """'FILE: step X, field F: ...' lines for the templates of `wf`. `folder` defaults to templates_folder(path);
    when there is no templates folder at all nothing is checked (a workflow folder without templates yet)."""
    root = Path(folder) if folder is not None else templates_folder(path)
    if root is None:
        return []
    uses = template_uses(wf)
    if not uses:
        return []
    try:
        ts = TemplateSet.load(root)
    except TemplateError as err:  # a front matter the sender cannot read: the template names it
        return [f"{path}: {err}"]
    events = trigger_events(wf)
    coupons = coupon_fields(wf)
    problems: list[str] = []
    for use in uses:
        where = f"{path}: step {use.step}, field {use.field}"
        if not ts.has(use.template, use.channel):
            wanted = f"{use.template}.sms.txt" if use.channel == "sms" else f"{use.template}.html"
            problems.append(f"{where}: template {use.template!r} does not exist (no {root / wanted})")
            continue
        disagreement = yaml_disagreement(ts.source(use.template, use.channel))
        if disagreement:
            problems.append(f"{where}: template {use.template!r}: {disagreement}")
        try:
            parts = ts.parts(use.template, use.channel, use.subject or None)
        except TemplateError as err:
            problems.append(f"{where}: {err}")
            continue
        if use.channel == "email" and "subject" not in parts:
            problems.append(
                f"{where}: template {use.template!r} has no subject (front matter 'subject:') and the step gives none"
            )
        for part, (text, escape) in parts.items():
            try:
                tree = ts.compiled(use.template, part, text, escape).environment.parse(text)
            except TemplateError as err:
                problems.append(f"{where}: {err}")
                continue
            for name, attr in dict.fromkeys(_bare_uses(tree)):
                problem = _unknown(name, attr, events, use.step in coupons)
                if problem:
                    problems.append(f"{path}: step {use.step}, template {use.template}, variable {problem}")
    return problems


def yaml_disagreement(src: Source) -> str | None:
    """Why PyYAML would read the template's front matter otherwise than the sender does (shared/messaging/
    front_matter.py, YAML's one-line subset); None when both read the same. The sender never loads PyYAML, so
    `stepwise validate` proves here that what it reads is what the file says in YAML."""
    if src.channel_kind != "email":
        return None
    block = front_matter_block(src.files[0].read_text(encoding="utf-8"))
    if block is None:
        return None
    try:
        loaded = yaml.safe_load(block) or {}
    except yaml.YAMLError as err:
        return f"front matter is not valid YAML: {' '.join(str(err).split())}"
    yaml_subject = loaded.get("subject") if isinstance(loaded, dict) else loaded
    if not isinstance(loaded, dict) or yaml_subject != src.subject:
        return (
            f"front matter: the sender reads subject {src.subject!r} where YAML reads {yaml_subject!r}; "
            "put the subject in double quotes"
        )
    return None


def _unknown(name: str, attr: str | None, events: list[str], has_coupon: bool) -> str | None:
    if name not in KNOWN_NAMES:
        return f"{name}: not a template variable (known: {', '.join(sorted(KNOWN_NAMES))})"
    if name == "coupon" and not has_coupon:
        return "coupon: no generate_coupon step comes before this send on every path; write coupon | default('')"
    if name == "event" and attr is not None:
        missing = [e for e in events if e in CATALOGUE and attr not in CATALOGUE[e]]
        if missing:
            return (
                f"event.{attr}: trigger event {missing[0]} has no field {attr!r} "
                f"(it has: {', '.join(sorted(CATALOGUE[missing[0]]))}); guard it with | default(...)"
            )
    return None
