"""Instant mount, orchestrated from another process than the FUSE daemon.

    with InstantMount("s3://bucket/repo", "pg-orders", "pg-orders.snap-0042", "/var/tmp/im1",
                      conn_id="aws_repo") as m:
        ...   # m.target is the mounted file system (ext4 by default), m.loop the loop device

Layout of the work folder:

    <workdir>/cache/    the daemon's cache (disk.cache, disk.map, status.json, daemon.pid, daemon.log)
    <workdir>/fuse/     the FUSE mount: fuse/disk.img
    <workdir>/mnt/      the file system of the volume (mode 0755)
    <workdir>/instant.json   what is attached (loop device, daemon PID), for a teardown from any process

Start: run the daemon (it double-forks and returns once FUSE is mounted) → `losetup --find --show
--direct-io=on fuse/disk.img` → `mount -o noatime` (read-write, the cache is the overlay) or
`-o ro,noload` (read-only: ext4 replays no journal and writes nothing).

Teardown (shared reference §10.8), each step under a deadline: umount → losetup -d → stop the daemon
(SIGTERM: libfuse unmounts, the daemon saves its map) → leftover FUSE mount (fusermount3 -u -z). A step that
hangs (a stuck daemon leaves umount or losetup in state D) is resolved by SIGKILL of the daemon, which
aborts the FUSE connection (the universal un-hang), then the step is retried. Mount checks read
/proc/self/mountinfo, never the mounted file systems.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copydata.instant.fusefs import IMAGE_NAME
from copydata.instant.lazydisk import (
    CACHE_FILE,
    MAP_FILE,
    STATUS_FILE,
    LazyDisk,
    RepoVolume,
    dirty_blocks,
    image_sha256,
    map_status,
)
from copydata.instant.procs import LOGFILE, PIDFILE, daemon_pid, is_mountpoint, mounts, pid_alive

log = logging.getLogger(__name__)
STATE_FILE = "instant.json"


class InstantMountError(RuntimeError):
    pass


class TeardownError(InstantMountError):
    """Something is still attached after the teardown (the message says what)."""


# -- running commands with deadlines -------------------------------------------------------------------

@dataclass
class Ran:
    rc: int | None            # None: it did not finish before its deadline
    out: str = ""
    seconds: float = 0.0


def run_deadline(cmd: list[str], timeout: float) -> Ran:
    """Run cmd; past the deadline SIGKILL it and give it 5 s more, then give up on it (a process in state D
    cannot be killed: the caller must remove the cause, e.g. by killing the FUSE daemon)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return Ran(p.returncode, out.strip(), time.monotonic() - t0)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            out, _ = p.communicate(timeout=5)
            return Ran(None, (out or "").strip(), time.monotonic() - t0)
        except subprocess.TimeoutExpired:
            log.error("%s is stuck (probably in state D) after SIGKILL", cmd[0])
            return Ran(None, "", time.monotonic() - t0)


def loops_backed_by(path: Path) -> list[str]:
    """Loop devices whose backing file is path (from `losetup -J -l`: sysfs, never the FUSE file)."""
    ran = run_deadline(["losetup", "-J", "-l"], 15)
    if ran.rc != 0 or not ran.out:
        return []
    want = os.path.abspath(path)
    return [d["name"] for d in json.loads(ran.out).get("loopdevices", [])
            if (d.get("back-file") or "").removesuffix(" (deleted)") == want]


def loop_attached(dev: str) -> bool:
    return Path(f"/sys/block/{Path(dev).name}/loop/backing_file").exists()


# -- the mount ---------------------------------------------------------------------------------------

@dataclass
class Timings:
    daemon: float = 0.0     # daemon start until FUSE is mounted (the launcher returned)
    losetup: float = 0.0
    mount: float = 0.0
    total: float = 0.0


