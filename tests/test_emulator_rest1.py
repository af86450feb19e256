"""Conformance of the emulator's REST 1.x with the real purestorage 1.19 SDK (flasharray-rest.md §2)."""

from __future__ import annotations

import contextlib
import os

import purestorage
import pytest
from purestorage import PureError, PureHTTPError
from pypureclient.flasharray import Reference, VolumePatch, VolumePost

from conftest import device_path, running_emulator, write_device

MiB = 2**20
GiB = 2**30


def fails(call, fragment: str, *args, **kwargs) -> PureHTTPError:
    """Run call(*args, **kwargs); it must raise PureHTTPError 400 whose body holds fragment."""
    with pytest.raises(PureHTTPError) as info:
        call(*args, **kwargs)
    assert info.value.code == 400, info.value.text
    assert fragment in info.value.text, info.value.text
    return info.value


def iqn(name: str) -> str:
    return f"iqn.2024-01.org.example:{name}"


# -- session ------------------------------------------------------------------------------------
def test_get_array(rest1):
    assert rest1.get_rest_version() == "1.19"
    info = rest1.get()
    assert info["array_name"] == "emu-fa1" and set(info) >= {"id", "revision", "version"}


def test_bad_token_fails_at_construction(emulator):
    with pytest.raises(PureHTTPError) as info:
        purestorage.FlashArray(emulator["target"], api_token="not-a-token", verify_https=True,
                               ssl_cert=emulator["ca_file"])
    assert info.value.code == 401


def test_cookie_on_every_200_no_reauthentication(emulator, unique):
    fa = purestorage.FlashArray(emulator["target"], api_token=emulator["api_token"], verify_https=True,
                                ssl_cert=emulator["ca_file"])
    starts = []
    start_session = fa._start_session
    fa._start_session = lambda: starts.append(1) or start_session()
    name = unique("vol")
    calls = [fa.get, fa.list_volumes, lambda: fa.create_volume(name, MiB), lambda: fa.get_volume(name),
             lambda: fa.extend_volume(name, 2 * MiB)]
    for call in calls:
        res = call()
        assert "session=" in res.headers.get("Set-Cookie", ""), "every 200 must carry the session cookie"
        assert fa._cookies.get("session")
    assert starts == [], "a client with a live session must not re-authenticate"
    fa._cookies.clear()  # no cookie: 401, then the SDK opens a session and retries once
    assert fa.get_volume(name)["size"] == 2 * MiB and starts == [1]
    fa.invalidate_cookie()
    assert fa.get_volume(name)["name"] == name and starts == [1, 1]


def test_no_rest1_is_incompatible(tmp_path):
    with running_emulator(tmp_path / "no-rest1", ["--no-rest1"]) as info, \
            pytest.raises(PureError, match="incompatible"):
        purestorage.FlashArray(info["target"], api_token=info["api_token"], verify_https=True,
                               ssl_cert=info["ca_file"])


# -- volumes ------------------------------------------------------------------------------------
def test_create_extend_rename(rest1, unique):
    a, b, new = unique("a"), unique("b"), unique("new")
    va = rest1.create_volume(a, GiB)
    assert va["size"] == GiB and va["source"] is None and va["created"].endswith("Z") and len(va["serial"]) == 24
    assert rest1.create_volume(b, "10G")["size"] == 10 * GiB
    fails(rest1.create_volume, "already exists", a, GiB)
    assert rest1.extend_volume(a, 2 * GiB) == {"name": a, "size": 2 * GiB}
    fails(rest1.extend_volume, "truncate", a, GiB)
    assert rest1.truncate_volume(a, GiB)["size"] == GiB
    rest1.create_snapshot(a, suffix="before")
    assert rest1.rename_volume(a, new) == {"name": new}
    assert rest1.get_volume(new)["serial"] == va["serial"]
    assert [s["name"] for s in rest1.get_volume(new, snap=True)] == [f"{new}.before"]
    fails(rest1.get_volume, "does not exist", a)


def test_copy_with_and_without_overwrite(rest1, unique):
    src, dst, other = unique("src"), unique("dst"), unique("other")
    s = rest1.create_volume(src, GiB)
    copy = rest1.copy_volume(src, dst)
    assert copy["source"] == src and copy["size"] == GiB and copy["serial"] != s["serial"]
    o = rest1.create_volume(other, 2 * GiB)
    fails(rest1.copy_volume, "already exists", src, other)
    over = rest1.copy_volume(src, other, overwrite=True)
    assert over["serial"] == o["serial"] and over["size"] == GiB and over["source"] == src


