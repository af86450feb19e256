"""Restore from a copydata repository: the points, and their volume images.

- `list_points` / `choose_point`: the points of an application, and the one to recover a given instant from.
- `restore_point` writes a recovery point's volume images to array volumes (a *delta restore* through the
  proxy host: only blocks that differ from what the volume holds are written) or to local image files.
- A running database at a point in time is copydata.replication.recovery (`recover_from_repo`).

Conventions of the repository (shared with copydata.replication.replicate): application = SLA application,
point = the catalog snapshot's pgroup_snapshot, manifest engine metadata = {"engine", "consistent_at",
"snapshot": the catalog snapshot's engine_meta, "roles": {role: volume}}, logs at logs/<application>/<file>
named like the archive's files. Guide: docs/restore-from-object-storage.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from copydata import sysutil
from copydata.ops.clones import parse_point
from copydata.repo.errors import RepositoryError
from copydata.repo.images import restore_image
from copydata.repo.manifest import Manifest, VolumeEntry

if TYPE_CHECKING:
    from copydata.array.types import ArrayClient
    from copydata.connector.base import HostConnector
    from copydata.repo.repository import Repository

log = logging.getLogger(__name__)

LOCK_WAIT = 60.0   # seconds to wait for a GC (exclusive lock) to finish before a restore gives up


class LogMissing(RepositoryError):
    """A log the recovery needs is not in the repository. `name` is the first missing file."""

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name


class RecoveryError(RepositoryError):
    """A point cannot be recovered as asked (no point before the target, unsupported engine, ...)."""



# -- points ------------------------------------------------------------------------------------------
def parse_time(value: str | dt.datetime | None, what: str = "point_in_time") -> dt.datetime | None:
    """copydata.ops.clones.parse_point ('latest' / '' / None -> None, ISO 8601 with a zone -> aware UTC),
    but a naive datetime is refused rather than taken as local time. Errors are ValueErrors naming `what`."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        raise ValueError(f"{what} {value} has no time zone")
    return parse_point(value, what)


def volumes_by_role(manifest: Manifest) -> dict[str, VolumeEntry]:
    """{role: volume entry}: the entries' own role, else the engine metadata's roles map, else the name."""
    out: dict[str, VolumeEntry] = {v.role: v for v in manifest.volumes if v.role}
    names = {v.name: v for v in manifest.volumes}
    for role, volume in (manifest.engine.get("roles") or {}).items():
        if role not in out and volume in names:
            out[role] = names[volume]
    for v in manifest.volumes:
        if not v.role and v.name not in out:
            out[v.name] = v
    return out


@dataclass(frozen=True)
class PointInfo:
    application: str
    point: str
    consistent_at: dt.datetime | None
    created: str
    engine: str | None
    volumes: dict[str, VolumeEntry] = field(repr=False)
    manifest: Manifest = field(repr=False)

    @property
    def size(self) -> int:
        return sum(v.size for v in self.volumes.values())

    def as_dict(self) -> dict[str, Any]:
        return {"application": self.application, "point": self.point,
                "consistent_at": self.consistent_at.isoformat() if self.consistent_at else None,
                "created": self.created, "engine": self.engine,
                "volumes": {r: {"name": v.name, "size": v.size, "block_size": v.block_size,
                                "stored_blocks": sum(1 for c in v.chunks if c), "sha256": v.sha256}
                            for r, v in self.volumes.items()}}


def point_info(manifest: Manifest) -> PointInfo:
    at = manifest.engine.get("consistent_at")
    when = parse_time(at, f"consistent_at of {manifest.application}/{manifest.point}") if at else None
    return PointInfo(manifest.application, manifest.point, when, manifest.created,
                     manifest.engine.get("engine"), volumes_by_role(manifest), manifest)


def list_points(repo: Repository, application: str) -> list[PointInfo]:
    """The application's points, oldest first (by consistent_at, then name)."""
    infos = [point_info(repo.read_manifest(a, p)) for a, p in repo.points(application)]
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(infos, key=lambda i: (i.consistent_at or floor, i.point))


