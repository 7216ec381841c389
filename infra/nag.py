"""cdk-nag acknowledgements: each names the exact finding and says why it is right for this stack."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

PACK = "AwsSolutions"
MIN_REASON = 40  # a reason is a sentence about this resource, not "needed" or "ok"


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (`AwsSolutions-IAM5[Resource::*]`, `AwsSolutions-L1`) on `scope` and
    everything under it."""
    if len(reason.strip()) < MIN_REASON:
        raise ValueError(f"acknowledgement of {finding} needs a specific reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PACK}::{finding}", reason=reason))
