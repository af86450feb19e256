"""MariaDB 10.11 engine against a throwaway server under load, without the array: quiesce around an atomic copy
of the data directory (the server frozen with SIGSTOP stands in for the protection-group snapshot), binary log
backups, clones at past seconds checked row by row, the freeze released on errors and on SIGKILL, and a
restore in place."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from copydata.engines.base import CloneSpec, DbTarget, FreezeResult, LogPosition
from copydata.engines.mariadb import ARCHIVE_SUBDIR, MariaDbEngine, binlog, replay, server, sql
from copydata.lab.load import MariaLoad
from copydata.sysutil import free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "copydata-test"
OLTP_ROWS = 200


# -- pure functions (no server) ---------------------------------------------------------------------
def test_flavor_statements_follow_the_server_version():
    maria = sql.parse_flavor("10.11.18-MariaDB-0+deb12u1-log", "Debian 12")
    assert maria.mariadb and maria.freeze() == ["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"]
    assert maria.binlog_status() == "SHOW MASTER STATUS" and maria.thaw() == "BACKUP STAGE END"
    assert sql.parse_flavor("8.0.36", "MySQL Community Server - GPL").binlog_status() == "SHOW MASTER STATUS"
    assert sql.parse_flavor("8.4.0", "MySQL Community Server - GPL").binlog_status() == "SHOW BINARY LOG STATUS"


def test_archive_gaps_and_the_stop_second():
    names = ["mariadb-bin.000003", "mariadb-bin.000004", "mariadb-bin.000006"]
    assert binlog.gaps(names) == ("mariadb-bin.000003", "mariadb-bin.000006", ["mariadb-bin.000005"])
    assert binlog.gaps(names, "mariadb-bin.000002")[2] == ["mariadb-bin.000002", "mariadb-bin.000005"]
    assert binlog.gaps(names, "mariadb-bin.000004") == ("mariadb-bin.000004", "mariadb-bin.000006",
                                                         ["mariadb-bin.000005"])
    t = dt.datetime(2026, 11, 27, 10, 15, 0, tzinfo=dt.UTC)
    assert replay.stop_second(t) == t.timestamp()
    assert replay.stop_second(t + dt.timedelta(microseconds=1)) == t.timestamp() + 1


# -- the throwaway source ---------------------------------------------------------------------------
def whole_second(t: dt.datetime, plus: int = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(math.ceil(t.timestamp()) + plus, dt.UTC)


@dataclass
class Source:
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    data_mount = property(lambda self: self.root / "data")
    datadir = property(lambda self: self.root / "data" / "mysql")
    archive_mount = property(lambda self: self.root / "archive")
    run = property(lambda self: self.root / "run")
    cnf = property(lambda self: self.root / "src.cnf")

    @property
    def db(self) -> DbTarget:
        return DbTarget("127.0.0.1", self.port, "copydata", PASSWORD)

    def engine(self) -> MariaDbEngine:
        return MariaDbEngine(self.db, data_mount=self.data_mount, archive_mount=self.archive_mount)

    def connect(self):
        return sql.connect(self.db, 10)

    def pid(self) -> int:
        return server.pids_on(self.datadir)[0]


def write_source_cnf(src: Source) -> None:
    settings = {"user": "mysql", "datadir": str(src.datadir), "socket": str(src.run / "src.sock"),
                "port": str(src.port), "bind-address": "127.0.0.1", "pid-file": str(src.run / "src.pid"),
                "log-error": str(src.run / "src.err"), "default-time-zone": "'+00:00'", "server_id": "1",
                "log_bin": "mariadb-bin", "binlog_format": "ROW", "sync_binlog": "1",
                "innodb_flush_log_at_trx_commit": "1", "innodb_buffer_pool_size": "64M",
                "innodb_log_file_size": "16M", "performance_schema": "OFF", "skip-name-resolve": None}
    server.write_options(src.cnf, "mariadbd", settings)


def bootstrap(src: Source) -> None:
    for d in (src.root, src.data_mount, src.archive_mount, src.run):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
        shutil.chown(d, "mysql", "mysql")
    write_source_cnf(src)
    subprocess.run(["mariadb-install-db", f"--defaults-file={src.cnf}", "--user=mysql", "--skip-test-db",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=120)
    src.proc = server.launch(["/usr/sbin/mariadbd", f"--defaults-file={src.cnf}"], src.run / "src.out")
    root = DbTarget(str(src.run / "src.sock"), 0, "root")
    server.wait_ready(lambda: sql.connect(root, 2).close(), lambda: src.proc.poll() is None, src.run / "src.err",
                      time.monotonic() + 60)
    conn = sql.connect(root, 10)
    cur = conn.cursor()
    for statement in (f"CREATE USER copydata@'%' IDENTIFIED BY '{PASSWORD}'",
                      "GRANT ALL ON *.* TO copydata@'%' WITH GRANT OPTION",
                      "CREATE DATABASE app",
                      "CREATE TABLE app.ticks (id BIGINT AUTO_INCREMENT PRIMARY KEY, ts DATETIME(6) NOT NULL "
                      "DEFAULT NOW(6)) ENGINE=InnoDB",
                      "CREATE TABLE app.acct (id INT PRIMARY KEY, bal BIGINT NOT NULL) ENGINE=InnoDB",
                      "CREATE TABLE app.hist (id BIGINT AUTO_INCREMENT PRIMARY KEY, acct INT NOT NULL, "
                      "delta INT NOT NULL) ENGINE=InnoDB",
                      f"INSERT INTO app.acct SELECT seq, 0 FROM app.seq_1_to_{OLTP_ROWS}"):
        cur.execute(statement)
    conn.close()


def kill_servers_under(root: Path) -> None:
    """Safety net: SIGKILL, by pid, any server still working under the test folder."""
    prefix = os.path.realpath(root) + os.sep
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "mariadbd" \
                    and os.readlink(entry / "cwd").startswith(prefix):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    if os.geteuid() != 0 or not Path("/usr/sbin/mariadbd").exists():
        pytest.skip("needs root and /usr/sbin/mariadbd")
    root = Path(tempfile.mkdtemp(prefix="copydata-mariadb-", dir="/var/tmp"))
    src = Source(root)
    try:
        bootstrap(src)
        yield src
    finally:
        with contextlib.suppress(Exception):
            src.engine().stop(src.data_mount)
        kill_servers_under(root)
        if not os.environ.get("COPYDATA_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


# -- snapshots, log backups, clones ----------------------------------------------------------------------
@dataclass
class History:
    snaps: dict[str, tuple[FreezeResult, Path]]
    logs: list[tuple[LogPosition, Path]]  # each with a copy of the archive as it was (the log pgroup snapshot)
    ticks: list[tuple[int, dt.datetime]]
    end_gtid: str


def snapshot(engine: MariaDbEngine, src: Source, name: str) -> tuple[FreezeResult, Path]:
    dest = src.root / "snaps" / name
    dest.mkdir(parents=True)
    with engine.quiesce(f"test {name}", 30) as freeze:
        pid = src.pid()
        os.kill(pid, signal.SIGSTOP)  # the atomic "pgroup snapshot": nothing moves while cp runs
        try:
            subprocess.run(["cp", "-a", str(src.datadir), str(dest / "mysql")], check=True)
        finally:
            os.kill(pid, signal.SIGCONT)
    return freeze, dest


def log_backup(engine: MariaDbEngine, src: Source, name: str) -> tuple[LogPosition, Path]:
    pos = engine.push_logs(30)
    copy = src.root / "logs" / name
    shutil.copytree(src.archive_mount, copy)
    return pos, copy


@pytest.fixture(scope="module")
def history(source: Source) -> History:
    engine = source.engine()
    load = MariaLoad(connector=source.connect, writers=2, pause=0.003).start()
    try:
        time.sleep(1.0)
        engine.push_logs(30)
        snaps, logs = {}, []
        snaps["A"] = snapshot(engine, source, "A")
        time.sleep(1.2)
        logs.append(log_backup(engine, source, "L1"))
        time.sleep(2.0)
        snaps["B"] = snapshot(engine, source, "B")
        time.sleep(1.2)
        logs.append(log_backup(engine, source, "L2"))
        time.sleep(2.0)
    finally:
        load.finish()
    logs.append(log_backup(engine, source, "L3"))
    conn = source.connect()
    cur = conn.cursor()
    cur.execute("SELECT id, ts FROM app.ticks ORDER BY id")
    ticks = [(i, ts.replace(tzinfo=dt.UTC)) for i, ts in cur.fetchall()]
    cur.execute("SELECT @@gtid_binlog_pos")
    end = cur.fetchone()[0]
    conn.close()
    return History(snaps, logs, ticks, end)


def pick_log(history: History, target: dt.datetime | None) -> tuple[LogPosition, Path]:
    """As the catalog does: the oldest log backup whose covered_to reaches the target (latest: the newest)."""
    if target is None:
        return history.logs[-1]
    return next(lb for lb in history.logs if lb[0].covered_to >= target)


@contextlib.contextmanager
def clone(source: Source, history: History, name: str, snap: str, target: dt.datetime | None) -> Iterator[dict]:
    engine = source.engine()
    freeze, snap_dir = history.snaps[snap]
    home = source.root / "clones" / name
    (home / "data").mkdir(parents=True)
    subprocess.run(["cp", "-a", str(snap_dir / "mysql"), str(home / "data" / "mysql")], check=True)
    spec = CloneSpec(name=name, data_mount=home / "data", log_mount=pick_log(history, target)[1], port=free_port(),
                     target=target, snapshot_meta=freeze.meta, run_dir=home / "run")
    try:
        engine.prepare_clone(spec)
        db = engine.start(spec, 90)
        yield {"engine": engine, "db": db, "spec": spec, "log": (home / "run" / "mysqld.err").read_text()}
    finally:
        engine.stop(spec.data_mount, spec.run_dir)
        assert not server.pids_on(home / "data" / "mysql")


def clone_state(engine: MariaDbEngine, db: DbTarget) -> tuple[set[int], int, int, str]:
    conn = engine._connect(db, 10)
    cur = conn.cursor()
    cur.execute("SELECT id FROM app.ticks")
    ids = {row[0] for row in cur.fetchall()}
    cur.execute("SELECT (SELECT SUM(bal) FROM app.acct), (SELECT COUNT(*) FROM app.hist), @@gtid_binlog_pos")
    total, hist, gtid = cur.fetchone()
    conn.close()
    return ids, int(total or 0), int(hist), gtid


XA_PREPARED = re.compile(r"was in the XA prepared state")
prepared_seen: list[str] = []


def check_time_clone(source: Source, history: History, name: str, snap: str, target: dt.datetime) -> None:
    with clone(source, history, name, snap, target) as c:
        ids, total, hist, _ = clone_state(c["engine"], c["db"])
        log = c["log"]
    expected = {i for i, ts in history.ticks if ts < target}  # whole-second target: commit began before it
    assert expected and expected != {i for i, _ in history.ticks}
    assert ids == expected, (f"{name} at {target}: {len(ids)} ticks, expected {len(expected)}; extra "
                             f"{sorted(ids - expected)[:5]}, missing {sorted(expected - ids)[:5]}")
    assert total == 5 * hist, f"{name}: partial OLTP transaction (sum {total}, history {hist})"
    assert "Recovering after a crash using mariadb-bin" in log, "the first start must recover with the binlog"
    prepared_seen.extend(line for line in log.splitlines() if XA_PREPARED.search(line))


# -- the freeze --------------------------------------------------------------------------------------
def insert_tick(src: Source, lock_wait: int) -> float:
    conn = src.connect()
    try:
        cur = conn.cursor()
        cur.execute(f"SET SESSION lock_wait_timeout = {lock_wait}")
        started = time.monotonic()
        cur.execute("INSERT INTO app.ticks () VALUES ()")
        return time.monotonic() - started
    finally:
        conn.close()


@pytest.mark.root
def test_quiesce_blocks_commits_and_ends_when_the_body_raises(source: Source):
    engine = source.engine()
    with pytest.raises(RuntimeError, match="array refused"), engine.quiesce("fails", 10) as freeze:
        assert freeze.meta["binlog_file"].startswith("mariadb-bin.") and freeze.meta["gtid_binlog_pos"]
        with pytest.raises(Exception, match="Lock wait timeout"):
            insert_tick(source, 1)
        raise RuntimeError("array refused the snapshot")
    assert freeze.thawed_at and freeze.consistent_at
    assert insert_tick(source, 5) < 1.0


@pytest.mark.root
def test_sigkill_of_the_freezing_process_releases_block_commit(source: Source):
    code = ("import time\nfrom copydata.engines.base import DbTarget\n"
            "from copydata.engines.mariadb import MariaDbEngine\n"
            f"e = MariaDbEngine(DbTarget('127.0.0.1', {source.port}, 'copydata', {PASSWORD!r}))\n"
            "with e.quiesce('held', 60):\n    print('frozen', flush=True)\n    time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "frozen"
        with pytest.raises(Exception, match="Lock wait timeout"):
            insert_tick(source, 1)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert insert_tick(source, 10) < 3.0


# -- snapshots, logs and clones ----------------------------------------------------------------------
@pytest.mark.root
def test_log_backups_archive_identical_closed_binlogs(source: Source, history: History):
    engine = source.engine()
    folder = source.archive_mount / ARCHIVE_SUBDIR
    first = history.snaps["A"][0].meta["start_segment"]
    check = engine.check_archive(source.archive_mount, first)
    assert check.continuous and check.start_segment == first and check.end_segment == history.logs[-1][0].end_segment
    for name in binlog.listing(folder):
        assert (folder / name).read_bytes() == (source.datadir / name).read_bytes()
    for pos, _ in history.logs:  # the rotate event closing each log backup is stamped at or after covered_to
        assert pos.covered_to.microsecond == 0 and pos.end_position.startswith("mariadb-bin.")
        rotate = list(binlog.events(folder / pos.end_segment))[-1]
        assert rotate.type == binlog.ROTATE and rotate.when >= pos.covered_to.timestamp()
    middle = history.logs[1][0].end_segment  # not the last file: a missing last file cannot be told
    (folder / middle).rename(folder / "gone")
    try:
        gap = engine.check_archive(source.archive_mount, first)
        assert not gap.continuous and gap.missing == [middle]
    finally:
        (folder / "gone").rename(folder / middle)


@pytest.mark.root
def test_clones_hold_exactly_the_transactions_before_three_past_seconds(source: Source, history: History,
                                                                       monkeypatch: pytest.MonkeyPatch):
    a, b = history.snaps["A"][0], history.snaps["B"][0]
    before = {n: (source.archive_mount / ARCHIVE_SUBDIR / n).stat() for n in binlog.listing(
        source.archive_mount / ARCHIVE_SUBDIR)}
    targets = [("c0", "A", whole_second(a.thawed_at, 1)),     # replays from A
               ("c1", "A", whole_second(b.started_at, -2)),   # from A, up to before B
               ("c2", "B", whole_second(b.thawed_at, 1))]     # replays from B
    assert targets[0][2] < targets[1][2] < targets[2][2]
    edge = history.logs[1][0].covered_to  # the last instant log backup L2 covers: cut by its rotate event
    if edge != targets[2][2]:
        targets.append(("c3", "B", edge))
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # nothing may depend on the local time zone
    time.tzset()
    try:
        for name, snap, target in targets:
            check_time_clone(source, history, name, snap, target)
    finally:
        monkeypatch.undo()
        time.tzset()
    after = {n: (source.archive_mount / ARCHIVE_SUBDIR / n).stat() for n in before}
    assert {n: (s.st_size, s.st_mtime_ns) for n, s in before.items()} == \
        {n: (s.st_size, s.st_mtime_ns) for n, s in after.items()}, "a clone wrote into the source's archive"
    print(f"\nXA-prepared transactions recovered in the clones: {len(prepared_seen)} {prepared_seen[:3]}")


@pytest.mark.root
def test_latest_clone_replays_the_whole_log_backup_then_masks(source: Source, history: History):
    script = source.root / "mask.sh"
    script.write_text('#!/bin/sh\nset -e\necho "$CLONE_DSN" > "$(dirname "$0")/dsn.txt"\n'
                      'mariadb --defaults-file="$CLONE_DEFAULTS_FILE" -e "CREATE TABLE app.masked (x INT)"\n')
    script.chmod(0o755)
    with clone(source, history, "latest", "B", None) as c:
        ids, total, hist, gtid = clone_state(c["engine"], c["db"])
        plan = (c["spec"].run_dir / "replay.json").read_text()
        c["engine"].mask(c["db"], "UPDATE app.hist SET delta = 0;\nUPDATE app.acct SET bal = 0;", str(script))
        conn = c["engine"]._connect(c["db"], 10)
        cur = conn.cursor()
        cur.execute("SELECT (SELECT SUM(delta) FROM app.hist), (SELECT SUM(bal) FROM app.acct), "
                    "(SELECT COUNT(*) FROM app.masked)")
        masked = cur.fetchall()[0]
        conn.close()
    assert ids == {i for i, _ in history.ticks} and total == 5 * hist
    assert gtid == history.end_gtid and history.end_gtid in plan
    assert tuple(int(v) for v in masked) == (0, 0, 0)
    dsn = (source.root / "dsn.txt").read_text().strip()
    assert dsn == f"mysql://copydata@localhost:{c['spec'].port}/?unix_socket={c['spec'].run_dir}/mysqld.sock"


@pytest.mark.root
def test_snapshot_alone_recovers_to_the_position_captured_under_block_commit(source: Source, history: History):
    """No logs: XA recovery of the copy (transactions prepared in InnoDB, already in the binlog) must end
    exactly at the position SHOW MASTER STATUS gave under BLOCK_COMMIT, which is where replay starts."""
    freeze, snap_dir = history.snaps["B"]
    engine = source.engine()
    home = source.root / "clones" / "snaponly"
    (home / "data").mkdir(parents=True)
    subprocess.run(["cp", "-a", str(snap_dir / "mysql"), str(home / "data" / "mysql")], check=True)
    spec = CloneSpec("snaponly", home / "data", None, free_port(), freeze.consistent_at, freeze.meta, home / "run")
    try:
        engine.prepare_clone(spec)
        db = engine.start(spec, 90)
        ids, total, hist, gtid = clone_state(engine, db)
    finally:
        engine.stop(spec.data_mount, spec.run_dir)
    assert db.host == str(home / "run") and db.user == "copydata"
    assert gtid == freeze.meta["gtid_binlog_pos"]
    assert ids <= {i for i, ts in history.ticks if ts < freeze.consistent_at} and total == 5 * hist


@pytest.mark.root
def test_restore_in_place_continues_the_archive_on_a_new_history(source: Source, history: History):
    engine = source.engine()
    freeze, snap_dir = history.snaps["B"]
    target = whole_second(freeze.thawed_at, 1)
    last_archived = binlog.listing(source.archive_mount / ARCHIVE_SUBDIR)[-1]
    engine.stop(source.data_mount)
    assert not server.pids_on(source.datadir)
    shutil.rmtree(source.datadir)
    subprocess.run(["cp", "-a", str(snap_dir / "mysql"), str(source.datadir)], check=True)
    spec = CloneSpec("src", source.data_mount, pick_log(history, target)[1], source.port, target, freeze.meta,
                     source.root / "restore-run", in_place=True)
    engine.prepare_clone(spec)
    db = engine.start(spec, 90)
    assert db == source.db and server.pids_on(source.datadir)
    ids, total, hist, _ = clone_state(engine, db)
    assert ids == {i for i, ts in history.ticks if ts < target} and total == 5 * hist
    conn = source.connect()
    cur = conn.cursor()
    cur.execute("SHOW BINARY LOGS")
    local = [row[0] for row in cur.fetchall()]
    conn.close()
    assert binlog.number(local[-1]) == binlog.number(last_archived) + 1, local
    assert not (source.datadir / last_archived).exists(), "the numbering placeholder is left behind"
    pos = engine.push_logs(30)  # no clash with the archived names
    check = engine.check_archive(source.archive_mount, last_archived)
    assert not check.continuous and check.missing == [f"{binlog.sibling(last_archived, binlog.number(last_archived) + 1)}"
                                                       " (new GTID history)"], check
    assert pos.end_segment in binlog.listing(source.archive_mount / ARCHIVE_SUBDIR)
