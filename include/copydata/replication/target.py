"""A replication target: where an application's recovery points go (one copydata repository).

Built from the SLA's `replication.targets[]` entries (Target.from_sla) or directly in tests. The store is
built by `store_factory(url, conn_id)` and the encryption key by `key_factory(key_conn_id)`; both are
injectable so that core code and tests need no Airflow. Their defaults import copydata.airflow.storage lazily
(store_for / key_from_connection) when a cloud URL or a key connection is actually used; a file:// target
without encryption never touches Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from copydata.replication.units import parse_rate, parse_size
from copydata.repo.errors import RepositoryError
from copydata.repo.repository import DEFAULT_BLOCK_SIZE, Repository, check_block_size
from copydata.repo.store import PosixStore, Store
from copydata.repo.transfer import Stats, Transfer

TARGET_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,40}$"
DEFAULT_WORKERS = 4
DEFAULT_KEEP_LAST = 7

StoreFactory = Callable[[str, "str | None"], Store]
KeyFactory = Callable[[str], bytes]

@dataclass(frozen=True)
class Target:
    """One replication target. `url`: s3://bucket/prefix, wasb://container/prefix, gs://bucket/prefix or
    file:///path; `conn_id`: the Airflow connection of the store (None for file:// or the provider default);
    `key_conn_id`: None = no encryption, else the connection holding the repository's AES key."""

    name: str
    url: str
    conn_id: str | None = None
    key_conn_id: str | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    workers: int = DEFAULT_WORKERS
    bandwidth: float | None = None      # upload cap, bytes/s; None = unlimited
    keep_last: int = DEFAULT_KEEP_LAST  # points kept per application by retention
    store_factory: StoreFactory | None = field(default=None, compare=False, repr=False)
    key_factory: KeyFactory | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not re.match(TARGET_NAME_PATTERN, self.name):
            raise ValueError(f"target name {self.name!r} must match {TARGET_NAME_PATTERN}")
        object.__setattr__(self, "block_size", check_block_size(parse_size(self.block_size)))
        object.__setattr__(self, "bandwidth", parse_rate(self.bandwidth))
        if int(self.workers) < 1:
            raise ValueError(f"target {self.name}: workers must be at least 1")
        if int(self.keep_last) < 1:
            raise ValueError(f"target {self.name}: keep_last must be at least 1")

    @classmethod
    def from_sla(cls, spec: Any, store_factory: StoreFactory | None = None,
                 key_factory: KeyFactory | None = None) -> Target:
        """From an SLA target (copydata.sla.model.ReplicationTarget) or a plain mapping."""
        get = spec.get if isinstance(spec, dict) else (lambda k, d=None: getattr(spec, k, d))
        return cls(name=get("name"), url=get("url"), conn_id=get("conn_id"), key_conn_id=get("key_conn_id"),
                   block_size=get("block_size", DEFAULT_BLOCK_SIZE) or DEFAULT_BLOCK_SIZE,
                   workers=get("workers", DEFAULT_WORKERS) or DEFAULT_WORKERS,
                   bandwidth=get("bandwidth"), keep_last=get("keep_last", DEFAULT_KEEP_LAST) or DEFAULT_KEEP_LAST,
                   store_factory=store_factory, key_factory=key_factory)

    # -- building the repository ---------------------------------------------------------------------

    def store(self) -> Store:
        if self.store_factory is not None:
            return self.store_factory(self.url, self.conn_id)
        if self.url.startswith("file:"):
            from urllib.parse import urlparse

            return PosixStore(urlparse(self.url).path)
        from copydata.airflow.storage import store_for  # lazy: only cloud targets need the provider hooks

        return store_for(self.url, self.conn_id)

    def key(self) -> bytes | None:
        if self.key_conn_id is None:
            return None
        if self.key_factory is not None:
            return self.key_factory(self.key_conn_id)
        from copydata.airflow.storage import key_from_connection

        return key_from_connection(self.key_conn_id)

    def transfer(self, progress: Callable[[Stats], None] | None = None) -> Transfer:
        return Transfer(workers=self.workers, upload_rate=self.bandwidth, progress=progress)

    def has_repository(self, store: Store | None = None) -> bool:
        """Whether the target holds a repository yet (False also when its bucket does not exist)."""
        return _has_config(store or self.store())

    def open_repository(self, create: bool = False, progress: Callable[[Stats], None] | None = None,
                        store: Store | None = None) -> Repository:
        """Open the target's repository; with create, make the bucket/container and the repository first
        if they do not exist (a concurrent creator is tolerated: the loser opens the winner's)."""
        store = store or self.store()
        key = self.key()
        transfer = self.transfer(progress)
        if create:
            ensure = getattr(store, "ensure_bucket", None)   # the cloud stores: create the bucket/container
            if ensure is not None:
                ensure()
        try:
            return Repository.open(store, key=key, transfer=transfer)
        except RepositoryError:
            if not create or _has_config(store):
                raise
        try:
            return Repository.init(store, key=key, block_size=self.block_size, transfer=transfer)
        except RepositoryError:
            if not _has_config(store):
                raise
            return Repository.open(store, key=key, transfer=transfer)


def _has_config(store: Store) -> bool:
    from copydata.repo import layout

    try:
        return store.exists(layout.CONFIG)
    except Exception:   # a missing bucket answers with an error on some services
        return False
