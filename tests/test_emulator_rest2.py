"""Conformance of the emulator's REST 2.x with the real py-pure-client SDK (flasharray-rest.md §3)."""

from __future__ import annotations

import os

import pytest
from pypureclient import flasharray
from pypureclient.configuration import Configuration
from pypureclient.exceptions import PureError
from pypureclient.flasharray import (
    HostPatch,
    HostPost,
    ProtectionGroup,
    ProtectionGroupSnapshotPatch,
    ProtectionGroupSnapshotPost,
    Reference,
    RetentionPolicy,
    SnapshotSchedule,
    TargetProtectionGroupPostPatch,
    VolumePatch,
    VolumePost,
    VolumeSnapshotPatch,
    VolumeSnapshotPost,
)

from conftest import device_path, read_device, rest2_session, running_emulator, write_device

MiB = 2**20
GiB = 2**30


def ok(res) -> list:
    """The items of a successful response (asserting 200)."""
    assert res.status_code == 200, getattr(res, "errors", res)
    return list(res.items) if res.items is not None else []


def fails(res, fragment: str) -> None:
    assert res.status_code == 400, res
    assert fragment in res.errors[0].message, res.errors[0].message


def make_volume(fa, name: str, size: int = GiB):
    return ok(fa.post_volumes(names=[name], volume=VolumePost(provisioned=size)))[0]


def make_host(fa, name: str):
    return ok(fa.post_hosts(names=[name], host=HostPost(iqns=[f"iqn.2024-01.org.example:{name}"])))[0]


def connect(fa, host: str, vol: str):
    return ok(fa.post_connections(host_names=[host], volume_names=[vol]))[0]


# -- session, array ----------------------------------------------------------------------------
def test_login_and_arrays(rest2, emulator):
    assert rest2.get_rest_version() == "2.36"
    res = rest2.get_arrays()
    array = ok(res)[0]
    assert array.name == "emu-fa1" and array.os == "Purity//FA"
    assert res.headers is not None and res.headers.x_request_id, "X-Request-ID must be echoed"


def test_expired_session_logs_in_again(emulator):
    import requests

    with rest2_session(emulator) as fa:
        token = fa._api_client.default_headers["x-auth-token"]
        requests.post(f"{emulator['url']}/api/2.36/logout", headers={"x-auth-token": token},
                      verify=emulator["ca_file"])
        assert ok(fa.get_arrays())[0].name == "emu-fa1", "401, then the SDK logs in again and retries"
        assert fa._api_client.default_headers["x-auth-token"] != token


def test_bad_token_fails_at_construction(emulator):
    with pytest.raises(PureError, match="Failed to retrieve session token"):
        flasharray.Client(emulator["target"], api_token="not-a-token",
                          configuration=Configuration(ssl_ca_cert=emulator["ca_file"]), verify_ssl=True)


# -- volumes -----------------------------------------------------------------------------------
def test_volume_create_resize_rename(rest2, unique):
    name, new = unique("vol"), unique("renamed")
    vol = make_volume(rest2, name)
    assert vol.provisioned == GiB and vol.destroyed is False and len(vol.serial) == 24
    assert getattr(vol, "source", None) is None
    assert ok(rest2.patch_volumes(names=[name], volume=VolumePatch(provisioned=2 * GiB)))[0].provisioned == 2 * GiB
    fails(rest2.patch_volumes(names=[name], volume=VolumePatch(provisioned=GiB)), "truncate")
    ok(rest2.patch_volumes(names=[name], volume=VolumePatch(provisioned=GiB), truncate=True))
    renamed = ok(rest2.patch_volumes(names=[name], volume=VolumePatch(name=new)))[0]
    assert (renamed.name, renamed.id, renamed.serial) == (new, vol.id, vol.serial)
    fails(rest2.get_volumes(names=[name]), "does not exist")
    assert ok(rest2.get_volumes(names=[new]))[0].provisioned == GiB


