"""REST 2.x front end (py-pure-client). Shapes follow flasharray-rest.md §3."""

from __future__ import annotations

import base64
import fnmatch
import re
import secrets
import time
from collections.abc import Callable

from . import errors
from .array import Array
from .http import Request, Response

SESSION_IDLE_S = 30 * 60
FILTER_RE = re.compile(r"^\s*(name|source\.name)\s*=\s*'([^']*)'\s*$")


class Sessions:
    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}

    def new(self) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic()
        return token

    def valid(self, token: str | None) -> bool:
        seen = self._tokens.get(token or "")
        if seen is None or time.monotonic() - seen > SESSION_IDLE_S:
            return False
        self._tokens[token] = time.monotonic()
        return True

    def drop(self, token: str | None) -> None:
        self._tokens.pop(token or "", None)


def ref(name: str | None, id_: str | None = None) -> dict | None:
    if name is None:
        return None
    return {"name": name, "id": id_} if id_ else {"name": name}


class Rest2:
    def __init__(self, array: Array):
        self.array = array
        self.sessions = Sessions()
        a = array
        self.routes: dict[tuple[str, str], Callable[[Request], object]] = {
            ("GET", "arrays"): lambda r: [self.fmt_array()],
            ("GET", "volumes"): lambda r: [self.fmt_volume(v) for v in
                                           a.volumes(r.qlist("names"), r.qbool("destroyed"))],
            ("POST", "volumes"): self.post_volumes,
            ("PATCH", "volumes"): self.patch_volumes,
            ("DELETE", "volumes"): lambda r: [a.eradicate_volume(n) for n in self.names(r)] and None,
            ("GET", "volumes/diff"): self.get_diff,
            ("GET", "volume-snapshots"): lambda r: [self.fmt_snapshot(s) for s in a.snapshots(
                r.qlist("names"), r.qlist("source_names"), r.qbool("destroyed"))],
            ("POST", "volume-snapshots"): lambda r: [self.fmt_snapshot(s) for s in a.snapshot_volumes(
                self.names(r, "source_names"), r.json().get("suffix"))],
            ("PATCH", "volume-snapshots"): self.patch_snapshots,
            ("DELETE", "volume-snapshots"): lambda r: [a.eradicate_snapshot(n) for n in self.names(r)] and None,
            ("GET", "protection-groups"): lambda r: [self.fmt_pgroup(p) for p in
                                                     a.pgroups(r.qlist("names"), r.qbool("destroyed"))],
            ("POST", "protection-groups"): lambda r: [self.fmt_pgroup(a.create_pgroup(n)) for n in self.names(r)],
            ("PATCH", "protection-groups"): lambda r: [self.fmt_pgroup(a.update_pgroup(n, r.json()))
                                                      for n in self.names(r)],
            ("DELETE", "protection-groups"): lambda r: [a.eradicate_pgroup(n) for n in self.names(r)] and None,
            ("GET", "protection-groups/volumes"): self.get_pg_volumes,
            ("POST", "protection-groups/volumes"): lambda r: [m for g in self.names(r, "group_names")
                                                              for m in a.add_pgroup_volumes(
                                                                  g, self.names(r, "member_names"))],
            ("DELETE", "protection-groups/volumes"): lambda r: [a.remove_pgroup_volumes(
                g, self.names(r, "member_names")) for g in self.names(r, "group_names")] and None,
            ("GET", "protection-groups/hosts"): self.get_pg_hosts,
            ("POST", "protection-groups/hosts"): lambda r: [m for g in self.names(r, "group_names")
                                                            for m in a.add_pgroup_hosts(
                                                                g, self.names(r, "member_names"))],
            ("DELETE", "protection-groups/hosts"): lambda r: [a.remove_pgroup_hosts(
                g, self.names(r, "member_names")) for g in self.names(r, "group_names")] and None,
            ("GET", "protection-groups/targets"): self.get_pg_targets,
            ("POST", "protection-groups/targets"): lambda r: self.targets(r, add=self.names(r, "member_names")),
            ("PATCH", "protection-groups/targets"): lambda r: self.targets(r, allowed=r.json().get("allowed")),
            ("DELETE", "protection-groups/targets"): lambda r: self.targets(
                r, remove=self.names(r, "member_names")) and None,
            ("GET", "protection-group-snapshots"): lambda r: [self.fmt_pgsnap(p) for p in a.pgsnaps(
                r.qlist("names"), r.qlist("source_names"), r.qbool("destroyed"))],
            ("POST", "protection-group-snapshots"): self.post_pgsnaps,
            ("PATCH", "protection-group-snapshots"): self.patch_pgsnaps,
            ("DELETE", "protection-group-snapshots"): lambda r: [a.eradicate_pgsnap(n)
                                                                 for n in self.names(r)] and None,
            ("GET", "hosts"): lambda r: [self.fmt_host(h) for h in a.hosts(r.qlist("names"))],
            ("POST", "hosts"): self.post_hosts,
            ("PATCH", "hosts"): self.patch_hosts,
            ("DELETE", "hosts"): lambda r: [a.delete_host(n) for n in self.names(r)] and None,
            ("GET", "connections"): lambda r: [self.fmt_connection(c) for c in a.connections(
                r.qlist("host_names"), r.qlist("volume_names"))],
            ("POST", "connections"): self.post_connections,
            ("DELETE", "connections"): self.delete_connections,
        }

    # -- entry point -----------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.path == "login" and req.method == "POST":
            return self.login(req)
        if req.path == "logout" and req.method == "POST":
            self.sessions.drop(req.headers.get("x-auth-token"))
            return Response(200, {})
        route = self.routes.get((req.method, req.path))
        if route is None:
            return Response(404, {"errors": [{"message": f"Unknown path: {req.method} /{req.path}"}]})
        if not self.sessions.valid(req.headers.get("x-auth-token")):
            return Response(401, {"errors": [{"message": "Authentication required: missing or expired session."}]})
        with self.array.lock:
            self.array.expire()
            items = route(req)
        if req.method == "DELETE":
            return Response(200, None)
        if req.method == "GET":
            return self.page(req, items)
        return Response(200, {"items": items})

    @staticmethod
    def error(err: errors.ApiError) -> Response:
        return Response(err.status, {"errors": [{"context": err.context, "message": err.message}]})

    def login(self, req: Request) -> Response:
        token = req.headers.get("api-token")
        body = req.json() if req.body else {}
        data = self.array.store.data
        ok = (token and secrets.compare_digest(token, data["api_token"])) or (
            body.get("username") == "pureuser" and body.get("password") == data["password"])
        if not ok:
            return Response(401, {"errors": [{"message": "Invalid credentials: the API token is not valid."}]})
        return Response(200, {"items": [{"username": "pureuser"}]}, {"x-auth-token": self.sessions.new()})

    def page(self, req: Request, items: list) -> Response:
        items = self.filter_sort(req, items)
        total = len(items)
        token = req.q("continuation_token")
        start = int(base64.urlsafe_b64decode(token).decode()) if token else (req.qint("offset", 0) or 0)
        limit = req.qint("limit")
        end = total if limit is None else min(total, start + limit)
        more = end < total
        next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if more else None
        headers = {"x-next-token": next_token} if next_token else {}
        return Response(200, {"continuation_token": next_token, "more_items_remaining": more,
                              "total_item_count": total, "items": items[start:end]}, headers)

    @staticmethod
    def filter_sort(req: Request, items: list) -> list:
        flt = req.q("filter")
        if flt:
            m = FILTER_RE.match(flt)
            if not m:
                raise errors.invalid("unsupported filter: only name='pattern' is supported.", flt)
            field, pattern = m.groups()
            get = (lambda i: i.get("name")) if field == "name" else (lambda i: (i.get("source") or {}).get("name"))
            items = [i for i in items if get(i) is not None and fnmatch.fnmatchcase(get(i), pattern)]
        for key in reversed((req.q("sort") or "").split(",")):
            if key:
                field = key.lstrip("-")
                items = sorted(items, key=lambda i, f=field: (i.get(f) is None, i.get(f)), reverse=key[0] == "-")
        return items

    def names(self, req: Request, key: str = "names") -> list[str]:
        found = req.qlist(key)
        if not found:
            raise errors.invalid(f"Missing required query parameter: {key}.")
        return found

    # -- handlers --------------------------------------------------------------------------
    def post_volumes(self, req: Request) -> list:
        body = req.json()
        overwrite = bool(req.qbool("overwrite"))
        pg = req.qlist("add_to_protection_group_names") or []
        for g in pg:  # every group must exist before anything is created
            self.array.pgroup(g, allow_destroyed=False)
        out = []
        for name in self.names(req):
            if body.get("source"):
                vol = self.array.copy_volume(body["source"].get("name") or "", name, overwrite)
                for g in pg:
                    self.array.add_pgroup_volumes(g, [name])
            elif "provisioned" in body:
                vol = self.array.create_volume(name, body["provisioned"], pg)
            else:
                raise errors.invalid("Either provisioned or source must be given.", name)
            out.append(self.fmt_volume(vol))
        return out

    def patch_volumes(self, req: Request) -> list:
        body, a, out = req.json(), self.array, []
        for name in self.names(req):
            if body.get("destroyed") is True:
                vol = a.destroy_volume(name)
            elif body.get("destroyed") is False:
                vol = a.recover_volume(name)
            else:
                vol = a.volume(name)
            if body.get("provisioned") is not None:
                vol = a.resize_volume(vol["name"], body["provisioned"], bool(req.qbool("truncate")))
            if body.get("name"):
                vol = a.rename_volume(vol["name"], body["name"])
            out.append(self.fmt_volume(vol))
        return out

    def patch_snapshots(self, req: Request) -> list:
        body, a, out = req.json(), self.array, []
        for name in self.names(req):
            if body.get("destroyed") is True:
                snap = a.destroy_snapshot(name)
            elif body.get("destroyed") is False:
                snap = a.recover_snapshot(name)
            else:
                snap = a.snapshot(name)
            if body.get("name"):
                snap = a.rename_snapshot(snap["name"], body["name"])
            out.append(self.fmt_snapshot(snap))
        return out

    def get_diff(self, req: Request) -> list:
        names = self.names(req)
        if len(names) != 1:
            raise errors.invalid("volumes/diff takes exactly one name.")
        base = req.q("base_name")
        if base is None and req.q("base_id"):
            base = self.by_id(req.q("base_id"))
        block_size, length = req.qint("block_size"), req.qint("segment_length")
        if block_size is None or length is None:
            raise errors.invalid("block_size and segment_length are required.")
        return self.array.diff(names[0], base, block_size, req.qint("segment_offset", 0), length)

    def by_id(self, id_: str) -> str:
        for kind in ("volumes", "snapshots"):
            for obj in self.array.store.table(kind).values():
                if obj["id"] == id_:
                    return obj["name"]
        raise errors.not_found("Volume", id_)

    def get_pg_volumes(self, req: Request) -> list:
        a = self.array
        groups = a.pgroups(req.qlist("group_names"))
        members = {m.lower() for m in req.qlist("member_names") or []}
        return [a.member(pg, v) for pg in groups for v in pg["volumes"] if not members or v.lower() in members]

    def get_pg_hosts(self, req: Request) -> list:
        groups = self.array.pgroups(req.qlist("group_names"))
        return [{"group": {"id": pg["id"], "name": pg["name"]}, "member": {"name": h}}
                for pg in groups for h in pg["hosts"]]

    def get_pg_targets(self, req: Request) -> list:
        return [self.fmt_target(pg, t) for pg in self.array.pgroups(req.qlist("group_names"))
                for t in pg["targets"]]

    def targets(self, req: Request, add=(), remove=(), allowed=None) -> list:
        out = []
        for g in self.names(req, "group_names"):
            pg = self.array.set_targets(g, add, remove, allowed)
            out += [self.fmt_target(pg, t) for t in pg["targets"]]
        return out

    def post_pgsnaps(self, req: Request) -> list:
        snaps = self.array.snapshot_pgroups(
            self.names(req, "source_names"), req.json().get("suffix"), bool(req.qbool("replicate_now")),
            bool(req.qbool("replicate")), bool(req.qbool("apply_retention")))
        return [self.fmt_pgsnap(p) for p in snaps]

    def patch_pgsnaps(self, req: Request) -> list:
        body = req.json()
        out = []
        for name in self.names(req):
            ps = self.array.pgsnap(name)
            if body.get("destroyed") is not None:
                ps = self.array.set_pgsnap_destroyed(name, bool(body["destroyed"]))
            out.append(self.fmt_pgsnap(ps))
        return out

    def post_hosts(self, req: Request) -> list:
        b = req.json()
        return [self.fmt_host(self.array.create_host(n, b.get("wwns") or [], b.get("iqns") or [],
                                                     b.get("nqns") or [], b.get("personality")))
                for n in self.names(req)]

    def patch_hosts(self, req: Request) -> list:
        b = req.json()
        add = {k: b.get(f"add_{k}") for k in ("wwns", "iqns", "nqns")}
        remove = {k: b.get(f"remove_{k}") for k in ("wwns", "iqns", "nqns")}
        replace = {k: b.get(k) for k in ("wwns", "iqns", "nqns")}
        return [self.fmt_host(self.array.update_host(n, add, remove, replace, b.get("name"), b.get("personality")))
                for n in self.names(req)]

    def post_connections(self, req: Request) -> list:
        hosts, vols = self.names(req, "host_names"), self.names(req, "volume_names")
        if len(hosts) > 1 and len(vols) > 1:
            raise errors.invalid("Connect several volumes to one host, or one volume to several hosts, not both.")
        lun = req.json().get("lun")
        return [self.fmt_connection(self.array.connect(h, v, lun)) for h in hosts for v in vols]

    def delete_connections(self, req: Request) -> None:
        for h in self.names(req, "host_names"):
            for v in self.names(req, "volume_names"):
                self.array.disconnect(h, v)

    # -- object shapes ---------------------------------------------------------------------
    def fmt_array(self) -> dict:
        info = self.array.info
        return {"id": info["id"], "name": info["name"], "os": "Purity//FA", "version": info["version"],
                "capacity": self.array.pool.pool_size, "parity": 1.0, "banner": "", "console_lock_enabled": False,
                "time_zone": "UTC", "space": {"total_physical": 0}}

    def space(self, obj: dict) -> dict:
        used = self.array.pool.used_bytes(obj["serial"])
        return {"data_reduction": 1.0, "snapshots": 0, "thin_provisioning": 1.0, "total_physical": used,
                "total_provisioned": obj["provisioned"], "total_reduction": 1.0, "unique": used, "virtual": used,
                "shared": None, "system": None, "total_used": used, "used_provisioned": obj["provisioned"]}

    def fmt_volume(self, v: dict) -> dict:
        conns = len(self.array.connections(volumes=[v["name"]]))
        return {"id": v["id"], "name": v["name"], "connection_count": conns, "created": v["created"],
                "destroyed": v["destroyed"], "time_remaining": self.array.time_remaining_ms(v),
                "provisioned": v["provisioned"], "serial": v["serial"], "source": ref(v["source"], v["source_id"]),
                "subtype": "regular", "pod": None, "volume_group": None,
                "qos": {"bandwidth_limit": None, "iops_limit": None},
                "priority_adjustment": {"priority_adjustment_operator": "+", "priority_adjustment_value": 0},
                "priority": 0, "promotion_status": "promoted", "requested_promotion_state": "promoted",
                "host_encryption_key_status": "none", "space": self.space(v)}

    def fmt_snapshot(self, s: dict) -> dict:
        return {"id": s["id"], "name": s["name"], "suffix": s["suffix"], "created": s["created"],
                "destroyed": s["destroyed"], "time_remaining": self.array.time_remaining_ms(s),
                "provisioned": s["provisioned"], "serial": s["serial"], "source": ref(s["source"], s["source_id"]),
                "pod": None, "volume_group": None, "space": self.space(s)}

    def fmt_pgroup(self, p: dict) -> dict:
        info = self.array.info
        return {"id": p["id"], "name": p["name"], "destroyed": p["destroyed"],
                "time_remaining": self.array.time_remaining_ms(p), "is_local": True, "pod": None,
                "source": {"id": info["id"], "name": info["name"]}, "host_count": len(p["hosts"]),
                "host_group_count": len(p["hgroups"]), "volume_count": len(p["volumes"]),
                "target_count": len(p["targets"]), "snapshot_schedule": p["snapshot_schedule"],
                "replication_schedule": p["replication_schedule"], "source_retention": p["source_retention"],
                "target_retention": p["target_retention"], "retention_lock": "unlocked",
                "eradication_config": {"manual_eradication": "all-enabled"}, "space": {"snapshots": 0}}

    def fmt_pgsnap(self, p: dict) -> dict:
        return {"id": p["id"], "name": p["name"], "suffix": p["suffix"], "created": p["created"],
                "destroyed": p["destroyed"], "time_remaining": self.array.time_remaining_ms(p),
                "source": ref(p["source"], p["source_id"]), "pod": None,
                "eradication_config": {"manual_eradication": "all-enabled"}}

    @staticmethod
    def fmt_target(pg: dict, t: dict) -> dict:
        return {"group": {"id": pg["id"], "name": pg["name"]},
                "member": {"name": t["name"], "resource_type": "remote-arrays"},
                "allowed": t["allowed"], "status": "replicating" if t["allowed"] else "disallowed"}

    def fmt_host(self, h: dict) -> dict:
        return {"name": h["name"], "iqns": h["iqns"], "wwns": h["wwns"], "nqns": h["nqns"],
                "connection_count": len(self.array.connections(hosts=[h["name"]])), "host_group": None,
                "personality": h["personality"], "preferred_arrays": [], "is_local": True, "vlan": "any",
                "destroyed": False}

    def fmt_connection(self, c: dict) -> dict:
        vol = self.array.volume(c["volume"])
        return {"host": {"name": c["host"]}, "host_group": None, "volume": {"id": vol["id"], "name": vol["name"]},
                "lun": c["lun"], "nsid": None, "protocol_endpoint": None}
