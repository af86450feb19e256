#!/usr/bin/env python3
"""PostgreSQL 15 on the FlashArray emulator: freeze window, snapshot wall time, clone time to first query and
WAL replay speed, per database size, driven through copydata.ops (no Airflow).

For each --sizes entry (GiB of pgbench data; scale 68 per GiB): build a lab (`copydata lab postgres create`,
data volume 3x the size, min 8 GiB; archive volume 2x, min 4 GiB: it keeps every WAL segment since initdb,
pgbench -i included), wait for the archiver to catch up, then run `pgbench -n -c C -j C -T S` as postgres
over the socket. While it runs: take_snapshot (freeze window = pg_backup_start returned .. pg_backup_stop
returned; wall time = the whole call), the log backup that follows it (the snapshot DAG's second step), and
a log backup every --log-interval seconds; after the load, a final log backup. Then two clones: at a past
second (~3 s before the load ended) and at 'latest', each timed from the create_clone call until
`SELECT count(*) FROM pgbench_history` succeeds on it. From each clone's server log: WAL replayed
(redo done LSN - the snapshot's start LSN) and the replay time (redo starts .. redo done). Clones are deleted
and the lab destroyed before the next size; the emulator is stopped at the end.

Needs root (loop devices, mounts, runuser). Progress on stderr; the table on stdout.

    .venv/bin/python benchmarks/postgres_clone.py --sizes 1,10 --load-seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
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

SCALE_PER_GIB = 68  # pgbench: scale 1 is ~15 MB of tables and indexes
CLONE_PORT_BASE = 56600
# The default log_line_prefix '%m [%p] ': "2026-11-27 10:15:00.123 UTC [4242] LOG:  redo starts at 0/5000028"
LOG_LINE_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\S+) \[\d+\] [A-Z]+:  (.*)$")
LSN_RE = re.compile(r"\b([0-9A-F]{1,8}/[0-9A-F]{1,8})\b")
ELAPSED_RE = re.compile(r"elapsed: ([0-9.]+) s")


def ms(seconds: float | None) -> str:
    return fmt(None if seconds is None else seconds * 1000, ".0f")


def parse_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


# -- the lab -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lab:
    name: str
    root: Path
    port: int
    sla_file: Path

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname,
                               autocommit=True, connect_timeout=10)


def lab_name(size_gib: float, tag: str) -> str:
    """Unique per run, so a reused --home never meets an earlier run's catalog rows or clone folders (catalog
    rows are looked up by application and snapshot name; before 7fab2d9 `lab destroy` left them valid, and a
    lab re-created under the same name inherited the old log-backup chain: no point was recoverable)."""
    return "bench-" + f"{size_gib:g}".replace(".", "p") + "g-" + tag[-6:]


def volume_sizes(size_gib: float) -> tuple[int, int]:
    data = max(8 * GiB, math.ceil(3 * size_gib) * GiB)
    archive = max(4 * GiB, math.ceil(2 * size_gib) * GiB)
    return data, archive


def create_lab(home: BenchHome, name: str, size_gib: float, scale: int) -> Lab:
    from copydata.lab import postgres as labpg
    from copydata.lab.pgserver import PgLab, configured_port

    data, archive = volume_sizes(size_gib)
    log(f"{name}: creating the lab: data volume {data // GiB} GiB, archive {archive // GiB} GiB, "
        f"pgbench scale {scale}")
    labpg.create(labpg.CreateOptions(name=name, data_size=data, archive_size=archive, sla_dir=home.sla_dir,
                                     airflow=False, pgbench_scale=scale), out=sys.stderr)
    root = home.root / "lab" / name
    port = configured_port(PgLab(name, root).conf)
    if port is None:
        raise RuntimeError(f"lab {name}: no port in its postgresql.conf")
    return Lab(name, root, port, home.sla_dir / f"lab-{name}.yaml")


def destroy_lab(home: BenchHome, name: str) -> None:
    from copydata.lab import postgres as labpg

    t0 = time.perf_counter()
    try:
        labpg.destroy(name, sla_dir=home.sla_dir, airflow=False, out=sys.stderr)
        log(f"{name}: lab destroyed in {time.perf_counter() - t0:.1f} s")
    except Exception as exc:  # keep cleaning up
        log(f"{name}: lab destroy failed: {exc}")


def stop_postgres_under(folder: Path) -> None:
    """Stop (immediate) every PostgreSQL server whose data directory lies under folder: our own leftovers."""
    from copydata.engines.postgres.engine import find_bin_dir

    for pid_file in folder.glob("**/postmaster.pid"):
        proc = subprocess.run(["runuser", "-u", "postgres", "--", str(find_bin_dir() / "pg_ctl"), "-D",
                               str(pid_file.parent), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        log(f"stopped leftover server {pid_file.parent} (rc {proc.returncode})")


def wait_archiver(lab: Lab, timeout: float = 3600) -> tuple[float, int]:
    """Switch WAL and wait until the archiver has copied that segment. Returns (seconds, bytes of WAL since
    initdb)."""
    t0 = time.perf_counter()
    with lab.connect() as c:
        lsn, segment = c.execute("SELECT lsn, pg_walfile_name(lsn) FROM pg_switch_wal() lsn").fetchone()
        while True:
            last = c.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
            if last and last[:24] >= segment:
                break
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"the archiver did not reach {segment} within {timeout:.0f} s (at {last})")
            time.sleep(0.5)
    return time.perf_counter() - t0, parse_lsn(str(lsn))


# -- the load ------------------------------------------------------------------------------------------
@dataclass
class Pgbench:
    lab: Lab
    seconds: int
    clients: int
    proc: subprocess.Popen | None = None
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    output: str = ""
    waiter: threading.Thread | None = None

    def start(self) -> Pgbench:
        from copydata.engines.postgres.engine import find_bin_dir

        cmd = ["runuser", "-u", "postgres", "--", str(find_bin_dir() / "pgbench"), "-n", "-c", str(self.clients),
               "-j", str(self.clients), "-T", str(self.seconds), "-h", str(self.lab.socket_dir), "-p",
               str(self.lab.port), "pgbench"]
        self.started = utcnow()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.waiter = threading.Thread(target=self._wait, daemon=True)
        self.waiter.start()
        return self

    def _wait(self) -> None:
        assert self.proc is not None
        self.output = self.proc.communicate()[0] or ""
        self.ended = utcnow()

    @property
    def running(self) -> bool:
        return self.ended is None

    def join(self) -> None:
        assert self.waiter is not None
        self.waiter.join(self.seconds + 120)
        if self.proc and self.proc.returncode:
            raise RuntimeError(f"pgbench exited {self.proc.returncode}:\n{self.output[-2000:]}")

    def kill(self) -> None:
        """Our own pgbench (runuser and its child, in the session started for them), if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    @property
    def tps(self) -> float | None:
        m = re.search(r"^tps = ([0-9.]+)", self.output, re.MULTILINE)
        return float(m.group(1)) if m else None


