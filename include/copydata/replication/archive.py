"""Log archives on the proxy host: which files of an archive folder are logs, and which logs a point needs.

PostgreSQL archives WAL segments (`000000010000000000000003`), timeline history files (`00000002.history`),
backup history files (`...0003.00000028.backup`) and, after a promotion, partial segments (`....partial`) into
`<archive mount>/wal`. MariaDB/MySQL archive closed binary logs (`mariadb-bin.000004`) into
`<archive mount>/binlog`. Temporary copies (`<name>.tmp`, `.<name>.tmp`) are never logs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from copydata.repo.layout import NAME_RE as REPO_NAME_RE

WAL_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
WAL_FILE_RE = re.compile(r"^(?P<seg>[0-9A-F]{24})(\.partial|\.[0-9A-F]{8}\.backup)?$|^[0-9A-F]{8}\.history$")
BINLOG_RE = re.compile(r"^(?P<base>[^/]+)\.(?P<num>\d{6,})$")
SEGMENTS_PER_ID = 0x100
MYSQL_FAMILY = ("mariadb", "mysql")


def engine_name(engine: Any) -> str:
    return str(getattr(engine, "value", engine))


def archive_subdir(engine: Any) -> str:
    """The archive folder inside the log (archive) volume's mount, as the engine writes it."""
    name = engine_name(engine)
    if name == "postgresql":
        from copydata.engines.postgres.engine import ARCHIVE_SUBDIR
        return ARCHIVE_SUBDIR
    if name in MYSQL_FAMILY:
        from copydata.engines.mariadb.engine import ARCHIVE_SUBDIR as BINLOG_SUBDIR
        return BINLOG_SUBDIR
    raise ValueError(f"replication of {name} logs is not supported (postgresql, mariadb, mysql)")


def is_log_file(engine: Any, name: str) -> bool:
    if not REPO_NAME_RE.fullmatch(name) or name.endswith(".tmp"):
        return False
    kind = engine_name(engine)
    if kind == "postgresql":
        return bool(WAL_FILE_RE.match(name))
    if kind in MYSQL_FAMILY:
        return bool(BINLOG_RE.match(name))
    return True


def log_files(engine: Any, folder: Path) -> list[str]:
    """The log files in an archive folder (regular files only), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()
                  and is_log_file(engine, p.name))


# -- which logs a point needs ----------------------------------------------------------------------

def log_start(engine_meta: dict[str, Any]) -> str | None:
    """The first log file a point needs for recovery, from a manifest's engine metadata (the catalog
    snapshot's engine_meta is under "snapshot"): PostgreSQL's start_segment (the backup label's WAL file),
    MariaDB/MySQL's start_segment or binlog_file (the binary log current at the snapshot). None: unknown."""
    snap = engine_meta.get("snapshot") or {}
    for key in ("start_segment", "binlog_file"):
        value = snap.get(key)
        if isinstance(value, str) and value:
            return value.rsplit("/", 1)[-1]
    return None


def _wal_number(name: str) -> int | None:
    m = WAL_FILE_RE.match(name)
    if not m or not m.group("seg"):
        return None   # a history file: always kept
    seg = m.group("seg")
    return int(seg[8:16], 16) * SEGMENTS_PER_ID + int(seg[16:24], 16)


def precedes(engine: Any, name: str, start: str) -> bool:
    """True if log `name` lies before `start` (the first log a point needs), so that point does not need
    it. Anything that cannot be compared (history files, another binlog series, unknown names) is False:
    retention keeps what it does not understand."""
    kind = engine_name(engine)
    if kind == "postgresql":
        mine, first = _wal_number(name), _wal_number(start)
        return mine is not None and first is not None and mine < first
    if kind in MYSQL_FAMILY:
        a, b = BINLOG_RE.match(name), BINLOG_RE.match(start)
        return bool(a and b and a.group("base") == b.group("base") and int(a.group("num")) < int(b.group("num")))
    return False
