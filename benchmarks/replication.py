#!/usr/bin/env python3
"""copydata replication to object storage against pgBackRest 2.45 (Debian's package), side by side on the
same PostgreSQL 15 pgbench database, the same update load and the same compression (zstd level 3).

Per --profiles entry, one lab database (`copydata lab postgres create`, pgbench scale 68 per GiB of --size) on
the FlashArray emulator; pgBackRest gets a stanza on the same cluster and its `archive-push` is chained
after the lab's archive command, so both tools see every WAL segment. Then four steps: full, and three
incrementals each after `pgbench -T --load-seconds`; the load is stopped before each step, so both tools
back up the same state. Per step and per store:

- copydata: take_snapshot + log_backup (the snapshot DAG), then replicate() to the store's repository (the
  replicate DAG): the array's block differences between consecutive snapshots, read from a connected copy;
- pgBackRest: `backup --type=full|incr` to its repository on the same store, in file mode (the stable
  file-level incremental) and, with `block` in --pgbackrest-modes, bundle + block incremental (BETA in 2.45).

Measured: wall and CPU seconds (this process plus its children; the emulator, the object-store server and
PostgreSQL itself are not counted, for either tool), bytes read from the source, bytes uploaded, bytes
stored in the repository (all objects: data, WAL, manifests); then, at the newest point, the time from the
restore call to the first answered query (copydata: recover_from_repo; pgBackRest: `restore` + `pg_ctl
start`; both replay the stored WAL to its end), and copydata's instant mount to the first query
(pgBackRest has none). Every restored database is checked against the source (row counts and balance sums).

Stores: posix (a folder) and s3 (a moto server on loopback; pgBackRest speaks only HTTPS to S3, so it reaches
moto through stunnel4 with a self-signed certificate).

Needs root (loop devices, mounts, runuser), the Debian packages pgbackrest and stunnel4 (`make bootstrap`
installs both) and moto in the venv. Progress on stderr; the tables on stdout.

    .venv/bin/python benchmarks/replication.py --size 1 --stores posix,s3 --profiles tpcb,hot
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from _common import BenchHome, MiB, app_context, bench_home, fmt, log, stop_emulator, table
from postgres_clone import SCALE_PER_GIB, Lab, create_lab, destroy_lab, stop_postgres_under, wait_archiver

from copydata.sysutil import free_port, serve_http

STANZA = "bench"
BUCKET = "copydata-bench"
S3_CONN = "bench_s3"
S3_KEY, S3_SECRET = "bench", "bench-secret"   # moto accepts any credentials
STEPS = ["full", "incr1", "incr2", "incr3"]
HOT_FRACTION = 0.01   # the hot profile updates the first 1 % of pgbench_accounts
FIRST_QUERY = "SELECT sum(bbalance) FROM pgbench_branches"
CHECK_QUERY = ("SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT sum(abalance) FROM pgbench_accounts), "
               "(SELECT count(*) FROM pgbench_history)")


class Cpu:
    """CPU seconds (user + system) of this process and its waited-for children between start and stop."""

    def __enter__(self) -> Cpu:
        self.t0, self.c0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t0, self._cpu() - self.c0

    @staticmethod
    def _cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# -- object stores -------------------------------------------------------------------------------------
@dataclass
class S3Server:
    """moto on plain HTTP for copydata (through the Airflow S3 hook), stunnel4 in front of it for pgBackRest."""

    root: Path
    http_port: int = 0
    tls_port: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port, self.tls_port = free_port(), free_port()
        with open(self.root / "moto.log", "wb") as out:
            self.procs.append(serve_http([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                          str(self.http_port)], f"{self.endpoint}/moto-api/", out))
        self._tls()
        os.environ[f"AIRFLOW_CONN_{S3_CONN.upper()}"] = json.dumps(
            {"conn_type": "aws", "login": S3_KEY, "password": S3_SECRET,
             "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"}})
        from copydata.airflow.storage import S3Store

        S3Store(S3_CONN, BUCKET, "").ensure_bucket()
        log(f"s3: moto at {self.endpoint}, TLS for pgBackRest at 127.0.0.1:{self.tls_port}, bucket {BUCKET}")
        return self

    def _tls(self) -> None:
        key, crt, conf = self.root / "s3.key", self.root / "s3.crt", self.root / "stunnel.conf"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
        conf.write_text(f"foreground = yes\npid =\ncert = {crt}\nkey = {key}\n[s3]\n"
                        f"accept = 127.0.0.1:{self.tls_port}\nconnect = 127.0.0.1:{self.http_port}\n")
        with open(self.root / "stunnel.log", "wb") as out:
            self.procs.append(subprocess.Popen(["stunnel4", str(conf)], stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", self.tls_port)) != 0:
            if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                raise RuntimeError(f"stunnel4 did not listen on {self.tls_port}; see {self.root / 'stunnel.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        from copydata.sysutil import stop_child

        for p in reversed(self.procs):
            stop_child(p)
        self.procs.clear()
        os.environ.pop(f"AIRFLOW_CONN_{S3_CONN.upper()}", None)

    def objects(self, prefix: str) -> int:
        """Bytes stored under prefix in the bucket."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_KEY,
                          aws_secret_access_key=S3_SECRET, region_name="us-east-1")
        total = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            total += sum(o["Size"] for o in page.get("Contents", []))
        return total


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- pgBackRest ----------------------------------------------------------------------------------------
@dataclass
class PgBackRest:
    """One stanza on the lab's cluster, one repository per (store, mode): repo<N> in the configuration."""

    root: Path
    lab: Lab
    pgdata: Path
    repos: dict[tuple[str, str], int]      # (store, mode) -> N
    s3: S3Server | None
    level: int
    processes: int

    @property
    def conf(self) -> Path:
        return self.root / "pgbackrest.conf"

    def s3_path(self, n: int) -> str:
        return f"/pgbackrest-{self.lab.name}-repo{n}"

    def write_config(self) -> None:
        lines = ["[global]", "compress-type=zst", f"compress-level={self.level}",
                 f"process-max={self.processes}", "start-fast=y", "archive-check=y",
                 f"log-path={self.root / 'log'}", f"lock-path={self.root / 'lock'}",
                 f"spool-path={self.root / 'spool'}", "log-level-console=warn", "log-level-file=info"]
        if any(mode == "block" for _, mode in self.repos):
            lines.append("beta=y")
        for (store, mode), n in sorted(self.repos.items(), key=lambda kv: kv[1]):
            lines.append(f"repo{n}-retention-full=4")
            if mode == "block":
                lines += [f"repo{n}-bundle=y", f"repo{n}-block=y"]
            if store == "posix":
                lines.append(f"repo{n}-path={self.root / f'repo{n}'}")
            else:
                assert self.s3 is not None
                lines += [f"repo{n}-type=s3", f"repo{n}-path={self.s3_path(n)}", f"repo{n}-s3-bucket={BUCKET}",
                          f"repo{n}-s3-endpoint=127.0.0.1", f"repo{n}-storage-port={self.s3.tls_port}",
                          f"repo{n}-storage-verify-tls=n", f"repo{n}-s3-uri-style=path",
                          f"repo{n}-s3-region=us-east-1", f"repo{n}-s3-key={S3_KEY}",
                          f"repo{n}-s3-key-secret={S3_SECRET}"]
        lines += ["", f"[{STANZA}]", f"pg1-path={self.pgdata}", f"pg1-port={self.lab.port}",
                  f"pg1-socket-path={self.lab.socket_dir}", ""]
        for sub in ("log", "lock", "spool", *(f"repo{n}" for n in self.repos.values())):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join(lines))
        self.conf.chmod(0o640)
        subprocess.run(["chown", "-R", "postgres:postgres", str(self.root)], check=True)

    def command(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={self.conf}", f"--stanza={STANZA}",
                *args]

    def run(self, *args: str, timeout: float = 3600) -> str:
        proc = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode:
            raise RuntimeError(f"pgbackrest {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}"
                               f"{proc.stderr[-2000:]}")
        return proc.stdout

    def setup(self, archive_command: str) -> None:
        """Config, stanza, and archive-push chained after the lab's own archive command, in a script: the
        server cuts archive_command at 1 KiB."""
        self.write_config()
        push = " ".join(self.command("archive-push", '"$1"')[4:])   # without runuser: the server is postgres
        script = self.root / "pgbackrest-after-lab-archive.sh"   # check wants "pgbackrest" in the command
        script.write_text("#!/bin/sh\nset -e\n" + archive_command.replace("%p", '"$1"').replace("%f", '"$2"')
                          + f"\n{push}\n")
        script.chmod(0o755)
        with self.lab.connect() as c:
            c.execute(f"ALTER SYSTEM SET archive_command = '{script} %p %f'")
            c.execute("SELECT pg_reload_conf()")
        self.run("stanza-create")
        self.run("check")

    def backup(self, store: str, mode: str, kind: str) -> Cpu:
        with Cpu() as cpu:
            self.run(f"--repo={self.repos[(store, mode)]}", f"--type={kind}", "backup")
        return cpu

    def last_backup(self, store: str, mode: str) -> dict:
        info = json.loads(self.run(f"--repo={self.repos[(store, mode)]}", "--output=json", "info"))
        return info[0]["backup"][-1]["info"]

    def stored(self, store: str, mode: str) -> int:
        n = self.repos[(store, mode)]
        if store == "posix":
            return folder_bytes(self.root / f"repo{n}")
        assert self.s3 is not None
        return self.s3.objects(self.s3_path(n).lstrip("/") + "/")

    def restore(self, store: str, mode: str, dest: Path, port: int) -> None:
        dest.mkdir(parents=True)
        run_dir = dest.parent / f"{dest.name}-run"
        run_dir.mkdir()
        subprocess.run(["chown", "postgres:postgres", str(dest), str(run_dir)], check=True)
        dest.chmod(0o700)
        self.run(f"--repo={self.repos[(store, mode)]}", f"--pg1-path={dest}", "restore")
        with open(dest / "postgresql.auto.conf", "a") as f:
            f.write(f"port = {port}\nunix_socket_directories = '{run_dir}'\narchive_mode = off\n"
                    f"cluster_name = 'pgbr-restore'\nlisten_addresses = ''\n")


