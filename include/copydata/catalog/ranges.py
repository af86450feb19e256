"""Recoverable ranges: pure functions over snapshots and log backups (no database access).

Rule: a valid snapshot S can be recovered to any instant of [S.consistent_at, end(S)], where end(S) is the
latest covered_to among the valid log backups of S's chain that reach at least S.consistent_at (S alone,
without logs, gives the single instant S.consistent_at). The recoverable ranges of an application are the
union of these intervals, overlapping or touching ones merged; the holes between them are the gaps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .records import LogBackup, Snapshot


@dataclass(frozen=True, order=True)
class Range:
    """A closed interval of recoverable instants (timezone-aware UTC)."""

    start: datetime
    end: datetime

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, datetime) and self.start <= instant <= self.end


def usable_logs(snapshot: Snapshot, logs: Iterable[LogBackup]) -> list[LogBackup]:
    """Valid log backups of the snapshot's chain that roll it forward, oldest coverage first."""
    fit = [lb for lb in logs if lb.state == "valid" and lb.chain == snapshot.chain
           and lb.covered_to >= snapshot.consistent_at]
    return sorted(fit, key=lambda lb: (lb.covered_to, lb.id))


def snapshot_range(snapshot: Snapshot, logs: Iterable[LogBackup]) -> Range:
    usable = usable_logs(snapshot, logs)
    return Range(snapshot.consistent_at, usable[-1].covered_to if usable else snapshot.consistent_at)


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sort and merge overlapping or touching ranges."""
    merged: list[Range] = []
    for r in sorted(ranges):
        if merged and r.start <= merged[-1].end:
            merged[-1] = Range(merged[-1].start, max(merged[-1].end, r.end))
        else:
            merged.append(r)
    return merged


def recoverable(snapshots: Iterable[Snapshot], logs: Sequence[LogBackup]) -> list[Range]:
    return merge(snapshot_range(s, logs) for s in snapshots if s.state == "valid")


def gaps(ranges: Sequence[Range]) -> list[Range]:
    """The holes between consecutive (merged) ranges, as [end of one, start of the next]."""
    return [Range(a.end, b.start) for a, b in zip(ranges, ranges[1:], strict=False)]


def ceil_second(t: datetime) -> datetime:
    return t.replace(microsecond=0) + timedelta(seconds=1) if t.microsecond else t


def floor_second(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def whole_seconds(ranges: Iterable[Range]) -> list[Range]:
    """Shrink each range to the whole seconds inside it (start rounded up, end down); drop empty ones."""
    shrunk = (Range(ceil_second(r.start), floor_second(r.end)) for r in ranges)
    return [r for r in shrunk if r.start <= r.end]


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def points(application: str, ranges: Sequence[Range], snapshots: int, log_backups: int) -> dict:
    """The JSON-ready summary printed by `copydata points` (whole seconds, ISO 8601 UTC)."""
    seconds = whole_seconds(ranges)
    return {
        "application": application,
        "earliest": iso(seconds[0].start) if seconds else None,
        "latest": iso(seconds[-1].end) if seconds else None,
        "ranges": [[iso(r.start), iso(r.end)] for r in seconds],
        "gaps": [[iso(g.start), iso(g.end)] for g in gaps(seconds)],
        "snapshots": snapshots,
        "log_backups": log_backups,
    }
