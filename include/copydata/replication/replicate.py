"""Replicate an application's recovery points to a repository: incremental forever, resumable, with logs.

For each valid catalog snapshot of the application that the repository does not hold yet, oldest first,
under one shared repository lock:

1. each volume of the snapshot (role -> array volume snapshot) is copied to a temporary volume
   `<app>-repl-<role>`, connected to the proxy host (SLA replication.proxy_host, default the application's
   host) and read there, by this worker: it must run on that host;
2. if the newest replicated point before it still has its array snapshot of that role, only the blocks
   that the array's diff between the two snapshots reports are read (incremental); every other block
   inherits its chunk id from that point's manifest. Otherwise the volume is read in full (the first
   replication, or after the base snapshot was eradicated); blocks already stored are still not uploaded;
3. the archive files of the newest log backup that the repository lacks are uploaded to
   logs/<app>/<file name>, read from a copy of that log backup's archive volume mounted read-only (no
   copy when the repository holds its end segment already: that file is uploaded last);
4. the manifest is written: the commit point. The temporary volumes are always discarded.

A killed run leaves chunks but no manifest: the next run lists chunks/ once and skips every chunk that is
there, so it continues where the last one stopped. Points already in the repository are skipped. A run with
no new point (triggered by a log backup) only does step 3.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from copydata import paths
from copydata.array.types import ArrayError
from copydata.connector import discard_volumes
from copydata.replication import archive
from copydata.replication.target import Target
from copydata.replication.units import format_bytes
from copydata.repo.errors import PointExists, RepositoryError
from copydata.repo.images import backup_image
from copydata.repo.locks import SHARED, Lock
from copydata.repo.logs import read_log_index
from copydata.repo.manifest import Manifest, VolumeEntry
from copydata.repo.repository import Repository
from copydata.repo.transfer import Stats

log = logging.getLogger(__name__)
ProgressFn = Callable[[Stats], None]
LOG_EVERY = 10.0   # seconds between progress lines


class ReplicationError(RuntimeError):
    """Replication cannot proceed (the message says why)."""


class SnapshotGone(ReplicationError):
    """The catalog lists the snapshot, but the array no longer has it (retention destroyed it meanwhile)."""


class UnknownHost(ReplicationError, LookupError):
    """The array has no host object of that name (a LookupError: retrying cannot help)."""


@dataclass
class VolumeReport:
    role: str
    array_snapshot: str
    mode: str                     # "full", "incremental", or "full (base snapshot gone)"
    base: str | None = None       # the base array snapshot of an incremental
    size: int = 0
    changed_bytes: int | None = None   # sum of the diff ranges the array reported (incremental only)
    bytes_read: int = 0
    chunks_put: int = 0
    bytes_put: int = 0            # encoded (compressed, encrypted) bytes uploaded
    plain_put: int = 0            # upper bound of the plaintext uploaded: chunks_put x block size
    chunks_skipped: int = 0       # already in the repository (deduplicated or resumed)
    zero_blocks: int = 0
    inherited_blocks: int = 0
    seconds: float = 0.0


@dataclass
class LogReport:
    log_backup: str
    files: list[str] = field(default_factory=list)     # uploaded now
    conflicts: list[str] = field(default_factory=list)  # names the repository holds with other content
    present: int = 0              # already in the repository
    bytes_read: int = 0
    chunks_put: int = 0
    bytes_put: int = 0
    chunks_skipped: int = 0
    seconds: float = 0.0


@dataclass
class PointReport:
    point: str
    consistent_at: str
    parent: str | None
    volumes: list[VolumeReport] = field(default_factory=list)
    logs: LogReport | None = None
    manifest_sha256: str = ""
    seconds: float = 0.0

    @property
    def bytes_put(self) -> int:
        return sum(v.bytes_put for v in self.volumes) + (self.logs.bytes_put if self.logs else 0)


@dataclass
class RunReport:
    application: str
    target: str
    url: str
    points: list[PointReport] = field(default_factory=list)   # written by this run, oldest first
    skipped: list[str] = field(default_factory=list)          # catalog snapshots already in the repository
    pending: list[str] = field(default_factory=list)          # left for a later run (limit)
    gone: list[str] = field(default_factory=list)             # in the catalog, but no longer on the array
    logs: LogReport | None = None                             # logs shipped without a new point
    latest: str | None = None                                 # the newest point in the repository
    stats: dict[str, int] = field(default_factory=dict)       # the run's transfer counters
    seconds: float = 0.0

    @property
    def written(self) -> list[str]:
        return [p.point for p in self.points]

    @property
    def bytes_uploaded(self) -> int:
        return self.stats.get("bytes_put", 0)

    def summary(self) -> dict[str, Any]:
        return {"application": self.application, "target": self.target, "url": self.url,
                "written": self.written, "skipped": len(self.skipped), "pending": self.pending, "gone": self.gone,
                "point": self.latest, "bytes_uploaded": self.bytes_uploaded,
                "chunks_uploaded": self.stats.get("chunks_put", 0),
                "chunks_skipped": self.stats.get("chunks_skipped", 0),
                "bytes_read": self.stats.get("bytes_read", 0), "seconds": round(self.seconds, 1)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProgressLog:
    """Transfer progress callback: logs a line at most every LOG_EVERY seconds, then calls `then`."""

    def __init__(self, label: str, then: ProgressFn | None = None, every: float = LOG_EVERY) -> None:
        self.label, self.then, self.every = label, then, every
        self.phase = ""
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, stats: Stats) -> None:
        now = time.monotonic()
        with self._lock:
            due = now - self._last >= self.every
            if due:
                self._last = now
        if due:
            log.info("%s%s: read %s, uploaded %d chunks (%s), %d chunks already stored", self.label,
                     f" {self.phase}" if self.phase else "", format_bytes(stats.bytes_read), stats.chunks_put,
                     format_bytes(stats.bytes_put), stats.chunks_skipped)
        if self.then is not None:
            self.then(stats)


def replicate_application(ctx, target: Target, progress: ProgressFn | None = None) -> list[str]:
    """Replicate every valid catalog snapshot of ctx's application that target lacks (oldest first) and
    the newest log backup's logs. Returns the point names written, oldest first."""
    return replicate(ctx, target, progress).written


