"""Small wrappers over the Linux commands copydata drives (losetup, mount, fsfreeze, mkfs)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


class CommandError(RuntimeError):
    def __init__(self, cmd: list[str], rc: int, stderr: str):
        self.cmd, self.rc, self.stderr = cmd, rc, stderr.strip()
        super().__init__(f"{' '.join(cmd)} exited {rc}: {self.stderr}")


def run(cmd: list[str], check: bool = True, timeout: float = 120) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise CommandError(cmd, 127, f"{cmd[0]}: command not found") from None
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stderr or proc.stdout)
    return proc.stdout


def is_root() -> bool:
    return os.geteuid() == 0


def loop_attach(path: str | Path, direct_io: bool = True) -> str:
    """Attach a file to a new loop device and return the device path."""
    cmd = ["losetup", "--show", "-f", str(path)]
    if direct_io:
        cmd[1:1] = ["--direct-io=on"]
    return run(cmd).strip()


def loop_detach(dev: str) -> None:
    run(["losetup", "-d", dev], check=False)


def loop_refresh_capacity(dev: str) -> None:
    run(["losetup", "-c", dev], check=False)


def loop_devices() -> list[dict]:
    """Every attached loop device: {"name": "/dev/loopN", "back-file": "..."}."""
    out = run(["losetup", "-J", "-l"], check=False)
    if not out.strip():
        return []
    return json.loads(out).get("loopdevices", [])


def loops_backed_by(folder: str | Path) -> dict[str, str]:
    """{back-file: device} for loop devices whose backing file lies under folder."""
    prefix = str(Path(folder).resolve()) + os.sep
    found = {}
    for d in loop_devices():
        back = (d.get("back-file") or "").removesuffix(" (deleted)")
        if back.startswith(prefix):
            found[back] = d["name"]
    return found


def mounts_of(dev: str) -> list[str]:
    """Mount points of a block device, from /proc/self/mountinfo (by major:minor)."""
    try:
        st = os.stat(dev)
    except FileNotFoundError:
        return []
    want = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[2] == want:
            points.append(fields[4].replace("\\040", " "))
    return points


def is_mountpoint(path: str | Path) -> bool:
    target = str(Path(path).resolve())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4].replace("\\040", " ") == target:
            return True
    return False


def umount(point: str, lazy_fallback: bool = True) -> None:
    try:
        run(["umount", point])
    except CommandError:
        if not lazy_fallback:
            raise
        log.warning("umount %s failed (busy); detaching lazily", point)
        run(["umount", "-l", point], check=False)


def stop_child(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM a child we started, wait up to timeout, then SIGKILL it and reap it."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder, so that a rename or a new name in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_port() -> int:
    """A TCP port free on loopback right now (the kernel's pick; another process may still take it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_http(cmd: list[str], probe_url: str, log, timeout: float = 60) -> subprocess.Popen:
    """Start cmd (one process, no shell, output to the open file `log`) and return once probe_url answers
    any HTTP status. Fails fast when the process dies; stops it on a timeout."""
    import time
    import urllib.error
    import urllib.request

    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            log.flush()
            raise RuntimeError(f"{cmd[0]} exited with {p.returncode}; log: {log.name}")
        try:
            urllib.request.urlopen(probe_url, timeout=1).close()
            return p
        except urllib.error.HTTPError:   # any HTTP status: the server is up
            return p
        except OSError:
            time.sleep(0.05)
    stop_child(p)
    raise TimeoutError(f"{cmd[0]} did not answer {probe_url} within {timeout} s; log: {log.name}")
