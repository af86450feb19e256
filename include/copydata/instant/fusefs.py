"""FUSE front end: a folder holding one file, disk.img, whose bytes are a LazyDisk.

mfusepy (ctypes bindings of the high-level libfuse API) over **libfuse3**: FUSE_LIBRARY_PATH is set to
libfuse3 unless the caller chose a library, because libfuse2 caps requests at 128 KiB while libfuse3
negotiates 1 MiB (see shared reference §10.3). libfuse runs a multithreaded loop; each request calls into
Python on its own thread (the GIL serializes the Python part).

Deadlock rule (reference §10.8): nothing in this module, and nothing called from a FUSE callback, may
touch the mount it serves (losetup, mount, stat of disk.img, ...). Those run in another process
(copydata.instant.mount).
"""

from __future__ import annotations

import ctypes.util
import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from copydata.instant.lazydisk import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    LazyDisk,
)

log = logging.getLogger(__name__)

IMAGE_NAME = "disk.img"
LIBFUSE3_PATHS = ("/lib/x86_64-linux-gnu/libfuse3.so.3", "/usr/lib/x86_64-linux-gnu/libfuse3.so.3",
                  "/lib/aarch64-linux-gnu/libfuse3.so.3", "/usr/lib/aarch64-linux-gnu/libfuse3.so.3",
                  "/usr/lib64/libfuse3.so.3", "/usr/lib/libfuse3.so.3")


def libfuse3_path() -> str | None:
    for path in LIBFUSE3_PATHS:
        if Path(path).exists():
            return path
    return ctypes.util.find_library("fuse3")


def load_mfusepy() -> ModuleType:
    """Import mfusepy bound to libfuse3 (the binding picks its library at import time)."""
    if not os.environ.get("FUSE_LIBRARY_PATH"):
        path = libfuse3_path()
        if path is None:
            raise RuntimeError("libfuse3 is not installed (Debian: apt-get install fuse3)")
        os.environ["FUSE_LIBRARY_PATH"] = path
    import mfusepy

    return mfusepy


class DiskOperations:
    """The file system: '/' and '/disk.img'. A plain object: mfusepy registers only what it defines."""

    use_ns = True   # times in nanoseconds (mfusepy's non-deprecated mode)

    def __init__(self, disk: LazyDisk, fuse_error: type[OSError], read_only: bool = False,
                 on_init: Callable[[], None] | None = None) -> None:
        self.disk = disk
        self.err = fuse_error
        self.read_only = read_only
        self.on_init = on_init
        self.now = time.time_ns()
        self._fh = 0

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            config.attr_timeout = config.entry_timeout = 3600.0
        if self.on_init is not None:
            self.on_init()   # runs on the FUSE thread: must not touch the mount

    def destroy(self, path: str) -> None:
        pass

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        times = {"st_atime": self.now, "st_mtime": self.now, "st_ctime": self.now}
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_size": 0, **times}
        if path == "/" + IMAGE_NAME:
            mode = 0o444 if self.read_only else 0o644
            return {"st_mode": stat.S_IFREG | mode, "st_nlink": 1, "st_size": self.disk.size,
                    "st_blocks": self.disk.size // 512, "st_blksize": 1 << 20, **times}
        raise self.err(errno.ENOENT)

    def readdir(self, path: str, fh: Any) -> list[str]:
        if path != "/":
            raise self.err(errno.ENOTDIR)
        return [".", "..", IMAGE_NAME]

    def open(self, path: str, flags: int) -> int:
        if path != "/" + IMAGE_NAME:
            raise self.err(errno.ENOENT if path != "/" else errno.EISDIR)
        if self.read_only and flags & (os.O_WRONLY | os.O_RDWR):
            raise self.err(errno.EROFS)
        self._fh += 1
        return self._fh

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        try:
            return self.disk.read(offset, size)
        except Exception:
            log.exception("read of %d bytes at %d failed", size, offset)
            raise self.err(errno.EIO) from None

    def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
        if self.read_only:
            raise self.err(errno.EROFS)
        try:
            return self.disk.write(offset, data)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise self.err(errno.ENOSPC) from None
            log.exception("write of %d bytes at %d failed", len(data), offset)
            raise self.err(errno.EIO) from None
        except Exception:
            log.exception("write of %d bytes at %d failed", len(data), offset)
            raise self.err(errno.EIO) from None

    def fsync(self, path: str, datasync: int, fh: Any) -> int:
        try:
            self.disk.fsync()
        except Exception:
            log.exception("fsync failed")
            raise self.err(errno.EIO) from None
        return 0

    def flush(self, path: str, fh: Any) -> int:
        return 0

    def release(self, path: str, fh: Any) -> int:
        return 0

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        if path != "/" + IMAGE_NAME:
            raise self.err(errno.ENOENT)
        if length != self.disk.size:
            raise self.err(errno.EPERM)   # the volume has a fixed size
        return 0

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: Any) -> int:
        """Discard support: the loop driver turns TRIM into PUNCH_HOLE (or ZERO_RANGE) on disk.img."""
        if self.read_only:
            raise self.err(errno.EROFS)
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            self.disk.punch(offset, size)
            return 0
        if mode & ~FALLOC_FL_KEEP_SIZE:
            raise self.err(errno.EOPNOTSUPP)
        return 0   # plain allocation: every block of the volume already exists

    def statfs(self, path: str) -> dict[str, int]:
        bs = self.disk.bs
        return {"f_bsize": bs, "f_frsize": bs, "f_blocks": self.disk.nblocks, "f_bfree": 0, "f_bavail": 0,
                "f_files": 2, "f_ffree": 0, "f_namemax": 255}


def serve(disk: LazyDisk, mountpoint: str | os.PathLike, *, read_only: bool = False,
          on_init: Callable[[], None] | None = None, debug: bool = False) -> None:
    """Mount the FUSE file system and serve it until it is unmounted or the process gets SIGINT/SIGTERM/
    SIGHUP (libfuse's handlers end the loop and unmount). Runs in the calling (main) thread."""
    mfusepy = load_mfusepy()
    ops = DiskOperations(disk, mfusepy.FuseOSError, read_only=read_only, on_init=on_init)
    options: dict[str, Any] = {"fsname": "copydata-instant", "subtype": "copydata", "attr_timeout": 3600,
                               "entry_timeout": 3600, "negative_timeout": 0}
    if read_only:
        options["ro"] = True
    mfusepy.FUSE(ops, os.fspath(mountpoint), foreground=True, nothreads=False, debug=debug, **options)
