"""The array side of a lab, shared by every engine: emulator, array client, host object, volumes,
protection groups, filesystems and mounts; and their removal."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import paths, sysutil
from ..array import ArrayClient, ArrayError, PgroupSnapshot, Volume, open_array
from ..connector import LocalConnector
from ..emulator import service
from .common import EMULATOR_HOST, LabError, LabLayout, Steps, check_reachable, chown, lab_host, lab_iqn

if TYPE_CHECKING:
    from .airflow_conns import ConnSpec


@dataclass(frozen=True)
class LabVolume:
    role: str  # "data" or "archive": the SLA's volume and mount roles
    name: str  # array volume name
    size: int
    mount: Path


@dataclass
class ArraySession:
    endpoint: dict  # the emulator's endpoint: target, api_token, ca_file, devices (never print the token)
    array: ArrayClient
    connector: LocalConnector
    host: str


def ensure_emulator() -> tuple[dict, bool]:
    """The emulator of $COPYDATA_HOME/emulator, started detached when none runs. Returns (endpoint, started)."""
    state = paths.emulator_state()
    info = service.read_endpoint(state)
    if info:
        return info, False
    return service.start_detached(state, EMULATOR_HOST, service.preferred_port(), []), True


@contextlib.contextmanager
def array_session(endpoint: dict) -> Iterator[ArraySession]:
    array = open_array(endpoint["target"], endpoint["api_token"], endpoint["ca_file"])
    try:
        yield ArraySession(endpoint, array, LocalConnector(endpoint["devices"]), lab_host())
    finally:
        array.close()


def ensure_host(s: ArraySession) -> None:
    s.array.ensure_host(s.host, [lab_iqn()])


def ensure_volume(s: ArraySession, vol: LabVolume) -> tuple[str, bool]:
    """Create the volume when missing and connect it to the lab host. Returns (serial, created)."""
    found = s.array.find_volume(vol.name)
    if found is not None and found.destroyed:
        raise LabError(f"volume {vol.name} is destroyed and awaits eradication: run the lab's destroy first")
    created = found is None
    if created:
        found = s.array.create_volume(vol.name, vol.size)
    s.array.connect(s.host, vol.name)
    return found.serial, created


def ensure_pgroups(s: ArraySession, groups: dict[str, list[str]]) -> None:
    for name, volumes in groups.items():
        s.array.ensure_pgroup(name, volumes)


def fs_type(device: str) -> str:
    """The filesystem on a device ('' when none), probed directly rather than from blkid's cache."""
    return sysutil.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], check=False).strip()


def ensure_mounted(s: ArraySession, serial: str, mount: Path, owner: str) -> str:
    """mkfs ext4 when the device holds no filesystem (never reformat), mount, chown the root. Returns a note."""
    device = s.connector.device(serial)
    if sysutil.is_mountpoint(mount) and os.path.realpath(mount) in sysutil.mounts_of(device):
        note = "mounted"
    else:
        fstype = fs_type(device)
        if not fstype:
            s.connector.mkfs(device, "ext4")
        s.connector.mount(device, str(mount))
        note = f"{'new ext4' if not fstype else 'existing ' + fstype}, now mounted"
    chown(mount, owner)
    return f"{mount.name}: {note}"


def release_volume(s: ArraySession, vol: LabVolume) -> str:
    """Unmount, drop the host's paths and disconnect from every host. Returns a note."""
    s.connector.unmount(str(vol.mount))
    found = s.array.find_volume(vol.name)
    if found is None:
        return f"{vol.name}: absent"
    s.connector.release(found.serial)
    for conn in s.array.connections(vol.name):
        s.array.disconnect(conn.host, vol.name)
    return f"{vol.name}: released"


def pgroup_exists(s: ArraySession, pgroup: str) -> bool:
    try:
        s.array.pgroup_volumes(pgroup)
    except ArrayError as err:
        if err.not_found:
            return False
        raise
    return True


def pgroup_snapshots(s: ArraySession, pgroup: str) -> list[PgroupSnapshot]:
    try:
        return s.array.pgroup_snapshots(pgroup)
    except ArrayError as err:
        if err.not_found:
            return []
        raise