def test_snapshots(rest1, unique):
    a, b = unique("a"), unique("b")
    rest1.create_volume(a, GiB)
    rest1.create_volume(b, GiB)
    snap = rest1.create_snapshot(a, suffix="s1")
    assert (snap["name"], snap["source"], snap["size"]) == (f"{a}.s1", a, GiB)
    both = rest1.create_snapshots([a, b], suffix="s2")
    assert [s["name"] for s in both] == [f"{a}.s2", f"{b}.s2"]
    fails(rest1.create_snapshot, "already exists", a, suffix="s1")
    auto = rest1.create_snapshot(a)
    assert auto["name"].rsplit(".", 1)[1].isdigit()
    assert [s["name"] for s in rest1.get_volume(a, snap=True)] == [f"{a}.s1", f"{a}.s2", auto["name"]]
    assert rest1.get_volume(f"{a}.s1")["source"] == a
    assert {f"{a}.s1", f"{b}.s2"} <= {s["name"] for s in rest1.list_volumes(snap=True)}
    assert f"{a}.s1" not in {v["name"] for v in rest1.list_volumes()}

    fails(rest1.eradicate_volume, "not destroyed", f"{a}.s1")
    assert rest1.destroy_volume(f"{a}.s1") == {"name": f"{a}.s1"}
    pending = {s["name"]: s for s in rest1.list_volumes(snap=True, pending_only=True)}
    assert 0 < pending[f"{a}.s1"]["time_remaining"] <= 86400
    assert rest1.recover_volume(f"{a}.s1") == {"name": f"{a}.s1"}
    rest1.destroy_volume(f"{a}.s1")
    assert rest1.eradicate_volume(f"{a}.s1") == {"name": f"{a}.s1"}
    fails(rest1.get_volume, "No such volume or snapshot", f"{a}.s1")


def test_destroy_recover_eradicate(rest1, unique):
    name, live = unique("vol"), unique("live")
    rest1.create_volume(name, GiB)
    rest1.create_volume(live, GiB)
    fails(rest1.eradicate_volume, "not destroyed", name)
    fails(rest1.recover_volume, "not destroyed", name)
    assert rest1.destroy_volume(name) == {"name": name}
    assert name not in {v["name"] for v in rest1.list_volumes()}
    pending = {v["name"]: v for v in rest1.list_volumes(pending=True)}
    assert 0 < pending[name]["time_remaining"] <= 86400
    assert pending[live]["time_remaining"] is None
    pending_only = {v["name"] for v in rest1.list_volumes(pending_only=True)}
    assert name in pending_only and live not in pending_only
    fails(rest1.create_volume, "already exists", name, GiB)
    fails(rest1.get_volume, "has been destroyed", name)
    assert rest1.get_volume(name, pending=True)["time_remaining"] > 0
    assert rest1.recover_volume(name) == {"name": name}
    assert rest1.get_volume(name)["name"] == name
    rest1.destroy_volume(name)
    assert rest1.eradicate_volume(name) == {"name": name}
    fails(rest1.get_volume, "does not exist", name)


def test_block_differences(rest1, unique):
    name = unique("vol")
    rest1.create_volume(name, 16 * MiB)
    rest1.create_snapshot(name, suffix="a")
    rest1.create_snapshot(name, suffix="b")
    assert rest1.list_volume_block_differences(f"{name}.b", base=f"{name}.a", block_size=65536,
                                               length=16 * MiB, offset=0) == []
    assert rest1.list_volume_block_differences(name, block_size=512) == []
    fails(rest1.list_volume_block_differences, "block_size", name, block_size=1000)


