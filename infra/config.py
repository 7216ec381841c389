"""The app's parameters, read once from CDK context (cdk.json defaults, `-c key=value` overrides) and checked."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from constructs import Node
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from infra.assets import REPO

# Context keys (cdk.json and `cdk deploy -c KEY=VALUE`).
CTX_STAGE = "stage"
CTX_WORKFLOWS = "workflows"
CTX_ALARM_EMAIL = "alarm_email"
CTX_POWERTOOLS_LAYER_VERSION = "powertools_layer_version"
CTX_EMAIL_FROM = "email_from"
CTX_SMS_ORIGINATION = "sms_origination"
CTX_UNSUBSCRIBE_MAIL_DOMAIN = "unsubscribe_mail_domain"
CTX_API_THROTTLE_RATE = "api_throttle_rate"
CTX_API_THROTTLE_BURST = "api_throttle_burst"
CTX_WEBHOOK_ALLOW = "webhook_allow"
CONTEXT_KEYS = (
    CTX_STAGE,
    CTX_WORKFLOWS,
    CTX_ALARM_EMAIL,
    CTX_POWERTOOLS_LAYER_VERSION,
    CTX_EMAIL_FROM,
    CTX_SMS_ORIGINATION,
    CTX_UNSUBSCRIBE_MAIL_DOMAIN,
    CTX_API_THROTTLE_RATE,
    CTX_API_THROTTLE_BURST,
    CTX_WEBHOOK_ALLOW,
)

# Public Powertools layer (its variant built with every extra, pydantic v2 included). Version 27 is the one the
# Powertools documentation names for the V3 layers at the time of writing; override with -c powertools_layer_version.
POWERTOOLS_LAYER_VERSION = 27

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# An End User Messaging SMS origination identity IAM can name: a phone number or pool by ARN or id, or a sender id
# by ARN. A bare E.164 number cannot be turned into an ARN (the ARN carries the number's id), so it is refused.
_SMS_ORIGINATION = re.compile(
    r"arn:aws[a-z-]*:sms-voice:[a-z0-9-]+:\d{12}:(phone-number/phone-[0-9a-f]{32}|pool/pool-[0-9a-f]{32}"
    r"|sender-id/[A-Za-z0-9-]{1,11}/[A-Z]{2})|phone-[0-9a-f]{32}|pool-[0-9a-f]{32}"
)
# A webhook_allow host: a DNS name as shared/webhooks.py compares it (lower case, one label allowed: `localhost`).
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


class StackConfig(BaseModel):
    """Everything a deploy can vary. A bad value fails the synth with the key's name, never a half-built stack."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # No hyphen: `stepwise-{stage}-*` must match this stage's machines only (see infra/names.py).
    stage: str = Field(default="dev", pattern=r"^[a-z][a-z0-9]{0,15}$")
    workflows: Path = Field(default=Path("workflows"), validate_default=True)  # relative to the repo
    alarm_email: str = ""
    powertools_layer_version: int = Field(default=POWERTOOLS_LAYER_VERSION, ge=1)
    # The SES identity (address; its domain or the address itself verified in SES) email is sent from. Required
    # when a workflow sends email (checked by the stack against the workflows: SendersConfigError).
    email_from: str = ""
    # The End User Messaging SMS origination identity SMS are sent from; required when a workflow sends SMS.
    sms_origination: str = ""
    # A domain SES receives mail for (its MX record points at inbound-smtp.<region>.amazonaws.com, the domain is a
    # verified SES identity): List-Unsubscribe then also offers mailto:unsubscribe@<domain>, and a receipt rule
    # hands those mails to the unsubscribe-mail Lambda. "" = the https one-click link only.
    unsubscribe_mail_domain: str = ""
    # The intake API's stage throttling (requests per second, burst); API Gateway answers 429 above it and every
    # provider retries a 429. Well under the account's 10,000 rps so one stage cannot starve another.
    api_throttle_rate: int = Field(default=50, ge=1, le=10_000)
    api_throttle_burst: int = Field(default=100, ge=1, le=5_000)
    # Hosts (exact names, no wildcards) and IP networks (CIDR, or a single address) a call_webhook may reach beyond
    # public https: an entry may be plain http and resolve to an internal address (shared/webhooks.py). cdk.json: a
    # list (["crm.internal", "10.1.0.0/16"]); `-c webhook_allow=...`: comma or space separated. The step runner
    # gets it as STEPWISE_WEBHOOK_ALLOW, space separated; empty = https to public addresses only.
    webhook_allow: tuple[str, ...] = ()

    @field_validator("alarm_email", "email_from")
    @classmethod
    def _email(cls, v: str, info: ValidationInfo) -> str:
        if v and not _EMAIL.fullmatch(v):
            raise ValueError(f"{info.field_name} {v!r} is not an e-mail address")
        return v

    @field_validator("unsubscribe_mail_domain")
    @classmethod
    def _mail_domain(cls, v: str) -> str:
        if v and not _DOMAIN.fullmatch(v):
            raise ValueError(f"unsubscribe_mail_domain {v!r} is not a lower-case domain name (e.g. mail.example.com)")
        return v

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _webhook_allow(cls, v: object) -> object:
        items = v.replace(",", " ").split() if isinstance(v, str) else v
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ValueError('webhook_allow is a list of host names and networks, e.g. ["crm.internal", "10.1.0.0/16"]')
        out: list[str] = []
        for item in (i.strip() for i in items):
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
                continue
            except ValueError:
                pass
            host = item.lower().rstrip(".")
            if not _HOST.fullmatch(host):
                raise ValueError(
                    f"webhook_allow entry {item!r} is not a host name (crm.internal: exact, no scheme, port or "
                    "wildcard) or an IP network (10.1.0.0/16, 192.0.2.7)"
                )
            out.append(host)
        return tuple(dict.fromkeys(out))

    @field_validator("sms_origination")
    @classmethod
    def _origination(cls, v: str) -> str:
        if v and not _SMS_ORIGINATION.fullmatch(v):
            raise ValueError(
                f"sms_origination {v!r} is not a phone number or pool of End User Messaging SMS: give its ARN "
                "(arn:aws:sms-voice:REGION:ACCOUNT:phone-number/phone-..., .../pool/pool-..., "
                ".../sender-id/ID/COUNTRY) or its id (phone-... or pool-...)"
            )
        return v

    @field_validator("workflows")
    @classmethod
    def _folder(cls, v: Path) -> Path:
        folder = v if v.is_absolute() else REPO / v
        if not folder.is_dir():
            raise ValueError(f"workflows folder {folder} does not exist")
        return folder

    @property
    def prefix(self) -> str:
        """Physical-name prefix of this stage's resources (state machines, log groups, alarms)."""
        return f"stepwise-{self.stage}"

    @property
    def unsubscribe_mailto(self) -> str:
        """The address List-Unsubscribe's mailto: names, "" without unsubscribe_mail_domain."""
        return f"unsubscribe@{self.unsubscribe_mail_domain}" if self.unsubscribe_mail_domain else ""

    @property
    def parameters_prefix(self) -> str:
        """SSM path of this stage's secrets (created by the operator): {prefix}/webhooks/{provider}, the API key."""
        return f"/stepwise/{self.stage}"

    @property
    def unsubscribe_key_parameter(self) -> str:
        """SSM SecureString (created by the operator) of the key that signs one-click unsubscribe links: the sender
        signs with it, the intake verifies."""
        return f"{self.parameters_prefix}/unsubscribe-key"

    @classmethod
    def from_context(cls, node: Node) -> StackConfig:
        raw = {key: node.try_get_context(key) for key in CONTEXT_KEYS}
        return cls.model_validate({k: v for k, v in raw.items() if v is not None})
