"""Instant mount: a volume of a repository point as a block device, without downloading it first.

lazydisk  LazyDisk: sparse local cache + block map, fetch on first access, copy-on-write, prefetch,
          background hydration with a bandwidth cap
fusefs    the FUSE front end (mfusepy over libfuse3): one file, disk.img
daemon    `python -m copydata.instant.daemon …`: one double-forked process per mounted volume
mount     InstantMount (daemon → losetup --direct-io=on → mount; teardown with deadlines),
          hydrate_status, materialize_image
postgres  instant_postgres: a PostgreSQL point mounted, its WAL fetched, the server started

Design, deadlock rules and measured numbers: docs/instant-mount.md.
"""

from copydata.instant.lazydisk import LazyDisk, RepoVolume
from copydata.instant.mount import (
    InstantMount,
    InstantMountError,
    TeardownError,
    hydrate_status,
    leftovers,
    materialize_image,
    teardown,
)

__all__ = ["InstantMount", "InstantMountError", "LazyDisk", "RepoVolume", "TeardownError", "hydrate_status",
           "leftovers", "materialize_image", "teardown"]
