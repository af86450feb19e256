"""A v1 repository over any Store: config and keys, chunks, manifests (the commit point), logs, locks.

Format: docs/repository-format.md. Maintenance (gc, verify) is in copydata.repo.maintenance, image
backup and restore in copydata.repo.images; both only use the methods below.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from copydata.repo import crypto, layout, logs, maintenance
from copydata.repo.chunks import Codec, manifest_context
from copydata.repo.errors import PointExists, RepositoryError
from copydata.repo.locks import DEFAULT_TTL, Lock
from copydata.repo.manifest import FORMAT_VERSION, LogIndex, Manifest, utc_now
from copydata.repo.store import AlreadyExists, NotFound, Store
from copydata.repo.transfer import Transfer

FORMAT_NAME = "copydata-repository"
DEFAULT_BLOCK_SIZE = 1 << 20
MIN_BLOCK_SIZE = 4 << 10
MAX_BLOCK_SIZE = 4 << 20   # keeps every chunk below GCS's 8 MiB resumable-upload threshold


def check_block_size(bs: int) -> int:
    if not (MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE) or bs & (bs - 1):
        raise RepositoryError(f"block size {bs} must be a power of two from 4 KiB to 4 MiB")
    return bs


@dataclass(frozen=True)
class RepoConfig:
    id: str
    block_size: int
    compression_level: int
    encrypted: bool
    created: str

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "id": self.id, "created": self.created,
            "block_size": self.block_size,
            "compression": {"algorithm": "zstd", "level": self.compression_level},
            "chunk_id": "HMAC-SHA-256" if self.encrypted else "SHA-256",
            "encryption": {"algorithm": "AES-256-GCM", "key_wrap": "AES-256-GCM"} if self.encrypted else None,
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> RepoConfig:
        try:
            d = json.loads(raw)
            if d.get("format") != FORMAT_NAME:
                raise RepositoryError(f"not a copydata repository (format {d.get('format')!r})")
            if d.get("version") != FORMAT_VERSION:
                raise RepositoryError(f"repository format version {d.get('version')} is not supported")
            return cls(id=d["id"], block_size=check_block_size(int(d["block_size"])),
                       compression_level=int(d["compression"]["level"]),
                       encrypted=d["encryption"] is not None, created=d.get("created", ""))
        except (ValueError, TypeError, KeyError) as e:
            raise RepositoryError(f"malformed repository config: {e}") from None


class Repository:
    """Open with Repository.open(store, key=...) or create with Repository.init(store, ...)."""

    def __init__(self, store: Store, config: RepoConfig, keys: crypto.WorkingKeys | None,
                 transfer: Transfer | None = None, compression_level: int | None = None) -> None:
        self.store = store
        self.config = config
        level = config.compression_level if compression_level is None else compression_level
        self.codec = Codec(level=level, keys=keys)
        self.transfer = transfer or Transfer()
        self._known: set[str] | None = None
        self._known_lock = threading.Lock()

    # -- creating and opening ------------------------------------------------------------------------

    @classmethod
    def init(cls, store: Store, key: bytes | str | None = None, block_size: int = DEFAULT_BLOCK_SIZE,
             compression_level: int = 3, transfer: Transfer | None = None) -> Repository:
        """Create a repository (config is written create-only: an existing one is never replaced)."""
        config = RepoConfig(id=uuid.uuid4().hex, block_size=check_block_size(block_size),
                            compression_level=compression_level, encrypted=key is not None, created=utc_now())
        if store.exists(layout.CONFIG):
            raise RepositoryError(f"{store.url} already holds a repository")
        keys = None
        if key is not None:
            keys = crypto.WorkingKeys(crypto.new_key(), crypto.new_key())
            _write_key_file(store, crypto.parse_key(key), keys, config.id)
        try:
            store.put(layout.CONFIG, config.to_json(), create_only=True)
        except AlreadyExists:
            raise RepositoryError(f"{store.url} already holds a repository") from None
        return cls(store, config, keys, transfer)

    @classmethod
    def open(cls, store: Store, key: bytes | str | None = None, transfer: Transfer | None = None,
             compression_level: int | None = None) -> Repository:
        try:
            config = RepoConfig.from_json(store.get(layout.CONFIG))
        except NotFound:
            raise RepositoryError(f"no repository at {store.url} (no config)") from None
        if config.encrypted and key is None:
            raise RepositoryError(f"repository {store.url} is encrypted: a key is needed")
        if not config.encrypted and key is not None:
            raise RepositoryError(f"repository {store.url} is not encrypted, but a key was given")
        keys = _read_keys(store, crypto.parse_key(key), config.id) if key is not None else None
        return cls(store, config, keys, transfer, compression_level)

    def add_key(self, new_master: bytes | str) -> str:
        """Wrap this repository's working keys with another master key (key rotation); returns its id."""
        if self.codec.keys is None:
            raise RepositoryError("repository is not encrypted")
        return _write_key_file(self.store, crypto.parse_key(new_master), self.codec.keys, self.config.id)

    # -- chunks --------------------------------------------------------------------------------------

    def chunk_id(self, plaintext: bytes) -> str:
        return self.codec.chunk_id(plaintext).hex()

    def zero_id(self, length: int) -> str:
        """The id an all-zero block of this length would have (used by volume digests)."""
        return _zero_id(self.codec, length)

    def load_chunk_index(self) -> int:
        """List chunks/ once; later put_chunk calls skip every id found (cheap resume). Returns the count."""
        ids = {cid for o in self.store.list(layout.CHUNKS) if (cid := layout.chunk_id_of(o.key))}
        with self._known_lock:
            self._known = ids
        return len(ids)

    def has_chunk(self, cid: str) -> bool:
        with self._known_lock:
            if self._known is not None:
                return cid in self._known
        return self.store.exists(layout.chunk_key(cid))

    def _reserve(self, cid: str) -> bool:
        """True if we must upload cid; False if it is known to be stored (or being stored by us)."""
        with self._known_lock:
            if self._known is not None:
                if cid in self._known:
                    return False
                self._known.add(cid)
                return True
        return not self.store.exists(layout.chunk_key(cid))

    def _unreserve(self, cid: str) -> None:
        with self._known_lock:
            if self._known is not None:
                self._known.discard(cid)

    def put_chunk(self, plaintext: bytes) -> str:
        """Store one block (unless it is already there); return its id. Thread-safe."""
        cid_raw = self.codec.chunk_id(plaintext)
        cid = cid_raw.hex()
        if not self._reserve(cid):
            self.transfer.count(notify=True, chunks_skipped=1)
            return cid
        try:
            envelope = self.codec.encode(plaintext, cid_raw)
            self.transfer.throttle_up(len(envelope))
            self.store.put(layout.chunk_key(cid), envelope, create_only=True)
        except AlreadyExists:
            self.transfer.count(notify=True, chunks_skipped=1)
            return cid
        except BaseException:
            self._unreserve(cid)
            raise
        self.transfer.count(notify=True, chunks_put=1, bytes_put=len(envelope))
        return cid

    def get_chunk(self, cid: str) -> bytes:
        """The verified plaintext of a chunk (ChunkCorrupt if it fails decoding or re-hashing)."""
        envelope = self.store.get(layout.chunk_key(cid))
        self.transfer.throttle_down(len(envelope))
        plaintext = self.codec.decode_chunk(bytes.fromhex(cid), envelope)
        self.transfer.count(notify=True, chunks_got=1, bytes_got=len(envelope))
        return plaintext

    # -- manifests: the commit point -----------------------------------------------------------------

    def write_manifest(self, manifest: Manifest, lock: Lock | None = None) -> str:
        """Commit a recovery point: its by-hash copy first, then manifests/<app>/<point>.json, both
        create-only. Call it after every chunk is stored. Returns the SHA-256 of the stored object."""
        plain = manifest.to_json()
        key = layout.manifest_key(manifest.application, manifest.point)
        if self.store.exists(key):
            return self._committed(key, manifest, plain)
        blob = self.codec.encode(plain, manifest_context(manifest.application, manifest.point))
        digest = hashlib.sha256(blob).hexdigest()
        if lock is not None:
            lock.check()
        with contextlib.suppress(AlreadyExists):
            self.store.put(layout.manifest_copy_key(manifest.application, digest), blob, create_only=True)
        try:
            self.store.put(key, blob, create_only=True)
        except AlreadyExists:
            return self._committed(key, manifest, plain)
        return digest

    def _committed(self, key: str, manifest: Manifest, plain: bytes) -> str:
        """An identical manifest is already committed (a retry): its hash; else PointExists."""
        raw = self.store.get(key)
        if self.decode_manifest(raw, manifest.application, manifest.point).to_json() != plain:
            raise PointExists(f"point {manifest.application}/{manifest.point} already exists")
        return hashlib.sha256(raw).hexdigest()

    def read_manifest(self, application: str, point: str) -> Manifest:
        try:
            raw = self.store.get(layout.manifest_key(application, point))
        except NotFound:
            raise RepositoryError(f"no point {application}/{point}") from None
        return self.decode_manifest(raw, application, point)

    def decode_manifest(self, raw: bytes, application: str, point: str) -> Manifest:
        m = Manifest.from_json(self.codec.decode(raw, manifest_context(application, point)))
        if (m.application, m.point) != (application, point):
            raise RepositoryError(f"manifest {application}/{point} names {m.application}/{m.point}")
        return m

    def points(self, application: str | None = None) -> list[tuple[str, str]]:
        """Committed points as (application, point), sorted."""
        prefix = layout.MANIFESTS + (f"{layout.check_name('application', application)}/" if application else "")
        found = (layout.parse_manifest_key(o.key) for o in self.store.list(prefix))
        return sorted(p for p in found if p is not None)

    def forget(self, application: str, point: str) -> None:
        """Remove a point (its manifest, then its by-hash copy). Its chunks go at the next gc."""
        key = layout.manifest_key(application, point)
        try:
            raw = self.store.get(key)
        except NotFound:
            return
        self.store.delete(key)
        self.store.delete(layout.manifest_copy_key(application, hashlib.sha256(raw).hexdigest()))

    # -- locks, logs, maintenance (thin wrappers) ----------------------------------------------------

    def lock(self, kind: str, purpose: str = "", ttl: float = DEFAULT_TTL, wait: float = 0.0,
             refresh: bool = True) -> Lock:
        """An acquired lock ("shared" or "exclusive"); release it or use it in a with statement."""
        return Lock(self.store, kind, purpose, ttl, refresh).acquire(wait)

    def put_log(self, application: str, name: str, source: str | os.PathLike | bytes,
                metadata: dict[str, Any] | None = None, lock: Lock | None = None) -> LogIndex:
        """Store a WAL segment or binlog (path or bytes) under logs/<application>/<name>."""
        return logs.put_log(self, application, name, source, metadata, lock)

    def get_log(self, application: str, name: str, target: str | os.PathLike | None = None) -> bytes | None:
        """A stored log's bytes, or write it to target; VerifyError if it does not match its SHA-256."""
        return logs.get_log(self, application, name, target)

    def logs(self, application: str) -> list[str]:
        return logs.list_logs(self, application)

    def forget_log(self, application: str, name: str) -> None:
        logs.forget_log(self, application, name)

    def gc(self, grace: float = maintenance.DEFAULT_GRACE, dry_run: bool = False,
           lock_wait: float = 0.0) -> maintenance.GcReport:
        """Delete chunks no manifest or log references and older than grace seconds (exclusive lock)."""
        return maintenance.gc(self, grace, dry_run, lock_wait)

    def verify(self, sample: float | int | None = None, seed: int | None = None,
               lock_wait: float = 0.0) -> maintenance.VerifyReport:
        """Read back and re-hash all chunks (sample None), a fraction (< 1) or a number of them."""
        return maintenance.verify(self, sample, seed, lock_wait)


@lru_cache(maxsize=64)
def _zero_id(codec: Codec, length: int) -> str:
    return codec.chunk_id(bytes(length)).hex()


def _write_key_file(store: Store, master: bytes, keys: crypto.WorkingKeys, repo_id: str) -> str:
    key_id = uuid.uuid4().hex
    doc = {"version": 1, "id": key_id, "created": utc_now(), "algorithm": "AES-256-GCM",
           "wrapped": base64.b64encode(crypto.wrap(master, keys, repo_id)).decode()}
    store.put(layout.key_file_key(key_id), json.dumps(doc, indent=2).encode() + b"\n", create_only=True)
    return key_id


def _read_keys(store: Store, master: bytes, repo_id: str) -> crypto.WorkingKeys:
    """Unwrap the working keys with the first key file the master key opens."""
    tried = 0
    for obj in store.list(layout.KEYS):
        tried += 1
        try:
            wrapped = base64.b64decode(json.loads(store.get(obj.key))["wrapped"])
            return crypto.unwrap(master, wrapped, repo_id)
        except (RepositoryError, ValueError, KeyError, TypeError):
            continue
    raise RepositoryError(f"the key opens none of the {tried} key files of repository {repo_id}")
