"""What a copied data directory needs before its first start as a clone, and the clone's option file."""

from __future__ import annotations

import contextlib
import pwd
import stat
from pathlib import Path

from ..base import CloneSpec
from . import server, sql
from .server import RecoveryFailed


def check_reachable(path: Path, os_user: str) -> None:
    """The server drops to os_user: every folder above its files must let that user through (a clone under
    a $COPYDATA_HOME in /root would fail with a bare 'Permission denied' in the error log otherwise)."""
    user = pwd.getpwnam(os_user)
    for folder in (p for p in path.resolve().parents if p.exists()):
        st = folder.stat()
        bit = stat.S_IXUSR if st.st_uid == user.pw_uid else stat.S_IXGRP if st.st_gid == user.pw_gid else stat.S_IXOTH
        if user.pw_uid != 0 and not st.st_mode & bit:
            raise RecoveryFailed(f"{folder} is not searchable by {os_user}, who runs the server on {path}: "
                                 f"chmod o+x {folder}, or move $COPYDATA_HOME")


def relative_index(datadir: Path, base: str) -> None:
    """The first start must read the snapshot's binary logs (XA recovery). An index with absolute paths
    would point at the source's files: rewrite it to ./name entries, the files are in the copy."""
    index = datadir / f"{base}.index"
    if not index.exists():
        raise RecoveryFailed(f"{index} is missing: the binary logs must live in the data directory, since "
                             "the first start of a snapshot needs them to recover prepared transactions")
    lines = index.read_text().splitlines()
    if any(line.startswith("/") for line in lines):
        index.write_text("".join(f"./{Path(line).name}\n" for line in lines if line.strip()))


def remove_leftovers(datadir: Path, flavor: sql.Flavor, in_place: bool) -> None:
    """#sql* files of interrupted ALTERs (MariaDB KB on BACKUP STAGE snapshots; InnoDB drops its own
    #sql tables at startup, so .ibd files stay) and the source's pid file. MySQL clones: auto.cnf
    (server_uuid), and the persisted variables, which would override the clone's options."""
    leftovers = [p for p in [*datadir.glob("#sql*"), *datadir.glob("*/#sql*")] if p.suffix != ".ibd"]
    for path in [*leftovers, *datadir.glob("*.pid")]:
        path.unlink(missing_ok=True)
    if not flavor.mariadb and not in_place:
        (datadir / "auto.cnf").unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (datadir / "mysqld-auto.cnf").rename(datadir / "mysqld-auto.cnf.source")


def clone_options(spec: CloneSpec, datadir: Path, flavor: sql.Flavor, base: str, os_user: str) -> dict:
    """The clone's own option file: its port, socket and files in run_dir, a new server_id, the binary log
    with the SAME relative basename (XA recovery of the snapshot), no replication, UTC, the source's
    on-disk settings (page size, system tablespace, case rules) and SQL behaviour."""
    meta, run = spec.snapshot_meta, spec.run_dir
    settings: dict[str, str | None] = {
        "user": os_user, "datadir": str(datadir), "port": str(spec.port), "bind-address": "127.0.0.1",
        "socket": str(run / sql.SOCKET_NAME), "pid-file": str(run / server.PID_FILE),
        "log-error": str(run / server.ERROR_LOG),
        "server_id": str(server.server_id_for(spec.name, meta.get("server_id"))),
        "log_bin": base, "binlog_format": "ROW", flavor.skip_replica_start(): None,
        "default-time-zone": "'+00:00'", "event_scheduler": "OFF", "max_allowed_packet": "1G"}
    if not flavor.mariadb:  # the X plugin would listen on the source's 33060; replay relies on GTIDs
        settings.update({"mysqlx": "OFF", "gtid_mode": "ON", "enforce_gtid_consistency": "ON"})
    settings.update({k: f'"{v}"' for k, v in meta.get("settings", {}).items()})
    return settings
