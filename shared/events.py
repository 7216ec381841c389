"""The normalised contact event every source is turned into (pydantic: deliveries are validated into it), and the
catalogue of known event types, phone normalisation and stable hashes (from shared.events_base, re-exported)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Re-exported: the catalogue, phone normalisation and stable hashes live in the pydantic-free events_base.
from shared.events_base import CATALOGUE as CATALOGUE
from shared.events_base import normalise_phone as normalise_phone
from shared.events_base import stable_hash as stable_hash


class ContactRef(BaseModel):
    """Who the event is about: at least one identity."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = None
    phone: str | None = None
    external_id: str | None = None  # provider-scoped id, e.g. "shopify:7039294554217"
    contact_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if "@" not in v or v.startswith("@") or v.endswith("@"):
            raise ValueError(f"{v!r} is not an email address")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is None:
            return None
        return normalise_phone(v)

    @field_validator("external_id", mode="before")
    @classmethod
    def _external(cls, v: Any) -> Any:
        # Provider ids beyond 2^53 must never pass through a float.
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _some_identity(self) -> ContactRef:
        if not (self.email or self.phone or self.external_id or self.contact_id):
            raise ValueError("contact needs at least one of email, phone, external_id, contact_id")
        return self


class ContactEvent(BaseModel):
    """One thing that happened to one contact, after a source's payload has been normalised."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Stable id from the source; redelivery repeats it")
    type: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    contact: ContactRef
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None
    source: str | None = Field(default=None, description="The provider it came from (shopify...); None: our own")
    test: bool = Field(default=False, description="The provider's test-mode flag (Stripe livemode false, Shopify test)")

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        # A naive time cannot be placed: compared later with the aware clock (did_event ... within) it fails the run.
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00")
        return v

    def digest(self) -> str:
        """Short stable hash of the event id, for execution names and idempotency keys."""
        return stable_hash(self.type, self.id)