def test_volume_destroy_recover_eradicate(rest2, unique):
    name = unique("vol")
    make_volume(rest2, name)
    fails(rest2.delete_volumes(names=[name]), "not destroyed")
    gone = ok(rest2.patch_volumes(names=[name], volume=VolumePatch(destroyed=True)))[0]
    assert gone.destroyed is True and 0 < gone.time_remaining <= 86400 * 1000
    assert name in {v.name for v in ok(rest2.get_volumes(destroyed=True))}
    assert name in {v.name for v in ok(rest2.get_volumes())}, "an unset destroyed lists both"
    assert name not in {v.name for v in ok(rest2.get_volumes(destroyed=False))}
    fails(rest2.post_volumes(names=[name], volume=VolumePost(provisioned=GiB)), "already exists")
    back = ok(rest2.patch_volumes(names=[name], volume=VolumePatch(destroyed=False)))[0]
    assert back.destroyed is False and getattr(back, "time_remaining", None) is None
    ok(rest2.patch_volumes(names=[name], volume=VolumePatch(destroyed=True)))
    ok(rest2.delete_volumes(names=[name]))
    fails(rest2.get_volumes(names=[name]), "does not exist")


def test_volume_copy_and_overwrite(rest2, unique):
    src, dst, other = unique("src"), unique("dst"), unique("other")
    s = make_volume(rest2, src)
    copy = ok(rest2.post_volumes(names=[dst], volume=VolumePost(source=Reference(name=src))))[0]
    assert copy.source.name == src and copy.provisioned == s.provisioned and copy.serial != s.serial
    make_volume(rest2, other, 2 * GiB)
    fails(rest2.post_volumes(names=[other], volume=VolumePost(source=Reference(name=src))), "already exists")
    before = ok(rest2.get_volumes(names=[other]))[0]
    over = ok(rest2.post_volumes(names=[other], volume=VolumePost(source=Reference(name=src)), overwrite=True))[0]
    assert (over.serial, over.id) == (before.serial, before.id), "overwrite keeps the target's identity"
    assert over.provisioned == s.provisioned and over.source.name == src


def test_create_into_protection_groups(rest2, unique):
    pg1, pg2, vol, copy = unique("pg1"), unique("pg2"), unique("vol"), unique("copy")
    ok(rest2.post_protection_groups(names=[pg1, pg2]))
    ok(rest2.post_volumes(names=[vol], volume=VolumePost(provisioned=MiB), add_to_protection_group_names=[pg1, pg2]))
    ok(rest2.post_volumes(names=[copy], volume=VolumePost(source=Reference(name=vol)),
                          add_to_protection_group_names=[pg2]))
    members = ok(rest2.get_protection_groups_volumes(group_names=[pg1, pg2]))
    assert [(m.group.name, m.member.name) for m in members] == [(pg1, vol), (pg2, vol), (pg2, copy)]
    fails(rest2.post_volumes(names=[unique("v")], volume=VolumePost(provisioned=MiB),
                             add_to_protection_group_names=[unique("nopg")]), "does not exist")


def test_unknown_volume(rest2, unique):
    fails(rest2.get_volumes(names=[unique("nope")]), "does not exist")
    fails(rest2.patch_volumes(names=[unique("nope")], volume=VolumePatch(destroyed=True)), "does not exist")


# -- volume snapshots --------------------------------------------------------------------------
def test_volume_snapshots(rest2, unique):
    a, b = unique("a"), unique("b")
    make_volume(rest2, a)
    make_volume(rest2, b)
    snaps = ok(rest2.post_volume_snapshots(source_names=[a, b], volume_snapshot=VolumeSnapshotPost(suffix="s1")))
    assert [s.name for s in snaps] == [f"{a}.s1", f"{b}.s1"]
    assert snaps[0].suffix == "s1" and snaps[0].source.name == a and snaps[0].provisioned == GiB
    assert snaps[0].created == snaps[1].created, "one point in time for every snapshot of a call"
    fails(rest2.post_volume_snapshots(source_names=[a], volume_snapshot=VolumeSnapshotPost(suffix="s1")),
          "already exists")
    n1 = ok(rest2.post_volume_snapshots(source_names=[a], volume_snapshot=VolumeSnapshotPost()))[0]
    n2 = ok(rest2.post_volume_snapshots(source_names=[a], volume_snapshot=VolumeSnapshotPost()))[0]
    assert n1.name == f"{a}.{n1.suffix}" and n1.suffix.isdigit() and int(n2.suffix) > int(n1.suffix)
    listed = ok(rest2.get_volume_snapshots(source_names=[a]))
    assert [s.name for s in listed] == [f"{a}.s1", n1.name, n2.name]
    assert ok(rest2.get_volume_snapshots(names=[f"{b}.s1"]))[0].source.name == b
    assert f"{a}.s1" not in {v.name for v in ok(rest2.get_volumes())}, "snapshots are not volumes"

    fails(rest2.delete_volume_snapshots(names=[n1.name]), "not destroyed")
    gone = ok(rest2.patch_volume_snapshots(names=[n1.name], volume_snapshot=VolumeSnapshotPatch(destroyed=True)))
    assert gone[0].destroyed is True and gone[0].time_remaining > 0
    assert [s.name for s in ok(rest2.get_volume_snapshots(source_names=[a], destroyed=True))] == [n1.name]
    ok(rest2.delete_volume_snapshots(names=[n1.name]))
    fails(rest2.get_volume_snapshots(names=[n1.name]), "does not exist")


