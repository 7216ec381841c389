"""Templates: sandboxed Jinja2, HTML escaped, undefined names an error, text part generated, validate's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.messaging.template_lint import coupon_fields, template_problems
from shared.messaging.templates import TemplateError, TemplateNotFound, TemplateSet, html_to_text, render_context
from shared.workflow.model import load_workflow, parse_workflow, workflow_files

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
CART = {
    "type": "checkout.abandoned",
    "data": {
        "cart_value": 89.5,
        "currency": "EUR",
        "url": "https://shop.example.com/cart/1001?key=a&b=c",
        "products": [{"name": "Mug <Espresso>", "quantity": 2, "price": 9.5}],
    },
}


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_cart_reminder_renders_the_cart_escaped_with_a_text_part_keeping_links() -> None:
    ts = TemplateSet.load(TEMPLATES)
    ctx = render_context(
        {"email": "ana@example.com", "fields": {"first_name": "Ana"}}, CART, unsubscribe_url="https://u.example/x"
    )
    r = ts.render("cart-reminder", "email", ctx)
    assert r.subject == "Ana, your cart is waiting"
    assert "Mug &lt;Espresso&gt;" in r.html and "<Espresso>" not in r.html  # autoescaped
    assert 'href="https://shop.example.com/cart/1001?key=a&amp;b=c"' in r.html
    assert "2 x Mug <Espresso> 9.50" in r.text  # the text part is not escaped
    assert "Complete your order (https://shop.example.com/cart/1001?key=a&b=c)" in r.text
    assert "worth 89.50 EUR" in r.text


def test_first_name_default_and_a_written_text_part() -> None:
    ts = TemplateSet.load(TEMPLATES)
    r = ts.render("welcome-email", "email", render_context({"email": "bo@example.com"}, {}, unsubscribe_url="U"))
    assert r.subject == "Welcome, and thank you!"
    assert r.text.startswith("Hi there,\n")  # from welcome-email.txt, not generated
    assert "Unsubscribe: U" in r.text


def test_an_undefined_variable_is_a_typed_error_naming_template_and_variable() -> None:
    ts = TemplateSet.load(TEMPLATES)
    with pytest.raises(TemplateError) as err:
        ts.render("holiday-last-call", "email", render_context({"email": "a@example.com"}, {}, unsubscribe_url="U"))
    assert (err.value.template, err.value.variable) == ("holiday-last-call", "coupon")
    r = ts.render(
        "holiday-last-call",
        "email",
        render_context({"email": "a@example.com"}, {}, coupon="XMAS1234", unsubscribe_url="U"),
    )
    assert r.subject == "Last call: 15% off with XMAS1234"


def test_sms_is_plain_text_not_escaped(tmp_path: Path) -> None:
    write(tmp_path, "hi.sms.txt", "Hi {{ contact.first_name }} & co: {{ event.url }}\n")
    r = TemplateSet.load(tmp_path).render(
        "hi", "sms", render_context({"first_name": "A<b>"}, {"url": "https://x/?a=1&b=2"})
    )
    assert (r.subject, r.html, r.text) == (None, None, "Hi A<b> & co: https://x/?a=1&b=2\n")


def test_missing_template_and_missing_subject(tmp_path: Path) -> None:
    write(tmp_path, "plain.html", "<p>no front matter</p>")
    ts = TemplateSet.load(tmp_path)
    with pytest.raises(TemplateNotFound):
        ts.render("nope", "email", render_context({}, {}))
    with pytest.raises(TemplateError, match="no subject"):
        ts.render("plain", "email", render_context({}, {}))
    assert ts.render("plain", "email", render_context({}, {}), subject="Step subject").subject == "Step subject"


def test_the_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    write(tmp_path, "evil.html", "---\nsubject: x\n---\n{{ contact.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        TemplateSet.load(tmp_path).render("evil", "email", render_context({"email": "a@example.com"}, {}))


def test_html_to_text_blocks_lists_and_links() -> None:
    text = html_to_text('<h1>Title</h1><p>One <a href="https://a.example">link</a></p><ul><li>x</li><li>y</li></ul>')
    assert text == "Title\n\nOne link (https://a.example)\n\n- x\n- y\n"


def test_every_example_template_a_workflow_names_exists_and_validates() -> None:
    for path in workflow_files(ROOT / "workflows"):
        assert template_problems(load_workflow(path), path) == [], path


def test_validate_names_missing_templates_and_unknowable_variables(tmp_path: Path) -> None:
    write(
        tmp_path / "templates",
        "cart.html",
        "---\nsubject: Hi\n---\n{{ event.url }} {{ event.sku }} {{ event.sku2 | default('') }} {{ coupon }}",
    )
    write(
        tmp_path / "templates",
        "guarded.html",
        "---\nsubject: Hi\n---\n{% if event.sku is defined %}{{ event.sku }}{% endif %}",
    )
    wf = parse_workflow(
        {
            "name": "w",
            "triggers": [{"event": "checkout.abandoned"}],
            "steps": [
                {"id": "a", "send_email": {"template": "cart"}},
                {"id": "b", "send_email": {"template": "gone"}},
                {"id": "c", "send_email": {"template": "guarded"}},
            ],
        }
    )
    problems = template_problems(wf, "w.yaml", tmp_path / "templates")
    assert problems[0].startswith("w.yaml: step a, template cart, variable event.sku: trigger event checkout.abandoned")
    assert problems[1].startswith("w.yaml: step a, template cart, variable coupon: no generate_coupon step")
    assert problems[2].startswith("w.yaml: step b, field send_email.template: template 'gone' does not exist")
    assert len(problems) == 3


def test_a_coupon_is_known_only_when_generated_on_every_path() -> None:
    wf = parse_workflow(
        {
            "name": "w",
            "steps": [
                {"id": "d", "if": {"has_tag": "vip"}, "then": [{"id": "g", "generate_coupon": {"field": "vip_code"}}]},
                {"id": "s1", "send_email": {"template": "t"}},
                {"id": "g2", "generate_coupon": {}},
                {"id": "s2", "send_sms": {"template": "t"}},
            ],
        }
    )
    assert coupon_fields(wf) == {"s2": "coupon_code"}


def test_render_command_prints_subject_html_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stepwise.cli import main

    (tmp_path / "c.json").write_text('{"email": "ana@example.com", "first_name": "Ana"}')
    (tmp_path / "e.json").write_text(json.dumps(CART))
    args = ["render", "cart-reminder", "--contact", str(tmp_path / "c.json"), "--event", str(tmp_path / "e.json")]
    assert main([*args, "--templates", str(TEMPLATES)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: Ana, your cart is waiting\n----- HTML -----\n<html>")
    assert "----- text -----\nHi Ana," in out
    assert (
        main(["render", "holiday-last-call", "--contact", str(tmp_path / "c.json"), "--templates", str(TEMPLATES)]) == 1
    )
    assert "'coupon' is undefined" in capsys.readouterr().err


def test_validate_reports_a_missing_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stepwise.cli import main

    write(tmp_path / "templates", "hi.html", "---\nsubject: Hi\n---\n<p>hi</p>")
    write(
        tmp_path / "workflows",
        "w.yaml",
        "name: w\nsteps:\n  - {id: a, send_email: {template: hi}}\n  - {id: b, send_sms: {template: hi}}\n",
    )
    assert main(["validate", str(tmp_path / "workflows")]) == 1
    out = capsys.readouterr().out
    assert "w.yaml: step b, field send_sms.template: template 'hi' does not exist" in out
    assert "step a" not in out
