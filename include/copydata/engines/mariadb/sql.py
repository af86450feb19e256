"""Flavour-specific SQL and names: MariaDB 10.11+ versus MySQL 8.0 / 8.4, and the DB-API connection."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import DbTarget

SOCKET_NAME = "mysqld.sock"  # the socket file inside a clone's run folder
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")

# Server settings copied from the source into a clone's option file: they must match the files on disk
# (page size, system tablespace, case rules) or change how the data reads (modes, character sets).
CLONED_SETTINGS = ("innodb_page_size", "innodb_data_file_path", "lower_case_table_names", "character_set_server",
                   "collation_server", "sql_mode")
MARIADB_ONLY_SETTINGS = ("gtid_binlog_state", "innodb_log_file_size")  # MySQL 8.0.30+: innodb_redo_log_capacity

Connect = Callable[[DbTarget, float], Any]  # (target, timeout) -> DB-API connection in autocommit mode


@dataclass(frozen=True)
class Flavor:
    name: str  # "mariadb" or "mysql"
    version: tuple[int, int, int]

    @property
    def mariadb(self) -> bool:
        return self.name == "mariadb"

    def freeze(self) -> list[str]:
        """Enter the snapshot window. MariaDB blocks commits; MySQL's backup lock only blocks DDL."""
        return ["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"] if self.mariadb else ["LOCK INSTANCE FOR BACKUP"]

    def thaw(self) -> str:
        return "BACKUP STAGE END" if self.mariadb else "UNLOCK INSTANCE"

    def session_timeouts(self, timeout: float) -> str:
        """Bound every lock wait of the session (and, on MariaDB, every statement) by the freeze timeout."""
        seconds = max(1, int(timeout))
        if self.mariadb:
            return f"SET SESSION lock_wait_timeout = {seconds}, max_statement_time = {seconds}"
        return f"SET SESSION lock_wait_timeout = {seconds}"

    def binlog_status(self) -> str:
        """SHOW MASTER STATUS was deprecated in MySQL 8.2 and removed in 8.4."""
        if not self.mariadb and self.version >= (8, 2, 0):
            return "SHOW BINARY LOG STATUS"
        return "SHOW MASTER STATUS"

    def gtid_variable(self) -> str:
        return "@@GLOBAL.gtid_binlog_pos" if self.mariadb else "@@GLOBAL.gtid_executed"

    def settings_names(self) -> list[str]:
        """Variables recorded with a snapshot: where the files are, identity, what a clone must reuse."""
        return ["datadir", "log_bin_basename", "server_id", *CLONED_SETTINGS,
                *(MARIADB_ONLY_SETTINGS if self.mariadb else ("gtid_mode",))]

    def settings_query(self) -> str:
        return "SELECT " + ", ".join(f"@@GLOBAL.{n}" for n in self.settings_names())

    # -- programs and option names ----------------------------------------------------------
    def program(self, role: str) -> str:
        names = {"server": ("mariadbd", "mysqld"), "binlog": ("mariadb-binlog", "mysqlbinlog"),
                 "client": ("mariadb", "mysql")}[role]
        return names[0] if self.mariadb else names[1]

    def option_group(self) -> str:
        return "mariadbd" if self.mariadb else "mysqld"

    def skip_replica_start(self) -> str:
        return "skip-slave-start" if self.mariadb or self.version < (8, 0, 26) else "skip-replica-start"


def parse_flavor(version: str, comment: str = "") -> Flavor:
    """From SELECT VERSION(), @@version_comment: '10.11.18-MariaDB-0+deb12u1-log' / '8.4.0', 'MySQL ...'."""
    m = VERSION_RE.match(version or "")
    if not m:
        raise ValueError(f"unrecognised server version {version!r}")
    numbers = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return Flavor("mariadb" if "mariadb" in f"{version} {comment}".lower() else "mysql", numbers)


def detect(cur: Any) -> Flavor:
    version, comment = query_one(cur, "SELECT VERSION(), @@version_comment")
    return parse_flavor(str(version), str(comment or ""))


def socket_of(host: str) -> str | None:
    """DbTarget.host is a host name, a socket file, or a folder holding mysqld.sock (what clones return)."""
    if not host.startswith("/"):
        return None
    path = Path(host)
    return str(path / SOCKET_NAME) if path.is_dir() else host


def connect(db: DbTarget, timeout: float = 10) -> Any:
    import mysql.connector

    where: dict[str, Any] = {"host": db.host, "port": db.port}
    if (sock := socket_of(db.host)) is not None:
        where = {"unix_socket": sock}
    return mysql.connector.connect(**where, user=db.user, password=db.password or "", database=db.database,
                                   autocommit=True, connection_timeout=max(1, int(timeout)), use_pure=True)


def query_one(cur: Any, sql: str) -> tuple:
    """The first row (the rest is read too: an unread result would break the next statement)."""
    cur.execute(sql)
    rows = cur.fetchall()
    if not rows:
        raise RuntimeError(f"{sql!r} returned no row (is binary logging enabled?)")
    return tuple(rows[0])
