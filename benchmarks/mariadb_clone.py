#!/usr/bin/env python3
"""MariaDB 10.11 on the FlashArray emulator: freeze window, snapshot wall time, clone time to first query and
binlog replay speed, per database size, driven through copydata.ops (no Airflow).

For each --sizes entry (GiB of sysbench data: --tables sbtest tables, 4M rows per GiB in all): build a lab
(`copydata lab mariadb create` with sysbench oltp_read_write prepare; data volume 3x the size, min 8 GiB: it
holds the tables and, until they are purged, the binlogs of the prepare; archive volume 1x, min 4 GiB), measure
the tables from information_schema (after ANALYZE TABLE), then rotate and purge the prepare's binlogs (so the
first log backup archives the benchmark's binlogs only, not a copy of the whole load). Then run
`sysbench oltp_read_write --threads T --time S` as root over the socket; when it has written less binlog than
--binlog-target (default 210 MiB), sysbench runs again, for a time sized from the rate so far, until the
target is met (at most --max-load-seconds in all). While the load runs: take_snapshot (freeze
window = BACKUP STAGE BLOCK_COMMIT held, i.e. BLOCK_COMMIT returned .. BACKUP STAGE END returned; wall time =
the whole call), the log backup that follows it (the snapshot DAG's second step), and a log backup every
--log-interval seconds; after the load, a final log backup. Then two clones: at a past second (~3 s before the
load ended) and at 'latest', each timed from the create_clone call until `SELECT MAX(id) FROM sbtest.sbtest1`
succeeds on it. Replay details come from the clone's <run>/replay.json (files, start and stop offsets,
transactions; its mtime is when the replay began: it is written just before mariadb-binlog starts) and its
error log; binlog bytes replayed are counted on the clone's copy of the archive. The engine's scan of the
archived binlogs for the cut (replay.plan) is timed by wrapping that function for the duration of the call
(instrumentation in this process only; copydata itself is not changed). Clones are deleted and the
lab destroyed before the next size; the emulator is stopped at the end.

--prepare-budget (default 900 s): once a size is built, a later size whose build would take longer at the
rate measured so far is cut to the largest size that fits; the output says so.

Needs root (loop devices, mounts, the mysql OS user). Progress on stderr; the table on stdout.

    .venv/bin/python benchmarks/mariadb_clone.py --sizes 1,10
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mysql.connector
from _common import (
    BenchHome,
    GiB,
    MiB,
    Timed,
    app_context,
    bench_home,
    clone_pair,
    clone_target,
    fmt,
    log,
    log_backups_while,
    parse_sizes,
    stop_emulator,
    table,
    utcnow,
)

from copydata.lab.common import first_free_port

ROWS_PER_GIB = 4_000_000  # sbtest rows (default schema, secondary index k_1): ~250 bytes each on disk
CLONE_PORT_BASE = 56700
PROBE = "SELECT MAX(id) FROM sbtest.sbtest1"  # answered from the primary key: cheap at any size
# MariaDB error log lines: "2026-11-27 10:15:00 0 [Note] InnoDB: ..." (the hour may be space-padded)
ERRLOG_RE = re.compile(r"^(\d{4}-\d\d-\d\d)\s+(\d{1,2}:\d\d:\d\d)\s+\d+\s+\[(\w+)\]\s+(.*)$")
STEP_RE = re.compile(r"^\[\s*\d+\]\s+sysbench\s+([0-9.]+) s")
SB_TRX_RE = re.compile(r"transactions:\s+(\d+)\s+\(([0-9.]+) per sec")
SB_TIME_RE = re.compile(r"total time:\s+([0-9.]+)s")


def ms(seconds: float | None) -> str:
    return fmt(None if seconds is None else seconds * 1000, ".0f")


class Tee(io.TextIOBase):
    """stderr for the lab's step lines, and a copy kept to read the sysbench step's own duration."""

    def __init__(self):
        self.text = io.StringIO()

    def write(self, s: str) -> int:
        self.text.write(s)
        return sys.stderr.write(s)

    def flush(self) -> None:
        sys.stderr.flush()


# -- the lab -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lab:
    name: str
    my: object  # copydata.lab.myserver.MyLab
    client: object  # copydata.lab.myserver.ClientArgs
    sla_file: Path

    def connect(self, **kw):
        return mysql.connector.connect(**self.client.unix(), autocommit=True, use_pure=True, **kw)

    def query(self, statement: str) -> list[tuple]:
        with contextlib.closing(self.connect()) as c:
            cur = c.cursor()
            cur.execute(statement)
            return cur.fetchall() if cur.with_rows else []


def lab_name(size_gib: float, tag: str) -> str:
    """Unique per run (catalog rows are keyed by application and snapshot name); short enough for the
    clone names (<= 41 characters) and their socket paths."""
    return "bmy-" + f"{size_gib:g}".replace(".", "p") + "g-" + tag[-6:]


def volume_sizes(size_gib: float) -> tuple[int, int]:
    data = max(8 * GiB, math.ceil(3 * size_gib) * GiB)
    archive = max(4 * GiB, math.ceil(size_gib) * GiB)
    return data, archive


def rows_per_table(size_gib: float, tables: int) -> int:
    return max(1000, round(ROWS_PER_GIB * size_gib / tables))


def create_lab(home: BenchHome, name: str, size_gib: float, tables: int) -> tuple[Lab, float | None]:
    """The lab, and how long its sysbench prepare took (from the lab's own step line)."""
    from copydata.lab import mariadb as labmy
    from copydata.lab import myserver

    data, archive = volume_sizes(size_gib)
    rows = rows_per_table(size_gib, tables)
    log(f"{name}: creating the lab: data volume {data // GiB} GiB, archive {archive // GiB} GiB, sysbench "
        f"{tables} table(s) x {rows} rows")
    out = Tee()
    labmy.create(labmy.CreateOptions(name=name, data_size=data, archive_size=archive, sla_dir=home.sla_dir,
                                     airflow=False, sysbench_tables=tables, sysbench_rows=rows), out=out)
    prepare_s = next((float(m.group(1)) for line in out.text.getvalue().splitlines() if (m := STEP_RE.match(line))),
                     None)
    my = myserver.MyLab.named(name)
    return Lab(name, my, myserver.client_args(my), home.sla_dir / f"lab-{name}.yaml"), prepare_s


def destroy_lab(home: BenchHome, name: str) -> None:
    from copydata.lab import mariadb as labmy

    t0 = time.perf_counter()
    try:
        labmy.destroy(name, sla_dir=home.sla_dir, airflow=False, out=sys.stderr)
        log(f"{name}: lab destroyed in {time.perf_counter() - t0:.1f} s")
    except Exception as exc:  # keep cleaning up
        log(f"{name}: lab destroy failed: {exc}")


def stop_mariadb_under(folder: Path) -> None:
    """SIGTERM, then wait, every mariadbd working in a data directory under folder: our own leftovers only
    (found by their working directory, as the engine finds a clone's server)."""
    from copydata.engines.mariadb import server

    pids = my_mariadbd(folder)
    if pids:
        log(f"stopping leftover mariadbd {pids} under {folder}")
        try:
            server.terminate(pids, timeout=120)
        except RuntimeError as exc:
            log(f"{exc}: SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def my_mariadbd(folder: Path) -> list[int]:
    """mariadbd/mysqld processes whose working directory (their datadir) lies under folder."""
    root = os.path.realpath(folder) + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() in ("mariadbd", "mysqld") and \
                    (os.readlink(entry / "cwd") + os.sep).startswith(root):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def db_bytes(lab: Lab, tables: int) -> tuple[int, int]:
    """(data_length + index_length of the sbtest tables from information_schema after ANALYZE TABLE, their
    .ibd files' allocated bytes on disk)."""
    names = ", ".join(f"sbtest.sbtest{i}" for i in range(1, tables + 1))
    lab.query(f"ANALYZE TABLE {names}")
    (size,) = lab.query("SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                        "WHERE table_schema = 'sbtest'")[0]
    on_disk = sum(p.stat().st_blocks * 512 for p in (lab.my.datadir / "sbtest").glob("*.ibd"))
    return int(size), on_disk


def binlog_bytes(lab: Lab) -> int:
    return sum(int(r[1]) for r in lab.query("SHOW BINARY LOGS"))


def purge_prepare_binlogs(lab: Lab, timeout: float = 120) -> int:
    """Rotate, and purge every binlog before the new one: the prepare's rows are in the tables, and the first
    log backup would otherwise archive all of them. PURGE skips (with a warning only) a file whose binlog
    checkpoint has not been written yet, so it is repeated until only the new file is left. Returns the bytes
    purged."""
    before = binlog_bytes(lab)
    lab.query("FLUSH BINARY LOGS")
    file = lab.query("SHOW MASTER STATUS")[0][0]
    deadline = time.monotonic() + timeout
    while True:
        lab.query(f"PURGE BINARY LOGS TO '{file}'")
        left = [r[0] for r in lab.query("SHOW BINARY LOGS")]
        if left == [file]:
            return before - binlog_bytes(lab)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{lab.name}: PURGE BINARY LOGS TO '{file}' still leaves {left} after {timeout:.0f} s")
        time.sleep(0.5)


# -- the load ------------------------------------------------------------------------------------------
@dataclass
class Sysbench:
    """sysbench oltp_read_write --time=seconds; then, while the binlog written since `bytes0` is below
    `target` bytes, further --time runs sized from the rate so far (at least 30 s), up to max_seconds in all:
    the binlog volume does not depend on how busy the machine is. Each run ends on its own (summary intact)."""

    lab: Lab
    seconds: int
    threads: int
    tables: int
    rows: int
    extra: list[str] = field(default_factory=list)
    target: int = 0  # binlog bytes wanted; 0: one run only
    max_seconds: float = 1800
    bytes0: int = 0
    proc: subprocess.Popen | None = None
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    runs: list[int] = field(default_factory=list)  # --time of each run
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    stopping: bool = False
    waiter: threading.Thread | None = None

    def command(self, seconds: int) -> list[str]:
        return ["sysbench", "oltp_read_write", "--db-driver=mysql", f"--mysql-socket={self.lab.my.socket}",
                "--mysql-user=root", "--mysql-db=sbtest", f"--tables={self.tables}", f"--table-size={self.rows}",
                f"--threads={self.threads}", f"--time={seconds}", "--report-interval=0", *self.extra, "run"]

    def start(self) -> Sysbench:
        self.started = utcnow()
        self.waiter = threading.Thread(target=self._run, daemon=True)
        self.waiter.start()
        return self

    def _run(self) -> None:
        t0, seconds = time.monotonic(), self.seconds
        try:
            while not self.stopping:
                self.proc = subprocess.Popen(self.command(seconds), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True, start_new_session=True)
                self.outputs.append(self.proc.communicate()[0] or "")
                self.runs.append(seconds)
                if self.proc.returncode:
                    self.error = f"sysbench exited {self.proc.returncode}:\n{self.outputs[-1][-2000:]}"
                    return
                made, elapsed = binlog_bytes(self.lab) - self.bytes0, time.monotonic() - t0
                if made >= self.target or elapsed >= self.max_seconds - 30 or self.stopping:
                    return
                rate = made / elapsed
                seconds = int(min(max(30, math.ceil((self.target - made) / rate * 1.1)), self.max_seconds - elapsed))
                log(f"{self.lab.name}: {made / MiB:.0f} MiB of binlog after {elapsed:.0f} s, below the "
                    f"{self.target / MiB:.0f} MiB target: sysbench again for {seconds} s")
        except Exception as exc:  # reported by join()
            self.error = repr(exc)
        finally:
            self.ended = utcnow()

    @property
    def running(self) -> bool:
        return self.ended is None

    @property
    def output(self) -> str:
        return "\n".join(self.outputs)

    def join(self) -> None:
        assert self.waiter is not None
        self.waiter.join(self.max_seconds + 300)
        if self.error:
            raise RuntimeError(self.error)

    def kill(self) -> None:
        """Our own sysbench (in the session started for it), if it still runs; no further run starts."""
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    @property
    def transactions(self) -> tuple[int, float] | None:
        """(transactions, per second) over all runs, from sysbench's own summaries."""
        counts = [int(m.group(1)) for m in SB_TRX_RE.finditer(self.output)]
        times = [float(m.group(1)) for m in SB_TIME_RE.finditer(self.output)]
        if not counts or len(times) != len(counts):
            return None
        return sum(counts), sum(counts) / sum(times)

    @property
    def seconds_run(self) -> float:
        return (self.ended - self.started).total_seconds() if self.ended and self.started else 0.0


@dataclass
class History:
    snapshot: object  # catalog row
    snapshot_s: float
    first_log_s: float
    log_s: list[float] = field(default_factory=list)
    final_log_s: float = 0.0
    load_binlog: int = 0
    archived: int = 0  # bytes in the archive after the final log backup
    load: Sysbench | None = None


def run_load(ctx, lab: Lab, args, rows: int) -> History:
    from copydata.ops.logs import log_backup
    from copydata.ops.snapshot import take_snapshot

    bytes0 = binlog_bytes(lab)
    load = Sysbench(lab, args.load_seconds, args.threads, args.tables, rows, args.sysbench_args.split(),
                    target=int(args.binlog_target * MiB), max_seconds=args.max_load_seconds, bytes0=bytes0).start()
    try:
        time.sleep(args.snapshot_after)
        if not load.running:
            raise RuntimeError(f"sysbench ended early:\n{load.output[-2000:]}")
        t0 = time.perf_counter()
        snap = take_snapshot(ctx, f"{args.tag}-snap")
        snap_s = time.perf_counter() - t0
        array_s = ctx.array.last("snapshot_pgroup")
        t0 = time.perf_counter()
        log_backup(ctx, f"{args.tag}-log0")
        hist = History(snap, snap_s, time.perf_counter() - t0, load=load)
        window = snap.engine_meta["freeze_window_s"]
        before = (snap.consistent_at - snap.started_at).total_seconds()
        log(f"{lab.name}: snapshot {snap.pgroup_snapshot} in {snap_s * 1000:.0f} ms: connect + BACKUP STAGE START "
            f"+ BLOCK_COMMIT + capture ~{before * 1000:.0f} ms; BLOCK_COMMIT held {window * 1000:.0f} ms (array "
            f"snapshot {ms(array_s)} ms); binlog position {snap.engine_meta['binlog_file']}:"
            f"{snap.engine_meta['binlog_pos']}, GTID {snap.engine_meta.get('gtid_binlog_pos')}")
        log(f"{lab.name}: log backup after it {hist.first_log_s * 1000:.0f} ms (push_logs "
            f"{ms(ctx.engine.last('push_logs'))} ms, array snapshot {ms(ctx.array.last('snapshot_pgroup'))} ms)")
        hist.log_s = log_backups_while(
            ctx, lab.name, args.tag, args.log_interval, lambda: load.running,
            lambda: f"; {(binlog_bytes(lab) - bytes0) / MiB:.0f} MiB of binlog so far")
        load.join()
    finally:
        load.kill()
    hist.load_binlog = binlog_bytes(lab) - bytes0
    t0 = time.perf_counter()
    log_backup(ctx, f"{args.tag}-final")
    hist.final_log_s = time.perf_counter() - t0
    hist.archived = sum(p.stat().st_size for p in (lab.my.binlog_archive).iterdir() if p.is_file())
    trx = load.transactions
    log(f"{lab.name}: load done ({fmt(trx[1] if trx else None, '.0f')} tps, {hist.load_binlog / MiB:.0f} MiB of "
        f"binlog in {load.seconds_run:.0f} s: sysbench --time {'+'.join(map(str, load.runs))}); final log backup "
        f"{hist.final_log_s * 1000:.0f} ms; archive "
        f"{hist.archived / MiB:.0f} MiB")
    return hist


# -- clones --------------------------------------------------------------------------------------------
@dataclass
class CloneRun:
    name: str
    point: str
    create_s: float = 0.0  # the create_clone call
    first_query_s: float = 0.0  # from the call until the probe query answered
    probe: int | None = None
    prepare_s: float = 0.0  # engine.prepare_clone
    start_s: float = 0.0  # engine.start: server start, crash/XA recovery, replay, GTID check
    to_ready_s: float | None = None  # engine.start called .. replay.plan called (the server accepted us)
    plan_s: float | None = None  # replay.plan: the scan of the archived binlogs' event headers for the cut
    replay_s: float | None = None  # replay.json written .. engine.start returned
    transactions: int = 0
    replayed: int = 0  # binlog bytes between the snapshot's position and the cut
    files: int = 0
    stop_before: str | None = None
    last_gtid: str | None = None
    errlog: dict[str, object] = field(default_factory=dict)
    delete_s: float = 0.0

    @property
    def copy_s(self) -> float:
        """create_clone minus prepare and start: catalog, array copies, connect, flush, mount."""
        return self.create_s - self.prepare_s - self.start_s

    def mib_per_s(self) -> float | None:
        return self.replayed / MiB / self.replay_s if self.replay_s and self.replayed else None

    def tps(self) -> float | None:
        return self.transactions / self.replay_s if self.replay_s and self.transactions else None


def first_query(run_dir: Path, client, timeout: float = 300) -> int | None:
    from copydata.engines.mariadb import sql

    deadline = time.monotonic() + timeout
    while True:
        try:
            with contextlib.closing(mysql.connector.connect(unix_socket=str(run_dir / sql.SOCKET_NAME),
                                                            user=client.user, password=client.password,
                                                            autocommit=True, connection_timeout=5,
                                                            use_pure=True)) as c:
                cur = c.cursor()
                cur.execute(PROBE)
                return cur.fetchone()[0]
        except mysql.connector.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def replayed_bytes(folder: Path, plan: dict) -> int:
    """Binlog bytes replay read: from the start offset of the first file to the stop offset of the last."""
    files = plan["files"]
    if not files or not plan["transactions"]:
        return 0
    sizes = [(folder / f).stat().st_size for f in files]
    end = plan["stop"] if plan["stop"] is not None else sizes[-1]
    return sum(sizes[:-1]) + end - plan["start"]


def read_errlog(path: Path) -> dict[str, object]:
    """What the clone's error log says about its start: crash recovery, XA-prepared transactions committed,
    warnings and errors, and the whole seconds from the first line to 'ready for connections'."""
    lines = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        m = ERRLOG_RE.match(line)
        if m:
            lines.append((dt.datetime.fromisoformat(f"{m.group(1)} {m.group(2).zfill(8)}"), m.group(3), m.group(4)))
    ready = next((at for at, _, msg in lines if "ready for connections" in msg), None)
    return {"crash_recovery": any("crash recovery" in msg.lower() for _, _, msg in lines),
            "xa_prepared": sum("XA prepared state" in msg for _, _, msg in lines),
            "warnings": sum(level == "Warning" for _, level, _ in lines),
            "errors": [msg for _, level, msg in lines if level == "ERROR"][:5],
            "start_to_ready_s": (ready - lines[0][0]).total_seconds() if ready and lines else None}


@contextlib.contextmanager
def timed_plan() -> Iterator[list[tuple[float, float]]]:
    """Record (began, seconds) of every replay.plan call the engine makes meanwhile (it calls it through the
    module: `replay.plan(...)`)."""
    from copydata.engines.mariadb import replay

    calls: list[tuple[float, float]] = []
    original = replay.plan

    def plan(*args, **kwargs):
        began, t0 = time.time(), time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            calls.append((began, time.perf_counter() - t0))

    replay.plan = plan
    try:
        yield calls
    finally:
        replay.plan = original


def measure_clone(ctx, lab: Lab, name: str, point, port: int, timeout: float) -> CloneRun:
    from copydata.engines.mariadb import server
    from copydata.ops.clones import create_clone
    from copydata.ops.context import clone_home

    run = CloneRun(name, point if isinstance(point, str) else point.isoformat())
    with timed_plan() as plans:
        t0 = time.perf_counter()
        create_clone(ctx, name, point, port, mask=False, owner="benchmark", timeout=timeout)
        run.create_s = time.perf_counter() - t0
    run_dir = clone_home(name) / "run"
    run.probe = first_query(run_dir, lab.client)
    run.first_query_s = time.perf_counter() - t0

    run.prepare_s = ctx.engine.last("prepare_clone") or 0.0
    run.start_s = ctx.engine.last("start") or 0.0
    began = ctx.engine.last_began("start")
    replay_file = run_dir / "replay.json"
    plan = json.loads(replay_file.read_text())
    written = replay_file.stat().st_mtime
    if began is not None:
        run.to_ready_s = (plans[-1][0] if plans else written) - began
        run.replay_s = began + run.start_s - written
    if plans:
        run.plan_s = plans[-1][1]
    run.transactions, run.files = plan["transactions"], len(plan["files"])
    run.stop_before, run.last_gtid = plan["stop_before"], plan["last_gtid"]
    run.replayed = replayed_bytes(clone_home(name) / "archive" / "binlog", plan)
    run.errlog = read_errlog(run_dir / server.ERROR_LOG)
    return run


def report_clone(lab: str, run: CloneRun) -> None:
    log(f"{lab}: clone {run.name} at {run.point}: first query after {run.first_query_s:.2f} s (create_clone "
        f"{run.create_s:.2f} s; MAX(id) {run.probe}); replayed {run.transactions} transactions, "
        f"{run.replayed / MiB:.0f} MiB of binlog in {run.files} file(s) in {fmt(run.replay_s, '.2f')} s "
        f"({fmt(run.mib_per_s())} MiB/s, {fmt(run.tps(), '.0f')} trx/s); stop before {run.stop_before}, "
        f"last GTID {run.last_gtid}")
    log(f"{lab}:   copies+mount {run.copy_s:.2f} s, prepare_clone {run.prepare_s:.2f} s, server start to "
        f"accepting {fmt(run.to_ready_s, '.2f')} s, binlog scan for the cut {fmt(run.plan_s, '.2f')} s, replay "
        f"{fmt(run.replay_s, '.2f')} s; error log: "
        f"{json.dumps(run.errlog)}")


# -- one size ------------------------------------------------------------------------------------------
@dataclass
class Result:
    size_gib: float  # as built (after the budget cut, if any)
    requested_gib: float
    rows: int  # per table
    tables: int
    db_bytes: int = 0  # information_schema
    ibd_bytes: int = 0
    init_s: float = 0.0  # the whole lab create
    prepare_s: float | None = None  # its sysbench step
    purged: int = 0
    hist: History | None = None
    pit: CloneRun | None = None
    latest: CloneRun | None = None


def bench_size(home: BenchHome, size_gib: float, requested: float, args) -> Result:
    from copydata.engines.base import DbTarget
    from copydata.engines.registry import make_engine
    from copydata.sla.loader import load_sla

    name = lab_name(size_gib, args.tag)
    res = Result(size_gib, requested, rows_per_table(size_gib, args.tables), args.tables)
    t0 = time.perf_counter()
    try:
        lab, res.prepare_s = create_lab(home, name, size_gib, args.tables)
        res.init_s = time.perf_counter() - t0
        res.db_bytes, res.ibd_bytes = db_bytes(lab, args.tables)
        res.purged = purge_prepare_binlogs(lab)
        log(f"{name}: lab ready in {res.init_s:.0f} s (sysbench prepare {fmt(res.prepare_s, '.0f')} s); sbtest "
            f"{res.db_bytes / GiB:.2f} GiB (information_schema), {res.ibd_bytes / GiB:.2f} GiB of .ibd files; "
            f"purged {res.purged / GiB:.2f} GiB of the prepare's binlogs")
        app = load_sla(lab.sla_file).applications[0]
        engine = Timed(make_engine(app, DbTarget(host=str(lab.my.socket), port=lab.client.port,
                                                 user=lab.client.user, password=lab.client.password)),
                       ["push_logs", "check_archive", "prepare_clone", "start", "stop"])
        with app_context(home, lab.sla_file, engine) as ctx:
            res.hist = run_load(ctx, lab, args, res.rows)
            target = clone_target(ctx, name, res.hist)
            runs = clone_pair(ctx, name, target, lambda clone, point: measure_clone(
                ctx, lab, clone, point, first_free_port(CLONE_PORT_BASE), args.clone_timeout), report_clone,
                stop_mariadb_under, home.root / "clones")
            res.pit, res.latest = runs["pit"], runs["latest"]
    finally:
        destroy_lab(home, name)
        stop_mariadb_under(home.root / "lab" / name)
    return res


def prepare_rate(built: list[Result]) -> float | None:
    """The slowest sysbench prepare rate measured so far, seconds per --sizes GiB (4M rows): it only gets
    worse as the tables outgrow the buffer pool."""
    rates = [r.prepare_s / r.size_gib for r in built if r.prepare_s]
    return max(rates) if rates else None


def budget_size(requested: float, built: list[Result], budget: float) -> float:
    """requested, or the largest size whose prepare fits the budget at prepare_rate (0.5 GiB steps from 1 GiB
    on, 0.1 GiB steps below; never less than 0.1 GiB nor more than requested)."""
    s_per_gib = prepare_rate(built)
    if s_per_gib is None or requested * s_per_gib <= budget:
        return requested
    fits = budget / s_per_gib
    step = 0.5 if fits >= 1 else 0.1
    return min(requested, max(0.1, round(math.floor(fits / step) * step, 1)))


# -- output --------------------------------------------------------------------------------------------
def size_label(r: Result) -> str:
    return f"{r.db_bytes / GiB:.2f}" + ("*" if r.size_gib != r.requested_gib else "")


def render(results: list[Result]) -> str:
    headers = ["size GiB (rows)", "freeze ms", "snap ms", "+log bkp ms", "clone PIT s", "clone latest s",
               "binlog replayed MiB PIT/latest", "replay MiB/s PIT/latest", "replay trx/s PIT/latest",
               "load s / binlog MiB (tps)"]
    rows = []
    for r in results:
        h = r.hist
        assert h is not None and r.pit is not None and r.latest is not None
        trx = h.load.transactions if h.load else None
        rows.append([
            f"{size_label(r)} ({r.tables}x{r.rows / 1e6:g}M)",
            f"{h.snapshot.engine_meta['freeze_window_s'] * 1000:.0f}",
            f"{h.snapshot_s * 1000:.0f}",
            f"{h.first_log_s * 1000:.0f}",
            f"{r.pit.first_query_s:.2f}",
            f"{r.latest.first_query_s:.2f}",
            "/".join(f"{c.replayed / MiB:.0f}" for c in (r.pit, r.latest)),
            "/".join(fmt(c.mib_per_s(), ".1f") for c in (r.pit, r.latest)),
            "/".join(fmt(c.tps(), ".0f") for c in (r.pit, r.latest)),
            f"{h.load.seconds_run if h.load else 0:.0f} / {h.load_binlog / MiB:.0f} ({fmt(trx[1] if trx else None, '.0f')})",
        ])
    return table(headers, rows)


def breakdown(results: list[Result]) -> str:
    """Where each clone's time to first query went (seconds)."""
    headers = ["size GiB / clone", "copies+mount", "prepare_clone", "server up", "cut scan", "replay",
               "trx replayed", "binlog files", "XA recovered", "to first query"]
    rows = []
    for r in results:
        for c in (r.pit, r.latest):
            if c is None:
                continue
            rows.append([f"{size_label(r)} {c.name.rsplit('-', 1)[1]}", f"{c.copy_s:.2f}", f"{c.prepare_s:.2f}",
                         fmt(c.to_ready_s, ".2f"), fmt(c.plan_s, ".2f"), fmt(c.replay_s, ".2f"),
                         str(c.transactions), str(c.files),
                         str(c.errlog.get("xa_prepared", "n/a")), f"{c.first_query_s:.2f}"])
    return table(headers, rows)


def verdict(results: list[Result]) -> str:
    """One closing line: did the time from trigger to first query grow with the database, and where."""
    if len(results) < 2:
        return "Only one size ran: no statement on growth with database size."
    small, big = min(results, key=lambda r: r.db_bytes), max(results, key=lambda r: r.db_bytes)

    def grew(a: float, b: float) -> bool:  # more than 25 % and more than 1 s
        return b > 1.25 * a and b - a > 1.0

    def pair(what: str, fn, unit: str = " s", spec: str = ".2f") -> str:
        a, b = fn(small.pit), fn(big.pit)
        return f"{what} {fmt(a, spec)}->{fmt(b, spec)}{unit}"

    a, b = small.pit.first_query_s, big.pit.first_query_s
    fixed = [(c.copy_s + c.prepare_s + (c.to_ready_s or 0.0)) for c in (small.pit, big.pit)]
    any_grew = grew(a, b) or grew(small.latest.first_query_s, big.latest.first_query_s)
    return (f"Clone time {'DID' if any_grew else 'did not'} grow with database size "
            f"({small.db_bytes / GiB:.2f} -> {big.db_bytes / GiB:.2f} GiB): to first query PIT {a:.2f} -> {b:.2f} s, "
            f"latest {small.latest.first_query_s:.2f} -> {big.latest.first_query_s:.2f} s; without the binlog "
            f"work (copies+mount+prepare+server up) {fixed[0]:.2f} -> {fixed[1]:.2f} s"
            f"{' (grew)' if grew(*fixed) else ' (flat)'}. PIT breakdown: "
            + "; ".join([pair("cut scan", lambda c: c.plan_s), pair("binlog replay", lambda c: c.replay_s),
                         pair("binlog replayed", lambda c: c.replayed / MiB, " MiB", ".0f"),
                         pair("replay speed", lambda c: c.mib_per_s(), " MiB/s", ".1f")])
            + ".")


def leftovers(home: BenchHome) -> list[str]:
    """Loop devices backed by files of this home, and mariadbd processes working under it."""
    from copydata import sysutil

    found = [f"loop {dev} ({back})" for back, dev in sysutil.loops_backed_by(home.root).items()]
    return found + [f"mariadbd pid {pid}" for pid in my_mariadbd(home.root)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=parse_sizes, default=[1.0, 10.0],
                    help="database sizes in GiB, comma separated (4M sysbench rows per GiB; default 1,10)")
    ap.add_argument("--home", help="COPYDATA_HOME (default: a fresh folder under /var/tmp, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the fresh COPYDATA_HOME folder")
    ap.add_argument("--tables", type=int, default=4, help="sysbench tables (default 4)")
    ap.add_argument("--load-seconds", type=int, default=300, help="sysbench --time of the first run (default 300)")
    ap.add_argument("--binlog-target", type=float, default=210.0,
                    help="MiB of binlog the load must write; sysbench runs again until it has (default 210; 0: "
                         "one run only)")
    ap.add_argument("--max-load-seconds", type=float, default=1800.0,
                    help="bound on the whole load, all sysbench runs (default 1800)")
    ap.add_argument("--threads", type=int, default=2, help="sysbench --threads (default 2)")
    ap.add_argument("--sysbench-args", default="",
                    help="extra oltp_read_write options for the load, e.g. '--delete_inserts=4' (default none)")
    ap.add_argument("--snapshot-after", type=float, default=5.0,
                    help="seconds into the load when the snapshot is taken (default 5)")
    ap.add_argument("--log-interval", type=float, default=30.0,
                    help="seconds between log backups during the load (default 30)")
    ap.add_argument("--prepare-budget", type=float, default=900.0,
                    help="seconds a size's sysbench prepare may take; later sizes are cut to fit (default 900)")
    ap.add_argument("--clone-timeout", type=float, default=3600.0,
                    help="create_clone timeout: server start and binlog replay (default 3600)")
    args = ap.parse_args(argv)
    args.tag = "b" + time.strftime("%m%d%H%M%S")  # array snapshot suffixes of this run (catalog rows are keyed by them)
    if os.geteuid() != 0:
        ap.error("needs root: loop devices, mounts and the mysql OS user")
    if args.load_seconds < args.snapshot_after + 6:
        ap.error("--load-seconds must leave room for the snapshot and a clone point 3 s before the end")
    saved_port = os.environ.get("COPYDATA_EMULATOR_PORT")
    os.environ["COPYDATA_EMULATOR_PORT"] = "0"  # any free port: never the default one a `make up` emulator uses

    started = time.perf_counter()
    results: list[Result] = []
    notes: list[str] = []
    try:
        with bench_home(args.home, args.keep, prefix="copydata-bench-my-") as home:
            log(f"COPYDATA_HOME={home.root}; sizes {args.sizes} GiB; sysbench oltp_read_write --threads "
                f"{args.threads} --time {args.load_seconds} {args.sysbench_args}".rstrip()
                + f"; binlog target {args.binlog_target:g} MiB")
            try:
                for size in args.sizes:
                    built = budget_size(size, results, args.prepare_budget)
                    if built != size:
                        rate = prepare_rate(results) or 0.0
                        note = (f"{size:g} GiB requested, {built:g} GiB built: at the measured sysbench prepare "
                                f"rate ({rate:.0f} s/GiB) {size:g} GiB would take ~{size * rate / 60:.1f} min, over "
                                f"the {args.prepare_budget / 60:.1f} min budget")
                        notes.append(note)
                        log(note)
                    results.append(bench_size(home, built, size, args))
            finally:
                stop_mariadb_under(home.root / "clones")
                stop_mariadb_under(home.root / "lab")
                stop_emulator(home)
                left = leftovers(home)
                log("left behind: " + ", ".join(left) if left else "no loop device or mariadbd of this run is left")
    finally:
        if saved_port is None:
            os.environ.pop("COPYDATA_EMULATOR_PORT", None)
        else:
            os.environ["COPYDATA_EMULATOR_PORT"] = saved_port
    total = time.perf_counter() - started
    print(render(results))
    print()
    print("Clone phases, seconds (copies+mount = create_clone minus prepare_clone and engine.start; server up = "
          "engine.start called .. replay.plan called; cut scan = replay.plan; replay = replay.json written .. "
          "engine.start returned):")
    print(breakdown(results))
    print()
    for note in notes:
        print(f"* SIZE CUT: {note}.")
    print(f"sysbench oltp_read_write --threads {args.threads} {args.sysbench_args}".rstrip()
          + f", --time {args.load_seconds} then more until {args.binlog_target:g} MiB of binlog (runs: "
          + ", ".join(f"{r.db_bytes / GiB:.2f} GiB " + "+".join(map(str, r.hist.load.runs))
                      for r in results if r.hist and r.hist.load)
          + f" s); snapshot {args.snapshot_after:g} s into the load, log backups every {args.log_interval:g} s; PIT "
          "clone target 3 s before the load ended, whole second. Size = data_length + index_length of sbtest "
          "(information_schema, after ANALYZE TABLE); .ibd on disk: "
          + ", ".join(f"{r.ibd_bytes / GiB:.2f}" for r in results)
          + " GiB. Lab build (sysbench prepare) s: "
          + ", ".join(f"{r.db_bytes / GiB:.2f} GiB {r.init_s:.0f} ({fmt(r.prepare_s, '.0f')})" for r in results)
          + ". Binlog archived after the final log backup MiB: "
          + ", ".join(f"{r.hist.archived / MiB:.0f}" for r in results if r.hist)
          + f". Total {total / 60:.1f} min.")
    print(verdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
