"""Thin operators over FlashArrayHook. Every argument is templated; every call is safe to retry."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from copydata.airflow.hooks.flasharray import FlashArrayHook


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return obj


class _FlashArrayOperator(BaseOperator):
    def __init__(self, *, flasharray_conn_id: str = FlashArrayHook.default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.flasharray_conn_id = flasharray_conn_id

    def execute(self, context) -> Any:
        hook = FlashArrayHook(self.flasharray_conn_id)
        try:
            return self.run(hook, context)
        finally:
            hook.close()

    def run(self, hook: FlashArrayHook, context) -> Any:
        raise NotImplementedError


class FlashArrayPgroupSnapshotOperator(_FlashArrayOperator):
    """Take a crash-consistent snapshot of every volume in a protection group.

    With a suffix, a retry finds the snapshot the first try made instead of taking another.
    Returns {name, pgroup, suffix, created (ISO 8601 UTC), volumes: {volume: snapshot}}.
    """

    template_fields: Sequence[str] = ("pgroup", "suffix", "flasharray_conn_id")

    def __init__(self, *, pgroup: str, suffix: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pgroup, self.suffix = pgroup, suffix

    def run(self, hook: FlashArrayHook, context) -> dict:
        snap = hook.get_conn().snapshot_pgroup(self.pgroup, self.suffix or None)
        result = _jsonable(snap)
        self.log.info("snapshot %s of %d volume(s) at %s", snap.name, len(snap.volumes), result["created"])
        for outlet in self.outlets or []:
            context["outlet_events"][outlet].extra = {"snapshot": result}
        return result


class FlashArrayCopyVolumeOperator(_FlashArrayOperator):
    """Copy a volume or snapshot (``vol.sfx`` or ``pgroup.sfx.vol``) to a volume, optionally overwriting it."""

    template_fields: Sequence[str] = ("source", "target", "overwrite", "flasharray_conn_id")

    def __init__(self, *, source: str, target: str, overwrite: bool | str = False, **kwargs):
        super().__init__(**kwargs)
        self.source, self.target, self.overwrite = source, target, overwrite

    def run(self, hook: FlashArrayHook, context) -> dict:
        overwrite = str(self.overwrite).lower() in ("true", "1", "yes")
        vol = hook.get_conn().copy_volume(self.source, self.target, overwrite=overwrite)
        self.log.info("copied %s to %s (serial %s, overwrite=%s)", self.source, vol.name, vol.serial, overwrite)
        return _jsonable(vol)


class FlashArrayConnectHostOperator(_FlashArrayOperator):
    """Connect a volume to a host and wait for its device; optionally make a filesystem and mount it."""

    template_fields: Sequence[str] = ("volume", "host", "mountpoint", "mkfs", "flasharray_conn_id")

    def __init__(self, *, volume: str, host: str | None = None, mountpoint: str | None = None,
                 mkfs: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.volume, self.host, self.mountpoint, self.mkfs = volume, host, mountpoint, mkfs

    def run(self, hook: FlashArrayHook, context) -> dict:
        client, connector = hook.get_conn(), hook.get_connector()
        host = self.host or hook.host_name
        client.ensure_host(host)
        conn = client.connect(host, self.volume)
        device = connector.device(client.get_volume(self.volume).serial)
        if self.mkfs:
            connector.mkfs(device, self.mkfs)
        if self.mountpoint:
            connector.mount(device, self.mountpoint)
        self.log.info("%s connected to %s as LUN %d: %s%s", self.volume, host, conn.lun, device,
                      f" mounted at {self.mountpoint}" if self.mountpoint else "")
        return {"volume": self.volume, "host": host, "lun": conn.lun, "device": device,
                "mountpoint": self.mountpoint}


class FlashArrayDisconnectHostOperator(_FlashArrayOperator):
    """Unmount a volume on this host (if mounted) and disconnect it from the host on the array."""

    template_fields: Sequence[str] = ("volume", "host", "flasharray_conn_id")

    def __init__(self, *, volume: str, host: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.volume, self.host = volume, host

    def run(self, hook: FlashArrayHook, context) -> None:
        client = hook.get_conn()
        vol = client.find_volume(self.volume)
        if vol is None:
            self.log.info("volume %s does not exist: nothing to disconnect", self.volume)
            return
        hook.get_connector().release(vol.serial)
        client.disconnect(self.host or hook.host_name, self.volume)
        self.log.info("%s disconnected from %s", self.volume, self.host or hook.host_name)


class FlashArrayDestroyOperator(_FlashArrayOperator):
    """Destroy a volume or a protection-group snapshot (``pgroup.suffix``), and eradicate it if asked."""

    template_fields: Sequence[str] = ("name", "eradicate", "flasharray_conn_id")

    def __init__(self, *, name: str, eradicate: bool | str = False, **kwargs):
        super().__init__(**kwargs)
        self.name, self.eradicate = name, eradicate

    def run(self, hook: FlashArrayHook, context) -> None:
        eradicate = str(self.eradicate).lower() in ("true", "1", "yes")
        client = hook.get_conn()
        if "." in self.name:
            client.destroy_pgroup_snapshot(self.name, eradicate=eradicate)
        elif eradicate:
            client.eradicate_volume(self.name)
        else:
            client.destroy_volume(self.name)
        self.log.info("%s %s", "eradicated" if eradicate else "destroyed", self.name)
