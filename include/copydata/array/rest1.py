"""ArrayClient over REST 1.x with the frozen `purestorage` 1.19 SDK, for arrays without REST 2.9+."""

from __future__ import annotations

import contextlib
import json
import warnings

from .types import ArrayError, Connection, PgroupSnapshot, Volume, from_iso

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import purestorage


def _message(err: purestorage.PureHTTPError) -> tuple[str, str | None]:
    try:
        body = json.loads(err.text)
        first = body[0] if isinstance(body, list) else body
        return first.get("msg") or err.text, first.get("ctx")
    except (ValueError, AttributeError, IndexError):
        return err.text, None


class Rest1Array:
    api = "rest1"

    def __init__(self, target: str, api_token: str, ca_file: str | None = None, verify_tls: bool = True,
                 version: str | None = None):
        try:
            self.fa = purestorage.FlashArray(target, api_token=api_token, rest_version=version,
                                             verify_https=verify_tls, ssl_cert=ca_file)
        except purestorage.PureHTTPError as err:
            raise ArrayError("login", _message(err)[0], err.code) from None
        except purestorage.PureError as err:
            raise ArrayError("login", str(err)) from None
        self.api_version = self.fa._rest_version

    def _call(self, operation: str, context: str | None, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except purestorage.PureHTTPError as err:
            message, ctx = _message(err)
            raise ArrayError(operation, message, err.code, ctx or context) from None

    def close(self) -> None:
        with contextlib.suppress(purestorage.PureError):
            self.fa.invalidate_cookie()

    def array_name(self) -> str:
        return self._call("get array", None, self.fa.get)["array_name"]

    # -- volumes ---------------------------------------------------------------------------
    @staticmethod
    def _volume(d: dict) -> Volume:
        return Volume(name=d["name"], serial=d["serial"], size=d["size"], source=d.get("source"),
                      destroyed=d.get("time_remaining") is not None, created=from_iso(d.get("created")))

    def get_volume(self, name: str) -> Volume:
        return self._volume(self._call("get volume", name, self.fa.get_volume, name, pending=True))

    def find_volume(self, name: str) -> Volume | None:
        try:
            return self.get_volume(name)
        except ArrayError as err:
            if err.not_found:
                return None
            raise

    def create_volume(self, name: str, size: int) -> Volume:
        return self._volume(self._call("create volume", name, self.fa.create_volume, name, size))

    def copy_volume(self, source: str, name: str, overwrite: bool = False) -> Volume:
        self._call(f"copy {source} to volume", name, self.fa.copy_volume, source, name, overwrite=overwrite)
        return self.get_volume(name)

    def resize_volume(self, name: str, size: int) -> Volume:
        self._call("resize volume", name, self.fa.extend_volume, name, size)
        return self.get_volume(name)

    def destroy_volume(self, name: str) -> None:
        vol = self.find_volume(name)
        if vol is None or vol.destroyed:
            return
        self._call("destroy volume", name, self.fa.destroy_volume, name)

    def recover_volume(self, name: str) -> None:
        self._call("recover volume", name, self.fa.recover_volume, name)

    def eradicate_volume(self, name: str) -> None:
        if self.find_volume(name) is None:
            return
        self.destroy_volume(name)
        self._call("eradicate volume", name, self.fa.eradicate_volume, name)

    # -- protection groups -----------------------------------------------------------------
    def pgroup_volumes(self, name: str) -> list[str]:
        return self._call("get protection group", name, self.fa.get_pgroup, name).get("volumes") or []

    def ensure_pgroup(self, name: str, volumes: list[str]) -> None:
        try:
            present = {v.lower() for v in self.pgroup_volumes(name)}
        except ArrayError as err:
            if not err.not_found:
                raise
            self._call("create protection group", name, self.fa.create_pgroup, name, vollist=volumes)
            return
        missing = [v for v in volumes if v.lower() not in present]
        if missing:
            self._call("add volumes to protection group", name, self.fa.set_pgroup, name, addvollist=missing)

    def _pgsnap(self, d: dict) -> PgroupSnapshot:
        pgroup, suffix = d["name"].split(".", 1)
        members = [v for v in self.fa.list_volumes(snap=True) if v["name"].startswith(d["name"] + ".")]
        return PgroupSnapshot(name=d["name"], pgroup=pgroup, suffix=suffix, created=from_iso(d["created"]),
                              destroyed=d.get("time_remaining") is not None,
                              volumes={m["source"]: m["name"] for m in members})

    def snapshot_pgroup(self, pgroup: str, suffix: str | None = None) -> PgroupSnapshot:
        if suffix:
            for d in self.fa.get_pgroup(pgroup, snap=True):
                if d["name"] == f"{pgroup}.{suffix}":
                    return self._pgsnap(d)
        kwargs = {"suffix": suffix} if suffix else {}
        d = self._call("snapshot protection group", pgroup, self.fa.create_pgroup_snapshot, pgroup, **kwargs)
        return self._pgsnap(d)

    def find_pgroup_snapshot(self, name: str) -> PgroupSnapshot | None:
        found = [d for d in self._call("list pgroup snapshots", name, self.fa.list_pgroups, snap=True, pending=True)
                 if d["name"] == name]
        return self._pgsnap(found[0]) if found else None

    def pgroup_snapshots(self, pgroup: str) -> list[PgroupSnapshot]:
        items = self._call("list protection group snapshots", pgroup, self.fa.get_pgroup, pgroup, snap=True)
        return [self._pgsnap(d) for d in items]

    def destroy_pgroup_snapshot(self, name: str, eradicate: bool = False) -> None:
        pending = self._call("list pgroup snapshots", name, self.fa.list_pgroups, snap=True, pending=True)
        found = [d for d in pending if d["name"] == name]
        if not found:
            return
        if found[0].get("time_remaining") is None:
            self._call("destroy protection group snapshot", name, self.fa.destroy_pgroup, name)
        if eradicate:
            self._call("eradicate protection group snapshot", name, self.fa.eradicate_pgroup, name)

    def destroy_pgroup(self, name: str) -> None:
        """Destroy and eradicate a protection group (its snapshots go with it); nothing to do when it is gone."""
        def named(**kwargs) -> list[dict]:
            items = self._call("list protection groups", name, self.fa.list_pgroups, **kwargs)
            return [d for d in items if d["name"].lower() == name.lower()]

        if not named(pending=True):
            return
        if not named(pending_only=True):
            self._call("destroy protection group", name, self.fa.destroy_pgroup, name)
        self._call("eradicate protection group", name, self.fa.eradicate_pgroup, name)

    # -- hosts and connections -------------------------------------------------------------
    def ensure_host(self, name: str, iqns: list[str] | None = None) -> None:
        try:
            self.fa.get_host(name)
        except purestorage.PureHTTPError:
            self._call("create host", name, self.fa.create_host, name, iqnlist=iqns or [])

    def connections(self, volume: str) -> list[Connection]:
        items = self._call("list connections", volume, self.fa.list_volume_private_connections, volume)
        return [Connection(d["host"], d["name"], d["lun"]) for d in items]

    def connect(self, host: str, volume: str) -> Connection:
        for c in self.connections(volume):
            if c.host.lower() == host.lower():
                return c
        d = self._call(f"connect to host {host}", volume, self.fa.connect_host, host, volume)
        return Connection(d["name"], d["vol"], d["lun"])

    def disconnect(self, host: str, volume: str) -> None:
        if not any(c.host.lower() == host.lower() for c in self.connections(volume)):
            return
        self._call(f"disconnect from host {host}", volume, self.fa.disconnect_host, host, volume)

    # -- block differences -----------------------------------------------------------------
    def diff(self, name: str, base: str | None, block_size: int = 65536, offset: int = 0,
             length: int | None = None) -> list[tuple[int, int]]:
        if length is None:
            length = self._call("get volume", name, self.fa.get_volume, name)["size"] - offset
        kwargs = {"base": base} if base else {}
        items = self._call("volume diff", name, self.fa.list_volume_block_differences, name,
                           block_size=block_size, offset=offset, length=length, **kwargs)
        return [(d["offset"], d["length"]) for d in items]
