"""AppContext: everything an operation on one application needs."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .. import paths
from ..array import ArrayClient
from ..connector import HostConnector
from ..engines.base import Engine

T = TypeVar("T")
SUFFIX_RE = re.compile(r"[^A-Za-z0-9-]+")


class FreezeTimeout(TimeoutError):
    """The bounded call ran over. `pending` is its future: it may still complete after the thaw."""

    def __init__(self, message: str, pending: concurrent.futures.Future | None = None):
        super().__init__(message)
        self.pending = pending


@dataclass
class AppContext:
    sla: Any  # copydata.sla.model.Sla
    app: Any  # copydata.sla.model.Application
    array: ArrayClient
    connector: HostConnector
    engine: Engine
    catalog: Any  # copydata.catalog.Catalog
    actor: str = "copydata"

    @property
    def name(self) -> str:
        return self.app.name

    def role_of(self, volume: str) -> str:
        for role, vol in self.app.volumes.items():
            if vol.lower() == volume.lower():
                return role
        return volume

    def roles(self, member_snapshots: dict[str, str]) -> dict[str, str]:
        """{volume: snapshot} from the array -> {role: snapshot}."""
        return {self.role_of(vol): snap for vol, snap in member_snapshots.items()}

    def log_roles(self) -> list[str]:
        return [r for r in self.app.volumes if r != "data"]


def clear_unrecorded(ctx: AppContext, pgsnap: str, recorded: list) -> object | None:
    """Before taking `pgsnap`: the catalog row if a previous try recorded it; else remove an array snapshot
    of that name that a failed try left behind (its engine metadata was lost, so it cannot be trusted)."""
    for row in recorded:
        if row.pgroup_snapshot == pgsnap:
            return row
    if ctx.array.find_pgroup_snapshot(pgsnap) is not None:
        ctx.array.destroy_pgroup_snapshot(pgsnap, eradicate=True)
    return None


def clone_home(name: str) -> Path:
    return paths.home() / "clones" / name


def suffix_from(run_id: str) -> str:
    """An array snapshot suffix derived from an Airflow run id: the same run retries onto the same name."""
    cleaned = SUFFIX_RE.sub("-", run_id).strip("-")
    return ("cd-" + cleaned)[:63].rstrip("-")


def bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run fn with a deadline; raise FreezeTimeout when it runs over (fn may finish later on its own)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise FreezeTimeout(f"{what} took longer than the freeze bound of {timeout:.0f} s", future) from None
    finally:
        pool.shutdown(wait=False)