# -- the load ------------------------------------------------------------------------------------------
def hot_script(lab: Lab, scale: int) -> Path:
    """pgbench script: the tpcb-like account update and history insert, on the first HOT_FRACTION of the
    accounts (a hot set, as OLTP tables have), without the branch and teller updates."""
    hot = max(1000, int(100_000 * scale * HOT_FRACTION))
    path = lab.root / "hot.sql"
    path.write_text(f"\\set aid random(1, {hot})\n\\set delta random(-5000, 5000)\nBEGIN;\n"
                    "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
                    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, "
                    "CURRENT_TIMESTAMP);\nEND;\n")
    path.chmod(0o644)
    return path


def run_load(lab: Lab, profile: str, scale: int, seconds: int, clients: int) -> float:
    from copydata.engines.postgres.engine import find_bin_dir

    script = [] if profile == "tpcb" else ["-f", str(hot_script(lab, scale))]
    cmd = ["runuser", "-u", "postgres", "--", str(find_bin_dir() / "pgbench"), "-n", *script, "-c", str(clients),
           "-j", str(clients), "-T", str(seconds), "-h", str(lab.socket_dir), "-p", str(lab.port), "pgbench"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 300)
    if proc.returncode:
        raise RuntimeError(f"pgbench exited {proc.returncode}:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    tps = next((float(line.split()[2]) for line in proc.stdout.splitlines() if line.startswith("tps = ")), 0.0)
    return tps


def source_check(lab: Lab) -> tuple:
    with lab.connect("pgbench") as c:
        return tuple(c.execute(CHECK_QUERY).fetchone())


def query(socket_dir: Path | str, port: int, sql: str, timeout: float = 120) -> tuple:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host=str(socket_dir), port=port, user="postgres", dbname="pgbench",
                                 connect_timeout=5, autocommit=True) as c:
                return tuple(c.execute(sql).fetchone())
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- results -------------------------------------------------------------------------------------------
@dataclass
class Step:
    step: str
    tool: str              # copydata | pgBackRest file | pgBackRest block (beta)
    wall: float
    cpu: float
    read: int              # bytes read from the source
    uploaded: int          # bytes written to the store by this step (encoded)
    stored: int            # bytes in the repository after the step
    changed: int | None = None   # copydata incrementals: bytes the array reported changed
    zeros: int = 0         # copydata: all-zero blocks among the bytes read (new WAL segments are zero-filled)


