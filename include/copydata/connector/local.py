"""HostConnector for this machine: devices under a by-id folder (/dev/disk/by-id, or the emulator's)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import sysutil
from .base import HostConnector, wwn_id


class DeviceNotFound(TimeoutError):
    pass


class LocalConnector(HostConnector):
    def __init__(self, by_id_dir: str | Path = "/dev/disk/by-id"):
        self.by_id = Path(by_id_dir)

    def rescan(self) -> None:
        if self.by_id == Path("/dev/disk/by-id"):
            sysutil.run(["udevadm", "settle"], check=False)

    def device(self, serial: str, timeout: float = 30) -> str:
        link = self.by_id / wwn_id(serial)
        deadline = time.monotonic() + timeout
        while True:
            if link.exists():
                return os.path.realpath(link)
            if time.monotonic() >= deadline:
                raise DeviceNotFound(f"volume {serial} did not appear at {link} within {timeout:.0f} s")
            self.rescan()
            time.sleep(0.05)

    def mkfs(self, device: str, fstype: str = "ext4", label: str | None = None) -> None:
        cmd = {"ext4": ["mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0"],
               "xfs": ["mkfs.xfs", "-q", "-f", "-K"]}.get(fstype)
        if cmd is None:
            raise ValueError(f"unsupported filesystem {fstype!r}: expected ext4 or xfs")
        if label:
            cmd += ["-L", label]
        sysutil.run(cmd + [device], timeout=600)

    def mount(self, device: str, mountpoint: str, fstype: str | None = None, options: str = "noatime") -> None:
        Path(mountpoint).mkdir(parents=True, exist_ok=True)
        target = os.path.realpath(mountpoint)
        if target in sysutil.mounts_of(device):
            return
        if sysutil.is_mountpoint(target):
            raise RuntimeError(f"{mountpoint} already has another filesystem mounted")
        if fstype == "xfs" or (fstype is None and self._fstype(device) == "xfs"):
            options += ",nouuid"  # clones share the source's UUID
        cmd = ["mount", "-o", options] + (["-t", fstype] if fstype else []) + [device, target]
        sysutil.run(cmd)

    @staticmethod
    def _fstype(device: str) -> str:
        return sysutil.run(["blkid", "-o", "value", "-s", "TYPE", device], check=False).strip()

    def unmount(self, mountpoint: str) -> None:
        if sysutil.is_mountpoint(mountpoint):
            sysutil.run(["umount", os.path.realpath(mountpoint)])

    def freeze(self, mountpoint: str) -> None:
        sysutil.run(["fsfreeze", "-f", mountpoint], timeout=60)

    def thaw(self, mountpoint: str) -> None:
        sysutil.run(["fsfreeze", "-u", mountpoint], check=False)

    def flush(self, device: str) -> None:
        sysutil.run(["blockdev", "--flushbufs", device], check=False)

    def release(self, serial: str) -> None:
        link = self.by_id / wwn_id(serial)
        if not link.exists():
            return
        dev = os.path.realpath(link)
        for point in sysutil.mounts_of(dev):
            sysutil.run(["umount", point])
        self.flush(dev)
