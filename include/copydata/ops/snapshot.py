"""Application-consistent snapshot: quiesce, protection-group snapshot, thaw, catalog."""

from __future__ import annotations

import logging

from .context import AppContext, FreezeTimeout, bounded, clear_unrecorded

log = logging.getLogger(__name__)


def take_snapshot(ctx: AppContext, suffix: str):
    """Returns the catalog row. A retry with the same suffix returns what the first try recorded, or,
    if that try failed half-way, replaces its unrecorded array snapshot with a new consistent one."""
    app = ctx.app
    done = clear_unrecorded(ctx, f"{app.protection_group}.{suffix}",
                            ctx.catalog.snapshots(app.name, states=("valid", "expired", "failed")))
    if done is not None:
        return done
    timeout = ctx.sla.snapshot.freeze_timeout.total_seconds()
    try:
        with ctx.engine.quiesce(f"copydata {app.name} {suffix}", timeout) as freeze:
            snap = bounded(lambda: ctx.array.snapshot_pgroup(app.protection_group, suffix), timeout,
                           f"protection-group snapshot of {app.protection_group}")
    except FreezeTimeout as late:
        _discard_late_snapshot(ctx, late)
        raise
    meta = {**freeze.meta, "freeze_window_s": freeze.window_seconds}
    log.info("%s: snapshot %s, freeze window %.3f s, consistent at %s", app.name, snap.name,
             freeze.window_seconds or 0, freeze.consistent_at)
    row = ctx.catalog.add_snapshot(app.name, snap.name, ctx.roles(snap.volumes), ctx.array.array_name(),
                                   freeze.started_at, freeze.consistent_at, meta)
    ctx.catalog.audit(ctx.actor, "snapshot", app.name, snap.name,
                      {"consistent_at": freeze.consistent_at.isoformat(), "freeze_window_s": freeze.window_seconds})
    return row


def _discard_late_snapshot(ctx: AppContext, late: FreezeTimeout, wait: float = 300) -> None:
    """The database is thawed already; a snapshot the array completes now is not consistent: remove it."""
    try:
        snap = late.pending.result(timeout=wait)
    except Exception as exc:  # the late call failed on its own: nothing was made
        log.info("%s: the late snapshot call ended with %s", ctx.name, exc)
        return
    log.warning("%s: removing %s, completed after the freeze bound", ctx.name, snap.name)
    ctx.array.destroy_pgroup_snapshot(snap.name, eradicate=True)
