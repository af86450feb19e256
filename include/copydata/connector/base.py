"""The host side of a connection: find the device of a volume, put a filesystem on it, mount, freeze.

`LocalConnector` serves the machine copydata runs on (the emulator's loop devices,
or a host with real paths). A later variant runs the same steps over SSH with
iSCSI/FC rescans and multipath.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator

PURE_NAA_PREFIX = "624a9370"


def wwn_id(serial: str) -> str:
    """The /dev/disk/by-id name Linux gives a FlashArray volume (flasharray-rest.md §8.1)."""
    return f"wwn-0x{PURE_NAA_PREFIX}{serial.lower()}"


class HostConnector(abc.ABC):
    @abc.abstractmethod
    def rescan(self) -> None:
        """Make newly connected volumes appear (iSCSI/FC rescan on a real host)."""

    @abc.abstractmethod
    def device(self, serial: str, timeout: float = 30) -> str:
        """Wait for the volume's block device and return its path."""

    @abc.abstractmethod
    def mkfs(self, device: str, fstype: str = "ext4", label: str | None = None) -> None: ...

    @abc.abstractmethod
    def mount(self, device: str, mountpoint: str, fstype: str | None = None, options: str = "noatime") -> None: ...

    @abc.abstractmethod
    def unmount(self, mountpoint: str) -> None: ...

    @abc.abstractmethod
    def freeze(self, mountpoint: str) -> None: ...

    @abc.abstractmethod
    def thaw(self, mountpoint: str) -> None: ...

    @abc.abstractmethod
    def flush(self, device: str) -> None:
        """Drop the host's cached blocks of a device whose contents the array replaced."""

    @abc.abstractmethod
    def release(self, serial: str) -> None:
        """Before the array disconnects the volume: unmount it and remove the host's paths."""

    @contextlib.contextmanager
    def frozen(self, mountpoints: list[str]) -> Iterator[None]:
        """Freeze filesystems for an instant; always thaw, even when the body fails."""
        done: list[str] = []
        try:
            for m in mountpoints:
                self.freeze(m)
                done.append(m)
            yield
        finally:
            for m in reversed(done):
                self.thaw(m)