# -- protection groups -------------------------------------------------------------------------
def test_protection_group_members_targets_schedule(rest2, unique):
    pg, v1, v2 = unique("pg"), unique("v1"), unique("v2")
    make_volume(rest2, v1)
    make_volume(rest2, v2)
    created = ok(rest2.post_protection_groups(names=[pg]))[0]
    assert created.name == pg and created.volume_count == 0 and created.snapshot_schedule.enabled is False
    members = ok(rest2.post_protection_groups_volumes(group_names=[pg], member_names=[v1, v2]))
    assert [(m.group.name, m.member.name) for m in members] == [(pg, v1), (pg, v2)]
    fails(rest2.post_protection_groups_volumes(group_names=[pg], member_names=[v1]), "already belongs to")
    ok(rest2.delete_protection_groups_volumes(group_names=[pg], member_names=[v2]))
    assert [m.member.name for m in ok(rest2.get_protection_groups_volumes(group_names=[pg]))] == [v1]
    assert ok(rest2.get_protection_groups(names=[pg]))[0].volume_count == 1

    ok(rest2.post_protection_groups_targets(group_names=[pg], member_names=["arr2"]))
    fails(rest2.post_protection_groups_targets(group_names=[pg], member_names=["arr2"]), "already includes")
    ok(rest2.patch_protection_groups_targets(group_names=[pg], target=TargetProtectionGroupPostPatch(allowed=False)))
    targets = ok(rest2.get_protection_groups_targets(group_names=[pg]))
    assert [(t.member.name, t.allowed) for t in targets] == [("arr2", False)]
    ok(rest2.delete_protection_groups_targets(group_names=[pg], member_names=["arr2"]))
    assert ok(rest2.get_protection_groups_targets(group_names=[pg])) == []

    changed = ok(rest2.patch_protection_groups(names=[pg], protection_group=ProtectionGroup(
        snapshot_schedule=SnapshotSchedule(enabled=True, frequency=7200000),
        source_retention=RetentionPolicy(all_for_sec=3600, per_day=2, days=3))))[0]
    assert (changed.snapshot_schedule.enabled, changed.snapshot_schedule.frequency) == (True, 7200000)
    r = changed.source_retention
    assert (r.all_for_sec, r.per_day, r.days) == (3600, 2, 3)
    assert changed.target_retention.days == 7, "untouched policies keep their defaults"


def test_protection_group_destroy_eradicate(rest2, unique):
    pg = unique("pg")
    ok(rest2.post_protection_groups(names=[pg]))
    fails(rest2.delete_protection_groups(names=[pg]), "not destroyed")
    gone = ok(rest2.patch_protection_groups(names=[pg], protection_group=ProtectionGroup(destroyed=True)))[0]
    assert gone.destroyed is True and gone.time_remaining > 0
    ok(rest2.patch_protection_groups(names=[pg], protection_group=ProtectionGroup(destroyed=False)))
    ok(rest2.patch_protection_groups(names=[pg], protection_group=ProtectionGroup(destroyed=True)))
    ok(rest2.delete_protection_groups(names=[pg]))
    fails(rest2.get_protection_groups(names=[pg]), "does not exist")