def choose_point(repo: Repository, application: str, target: dt.datetime | None,
                 point: str | None = None) -> PointInfo:
    """The named point (checked against the target), else the newest point consistent at or before the
    target, else (latest) the newest point."""
    if point:
        info = point_info(repo.read_manifest(application, point))
        if target is not None and info.consistent_at is not None and info.consistent_at > target:
            raise RecoveryError(f"point {application}/{point} is consistent at {info.consistent_at.isoformat()}, "
                                f"after the target {target.isoformat()}")
        return info
    points = list_points(repo, application)
    if not points:
        raise RecoveryError(f"the repository holds no point of {application}")
    if target is None:
        return points[-1]
    before = [p for p in points if p.consistent_at is not None and p.consistent_at <= target]
    if not before:
        known = ", ".join(f"{p.point} ({p.consistent_at.isoformat() if p.consistent_at else '?'})" for p in points)
        raise RecoveryError(f"no point of {application} is consistent at or before {target.isoformat()}; "
                            f"points: {known}")
    return before[-1]


# -- destinations ------------------------------------------------------------------------------------

@dataclass
class LocalFiles:
    """One image file per role in folder: <folder>/<role>.img. An existing file gets a delta restore."""

    folder: Path
    roles: list[str] | None = None

    def path(self, role: str) -> Path:
        return Path(self.folder) / f"{role}.img"

    def describe(self) -> str:
        return f"files in {self.folder}"


@dataclass
class ArrayVolumes:
    """Array volumes by role, reached through this (proxy) host: created with the point's size if missing,
    grown if smaller, connected to `host`, then delta-restored. `disconnect` afterwards, or leave them
    connected (e.g. to mount them)."""

    array: ArrayClient
    connector: HostConnector
    host: str
    volumes: dict[str, str]
    disconnect: bool = False

    @property
    def roles(self) -> list[str]:
        return list(self.volumes)

    def describe(self) -> str:
        return "array volumes " + ", ".join(f"{r}={v}" for r, v in self.volumes.items())


Destination = LocalFiles | ArrayVolumes


@dataclass
class DestinationSpec:
    """A destination as text (CLI, templated operator fields), before an array client is bound:
    `/path`, `file:///path`, `dir:/path` -> local files; `array:PREFIX` -> volumes PREFIX-<role>;
    `array:data=vol1,archive=vol2` -> those volumes."""

    folder: Path | None = None
    prefix: str | None = None
    volumes: dict[str, str] | None = None

    @property
    def is_array(self) -> bool:
        return self.folder is None

    def volume_names(self, roles: list[str]) -> dict[str, str]:
        if self.volumes is not None:
            return dict(self.volumes)
        return {role: f"{self.prefix}-{role}" for role in roles}


def parse_destination(value: str | dict | os.PathLike) -> DestinationSpec:
    if isinstance(value, dict):
        if value.get("dir"):
            return DestinationSpec(folder=Path(value["dir"]))
        if value.get("volumes"):
            return DestinationSpec(volumes={str(k): str(v) for k, v in value["volumes"].items()})
        if value.get("prefix"):
            return DestinationSpec(prefix=str(value["prefix"]))
        raise ValueError(f"destination {value!r}: expected a 'dir', 'volumes' or 'prefix' key")
    text = os.fspath(value).strip()
    for scheme in ("file://", "dir:"):
        if text.startswith(scheme):
            text = text[len(scheme):]
            break
    else:
        if text.startswith("array:"):
            body = text[len("array:"):].strip()
            if not body:
                raise ValueError("destination 'array:' needs a volume prefix or role=volume pairs")
            if "=" in body:
                pairs = [p.split("=", 1) for p in body.split(",") if p.strip()]
                return DestinationSpec(volumes={r.strip(): v.strip() for r, v in pairs})
            return DestinationSpec(prefix=body)
    if not text.startswith("/"):
        raise ValueError(f"destination {value!r}: expected an absolute folder, dir:/path, array:PREFIX "
                         "or array:role=volume,...")
    return DestinationSpec(folder=Path(text))


# -- restoring points --------------------------------------------------------------------------------

@dataclass
class VolumeResult:
    role: str
    volume: str           # the manifest's volume name
    target: str           # file path, or array volume name
    size: int
    written: int = 0      # blocks written from the repository
    unchanged: int = 0    # blocks the target already held
    zeroed: int = 0       # blocks made zero
    bytes_written: int = 0
    seconds: float = 0.0
    created: bool = False
    device: str | None = None

    @property
    def blocks(self) -> int:
        return self.written + self.unchanged + self.zeroed


