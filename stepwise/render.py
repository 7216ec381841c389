"""`stepwise render`: a template rendered for one contact and event, printed as it would be sent."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared import constants as C
from shared.messaging.templates import TemplateError, TemplateSet, render_context

PREVIEW_UNSUBSCRIBE = "https://unsubscribe.example.invalid/preview"  # the sender signs a real one per message


def _read_json(path: str | None, what: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise SystemExit(f"{path}: cannot read the {what} file: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path}: the {what} file is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: the {what} file must hold one JSON object")
    return data


def add_parser(sub: Any) -> None:
    p = sub.add_parser("render", help="print a template's subject, HTML and text as they would be sent")
    p.add_argument("template", metavar="TEMPLATE", help="the template's name (templates/NAME.html or NAME.sms.txt)")
    p.add_argument("--contact", required=True, metavar="CONTACT.json", help="the contact: email, first_name, fields")
    p.add_argument("--event", metavar="EVENT.json", help="the triggering event (or its data)")
    p.add_argument("--templates", default=C.TEMPLATES_FOLDER, metavar="DIR", help="the templates folder")
    p.add_argument("--channel", choices=["email", "sms"], help="default: sms when only NAME.sms.txt exists")
    p.add_argument("--coupon", metavar="CODE", help="the coupon code a generate_coupon step would have made")
    p.add_argument("--subject", help="the send step's own subject, which wins over the template's")
    p.set_defaults(func=render_command)


def render_command(args: argparse.Namespace) -> int:
    ts = TemplateSet.load(args.templates)
    only_sms = ts.has(args.template, "sms") and not ts.has(args.template, "email")
    channel = args.channel or ("sms" if only_sms else "email")
    contact = _read_json(args.contact, "contact")
    context = render_context(
        contact,
        _read_json(args.event, "event"),
        coupon=args.coupon,
        unsubscribe_url=os.environ.get(C.ENV_UNSUBSCRIBE_URL) or PREVIEW_UNSUBSCRIBE,
        message={"id": "preview", "channel": channel, "template": args.template},
    )
    try:
        r = ts.render(args.template, channel, context, subject=args.subject)
    except TemplateError as err:
        print(f"{Path(args.templates) / args.template}: {err}", file=sys.stderr)
        return 1
    if r.subject is not None:
        print(f"Subject: {r.subject}")
    if r.html is not None:
        print("----- HTML -----")
        print(r.html.rstrip("\n"))
        print("----- text -----")
    print(r.text.rstrip("\n"))
    return 0
