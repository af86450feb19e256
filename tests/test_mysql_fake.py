"""The MySQL 8 statements of the MariaDB/MySQL engine (quiesce, push_logs), in order, against a recorded fake of
MySQL 8.0.36 and 8.4.0; against a real MySQL when COPYDATA_TEST_MYSQL_DSN=mysql://user:pass@host:port/db is set
(the statement order is still checked, through a recording connection; the recorded values are not)."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from copydata.engines.base import DbTarget
from copydata.engines.mariadb import MariaDbEngine, QuiesceLost, sql

from fakes.mysql import FakeMySql, Recorder

pytestmark = pytest.mark.fake
REAL_DSN = os.environ.get("COPYDATA_TEST_MYSQL_DSN")
fake_only = pytest.mark.skipif(bool(REAL_DSN), reason="recorded values: fake only")


def parse_dsn(dsn: str) -> DbTarget:
    url = urlsplit(dsn)
    if url.scheme != "mysql" or not url.hostname:
        raise ValueError(f"COPYDATA_TEST_MYSQL_DSN: expected mysql://user:pass@host:port/db, got {dsn!r}")
    return DbTarget(url.hostname, url.port or 3306, unquote(url.username or "root"),
                    unquote(url.password) if url.password else None, url.path.lstrip("/") or None)


@dataclass
class Harness:
    engine: MariaDbEngine
    log: FakeMySql | Recorder  # .sql(conn_id) and .statements either way
    archive: Path

    @property
    def fake(self) -> FakeMySql | None:
        return self.log if isinstance(self.log, FakeMySql) else None

    def status(self) -> str:
        return self.engine.flavor.binlog_status()


@pytest.fixture(params=["real"] if REAL_DSN else ["8.0.36", "8.4.0"])
def mysql(request, tmp_path: Path) -> Harness:
    archive = tmp_path / "archive"
    if REAL_DSN:
        log = Recorder(sql.connect)
        engine = MariaDbEngine(parse_dsn(REAL_DSN), archive_mount=archive, flavor="mysql", connect=log.connect)
    else:
        log = FakeMySql(request.param, tmp_path / "server")
        engine = MariaDbEngine(DbTarget("db.example", 3306, "copydata", "secret"), data_mount=tmp_path / "data",
                               archive_mount=archive, flavor="mysql", connect=log.connect, sleep=lambda s: None)
    return Harness(engine, log, archive)


def quiesce_statements(h: Harness) -> list[str]:
    return ["SELECT VERSION(), @@version_comment", "SET SESSION lock_wait_timeout = 30", "LOCK INSTANCE FOR BACKUP",
            h.status(), "SELECT @@GLOBAL.gtid_executed, UTC_TIMESTAMP(6)", h.engine.flavor.settings_query()]


def test_quiesce_takes_the_backup_lock_reads_the_position_and_unlocks(mysql: Harness):
    with mysql.engine.quiesce("nightly", 30) as freeze:
        if mysql.fake:
            assert mysql.fake.lock_holder == 1
    assert mysql.log.sql(1) == [*quiesce_statements(mysql), "SELECT UTC_TIMESTAMP(6)", "UNLOCK INSTANCE"]
    assert freeze.meta["flavor"] == "mysql" and not mysql.engine.flavor.mariadb
    assert re.fullmatch(r".+\.\d{6,}", freeze.meta["binlog_file"]) and freeze.meta["binlog_pos"] > 0
    assert freeze.meta["start_segment"] == freeze.meta["binlog_file"] and freeze.meta["gtid_mode"] == "ON"
    assert freeze.frozen_at <= freeze.thawed_at and freeze.consistent_at is not None
    assert "BACKUP STAGE START" not in mysql.log.sql()


@fake_only
def test_recorded_values_and_the_statement_each_version_knows(mysql: Harness):
    with mysql.engine.quiesce("nightly", 30) as freeze:
        pass
    expected = "SHOW MASTER STATUS" if mysql.fake.version == "8.0.36" else "SHOW BINARY LOG STATUS"
    assert mysql.status() == expected and expected in mysql.log.sql()
    other = ({"SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"} - {expected}).pop()
    assert other not in mysql.log.sql()
    assert freeze.meta["binlog_file"] == "binlog.000042" and freeze.meta["binlog_pos"] == 157 + 3 * 1007
    assert freeze.meta["gtid_executed"] == "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-1007"
    assert freeze.consistent_at == dt.datetime(2026, 11, 27, 10, 0, 1, tzinfo=dt.UTC)
    assert freeze.meta["settings"]["collation_server"] == "utf8mb4_0900_ai_ci"
    assert mysql.fake.lock_holder is None and mysql.fake.connections[0].closed


def test_unlock_runs_in_finally_when_the_body_raises(mysql: Harness):
    with pytest.raises(RuntimeError, match="array refused"), mysql.engine.quiesce("nightly", 30):
        raise RuntimeError("array refused the snapshot")
    assert mysql.log.sql(1) == [*quiesce_statements(mysql), "UNLOCK INSTANCE"]
    if mysql.fake:
        assert mysql.fake.lock_holder is None and mysql.fake.connections[0].closed
    else:
        assert backup_locks(mysql.engine) == 0


@fake_only
def test_a_lost_session_makes_the_snapshot_suspect(mysql: Harness):
    with pytest.raises(QuiesceLost, match="failed before UNLOCK INSTANCE"), mysql.engine.quiesce("nightly", 30):
        mysql.fake.connections[0].drop()  # the server ends the session: its lock is gone with it
    assert mysql.fake.lock_holder is None and mysql.log.sql(1) == quiesce_statements(mysql)  # nothing got through


def test_push_logs_flushes_and_archives_every_closed_binlog(mysql: Harness):
    if not mysql.fake:
        pytest.importorskip("mysql.connector")
        if not binlog_dir_is_local(mysql.engine):
            pytest.skip("the real server's binary logs are not readable on this host")
    pos = mysql.engine.push_logs(30)
    statements = mysql.log.sql(1)
    clock_reads = [s for s in statements if s == "SELECT UTC_TIMESTAMP(6)"]
    assert clock_reads and statements == [
        "SELECT VERSION(), @@version_comment", "SET SESSION lock_wait_timeout = 30", *clock_reads,
        "FLUSH BINARY LOGS", mysql.status(), "SELECT @@GLOBAL.gtid_executed", "SHOW BINARY LOGS",
        "SELECT @@GLOBAL.log_bin_basename"]
    archived = sorted(p.name for p in (mysql.archive / "binlog").iterdir())
    assert pos.end_segment in archived and pos.covered_to.microsecond == 0
    assert mysql.engine.check_archive(mysql.archive, archived[0]).continuous
    if mysql.fake:
        assert archived == ["binlog.000042"] and pos.end_position == f"binlog.000043:{157 + 3 * 1014}"
        assert pos.covered_to == dt.datetime(2026, 11, 27, 10, 0, 1, tzinfo=dt.UTC)
        assert pos.meta["gtid_executed"].endswith(":1-1014")
        again = mysql.engine.push_logs(30)  # already archived files are verified, never copied again
        assert again.meta["archived"] == ["binlog.000043"]


def backup_locks(engine: MariaDbEngine) -> int:
    conn = sql.connect(engine.db, 10)
    try:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM performance_schema.metadata_locks WHERE OBJECT_TYPE = 'BACKUP LOCK'")
        return int(cur.fetchall()[0][0])
    finally:
        conn.close()


def binlog_dir_is_local(engine: MariaDbEngine) -> bool:
    conn = sql.connect(engine.db, 10)
    try:
        cur = conn.cursor()
        cur.execute("SELECT @@GLOBAL.log_bin_basename")
        return os.access(Path(cur.fetchall()[0][0]).parent, os.R_OK)
    finally:
        conn.close()
