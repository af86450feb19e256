"""Log files (WAL segments, binlogs) beside the points: logs/<application>/<name> = an index of chunks.

A log is cut into blocks of the repository's block size and stored as chunks like volume blocks; its index
(size, SHA-256, chunk ids) is written last and create-only, so an existing name is never replaced: storing
the same content again is a no-op, different content under the same name is an error (the contract of
PostgreSQL's archive_command).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from copydata.repo import layout
from copydata.repo.chunks import log_context
from copydata.repo.errors import PointExists, RepositoryError, VerifyError
from copydata.repo.manifest import LogIndex
from copydata.repo.store import AlreadyExists, NotFound

if TYPE_CHECKING:
    from copydata.repo.locks import Lock
    from copydata.repo.repository import Repository


def _blocks(source: str | os.PathLike | bytes, block_size: int) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for off in range(0, len(data), block_size):
            yield data[off:off + block_size]
        return
    with open(source, "rb") as f:
        while block := f.read(block_size):
            yield block


def put_log(repo: Repository, application: str, name: str, source: str | os.PathLike | bytes,
            metadata: dict[str, Any] | None = None, lock: Lock | None = None) -> LogIndex:
    """Store a log file (path or bytes) under logs/<application>/<name>; returns its index."""
    key = layout.log_key(application, name)
    bs = repo.config.block_size
    sha, size = hashlib.sha256(), 0

    def store(block: bytes) -> str | None:
        return None if block == bytes(len(block)) else repo.put_chunk(block)

    def read() -> Iterator[bytes]:
        nonlocal size
        for block in _blocks(source, bs):
            sha.update(block)
            size += len(block)
            repo.transfer.count(blocks_read=1, bytes_read=len(block))
            yield block

    chunks = list(repo.transfer.map(store, read()))
    index = LogIndex(application=application, name=name, size=size, sha256=sha.hexdigest(), block_size=bs,
                     chunks=chunks, metadata=metadata or {})
    if lock is not None:
        lock.check()
    try:
        repo.store.put(key, repo.codec.encode(index.to_json(), log_context(application, name)), create_only=True)
    except AlreadyExists:
        existing = read_log_index(repo, application, name)
        if (existing.size, existing.sha256) != (index.size, index.sha256):
            raise PointExists(f"log {application}/{name} is already stored with other content") from None
        return existing
    return index


def read_log_index(repo: Repository, application: str, name: str) -> LogIndex:
    try:
        raw = repo.store.get(layout.log_key(application, name))
    except NotFound:
        raise RepositoryError(f"no log {application}/{name}") from None
    index = LogIndex.from_json(repo.codec.decode(raw, log_context(application, name)))
    if (index.application, index.name) != (application, name):
        raise RepositoryError(f"log index {application}/{name} names {index.application}/{index.name}")
    return index


def get_log(repo: Repository, application: str, name: str,
            target: str | os.PathLike | None = None) -> bytes | None:
    """The log's bytes (target None), or write them to target (temp file + fsync + rename). VerifyError
    if the reassembled content does not match the index's size and SHA-256 (target is then left alone)."""
    index = read_log_index(repo, application, name)

    def fetch(i: int) -> bytes:
        cid = index.chunks[i]
        return repo.get_chunk(cid) if cid else bytes(min(index.block_size, index.size - i * index.block_size))

    tmp = f"{os.fspath(target)}.copydata-tmp" if target is not None else None
    sha, size, parts = hashlib.sha256(), 0, []
    with open(tmp, "wb") if tmp else contextlib.nullcontext() as out:
        for part in repo.transfer.map(fetch, range(len(index.chunks))):
            sha.update(part)
            size += len(part)
            if out:
                out.write(part)
            else:
                parts.append(part)
        if out:
            out.flush()
            os.fsync(out.fileno())
    if size != index.size or sha.hexdigest() != index.sha256:
        if tmp:
            os.unlink(tmp)
        raise VerifyError(f"log {application}/{name}: reassembled content does not match its index")
    if tmp is None:
        return b"".join(parts)
    os.replace(tmp, target)
    return None


def list_logs(repo: Repository, application: str) -> list[str]:
    prefix = f"{layout.LOGS}{layout.check_name('application', application)}/"
    found = (layout.parse_log_key(o.key) for o in repo.store.list(prefix))
    return sorted(n for a, n in filter(None, found) if a == application)


def forget_log(repo: Repository, application: str, name: str) -> None:
    repo.store.delete(layout.log_key(application, name))