def replicate(ctx, target: Target, progress: ProgressFn | None = None, *, limit: int | None = None,
              repo: Repository | None = None, lock_wait: float = 120.0, host: str | None = None) -> RunReport:
    """replicate_application with the details: what each point read and uploaded. limit: write at most
    this many points (the oldest missing ones); repo: an already opened repository of target; host: the
    array host that the temporary copies are connected to (the proxy host; None: the application's host)."""
    app = ctx.app
    host = host or app.host
    started = time.monotonic()
    reporter = ProgressLog(f"replicate {app.name} -> {target.name}", progress)
    if repo is None:
        repo = target.open_repository(create=True, progress=reporter)
    elif repo.transfer.progress is None:
        repo.transfer.progress = reporter
    counters_before = repo.transfer.snapshot()
    report = RunReport(application=app.name, target=target.name, url=repo.store.url)
    snaps = ctx.catalog.snapshots(app.name)   # valid ones, oldest consistent_at first
    with repo.lock(SHARED, purpose=f"replicate {app.name} to {target.name}", wait=lock_wait) as lock:
        done = {p for _, p in repo.points(app.name)}
        todo = [s for s in snaps if s.pgroup_snapshot not in done]
        report.skipped = [s.pgroup_snapshot for s in snaps if s.pgroup_snapshot in done]
        if limit is not None:
            todo, rest = todo[:max(limit, 0)], todo[max(limit, 0):]
            report.pending = [s.pgroup_snapshot for s in rest]
        log.info("%s -> %s (%s): %d point(s) to replicate, %d already there", app.name, target.name,
                 repo.store.url, len(todo), len(report.skipped))
        if todo:
            n = repo.load_chunk_index()
            log.info("%s: the repository holds %d chunks", target.name, n)
        times = _consistent_times(ctx)
        shipped: set[int] = set()
        for snap in todo:
            try:
                point = _replicate_point(ctx, repo, target, snap, lock, done, times, shipped, reporter, host)
            except SnapshotGone as e:
                log.warning("%s: skipping %s: %s", app.name, snap.pgroup_snapshot, e)
                report.gone.append(snap.pgroup_snapshot)
                continue
            report.points.append(point)
            done.add(snap.pgroup_snapshot)
        if not report.points and not report.pending:   # no point shipped them (none new, or all gone)
            report.logs = _ship_logs(ctx, repo, lock, shipped, reporter, host)
    report.latest = _newest(repo, app.name, done, times)
    stats = asdict(repo.transfer.snapshot())
    report.stats = {k: v - getattr(counters_before, k) for k, v in stats.items()}
    report.seconds = time.monotonic() - started
    log.info("%s -> %s: done in %.1f s: %d point(s) written (%s), %s uploaded in %d chunks, %d chunks were "
             "already stored", app.name, target.name, report.seconds, len(report.points),
             ", ".join(report.written) or "none", format_bytes(report.bytes_uploaded),
             report.stats.get("chunks_put", 0), report.stats.get("chunks_skipped", 0))
    return report


