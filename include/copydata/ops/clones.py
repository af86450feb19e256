"""Point-in-time clones: create, refresh (same name, port and mounts; newer point), delete."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import sysutil
from ..connector import discard_volumes
from ..engines.base import CloneSpec
from .context import AppContext, clone_home

log = logging.getLogger(__name__)
CLONE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


class CloneError(ValueError):
    pass


@dataclass(frozen=True)
class RecoveryPoint:
    snapshot: object  # catalog snapshot row
    log_backup: object | None  # catalog log-backup row whose archive covers the target
    target: dt.datetime | None


def parse_point(value: str | dt.datetime | None, what: str = "point_in_time") -> dt.datetime | None:
    """'latest' / '' / None -> None; ISO 8601 with a zone ('Z' allowed) -> aware UTC datetime; a datetime
    -> converted to UTC. `what` names the value in the CloneError (a ValueError)."""
    if value is None or isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else None
    text = str(value).strip()
    if text.lower() in ("", "latest"):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CloneError(f"{what} {value!r}: expected ISO 8601 UTC like 2026-11-27T10:15:00Z, "
                         "or 'latest'") from None
    if parsed.tzinfo is None:
        raise CloneError(f"{what} {value!r} has no time zone: add Z (UTC) or an offset")
    return parsed.astimezone(dt.UTC)


def resolve_point(ctx: AppContext, target: dt.datetime | None) -> RecoveryPoint:
    """The newest snapshot at or before the target, and the log backup that reaches it.
    'latest' (None): the newest snapshot that a log backup already completes."""
    if target is None and ctx.app.log_protection_group:
        for snap in reversed(ctx.catalog.snapshots(ctx.name)):
            logs = ctx.catalog.log_backup_for(ctx.name, snap, None)
            if logs is not None:
                return RecoveryPoint(snap, logs, None)
    snap = ctx.catalog.snapshot_for(ctx.name, target)  # raises OutOfRange with the valid ranges
    logs = ctx.catalog.log_backup_for(ctx.name, snap, target)
    if logs is None and ctx.app.log_protection_group:
        raise CloneError(f"no log backup covers {target or 'latest'} after snapshot {snap.pgroup_snapshot}; "
                         f"recoverable: {ctx.catalog.points(ctx.name)}")
    return RecoveryPoint(snap, logs, target)


def effective_target(point: RecoveryPoint) -> dt.datetime | None:
    """'latest' recovers to the newest covered instant of the logs (a commit follows it in the archive)."""
    if point.target is None and point.log_backup is not None:
        return point.log_backup.covered_to
    return point.target


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise CloneError(f"port {port} is in use on this host: choose another") from None


def clone_volume_names(name: str, roles: list[str]) -> dict[str, str]:
    return {role: f"{name}-{role}" for role in roles}


def _materialize(ctx: AppContext, name: str, point: RecoveryPoint, overwrite: bool) -> dict[str, Path]:
    """Copy the snapshot's data volume and the log backup's archive volume; connect and mount them."""
    sources = {"data": point.snapshot.volumes["data"]}
    if point.log_backup is not None:
        sources.update({r: s for r, s in point.log_backup.volumes.items() if r != "data"})
    vols = clone_volume_names(name, list(sources))
    mounts: dict[str, Path] = {}
    for role, source in sources.items():
        vol = ctx.array.copy_volume(source, vols[role], overwrite=overwrite)
        ctx.array.connect(ctx.app.host, vol.name)
        device = ctx.connector.device(vol.serial)
        ctx.connector.flush(device)
        mounts[role] = clone_home(name) / role
        ctx.connector.mount(device, str(mounts[role]))
    return mounts


def _spec(ctx: AppContext, name: str, mounts: dict[str, Path], point: RecoveryPoint, port: int) -> CloneSpec:
    log_mount = next((m for r, m in mounts.items() if r != "data"), None)
    return CloneSpec(name=name, data_mount=mounts["data"], log_mount=log_mount, port=port,
                     target=effective_target(point), snapshot_meta=point.snapshot.engine_meta,
                     run_dir=clone_home(name) / "run")


def _recover(ctx: AppContext, spec: CloneSpec, mask: bool, timeout: float):
    ctx.engine.prepare_clone(spec)
    target = ctx.engine.start(spec, timeout)
    policy = ctx.sla.clone_policy
    if mask and (policy.masking_sql or policy.masking_script):
        ctx.engine.mask(target, policy.masking_sql, policy.masking_script)
    return target


def create_clone(ctx: AppContext, name: str, point_in_time, port: int, mask: bool = True, owner: str = "copydata",
                 timeout: float = 600):
    if not CLONE_NAME_RE.match(name):
        raise CloneError(f"clone_name {name!r}: expected lower-case letters, digits and '-', up to 41 characters")
    existing = ctx.catalog.find_clone(name)
    if existing is not None and existing.state not in ("creating", "failed"):
        raise CloneError(f"clone {name} already exists ({existing.state}, port {existing.port}); "
                         "refresh it or delete it first")
    point = resolve_point(ctx, parse_point(point_in_time))
    if existing is None:
        check_port_free(port)
    else:  # a retry: start over on the same volumes
        _stop_quietly(ctx, name)
        _unmount_all(ctx, name)
    ttl = ctx.sla.clone_policy.default_ttl
    ctx.catalog.upsert_clone(name, ctx.name, snapshot_id=point.snapshot.id,
                             log_backup_id=point.log_backup.id if point.log_backup else None,
                             point_in_time=point.target, owner=owner, host=ctx.app.host, port=port, state="creating",
                             expires_at=dt.datetime.now(dt.UTC) + ttl)
    with _failed_on_error(ctx, name):
        mounts = _materialize(ctx, name, point, overwrite=existing is not None)
        _recover(ctx, _spec(ctx, name, mounts, point, port), mask, timeout)
    row = ctx.catalog.update_clone(name, state="running", volumes=clone_volume_names(name, list(mounts)),
                                   mounts={r: str(m) for r, m in mounts.items()})
    ctx.catalog.audit(owner, "clone", ctx.name, name, {"point_in_time": _iso(point.target), "port": port,
                                                       "snapshot": point.snapshot.pgroup_snapshot})
    return row


def refresh_clone(ctx: AppContext, name: str, point_in_time, mask: bool = True, actor: str = "copydata",
                  timeout: float = 600):
    clone = ctx.catalog.clone(name)
    if clone.state == "deleted":
        raise CloneError(f"clone {name} was deleted; create it again")
    point = resolve_point(ctx, parse_point(point_in_time))
    ctx.catalog.update_clone(name, state="refreshing")
    with _failed_on_error(ctx, name):
        _stop_quietly(ctx, name)
        _unmount_all(ctx, name)
        mounts = _materialize(ctx, name, point, overwrite=True)
        _recover(ctx, _spec(ctx, name, mounts, point, clone.port), mask, timeout)
    row = ctx.catalog.update_clone(name, state="running", snapshot_id=point.snapshot.id,
                                   log_backup_id=point.log_backup.id if point.log_backup else None,
                                   point_in_time=point.target, refreshed_at=dt.datetime.now(dt.UTC))
    ctx.catalog.audit(actor, "clone_refresh", ctx.name, name, {"point_in_time": _iso(point.target)})
    return row


def delete_clone(ctx: AppContext, name: str, actor: str = "copydata") -> None:
    clone = ctx.catalog.find_clone(name)
    _stop_quietly(ctx, name)
    roles = list(clone.volumes) if clone and clone.volumes else ["data", *ctx.log_roles()]
    for role in roles:
        ctx.connector.unmount(str(clone_home(name) / role))
    discard_volumes(ctx.array, ctx.connector, ctx.app.host, list(clone_volume_names(name, roles).values()))
    _remove_home(name)
    if clone is not None:
        ctx.catalog.delete_clone(name)
        ctx.catalog.audit(actor, "clone_delete", ctx.name, name, {})


def _remove_home(name: str) -> None:
    """The clone's folder (empty mount points, its server log), once nothing is mounted below it."""
    home = clone_home(name)
    if home.exists() and not any(sysutil.is_mountpoint(p) for p in home.iterdir() if p.is_dir()):
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _failed_on_error(ctx: AppContext, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        ctx.catalog.update_clone(name, state="failed", details={"error": str(exc)[:2000]})
        raise


def _unmount_all(ctx: AppContext, name: str) -> None:
    home = clone_home(name)
    for role in ("data", *ctx.log_roles()):
        ctx.connector.unmount(str(home / role))


def _stop_quietly(ctx: AppContext, name: str) -> None:
    data = clone_home(name) / "data"
    if data.exists():
        ctx.engine.stop(data, clone_home(name) / "run")


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat() if value else "latest"
