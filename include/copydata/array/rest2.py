"""ArrayClient over REST 2.x with py-pure-client (the primary client)."""

from __future__ import annotations

from pypureclient import flasharray
from pypureclient.configuration import Configuration
from pypureclient.flasharray import (
    ConnectionPost,
    HostPost,
    ProtectionGroup,
    ProtectionGroupSnapshotPatch,
    ProtectionGroupSnapshotPost,
    Reference,
    VolumePatch,
    VolumePost,
)

from .types import ArrayError, Connection, PgroupSnapshot, Volume, from_ms


def _check(resp, operation: str, context: str | None = None):
    if resp.status_code != 200:
        errs = getattr(resp, "errors", None) or []
        message = getattr(errs[0], "message", None) if errs else None
        ctx = getattr(errs[0], "context", None) if errs else None
        raise ArrayError(operation, message or f"HTTP {resp.status_code}", resp.status_code, ctx or context)
    return list(getattr(resp, "items", None) or [])


def _volume(item) -> Volume:
    src = getattr(item, "source", None)
    return Volume(name=item.name, serial=item.serial, size=item.provisioned,
                  source=getattr(src, "name", None), destroyed=bool(getattr(item, "destroyed", False)),
                  created=from_ms(getattr(item, "created", None)))


class Rest2Array:
    api = "rest2"

    def __init__(self, target: str, api_token: str, ca_file: str | None = None, verify_tls: bool = True,
                 version: str | None = None):
        # py-pure-client 1.96 ignores its ssl_cert argument: the CA goes through Configuration.
        config = Configuration(ssl_ca_cert=ca_file) if ca_file else None
        try:
            self.client = flasharray.Client(target, api_token=api_token, version=version, verify_ssl=verify_tls,
                                            configuration=config, model_attribute_error_on_none=False)
        except Exception as exc:  # PureError carries the array's answer
            raise ArrayError("login", str(exc)) from None
        self.api_version = self.client.get_rest_version()

    def close(self) -> None:
        """Log out now, rather than from py-pure-client's atexit hook when the array may be gone."""
        token_manager = getattr(self.client, "_token_man", None)
        if hasattr(token_manager, "close_session"):
            token_manager.close_session()

    def array_name(self) -> str:
        return _check(self.client.get_arrays(), "get array")[0].name

    # -- volumes ---------------------------------------------------------------------------
    def get_volume(self, name: str) -> Volume:
        return _volume(_check(self.client.get_volumes(names=[name]), "get volume", name)[0])

    def find_volume(self, name: str) -> Volume | None:
        try:
            return self.get_volume(name)
        except ArrayError as err:
            if err.not_found:
                return None
            raise

    def create_volume(self, name: str, size: int) -> Volume:
        resp = self.client.post_volumes(names=[name], volume=VolumePost(provisioned=size))
        return _volume(_check(resp, "create volume", name)[0])

    def copy_volume(self, source: str, name: str, overwrite: bool = False) -> Volume:
        resp = self.client.post_volumes(names=[name], volume=VolumePost(source=Reference(name=source)),
                                        overwrite=overwrite)
        return _volume(_check(resp, f"copy {source} to volume", name)[0])

    def resize_volume(self, name: str, size: int) -> Volume:
        resp = self.client.patch_volumes(names=[name], volume=VolumePatch(provisioned=size))
        return _volume(_check(resp, "resize volume", name)[0])

    def destroy_volume(self, name: str) -> None:
        vol = self.find_volume(name)
        if vol is None or vol.destroyed:
            return
        _check(self.client.patch_volumes(names=[name], volume=VolumePatch(destroyed=True)), "destroy volume", name)

    def recover_volume(self, name: str) -> None:
        _check(self.client.patch_volumes(names=[name], volume=VolumePatch(destroyed=False)), "recover volume", name)

    def eradicate_volume(self, name: str) -> None:
        if self.find_volume(name) is None:
            return
        self.destroy_volume(name)
        _check(self.client.delete_volumes(names=[name]), "eradicate volume", name)

    # -- protection groups -----------------------------------------------------------------
    def pgroup_volumes(self, name: str) -> list[str]:
        items = _check(self.client.get_protection_groups_volumes(group_names=[name]), "list pgroup volumes", name)
        return [i.member.name for i in items]

    def ensure_pgroup(self, name: str, volumes: list[str]) -> None:
        resp = self.client.get_protection_groups(names=[name])
        if resp.status_code != 200:
            _check(self.client.post_protection_groups(names=[name]), "create protection group", name)
        present = {v.lower() for v in self.pgroup_volumes(name)}
        missing = [v for v in volumes if v.lower() not in present]
        if missing:
            _check(self.client.post_protection_groups_volumes(group_names=[name], member_names=missing),
                   "add volumes to protection group", name)

    def _pgsnap(self, item) -> PgroupSnapshot:
        members = _check(self.client.get_volume_snapshots(filter=f"name='{item.name}.*'"),
                         "list pgroup snapshot members", item.name)
        return PgroupSnapshot(name=item.name, pgroup=item.source.name, suffix=item.suffix,
                              created=from_ms(item.created), destroyed=bool(item.destroyed),
                              volumes={m.source.name: m.name for m in members})

    def snapshot_pgroup(self, pgroup: str, suffix: str | None = None) -> PgroupSnapshot:
        if suffix:
            existing = self.client.get_protection_group_snapshots(names=[f"{pgroup}.{suffix}"])
            if existing.status_code == 200:
                return self._pgsnap(list(existing.items)[0])
        body = ProtectionGroupSnapshotPost(suffix=suffix) if suffix else ProtectionGroupSnapshotPost()
        resp = self.client.post_protection_group_snapshots(source_names=[pgroup], protection_group_snapshot=body)
        return self._pgsnap(_check(resp, "snapshot protection group", pgroup)[0])

    def find_pgroup_snapshot(self, name: str) -> PgroupSnapshot | None:
        resp = self.client.get_protection_group_snapshots(names=[name])
        return self._pgsnap(list(resp.items)[0]) if resp.status_code == 200 else None

    def pgroup_snapshots(self, pgroup: str) -> list[PgroupSnapshot]:
        items = _check(self.client.get_protection_group_snapshots(source_names=[pgroup]),
                       "list protection group snapshots", pgroup)
        return [self._pgsnap(i) for i in items]

    def destroy_pgroup_snapshot(self, name: str, eradicate: bool = False) -> None:
        resp = self.client.get_protection_group_snapshots(names=[name])
        if resp.status_code != 200:
            return
        if not list(resp.items)[0].destroyed:
            _check(self.client.patch_protection_group_snapshots(
                names=[name], protection_group_snapshot=ProtectionGroupSnapshotPatch(destroyed=True)),
                "destroy protection group snapshot", name)
        if eradicate:
            _check(self.client.delete_protection_group_snapshots(names=[name]),
                   "eradicate protection group snapshot", name)

    def destroy_pgroup(self, name: str) -> None:
        """Destroy and eradicate a protection group (its snapshots go with it); nothing to do when it is gone."""
        resp = self.client.get_protection_groups(names=[name])
        if resp.status_code != 200:
            return
        if not list(resp.items)[0].destroyed:
            _check(self.client.patch_protection_groups(names=[name], protection_group=ProtectionGroup(destroyed=True)),
                   "destroy protection group", name)
        _check(self.client.delete_protection_groups(names=[name]), "eradicate protection group", name)

    # -- hosts and connections -------------------------------------------------------------
    def ensure_host(self, name: str, iqns: list[str] | None = None) -> None:
        if self.client.get_hosts(names=[name]).status_code == 200:
            return
        _check(self.client.post_hosts(names=[name], host=HostPost(iqns=iqns or [])), "create host", name)

    def connections(self, volume: str) -> list[Connection]:
        items = _check(self.client.get_connections(volume_names=[volume]), "list connections", volume)
        return [Connection(i.host.name, i.volume.name, i.lun) for i in items]

    def connect(self, host: str, volume: str) -> Connection:
        for c in self.connections(volume):
            if c.host.lower() == host.lower():
                return c
        resp = self.client.post_connections(host_names=[host], volume_names=[volume], connection=ConnectionPost())
        i = _check(resp, f"connect to host {host}", volume)[0]
        return Connection(i.host.name, i.volume.name, i.lun)

    def disconnect(self, host: str, volume: str) -> None:
        if not any(c.host.lower() == host.lower() for c in self.connections(volume)):
            return
        _check(self.client.delete_connections(host_names=[host], volume_names=[volume]),
               f"disconnect from host {host}", volume)

    # -- block differences -----------------------------------------------------------------
    def diff(self, name: str, base: str | None, block_size: int = 65536, offset: int = 0,
             length: int | None = None) -> list[tuple[int, int]]:
        if length is None:
            length = self._size_of(name) - offset
        kwargs = {"base_name": base} if base else {}
        resp = self.client.get_volumes_diff(names=[name], block_size=block_size, segment_offset=offset,
                                            segment_length=length, **kwargs)
        return [(i.offset, i.length) for i in _check(resp, "volume diff", name)]

    def _size_of(self, name: str) -> int:
        if "." in name:
            snaps = _check(self.client.get_volume_snapshots(names=[name]), "get snapshot", name)
            return snaps[0].provisioned
        return self.get_volume(name).size