@dataclass
class RestoreRun:
    tool: str
    restore_s: float       # restore call (copydata: data image + WAL fetch + replay; pgBackRest: restore)
    first_query_s: float   # from the restore call to the first answered query
    matches: bool


@dataclass
class StoreResult:
    profile: str
    store: str
    steps: list[Step] = field(default_factory=list)
    restores: list[RestoreRun] = field(default_factory=list)
    tps: list[float] = field(default_factory=list)


# -- one profile ---------------------------------------------------------------------------------------
@dataclass
class Bench:
    home: BenchHome
    args: argparse.Namespace
    s3: S3Server | None

    def url(self, store: str, lab: Lab) -> tuple[str, str | None]:
        if store == "posix":
            return f"file://{self.home.root / 'copydata-repos' / lab.name}", None
        return f"s3://{BUCKET}/copydata-{lab.name}", S3_CONN

    def copydata_stored(self, target) -> int:
        return sum(o.size for o in target.store().list(""))

    def run_profile(self, profile: str) -> list[StoreResult]:
        args = self.args
        scale = max(1, round(SCALE_PER_GIB * args.size))
        name = f"repl-{profile}-{args.tag[-6:]}"
        results = {s: StoreResult(profile, s) for s in args.stores}
        try:
            lab = create_lab(self.home, name, args.size, scale)
            wait_archiver(lab)
            self._profile_steps(lab, profile, scale, results)
        except BaseException:
            keep_logs(self.home, name)
            raise
        finally:
            stop_postgres_under(self.home.root / "restores")
            destroy_lab(self.home, name)
        return list(results.values())

    def _profile_steps(self, lab: Lab, profile: str, scale: int, results: dict[str, StoreResult]) -> None:
        from copydata.engines.base import DbTarget
        from copydata.engines.postgres import PostgresEngine
        from copydata.lab.pgserver import PgLab, archive_command
        from copydata.replication.target import Target

        args = self.args
        with lab.connect() as c:
            pgdata = Path(c.execute("SHOW data_directory").fetchone()[0])
        repos = {(s, m): i + 1 for i, (s, m) in enumerate((s, m) for s in args.stores for m in args.pgbr_modes)}
        pgbr = PgBackRest(self.home.root / "pgbr" / lab.name, lab, pgdata, repos, self.s3, args.level,
                          args.pgbr_processes)
        pgbr.setup(archive_command(PgLab(lab.name, lab.root).wal_dir))
        targets = {s: Target(f"bench-{s}", *self.url(s, lab), workers=args.workers, block_size=args.block_size)
                   for s in args.stores}
        engine = PostgresEngine(DbTarget(host=str(lab.socket_dir), port=lab.port, user="postgres"),
                                data_directory="pgdata", os_user="postgres")
        with app_context(self.home, lab.sla_file, engine) as ctx:
            for i, step in enumerate(STEPS):
                if i:
                    tps = run_load(lab, profile, scale, args.load_seconds, args.clients)
                    log(f"{lab.name}: {profile} load {args.load_seconds} s at {tps:.0f} tps")
                    for r in results.values():
                        r.tps.append(tps)
                self._copydata_step(ctx, step, targets, results)
                for store in args.stores:
                    for mode in args.pgbr_modes:
                        results[store].steps.append(self._pgbr_step(pgbr, step, store, mode))
            expected = source_check(lab)
            log(f"{lab.name}: source accounts/sum/history {expected}")
            for store in args.stores:
                self._restores(ctx, lab, pgbr, targets[store], store, expected, results[store])

    def _copydata_step(self, ctx, step: str, targets: dict, results: dict[str, StoreResult]) -> None:
        from copydata.ops.logs import log_backup
        from copydata.ops.snapshot import take_snapshot
        from copydata.replication.replicate import replicate

        with Cpu() as snap:
            take_snapshot(ctx, f"{step}-{self.args.tag[-6:]}")
            log_backup(ctx, f"{step}-{self.args.tag[-6:]}-log")
        log(f"{ctx.name}: {step}: copydata snapshot + log backup {snap.wall:.2f} s")
        for store, target in targets.items():
            with Cpu() as rep:
                report = replicate(ctx, target)
            vols = [v for p in report.points for v in p.volumes]
            changed = sum(v.changed_bytes or 0 for v in vols) if step != "full" else None
            zeros = sum(v.zero_blocks for v in vols) * target.block_size
            s = Step(step, "copydata", snap.wall + rep.wall, snap.cpu + rep.cpu, report.stats.get("bytes_read", 0),
                     report.bytes_uploaded, self.copydata_stored(target), changed, zeros)
            results[store].steps.append(s)
            log(f"{ctx.name}: {step}: copydata -> {store}: replicate {rep.wall:.2f} s, read {s.read / MiB:.0f} MiB"
                + (f" (array: {changed / MiB:.1f} MiB changed)" if changed is not None else "")
                + f", uploaded {s.uploaded / MiB:.1f} MiB, repository {s.stored / MiB:.1f} MiB")

    def _pgbr_step(self, pgbr: PgBackRest, step: str, store: str, mode: str) -> Step:
        cpu = pgbr.backup(store, mode, "full" if step == "full" else "incr")
        info = pgbr.last_backup(store, mode)
        s = Step(step, f"pgBackRest {mode}", cpu.wall, cpu.cpu, info["delta"], info["repository"]["delta"],
                 pgbr.stored(store, mode))
        log(f"{pgbr.lab.name}: {step}: pgBackRest {mode} -> {store}: {cpu.wall:.2f} s, copied {s.read / MiB:.0f} "
            f"MiB of files, stored {s.uploaded / MiB:.1f} MiB, repository {s.stored / MiB:.1f} MiB (with WAL)")
        return s

    def _restores(self, ctx, lab: Lab, pgbr: PgBackRest, target, store: str, expected: tuple,
                  res: StoreResult) -> None:
        base = self.home.root / "restores" / f"{lab.name}-{store}"
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        res.restores.append(self._copydata_restore(ctx, target, base / "copydata", expected))
        res.restores.append(self._instant(ctx, target, base / "instant", expected))
        for mode in self.args.pgbr_modes:
            res.restores.append(self._pgbr_restore(pgbr, store, mode, base / f"pgbr-{mode}", expected))

    def _copydata_restore(self, ctx, target, workdir: Path, expected: tuple) -> RestoreRun:
        from copydata.replication.recovery import recover_from_repo

        repo = target.open_repository()
        port = free_port()
        t0 = time.perf_counter()
        rec = recover_from_repo(repo, ctx.name, workdir, port, point_in_time=None)
        try:
            restore_s = time.perf_counter() - t0
            query(rec.run_dir, port, FIRST_QUERY)
            first = time.perf_counter() - t0
            got = query(rec.run_dir, port, CHECK_QUERY)
        finally:
            rec.close()
        log(f"{ctx.name}: copydata restore from {target.url}: first query after {first:.2f} s "
            f"({rec.timings}); {'matches' if got == expected else f'MISMATCH {got}'}")
        return RestoreRun("copydata", restore_s, first, got == expected)

    def _instant(self, ctx, target, workdir: Path, expected: tuple) -> RestoreRun:
        from copydata.instant.postgres import instant_postgres
        from copydata.replication.restore import list_points

        point = max(list_points(target.open_repository(), ctx.name), key=lambda p: p.consistent_at).point
        db = instant_postgres(target.url, ctx.name, point, workdir, port=free_port(), conn_id=target.conn_id,
                              first_query=FIRST_QUERY, database="pgbench")
        try:
            first = db.timings["first_query"]
            got = tuple(db.query(CHECK_QUERY)[0])
        finally:
            db.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"{ctx.name}: instant mount of {point} from {target.url}: first query after {first:.2f} s "
            f"({ {k: round(v, 2) for k, v in db.timings.items()} }); "
            f"{'matches' if got == expected else f'MISMATCH {got}'}")
        return RestoreRun("copydata instant", db.timings.get("start", first), first, got == expected)

    def _pgbr_restore(self, pgbr: PgBackRest, store: str, mode: str, dest: Path, expected: tuple) -> RestoreRun:
        from copydata.engines.postgres.engine import find_bin_dir

        port = free_port()
        pg_ctl = ["runuser", "-u", "postgres", "--", str(find_bin_dir() / "pg_ctl"), "-D", str(dest)]
        t0 = time.perf_counter()
        pgbr.restore(store, mode, dest, port)
        restore_s = time.perf_counter() - t0
        run_dir = dest.parent / f"{dest.name}-run"
        try:
            subprocess.run([*pg_ctl, "-l", str(run_dir / "postgresql.log"), "-w", "-t", "900", "start"],
                           check=True, capture_output=True, timeout=960)
            query(run_dir, port, FIRST_QUERY)
            first = time.perf_counter() - t0
            got = query(run_dir, port, CHECK_QUERY)
        finally:
            subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        log(f"{pgbr.lab.name}: pgBackRest {mode} restore from {store}: files in {restore_s:.2f} s, first query "
            f"after {first:.2f} s; {'matches' if got == expected else f'MISMATCH {got}'}")
        return RestoreRun(f"pgBackRest {mode}", restore_s, first, got == expected)


