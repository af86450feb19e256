"""Log backup: push the latest commits into the archive, check it is continuous, snapshot it, record it."""

from __future__ import annotations

import logging
from pathlib import Path

from .context import AppContext, clear_unrecorded

log = logging.getLogger(__name__)


def log_backup(ctx: AppContext, suffix: str, timeout: float = 120):
    app, catalog = ctx.app, ctx.catalog
    previous = catalog.log_backups(app.name)
    prev = previous[-1] if previous else None
    done = clear_unrecorded(ctx, f"{app.log_protection_group}.{suffix}", previous)
    if done is not None:
        return done
    pos = ctx.engine.push_logs(timeout)
    since = prev.end_segment if prev else _first_needed_segment(ctx)
    check = ctx.engine.check_archive(Path(app.mounts["archive"]), since)
    if not check.continuous:
        log.warning("%s: log archive has gaps since %s: missing %s", app.name, since, check.missing[:10])
    snap = ctx.array.snapshot_pgroup(app.log_protection_group, suffix)
    covered_from = prev.covered_to if prev and check.continuous else _earliest_snapshot_time(ctx)
    row = catalog.add_log_backup(
        app.name, snap.name, ctx.roles(snap.volumes), covered_from=covered_from, covered_to=pos.covered_to,
        start_position=prev.end_position if prev else None, end_position=pos.end_position,
        start_segment=check.start_segment, end_segment=pos.end_segment, continuous=check.continuous,
        engine_meta={"missing_segments": check.missing[:100], **pos.meta})
    catalog.audit(ctx.actor, "log_backup", app.name, snap.name,
                  {"covered_to": pos.covered_to.isoformat(), "continuous": check.continuous})
    return row


def _first_needed_segment(ctx: AppContext) -> str | None:
    snaps = ctx.catalog.snapshots(ctx.app.name)
    return snaps[0].engine_meta.get("start_segment") if snaps else None


def _earliest_snapshot_time(ctx: AppContext):
    snaps = ctx.catalog.snapshots(ctx.app.name)
    return snaps[-1].consistent_at if snaps else None