def test_protection_group_snapshots(rest2, unique):
    pg, v1, v2 = unique("pg"), unique("v1"), unique("v2")
    make_volume(rest2, v1)
    make_volume(rest2, v2)
    ok(rest2.post_protection_groups(names=[pg]))
    ok(rest2.post_protection_groups_volumes(group_names=[pg], member_names=[v1, v2]))
    ps = ok(rest2.post_protection_group_snapshots(
        source_names=[pg], apply_retention=True,
        protection_group_snapshot=ProtectionGroupSnapshotPost(suffix="daily1")))[0]
    assert (ps.name, ps.suffix, ps.source.name) == (f"{pg}.daily1", "daily1", pg)
    members = ok(rest2.get_volume_snapshots(names=[f"{pg}.daily1.{v1}", f"{pg}.daily1.{v2}"]))
    assert [m.source.name for m in members] == [v1, v2]
    assert {m.created for m in members} == {ps.created}, "one point in time for every member"
    assert f"{pg}.daily1.{v1}" in {s.name for s in ok(rest2.get_volume_snapshots(source_names=[v1]))}
    fails(rest2.post_protection_group_snapshots(
        source_names=[pg], protection_group_snapshot=ProtectionGroupSnapshotPost(suffix="daily1")), "already exists")
    fails(rest2.post_protection_group_snapshots(source_names=[pg], replicate_now=True), "target")
    auto = ok(rest2.post_protection_group_snapshots(source_names=[pg]))[0]
    assert auto.suffix.isdigit()
    assert [p.name for p in ok(rest2.get_protection_group_snapshots(source_names=[pg]))] == [ps.name, auto.name]

    fails(rest2.delete_protection_group_snapshots(names=[ps.name]), "not destroyed")
    gone = ok(rest2.patch_protection_group_snapshots(
        names=[ps.name], protection_group_snapshot=ProtectionGroupSnapshotPatch(destroyed=True)))[0]
    assert gone.destroyed is True
    assert ok(rest2.get_volume_snapshots(names=[f"{pg}.daily1.{v1}"]))[0].destroyed is True
    ok(rest2.delete_protection_group_snapshots(names=[ps.name]))
    fails(rest2.get_protection_group_snapshots(names=[ps.name]), "does not exist")
    fails(rest2.get_volume_snapshots(names=[f"{pg}.daily1.{v1}"]), "does not exist")


# -- hosts and connections ---------------------------------------------------------------------
def test_hosts_and_connections(rest2, unique):
    host, v1, v2 = unique("h"), unique("v1"), unique("v2")
    make_volume(rest2, v1, 8 * MiB)
    make_volume(rest2, v2, 8 * MiB)
    tag = host[-8:]
    wwn1 = ":".join(["21", "00", tag[0:2], tag[2:4], tag[4:6], tag[6:8], "00", "01"])
    wwn2 = f"2100{tag.upper()}0002"
    h = ok(rest2.post_hosts(names=[host], host=HostPost(iqns=[f"iqn.2024-01.org.example:{host}"], wwns=[wwn1])))[0]
    assert h.wwns == [wwn1.replace(":", "").upper()] and h.connection_count == 0
    fails(rest2.post_hosts(names=[host], host=HostPost()), "already exists")
    fails(rest2.post_hosts(names=[unique("other")], host=HostPost(wwns=[wwn1])), "already in use")
    patched = ok(rest2.patch_hosts(names=[host], host=HostPatch(add_wwns=[wwn2], remove_wwns=[wwn1])))
    assert patched[0].wwns == [wwn2]
    try:
        c1, c2 = connect(rest2, host, v1), connect(rest2, host, v2)
        assert (c1.lun, c2.lun) == (1, 2), "automatic LUNs start at 1"
        assert (c1.host.name, c1.volume.name) == (host, v1)
        fails(rest2.post_connections(host_names=[host], volume_names=[v1]), "already exists")
        assert [c.volume.name for c in ok(rest2.get_connections(host_names=[host]))] == [v1, v2]
        assert [c.host.name for c in ok(rest2.get_connections(volume_names=[v2]))] == [host]
        assert ok(rest2.get_volumes(names=[v1]))[0].connection_count == 1
        fails(rest2.patch_volumes(names=[v1], volume=VolumePatch(destroyed=True)), "connected")
        fails(rest2.delete_hosts(names=[host]), "cannot be deleted due to existing connections")
    finally:
        rest2.delete_connections(host_names=[host], volume_names=[v1])
        rest2.delete_connections(host_names=[host], volume_names=[v2])
    fails(rest2.delete_connections(host_names=[host], volume_names=[v1]), "is not connected")
    fails(rest2.post_connections(host_names=[unique("ghost")], volume_names=[v1]), "Host does not exist")
    renamed = unique("h2")
    ok(rest2.patch_hosts(names=[host], host=HostPatch(name=renamed)))
    ok(rest2.delete_hosts(names=[renamed]))
    fails(rest2.get_hosts(names=[renamed]), "does not exist")


