"""The sender's front-matter reader (shared/messaging/front_matter.py) reads what PyYAML reads, or refuses.

Generated blocks, seeded: for each, either the reader refuses it, or yaml.safe_load gives the same mapping (the same
text for text; for a value YAML reads as a number, a boolean, a date or null, the reader's is not text either).
A block PyYAML refuses, the reader refuses too. The documented forms (plain, single- and double-quoted one-line
values) of any subject are always read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from shared.messaging import front_matter
from shared.messaging.front_matter import FrontMatterError, NotText
from shared.messaging.template_lint import template_problems, yaml_disagreement
from shared.messaging.templates import Source, TemplateError, TemplateSet, split_front_matter

ROOT = Path(__file__).resolve().parents[2]
# Characters YAML gives meaning to, beside ordinary ones, so generated text meets every rule of the subset.
SYNTAX = [*":#'\"-?[]{},&*!|>%@`~=<\\ \t", "{{", "}}", " #", ": ", "0x1", "1e3", ".5", "yes", "null"]
TEXT = st.lists(st.one_of(st.sampled_from(SYNTAX), st.text(min_size=1, max_size=3)), max_size=8).map("".join)
YAML_BREAKS = str.maketrans({"\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P"})
EXAMPLES = settings(max_examples=400, deadline=None, derandomize=True)


def ours(block: str) -> dict[str, Any] | None:
    try:
        return front_matter.read(block)
    except FrontMatterError:
        return None


def theirs(block: str) -> Any:
    try:
        return yaml.safe_load(block) or {}
    except yaml.YAMLError:
        return None


def same(read: dict[str, Any], loaded: Any) -> bool:
    if not isinstance(loaded, dict) or set(read) != set(loaded):
        return False
    for key, value in read.items():
        if isinstance(value, str) != isinstance(loaded[key], str):
            return False
        if isinstance(value, str) and value != loaded[key]:
            return False
        if value is None and loaded[key] is not None:
            return False
    return True


def check(block: str) -> dict[str, Any] | None:
    read, loaded = ours(block), theirs(block)
    if read is not None:
        assert same(read, loaded), f"{block!r}: read {read!r}, YAML reads {loaded!r}"
    if loaded is None:
        assert read is None, f"{block!r}: YAML refuses it, the reader read {read!r}"
    return read


@seed(20261202)
@EXAMPLES
@given(st.lists(st.tuples(st.sampled_from(["subject", "other", "x-y", " subject", "#c"]), TEXT), max_size=3))
def test_a_block_is_read_as_yaml_reads_it_or_refused(lines: list[tuple[str, str]]) -> None:
    check("\n".join(f"{key}:{' ' if i % 2 == 0 else '  '}{value}" for i, (key, value) in enumerate(lines)))


@seed(20261203)
@EXAMPLES
@given(TEXT)
def test_any_line_is_read_as_yaml_reads_it_or_refused(line: str) -> None:
    check(line)
    check(f"subject: {line}")


@seed(20261204)
@EXAMPLES
@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=40))
def test_every_subject_quoted_as_documented_is_read_exactly(subject: str) -> None:
    # JSON's escapes are YAML's too; YAML's own for the characters it reads as line breaks.
    doubled = "subject: " + json.dumps(subject, ensure_ascii=False).translate(YAML_BREAKS)
    single = "subject: '" + subject.replace("'", "''") + "'"
    printable = front_matter.non_printable(subject) is None and not set(subject) & set("\n\r\x85\u2028\u2029")
    for block in (doubled, single) if printable else (doubled,):
        read = check(block)
        if front_matter.non_printable(block) is not None:
            continue  # a raw control character: YAML refuses it, and so does the reader (checked above)
        assert read == {"subject": subject}, block


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "subject: Still thinking it over, {{ contact.first_name | default('friend') }}?",
            "Still thinking it over, {{ contact.first_name | default('friend') }}?",
        ),
        (
            "subject: \"{{ contact.first_name | default('Hi') }}, your cart is waiting\"",
            "{{ contact.first_name | default('Hi') }}, your cart is waiting",
        ),
        ("# a comment\n\nsubject: -5% off   # trailing comment", "-5% off"),
        ("subject: 'It''s here'", "It's here"),
        ('subject: "Caf\\u00e9 \\"news\\""', 'Café "news"'),
        ("subject: first\nsubject: last", "last"),
    ],
)
def test_the_forms_the_docs_and_examples_use(block: str, expected: str) -> None:
    assert check(block) == {"subject": expected}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("subject: Offer: 20% off", "': ' in a value reads as another key: put the value in double quotes"),
        ("subject: {{ contact.first_name }}", "a value beginning with '{' is YAML syntax"),
        ("subject: >\n  folded", "a value beginning with '>' is YAML syntax"),
        ("subject: Hi\n  there", "line 2 is indented"),
        ('subject: "unclosed', "line 1: the quote is not closed on its line"),
        ("just text", "line 1 is not `key: value`"),
    ],
)
def test_what_is_refused_says_the_line_and_what_to_write(block: str, message: str) -> None:
    with pytest.raises(FrontMatterError, match=message.replace("{", r"\{").replace("(", r"\(")):
        front_matter.read(block)


def test_a_value_yaml_reads_as_no_text_is_no_subject() -> None:
    for value in ("123", "yes", "off", "2026-12-01", "1.5e+3", "0x1F", ".inf", "1:30"):
        assert isinstance(front_matter.read(f"subject: {value}")["subject"], NotText)
        with pytest.raises(TemplateError, match="front matter subject must be text"):
            split_front_matter(f"---\nsubject: {value}\n---\n<p>x</p>", "t")
    assert front_matter.read("subject: ~") == {"subject": None} == front_matter.read("subject:")


def test_every_example_template_reads_as_yaml_reads_it() -> None:
    for path in sorted((ROOT / "templates").glob("*.html")):
        meta, _ = split_front_matter(path.read_text(encoding="utf-8"), path.stem)
        block = path.read_text(encoding="utf-8").split("---\n")[1]
        assert meta == yaml.safe_load(block), path
    assert TemplateSet.load(ROOT / "templates").sources  # and the folder loads


def _send(template: str) -> Any:
    from shared.workflow.model import parse_workflow

    return parse_workflow(
        {
            "name": "w",
            "triggers": [{"event": "list.subscribed"}],
            "steps": [{"id": "a", "send_email": {"template": template}}],
        }
    )


def test_validate_names_a_front_matter_the_sender_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "offer.html").write_text("---\nsubject: Offer: 20% off\n---\n<p>x</p>")
    assert template_problems(_send("offer"), "w.yaml", tmp_path) == [
        "w.yaml: template 'offer': front matter: line 1: ': ' in a value reads as another key: put the value in "
        "double quotes"
    ]
    (tmp_path / "offer.html").write_text('---\nsubject: "Offer: 20% off"\n---\n<p>x</p>')
    assert template_problems(_send("offer"), "w.yaml", tmp_path) == []


def test_validate_says_where_yaml_would_read_a_front_matter_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "hi.html"
    path.write_text("---\nsubject: Hi # there\n---\n<p>x</p>")
    read = Source("hi", "email", "Hi # there", "<p>x</p>", None, (path,))  # a reader that kept the comment
    assert yaml_disagreement(read) == (
        "front matter: the sender reads subject 'Hi # there' where YAML reads 'Hi'; put the subject in double quotes"
    )
    assert yaml_disagreement(TemplateSet.load(tmp_path).source("hi", "email")) is None
    path.write_text("---\nsubject: [a\n---\n<p>x</p>")
    assert str(yaml_disagreement(read)).startswith("front matter is not valid YAML: while parsing a flow sequence")