# -- one point ---------------------------------------------------------------------------------------

def temp_volume(app: str, role: str) -> str:
    return f"{app}-repl-{role}"


def connect_copy(ctx, host: str, name: str) -> None:
    """Connect a temporary copy to the host that reads it; an unknown host is named by its SLA field."""
    try:
        ctx.array.connect(host, name)
    except ArrayError as e:
        if not e.not_found or ctx.array.find_volume(name) is None:
            raise
        if host == ctx.app.host:
            raise UnknownHost(f"the host {host!r} of application {ctx.app.name} is not a host on the array") from e
        raise UnknownHost(f"replication.proxy_host {host!r} is not a host on the array") from e


def discard_copies(ctx, host: str, names: list[str]) -> None:
    """discard_volumes(host), after disconnecting the copies from any other host: a killed run may have
    connected them to the previous proxy host, and the array eradicates no connected volume."""
    for name in names:
        vol = ctx.array.find_volume(name)
        if vol is None:
            continue
        others = [c.host for c in ctx.array.connections(name) if c.host.lower() != host.lower()]
        if others:
            ctx.connector.release(vol.serial)
        for other in others:
            ctx.array.disconnect(other, name)
    discard_volumes(ctx.array, ctx.connector, host, names)


def _replicate_point(ctx, repo: Repository, target: Target, snap, lock: Lock, done: set[str],
                     times: dict[str, Any], shipped: set[int], reporter: ProgressLog, host: str) -> PointReport:
    app = ctx.app
    started = time.monotonic()
    base_name, base = _base_point(repo, app.name, snap, done, times)
    point = PointReport(point=snap.pgroup_snapshot, consistent_at=snap.consistent_at.isoformat(),
                        parent=base_name)
    log.info("%s: replicating %s (consistent at %s), base %s", app.name, snap.pgroup_snapshot,
             point.consistent_at, base_name or "none (full)")
    temps = [temp_volume(app.name, role) for role in sorted(snap.volumes)]
    entries: list[VolumeEntry] = []
    try:
        discard_copies(ctx, host, temps)   # left over by a killed run
        for role, member in sorted(snap.volumes.items()):
            previous = _volume_of(base, role)
            entry, vrep = _replicate_volume(ctx, repo, target, role, member, previous, base_name, reporter, host)
            entries.append(entry)
            point.volumes.append(vrep)
            discard_volumes(ctx.array, ctx.connector, host, [temp_volume(app.name, role)])
        point.logs = _ship_logs(ctx, repo, lock, shipped, reporter, host)
        manifest = Manifest(application=app.name, point=snap.pgroup_snapshot, volumes=entries,
                            engine=engine_metadata(ctx, snap), parent=base_name)
        lock.check()
        point.manifest_sha256 = repo.write_manifest(manifest, lock)
    finally:
        discard_volumes(ctx.array, ctx.connector, host, temps)
    point.seconds = time.monotonic() - started
    log.info("%s: committed point %s in %.1f s (%s uploaded)", app.name, snap.pgroup_snapshot, point.seconds,
             format_bytes(point.bytes_put))
    return point


def engine_metadata(ctx, snap) -> dict[str, Any]:
    """The manifest's engine metadata (the convention restore reads)."""
    return {"engine": archive.engine_name(ctx.app.engine), "consistent_at": snap.consistent_at.isoformat(),
            "snapshot": dict(snap.engine_meta or {}), "roles": dict(ctx.app.volumes)}