def current_lsn(lab: Lab) -> int:
    with lab.connect() as c:
        return parse_lsn(str(c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]))


@dataclass
class History:
    snapshot: object  # catalog row
    snapshot_s: float
    first_log_s: float
    log_s: list[float] = field(default_factory=list)
    final_log_s: float = 0.0
    load_wal: int = 0
    load: Pgbench | None = None


def run_load(ctx, lab: Lab, args) -> History:
    from copydata.ops.logs import log_backup
    from copydata.ops.snapshot import take_snapshot

    lsn0 = current_lsn(lab)
    load = Pgbench(lab, args.load_seconds, args.clients).start()
    try:
        time.sleep(args.snapshot_after)
        if not load.running:
            raise RuntimeError(f"pgbench ended early:\n{load.output[-2000:]}")
        t0 = time.perf_counter()
        snap = take_snapshot(ctx, f"{args.tag}-snap")
        snap_s = time.perf_counter() - t0
        array_s = ctx.array.last("snapshot_pgroup")
        t0 = time.perf_counter()
        log_backup(ctx, f"{args.tag}-log0")
        hist = History(snap, snap_s, time.perf_counter() - t0, load=load)
        window = snap.engine_meta["freeze_window_s"]
        before = (snap.consistent_at - snap.started_at).total_seconds() - window
        log(f"{lab.name}: snapshot {snap.pgroup_snapshot} in {snap_s * 1000:.0f} ms: connect + pg_backup_start "
            f"(checkpoint) ~{before * 1000:.0f} ms, freeze window {window * 1000:.0f} ms = array snapshot "
            f"{ms(array_s)} ms + pg_backup_stop (waits for the archive) ~{ms(window - (array_s or 0))} ms; "
            f"start LSN {snap.engine_meta['start_lsn']}, stop LSN {snap.engine_meta['stop_lsn']}")
        log(f"{lab.name}: log backup after it {hist.first_log_s * 1000:.0f} ms (push_logs "
            f"{ms(ctx.engine.last('push_logs'))} ms, array snapshot {ms(ctx.array.last('snapshot_pgroup'))} ms)")
        hist.log_s = log_backups_while(ctx, lab.name, args.tag, args.log_interval, lambda: load.running)
        load.join()
    finally:
        load.kill()
    hist.load_wal = current_lsn(lab) - lsn0
    t0 = time.perf_counter()
    log_backup(ctx, f"{args.tag}-final")
    hist.final_log_s = time.perf_counter() - t0
    log(f"{lab.name}: load done ({load.tps or 0:.0f} tps, {hist.load_wal / MiB:.0f} MiB of WAL in "
        f"{args.load_seconds} s); final log backup {hist.final_log_s * 1000:.0f} ms")
    return hist


