"""Volumes, volume snapshots, copies and block differences."""

from __future__ import annotations

from . import errors
from .store import now_ms
from .validate import check_name, check_size, check_suffix


class VolumesMixin:
    # -- lookups ---------------------------------------------------------------------------
    def volume(self, name: str, allow_destroyed: bool = True) -> dict:
        vol = self.store.get("volumes", name)
        if vol is None:
            raise errors.not_found("Volume", name)
        if vol["destroyed"] and not allow_destroyed:
            raise errors.destroyed("Volume", name)
        return vol

    def snapshot(self, name: str, allow_destroyed: bool = True) -> dict:
        snap = self.store.get("snapshots", name)
        if snap is None:
            raise errors.ApiError("No such volume or snapshot. Snapshot does not exist.", name)
        if snap["destroyed"] and not allow_destroyed:
            raise errors.destroyed("Snapshot", name)
        return snap

    def image(self, name: str, allow_destroyed: bool = False) -> dict:
        """A volume or a snapshot, by name."""
        if "." in name:
            return self.snapshot(name, allow_destroyed)
        return self.volume(name, allow_destroyed)

    def volumes(self, names: list[str] | None = None, destroyed: bool | None = None) -> list[dict]:
        if names:
            found = [self.volume(n) for n in names]
        else:
            found = sorted(self.store.table("volumes").values(), key=lambda v: v["created"])
        return [v for v in found if destroyed is None or v["destroyed"] == destroyed]

    def snapshots(self, names: list[str] | None = None, sources: list[str] | None = None,
                  destroyed: bool | None = None) -> list[dict]:
        if names:
            found = [self.snapshot(n) for n in names]
        else:
            found = sorted(self.store.table("snapshots").values(), key=lambda s: (s["created"], s["name"]))
        if sources:
            wanted = {self.volume(s)["name"].lower() for s in sources}
            found = [s for s in found if s["source"].lower() in wanted]
        return [s for s in found if destroyed is None or s["destroyed"] == destroyed]

    def _name_taken(self, name: str) -> None:
        if self.store.get("volumes", name):
            raise errors.exists("Volume", name)

    # -- volumes ---------------------------------------------------------------------------
    def create_volume(self, name: str, size: int, pgroups: list[str] | None = None) -> dict:
        check_name("volume", name)
        check_size(size)
        self._name_taken(name)
        for pg in pgroups or []:
            self.pgroup(pg, allow_destroyed=False)
        serial = self.store.next_serial()
        vol = {"id": self.new_id(), "name": name, "serial": serial, "provisioned": size, "created": now_ms(),
               "source": None, "source_id": None, "destroyed": False, "destroyed_at": None}
        self.pool.create(serial, size)
        self.store.put("volumes", vol)
        for pg in pgroups or []:
            self.add_pgroup_volumes(pg, [name])
        self.commit()
        return vol

    def copy_volume(self, source: str, name: str, overwrite: bool = False) -> dict:
        check_name("volume", name)
        src = self.image(source)
        origin = self.store.get("volumes", src["source"]) if "." in src["name"] else src
        target = self.store.get("volumes", name)
        if target is not None:
            if not overwrite:
                raise errors.exists("Volume", name)
            if target["destroyed"]:
                raise errors.destroyed("Volume", name)
            if target["serial"] == src["serial"]:
                return target
            self.pool.clone(src["serial"], target["serial"])
            self.fabric.refresh(self.pool.path(target["serial"]))
            target["provisioned"] = src["provisioned"]
        else:
            serial = self.store.next_serial()
            self.pool.clone(src["serial"], serial)
            target = {"id": self.new_id(), "name": name, "serial": serial, "provisioned": src["provisioned"],
                      "created": now_ms(), "destroyed": False, "destroyed_at": None}
            self.store.put("volumes", target)
        target["source"] = origin["name"] if origin else None
        target["source_id"] = origin["id"] if origin else None
        self.commit()
        return target

    def resize_volume(self, name: str, size: int, truncate: bool = False) -> dict:
        vol = self.volume(name, allow_destroyed=False)
        check_size(size)
        if size < vol["provisioned"] and not truncate:
            raise errors.invalid("Volume size cannot be reduced without truncate=true.", name)
        self.pool.resize(vol["serial"], size)
        self.fabric.refresh(self.pool.path(vol["serial"]))
        vol["provisioned"] = size
        self.commit()
        return vol

    def rename_volume(self, name: str, new: str) -> dict:
        vol = self.volume(name)
        check_name("volume", new)
        if new.lower() != name.lower():
            self._name_taken(new)
        self.store.pop("volumes", name)
        vol["name"] = new
        self.store.put("volumes", vol)
        for snap in [s for s in self.store.table("snapshots").values() if s["source_id"] == vol["id"]]:
            self.store.pop("snapshots", snap["name"])
            snap["source"] = new
            if not snap.get("pgsnap"):
                snap["name"] = f"{new}.{snap['suffix']}"
            self.store.put("snapshots", snap)
        for conn in self.store.connections:
            if conn["volume"].lower() == name.lower():
                conn["volume"] = new
        for pg in self.store.table("pgroups").values():
            pg["volumes"] = [new if v.lower() == name.lower() else v for v in pg["volumes"]]
        self.commit()
        return vol

    def destroy_volume(self, name: str) -> dict:
        vol = self.volume(name)
        if vol["destroyed"]:
            raise errors.destroyed("Volume", name)
        hosts = [c["host"] for c in self.store.connections if c["volume"].lower() == name.lower()]
        if hosts:
            raise errors.invalid(f"Volume cannot be destroyed: it is connected to host {hosts[0]}.", name)
        self.mark_destroyed(vol, True)
        for snap in self._own_snapshots(vol):
            if not snap["destroyed"]:
                self.mark_destroyed(snap, True)
        self.commit()
        return vol

    def recover_volume(self, name: str) -> dict:
        vol = self.volume(name)
        if not vol["destroyed"]:
            raise errors.not_destroyed("Volume", name)
        since = vol["destroyed_at"]
        self.mark_destroyed(vol, False)
        for snap in self._own_snapshots(vol):
            if snap["destroyed"] and snap["destroyed_at"] >= since:
                self.mark_destroyed(snap, False)
        self.commit()
        return vol

    def eradicate_volume(self, name: str) -> None:
        vol = self.volume(name)
        if not vol["destroyed"]:
            raise errors.not_destroyed("Volume", name, "Destroy it before eradicating it.")
        self._eradicate_volume(vol)
        self.commit()

    def _own_snapshots(self, vol: dict) -> list[dict]:
        return [s for s in self.store.table("snapshots").values()
                if s["source_id"] == vol["id"] and not s.get("pgsnap")]

    def _eradicate_volume(self, vol: dict) -> None:
        for snap in self._own_snapshots(vol):
            self._eradicate_snapshot(snap)
        for pg in self.store.table("pgroups").values():
            pg["volumes"] = [v for v in pg["volumes"] if v.lower() != vol["name"].lower()]
        self.pool.delete(vol["serial"])
        self.store.pop("volumes", vol["name"])

    # -- snapshots -------------------------------------------------------------------------
    def snapshot_volumes(self, sources: list[str], suffix: str | None = None) -> list[dict]:
        vols = [self.volume(s, allow_destroyed=False) for s in sources]
        if suffix is not None:
            check_suffix(suffix)
        suffix = suffix or self.store.next_suffix()
        for v in vols:
            if self.store.get("snapshots", f"{v['name']}.{suffix}"):
                raise errors.exists("Snapshot", f"{v['name']}.{suffix}")
        with self.fabric.quiesced([self.pool.path(v["serial"]) for v in vols]):
            created = now_ms()  # one point in time for every snapshot of the call
            snaps = [self._take_snapshot(v, f"{v['name']}.{suffix}", suffix, None, created) for v in vols]
        self.commit()
        return snaps

    def _take_snapshot(self, vol: dict, name: str, suffix: str, pgsnap: str | None, created: int) -> dict:
        serial = self.store.next_serial()
        self.pool.clone(vol["serial"], serial)
        snap = {"id": self.new_id(), "name": name, "suffix": suffix, "serial": serial,
                "provisioned": vol["provisioned"], "created": created, "source": vol["name"],
                "source_id": vol["id"], "destroyed": False, "destroyed_at": None, "pgsnap": pgsnap}
        return self.store.put("snapshots", snap)

    def destroy_snapshot(self, name: str) -> dict:
        snap = self.snapshot(name)
        if snap["destroyed"]:
            raise errors.destroyed("Snapshot", name)
        self.mark_destroyed(snap, True)
        self.commit()
        return snap

    def recover_snapshot(self, name: str) -> dict:
        snap = self.snapshot(name)
        if not snap["destroyed"]:
            raise errors.not_destroyed("Snapshot", name)
        if self.volume(snap["source"])["destroyed"]:
            raise errors.destroyed("Volume", snap["source"])
        self.mark_destroyed(snap, False)
        self.commit()
        return snap

    def rename_snapshot(self, name: str, new_suffix: str) -> dict:
        snap = self.snapshot(name)
        new_suffix = new_suffix.rsplit(".", 1)[-1]
        check_suffix(new_suffix)
        new = name.rsplit(".", 1)[0] + "." + new_suffix
        if self.store.get("snapshots", new):
            raise errors.exists("Snapshot", new)
        self.store.pop("snapshots", name)
        snap["name"], snap["suffix"] = new, new_suffix
        self.store.put("snapshots", snap)
        self.commit()
        return snap

    def eradicate_snapshot(self, name: str) -> None:
        snap = self.snapshot(name)
        if not snap["destroyed"]:
            raise errors.not_destroyed("Snapshot", name, "Destroy it before eradicating it.")
        self._eradicate_snapshot(snap)
        self.commit()

    def _eradicate_snapshot(self, snap: dict) -> None:
        self.pool.delete(snap["serial"])
        self.store.pop("snapshots", snap["name"])

    # -- block differences -----------------------------------------------------------------
    def diff(self, name: str, base: str | None, block_size: int, offset: int, length: int) -> list[dict]:
        img = self.image(name)
        base_img = self.image(base) if base else None
        if not isinstance(block_size, int) or block_size <= 0 or block_size % 512:
            raise errors.invalid("Invalid block_size: it must be a positive multiple of 512.", str(block_size))
        if offset % block_size:
            raise errors.invalid("Invalid segment_offset: it must be a multiple of block_size.", str(offset))
        if length <= 0:
            raise errors.invalid("Invalid segment_length: it must be positive.", str(length))
        end = min(offset + length, img["provisioned"])
        if end <= offset:
            return []
        ranges = self.pool.diff(img["serial"], base_img["serial"] if base_img else None,
                                offset, end - offset, block_size)
        return [{"offset": o, "length": n} for o, n in ranges]
