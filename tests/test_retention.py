"""Tiered retention planning: what is kept, why, and what may go."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from copydata.ops.retention import plan

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Snap:
    id: int
    consistent_at: dt.datetime


@dataclass(frozen=True)
class Log:
    id: int
    covered_to: dt.datetime


@dataclass(frozen=True)
class Policy:
    point_in_time: dt.timedelta = dt.timedelta(days=1)
    daily: int = 3
    weekly: int = 2
    monthly: int = 2


def hourly_snapshots(days: int) -> list[Snap]:
    return [Snap(i, NOW - dt.timedelta(hours=i)) for i in range(days * 24)]


def test_window_base_tiers_and_clones_are_kept():
    snaps = hourly_snapshots(40)
    p = plan(snaps, [], Policy(), NOW, pinned={500}, pinned_logs=set())
    start = NOW - dt.timedelta(days=1)
    window = {s.id for s in snaps if s.consistent_at >= start}
    assert window <= set(p.keep)
    base = max((s for s in snaps if s.consistent_at < start), key=lambda s: s.consistent_at)
    assert "base of the window" in p.keep[base.id]
    assert "clone depends on it" in p.keep[500]
    daily = [sid for sid, why in p.keep.items() if "daily" in why]
    assert len(daily) == 3
    assert {s.id for s in p.expire}.isdisjoint(p.keep)
    assert len(p.expire) + len(p.keep) == len(snaps)
    assert all(s.consistent_at < start for s in p.expire)


def test_monthly_and_weekly_pick_the_newest_of_each_period():
    snaps = [Snap(i, NOW - dt.timedelta(days=i)) for i in range(0, 120, 5)]
    p = plan(snaps, [], Policy(point_in_time=dt.timedelta(hours=1), daily=0, weekly=2, monthly=2), NOW,
             set(), set())
    monthly = sorted(s.consistent_at for s in snaps if "monthly" in p.keep.get(s.id, []))
    assert [(t.year, t.month) for t in monthly] == [(2026, 10), (2026, 11)]
    assert monthly[0] == max(s.consistent_at for s in snaps if s.consistent_at.month == 10)


def test_logs_needed_by_window_and_kept_snapshots_stay():
    snaps = [Snap(1, NOW - dt.timedelta(days=10)), Snap(2, NOW - dt.timedelta(hours=30)),
             Snap(3, NOW - dt.timedelta(hours=2))]
    logs = [Log(10, NOW - dt.timedelta(days=10) + dt.timedelta(minutes=1)),  # completes snapshot 1
            Log(11, NOW - dt.timedelta(days=9)),                               # needed by nothing
            Log(12, NOW - dt.timedelta(hours=29)),                             # window base onward
            Log(13, NOW - dt.timedelta(hours=1))]
    p = plan(snaps, logs, Policy(daily=0, weekly=2, monthly=0), NOW, set(), set())
    assert set(p.keep) == {1, 2, 3}
    assert p.keep_logs == {10, 12, 13}
    assert [lb.id for lb in p.expire_logs] == [11]