def erase(s: ArraySession, pgroups: list[str], volumes: list[str]) -> str:
    """Destroy and eradicate the pgroups' snapshots, the pgroups, then the volumes. Returns a note."""
    counts = {"snapshot": 0, "pgroup": 0, "volume": 0}
    for pg in pgroups:
        for snap in pgroup_snapshots(s, pg):
            s.array.destroy_pgroup_snapshot(snap.name, eradicate=True)
            counts["snapshot"] += 1
        counts["pgroup"] += pgroup_exists(s, pg)
        s.array.destroy_pgroup(pg)
    for name in volumes:
        counts["volume"] += s.array.find_volume(name) is not None
        s.array.eradicate_volume(name)
    return "eradicated " + ", ".join(f"{n} {kind}(s)" for kind, n in counts.items())


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below folder (from /proc/self/mountinfo)."""
    root = os.path.realpath(folder)
    points = [line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == root or p.startswith(root + os.sep)]


def _find(s: ArraySession, name: str) -> Volume | None:
    try:
        return s.array.find_volume(name)
    except ArrayError:  # a folder name the array does not accept as a volume name
        return None


def clones_of(s: ArraySession, volumes: list[str]) -> list[str]:
    """Clones under $COPYDATA_HOME/clones whose volumes (<clone>-<role>) were copied from these volumes."""
    folder = paths.home() / "clones"
    found = []
    for clone in sorted(folder.iterdir()) if folder.is_dir() else []:
        for role in ("data", "archive"):
            vol = _find(s, f"{clone.name}-{role}") if clone.is_dir() else None
            if vol is not None and vol.source in volumes:
                state = "mounted" if mounts_under(clone) else "not mounted"
                found.append(f"clone {clone.name}: volume {vol.name} copied from {vol.source} ({state})")
    return found


# -- the steps every lab shares (create and destroy print the same lines for every engine) ----------
def emulator_step(steps: Steps) -> dict:
    """Step "emulator": the running emulator, started when none runs. Returns its endpoint."""
    with steps.step("emulator") as note:
        endpoint, started = ensure_emulator()
        note["text"] = f"{'started' if started else 'running'} at {endpoint['target']}"
    return endpoint


def array_steps(steps: Steps, s: ArraySession, vols: list[LabVolume], pgroups: dict[str, list[str]],
                owner: str, prepare_dirs: Callable[[], None]) -> dict[str, str]:
    """Steps "array host", "volumes and pgroups", "filesystems and mounts" (prepare_dirs runs last, inside
    the latter). Returns volume name -> serial."""
    with steps.step("array host") as note:
        ensure_host(s)
        note["text"] = f"{s.host} ({lab_iqn()})"
    with steps.step("volumes and pgroups") as note:
        made = {v.name: ensure_volume(s, v) for v in vols}
        ensure_pgroups(s, pgroups)
        note["text"] = ", ".join(f"{n} {'created' if c else 'exists'}" for n, (_, c) in made.items())
    with steps.step("filesystems and mounts") as note:
        note["text"] = "; ".join(ensure_mounted(s, made[v.name][0], v.mount, owner) for v in vols)
        prepare_dirs()
    return {name: serial for name, (serial, _) in made.items()}


def create_storage(kind: str, lab: LabLayout, vols: list[LabVolume], pgroups: dict[str, list[str]], owner: str,
                   prepare_dirs: Callable[[], None], out: TextIO | None) -> tuple[Steps, dict, str, dict[str, str]]:
    """How every lab's create starts: the lab folder (owner must reach it), then the steps "emulator", "array
    host", "volumes and pgroups", "filesystems and mounts". Returns (steps, endpoint, host, volume -> serial)."""
    lab.root.mkdir(parents=True, exist_ok=True)
    check_reachable(owner, lab.root)
    steps = Steps(f"copydata lab {kind} create {lab.name}", out)
    endpoint = emulator_step(steps)
    with array_session(endpoint) as s:
        serials = array_steps(steps, s, vols, pgroups, owner, prepare_dirs)
        host = s.host
    return steps, endpoint, host, serials


