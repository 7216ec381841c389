"""The domain's clock: real UTC time in AWS, the virtual clock when the local runtime installs one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def _wall() -> datetime:
    return datetime.now(UTC)


_source: Callable[[], datetime] = _wall


def now() -> datetime:
    """Current time, timezone-aware UTC."""
    return _source()


def use(source: Callable[[], datetime] | None) -> None:
    """Install a time source (the local runtime's virtual clock); None restores the wall clock."""
    global _source
    _source = source or _wall