@pytest.mark.root
def test_block_differences_after_writes(rest1, emulator, unique):
    host, name = unique("h"), unique("vol")
    rest1.create_host(host, iqnlist=[iqn(host)])
    vol = rest1.create_volume(name, 16 * MiB)
    try:
        rest1.connect_host(host, name)
        write_device(device_path(emulator, vol["serial"]), 0, os.urandom(2 * MiB))
        rest1.create_snapshot(name, suffix="a")
        write_device(device_path(emulator, vol["serial"]), MiB, os.urandom(65536))
        rest1.create_snapshot(name, suffix="b")
    finally:
        rest1.disconnect_host(host, name)
    assert rest1.list_volume_block_differences(f"{name}.b", base=f"{name}.a", block_size=65536,
                                               length=16 * MiB, offset=0) == [{"offset": MiB, "length": 65536}]
    assert rest1.list_volume_block_differences(f"{name}.a", block_size=65536) == [{"offset": 0, "length": 2 * MiB}]


# -- protection groups --------------------------------------------------------------------------
def test_pgroups(rest1, unique):
    pg, v1, v2 = unique("pg"), unique("v1"), unique("v2")
    rest1.create_volume(v1, GiB)
    rest1.create_volume(v2, GiB)
    created = rest1.create_pgroup(pg, vollist=[v1])
    assert created == {"hgroups": None, "hosts": None, "name": pg, "source": "emu-fa1", "targets": None,
                       "volumes": [v1]}
    assert rest1.set_pgroup(pg, addvollist=[v2])["volumes"] == [v1, v2]
    fails(rest1.set_pgroup, "already belongs to", pg, addvollist=[v1])
    assert rest1.set_pgroup(pg, remvollist=[v2])["volumes"] == [v1]
    assert rest1.add_volume(v2, pg) == {"name": v2, "protection_group": pg}
    sched = rest1.set_pgroup(pg, snap_frequency=7200, snap_enabled=True)
    assert (sched["snap_frequency"], sched["snap_enabled"], sched["replicate_frequency"]) == (7200, True, 14400)
    ret = rest1.set_pgroup(pg, all_for=3600, per_day=2, days=3)
    assert (ret["all_for"], ret["per_day"], ret["days"], ret["target_days"]) == (3600, 2, 3, 7)
    assert rest1.get_pgroup(pg, schedule=True)["snap_enabled"] is True
    mixed = rest1.set_pgroup(pg, snap_at=3600, per_day=5)  # one call, two attribute groups: both apply
    assert mixed["snap_at"] == 3600 and rest1.get_pgroup(pg, retention=True)["per_day"] == 5
    assert rest1.get_pgroup(pg, retention=True)["days"] == 3
    assert rest1.set_pgroup(pg, addtargetlist=["arr2"])["targets"] == [{"name": "arr2", "allowed": True}]
    fails(rest1.set_pgroup, "already", pg, addtargetlist=["arr2"])

    snap = rest1.create_pgroup_snapshot(pg, suffix="daily1")
    assert (snap["name"], snap["source"]) == (f"{pg}.daily1", pg)
    members = {s["name"]: s for s in rest1.list_volumes(snap=True)}
    assert members[f"{pg}.daily1.{v1}"]["source"] == v1 and f"{pg}.daily1.{v2}" in members
    assert members[f"{pg}.daily1.{v1}"]["created"] == snap["created"] == members[f"{pg}.daily1.{v2}"]["created"]
    assert f"{pg}.daily1.{v1}" in {s["name"] for s in rest1.get_volume(v1, snap=True)}
    fails(rest1.create_pgroup_snapshot, "already exists", pg, suffix="daily1")
    auto = rest1.create_pgroup_snapshot(pg)
    assert [s["name"] for s in rest1.get_pgroup(pg, snap=True)] == [snap["name"], auto["name"]]
    assert snap["name"] in {s["name"] for s in rest1.list_pgroups(snap=True)}

    fails(rest1.eradicate_pgroup, "not destroyed", snap["name"])
    assert rest1.destroy_pgroup(snap["name"]) == {"name": snap["name"]}
    assert snap["name"] not in {s["name"] for s in rest1.get_pgroup(pg, snap=True)}
    assert rest1.get_pgroup(pg, snap=True, pending=True)[0]["time_remaining"] > 0
    assert rest1.eradicate_pgroup(snap["name"]) == {"name": snap["name"]}
    assert f"{pg}.daily1.{v1}" not in {s["name"] for s in rest1.list_volumes(snap=True, pending=True)}

    assert rest1.destroy_pgroup(pg) == {"name": pg}
    assert pg not in {p["name"] for p in rest1.list_pgroups()}
    assert rest1.recover_pgroup(pg) == {"name": pg}
    rest1.destroy_pgroup(pg)
    assert rest1.eradicate_pgroup(pg) == {"name": pg}
    fails(rest1.get_pgroup, "does not exist", pg)


