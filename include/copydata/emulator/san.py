"""The emulator's fabric: volumes connected to a host appear on this machine as loop devices.

A connected volume is attached once, whatever the number of hosts, and published at
``<state>/dev/disk/by-id/wwn-0x624a9370<serial>``: the name a real Linux host gets.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import sysutil

log = logging.getLogger(__name__)

PURE_NAA_PREFIX = "624a9370"


def wwn_name(serial: str) -> str:
    return f"wwn-0x{PURE_NAA_PREFIX}{serial.lower()}"


class LocalFabric:
    def __init__(self, state_dir: Path, pool_folder: Path):
        self.by_id = state_dir / "dev" / "disk" / "by-id"
        self.pool_folder = pool_folder
        self.enabled = sysutil.is_root()
        if not self.enabled:
            log.warning("not root: connections are recorded but no loop devices appear")

    def link(self, serial: str) -> Path:
        return self.by_id / wwn_name(serial)

    def device(self, serial: str) -> str | None:
        link = self.link(serial)
        if link.is_symlink():
            dev = os.readlink(link)
            if Path(dev).exists():
                return dev
        return None

    def attach(self, serial: str, image: Path) -> str | None:
        if not self.enabled:
            return None
        existing = sysutil.loops_backed_by(self.pool_folder).get(str(image.resolve()))
        dev = existing or sysutil.loop_attach(image)
        self.by_id.mkdir(parents=True, exist_ok=True)
        link = self.link(serial)
        link.unlink(missing_ok=True)
        link.symlink_to(dev)
        return dev

    def detach(self, serial: str, image: Path) -> None:
        if not self.enabled:
            return
        self.link(serial).unlink(missing_ok=True)
        dev = sysutil.loops_backed_by(self.pool_folder).get(str(image.resolve()))
        if dev:
            sysutil.loop_detach(dev)

    def refresh(self, image: Path) -> None:
        """The image changed size or contents under an attached device (copy with overwrite)."""
        dev = sysutil.loops_backed_by(self.pool_folder).get(str(image.resolve()))
        if dev:
            sysutil.loop_refresh_capacity(dev)

    @contextlib.contextmanager
    def quiesced(self, images: Iterable[Path]) -> Iterator[None]:
        """Hold writes to every filesystem mounted from these images: one instant for all of them."""
        attached = sysutil.loops_backed_by(self.pool_folder) if self.enabled else {}
        points: list[str] = []
        for img in images:
            dev = attached.get(str(img.resolve()))
            mounts = sysutil.mounts_of(dev) if dev else []
            if mounts and mounts[0] not in points:  # one freeze per filesystem, even when bind-mounted
                points.append(mounts[0])
        frozen = []
        try:
            for p in points:
                sysutil.run(["fsfreeze", "-f", p], timeout=30)
                frozen.append(p)
            yield
        finally:
            for p in frozen:
                sysutil.run(["fsfreeze", "-u", p], check=False)

    def release_all(self) -> None:
        """Unmount whatever is mounted from our devices and detach them: nothing is left behind."""
        if not self.enabled:
            return
        for _image, dev in sysutil.loops_backed_by(self.pool_folder).items():
            for point in sysutil.mounts_of(dev):
                sysutil.run(["fsfreeze", "-u", point], check=False)
                sysutil.umount(point)
            sysutil.loop_detach(dev)
        if self.by_id.exists():
            for link in self.by_id.iterdir():
                link.unlink(missing_ok=True)
