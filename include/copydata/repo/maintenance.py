"""Garbage collection and verification of a repository (docs/repository-format.md, "GC", "Verify")."""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from copydata.repo import layout
from copydata.repo.chunks import log_context
from copydata.repo.errors import ChunkCorrupt, RepositoryError
from copydata.repo.locks import EXCLUSIVE, SHARED
from copydata.repo.manifest import LogIndex
from copydata.repo.store import NotFound, ObjectInfo

if TYPE_CHECKING:
    from copydata.repo.repository import Repository

log = logging.getLogger(__name__)
DEFAULT_GRACE = 24 * 3600.0


@dataclass
class Marks:
    chunks: set[str] = field(default_factory=set)          # referenced chunk ids
    manifest_hashes: set[tuple[str, str]] = field(default_factory=set)   # (application, sha256) committed
    manifests: int = 0
    logs: int = 0


def mark(repo: Repository) -> Marks:
    """Every chunk referenced by a committed manifest or a log index. Any object that cannot be read or
    decoded raises: sweeping after an incomplete mark would delete live chunks."""
    marks = Marks()
    for app, point in repo.points():
        try:
            raw = repo.store.get(layout.manifest_key(app, point))
        except NotFound:   # forgotten meanwhile: its chunks are unreferenced now
            continue
        marks.chunks |= repo.decode_manifest(raw, app, point).chunk_ids()
        marks.manifest_hashes.add((app, hashlib.sha256(raw).hexdigest()))
        marks.manifests += 1
    for obj in repo.store.list(layout.LOGS):
        parsed = layout.parse_log_key(obj.key)
        if parsed is None:
            continue
        index = LogIndex.from_json(repo.codec.decode(repo.store.get(obj.key), log_context(*parsed)))
        marks.chunks |= {c for c in index.chunks if c}
        marks.logs += 1
    return marks


@dataclass
class GcReport:
    manifests: int = 0
    logs: int = 0
    referenced: int = 0
    deleted_chunks: int = 0
    deleted_bytes: int = 0
    kept_young: int = 0           # unreferenced, but younger than the grace period
    deleted_copies: int = 0       # by-hash manifest copies of no committed point
    dry_run: bool = False


def gc(repo: Repository, grace: float = DEFAULT_GRACE, dry_run: bool = False, lock_wait: float = 0.0) -> GcReport:
    """Delete unreferenced chunks (and orphaned manifest copies) older than grace seconds, by the store's
    clock, under an exclusive lock."""
    with repo.lock(EXCLUSIVE, purpose="gc", wait=lock_wait) as lock:
        cutoff = lock.store_time - grace
        marks = mark(repo)
        report = GcReport(manifests=marks.manifests, logs=marks.logs, referenced=len(marks.chunks),
                          dry_run=dry_run)
        doomed: list[ObjectInfo] = []
        for obj in repo.store.list(layout.CHUNKS):
            cid = layout.chunk_id_of(obj.key)
            if cid is None or cid in marks.chunks:
                continue
            if obj.mtime >= cutoff:
                report.kept_young += 1
            else:
                doomed.append(obj)
        copies = [o for o in repo.store.list(layout.MANIFESTS) if _orphan_copy(o, marks, cutoff)]
        lock.check()
        if not dry_run:
            list(repo.transfer.map(lambda o: repo.store.delete(o.key), doomed + copies))
        report.deleted_chunks = len(doomed)
        report.deleted_bytes = sum(o.size for o in doomed)
        report.deleted_copies = len(copies)
    log.info("gc %s: %s", repo.store.url, report)
    return report


def _orphan_copy(obj: ObjectInfo, marks: Marks, cutoff: float) -> bool:
    parsed = layout.parse_manifest_copy_key(obj.key)
    return parsed is not None and parsed not in marks.manifest_hashes and obj.mtime < cutoff


@dataclass
class VerifyReport:
    manifests: int = 0
    logs: int = 0
    chunks_stored: int = 0
    chunks_checked: int = 0
    bytes_checked: int = 0
    unreferenced: int = 0
    missing: list[str] = field(default_factory=list)      # referenced chunk ids that are not stored
    corrupt: list[str] = field(default_factory=list)      # chunk ids that fail decoding or re-hashing
    errors: list[str] = field(default_factory=list)       # manifests, copies or log indexes that fail

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.errors)


def verify(repo: Repository, sample: float | int | None = None, seed: int | None = None,
           lock_wait: float = 0.0) -> VerifyReport:
    """Check every manifest, its by-hash copy and every log index; check that every referenced chunk is
    stored; read back, decrypt, decompress and re-hash all stored chunks (sample None), a fraction of them
    (0 < sample < 1) or a number of them (sample >= 1), picked at random."""
    report = VerifyReport()
    with repo.lock(SHARED, purpose="verify", wait=lock_wait):
        referenced = _verify_metadata(repo, report)
        stored = {cid: o.size for o in repo.store.list(layout.CHUNKS) if (cid := layout.chunk_id_of(o.key))}
        report.chunks_stored = len(stored)
        report.missing = sorted(referenced - stored.keys())
        report.unreferenced = len(stored.keys() - referenced)
        picked = _pick(sorted(stored), sample, seed)
        for cid, ok in repo.transfer.map(lambda c: (c, _chunk_ok(repo, c)), picked):
            report.chunks_checked += 1
            report.bytes_checked += stored[cid]
            if not ok:
                report.corrupt.append(cid)
    log.info("verify %s: %s", repo.store.url, report)
    return report


def _pick(ids: list[str], sample: float | int | None, seed: int | None) -> list[str]:
    if sample is None:
        return ids
    count = round(len(ids) * sample) if isinstance(sample, float) and sample < 1 else int(sample)
    return random.Random(seed).sample(ids, min(max(count, 0), len(ids)))


def _chunk_ok(repo: Repository, cid: str) -> bool:
    try:
        repo.get_chunk(cid)
        return True
    except (ChunkCorrupt, NotFound) as e:
        log.error("chunk %s: %s", cid, e)
        return False


def _verify_metadata(repo: Repository, report: VerifyReport) -> set[str]:
    referenced: set[str] = set()
    for app, point in repo.points():
        try:
            raw = repo.store.get(layout.manifest_key(app, point))
        except NotFound:   # forgotten meanwhile
            continue
        report.manifests += 1
        try:
            referenced |= repo.decode_manifest(raw, app, point).chunk_ids()
        except RepositoryError as e:
            report.errors.append(f"manifest {app}/{point}: {e}")
        copy_key = layout.manifest_copy_key(app, hashlib.sha256(raw).hexdigest())
        try:
            if repo.store.get(copy_key) != raw:
                report.errors.append(f"manifest {app}/{point}: by-hash copy differs")
        except NotFound:
            report.errors.append(f"manifest {app}/{point}: by-hash copy {copy_key} missing")
    for obj in repo.store.list(layout.LOGS):
        if (parsed := layout.parse_log_key(obj.key)) is None:
            continue
        try:
            index = LogIndex.from_json(repo.codec.decode(repo.store.get(obj.key), log_context(*parsed)))
            referenced |= {c for c in index.chunks if c}
        except (RepositoryError, NotFound) as e:
            report.errors.append(f"log {parsed[0]}/{parsed[1]}: {e}")
        report.logs += 1
    return referenced

