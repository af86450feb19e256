"""Restore in place: restart the source the way it ran, and keep its binary log names clear of the archive."""

from __future__ import annotations

import hashlib
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ... import paths
from . import binlog, sql
from .server import RecoveryFailed


def started_file(datadir: Path) -> Path:
    """Where stop() records how the source ran ($COPYDATA_HOME/run/mariadb-<hash of the datadir>.json)."""
    key = hashlib.sha256(os.path.realpath(datadir).encode()).hexdigest()[:16]
    return paths.home() / "run" / f"mariadb-{key}.json"


def renumber(datadir: Path, archive: Path, base: str, os_user: str) -> None:
    """The restored server must not reuse file names the archive already holds (an archived binary log is
    never overwritten). The server names its next file after the highest number in the data directory:
    an empty placeholder there makes it continue after the archive."""
    archived, local = binlog.listing(archive, base), binlog.listing(datadir, base)
    if archived and (not local or binlog.number(archived[-1]) > binlog.number(local[-1])):
        placeholder = datadir / archived[-1]
        placeholder.touch()
        user = pwd.getpwnam(os_user)
        os.chown(placeholder, user.pw_uid, user.pw_gid)


def drop_placeholders(datadir: Path, base: str) -> None:
    """Empty binary log files the index does not list (the placeholder, once the server has started)."""
    index = set((datadir / f"{base}.index").read_text().split())
    for name in binlog.listing(datadir, base):
        path = datadir / name
        if f"./{name}" not in index and str(path) not in index and path.stat().st_size == 0:
            path.unlink()


def purge_restored_binlogs(conn: Any, flavor: sql.Flavor, deadline: float,
                           sleep: Callable[[float], None] = time.sleep) -> None:
    """The snapshot's own binary logs (the last one cut short) must never reach the archive, which holds
    the complete files under the same names. Once recovery is over, purge them."""
    cur = conn.cursor()
    while True:
        current = sql.query_one(cur, flavor.binlog_status())[0]
        cur.execute(f"PURGE BINARY LOGS TO '{current}'")
        cur.execute("SHOW BINARY LOGS")
        if [row[0] for row in cur.fetchall()] == [current]:
            return
        if time.monotonic() > deadline:
            raise RecoveryFailed(f"the restored server keeps binary logs before {current}")
        sleep(0.2)