# -- clones --------------------------------------------------------------------------------------------
@dataclass
class CloneRun:
    name: str
    point: str
    start_lsn: int  # the snapshot's start LSN (pg_backup_start): where replay begins
    create_s: float = 0.0  # create_clone call
    first_query_s: float = 0.0  # from the call until the first query answered
    history_rows: int = 0
    replay_start_lsn: int | None = None  # "redo starts at"
    replay_end_lsn: int | None = None  # "redo done at" (else pg_current_wal_lsn after promotion)
    replay_s: float | None = None  # redo starts .. redo done, from the server log
    phases: dict[str, float] = field(default_factory=dict)  # seconds after the trigger, from the log
    parts: dict[str, float] = field(default_factory=dict)  # durations of steps inside create_clone
    checkpoint: str = ""  # the end-of-recovery checkpoint's "wrote N buffers (P%)"
    delete_s: float = 0.0

    def replayed(self) -> int | None:
        return None if self.replay_end_lsn is None else self.replay_end_lsn - self.start_lsn

    def s_per_gib(self) -> float | None:
        wal = self.replayed()
        return self.replay_s / (wal / GiB) if wal and self.replay_s is not None else None

    def mib_per_s(self) -> float | None:
        wal = self.replayed()
        return wal / MiB / self.replay_s if wal and self.replay_s else None


def read_server_log(path: Path, offset: int = 0) -> list[tuple[dt.datetime, str]]:
    """(time, message) of the log lines from byte offset on."""
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    events = []
    for line in text.splitlines():
        m = LOG_LINE_RE.match(line)
        if not m:
            continue
        if m.group(2) not in ("UTC", "GMT"):
            raise RuntimeError(f"{path}: log time zone {m.group(2)}, expected UTC (log_timezone)")
        at = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.UTC)
        events.append((at, m.group(3)))
    return events


def first(events: list[tuple[dt.datetime, str]], prefix: str) -> tuple[dt.datetime, str] | None:
    return next(((at, msg) for at, msg in events if msg.startswith(prefix)), None)


def last(events: list[tuple[dt.datetime, str]], prefix: str) -> tuple[dt.datetime, str] | None:
    return next(((at, msg) for at, msg in reversed(events) if msg.startswith(prefix)), None)


def first_query(socket_dir: Path, port: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host=str(socket_dir), port=port, user="postgres", dbname="pgbench",
                                 connect_timeout=5, autocommit=True) as c:
                return c.execute("SELECT count(*) FROM pgbench_history").fetchone()[0]
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def run_volumes(ctx) -> list[str]:
    """The roles a clone copies: data, and the log roles when the application has a log protection group."""
    return ["data", *(ctx.log_roles() if ctx.app.log_protection_group else [])]


