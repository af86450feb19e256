"""The emulator's storage pool: one sparse file per volume or snapshot, named by serial.

On a reflink-capable filesystem, snapshots and copies are FICLONE and diffs come
from extent maps. Where the configured folder cannot reflink and we are root,
the pool becomes an XFS filesystem (reflink=1) on a sparse file over a loop
device. Otherwise it falls back to full copies and hashed diffs, and says so.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .. import sysutil
from .blocks import reflink, reflink_supported, set_extent_hints
from .diff import extent_diff, hashed_diff

log = logging.getLogger(__name__)

# XFS extent-size and CoW extent-size hints of each image. Fewer, larger extents make FICLONE fast;
# XFS still remaps only the blocks written, so diffs stay exact to the pool's 4 KiB block
# (benchmarks/array_ops.py --hint-sweep, docs/emulator.md).
DEFAULT_EXTENT_HINT = 1024 * 1024
DEFAULT_POOL_SIZE = 512 * 2**30


class Pool:
    def __init__(self, state_dir: Path, folder: Path | None = None, pool_size: int = DEFAULT_POOL_SIZE,
                 extent_hint: int = DEFAULT_EXTENT_HINT, make_xfs: bool = True):
        self.state_dir = state_dir
        self.folder = folder or state_dir / "pool"
        self.image = state_dir / "pool.img"
        self.pool_size = pool_size
        self.extent_hint = extent_hint
        self.reflink = False
        self.mounted_by_us = False
        self.make_xfs = make_xfs

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.image.exists() or (self.make_xfs and not reflink_supported(str(self.folder))
                                   and sysutil.is_root()):
            self._mount_xfs()
        self.reflink = reflink_supported(str(self.folder))
        if not self.reflink:
            log.warning(
                "pool %s cannot reflink (not root, or no XFS): snapshots and copies are FULL COPIES "
                "and diffs hash every block; times will grow with volume size", self.folder)
        (self.folder / "images").mkdir(exist_ok=True)

    def _mount_xfs(self) -> None:
        if sysutil.is_mountpoint(self.folder):
            self.mounted_by_us = True
            return
        fresh = not self.image.exists()
        if fresh:
            with open(self.image, "wb") as f:
                f.truncate(self.pool_size)
            sysutil.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(self.image)])
        dev = self._existing_loop() or sysutil.loop_attach(self.image, direct_io=False)
        sysutil.run(["mount", "-o", "noatime", dev, str(self.folder)])
        self.mounted_by_us = True
        log.info("pool: XFS (reflink=1) on %s via %s at %s", self.image, dev, self.folder)

    def _existing_loop(self) -> str | None:
        return sysutil.loops_backed_by(self.state_dir).get(str(self.image.resolve()))

    def close(self) -> None:
        """Unmount the pool and detach its loop device, if they are ours. Safe to call twice."""
        dev = self._existing_loop()
        if dev is None:
            return
        if str(self.folder.resolve()) in sysutil.mounts_of(dev):
            sysutil.umount(str(self.folder))
        sysutil.loop_detach(dev)
        self.mounted_by_us = False

    # -- images ----------------------------------------------------------------------------
    def path(self, serial: str) -> Path:
        return self.folder / "images" / f"{serial}.img"

    def create(self, serial: str, size: int) -> None:
        p = self.path(serial)
        with open(p, "wb") as f:
            if self.reflink:
                set_extent_hints(f.fileno(), self.extent_hint, self.extent_hint)
            f.truncate(size)

    def clone(self, src: str, dst: str) -> None:
        """dst becomes an instant copy of src, replacing dst's data in place (same inode)."""
        sp, dp = self.path(src), self.path(dst)
        fresh = not dp.exists()
        with open(sp, "rb") as fs, open(dp, "r+b" if not fresh else "wb") as fd:
            if fresh and self.reflink:
                set_extent_hints(fd.fileno(), self.extent_hint, self.extent_hint)
            size = os.fstat(fs.fileno()).st_size
            fd.truncate(0)
            if self.reflink:
                reflink(fs.fileno(), fd.fileno())
            else:
                shutil.copyfileobj(fs, fd, 8 << 20)
            fd.truncate(size)

    def resize(self, serial: str, size: int) -> None:
        os.truncate(self.path(serial), size)

    def delete(self, serial: str) -> None:
        self.path(serial).unlink(missing_ok=True)

    def diff(self, serial: str, base: str | None, offset: int, length: int, block_size: int) -> list[tuple[int, int]]:
        path = str(self.path(serial))
        base_path = str(self.path(base)) if base else None
        fn = extent_diff if self.reflink else hashed_diff
        return fn(path, base_path, offset, length, block_size)

    def used_bytes(self, serial: str) -> int:
        try:
            return os.stat(self.path(serial)).st_blocks * 512
        except FileNotFoundError:
            return 0
