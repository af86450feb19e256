"""A PostgreSQL recovery point, running straight from the repository: instant mount + WAL + start.

    with instant_postgres("s3://bucket/repo", "pg-orders", "pg-orders.snap-0042", "/var/tmp/pg-im",
                          port=55440, conn_id="aws_repo") as db:
        print(db.timings["first_query"])      # seconds from the call to the first successful query
        psycopg.connect(host=db.target.host, port=db.target.port, user=db.target.user)

The point's manifest carries the engine metadata {"snapshot": {backup_label, start_segment, stop_segment,
…}} (what PostgresEngine.quiesce recorded) and optionally "data_directory" (the data folder inside the
volume, default pgdata). Its WAL lives beside the points at logs/<application>/<segment name>.

Steps, timed: the data volume is instant-mounted read-write (the local cache takes every write) while the
WAL the point needs (copydata.replication.recovery.plan_wal: the snapshot's start segment through its stop
segment, then the unbroken run after it, and the timeline history files) is fetched in parallel into
<workdir>/logs/wal/ by copydata.replication.logfetch.LogFetcher; then PostgresEngine.prepare_clone writes
backup_label and the recovery settings (restore_command copies from that folder), PostgresEngine.start
replays and promotes, and a first query is run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copydata.instant.daemon import open_repository
from copydata.instant.mount import InstantMount
from copydata.replication import logfetch
from copydata.replication.recovery import plan_wal

log = logging.getLogger(__name__)

MARKER = "instant.json"   # in an instant mount's work folder: what release_instant needs to stop its server


def snapshot_meta(engine_meta: dict[str, Any]) -> dict[str, Any]:
    """The snapshot metadata of a manifest's engine section ({"snapshot": {...}}, or flat)."""
    meta = engine_meta.get("snapshot", engine_meta)
    if not isinstance(meta, dict) or not meta.get("backup_label"):
        raise ValueError("the point's engine metadata holds no PostgreSQL backup_label")
    return meta


@dataclass
class InstantDatabase:
    mount: InstantMount
    engine: Any                 # PostgresEngine
    spec: Any                   # CloneSpec
    target: Any                 # DbTarget: where the server listens
    wal: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        from copydata.engines.postgres.engine import connect

        with connect(self.target) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []

    def stop(self) -> None:
        """Stop the server, then tear the mount down (umount → losetup -d → daemon)."""
        try:
            self.engine.stop(self.spec.data_mount, self.spec.run_dir)
        finally:
            self.mount.stop()

    def __enter__(self) -> InstantDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def instant_postgres(repo_url: str, application: str, point: str, workdir: str | os.PathLike, *, port: int,
                     conn_id: str | None = None, key_conn_id: str | None = None, key_file: str | None = None,
                     data_directory: str | None = None, target_time: dt.datetime | None = None,
                     os_user: str = "postgres", timeout: float = 600, wal_workers: int = 8,
                     first_query: str = "SELECT 1", database: str | None = None,
                     **mount_options: Any) -> InstantDatabase:
    """Instant-mount the point's data volume, fetch its WAL, start PostgreSQL on it and run first_query (in
    `database`, default the OS user's; InstantDatabase.query uses the same database).

    timings (seconds from the call): manifest, mount (ready), wal (fetched), prepare, start (recovery ended
    and promoted), first_query (the first query answered: the time to a usable database)."""
    from copydata.engines.base import CloneSpec
    from copydata.engines.postgres import PostgresEngine
    from copydata.engines.postgres.engine import connect

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    repo = open_repository(repo_url, conn_id, key_conn_id, key_file)
    manifest = repo.read_manifest(application, point)
    meta = snapshot_meta(manifest.engine)
    timings["manifest"] = time.monotonic() - t0
    mount = InstantMount(repo_url, application, point, workdir, conn_id=conn_id, key_conn_id=key_conn_id,
                         key_file=key_file, **mount_options)
    logs = workdir / "logs"
    engine = PostgresEngine(data_directory=data_directory or manifest.engine.get("data_directory") or "pgdata",
                            os_user=os_user)
    spec = CloneSpec(name=f"instant-{application}"[:60], data_mount=mount.target, log_mount=logs, port=port,
                     target=target_time, snapshot_meta=meta, run_dir=workdir / "run")
    (workdir / MARKER).write_text(json.dumps({"engine": "postgresql", "data_directory": engine.data_directory,
                                              "os_user": os_user, "application": application, "point": point}))
    names = plan_wal(repo.logs(application), meta, application).names
    started = False
    try:
        with logfetch.LogFetcher(repo, application, names, logs, workers=wal_workers,
                                 readahead=len(names)) as fetcher:   # downloads while the volume mounts
            mount.start()
            timings["mount"] = time.monotonic() - t0
            fetcher.wait()
        timings["wal"] = time.monotonic() - t0
        engine.prepare_clone(spec)
        timings["prepare"] = time.monotonic() - t0
        started = True
        target = dataclasses.replace(engine.start(spec, timeout), database=database)
        timings["start"] = time.monotonic() - t0
        with connect(target) as conn:
            conn.execute(first_query).fetchall()
        timings["first_query"] = time.monotonic() - t0
        log.info("PostgreSQL %s/%s answered its first query %.2f s after the call (mount %.2f s, %d WAL files "
                 "by %.2f s, started %.2f s)", application, point, timings["first_query"], timings["mount"],
                 len(names), timings["wal"], timings["start"])
        return InstantDatabase(mount, engine, spec, target, names, timings)
    except BaseException:
        with contextlib.suppress(Exception):
            if started:
                engine.stop(spec.data_mount, spec.run_dir)
        mount.stop()
        raise


def is_instant_workdir(workdir: str | os.PathLike) -> bool:
    return (Path(workdir) / MARKER).exists()


def release_instant(workdir: str | os.PathLike) -> None:
    """Stop the server of an instant_postgres work folder left running (copydata repo instant), tear the
    mount down (umount, loop device, daemon) and delete the folder. Idempotent."""
    from copydata.engines.postgres import PostgresEngine
    from copydata.instant.mount import remove_workdir, teardown
    from copydata.instant.procs import PIDFILE, daemon_pid

    workdir = Path(workdir).resolve()
    if not workdir.exists():
        return
    marker = json.loads((workdir / MARKER).read_text()) if is_instant_workdir(workdir) else {}
    engine = PostgresEngine(data_directory=marker.get("data_directory") or "pgdata",
                            os_user=marker.get("os_user") or "postgres")
    if daemon_pid(workdir / "cache" / PIDFILE) is not None:   # else the mount cannot be read: teardown aborts it
        with contextlib.suppress(Exception):   # no server (it failed to start, or was stopped already)
            engine.stop(workdir / "mnt", workdir / "run")
    teardown(workdir)
    remove_workdir(workdir)
