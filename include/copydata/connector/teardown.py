"""Take volumes away from a host for good: unmount, disconnect, eradicate. Idempotent."""

from __future__ import annotations

from ..array import ArrayClient
from .base import HostConnector


def discard_volumes(array: ArrayClient, connector: HostConnector, host: str, names: list[str]) -> list[str]:
    """Unmount each volume on this host, disconnect it from `host` and eradicate it; returns those found."""
    found = []
    for name in names:
        vol = array.find_volume(name)
        if vol is None:
            continue
        connector.release(vol.serial)
        array.disconnect(host, name)
        array.eradicate_volume(name)
        found.append(name)
    return found
