"""Hosts and host-volume connections. A connection attaches the volume to this machine."""

from __future__ import annotations

from . import errors
from .validate import check_name

MAX_LUN = 4095


def normalize_wwn(wwn: str) -> str:
    return wwn.replace(":", "").upper()


class HostsMixin:
    def host(self, name: str) -> dict:
        h = self.store.get("hosts", name)
        if h is None:
            raise errors.ApiError("Host does not exist.", name)
        return h

    def hosts(self, names: list[str] | None = None) -> list[dict]:
        if names:
            return [self.host(n) for n in names]
        return sorted(self.store.table("hosts").values(), key=lambda h: h["name"].lower())

    def _check_ports_free(self, name: str, wwns: list[str], iqns: list[str], nqns: list[str]) -> None:
        for other in self.store.table("hosts").values():
            if other["name"].lower() == name.lower():
                continue
            for port in set(wwns) & set(other["wwns"]) | set(iqns) & set(other["iqns"]) | \
                    set(nqns) & set(other["nqns"]):
                raise errors.ApiError(f"{port} is already in use by host {other['name']}.", port)

    def create_host(self, name: str, wwns=(), iqns=(), nqns=(), personality: str | None = None) -> dict:
        check_name("host", name)
        if self.store.get("hosts", name):
            raise errors.exists("Host", name)
        wwns = [normalize_wwn(w) for w in wwns]
        self._check_ports_free(name, wwns, list(iqns), list(nqns))
        h = {"name": name, "wwns": wwns, "iqns": list(iqns), "nqns": list(nqns), "personality": personality,
             "host_group": None}
        self.store.put("hosts", h)
        self.commit()
        return h

    def update_host(self, name: str, add=None, remove=None, replace=None, new_name: str | None = None,
                    personality: str | None = None) -> dict:
        """add/remove/replace: {"wwns": [...], "iqns": [...], "nqns": [...]}."""
        h = self.host(name)
        for kind in ("wwns", "iqns", "nqns"):
            norm = normalize_wwn if kind == "wwns" else str
            if replace and replace.get(kind) is not None:
                h[kind] = [norm(x) for x in replace[kind]]
            if add and add.get(kind):
                h[kind] += [norm(x) for x in add[kind] if norm(x) not in h[kind]]
            if remove and remove.get(kind):
                drop = {norm(x) for x in remove[kind]}
                h[kind] = [x for x in h[kind] if x not in drop]
        self._check_ports_free(name, h["wwns"], h["iqns"], h["nqns"])
        if personality is not None:
            h["personality"] = personality
        if new_name and new_name.lower() != name.lower():
            check_name("host", new_name)
            if self.store.get("hosts", new_name):
                raise errors.exists("Host", new_name)
            self.store.pop("hosts", name)
            h["name"] = new_name
            self.store.put("hosts", h)
            for c in self.store.connections:
                if c["host"].lower() == name.lower():
                    c["host"] = new_name
        self.commit()
        return h

    def delete_host(self, name: str) -> None:
        h = self.host(name)
        if self.connections(hosts=[name]):
            raise errors.ApiError("Host cannot be deleted due to existing connections.", name)
        self.store.pop("hosts", h["name"])
        self.commit()

    # -- connections -----------------------------------------------------------------------
    def connections(self, hosts: list[str] | None = None, volumes: list[str] | None = None) -> list[dict]:
        hs = {self.host(h)["name"].lower() for h in hosts} if hosts else None
        vs = {self.volume(v)["name"].lower() for v in volumes} if volumes else None
        return [c for c in self.store.connections
                if (hs is None or c["host"].lower() in hs) and (vs is None or c["volume"].lower() in vs)]

    def _free_lun(self, host: str) -> int:
        used = {c["lun"] for c in self.store.connections if c["host"].lower() == host.lower()}
        for lun in range(1, MAX_LUN + 1):
            if lun not in used:
                return lun
        raise errors.invalid("No free LUN on host.", host)

    def connect(self, host: str, volume: str, lun: int | None = None) -> dict:
        h = self.host(host)
        vol = self.volume(volume, allow_destroyed=False)
        if self.connections(hosts=[host], volumes=[volume]):
            raise errors.ApiError("Connection already exists.", volume)
        if lun is None:
            lun = self._free_lun(h["name"])
        elif not 1 <= lun <= MAX_LUN:
            raise errors.invalid(f"Invalid LUN {lun}: LUNs run from 1 to {MAX_LUN}.", str(lun))
        elif any(c["lun"] == lun for c in self.connections(hosts=[host])):
            raise errors.invalid(f"LUN {lun} is already in use on host {h['name']}.", str(lun))
        conn = {"host": h["name"], "volume": vol["name"], "lun": lun}
        self.fabric.attach(vol["serial"], self.pool.path(vol["serial"]))
        self.store.connections.append(conn)
        self.commit()
        return conn

    def disconnect(self, host: str, volume: str) -> dict:
        h = self.host(host)
        vol = self.volume(volume)
        found = self.connections(hosts=[host], volumes=[volume])
        if not found:
            raise errors.ApiError(f"Volume is not connected to host {h['name']}.", volume)
        self.store.connections.remove(found[0])
        if not self.connections(volumes=[volume]):
            self.fabric.detach(vol["serial"], self.pool.path(vol["serial"]))
        self.commit()
        return found[0]

    def device_of(self, volume: str) -> str | None:
        """The local block device of a connected volume (the emulator's fabric)."""
        vol = self.volume(volume)
        return self.fabric.device(vol["serial"])
