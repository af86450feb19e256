"""Shared by every lab: names, sizes, paths, step lines, the emulator, the array client and this host."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import socket
import subprocess
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TextIO

from .. import paths

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,36}$")  # "lab-" + name stays a valid SLA name (41 chars)
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE)
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
IQN_PREFIX = "iqn.2026-11.io.copydata"
EMULATOR_HOST = "127.0.0.1"


class LabError(RuntimeError):
    """A lab cannot be built or removed; the message says why and what to do."""


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabError(f"lab name {name!r}: use 1-37 characters a-z, 0-9 and '-', starting with a letter or digit")
    return name


def parse_size(text: str) -> int:
    """'20G' -> bytes (binary units), rounded up to a multiple of 512 as the array requires."""
    m = SIZE_RE.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise LabError(f"size {text!r}: expected a positive number with an optional unit K, M, G or T (e.g. 20G)")
    size = int(float(m.group(1)) * UNITS[m.group(2).upper()])
    return -(-size // 512) * 512


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("copydata lab needs root: it attaches loop devices, mounts filesystems and runs runuser")


def lab_dir(name: str) -> Path:
    return paths.home() / "lab" / name


@dataclass(frozen=True)
class LabLayout:
    """Where a lab keeps its things, whatever the engine: the data volume mounted at <root>/data, the log
    archive at <root>/archive, sockets, logs and option files in <root>/run."""

    name: str
    root: Path  # $COPYDATA_HOME/lab/<name>

    @classmethod
    def named(cls, name: str) -> Self:
        return cls(check_name(name), lab_dir(name))

    @property
    def data_mount(self) -> Path:
        return self.root / "data"

    @property
    def archive_mount(self) -> Path:
        return self.root / "archive"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"


def short_hostname() -> str:
    """This machine's short host name, as the array allows it in object names."""
    short = socket.gethostname().split(".")[0].lower()
    return re.sub(r"[^a-z0-9-]+", "-", short).strip("-") or "localhost"


def lab_host() -> str:
    return f"lab-{short_hostname()}"


def lab_iqn() -> str:
    return f"{IQN_PREFIX}:{short_hostname()}"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def first_free_port(start: int, taken: Collection[int] = (), tries: int = 200) -> int:
    for port in range(start, start + tries):
        if port not in taken and port_free(port):
            return port
    raise LabError(f"no free TCP port in {start}-{start + tries - 1} on 127.0.0.1: pass --port")


def chown(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def os_user_exists(user: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise LabError(f"OS user {user!r} does not exist: install the database server package first") from None


def run_as(user: str, cmd: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{Path(cmd[0]).name} (as {user}) exited {proc.returncode}: "
                       f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def check_reachable(user: str, folder: Path) -> None:
    """The database's OS user must be able to walk down to the lab folder."""
    if run_as(user, ["test", "-x", str(folder)], check=False).returncode != 0:
        raise LabError(f"OS user {user} cannot reach {folder}: make its parent folders searchable "
                       f"(chmod o+x) or set COPYDATA_HOME to a folder under /var/lib or /srv")


class Steps:
    """One line per step: its number, what it did, how long it took and a short note."""

    def __init__(self, title: str, out: TextIO | None = None):
        self.out, self.count = out, 0
        print(f"== {title}", file=out, flush=True)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[dict]:
        self.count += 1
        note: dict = {}
        start = time.perf_counter()
        try:
            yield note
        except BaseException:
            print(f"[{self.count:2}] {what:<24} FAILED after {time.perf_counter() - start:.2f} s",
                  file=self.out, flush=True)
            raise
        took = time.perf_counter() - start
        print(f"[{self.count:2}] {what:<24} {took:7.2f} s  {note.get('text', '')}".rstrip(),
              file=self.out, flush=True)
