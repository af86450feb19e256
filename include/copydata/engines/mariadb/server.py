"""The server process: option files, start, readiness, stop, and how an in-place restart finds its command."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..base import DbTarget

SERVER_NAMES = ("mariadbd", "mysqld")
PID_FILE, ERROR_LOG, OPTION_FILE, CLIENT_FILE = "mysqld.pid", "mysqld.err", "my.cnf", "client.cnf"


class RecoveryFailed(RuntimeError):
    pass


def program(name: str) -> str:
    """A MariaDB/MySQL program: on PATH, else in /usr/sbin or /usr/bin (Airflow's PATH may lack sbin)."""
    found = shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name)
                                        if p.exists()), None)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed on this host")
    return found


# -- option files --------------------------------------------------------------------------------
def write_options(path: Path, group: str, settings: dict[str, str | None], mode: int = 0o644) -> None:
    """An option file with one group; a None value writes a bare flag."""
    lines = [f"[{group}]"] + [k if v is None else f"{k} = {v}" for k, v in settings.items()]
    path.write_text("# written by copydata\n" + "\n".join(lines) + "\n")
    os.chmod(path, mode)


def write_client_options(path: Path, target: DbTarget) -> None:
    settings: dict[str, str | None] = {"user": target.user}
    if target.password:
        settings["password"] = target.password
    if target.host.startswith("/"):
        from .sql import socket_of
        settings["socket"] = socket_of(target.host)
    else:
        settings.update({"host": target.host, "port": str(target.port), "protocol": "TCP"})
    write_options(path, "client", settings, mode=0o600)


def server_id_for(name: str, avoid: int | None) -> int:
    """A stable server_id derived from the clone name, never 0 or 1, never the source's."""
    sid = 2 + zlib.crc32(name.encode()) % (2**31 - 3)
    return sid + 1 if sid == avoid else sid


# -- start and readiness --------------------------------------------------------------------------
def launch(argv: list[str], log: Path) -> subprocess.Popen:
    """Start the server in a session of its own: it outlives the task that started it."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd="/")


def wait_ready(ping: Callable[[], object], alive: Callable[[], bool], error_log: Path, deadline: float) -> None:
    """Until ping() succeeds: the server accepts connections only after crash and XA recovery."""
    last: Exception | None = None
    while True:
        try:
            ping()
            return
        except Exception as exc:  # not ready yet, or wrong credentials: keep the last reason
            last = exc
        if not alive():
            raise RecoveryFailed(f"the server exited during startup:\n{tail(error_log)}")
        if time.monotonic() > deadline:
            raise RecoveryFailed(f"the server did not accept connections in time ({last}):\n{tail(error_log)}")
        time.sleep(0.1)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


# -- finding and stopping --------------------------------------------------------------------------
def pids_on(datadir: Path) -> list[int]:
    """Server processes working in this data directory (mariadbd/mysqld chdir into it)."""
    want = os.path.realpath(datadir)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() in SERVER_NAMES and os.readlink(entry / "cwd") == want:
                found.append(int(entry.name))
        except OSError:  # gone, or a kernel thread
            continue
    return found


def terminate(pids: list[int], timeout: float = 120) -> None:
    """SIGTERM is a clean shutdown for mariadbd/mysqld; wait until every process is gone."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"server process(es) {pids} did not stop within {timeout:.0f} s")
        time.sleep(0.1)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own children
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# -- in place: restart the server the way it ran ---------------------------------------------------
@dataclass(frozen=True)
class Started:
    """How a running server was started, read from /proc before copydata stops it for a restore."""

    argv: list[str]
    user: str
    unit: str | None  # the systemd service that ran it, if any

    @classmethod
    def of(cls, pid: int) -> Started:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        uid = os.stat(f"/proc/{pid}").st_uid
        cgroup = Path(f"/proc/{pid}/cgroup").read_text().strip().rsplit("/", 1)[-1]
        unit = cgroup if cgroup.endswith(".service") and "user@" not in cgroup else None
        return cls(argv=argv, user=pwd.getpwuid(uid).pw_name, unit=unit)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Started | None:
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def start(self, log: Path) -> subprocess.Popen | None:
        if self.unit:
            subprocess.run(["systemctl", "start", self.unit], check=True, capture_output=True, timeout=600)
            return None
        argv = list(self.argv)
        if os.geteuid() == 0 and self.user != "root":  # as root, so it can reopen root-owned files; it drops to user
            argv.append(f"--user={self.user}")
        return launch(argv, log)
