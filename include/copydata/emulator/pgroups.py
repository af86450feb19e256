"""Protection groups, their members, targets, schedules and crash-consistent snapshots."""

from __future__ import annotations

from . import errors
from .store import now_ms
from .validate import check_name, check_suffix

DEFAULT_SNAPSHOT_SCHEDULE = {"enabled": False, "frequency": 3600 * 1000, "at": None}
DEFAULT_REPLICATION_SCHEDULE = {"enabled": False, "frequency": 4 * 3600 * 1000, "at": None,
                                "blackout": {"start": None, "end": None}}
DEFAULT_RETENTION = {"all_for_sec": 86400, "per_day": 4, "days": 7}
MEMBER_KINDS = ("volumes", "hosts", "hgroups")


class PgroupsMixin:
    def pgroup(self, name: str, allow_destroyed: bool = True) -> dict:
        pg = self.store.get("pgroups", name)
        if pg is None:
            raise errors.not_found("Protection group", name)
        if pg["destroyed"] and not allow_destroyed:
            raise errors.destroyed("Protection group", name)
        return pg

    def pgroups(self, names: list[str] | None = None, destroyed: bool | None = None) -> list[dict]:
        found = [self.pgroup(n) for n in names] if names else sorted(
            self.store.table("pgroups").values(), key=lambda p: p["created"])
        return [p for p in found if destroyed is None or p["destroyed"] == destroyed]

    def create_pgroup(self, name: str, volumes=None, hosts=None, hgroups=None, targets=None) -> dict:
        check_name("protection group", name)
        if self.store.get("pgroups", name):
            raise errors.exists("Protection group", name)
        given = [k for k, v in zip(MEMBER_KINDS, (volumes, hosts, hgroups), strict=True) if v]
        if len(given) > 1:
            raise errors.invalid("A protection group holds one kind of member: volumes, hosts or host groups.", name)
        pg = {"id": self.new_id(), "name": name, "created": now_ms(), "destroyed": False, "destroyed_at": None,
              "volumes": [], "hosts": [], "hgroups": [], "targets": [],
              "snapshot_schedule": dict(DEFAULT_SNAPSHOT_SCHEDULE),
              "replication_schedule": {**DEFAULT_REPLICATION_SCHEDULE, "blackout": {"start": None, "end": None}},
              "source_retention": dict(DEFAULT_RETENTION), "target_retention": dict(DEFAULT_RETENTION)}
        self.store.put("pgroups", pg)
        if volumes:
            self.add_pgroup_volumes(name, volumes)
        if hosts:
            self.add_pgroup_hosts(name, hosts)
        for t in targets or []:
            pg["targets"].append({"name": t, "allowed": True})
        self.commit()
        return pg

    def add_pgroup_volumes(self, name: str, volumes: list[str]) -> list[dict]:
        pg = self.pgroup(name, allow_destroyed=False)
        if pg["hosts"] or pg["hgroups"]:
            raise errors.invalid("Protection group already holds hosts; it cannot also hold volumes.", name)
        vols = [self.volume(v, allow_destroyed=False) for v in volumes]
        for v in vols:
            if v["name"].lower() in (m.lower() for m in pg["volumes"]):
                raise errors.ApiError("Volume already belongs to protection group.", v["name"])
        pg["volumes"].extend(v["name"] for v in vols)
        self.commit()
        return [self.member(pg, v["name"]) for v in vols]

    def remove_pgroup_volumes(self, name: str, volumes: list[str]) -> None:
        pg = self.pgroup(name)
        for v in volumes:
            if v.lower() not in (m.lower() for m in pg["volumes"]):
                raise errors.invalid("Volume does not belong to protection group.", v)
        drop = {v.lower() for v in volumes}
        pg["volumes"] = [m for m in pg["volumes"] if m.lower() not in drop]
        self.commit()

    def add_pgroup_hosts(self, name: str, hosts: list[str]) -> list[dict]:
        pg = self.pgroup(name, allow_destroyed=False)
        if pg["volumes"]:
            raise errors.invalid("Protection group already holds volumes; it cannot also hold hosts.", name)
        for h in hosts:
            self.host(h)
            if h.lower() in (m.lower() for m in pg["hosts"]):
                raise errors.ApiError("Host already belongs to protection group.", h)
        pg["hosts"].extend(hosts)
        self.commit()
        return [{"group": {"id": pg["id"], "name": pg["name"]}, "member": {"name": h}} for h in hosts]

    def remove_pgroup_hosts(self, name: str, hosts: list[str]) -> None:
        pg = self.pgroup(name)
        drop = {h.lower() for h in hosts}
        pg["hosts"] = [m for m in pg["hosts"] if m.lower() not in drop]
        self.commit()

    def member(self, pg: dict, vol_name: str) -> dict:
        vol = self.volume(vol_name)
        return {"group": {"id": pg["id"], "name": pg["name"]},
                "member": {"id": vol["id"], "name": vol["name"], "destroyed": vol["destroyed"]}}

    def member_volumes(self, pg: dict) -> list[dict]:
        """The live volumes a snapshot of pg covers: its volumes, or those connected to its hosts."""
        if pg["volumes"]:
            names = pg["volumes"]
        else:
            hosts = {h.lower() for h in pg["hosts"]}
            names = sorted({c["volume"] for c in self.store.connections if c["host"].lower() in hosts})
        vols = [self.store.get("volumes", n) for n in names]
        return [v for v in vols if v and not v["destroyed"]]

    def set_targets(self, name: str, add=(), remove=(), allowed: bool | None = None) -> dict:
        pg = self.pgroup(name, allow_destroyed=False)
        present = {t["name"].lower() for t in pg["targets"]}
        for t in add:
            if t.lower() in present:
                raise errors.ApiError(f"Protection group already includes target {t}.", t)
            pg["targets"].append({"name": t, "allowed": True})
        drop = {t.lower() for t in remove}
        pg["targets"] = [t for t in pg["targets"] if t["name"].lower() not in drop]
        if allowed is not None:
            for t in pg["targets"]:
                t["allowed"] = allowed
        self.commit()
        return pg

    def update_pgroup(self, name: str, changes: dict) -> dict:
        """Schedules, retention, rename and destroy/recover, from either API (REST 2 units)."""
        pg = self.pgroup(name)
        for key in ("snapshot_schedule", "replication_schedule", "source_retention", "target_retention"):
            if changes.get(key):
                pg[key].update({k: v for k, v in changes[key].items() if v is not None})
        if "destroyed" in changes and changes["destroyed"] is not None:
            self._set_pgroup_destroyed(pg, bool(changes["destroyed"]))
        if changes.get("name") and changes["name"].lower() != name.lower():
            check_name("protection group", changes["name"])
            if self.store.get("pgroups", changes["name"]):
                raise errors.exists("Protection group", changes["name"])
            self.store.pop("pgroups", name)
            pg["name"] = changes["name"]
            self.store.put("pgroups", pg)
        self.commit()
        return pg

    def _set_pgroup_destroyed(self, pg: dict, value: bool) -> None:
        if pg["destroyed"] == value:
            raise (errors.destroyed("Protection group", pg["name"]) if value
                   else errors.not_destroyed("Protection group", pg["name"]))
        self.mark_destroyed(pg, value)
        for ps in self._pgsnaps_of(pg):
            if ps["destroyed"] != value:
                self._set_pgsnap_destroyed(ps, value)

    def eradicate_pgroup(self, name: str) -> None:
        pg = self.pgroup(name)
        if not pg["destroyed"]:
            raise errors.not_destroyed("Protection group", name, "Destroy it before eradicating it.")
        self._eradicate_pgroup(pg)
        self.commit()

    def _eradicate_pgroup(self, pg: dict) -> None:
        for ps in self._pgsnaps_of(pg):
            self._eradicate_pgsnap(ps)
        self.store.pop("pgroups", pg["name"])

    # -- protection-group snapshots --------------------------------------------------------
    def _pgsnaps_of(self, pg: dict) -> list[dict]:
        return [p for p in self.store.table("pgsnaps").values() if p["source_id"] == pg["id"]]

    def pgsnap(self, name: str) -> dict:
        ps = self.store.get("pgsnaps", name)
        if ps is None:
            raise errors.not_found("Protection group snapshot", name)
        return ps

    def pgsnaps(self, names=None, sources=None, destroyed: bool | None = None) -> list[dict]:
        found = [self.pgsnap(n) for n in names] if names else sorted(
            self.store.table("pgsnaps").values(), key=lambda p: (p["created"], p["name"]))
        if sources:
            ids = {self.pgroup(s)["id"] for s in sources}
            found = [p for p in found if p["source_id"] in ids]
        return [p for p in found if destroyed is None or p["destroyed"] == destroyed]

    def snapshot_pgroups(self, sources: list[str], suffix: str | None = None, replicate_now: bool = False,
                         replicate: bool = False, apply_retention: bool = False) -> list[dict]:
        if replicate and replicate_now:
            raise errors.invalid("replicate and replicate_now are mutually exclusive.")
        pgs = [self.pgroup(s, allow_destroyed=False) for s in sources]
        if (replicate or replicate_now) and any(not pg["targets"] for pg in pgs):
            raise errors.invalid("Protection group has no targets to replicate to.", pgs[0]["name"])
        if suffix is not None:
            check_suffix(suffix)
        suffix = suffix or self.store.next_suffix()
        for pg in pgs:
            if self.store.get("pgsnaps", f"{pg['name']}.{suffix}"):
                raise errors.exists("Protection group snapshot", f"{pg['name']}.{suffix}")
        members = {pg["id"]: self.member_volumes(pg) for pg in pgs}
        images = [self.pool.path(v["serial"]) for vols in members.values() for v in vols]
        created = now_ms()
        with self.fabric.quiesced(images):
            out = [self._take_pgsnap(pg, suffix, members[pg["id"]], created, apply_retention) for pg in pgs]
        self.commit()
        return out

    def _take_pgsnap(self, pg: dict, suffix: str, vols: list[dict], created: int, retention: bool) -> dict:
        name = f"{pg['name']}.{suffix}"
        snaps = [self._take_snapshot(v, f"{name}.{v['name']}", suffix, name, created) for v in vols]
        ps = {"id": self.new_id(), "name": name, "suffix": suffix, "created": created, "source": pg["name"],
              "source_id": pg["id"], "destroyed": False, "destroyed_at": None, "apply_retention": retention,
              "members": [s["name"] for s in snaps]}
        return self.store.put("pgsnaps", ps)

    def set_pgsnap_destroyed(self, name: str, value: bool) -> dict:
        ps = self.pgsnap(name)
        if ps["destroyed"] == value:
            raise (errors.destroyed("Protection group snapshot", name) if value
                   else errors.not_destroyed("Protection group snapshot", name))
        self._set_pgsnap_destroyed(ps, value)
        self.commit()
        return ps

    def _set_pgsnap_destroyed(self, ps: dict, value: bool) -> None:
        self.mark_destroyed(ps, value)
        for m in ps["members"]:
            snap = self.store.get("snapshots", m)
            if snap:
                self.mark_destroyed(snap, value)

    def eradicate_pgsnap(self, name: str) -> None:
        ps = self.pgsnap(name)
        if not ps["destroyed"]:
            raise errors.not_destroyed("Protection group snapshot", name, "Destroy it before eradicating it.")
        self._eradicate_pgsnap(ps)
        self.commit()

    def _eradicate_pgsnap(self, ps: dict) -> None:
        for m in ps["members"]:
            snap = self.store.get("snapshots", m)
            if snap:
                self._eradicate_snapshot(snap)
        self.store.pop("pgsnaps", ps["name"])
