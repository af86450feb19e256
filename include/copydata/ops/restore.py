"""Restore in place: stop the source, overwrite its data volume from a snapshot, replay logs to the target.

The live log archive is never overwritten: it holds the logs the replay needs. Replay reads
them from a copy of the log backup; the restored server archives its new timeline as before.
"""

from __future__ import annotations

from pathlib import Path

from ..connector import discard_volumes
from ..engines.base import CloneSpec
from .clones import CloneError, effective_target, parse_point, resolve_point
from .context import AppContext, clone_home


def restore_in_place(ctx: AppContext, point_in_time, confirm: str, actor: str = "copydata",
                     timeout: float = 900) -> dict:
    if confirm != ctx.name:
        raise CloneError(f"restore in place overwrites {ctx.name}: set confirm to the application name "
                         f"({ctx.name!r}) to proceed")
    point = resolve_point(ctx, parse_point(point_in_time))
    app, work = ctx.app, clone_home(f"restore-{ctx.name}")
    data_mount = Path(app.mounts["data"])
    ctx.catalog.audit(actor, "restore_start", ctx.name, point.snapshot.pgroup_snapshot,
                      {"point_in_time": point.target.isoformat() if point.target else "latest"})
    ctx.engine.stop(data_mount)
    data = ctx.array.get_volume(app.volumes["data"])
    ctx.connector.unmount(str(data_mount))
    ctx.array.copy_volume(point.snapshot.volumes["data"], data.name, overwrite=True)
    device = ctx.connector.device(data.serial)
    ctx.connector.flush(device)
    ctx.connector.mount(device, str(data_mount))
    log_mount = _mount_log_copy(ctx, point, work)
    spec = CloneSpec(name=ctx.name, data_mount=data_mount, log_mount=log_mount, port=ctx.engine.db.port,
                     target=effective_target(point), snapshot_meta=point.snapshot.engine_meta,
                     run_dir=work / "run", in_place=True)
    ctx.engine.prepare_clone(spec)
    ctx.engine.start(spec, timeout)
    _drop_log_copy(ctx, work)
    ctx.catalog.audit(actor, "restore", ctx.name, point.snapshot.pgroup_snapshot,
                      {"point_in_time": point.target.isoformat() if point.target else "latest"})
    return {"application": ctx.name, "snapshot": point.snapshot.pgroup_snapshot,
            "point_in_time": point.target.isoformat() if point.target else "latest"}


def _mount_log_copy(ctx: AppContext, point, work: Path) -> Path | None:
    if point.log_backup is None:
        return None
    source = next(s for r, s in point.log_backup.volumes.items() if r != "data")
    vol = ctx.array.copy_volume(source, f"restore-{ctx.name}-logs", overwrite=True)
    ctx.array.connect(ctx.app.host, vol.name)
    device = ctx.connector.device(vol.serial)
    ctx.connector.flush(device)
    ctx.connector.mount(device, str(work / "logs"))
    return work / "logs"


def _drop_log_copy(ctx: AppContext, work: Path) -> None:
    ctx.connector.unmount(str(work / "logs"))
    discard_volumes(ctx.array, ctx.connector, ctx.app.host, [f"restore-{ctx.name}-logs"])
