"""A recorded DB-API fake of MySQL 8.0.36 and 8.4.0, for the statements copydata's MariaDB/MySQL engine issues.

The answers (versions, column sets, syntax errors) were taken from those servers' documentation and output:
8.0.36 knows SHOW MASTER STATUS but not SHOW BINARY LOG STATUS (added in 8.2.0); 8.4.0 the reverse. Any
statement the fake does not know fails the test. Every statement is recorded, in order, with the id of the
connection that sent it; closing a connection drops its backup lock, as the server does.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mysql.connector import errors

SERVER_UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
RECORDINGS: dict[str, dict[str, Any]] = {
    "8.0.36": {"version": "8.0.36", "version_comment": "MySQL Community Server - GPL",
               "status_statement": "SHOW MASTER STATUS",
               "binary_logs_columns": ("Log_name", "File_size", "Encrypted")},
    "8.4.0": {"version": "8.4.0", "version_comment": "MySQL Community Server - GPL",
              "status_statement": "SHOW BINARY LOG STATUS",
              "binary_logs_columns": ("Log_name", "File_size", "Encrypted")},
}
STATUS_COLUMNS = ("File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB", "Executed_Gtid_Set")
BINLOG_START = b"\xfebin" + struct.pack("<IBIIIH", 1795773600, 15, 1, 19, 23, 0)  # magic + an empty event


def syntax_error(statement: str) -> errors.ProgrammingError:
    return errors.ProgrammingError(msg=f"You have an error in your SQL syntax; check the manual that corresponds "
                                       f"to your MySQL server version for the right syntax to use near "
                                       f"'{statement.split()[-1]}' at line 1", errno=1064, sqlstate="42000")


@dataclass
class FakeMySql:
    version: str
    binlog_dir: Path
    clock: dt.datetime = dt.datetime(2026, 11, 27, 10, 0, 0, 400000)
    tick: dt.timedelta = dt.timedelta(milliseconds=300)  # each UTC_TIMESTAMP() moves the clock on
    file_number: int = 41
    transactions: int = 1000
    statements: list[tuple[int, str]] = field(default_factory=list)
    lock_holder: int | None = None
    connections: list[FakeConnection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recording = RECORDINGS[self.version]
        self.binlog_dir.mkdir(parents=True, exist_ok=True)
        self._flush()

    # -- DB-API entry point: the engine's `connect` -------------------------------------------------
    def connect(self, db: Any, timeout: float) -> FakeConnection:
        self.connections.append(FakeConnection(self, len(self.connections) + 1))
        return self.connections[-1]

    def sql(self, conn_id: int | None = None) -> list[str]:
        return [s for c, s in self.statements if conn_id is None or c == conn_id]

    # -- server state ---------------------------------------------------------------------------
    @property
    def variables(self) -> dict[str, Any]:
        return {"version_comment": self.recording["version_comment"], "datadir": f"{self.binlog_dir}/",
                "log_bin_basename": str(self.binlog_dir / "binlog"), "server_id": 1, "gtid_mode": "ON",
                "gtid_executed": self.gtid_executed, "innodb_page_size": 16384,
                "innodb_data_file_path": "ibdata1:12M:autoextend", "lower_case_table_names": 0,
                "character_set_server": "utf8mb4", "collation_server": "utf8mb4_0900_ai_ci",
                "sql_mode": "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
                            "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"}

    @property
    def gtid_executed(self) -> str:
        return f"{SERVER_UUID}:1-{self.transactions}"

    def file_name(self, number: int) -> str:
        return f"binlog.{number:06d}"

    def _flush(self) -> None:
        self.file_number += 1
        (self.binlog_dir / self.file_name(self.file_number)).write_bytes(BINLOG_START)
        self.transactions += 7

    def now(self) -> dt.datetime:
        self.clock += self.tick
        return self.clock

    # -- statements -----------------------------------------------------------------------------
    def execute(self, conn_id: int, statement: str) -> tuple[tuple[str, ...], list[tuple]]:
        text = " ".join(statement.split())
        self.statements.append((conn_id, text))
        for pattern, handler in self._handlers():
            if m := re.fullmatch(pattern, text, flags=re.IGNORECASE):
                return handler(conn_id, m)
        raise AssertionError(f"the fake MySQL {self.version} does not know {text!r}")

    def _handlers(self) -> list[tuple[str, Callable]]:
        return [(r"SELECT (.+)", self._select),
                (r"SET SESSION lock_wait_timeout = \d+", self._ok),
                (r"LOCK INSTANCE FOR BACKUP", self._lock),
                (r"UNLOCK INSTANCE", self._unlock),
                (r"SHOW (MASTER|BINARY LOG) STATUS", self._status),
                (r"SHOW BINARY LOGS", self._binary_logs),
                (r"FLUSH BINARY LOGS", self._flush_logs)]

    def _ok(self, conn_id: int, m: re.Match) -> tuple[tuple, list]:
        return (), []

    def _lock(self, conn_id: int, m: re.Match) -> tuple[tuple, list]:
        self.lock_holder = conn_id
        return (), []

    def _unlock(self, conn_id: int, m: re.Match) -> tuple[tuple, list]:
        if self.lock_holder == conn_id:
            self.lock_holder = None
        return (), []

    def _status(self, conn_id: int, m: re.Match) -> tuple[tuple, list]:
        if m.group(0).upper() != self.recording["status_statement"]:
            raise syntax_error(m.group(0))
        return STATUS_COLUMNS, [(self.file_name(self.file_number), 157 + 3 * self.transactions, "", "",
                                 self.gtid_executed)]

    def _binary_logs(self, conn_id: int, m: re.Match) -> tuple[tuple, list]:
        rows = [(self.file_name(n), (self.binlog_dir / self.file_name(n)).stat().st_size, "No")
                for n in range(42, self.file_number + 1)]
        return self.recording["binary_logs_columns"], rows

    def _flush_logs(self, conn_id: int, m: re.Match) -> tuple[tuple, list]:
        self._flush()
        return (), []

    def _select(self, conn_id: int, m: re.Match) -> tuple[tuple, list]:
        items = [item.strip() for item in m.group(1).split(",")]
        return tuple(items), [tuple(self._value(item) for item in items)]

    def _value(self, item: str) -> Any:
        if item.upper() == "VERSION()":
            return self.recording["version"]
        if item.upper() == "UTC_TIMESTAMP(6)":
            return self.now()
        name = re.sub(r"^@@(GLOBAL\.|SESSION\.)?", "", item, flags=re.IGNORECASE)
        if not item.startswith("@@") or name not in self.variables:
            raise errors.ProgrammingError(msg=f"Unknown system variable '{name}'", errno=1193, sqlstate="HY000")
        return self.variables[name]


class FakeConnection:
    def __init__(self, server: FakeMySql, conn_id: int):
        self.server, self.id, self.closed = server, conn_id, False

    def cursor(self, **kwargs: Any) -> FakeCursor:
        return FakeCursor(self)

    def drop(self) -> None:
        """The network goes away (or the server kills the session): the server releases its locks."""
        self.close()

    def close(self) -> None:
        if not self.closed and self.server.lock_holder == self.id:
            self.server.lock_holder = None
        self.closed = True


class FakeCursor:
    def __init__(self, conn: FakeConnection):
        self.conn, self.column_names, self._rows = conn, (), []

    def execute(self, statement: str, params: Any = None) -> None:
        if self.conn.closed:
            raise errors.OperationalError(msg="MySQL Connection not available", errno=2055)
        self.column_names, self._rows = self.conn.server.execute(self.conn.id, statement)

    def fetchone(self) -> tuple | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        pass


class Recorder:
    """Wraps a real connect function so that tests can read the statements sent to a real server too."""

    def __init__(self, connect: Callable[[Any, float], Any]):
        self._connect, self.statements, self.connections = connect, [], 0

    def connect(self, db: Any, timeout: float) -> Any:
        self.connections += 1
        return _RecordingConnection(self._connect(db, timeout), self, self.connections)

    def sql(self, conn_id: int | None = None) -> list[str]:
        return [s for c, s in self.statements if conn_id is None or c == conn_id]


class _RecordingConnection:
    def __init__(self, conn: Any, recorder: Recorder, conn_id: int):
        self._conn, self._recorder, self.id = conn, recorder, conn_id

    def cursor(self, **kwargs: Any) -> _RecordingCursor:
        return _RecordingCursor(self._conn.cursor(**kwargs), self._recorder, self.id)

    def close(self) -> None:
        self._conn.close()


class _RecordingCursor:
    def __init__(self, cur: Any, recorder: Recorder, conn_id: int):
        self._cur, self._recorder, self._id = cur, recorder, conn_id

    def execute(self, statement: str, params: Any = None) -> Any:
        self._recorder.statements.append((self._id, " ".join(statement.split())))
        return self._cur.execute(statement, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)