def _replicate_volume(ctx, repo: Repository, target: Target, role: str, member: str,
                      previous: VolumeEntry | None, base_name: str | None, reporter: ProgressLog,
                      host: str) -> tuple[VolumeEntry, VolumeReport]:
    app = ctx.app
    started = time.monotonic()
    name = temp_volume(app.name, role)
    try:
        vol = ctx.array.copy_volume(member, name, overwrite=True)
    except ArrayError as e:
        if e.not_found:
            raise SnapshotGone(f"volume snapshot {member}: {e.message}") from e
        raise
    connect_copy(ctx, host, name)
    device = ctx.connector.device(vol.serial)
    ctx.connector.flush(device)
    ranges, prev, mode = _changes(ctx.array, member, previous, base_name, target.block_size)
    vrep = VolumeReport(role=role, array_snapshot=member, mode=mode, base=prev.array_snapshot if prev else None,
                        changed_bytes=sum(n for _, n in ranges) if ranges is not None and prev else None)
    reporter.phase = f"{role} ({mode})"
    before = repo.transfer.snapshot()
    entry = backup_image(repo, device, ranges, prev, target.block_size, name=role, role=role,
                         array_snapshot=member)
    after = repo.transfer.snapshot()
    vrep.size = entry.size
    for k in ("bytes_read", "chunks_put", "bytes_put", "chunks_skipped", "zero_blocks", "inherited_blocks"):
        setattr(vrep, k, getattr(after, k) - getattr(before, k))
    vrep.plain_put = vrep.chunks_put * entry.block_size
    vrep.seconds = time.monotonic() - started
    log.info("%s %s: %s, %s of %s read%s, %d chunks uploaded (%s), %d already stored, %d zero blocks", app.name,
             role, mode, format_bytes(vrep.bytes_read), format_bytes(entry.size),
             f" ({format_bytes(vrep.changed_bytes)} changed per the array)" if vrep.changed_bytes is not None else "",
             vrep.chunks_put, format_bytes(vrep.bytes_put), vrep.chunks_skipped, vrep.zero_blocks)
    return entry, vrep


def _changes(array, member: str, previous: VolumeEntry | None, base_name: str | None,
             block_size: int) -> tuple[list[tuple[int, int]] | None, VolumeEntry | None, str]:
    """(ranges, previous, mode): the array's diff against the base point's snapshot while it exists; a full
    reads only the snapshot's mapped blocks (a diff without a base), the rest of a thin volume is zeros."""
    if previous is None or base_name is None:
        mode = "full"
    elif previous.block_size != block_size:
        mode = "full (block size changed)"
    elif not previous.array_snapshot or not _snapshot_exists(array, base_name, previous.array_snapshot):
        mode = "full (base snapshot gone)"
    else:
        try:
            ranges = array.diff(member, base=previous.array_snapshot, block_size=block_size)
            return [(int(o), int(n)) for o, n in ranges], previous, "incremental"
        except ArrayError as e:
            if not e.not_found:
                raise
            mode = "full (base snapshot gone)"
    return _mapped(array, member, block_size), None, mode


def _mapped(array, member: str, block_size: int) -> list[tuple[int, int]] | None:
    """The mapped ranges of a snapshot, or None (read everything) when the array cannot list them."""
    try:
        return [(int(o), int(n)) for o, n in array.diff(member, base=None, block_size=block_size)]
    except ArrayError as e:
        log.warning("%s: the array lists no mapped blocks (%s): reading the whole volume", member, e.message)
        return None


def _snapshot_exists(array, pgroup_snapshot: str, member: str) -> bool:
    try:
        snap = array.find_pgroup_snapshot(pgroup_snapshot)
    except ArrayError as e:
        if e.not_found:
            return False
        raise
    return snap is not None and not snap.destroyed and member in snap.volumes.values()


def _volume_of(manifest: Manifest | None, role: str) -> VolumeEntry | None:
    if manifest is None:
        return None
    for v in manifest.volumes:
        if v.role == role or v.name == role:
            return v
    return None


# -- which point is the base -------------------------------------------------------------------------

def _consistent_times(ctx) -> dict[str, Any]:
    """pgroup snapshot name -> consistent_at for every catalog snapshot of the application, in any state
    (expired and deleted ones may still be points in the repository)."""
    return {s.pgroup_snapshot: s.consistent_at for s in ctx.catalog.snapshots(ctx.app.name, states=None)}


def _point_time(repo: Repository, app: str, point: str, times: dict[str, Any]):
    if point in times:
        return times[point]
    from datetime import datetime
    try:
        at = repo.read_manifest(app, point).engine.get("consistent_at")
        return datetime.fromisoformat(at) if at else None
    except (RepositoryError, ValueError):
        return None


def _base_point(repo: Repository, app: str, snap, done: set[str],
                times: dict[str, Any]) -> tuple[str | None, Manifest | None]:
    """The newest replicated point before snap (by consistent_at), else the newest one at all."""
    dated = [(t, p) for p in done if (t := _point_time(repo, app, p, times)) is not None]
    if not dated:
        return None, None
    before = [tp for tp in dated if tp[0] < snap.consistent_at]
    _, name = max(before or dated)
    return name, repo.read_manifest(app, name)