def keep_logs(home: BenchHome, name: str) -> None:
    """Copy the lab server's log and pgBackRest's logs out of the home (removed at the end) for a post-mortem."""
    from copydata.lab.pgserver import PgLab

    dest = Path(f"/var/tmp/copydata-repl-bench-failed-{name}")
    dest.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        shutil.copy(PgLab(name, home.root / "lab" / name).logfile, dest)
    with contextlib.suppress(OSError):
        shutil.copytree(home.root / "pgbr" / name / "log", dest / "pgbackrest", dirs_exist_ok=True)
    log(f"{name}: logs kept in {dest}")


# -- report --------------------------------------------------------------------------------------------
def step_table(r: StoreResult) -> str:
    rows, before = [], {}
    for s in r.steps:
        per_core = (s.read - s.zeros) / MiB / s.cpu if s.cpu > 0 else None
        ratio = s.uploaded / s.changed if s.changed else None
        growth = s.stored - before.get(s.tool, 0)
        before[s.tool] = s.stored
        rows.append([s.step, s.tool, fmt(s.wall, ".2f"), fmt(s.cpu, ".2f"), fmt(s.read / MiB), fmt(s.zeros / MiB),
                     fmt(per_core, ".0f"), fmt(None if s.changed is None else s.changed / MiB), fmt(ratio, ".2f"),
                     fmt(s.uploaded / MiB), fmt(growth / MiB), fmt(s.stored / MiB)])
    return table(["step", "tool", "wall s", "CPU s", "read MiB", "of it zero", "non-zero MiB/CPU-s",
                  "array changed MiB", "upload/changed", "uploaded MiB", "repository +MiB", "repository MiB"], rows)


