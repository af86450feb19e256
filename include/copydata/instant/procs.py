"""Process and mount facts for the instant mount, read from /proc only (never from a mounted file system,
which could hang on a stuck FUSE daemon)."""

from __future__ import annotations

import os
from pathlib import Path

PIDFILE = "daemon.pid"
LOGFILE = "daemon.log"
DAEMON_MARK = "copydata.instant.daemon"


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def daemon_pid(pidfile: Path) -> int | None:
    """The PID in pidfile if that process is alive and is an instant-mount daemon."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None
    return pid if DAEMON_MARK in cmdline and pid_alive(pid) else None


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts() -> dict[str, dict[str, str]]:
    """Mount points from /proc/self/mountinfo: {path: {dev, fstype, source}}. Reads no mounted file
    system, so it cannot hang on a stuck FUSE daemon (os.path.ismount would)."""
    found: dict[str, dict[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) >= 5 and len(rest) >= 2:
            found[_unescape(fields[4])] = {"dev": fields[2], "fstype": rest[0], "source": _unescape(rest[1])}
    return found


def is_mountpoint(path: str | os.PathLike) -> bool:
    return os.path.abspath(path) in mounts()