# -- hosts and connections ----------------------------------------------------------------------
def test_hosts_and_connections(rest1, unique):
    host, v1, v2 = unique("h"), unique("v1"), unique("v2")
    rest1.create_volume(v1, 8 * MiB)
    rest1.create_volume(v2, 8 * MiB)
    h = rest1.create_host(host, iqnlist=[iqn(host)])
    assert (h["name"], h["iqn"], h["wwn"]) == (host, [iqn(host)], [])
    fails(rest1.create_host, "already exists", host)
    fails(rest1.create_host, "already in use", unique("other"), iqnlist=[iqn(host)])
    try:
        assert rest1.connect_host(host, v1) == {"lun": 1, "name": host, "vol": v1}
        assert rest1.connect_host(host, v2, lun=10)["lun"] == 10
        fails(rest1.connect_host, "already exists", host, v1)
        fails(rest1.connect_host, "Host does not exist", unique("ghost"), v1)
        conns = rest1.list_host_connections(host)
        assert conns == [{"hgroup": None, "lun": 1, "name": host, "vol": v1},
                         {"hgroup": None, "lun": 10, "name": host, "vol": v2}]
        assert rest1.list_volume_private_connections(v1)[0]["host"] == host
        fails(rest1.destroy_volume, "connected", v1)
        fails(rest1.delete_host, "cannot be deleted due to existing connections", host)
    finally:
        for v in (v1, v2):
            with contextlib.suppress(PureHTTPError):
                rest1.disconnect_host(host, v)
    fails(rest1.disconnect_host, "is not connected", host, v1)
    assert rest1.list_host_connections(host) == []
    assert rest1.delete_host(host) == {"name": host}
    fails(rest1.get_host, "Host does not exist", host)


def test_unknown_objects(rest1, unique):
    fails(rest1.get_volume, "does not exist", unique("nope"))
    fails(rest1.destroy_volume, "does not exist", unique("nope"))
    fails(rest1.copy_volume, "does not exist", unique("nope"), unique("dst"))
    fails(rest1.get_pgroup, "does not exist", unique("nope"))


def test_query_string_arguments(emulator, unique):
    """Other REST 1 clients (pugo) send GET arguments in the query string: typed like body values."""
    import requests

    base, verify = f"{emulator['url']}/api/1.19", emulator["ca_file"]
    with requests.Session() as s:
        assert s.post(f"{base}/auth/session", json={"api_token": emulator["api_token"]}, verify=verify).ok
        name = unique("vol")
        assert s.post(f"{base}/volume/{name}?size=1048576", verify=verify).json()["size"] == MiB
        listed = s.get(f"{base}/volume?pending_only=false&names={name}", verify=verify).json()
        assert [v["name"] for v in listed] == [name]
        assert s.get(f"{base}/volume?pending_only=true&names={name}", verify=verify).json() == []
        bad = s.get(f"{base}/volume", data=b"{not json", headers={"Content-Type": "application/json"},
                    verify=verify)
        assert bad.status_code == 400 and "msg" in bad.json()[0], "REST 1 errors are a list of {msg, ctx}"


# -- one state behind both APIs -----------------------------------------------------------------
def test_rest1_and_rest2_see_the_same_objects(rest1, rest2, unique):
    a, b, c = unique("a"), unique("b"), unique("c")
    made = rest1.create_volume(a, GiB)
    seen = list(rest2.get_volumes(names=[a]).items)[0]
    assert (seen.serial, seen.provisioned) == (made["serial"], GiB)
    rest1.create_snapshot(a, suffix="s1")
    assert list(rest2.get_volume_snapshots(names=[f"{a}.s1"]).items)[0].source.name == a

    assert rest2.post_volumes(names=[b], volume=VolumePost(source=Reference(name=f"{a}.s1"))).status_code == 200
    assert rest1.get_volume(b)["source"] == a
    assert rest2.patch_volumes(names=[b], volume=VolumePatch(name=c)).status_code == 200
    assert rest1.get_volume(c)["serial"] == list(rest2.get_volumes(names=[c]).items)[0].serial
    rest1.destroy_volume(c)
    assert list(rest2.get_volumes(names=[c]).items)[0].destroyed is True
