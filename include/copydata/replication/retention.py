"""Retention of a replication target: keep the newest keep_last points per application and the logs they
need; forget the rest; then garbage-collect unreferenced chunks, and verify a sample.

Safe while a replication runs: forgetting only deletes manifests and log indexes (a running replication has
already read its base manifest under its shared lock, and its new manifest references the chunks again);
GC takes the exclusive lock, so it waits for (or skips, after lock_wait) a running replication, and its
grace period protects chunks that writers without a lock are uploading (docs/repository-format.md §17).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from copydata.replication import archive
from copydata.repo.errors import LockConflict
from copydata.repo.maintenance import DEFAULT_GRACE, GcReport, VerifyReport
from copydata.repo.manifest import Manifest
from copydata.repo.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class RetentionReport:
    application: str
    kept: list[str] = field(default_factory=list)          # points, oldest first
    forgotten: list[str] = field(default_factory=list)
    log_start: str | None = None                           # first log the oldest kept point needs
    logs_kept: int = 0
    logs_forgotten: list[str] = field(default_factory=list)
    dry_run: bool = False


@dataclass
class MaintenanceReport:
    target: str
    url: str
    retention: list[RetentionReport] = field(default_factory=list)
    gc: GcReport | None = None
    gc_skipped: str | None = None       # why GC did not run (a replication held the lock)
    verify: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return self.verify is None or self.verify.ok

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "url": self.url,
                               "retention": [asdict(r) for r in self.retention]}
        out["gc"] = asdict(self.gc) if self.gc else None
        out["gc_skipped"] = self.gc_skipped
        if self.verify is not None:
            v = self.verify
            out["verify"] = {"ok": v.ok, "manifests": v.manifests, "logs": v.logs, "chunks_stored": v.chunks_stored,
                             "chunks_checked": v.chunks_checked, "missing": v.missing[:20], "corrupt": v.corrupt[:20],
                             "errors": v.errors[:20]}
        return out


def _when(m: Manifest) -> tuple[float, str, str]:
    """Sort key of a point: consistent_at, then the manifest's creation time, then the name."""
    try:
        at = datetime.fromisoformat(m.engine["consistent_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        at = float("-inf")
    return at, m.created, m.point


def apply_retention(repo: Repository, application: str, keep_last: int, dry_run: bool = False) -> RetentionReport:
    """Forget all but the newest keep_last points of application, and the logs before the first log the
    oldest kept point needs (all logs are kept when that is unknown, or when no point is kept)."""
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    report = RetentionReport(application=application, dry_run=dry_run)
    manifests = [repo.read_manifest(application, p) for _, p in repo.points(application)]
    manifests.sort(key=_when)
    keep, drop = manifests[-keep_last:], manifests[:-keep_last]
    report.kept = [m.point for m in keep]
    report.forgotten = [m.point for m in drop]
    logs = repo.logs(application)
    if keep:
        oldest = keep[0]
        report.log_start = archive.log_start(oldest.engine)
        engine = oldest.engine.get("engine", "")
        if report.log_start is not None:
            report.logs_forgotten = [n for n in logs if archive.precedes(engine, n, report.log_start)]
    report.logs_kept = len(logs) - len(report.logs_forgotten)
    if not dry_run:
        for m in drop:
            repo.forget(application, m.point)
        for n in report.logs_forgotten:
            repo.forget_log(application, n)
    log.info("retention %s on %s: kept %d point(s), forgot %s; logs from %s on: %d kept, %d forgotten", application,
             repo.store.url, len(keep), report.forgotten or "none", report.log_start or "(all: start unknown)",
             report.logs_kept, len(report.logs_forgotten))
    return report


def applications(repo: Repository) -> list[str]:
    return sorted({a for a, _ in repo.points()})


def maintain(repo: Repository, target_name: str, keep_last: int, apps: list[str] | None = None,
             grace: float = DEFAULT_GRACE, verify_sample: float | int | None = 0.05, lock_wait: float = 300.0,
             dry_run: bool = False) -> MaintenanceReport:
    """Retention for each application (default: every application with points in the repository), GC
    (skipped, not failed, when a replication still holds its lock after lock_wait), then verify a sample
    (None: every chunk; 0: no verify)."""
    report = MaintenanceReport(target=target_name, url=repo.store.url)
    for app in apps if apps is not None else applications(repo):
        report.retention.append(apply_retention(repo, app, keep_last, dry_run))
    try:
        report.gc = repo.gc(grace=grace, dry_run=dry_run, lock_wait=lock_wait)
    except LockConflict as e:
        report.gc_skipped = str(e)
        log.warning("gc of %s skipped: %s", repo.store.url, e)
    if verify_sample != 0:
        try:
            report.verify = repo.verify(sample=verify_sample, lock_wait=lock_wait)
        except LockConflict as e:   # only an exclusive lock (another GC) blocks verify
            log.warning("verify of %s skipped: %s", repo.store.url, e)
    return report
