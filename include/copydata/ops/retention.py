"""Tiered retention: a point-in-time window, then daily, weekly and monthly snapshots.

Never expired: anything inside the window, the newest snapshot before the window (the
window's base), the log backups those need, and anything a clone depends on.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from .context import AppContext

log = logging.getLogger(__name__)


@dataclass
class Plan:
    keep: dict[int, list[str]] = field(default_factory=dict)  # snapshot id -> reasons
    expire: list = field(default_factory=list)  # snapshot rows
    keep_logs: set[int] = field(default_factory=set)
    expire_logs: list = field(default_factory=list)


def _newest_per(snaps: list, key, count: int) -> dict[int, str]:
    """The newest snapshot in each of the `count` most recent periods that hold one."""
    chosen: dict = {}
    for s in sorted(snaps, key=lambda s: s.consistent_at, reverse=True):
        k = key(s.consistent_at)
        if k not in chosen and len(chosen) < count:
            chosen[k] = s.id
    return {sid: str(k) for k, sid in chosen.items()}


def plan(snaps: list, logs: list, retention, now: dt.datetime, pinned: set[int], pinned_logs: set[int]) -> Plan:
    p = Plan()
    start = now - retention.point_in_time
    ordered = sorted(snaps, key=lambda s: s.consistent_at)
    base = [s for s in ordered if s.consistent_at < start][-1:]
    for s in ordered:
        reasons = []
        if s.consistent_at >= start:
            reasons.append("point-in-time window")
        if s in base:
            reasons.append("base of the window")
        if s.id in pinned:
            reasons.append("clone depends on it")
        if reasons:
            p.keep[s.id] = reasons
    for tier, key, count in (("daily", lambda t: t.date(), retention.daily),
                             ("weekly", lambda t: t.isocalendar()[:2], retention.weekly),
                             ("monthly", lambda t: (t.year, t.month), retention.monthly)):
        for sid in _newest_per(ordered, key, count):
            p.keep.setdefault(sid, []).append(tier)
    p.expire = [s for s in ordered if s.id not in p.keep]
    window_from = base[0].consistent_at if base else start
    for lb in sorted(logs, key=lambda lb: lb.covered_to):
        if lb.covered_to >= window_from or lb.id in pinned_logs:
            p.keep_logs.add(lb.id)
    for s in ordered:  # each kept snapshot needs the first log backup after it (backup-mode WAL)
        if s.id in p.keep:
            first = next((lb for lb in sorted(logs, key=lambda lb: lb.covered_to)
                          if lb.covered_to >= s.consistent_at), None)
            if first is not None:
                p.keep_logs.add(first.id)
    p.expire_logs = [lb for lb in logs if lb.id not in p.keep_logs]
    return p


def expire_clones(ctx: AppContext, now: dt.datetime | None = None) -> list[str]:
    """Delete the clones whose TTL (clone_policy.default_ttl from their creation) has run out."""
    from .clones import delete_clone

    now = now or dt.datetime.now(dt.UTC)
    gone = []
    for c in ctx.catalog.clones(ctx.name):
        if c.expires_at is not None and c.expires_at <= now:
            log.info("%s: clone %s expired at %s; deleting it", ctx.name, c.name, c.expires_at.isoformat())
            delete_clone(ctx, c.name, actor="retention")
            gone.append(c.name)
    return gone


def apply_retention(ctx: AppContext, now: dt.datetime | None = None, dry_run: bool = False) -> Plan:
    now = now or dt.datetime.now(dt.UTC)
    cat = ctx.catalog
    snaps, logs = cat.snapshots(ctx.name), cat.log_backups(ctx.name)
    clones = cat.clones(ctx.name)
    pinned = {c.snapshot_id for c in clones}
    pinned_logs = {c.log_backup_id for c in clones if c.log_backup_id}
    p = plan(snaps, logs, ctx.sla.retention, now, pinned, pinned_logs)
    if dry_run:
        return p
    for s in p.expire:
        ctx.array.destroy_pgroup_snapshot(s.pgroup_snapshot)
        cat.set_snapshot_state(s.id, "expired")
        cat.audit(ctx.actor, "expire_snapshot", ctx.name, s.pgroup_snapshot, {})
    for lb in p.expire_logs:
        ctx.array.destroy_pgroup_snapshot(lb.pgroup_snapshot)
        cat.set_log_backup_state(lb.id, "expired")
        cat.audit(ctx.actor, "expire_log_backup", ctx.name, lb.pgroup_snapshot, {})
    log.info("%s: kept %d snapshots and %d log backups, expired %d and %d", ctx.name, len(p.keep),
             len(p.keep_logs), len(p.expire), len(p.expire_logs))
    return p