def growth(steps: dict[str, Step]) -> float | None:
    """Mean growth of the repository (data, WAL, metadata) per incremental."""
    sizes = [steps[k].stored for k in STEPS if k in steps]
    return (sizes[-1] - sizes[0]) / (len(sizes) - 1) if len(sizes) > 1 else None


def summary_table(results: list[StoreResult]) -> str:
    tools = list(dict.fromkeys(s.tool for r in results for s in r.steps))
    rows = []
    for r in results:
        for tool in tools:
            steps = {s.step: s for s in r.steps if s.tool == tool}
            incr = [steps[k] for k in STEPS[1:] if k in steps]
            rest = next((x for x in r.restores if x.tool == tool), None)
            inst = next((x for x in r.restores if x.tool == f"{tool} instant"), None)
            cpu = sum(s.cpu for s in steps.values())
            g = growth(steps)
            rows.append([f"{r.profile}/{r.store}", tool, fmt(steps["full"].wall, ".1f"),
                         fmt(sum(s.wall for s in incr) / len(incr), ".1f"),
                         fmt(None if g is None else g / MiB), fmt(steps[STEPS[-1]].stored / MiB),
                         fmt(sum(s.read - s.zeros for s in steps.values()) / MiB / cpu if cpu else None, ".0f"),
                         fmt(rest.first_query_s if rest else None, ".1f"),
                         fmt(inst.first_query_s if inst else None, ".1f"),
                         "n/a" if rest is None else ("yes" if rest.matches and (inst is None or inst.matches)
                                                     else "NO")])
    return table(["profile/store", "tool", "full s", "incr s (mean)", "repository +MiB per incr",
                  "repository MiB after full+3", "non-zero MiB/CPU-s", "restore→query s", "instant→query s",
                  "restored = source"], rows)