# -- listing -----------------------------------------------------------------------------------
def test_pagination_and_filter(rest2, emulator, unique):
    prefix = unique("page")
    names = [f"{prefix}-{i}" for i in range(7)]
    for n in names:
        make_volume(rest2, n, MiB)
    page = rest2.get_volumes(filter=f"name='{prefix}*'", limit=3)
    assert page.status_code == 200 and page.total_item_count == 7 and page.more_items_remaining is True
    seen = [v.name for v in page.items]
    assert len(seen) == 3 and page.continuation_token
    token = page.continuation_token
    while token:
        page = rest2.get_volumes(filter=f"name='{prefix}*'", limit=3, continuation_token=token)
        seen += [v.name for v in ok(page)]
        token = page.continuation_token
    assert seen == names and page.more_items_remaining is False
    with rest2_session(emulator, auto_pagination_limit=3) as paged:
        res = paged.get_volumes(filter=f"name='{prefix}*'")
        assert [v.name for v in ok(res)] == names and res.total_item_count == 7
    assert [v.name for v in ok(rest2.get_volumes(filter=f"name='{prefix}-1*'"))] == [f"{prefix}-1"]
    assert [v.name for v in ok(rest2.get_volumes(filter=f"name='{prefix}*'", sort=["-name"], limit=2))] == \
        names[::-1][:2]


# -- block differences -------------------------------------------------------------------------
def test_volume_diff_api(rest2, unique):
    name = unique("vol")
    make_volume(rest2, name, 16 * MiB)
    ok(rest2.post_volume_snapshots(source_names=[name], volume_snapshot=VolumeSnapshotPost(suffix="a")))
    ok(rest2.post_volume_snapshots(source_names=[name], volume_snapshot=VolumeSnapshotPost(suffix="b")))
    assert ok(rest2.get_volumes_diff(names=[f"{name}.b"], base_name=f"{name}.a", block_size=65536,
                                     segment_offset=0, segment_length=16 * MiB)) == []
    assert ok(rest2.get_volumes_diff(names=[name], block_size=512, segment_length=16 * MiB)) == []
    fails(rest2.get_volumes_diff(names=[name], block_size=1000, segment_length=MiB), "block_size")
    fails(rest2.get_volumes_diff(names=[unique("nope")], block_size=512, segment_length=MiB), "does not exist")


@pytest.mark.root
def test_copy_of_snapshot_holds_snapshot_bytes(rest2, emulator, unique):
    host, vol, clone = unique("h"), unique("vol"), unique("clone")
    make_host(rest2, host)
    v = make_volume(rest2, vol, 8 * MiB)
    old, new = os.urandom(64 * 1024), os.urandom(64 * 1024)
    try:
        connect(rest2, host, vol)
        write_device(device_path(emulator, v.serial), MiB, old)
        ok(rest2.post_volume_snapshots(source_names=[vol], volume_snapshot=VolumeSnapshotPost(suffix="before")))
        write_device(device_path(emulator, v.serial), MiB, new)
        c = ok(rest2.post_volumes(names=[clone], volume=VolumePost(source=Reference(name=f"{vol}.before"))))[0]
        connect(rest2, host, clone)
        assert read_device(device_path(emulator, c.serial), MiB, len(old)) == old
        assert read_device(device_path(emulator, v.serial), MiB, len(new)) == new
        ok(rest2.post_volumes(names=[vol], volume=VolumePost(source=Reference(name=f"{vol}.before")),
                              overwrite=True))
        assert read_device(device_path(emulator, v.serial), MiB, len(old)) == old, "overwrite refreshes in place"
    finally:
        rest2.delete_connections(host_names=[host], volume_names=[vol])
        rest2.delete_connections(host_names=[host], volume_names=[clone])
    assert not device_path(emulator, v.serial).exists()


