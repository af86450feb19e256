"""The storage-driver protocol of the repository, and the POSIX folder driver.

A store maps keys ('/'-separated, relative to the store's root, never starting with '/') to immutable-ish
byte strings. Every driver (POSIX here; S3, Azure Blob and GCS in copydata.airflow.storage) offers the same
five operations, so the repository has one code path over all of them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from copydata.sysutil import fsync_dir


class StoreError(Exception):
    """A storage operation failed."""


class NotFound(StoreError, KeyError):
    """The key does not exist."""


class AlreadyExists(StoreError):
    """A create-only put found the key already present."""


class ObjectInfo(NamedTuple):
    key: str      # relative to the store root
    size: int     # bytes
    mtime: float  # seconds since the epoch, by the store's clock


@runtime_checkable
class Store(Protocol):
    """What the repository needs from a storage backend. All methods must be thread-safe."""

    url: str

    def put(self, key: str, data: bytes, create_only: bool = False) -> None:
        """Store data under key. create_only: raise AlreadyExists if the key exists (atomically where the
        backend can; see docs/repository-format.md, "Storage requirements")."""

    def get(self, key: str) -> bytes:
        """The bytes under key; NotFound if there is none."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every key starting with prefix (recursively, in no particular order)."""

    def delete(self, key: str) -> None:
        """Remove key; a missing key is not an error."""


TMP_PREFIX = ".tmp-"   # PosixStore's in-flight files; never listed


class PosixStore:
    """A folder as a store: atomic writes (temp file + fsync + rename), create-only via link(2)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root.resolve()}"

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes, create_only: bool = False) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if create_only:
                _publish_no_replace(tmp, path, key)
            else:
                os.replace(tmp, path)
            fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder, _, _ = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in sorted(filenames):
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if name.startswith(TMP_PREFIX) or not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:   # deleted while listing
                    continue
                yield ObjectInfo(key, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _publish_no_replace(tmp: Path, path: Path, key: str) -> None:
    """Give tmp the name path unless path exists: link(2), or renameat2(RENAME_NOREPLACE) where the
    filesystem has no hard links. Both fail atomically with EEXIST."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise AlreadyExists(key) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
    _rename_noreplace(tmp, path, key)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(src: Path, dst: Path, key: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
    if rc != 0:
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise AlreadyExists(key)
        raise OSError(err, os.strerror(err), str(dst))
