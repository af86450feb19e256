"""Errors raised by the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ranges import Range


class CatalogError(Exception):
    """Base class of the catalog's errors."""


class NotFound(CatalogError, LookupError):
    """No application, snapshot, log backup or clone by that name or id."""


class Conflict(CatalogError, ValueError):
    """The row exists already with different contents (e.g. a live clone of that name)."""


class OutOfRange(CatalogError, ValueError):
    """No recovery point fits the requested target; `ranges` lists what is recoverable."""

    def __init__(self, application: str, target: datetime | None, ranges: Sequence[Range]) -> None:
        self.application = application
        self.target = target
        self.ranges = list(ranges)
        from .ranges import iso, whole_seconds

        wanted = "any point" if target is None else target.isoformat()
        held = ", ".join(f"{iso(r.start)} .. {iso(r.end)}" for r in whole_seconds(self.ranges)) or "none yet"
        super().__init__(f"{application}: cannot recover to {wanted}; recoverable (UTC, whole seconds): {held}")
