"""Local Step Functions runtime: moto on a deterministic virtual clock with in-process Lambda handlers."""

from stepwise.local.clock import VirtualClock
from stepwise.local.patches import install
from stepwise.local.stack import LocalStack

__all__ = ["LocalStack", "VirtualClock", "install"]