def _newest(repo: Repository, app: str, done: set[str], times: dict[str, Any]) -> str | None:
    dated = [(t, p) for p in done if (t := _point_time(repo, app, p, times)) is not None]
    return max(dated)[1] if dated else None


# -- logs --------------------------------------------------------------------------------------------

def _log_metadata(backup, name: str) -> dict[str, Any]:
    """The log index metadata: the log backup it came from; on that backup's last file also covered_to,
    the instant the logs reach (restore recovers to the newest one for 'latest')."""
    meta: dict[str, Any] = {"log_backup": backup.pgroup_snapshot}
    covered_to = getattr(backup, "covered_to", None)
    if name == getattr(backup, "end_segment", None) and covered_to is not None:
        meta["covered_to"] = covered_to.isoformat()
    return meta


def _upload_order(names: list[str], backup) -> list[str]:
    """The log backup's end segment last: once it is stored with the backup's tag, so is everything before."""
    end = getattr(backup, "end_segment", None)
    return sorted(names, key=lambda n: n == end)


def _already_shipped(repo: Repository, app: str, backup, have: set[str]) -> bool:
    """Whether a previous run shipped every file of this log backup (its end segment, uploaded last, carries
    its tag). Saves the copy, connect and mount of the archive volume on runs with nothing new."""
    end = getattr(backup, "end_segment", None)
    if not end or end not in have:
        return False
    try:
        return read_log_index(repo, app, end).metadata.get("log_backup") == backup.pgroup_snapshot
    except RepositoryError:
        return False


def _ship_logs(ctx, repo: Repository, lock: Lock, shipped: set[int], reporter: ProgressLog,
               host: str) -> LogReport | None:
    """Upload the archive files of the newest log backup that the repository lacks."""
    app = ctx.app
    backups = ctx.catalog.log_backups(app.name)
    if not backups:
        return None
    newest = backups[-1]
    if newest.id in shipped:
        return None
    have = set(repo.logs(app.name))
    if _already_shipped(repo, app.name, newest, have):
        log.info("%s: the logs of %s are in the repository already", app.name, newest.pgroup_snapshot)
        shipped.add(newest.id)
        return None
    source = newest.volumes.get("archive") or next((v for r, v in sorted(newest.volumes.items()) if r != "data"),
                                                   None)
    if source is None:
        raise ReplicationError(f"log backup {newest.pgroup_snapshot} has no archive volume: {newest.volumes}")
    started = time.monotonic()
    rep = LogReport(log_backup=newest.pgroup_snapshot)
    name = temp_volume(app.name, "logs")
    paths.home().mkdir(parents=True, exist_ok=True)
    mount = Path(tempfile.mkdtemp(prefix=f"repl-{app.name}-logs-", dir=paths.home()))
    before = repo.transfer.snapshot()
    try:
        discard_copies(ctx, host, [name])   # left over by a killed run
        vol = ctx.array.copy_volume(source, name, overwrite=True)
        connect_copy(ctx, host, name)
        device = ctx.connector.device(vol.serial)
        ctx.connector.flush(device)
        ctx.connector.mount(device, str(mount), options="ro,noatime")
        folder = mount / archive.archive_subdir(app.engine)
        names = archive.log_files(app.engine, folder)
        rep.present = sum(1 for n in names if n in have)
        reporter.phase = "logs"
        for n in _upload_order(names, newest):
            if n in have:
                continue
            try:
                repo.put_log(app.name, n, folder / n, metadata=_log_metadata(newest, n), lock=lock)
                rep.files.append(n)
            except PointExists:
                log.error("%s: log %s is already in the repository with other content; kept the stored one",
                          app.name, n)
                rep.conflicts.append(n)
    finally:
        ctx.connector.unmount(str(mount))
        discard_volumes(ctx.array, ctx.connector, host, [name])
        with contextlib.suppress(OSError):
            mount.rmdir()   # empty once unmounted; never rmtree: it could still be a mount
    shipped.add(newest.id)
    after = repo.transfer.snapshot()
    for k in ("bytes_read", "chunks_put", "bytes_put", "chunks_skipped"):
        setattr(rep, k, getattr(after, k) - getattr(before, k))
    rep.seconds = time.monotonic() - started
    log.info("%s logs from %s: %d uploaded (%s), %d already there%s", app.name, newest.pgroup_snapshot,
             len(rep.files), format_bytes(rep.bytes_put), rep.present,
             f", {len(rep.conflicts)} conflicting" if rep.conflicts else "")
    return rep