@dataclass
class InstantMount:
    """A volume of a repository point, attached as a block device and mounted, without downloading it first."""

    repo_url: str
    application: str
    point: str
    workdir: Path
    role: str = "data"
    volume: str | None = None
    conn_id: str | None = None
    key_conn_id: str | None = None
    key_file: str | None = None
    read_only: bool = False
    fstype: str = "ext4"
    mount_options: str | None = None         # default: noatime (rw), ro,noload (read-only)
    hydrate: bool = True
    hydrate_rate: str | None = None          # e.g. "50MB/s"
    readahead: int = 4
    latency_ms: float = 0.0                  # simulated GET latency (benchmarks)
    start_timeout: float = 120.0
    extra_args: list[str] = field(default_factory=list)
    python: str = sys.executable
    loop: str | None = None
    pid: int | None = None
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.cache = self.workdir / "cache"
        self.fuse = self.workdir / "fuse"
        self.target = self.workdir / "mnt"
        self.image = self.fuse / IMAGE_NAME

    # -- start ---------------------------------------------------------------------------------------

    def daemon_command(self) -> list[str]:
        cmd = [self.python, "-m", "copydata.instant.daemon", "--repo", self.repo_url, "--app", self.application,
               "--point", self.point, "--cache", str(self.cache), "--mount", str(self.fuse),
               "--readahead", str(self.readahead)]
        cmd += ["--volume", self.volume] if self.volume else ["--role", self.role]
        for flag, value in (("--conn-id", self.conn_id), ("--key-conn-id", self.key_conn_id),
                            ("--key-file", self.key_file), ("--hydrate-rate", self.hydrate_rate)):
            if value:
                cmd += [flag, value]
        if self.latency_ms:
            cmd += ["--latency-ms", str(self.latency_ms)]
        if self.read_only:
            cmd.append("--read-only")
        if not self.hydrate:
            cmd.append("--no-hydrate")
        return cmd + list(self.extra_args)

    def start(self) -> InstantMount:
        t0 = time.monotonic()
        for folder in (self.workdir, self.cache, self.fuse, self.target):
            folder.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)   # database servers running as another user traverse it
        self.target.chmod(0o755)
        try:
            self._start_daemon()
            t1 = time.monotonic()
            self.timings.daemon = t1 - t0
            cmd = ["losetup", "--find", "--show", "--direct-io=on"] + (["--read-only"] if self.read_only else [])
            ran = run_deadline(cmd + [str(self.image)], 60)
            if ran.rc != 0:
                raise InstantMountError(f"losetup failed ({ran.rc}): {ran.out}")
            self.loop = ran.out.splitlines()[-1].strip()
            self._save_state()
            t2 = time.monotonic()
            self.timings.losetup = t2 - t1
            options = self.mount_options or ("ro,noload" if self.read_only else "noatime")
            ran = run_deadline(["mount", "-t", self.fstype, "-o", options, self.loop, str(self.target)], 120)
            if ran.rc != 0:
                raise InstantMountError(f"mount {self.loop} failed ({ran.rc}): {ran.out}")
            self.timings.mount = time.monotonic() - t2
            self.timings.total = time.monotonic() - t0
            self._save_state()
            log.info("instant mount of %s/%s at %s in %.2f s (daemon %.2f, losetup %.3f, mount %.3f)",
                     self.application, self.point, self.target, self.timings.total, self.timings.daemon,
                     self.timings.losetup, self.timings.mount)
            return self
        except BaseException:
            with contextlib.suppress(Exception):
                teardown(self.workdir)
            raise

    def _start_daemon(self) -> None:
        if is_mountpoint(self.fuse) or is_mountpoint(self.target):
            raise InstantMountError(f"{self.workdir} is already mounted: tear it down first")
        ran = run_deadline(self.daemon_command(), self.start_timeout)
        pid = daemon_pid(self.cache / PIDFILE)
        last = ran.out.splitlines()[-1] if ran.out else ""
        if ran.rc != 0 or not last.startswith("ready"):
            if pid is not None and ran.rc is None:   # it hung on the way up
                os.kill(pid, signal.SIGKILL)
            raise InstantMountError(f"instant-mount daemon did not start ({ran.rc}): {ran.out}\n"
                                    + tail(self.cache / LOGFILE))
        self.pid = int(last.split()[1])
        self._save_state()
        if not self.image.exists():   # our process is not the FUSE server: stat is safe here
            raise InstantMountError(f"{self.image} did not appear")

    def _save_state(self) -> None:
        doc = {"repo": self.repo_url, "application": self.application, "point": self.point,
               "cache": str(self.cache), "fuse": str(self.fuse), "target": str(self.target), "loop": self.loop,
               "pid": self.pid, "read_only": self.read_only, "timings": self.timings.__dict__}
        tmp = self.workdir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.workdir / STATE_FILE)

    # -- while mounted -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return hydrate_status(self.cache)

    def wait_hydrated(self, timeout: float = 600, poll: float = 0.2) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st.get("complete") and (not st.get("daemon") or st.get("hydrated_at")):
                return st
            if st.get("daemon") is False and not st.get("complete"):
                raise InstantMountError(f"the daemon is gone before hydration finished: {st}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"hydration not complete after {timeout} s: {st.get('fraction')}")
            time.sleep(poll)

    # -- stop ----------------------------------------------------------------------------------------

    def stop(self) -> TeardownReport:
        report = teardown(self.workdir)
        self.loop = None
        self.pid = None
        return report

    def __enter__(self) -> InstantMount:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- teardown ----------------------------------------------------------------------------------------

@dataclass
class TeardownReport:
    steps: list[str] = field(default_factory=list)
    killed: bool = False          # the daemon had to be SIGKILLed
    seconds: float = 0.0


def _state(workdir: Path) -> dict[str, Any]:
    try:
        return json.loads((workdir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def teardown(workdir: str | os.PathLike, *, umount_timeout: float = 60, loop_timeout: float = 20,
             daemon_timeout: float = 30) -> TeardownReport:
    """Detach everything an InstantMount attached under workdir, in the safe order, with deadlines.
    Idempotent; raises TeardownError if something is still attached at the end."""
    t0 = time.monotonic()
    workdir = Path(workdir).resolve()
    state = _state(workdir)
    cache, fuse = workdir / "cache", workdir / "fuse"
    target, image = workdir / "mnt", workdir / "fuse" / IMAGE_NAME
    report = TeardownReport()

    def daemon() -> int | None:
        pid = daemon_pid(cache / PIDFILE)
        if pid is None and state.get("pid") and pid_alive(int(state["pid"])):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{state['pid']}/cmdline").read_bytes()
                if b"copydata.instant.daemon" in cmdline and str(cache).encode() in cmdline:
                    pid = int(state["pid"])
        return pid

    def kill_daemon(why: str) -> None:
        pid = daemon()
        if pid is not None:
            log.warning("SIGKILL of instant-mount daemon %d: %s", pid, why)
            report.steps.append(f"SIGKILL daemon {pid}: {why}")
            report.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        _abort_fuse_connection(fuse)

    # 1. the file system on the loop device
    if is_mountpoint(target):
        ran = run_deadline(["umount", str(target)], umount_timeout)
        report.steps.append(f"umount {target}: rc {ran.rc} in {ran.seconds:.2f} s {ran.out}".strip())
        if ran.rc is None:
            kill_daemon("umount hung")
        if is_mountpoint(target):
            ran = run_deadline(["umount", str(target)], 30)
            if ran.rc != 0:
                ran = run_deadline(["umount", "-l", str(target)], 30)
            report.steps.append(f"umount (retry) {target}: rc {ran.rc}")
    # 2. the loop device(s) on disk.img
    loops = set(loops_backed_by(image))
    if state.get("loop") and loop_attached(state["loop"]):
        loops.add(state["loop"])
    for dev in sorted(loops):
        ran = run_deadline(["losetup", "-d", dev], loop_timeout)
        report.steps.append(f"losetup -d {dev}: rc {ran.rc} {ran.out}".strip())
        if ran.rc is None:
            kill_daemon("losetup -d hung")
            ran = run_deadline(["losetup", "-d", dev], loop_timeout)
        deadline = time.monotonic() + 10
        while loop_attached(dev) and time.monotonic() < deadline:
            time.sleep(0.05)
    # 3. the daemon: SIGTERM lets libfuse unmount and the daemon save its map
    pid = daemon()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if _wait_gone(pid, daemon_timeout):
            report.steps.append(f"daemon {pid} stopped")
        else:
            run_deadline(["fusermount3", "-u", "-z", str(fuse)], 10)
            if not _wait_gone(pid, 5):
                kill_daemon(f"no exit within {daemon_timeout} s of SIGTERM")
    # 4. a FUSE mount left behind (daemon killed or crashed)
    if is_mountpoint(fuse):
        ran = run_deadline(["fusermount3", "-u", "-z", str(fuse)], 10)
        if ran.rc != 0:
            ran = run_deadline(["umount", "-l", str(fuse)], 10)
        report.steps.append(f"FUSE unmount {fuse}: rc {ran.rc}")
    if state:
        state.update(loop=None, pid=None)
        (workdir / STATE_FILE).write_text(json.dumps(state, indent=1))
    report.seconds = time.monotonic() - t0
    left = leftovers(workdir)
    if left:
        raise TeardownError(f"still attached after teardown of {workdir}: {left}; steps: {report.steps}")
    return report


def leftovers(workdir: str | os.PathLike) -> list[str]:
    """What is still attached under workdir: mounts, loop devices, a live daemon (empty when clean)."""
    workdir = Path(workdir).resolve()
    prefix = str(workdir) + os.sep
    found = [f"mount {p} ({m['fstype']})" for p, m in mounts().items() if p.startswith(prefix)]
    found += [f"loop {d}" for d in loops_backed_by(workdir / "fuse" / IMAGE_NAME)]
    pid = daemon_pid(workdir / "cache" / PIDFILE)
    if pid is not None:
        found.append(f"daemon {pid}")
    return found


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _abort_fuse_connection(fuse: Path) -> None:
    """Abort the FUSE connection through fusectl, where it is mounted (a second universal un-hang)."""
    info = mounts().get(str(fuse))
    if info is None or not info["fstype"].startswith("fuse"):
        return
    minor = info["dev"].split(":")[1]
    abort = Path(f"/sys/fs/fuse/connections/{minor}/abort")
    if abort.exists():
        with contextlib.suppress(OSError):
            abort.write_text("1")


# -- progress and finishing --------------------------------------------------------------------------

def hydrate_status(cache_dir: str | os.PathLike) -> dict[str, Any]:
    """Hydration progress of a cache folder (or of an InstantMount's workdir): the daemon's live status if
    it runs ("daemon": True), else what its saved block map says ("daemon": False)."""
    cache = Path(cache_dir)
    if not (cache / MAP_FILE).exists() and (cache / "cache" / MAP_FILE).exists():
        cache = cache / "cache"
    pid = daemon_pid(cache / PIDFILE)
    if pid is not None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            st = json.loads((cache / STATUS_FILE).read_text())
            if st.get("pid") == pid:
                return {**st, "daemon": True}
    st = map_status(cache)
    return {**st, "daemon": pid is not None}


def materialize_image(cache_dir: str | os.PathLike, dest: str | os.PathLike | None = None, *,
                      repo: Any = None, entry: Any = None, application: str = "", point: str = "",
                      verify: bool = True) -> Path:
    """Turn a cache into a plain image file that can be attached without FUSE (`losetup` + `mount`).

    The daemon must be stopped. If blocks are still absent, they are fetched now when repo and entry are
    given (else InstantMountError). With verify and no local writes, the image's SHA-256 is checked against
    the manifest's. dest None: the cache file itself is the image (returned); otherwise the image is moved
    to dest (a rename on the same file system, else a sparse copy) and the cache folder forgets it."""
    cache = Path(cache_dir)
    if daemon_pid(cache / PIDFILE) is not None:
        raise InstantMountError(f"the daemon still serves {cache}: tear the mount down first")
    st = map_status(cache)
    if not st["complete"]:
        if repo is None or entry is None:
            raise InstantMountError(f"{st['absent_blocks']} blocks are not hydrated yet: pass repo and entry")
        with LazyDisk(RepoVolume(repo, entry, application or st["identity"].get("application", ""),
                                 point or st["identity"].get("point", "")), cache, hydrate=False,
                      save_interval=0) as disk:
            disk.hydrate_all()
    image = cache / CACHE_FILE
    expected = st["identity"].get("sha256")
    if verify and expected and not dirty_blocks(cache):
        got = image_sha256(image)
        if got != expected:
            raise InstantMountError(f"{image}: SHA-256 {got} differs from the manifest's {expected}")
    if dest is None:
        return image
    dest = Path(dest)
    try:
        os.replace(image, dest)
    except OSError:
        ran = run_deadline(["cp", "--sparse=always", str(image), str(dest)], 3600)
        if ran.rc != 0:
            raise InstantMountError(f"copying {image} to {dest} failed: {ran.out}") from None
        image.unlink()
    (cache / MAP_FILE).unlink(missing_ok=True)
    return dest


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def remove_workdir(workdir: str | os.PathLike) -> None:
    """Delete a torn-down work folder (refuses while anything is attached)."""
    left = leftovers(workdir)
    if left:
        raise TeardownError(f"refusing to delete {workdir}: {left}")
    shutil.rmtree(workdir, ignore_errors=True)