def parse_list(allowed: set[str]):
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {sorted(allowed)}")
        return items
    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=float, default=1.0, help="GiB of pgbench data (scale 68 per GiB; default 1)")
    ap.add_argument("--stores", type=parse_list({"posix", "s3"}), default=["posix", "s3"])
    ap.add_argument("--profiles", type=parse_list({"tpcb", "hot"}), default=["tpcb", "hot"],
                    help="tpcb: pgbench's built-in tpcb-like (random accounts); hot: updates on the first 1 %% of "
                         "the accounts (default both, one lab each)")
    ap.add_argument("--pgbr-modes", type=parse_list({"file", "block"}), default=["file", "block"],
                    help="pgBackRest repositories: file (stable file-level incremental), block (bundle + block "
                         "incremental, BETA in 2.45)")
    ap.add_argument("--load-seconds", type=int, default=20, help="pgbench -T before each incremental")
    ap.add_argument("--clients", type=int, default=2, help="pgbench -c and -j")
    ap.add_argument("--level", type=int, default=3, help="zstd level of both tools (copydata's is 3)")
    ap.add_argument("--workers", type=int, default=4, help="copydata upload threads")
    ap.add_argument("--block-size", default="1M", help="copydata repository block size, 4K..4M (default 1M)")
    ap.add_argument("--pgbr-processes", type=int, default=2, help="pgBackRest process-max")
    ap.add_argument("--home", help="COPYDATA_HOME (default: a fresh folder under /var/tmp, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the fresh COPYDATA_HOME folder")
    args = ap.parse_args(argv)
    if args.level != 3:
        ap.error("--level: copydata repositories compress at zstd level 3; keep both tools at 3")
    if os.geteuid() != 0:
        ap.error("run as root (loop devices, mounts, runuser)")
    for tool in ["pgbackrest", *(["stunnel4"] if "s3" in args.stores else [])]:
        if shutil.which(tool) is None:
            ap.error(f"{tool} is not installed: apt-get install {tool} (or make bootstrap)")
    args.tag = time.strftime("%H%M%S")
    out = os.fdopen(os.dup(1), "w")   # the tables; Airflow's logging writes to fd 1, which now goes to stderr
    os.dup2(2, 1)
    results: list[StoreResult] = []
    with bench_home(args.home, args.keep, prefix="copydata-repl-bench-") as home:
        os.environ.setdefault("AIRFLOW_HOME", str(home.root / "airflow"))
        s3 = S3Server(home.root / "s3") if "s3" in args.stores else None
        try:
            if s3 is not None:
                s3.start()
            bench = Bench(home, args, s3)
            for profile in args.profiles:
                results += bench.run_profile(profile)
        finally:
            if s3 is not None:
                s3.stop()
            stop_emulator(home)
    version = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True).stdout.split()[-1]
    print(f"\ncopydata vs pgBackRest {version}: {args.size:g} GiB pgbench (scale "
          f"{max(1, round(SCALE_PER_GIB * args.size))}), {args.load_seconds} s of load before each incremental, zstd "
          f"{args.level}, copydata {args.workers} workers and {args.block_size} blocks, pgBackRest process-max {args.pgbr_processes}; "
          f"{os.cpu_count()} cores\n", file=out)
    for r in results:
        print(f"== {r.profile} / {r.store} (load tps: {', '.join(f'{t:.0f}' for t in r.tps)})", file=out)
        print(step_table(r) + "\n", file=out)
    print(summary_table(results), file=out)
    out.flush()
    return 0 if all(x.matches for r in results for x in r.restores) else 1


if __name__ == "__main__":
    sys.exit(main())