def volume_lines(vols: list[LabVolume], serials: dict[str, str]) -> list[str]:
    """The summary's volume lines: name, serial, role and mount point."""
    width = max(len(v.name) for v in vols)
    return [f"  {'volumes' if i == 0 else '':<11} {v.name:<{width}}  serial {serials[v.name]}  {v.role:<7} -> {v.mount}"
            for i, v in enumerate(vols)]


def print_summary(out: TextIO | None, name: str, access: list[str], host: str, vols: list[LabVolume],
                  serials: dict[str, str], pgroups: dict[str, list[str]], logs: list[str], sla_file: Path,
                  conns: str, specs: list[ConnSpec], hidden: str) -> None:
    """The lines a create ends with: how to reach the server (access), the array objects, where the logs
    go, the SLA file and the connections (`hidden`: what their environment lines leave out)."""
    groups = ", ".join(f"{g} ({' + '.join(m)})" for g, m in pgroups.items())
    lines = [f"\n== lab {name} is ready", *access, f"  array host  {host} ({lab_iqn()})",
             *volume_lines(vols, serials),
             f"  pgroups     {groups}", *logs,
             f"  SLA file    {sla_file}",
             f"  Airflow     {conns}",
             f"  equivalent environment variables ({hidden} not shown):"]
    lines += [f"    {spec.env_line()}" for spec in specs]
    print("\n".join(lines), file=out, flush=True)


def teardown_array(steps: Steps, s: ArraySession, vols: list[LabVolume], pgroups: list[str],
                   out: TextIO | None) -> bool:
    """Steps "clones", "unmount and disconnect", "array objects". Returns True when the array held something
    of the lab."""
    names = [v.name for v in vols]
    existed = any(s.array.find_volume(n) for n in names) or any(pgroup_exists(s, g) for g in pgroups)
    with steps.step("clones") as note:
        found = clones_of(s, names)
        note["text"] = f"{len(found)} clone(s) of this lab stay (separate volumes)" if found else "none"
        for line in found:
            print(f"     warning: {line}: it stays; remove it on its own", file=out)
    with steps.step("unmount and disconnect") as note:
        note["text"] = "; ".join(release_volume(s, v) for v in vols)
    with steps.step("array objects") as note:
        note["text"] = erase(s, pgroups, names)
    return existed


def catalog_step(steps, name: str) -> None:
    """The lab's volumes are gone: so are its recovery points (a new lab of that name starts clean)."""
    from copydata.catalog import Catalog

    with steps.step("catalog") as note:
        changed = Catalog().retire_application(name)
        note["text"] = f"{changed} recovery point(s) marked deleted" if changed else "nothing recorded"


def remove_files(root: Path, sla_file: Path) -> str:
    """Remove the SLA file and the lab folder, unless something is still mounted below it. Returns a note."""
    left = mounts_under(root)
    if left:
        raise LabError(f"still mounted under {root}: {', '.join(left)}; unmount them, then run destroy again")
    notes = []
    if sla_file.exists():
        sla_file.unlink()
        notes.append(f"removed {sla_file}")
    if root.exists():
        shutil.rmtree(root)
        notes.append(f"removed {root}")
    return "; ".join(notes) or "nothing left"


def destroy_lab(kind: str, name: str, root: Path, vols: list[LabVolume], pgroups: list[str], conn_id: str,
                sla_file: Path, stop_server, airflow: bool, out) -> None:
    """The teardown both labs share; stop_server() stops the database and says whether it ran."""
    from . import airflow_conns
    from .common import Steps

    existed = root.exists() or sla_file.exists()
    steps = Steps(f"copydata lab {kind} destroy {name}", out)
    endpoint = emulator_step(steps)
    with steps.step("server") as note:
        note["text"] = "stopped" if stop_server() else "not running"
    with array_session(endpoint) as s:
        existed = teardown_array(steps, s, vols, pgroups, out) or existed
    catalog_step(steps, name)
    with steps.step("airflow connection") as note:
        note["text"] = airflow_conns.remove_or_warn(conn_id) if airflow else "skipped (--no-airflow)"
    with steps.step("SLA file and lab folder") as note:
        note["text"] = remove_files(root, sla_file)
    print(f"\n== lab {name} {'destroyed' if existed else 'did not exist: nothing to do'}", file=out, flush=True)
