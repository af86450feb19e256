"""The emulator walkthrough: what a FlashArray gives a DBA, step by step, with the time each step took."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

from copydata import paths
from copydata.array import open_array
from copydata.connector import LocalConnector, discard_volumes
from copydata.emulator import service
from copydata.progress import Steps

MiB, GiB = 1 << 20, 1 << 30


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // (8 * MiB)):
            chunk = os.urandom(8 * MiB)
            digest.update(chunk)
            f.write(chunk)
        os.fsync(f.fileno())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def run(volume_size: int = 20 * GiB, file_size: int = 256 * MiB, changed: int = 16 * MiB) -> None:
    state = paths.emulator_state()
    started_here = service.read_endpoint(state) is None
    steps = Steps("FlashArray emulator walkthrough")
    tag = uuid.uuid4().hex[:6]
    vol, copy, pg, host = f"demo-{tag}", f"demo-{tag}-copy", f"demo-pg-{tag}", f"demo-host-{tag}"
    work = Path(tempfile.mkdtemp(prefix="copydata-demo-"))
    client = connector = None
    try:
        with steps.step("start the emulator (HTTPS, REST 1 + REST 2)") as n:
            info = service.start_detached(state, "127.0.0.1", service.preferred_port(), [])
            n["text"] = f"{info['url']}, reflink={'yes' if info['reflink'] else 'NO'}"
        with steps.step("log in with py-pure-client, negotiating the REST version") as n:
            client = open_array(info["target"], info["api_token"], info["ca_file"])
            connector = LocalConnector(info["devices"])
            n["text"] = f"{client.api} {client.api_version}"
        with steps.step(f"create a {volume_size // GiB} GiB volume and a protection group") as n:
            v = client.create_volume(vol, volume_size)
            client.ensure_pgroup(pg, [vol])
            n["text"] = f"{vol}, serial {v.serial}"
        with steps.step("create the host and connect the volume to it") as n:
            client.ensure_host(host, [f"iqn.2026-11.io.copydata:{host}"])
            lun = client.connect(host, vol).lun
            dev = connector.device(v.serial)
            n["text"] = f"LUN {lun}, {dev}"
        with steps.step("make an ext4 filesystem and mount it"):
            connector.mkfs(dev, "ext4")
            connector.mount(dev, str(work / "source"))
        with steps.step(f"write a {file_size // MiB} MiB file") as n:
            before = _write_random(work / "source" / "data.bin", file_size)
            n["text"] = f"sha256 {before[:16]}…"
        with steps.step("snapshot the protection group (s1)") as n:
            s1 = client.snapshot_pgroup(pg, "s1")
            n["text"] = f"{s1.name} at {s1.created.isoformat()}"
        with steps.step(f"overwrite {changed // MiB} MiB of the file"), \
                open(work / "source" / "data.bin", "r+b") as f:
            f.seek(file_size // 3)
            f.write(os.urandom(changed))
            os.fsync(f.fileno())
        with steps.step("snapshot again (s2)") as n:
            s2 = client.snapshot_pgroup(pg, "s2")
            n["text"] = s2.name
        with steps.step("ask the array which blocks changed between s1 and s2") as n:
            ranges = client.diff(s2.volumes[vol], s1.volumes[vol], block_size=64 * 1024)
            reported = sum(length for _, length in ranges)
            n["text"] = (f"{len(ranges)} ranges, {reported / MiB:.2f} MiB reported for {changed / MiB:.0f} MiB "
                         f"written (file data + filesystem metadata)")
        with steps.step("copy s1 to a new volume, connect and mount it") as n:
            c = client.copy_volume(s1.volumes[vol], copy)
            client.connect(host, copy)
            connector.mount(connector.device(c.serial), str(work / "copy"))
            n["text"] = f"{copy}, serial {c.serial}"
        with steps.step("check that the copy holds the bytes of s1") as n:
            after = _sha256(work / "copy" / "data.bin")
            if after != before:
                raise SystemExit(f"the copy differs from s1: {after} != {before}")
            n["text"] = "identical to s1; the source has moved on" if _sha256(
                work / "source" / "data.bin") != before else "identical"
    finally:
        if client is not None:
            with steps.step("clean up: unmount, disconnect, eradicate"):
                discard_volumes(client, connector, host, [copy, vol])
                for s in client.pgroup_snapshots(pg):
                    client.destroy_pgroup_snapshot(s.name, eradicate=True)
                client.close()
        if started_here:
            service.stop(state)
    steps.summary()