@dataclass
class RestoreReport:
    application: str
    point: str
    destination: str
    volumes: list[VolumeResult]
    seconds: float = 0.0

    def volume(self, role: str) -> VolumeResult:
        return next(v for v in self.volumes if v.role == role)

    def lines(self) -> list[str]:
        out = [f"{self.application}/{self.point} -> {self.destination} in {self.seconds:.1f} s"]
        for v in self.volumes:
            out.append(f"  {v.role:<8} {v.target}: {v.blocks} blocks, {v.written} written "
                       f"({v.bytes_written / (1 << 20):.1f} MiB), {v.unchanged} unchanged, {v.zeroed} zeroed"
                       f"{' (created)' if v.created else ''}, {v.seconds:.1f} s")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"application": self.application, "point": self.point, "destination": self.destination,
                "seconds": round(self.seconds, 3),
                "volumes": [{"role": v.role, "volume": v.volume, "target": v.target, "size": v.size,
                             "written": v.written, "unchanged": v.unchanged, "zeroed": v.zeroed,
                             "bytes_written": v.bytes_written, "created": v.created,
                             "seconds": round(v.seconds, 3)} for v in self.volumes]}


def restore_point(repo: Repository, application: str, point: str, destination: Destination,
                  roles: list[str] | None = None, lock_wait: float = LOCK_WAIT) -> RestoreReport:
    """Write the point's volume images (all roles, or `roles`, or the destination's) to the destination,
    under a shared lock. Every volume is checked against the manifest's digest (and SHA-256)."""
    with repo.lock("shared", f"restore {application}/{point}", wait=lock_wait):
        return restore_volumes(repo, point_info(repo.read_manifest(application, point)), destination, roles)


def _restore_volume(repo: Repository, role: str, entry: VolumeEntry, destination: Destination) -> VolumeResult:
    t0 = time.monotonic()
    if isinstance(destination, LocalFiles):
        path = destination.path(role)
        path.parent.mkdir(parents=True, exist_ok=True)
        res = VolumeResult(role, entry.name, str(path), entry.size, created=not path.exists())
        r = restore_image(repo, entry, path, only_differing=not res.created)
    else:
        name = destination.volumes[role]
        res = VolumeResult(role, entry.name, name, entry.size)
        with _array_device(destination, name, entry.size, res) as device:
            r = restore_image(repo, entry, device, only_differing=True)
    res.written, res.unchanged, res.zeroed, res.bytes_written = r.written, r.unchanged, r.zeroed, r.bytes_written
    res.seconds = time.monotonic() - t0
    return res


@contextlib.contextmanager
def _array_device(dest: ArrayVolumes, name: str, size: int, res: VolumeResult) -> Iterator[str]:
    """The volume's block device on this host: created or grown as needed, connected, not mounted, with
    the host's cached blocks dropped before and after the restore."""
    vol = dest.array.find_volume(name)
    if vol is None:
        vol = dest.array.create_volume(name, size)
        res.created = True
    elif vol.size < size:
        log.info("growing volume %s from %d to %d bytes", name, vol.size, size)
        vol = dest.array.resize_volume(name, size)
    dest.array.connect(dest.host, name)
    device = dest.connector.device(vol.serial)
    mounted = sysutil.mounts_of(device)
    if mounted:
        raise RepositoryError(f"volume {name} is mounted at {', '.join(mounted)}: unmount it before restoring")
    dest.connector.flush(device)
    res.device = device
    yield device
    dest.connector.flush(device)
    if dest.disconnect:
        dest.connector.release(vol.serial)
        dest.array.disconnect(dest.host, name)
        res.device = None


# -- the logs a point needs --------------------------------------------------------------------------

def restore_volumes(repo: Repository, info: PointInfo, destination: Destination,
                    roles: list[str] | None = None) -> RestoreReport:
    """Restore volumes of a point already read (the caller holds a shared lock)."""
    t0 = time.monotonic()
    wanted = roles or getattr(destination, "roles", None) or list(info.volumes)
    unknown = [r for r in wanted if r not in info.volumes]
    if unknown:
        raise RepositoryError(f"point {info.application}/{info.point} has no volume of role "
                              f"{', '.join(unknown)} (it has {', '.join(info.volumes) or 'none'})")
    results = [_restore_volume(repo, role, info.volumes[role], destination) for role in wanted]
    report = RestoreReport(info.application, info.point, destination.describe(), results, time.monotonic() - t0)
    for line in report.lines():
        log.info("%s", line)
    return report
