"""End to end through copydata's array client (both SDKs) and the local host connector:
volume -> filesystem -> file -> pgroup snapshot -> overwrite -> diff -> copy -> old bytes back."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from copydata.array import ArrayError, open_array
from copydata.connector import LocalConnector, discard_volumes
from copydata.emulator.blocks import fiemap
from copydata.emulator.diff import align

MiB = 1 << 20
BLOCK = 64 * 1024
pytestmark = pytest.mark.root


def file_device_ranges(path: Path, start: int, length: int) -> list[tuple[int, int]]:
    """Where bytes [start, start+length) of a file live on its block device."""
    out = []
    with open(path, "rb") as f:
        for e in fiemap(f.fileno(), start, length):
            b, f_end = max(e.logical, start), min(e.end, start + length)
            if b < f_end:
                out.append((e.physical + b - e.logical, f_end - b))
    return sorted(out)


def intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for ao, al in a:
        for bo, bl in b:
            lo, hi = max(ao, bo), min(ao + al, bo + bl)
            if lo < hi:
                out.append((lo, hi - lo))
    return align(sorted(out), 1, 0, 2**63)


@pytest.fixture(params=["rest2", "rest1"])
def array(request, emulator):
    client = open_array(emulator["target"], emulator["api_token"], emulator["ca_file"], prefer=request.param)
    assert client.api == request.param
    yield client
    client.close()


def test_snapshot_diff_copy_round_trip(array, emulator, unique, tmp_path):
    connector = LocalConnector(emulator["devices"])
    vol, pg, host, copy = unique("e2e"), unique("pg"), unique("host"), unique("e2e-copy")
    mnt, mnt_copy = tmp_path / "src", tmp_path / "copy"
    try:
        array.create_volume(vol, 256 * MiB)
        array.ensure_host(host, [f"iqn.2026-11.test:{host}"])
        array.connect(host, vol)
        dev = connector.device(array.get_volume(vol).serial)
        connector.mkfs(dev, "ext4")
        connector.mount(dev, str(mnt))

        original = os.urandom(8 * MiB)
        data_file = mnt / "data.bin"
        with open(data_file, "wb") as f:
            f.write(original)
            os.fsync(f.fileno())
        array.ensure_pgroup(pg, [vol])
        s1 = array.snapshot_pgroup(pg, "s1")
        assert s1.volumes == {vol: f"{pg}.s1.{vol}"}

        changed_at, changed_len = 2 * MiB + 128 * 1024, 3 * BLOCK
        with open(data_file, "r+b") as f:
            f.seek(changed_at)
            f.write(os.urandom(changed_len))
            os.fsync(f.fileno())
        s2 = array.snapshot_pgroup(pg, "s2")
        assert s2.created >= s1.created

        diff = array.diff(s2.volumes[vol], s1.volumes[vol], block_size=BLOCK)
        whole_file = file_device_ranges(data_file, 0, len(original))
        changed = file_device_ranges(data_file, changed_at, changed_len)
        expected = align(changed, BLOCK, 0, 256 * MiB)
        assert intersect(diff, whole_file) == intersect(expected, whole_file), (diff, changed)
        assert array.diff(vol, s1.volumes[vol], block_size=BLOCK) == diff  # live volume: same change

        array.copy_volume(s1.volumes[vol], copy)
        array.connect(host, copy)
        connector.mount(connector.device(array.get_volume(copy).serial), str(mnt_copy))
        assert (mnt_copy / "data.bin").read_bytes() == original
        assert data_file.read_bytes() != original
    finally:
        discard_volumes(array, connector, host, [copy, vol])


def test_copy_over_existing_needs_overwrite_and_keeps_serial(array, unique):
    a, b = unique("src"), unique("dst")
    try:
        array.create_volume(a, 8 * MiB)
        before = array.create_volume(b, 8 * MiB)
        with pytest.raises(ArrayError, match="already exists"):
            array.copy_volume(a, b)
        after = array.copy_volume(a, b, overwrite=True)
        assert after.serial == before.serial
        assert after.source == a
    finally:
        array.eradicate_volume(a)
        array.eradicate_volume(b)


def test_destroy_connected_volume_is_refused(array, unique):
    vol, host = unique("busy"), unique("h")
    try:
        array.create_volume(vol, 8 * MiB)
        array.ensure_host(host)
        array.connect(host, vol)
        with pytest.raises(ArrayError, match="connected"):
            array.destroy_volume(vol)
        assert not array.get_volume(vol).destroyed
    finally:
        array.disconnect(host, vol)
        array.eradicate_volume(vol)


def test_unknown_volume_and_bad_token(array, emulator):
    with pytest.raises(ArrayError, match="does not exist") as err:
        array.get_volume("no-such-volume")
    assert err.value.status == 400 and err.value.not_found
    with pytest.raises(ArrayError, match="login"):
        open_array(emulator["target"], "not-a-token", emulator["ca_file"], prefer=array.api)


def test_retried_snapshot_with_suffix_is_idempotent(array, unique):
    vol, pg = unique("idem"), unique("pg")
    try:
        array.create_volume(vol, 8 * MiB)
        array.ensure_pgroup(pg, [vol])
        array.ensure_pgroup(pg, [vol])
        first = array.snapshot_pgroup(pg, "nightly")
        again = array.snapshot_pgroup(pg, "nightly")
        assert first.name == again.name and first.created == again.created
        assert [s.name for s in array.pgroup_snapshots(pg)] == [f"{pg}.nightly"]
    finally:
        array.destroy_pgroup_snapshot(f"{pg}.nightly", eradicate=True)
        array.eradicate_volume(vol)


def test_replication_names_an_unknown_proxy_host(array, emulator, unique, tmp_path):
    """The array refuses to connect a copy to a host it does not know: the error names the SLA field,
    and the copy is discarded."""
    from copydata.replication.replicate import UnknownHost, replicate, temp_volume
    from copydata.replication.target import Target

    vol, pg, host, proxy = unique("repl"), unique("pg"), unique("host"), unique("nowhere")
    app = SimpleNamespace(name=unique("app"), host=host, engine="postgresql", volumes={"data": vol})
    try:
        array.create_volume(vol, 8 * MiB)
        array.ensure_host(host)
        array.ensure_pgroup(pg, [vol])
        snap = array.snapshot_pgroup(pg, "s1")
        row = SimpleNamespace(pgroup_snapshot=snap.name, volumes={"data": snap.volumes[vol]},
                              consistent_at=snap.created, engine_meta={})
        catalog = SimpleNamespace(snapshots=lambda name, states=("valid",): [row], log_backups=lambda name: [])
        ctx = SimpleNamespace(app=app, name=app.name, array=array, catalog=catalog,
                              connector=LocalConnector(emulator["devices"]))
        with pytest.raises(UnknownHost, match=f"^replication.proxy_host '{proxy}' is not a host on the array$"):
            replicate(ctx, Target("t", f"file://{tmp_path}/repo"), host=proxy)
        assert array.find_volume(temp_volume(app.name, "data")) is None
    finally:
        array.destroy_pgroup(pg)
        array.eradicate_volume(vol)