def measure_clone(ctx, name: str, point, port: int, start_lsn: int) -> CloneRun:
    from copydata.ops.clones import create_clone
    from copydata.ops.context import clone_home

    run = CloneRun(name, point if isinstance(point, str) else point.isoformat(), start_lsn)
    logfile = clone_home(name) / "run" / "postgresql.log"
    offset = logfile.stat().st_size if logfile.exists() else 0  # delete_clone leaves the log; pg_ctl -l appends
    trigger = utcnow()
    t0 = time.perf_counter()
    create_clone(ctx, name, point, port, mask=False, owner="benchmark")
    run.create_s = time.perf_counter() - t0
    run_dir = clone_home(name) / "run"
    run.history_rows = first_query(run_dir, port)
    run.first_query_s = time.perf_counter() - t0
    with psycopg.connect(host=str(run_dir), port=port, user="postgres", dbname="postgres", autocommit=True) as c:
        in_recovery, lsn = c.execute("SELECT pg_is_in_recovery(), pg_current_wal_lsn()").fetchone()
    if in_recovery:
        raise RuntimeError(f"clone {name} answered while still in recovery")

    events = read_server_log(logfile, offset)
    starts, done = first(events, "redo starts at"), first(events, "redo done at")
    if starts:
        run.replay_start_lsn = parse_lsn(LSN_RE.search(starts[1]).group(1))
    if done:
        run.replay_end_lsn = parse_lsn(LSN_RE.search(done[1]).group(1))
    else:
        run.replay_end_lsn = parse_lsn(str(lsn))
        log(f"clone {name}: no 'redo done at' line: using pg_current_wal_lsn() {lsn}")
    if starts and done:
        elapsed = ELAPSED_RE.search(done[1])  # PostgreSQL 15 appends the startup process's own count
        run.replay_s = (done[0] - starts[0]).total_seconds()
        if elapsed:
            run.phases["redo elapsed (server)"] = float(elapsed.group(1))
    marks = {"server start": first(events, "starting PostgreSQL"), "redo starts": starts,
             "consistent": first(events, "consistent recovery state reached"),
             "recovery stop": first(events, "recovery stopping"), "redo done": done,
             "end-of-recovery checkpoint starts": first(events, "checkpoint starting: end-of-recovery"),
             "end-of-recovery checkpoint done": first(events, "checkpoint complete"),
             "ready (read-write)": last(events, "database system is ready to accept connections")}
    for what, found in marks.items():
        if found:
            run.phases[what] = (found[0] - trigger).total_seconds()
    ckpt = marks["end-of-recovery checkpoint done"]
    if ckpt:
        run.checkpoint = ckpt[1].split(";")[0].removeprefix("checkpoint complete: ")
    run.parts = {"array copies": sum(ctx.array.calls.get("copy_volume", [])[-len(run_volumes(ctx)):]),
                 "prepare_clone": ctx.engine.last("prepare_clone") or 0.0,
                 "engine.start (pg_ctl start -w + wait_promoted)": ctx.engine.last("start") or 0.0}
    run.phases["create_clone returned"] = run.create_s
    run.phases["first query"] = run.first_query_s
    return run


def report_clone(lab: str, run: CloneRun) -> None:
    wal = run.replayed()
    phases = ", ".join(f"{k} {v:.2f}" for k, v in run.phases.items())
    log(f"{lab}: clone {run.name} at {run.point}: first query after {run.first_query_s:.2f} s "
        f"(create_clone {run.create_s:.2f} s; {run.history_rows} history rows); WAL replayed "
        f"{fmt(wal / MiB if wal is not None else None, '.0f')} MiB in {fmt(run.replay_s, '.2f')} s "
        f"({fmt(run.mib_per_s())} MiB/s)")
    log(f"{lab}:   seconds after the trigger: {phases}")
    log(f"{lab}:   inside create_clone: " + ", ".join(f"{k} {v:.2f} s" for k, v in run.parts.items())
        + (f"; end-of-recovery checkpoint {run.checkpoint}" if run.checkpoint else ""))
    if run.replay_start_lsn is not None and run.replay_start_lsn != run.start_lsn:
        log(f"{lab}:   note: redo started at {run.replay_start_lsn:X}, the snapshot's start LSN is {run.start_lsn:X}")


# -- one size ------------------------------------------------------------------------------------------
@dataclass
class Result:
    size_gib: float
    scale: int
    db_bytes: int = 0
    init_s: float = 0.0
    archive_wait_s: float = 0.0
    hist: History | None = None
    pit: CloneRun | None = None
    latest: CloneRun | None = None


