"""REST 1.x front end (purestorage 1.19). Shapes and rules follow flasharray-rest.md §2.

Every request carries a JSON body, GET and DELETE included; query parameters are
merged under it. Only 200 counts as success, and every 200 refreshes the session cookie.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from http.cookies import SimpleCookie

from . import errors
from .array import Array
from .http import Request, Response
from .rest2 import Sessions

UNITS = {"S": 512, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
SIZE_RE = re.compile(r"^(\d+)([SKMGTP]?)$", re.IGNORECASE)
NUMERIC_ARGS = {"size", "lun", "block_size", "offset", "length", "snap_frequency", "snap_at", "replicate_frequency",
                "replicate_at", "all_for", "per_day", "days", "target_all_for", "target_per_day", "target_days"}
ROUTES: list[tuple[str, re.Pattern, str]] = [
    (m, re.compile(p), fn) for m, p, fn in [
        ("GET", r"^array$", "get_array"),
        ("GET", r"^volume$", "list_volumes"),
        ("POST", r"^volume$", "snap_volumes"),
        ("GET", r"^volume/(?P<v>[^/]+)$", "get_volume"),
        ("POST", r"^volume/(?P<v>[^/]+)$", "create_volume"),
        ("PUT", r"^volume/(?P<v>[^/]+)$", "put_volume"),
        ("DELETE", r"^volume/(?P<v>[^/]+)$", "delete_volume"),
        ("GET", r"^volume/(?P<v>[^/]+)/diff$", "diff"),
        ("GET", r"^volume/(?P<v>[^/]+)/host$", "volume_hosts"),
        ("GET", r"^volume/(?P<v>[^/]+)/hgroup$", "volume_hgroups"),
        ("POST", r"^volume/(?P<v>[^/]+)/pgroup/(?P<pg>[^/]+)$", "add_to_pgroup"),
        ("DELETE", r"^volume/(?P<v>[^/]+)/pgroup/(?P<pg>[^/]+)$", "remove_from_pgroup"),
        ("GET", r"^pgroup$", "list_pgroups"),
        ("POST", r"^pgroup$", "snap_pgroups"),
        ("GET", r"^pgroup/(?P<pg>[^/]+)$", "get_pgroup"),
        ("POST", r"^pgroup/(?P<pg>[^/]+)$", "create_pgroup"),
        ("PUT", r"^pgroup/(?P<pg>[^/]+)$", "put_pgroup"),
        ("DELETE", r"^pgroup/(?P<pg>[^/]+)$", "delete_pgroup"),
        ("GET", r"^host$", "list_hosts"),
        ("GET", r"^host/(?P<h>[^/]+)$", "get_host"),
        ("POST", r"^host/(?P<h>[^/]+)$", "create_host"),
        ("PUT", r"^host/(?P<h>[^/]+)$", "put_host"),
        ("DELETE", r"^host/(?P<h>[^/]+)$", "delete_host"),
        ("GET", r"^host/(?P<h>[^/]+)/volume$", "host_volumes"),
        ("POST", r"^host/(?P<h>[^/]+)/volume/(?P<v>[^/]+)$", "connect"),
        ("DELETE", r"^host/(?P<h>[^/]+)/volume/(?P<v>[^/]+)$", "disconnect"),
    ]
]


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_size(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = SIZE_RE.match(str(value))
    if not m:
        raise errors.invalid("Invalid size: expected bytes or a number with S, K, M, G, T or P.", str(value))
    return int(m.group(1)) * UNITS.get(m.group(2).upper(), 1)


def query_args(query: dict[str, str]) -> dict:
    """Query parameters (other REST 1 clients send GET arguments there) typed like JSON body values."""
    out: dict = {}
    for key, raw in query.items():
        if raw.lower() in ("true", "false"):
            out[key] = raw.lower() == "true"
        elif key in NUMERIC_ARGS and raw.isdigit():
            out[key] = int(raw)
        else:
            out[key] = raw
    return out


def names_arg(value) -> list[str] | None:
    if value is None:
        return None
    return value.split(",") if isinstance(value, str) else list(value)


class Rest1:
    def __init__(self, array: Array):
        self.array = array
        self.sessions = Sessions()

    @staticmethod
    def error(err: errors.ApiError) -> Response:
        return Response(err.status, [{"msg": err.message, "ctx": err.context or ""}])

    def handle(self, req: Request) -> Response:
        body = {**query_args(req.query), **req.json()}
        if req.path == "auth/apitoken" and req.method == "POST":
            return self.apitoken(body)
        if req.path == "auth/session":
            return self.session(req, body)
        cookie = self.cookie(req)
        if not self.sessions.valid(cookie):
            return Response(401, [{"msg": "Session not authenticated or expired.", "ctx": ""}])
        for method, pattern, fn in ROUTES:
            m = pattern.match(req.path)
            if m and method == req.method:
                handler: Callable = getattr(self, fn)
                with self.array.lock:
                    self.array.expire()
                    result = handler(body, **m.groupdict())
                return self.ok(result, cookie)
        return Response(404, [{"msg": f"Unknown path: {req.method} {req.path}", "ctx": ""}])

    @staticmethod
    def ok(body, session: str) -> Response:
        return Response(200, body, {"Set-Cookie": f"session={session}; Path=/api; HttpOnly"})

    @staticmethod
    def cookie(req: Request) -> str | None:
        jar = SimpleCookie(req.headers.get("cookie", ""))
        return jar["session"].value if "session" in jar else None

    def apitoken(self, body: dict) -> Response:
        data = self.array.store.data
        if body.get("username") != "pureuser" or body.get("password") != data["password"]:
            return Response(401, [{"msg": "invalid credentials", "ctx": ""}])
        return Response(200, {"api_token": data["api_token"]})

    def session(self, req: Request, body: dict) -> Response:
        if req.method == "DELETE":
            self.sessions.drop(self.cookie(req))
            return Response(200, {"username": "pureuser"})
        token = body.get("api_token") or ""
        if req.method != "POST" or not secrets.compare_digest(token, self.array.store.data["api_token"]):
            return Response(401, [{"msg": "invalid api_token", "ctx": ""}])
        return self.ok({"username": "pureuser"}, self.sessions.new())

    # -- shapes ----------------------------------------------------------------------------
    def fmt_volume(self, v: dict, pending: bool = False) -> dict:
        out = {"created": iso(v["created"]), "name": v["name"], "serial": v["serial"], "size": v["provisioned"],
               "source": v["source"]}
        if pending:
            tr = self.array.time_remaining_ms(v)
            out["time_remaining"] = None if tr is None else tr // 1000
        return out

    def fmt_pgroup(self, p: dict) -> dict:
        return {"hgroups": p["hgroups"] or None, "hosts": p["hosts"] or None, "name": p["name"],
                "source": self.array.info["name"], "volumes": p["volumes"] or None,
                "targets": [{"name": t["name"], "allowed": t["allowed"]} for t in p["targets"]] or None}

    def fmt_pgsnap(self, p: dict, pending: bool = False) -> dict:
        out = {"created": iso(p["created"]), "name": p["name"], "source": p["source"]}
        if pending:
            tr = self.array.time_remaining_ms(p)
            out["time_remaining"] = None if tr is None else tr // 1000
        return out

    @staticmethod
    def fmt_schedule(p: dict) -> dict:
        s, r = p["snapshot_schedule"], p["replication_schedule"]
        blackout = r.get("blackout") or {}
        return {"name": p["name"], "snap_enabled": s["enabled"], "snap_frequency": s["frequency"] // 1000,
                "snap_at": s["at"], "replicate_enabled": r["enabled"],
                "replicate_frequency": r["frequency"] // 1000, "replicate_at": r["at"],
                "replicate_blackout": ({"start": blackout["start"] // 1000, "end": blackout["end"] // 1000}
                                       if blackout.get("start") is not None else None)}

    @staticmethod
    def fmt_retention(p: dict) -> dict:
        s, t = p["source_retention"], p["target_retention"]
        return {"name": p["name"], "all_for": s["all_for_sec"], "per_day": s["per_day"], "days": s["days"],
                "target_all_for": t["all_for_sec"], "target_per_day": t["per_day"], "target_days": t["days"]}

    @staticmethod
    def fmt_host(h: dict) -> dict:
        return {"hgroup": None, "iqn": h["iqns"], "wwn": h["wwns"], "nqn": h["nqns"], "name": h["name"],
                "personality": h["personality"]}

    # -- array and volumes -----------------------------------------------------------------
    def get_array(self, body: dict) -> dict:
        info = self.array.info
        return {"array_name": info["name"], "id": info["id"], "revision": info["revision"],
                "version": info["version"]}

    def _pending_filter(self, objs: list[dict], body: dict) -> tuple[list[dict], bool]:
        if body.get("pending_only"):
            return [o for o in objs if o["destroyed"]], True
        if body.get("pending"):
            return objs, True
        return [o for o in objs if not o["destroyed"]], False

    def list_volumes(self, body: dict):
        a = self.array
        if body.get("connect"):
            return [{"host": c["host"], "lun": c["lun"], "name": c["volume"],
                     "size": a.volume(c["volume"])["provisioned"]} for c in a.connections()]
        names = names_arg(body.get("names"))
        objs = a.snapshots(names) if body.get("snap") else a.volumes(names)
        objs, pending = self._pending_filter(objs, body)
        return [self.fmt_volume(o, pending) for o in objs]

    def snap_volumes(self, body: dict):
        if not body.get("snap"):
            raise errors.invalid("POST volume without a name takes snap=true and a source list.")
        snaps = self.array.snapshot_volumes(names_arg(body.get("source")) or [], body.get("suffix"))
        return [self.fmt_volume(s) for s in snaps]

    def get_volume(self, body: dict, v: str):
        a = self.array
        if body.get("snap"):
            objs, pending = self._pending_filter(a.snapshots(sources=[v]), body)
            return [self.fmt_volume(s, pending) for s in objs]
        if body.get("space"):
            img = a.image(v, allow_destroyed=True)
            used = a.pool.used_bytes(img["serial"])
            return {"name": img["name"], "size": img["provisioned"], "volumes": used, "snapshots": 0,
                    "total": used, "data_reduction": 1.0, "thin_provisioning": 1.0, "total_reduction": 1.0}
        img = a.image(v, allow_destroyed=bool(body.get("pending")))
        return self.fmt_volume(img, bool(body.get("pending")))

    def create_volume(self, body: dict, v: str):
        if body.get("source"):
            return self.fmt_volume(self.array.copy_volume(body["source"], v, bool(body.get("overwrite"))))
        if "size" not in body:
            raise errors.invalid("Either size or source is required.", v)
        return self.fmt_volume(self.array.create_volume(v, parse_size(body["size"])))

    def put_volume(self, body: dict, v: str):
        a = self.array
        if body.get("action") == "recover":
            obj = a.recover_snapshot(v) if "." in v else a.recover_volume(v)
            return {"name": obj["name"]}
        if "size" in body:
            vol = a.resize_volume(v, parse_size(body["size"]), bool(body.get("truncate")))
            return {"name": vol["name"], "size": vol["provisioned"]}
        if body.get("name"):
            obj = a.rename_snapshot(v, body["name"]) if "." in v else a.rename_volume(v, body["name"])
            return {"name": obj["name"]}
        raise errors.invalid("Nothing to change: expected action, size or name.", v)

    def delete_volume(self, body: dict, v: str):
        a = self.array
        if body.get("eradicate"):
            a.eradicate_snapshot(v) if "." in v else a.eradicate_volume(v)
        else:
            a.destroy_snapshot(v) if "." in v else a.destroy_volume(v)
        return {"name": v}

    def diff(self, body: dict, v: str):
        img = self.array.image(v)
        return self.array.diff(v, body.get("base"), int(body.get("block_size", 512)),
                               int(body.get("offset", 0)), int(body.get("length", img["provisioned"])))

    def volume_hosts(self, body: dict, v: str):
        size = self.array.volume(v)["provisioned"]
        return [{"host": c["host"], "lun": c["lun"], "name": c["volume"], "size": size}
                for c in self.array.connections(volumes=[v])]

    def volume_hgroups(self, body: dict, v: str):
        self.array.volume(v)
        return []

    def add_to_pgroup(self, body: dict, v: str, pg: str):
        self.array.add_pgroup_volumes(pg, [v])
        return {"name": v, "protection_group": pg}

    def remove_from_pgroup(self, body: dict, v: str, pg: str):
        self.array.remove_pgroup_volumes(pg, [v])
        return {"name": v, "protection_group": pg}

    # -- protection groups -----------------------------------------------------------------
    def list_pgroups(self, body: dict):
        a = self.array
        if body.get("snap"):
            objs, pending = self._pending_filter(a.pgsnaps(names_arg(body.get("names"))), body)
            return [self.fmt_pgsnap(p, pending) for p in objs]
        objs, _ = self._pending_filter(a.pgroups(names_arg(body.get("names"))), body)
        if body.get("schedule"):
            return [self.fmt_schedule(p) for p in objs]
        if body.get("retention"):
            return [self.fmt_retention(p) for p in objs]
        return [self.fmt_pgroup(p) for p in objs]

    def snap_pgroups(self, body: dict):
        if not body.get("snap"):
            raise errors.invalid("POST pgroup without a name takes snap=true and a source list.")
        snaps = self.array.snapshot_pgroups(names_arg(body.get("source")) or [], body.get("suffix"),
                                            bool(body.get("replicate_now")), bool(body.get("replicate")),
                                            bool(body.get("apply_retention")))
        return [self.fmt_pgsnap(p) for p in snaps]

    def get_pgroup(self, body: dict, pg: str):
        a = self.array
        if "." in pg:
            return self.fmt_pgsnap(a.pgsnap(pg), bool(body.get("pending")))
        if body.get("snap"):
            objs, pending = self._pending_filter(a.pgsnaps(sources=[pg]), body)
            return [self.fmt_pgsnap(p, pending) for p in objs]
        obj = a.pgroup(pg)
        if obj["destroyed"] and not body.get("pending"):
            raise errors.destroyed("Protection group", pg)
        if body.get("schedule"):
            return self.fmt_schedule(obj)
        if body.get("retention"):
            return self.fmt_retention(obj)
        return self.fmt_pgroup(obj)

    def create_pgroup(self, body: dict, pg: str):
        return self.fmt_pgroup(self.array.create_pgroup(
            pg, names_arg(body.get("vollist")), names_arg(body.get("hostlist")),
            names_arg(body.get("hgrouplist")), names_arg(body.get("targetlist"))))

    def put_pgroup(self, body: dict, pg: str):
        a = self.array
        if body.get("action") == "recover":
            obj = a.set_pgsnap_destroyed(pg, False) if "." in pg else a.update_pgroup(pg, {"destroyed": False})
            return {"name": obj["name"]}
        # Mixed attribute groups are all applied; the reply is that of the first group touched.
        members = self._put_members(body, pg)
        sched, ret = self._schedule_changes(body), self._retention_changes(body)
        if sched or ret:
            a.update_pgroup(pg, {**sched, **ret})
        obj = a.update_pgroup(pg, {"name": body["name"]}) if body.get("name") else a.pgroup(pg)
        for touched, fmt in ((members, self.fmt_pgroup), (sched, self.fmt_schedule), (ret, self.fmt_retention),
                             (body.get("name"), lambda p: {"name": p["name"]})):
            if touched:
                return fmt(obj)
        raise errors.invalid("Nothing to change.", pg)

    def _put_members(self, body: dict, pg: str) -> bool:
        a, touched = self.array, False
        obj = a.pgroup(pg, allow_destroyed=False)
        if body.get("vollist") is not None:
            a.remove_pgroup_volumes(pg, list(obj["volumes"]))
            a.add_pgroup_volumes(pg, names_arg(body["vollist"]))
            touched = True
        if body.get("addvollist"):
            a.add_pgroup_volumes(pg, names_arg(body["addvollist"]))
            touched = True
        if body.get("remvollist"):
            a.remove_pgroup_volumes(pg, names_arg(body["remvollist"]))
            touched = True
        if body.get("hostlist") is not None or body.get("addhostlist"):
            if body.get("hostlist") is not None:
                a.remove_pgroup_hosts(pg, list(obj["hosts"]))
            a.add_pgroup_hosts(pg, names_arg(body.get("hostlist") or body.get("addhostlist")))
            touched = True
        if body.get("remhostlist"):
            a.remove_pgroup_hosts(pg, names_arg(body["remhostlist"]))
            touched = True
        if body.get("targetlist") is not None:
            a.set_targets(pg, remove=[t["name"] for t in obj["targets"]])
            a.set_targets(pg, add=names_arg(body["targetlist"]))
            touched = True
        for key, kw in (("addtargetlist", "add"), ("remtargetlist", "remove")):
            if body.get(key):
                a.set_targets(pg, **{kw: names_arg(body[key])})
                touched = True
        return touched

    @staticmethod
    def _schedule_changes(body: dict) -> dict:
        snap = {"enabled": body.get("snap_enabled"),
                "frequency": body["snap_frequency"] * 1000 if body.get("snap_frequency") else None,
                "at": body.get("snap_at")}
        rep = {"enabled": body.get("replicate_enabled"),
               "frequency": body["replicate_frequency"] * 1000 if body.get("replicate_frequency") else None,
               "at": body.get("replicate_at")}
        if body.get("replicate_blackout"):
            b = body["replicate_blackout"]
            rep["blackout"] = {"start": b["start"] * 1000, "end": b["end"] * 1000}
        out = {}
        if any(v is not None for v in snap.values()):
            out["snapshot_schedule"] = snap
        if any(v is not None for v in rep.values()):
            out["replication_schedule"] = rep
        return out

    @staticmethod
    def _retention_changes(body: dict) -> dict:
        src = {"all_for_sec": body.get("all_for"), "per_day": body.get("per_day"), "days": body.get("days")}
        tgt = {"all_for_sec": body.get("target_all_for"), "per_day": body.get("target_per_day"),
               "days": body.get("target_days")}
        out = {}
        if any(v is not None for v in src.values()):
            out["source_retention"] = src
        if any(v is not None for v in tgt.values()):
            out["target_retention"] = tgt
        return out

    def delete_pgroup(self, body: dict, pg: str):
        a = self.array
        if "." in pg:
            if body.get("eradicate"):
                a.eradicate_pgsnap(pg)
            else:
                a.set_pgsnap_destroyed(pg, True)
        elif body.get("eradicate"):
            a.eradicate_pgroup(pg)
        else:
            a.update_pgroup(pg, {"destroyed": True})
        return {"name": pg}

    # -- hosts and connections -------------------------------------------------------------
    def list_hosts(self, body: dict):
        return [self.fmt_host(h) for h in self.array.hosts(names_arg(body.get("names")))]

    def get_host(self, body: dict, h: str):
        return self.fmt_host(self.array.host(h))

    def create_host(self, body: dict, h: str):
        return self.fmt_host(self.array.create_host(h, names_arg(body.get("wwnlist")) or [],
                                                    names_arg(body.get("iqnlist")) or [],
                                                    names_arg(body.get("nqnlist")) or [], body.get("personality")))

    def put_host(self, body: dict, h: str):
        add = {"wwns": names_arg(body.get("addwwnlist")), "iqns": names_arg(body.get("addiqnlist")),
               "nqns": names_arg(body.get("addnqnlist"))}
        remove = {"wwns": names_arg(body.get("remwwnlist")), "iqns": names_arg(body.get("remiqnlist")),
                  "nqns": names_arg(body.get("remnqnlist"))}
        replace = {"wwns": names_arg(body.get("wwnlist")), "iqns": names_arg(body.get("iqnlist")),
                   "nqns": names_arg(body.get("nqnlist"))}
        host = self.array.update_host(h, add, remove, replace, body.get("name"), body.get("personality"))
        return self.fmt_host(host)

    def delete_host(self, body: dict, h: str):
        self.array.delete_host(h)
        return {"name": h}

    def host_volumes(self, body: dict, h: str):
        if body.get("shared"):
            self.array.host(h)
            return []
        return [{"hgroup": None, "lun": c["lun"], "name": c["host"], "vol": c["volume"]}
                for c in self.array.connections(hosts=[h])]

    def connect(self, body: dict, h: str, v: str):
        c = self.array.connect(h, v, body.get("lun"))
        return {"lun": c["lun"], "name": c["host"], "vol": c["volume"]}

    def disconnect(self, body: dict, h: str, v: str):
        c = self.array.disconnect(h, v)
        return {"name": c["host"], "vol": c["volume"]}