@pytest.mark.root
def test_diff_is_exact_at_block_level(rest2, emulator, unique):
    host, vol = unique("h"), unique("vol")
    make_host(rest2, host)
    v = make_volume(rest2, vol, 64 * MiB)
    changed = [(MiB, 65536), (5 * MiB + 128 * 1024, 65536)]
    try:
        connect(rest2, host, vol)
        dev = device_path(emulator, v.serial)
        write_device(dev, 0, os.urandom(8 * MiB))
        ok(rest2.post_volume_snapshots(source_names=[vol], volume_snapshot=VolumeSnapshotPost(suffix="s1")))
        for offset, length in changed:
            write_device(dev, offset, os.urandom(length))
        ok(rest2.post_volume_snapshots(source_names=[vol], volume_snapshot=VolumeSnapshotPost(suffix="s2")))
    finally:
        rest2.delete_connections(host_names=[host], volume_names=[vol])
    diff = ok(rest2.get_volumes_diff(names=[f"{vol}.s2"], base_name=f"{vol}.s1", block_size=65536,
                                     segment_offset=0, segment_length=64 * MiB))
    assert [(d.offset, d.length) for d in diff] == changed
    fine = ok(rest2.get_volumes_diff(names=[f"{vol}.s2"], base_name=f"{vol}.s1", block_size=4096,
                                     segment_length=64 * MiB))
    assert [(d.offset, d.length) for d in fine] == changed, "no coarser than the 4 KiB filesystem block"
    window = ok(rest2.get_volumes_diff(names=[f"{vol}.s2"], base_name=f"{vol}.s1", block_size=65536,
                                       segment_offset=4 * MiB, segment_length=4 * MiB))
    assert [(d.offset, d.length) for d in window] == changed[1:], "absolute offsets within a segment"
    full = ok(rest2.get_volumes_diff(names=[f"{vol}.s1"], block_size=65536, segment_length=64 * MiB))
    assert [(d.offset, d.length) for d in full] == [(0, 8 * MiB)]


@pytest.mark.root
def test_small_write_diff_granularity(rest2, emulator, unique):
    """Small writes differ in their 4 KiB blocks only, not in the whole 64 KiB CoW extent around them."""
    host, vol = unique("h"), unique("vol")
    make_host(rest2, host)
    v = make_volume(rest2, vol, 8 * MiB)
    try:
        connect(rest2, host, vol)
        dev = device_path(emulator, v.serial)
        write_device(dev, 0, os.urandom(MiB))
        ok(rest2.post_volume_snapshots(source_names=[vol], volume_snapshot=VolumeSnapshotPost(suffix="s1")))
        write_device(dev, 3 * 65536 + 8192, os.urandom(4096))
        write_device(dev, 5 * 65536 + 512, os.urandom(1024))
        ok(rest2.post_volume_snapshots(source_names=[vol], volume_snapshot=VolumeSnapshotPost(suffix="s2")))
    finally:
        rest2.delete_connections(host_names=[host], volume_names=[vol])
    diff = ok(rest2.get_volumes_diff(names=[f"{vol}.s2"], base_name=f"{vol}.s1", block_size=512,
                                     segment_length=8 * MiB))
    # The pool's filesystem block (4 KiB) is the floor: a 1 KiB write shows as its whole 4 KiB block.
    assert [(d.offset, d.length) for d in diff] == [(3 * 65536 + 8192, 4096), (5 * 65536, 4096)]


# -- version negotiation -----------------------------------------------------------------------
def test_rest2_max_caps_the_versions(tmp_path):
    import requests

    with running_emulator(tmp_path / "capped", ["--rest2-max", "2.8"]) as info:
        versions = requests.get(f"{info['url']}/api/api_version", verify=info["ca_file"], timeout=10).json()["version"]
        rest2 = [v for v in versions if v.startswith("2.")]
        assert rest2 and max(rest2, key=lambda v: int(v.split(".")[1])) == "2.8"
        assert "1.19" in versions and versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))))
        with rest2_session(info) as fa:
            assert fa.get_rest_version() == "2.8"