def bench_size(home: BenchHome, size_gib: float, args) -> Result:
    from copydata.engines.base import DbTarget
    from copydata.engines.postgres import PostgresEngine

    name = lab_name(size_gib, args.tag)
    res = Result(size_gib, max(1, round(SCALE_PER_GIB * size_gib)))
    t0 = time.perf_counter()
    try:
        lab = create_lab(home, name, size_gib, res.scale)
        res.init_s = time.perf_counter() - t0
        with lab.connect("pgbench") as c:
            res.db_bytes = c.execute("SELECT pg_database_size('pgbench')").fetchone()[0]
        res.archive_wait_s, wal_total = wait_archiver(lab)
        log(f"{name}: lab ready in {res.init_s:.0f} s; pgbench database {res.db_bytes / GiB:.2f} GiB; "
            f"{wal_total / GiB:.2f} GiB of WAL since initdb, archived after another {res.archive_wait_s:.1f} s")
        engine = Timed(PostgresEngine(DbTarget(host=str(lab.socket_dir), port=lab.port, user="postgres"),
                                      data_directory="pgdata", os_user="postgres"),
                       ["push_logs", "check_archive", "prepare_clone", "start", "stop"])
        with app_context(home, lab.sla_file, engine) as ctx:
            res.hist = run_load(ctx, lab, args)
            start_lsn = parse_lsn(res.hist.snapshot.engine_meta["start_lsn"])
            target = clone_target(ctx, name, res.hist)
            runs = clone_pair(ctx, name, target, lambda clone, point: measure_clone(
                ctx, clone, point, first_free_port(CLONE_PORT_BASE), start_lsn), report_clone, stop_postgres_under,
                home.root / "clones")
            res.pit, res.latest = runs["pit"], runs["latest"]
    finally:
        destroy_lab(home, name)
        stop_postgres_under(home.root / "lab" / name)
    return res


# -- output --------------------------------------------------------------------------------------------
def render(results: list[Result]) -> str:
    headers = ["size GiB (scale)", "freeze ms", "snap ms", "+log bkp ms", "snap+log ms", "clone PIT s",
               "clone latest s", "WAL replayed MiB PIT/latest", "recovery s/GiB PIT/latest",
               "replay MiB/s PIT/latest", "load WAL MiB (tps)"]
    rows = []
    for r in results:
        h = r.hist
        assert h is not None and r.pit is not None and r.latest is not None
        wal = [c.replayed() for c in (r.pit, r.latest)]
        rows.append([
            f"{r.db_bytes / GiB:.2f} ({r.scale})",
            f"{h.snapshot.engine_meta['freeze_window_s'] * 1000:.0f}",
            f"{h.snapshot_s * 1000:.0f}",
            f"{h.first_log_s * 1000:.0f}",
            f"{(h.snapshot_s + h.first_log_s) * 1000:.0f}",
            f"{r.pit.first_query_s:.2f}",
            f"{r.latest.first_query_s:.2f}",
            "/".join(fmt(w / MiB if w is not None else None, ".0f") for w in wal),
            "/".join(fmt(c.s_per_gib(), ".2f") for c in (r.pit, r.latest)),
            "/".join(fmt(c.mib_per_s(), ".0f") for c in (r.pit, r.latest)),
            f"{h.load_wal / MiB:.0f} ({fmt(h.load.tps if h.load else None, '.0f')})",
        ])
    return table(headers, rows)


def breakdown(results: list[Result]) -> str:
    """Where each clone's time to first query went, from the clone's server log (seconds)."""
    headers = ["size GiB / clone", "to server start", "to redo start", "WAL replay", "to redo done",
               "end-of-recovery ckpt", "to promoted", "to first query"]
    rows = []
    for r in results:
        for c in (r.pit, r.latest):
            if c is None:
                continue
            ph = c.phases

            def at(key: str, ph=ph) -> str:
                return fmt(ph.get(key), ".2f")

            ckpt = (ph["end-of-recovery checkpoint done"] - ph["end-of-recovery checkpoint starts"]
                    if "end-of-recovery checkpoint starts" in ph and "end-of-recovery checkpoint done" in ph else None)
            rows.append([f"{r.db_bytes / GiB:.2f} {c.name.rsplit('-', 1)[1]}", at("server start"), at("redo starts"),
                         fmt(c.replay_s, ".2f"), at("redo done"), fmt(ckpt, ".2f"), at("ready (read-write)"),
                         f"{c.first_query_s:.2f}"])
    return table(headers, rows)


def verdict(results: list[Result]) -> str:
    """One closing line: did the time from trigger to first query grow with the database, and where."""
    if len(results) < 2:
        return "Only one size ran: no statement on growth with database size."
    small, big = min(results, key=lambda r: r.db_bytes), max(results, key=lambda r: r.db_bytes)

    def grew(a: float, b: float) -> bool:  # more than 25 % and more than 1 s
        return b > 1.25 * a and b - a > 1.0

    def ckpt(c: CloneRun) -> float:
        ph = c.phases
        return ph.get("end-of-recovery checkpoint done", 0.0) - ph.get("end-of-recovery checkpoint starts", 0.0)

    def storage(c: CloneRun) -> float:  # array copies, connect, mount, until the server's first log line
        return c.phases.get("server start", 0.0)

    def pair(what: str, fn, unit: str = " s") -> str:
        a, b = fn(small.pit), fn(big.pit)
        return f"{what} {a:.2f}->{b:.2f}{unit}"

    a, b = small.pit.first_query_s, big.pit.first_query_s
    any_grew = grew(a, b) or grew(small.latest.first_query_s, big.latest.first_query_s)
    return (f"Clone time {'DID' if any_grew else 'did not'} grow with database size "
            f"({small.db_bytes / GiB:.2f} -> {big.db_bytes / GiB:.2f} GiB): to first query PIT {a:.2f} -> {b:.2f} s, "
            f"latest {small.latest.first_query_s:.2f} -> {big.latest.first_query_s:.2f} s. PIT breakdown: "
            + "; ".join([pair("storage (copies+mount+start)", storage), pair("WAL replay", lambda c: c.replay_s or 0.0),
                         pair("replay speed", lambda c: c.mib_per_s() or 0.0, " MiB/s"),
                         pair("end-of-recovery checkpoint", ckpt)])
            + ".")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=parse_sizes, default=[1.0, 10.0],
                    help="database sizes in GiB, comma separated (pgbench scale 68 per GiB; default 1,10)")
    ap.add_argument("--home", help="COPYDATA_HOME (default: a fresh folder under /var/tmp, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the fresh COPYDATA_HOME folder")
    ap.add_argument("--load-seconds", type=int, default=20, help="pgbench -T (default 20)")
    ap.add_argument("--clients", type=int, default=2, help="pgbench -c and -j (default 2)")
    ap.add_argument("--snapshot-after", type=float, default=2.0,
                    help="seconds into the load when the snapshot is taken (default 2)")
    ap.add_argument("--log-interval", type=float, default=5.0,
                    help="seconds between log backups during the load (default 5)")
    args = ap.parse_args(argv)
    args.tag = "b" + time.strftime("%m%d%H%M%S")  # array snapshot suffixes of this run (catalog rows are keyed by them)
    if os.geteuid() != 0:
        ap.error("needs root: loop devices, mounts and runuser")
    if args.load_seconds < args.snapshot_after + 6:
        ap.error("--load-seconds must leave room for the snapshot and a clone point 3 s before the end")

    started = time.perf_counter()
    results: list[Result] = []
    with bench_home(args.home, args.keep, prefix="copydata-bench-pg-") as home:
        log(f"COPYDATA_HOME={home.root}; sizes {args.sizes} GiB; pgbench -c {args.clients} -T {args.load_seconds}")
        try:
            for size in args.sizes:
                results.append(bench_size(home, size, args))
        finally:
            stop_postgres_under(home.root / "clones")
            stop_postgres_under(home.root / "lab")
            stop_emulator(home)
    total = time.perf_counter() - started
    print(render(results))
    print()
    print("Clone phases, seconds after the create_clone call (from the clone's server log, UTC):")
    print(breakdown(results))
    print()
    print(f"pgbench -n -c {args.clients} -j {args.clients} -T {args.load_seconds}; snapshot {args.snapshot_after:g} s "
          f"into the load, log backups every {args.log_interval:g} s; PIT clone target 3 s before the load ended, "
          f"whole second. Lab build (init) s: "
          + ", ".join(f"{r.db_bytes / GiB:.2f} GiB {r.init_s:.0f}" for r in results)
          + f". Total {total / 60:.1f} min.")
    print(verdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
