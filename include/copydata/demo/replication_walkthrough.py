"""The replication story: a lab PostgreSQL under load whose SLA also replicates its snapshots and WAL to a
repository (a folder here; S3, Azure Blob or GCS the same way), then a recovery at a past second and an
instant mount of the newest point, both from the repository alone."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import shutil
import time
from pathlib import Path

import psycopg
import yaml

from copydata import paths
from copydata.demo.common import backup_cycle, pg_lab, quiet, returned, run_dag
from copydata.lab import postgres as labpg
from copydata.lab import sla as labsla
from copydata.lab.load import PgLoad, pgbench_sums, ticks_committed_by
from copydata.progress import Steps

NAME, TARGET, RECOVERY_PORT, INSTANT_PORT = "rdemo", "demo", 55691, 55692
SLA = f"lab-{NAME}"


def run(scale: int = 5, load_seconds: int = 30, keep: bool = False) -> None:
    from copydata.emulator import service

    home = paths.home()
    repo_dir, recovery_dir, instant_dir = home / "demo-repo", home / "demo-recovery", home / "demo-instant"
    started_here = service.read_endpoint(paths.emulator_state()) is None
    steps = Steps("Replication walkthrough: SLA -> snapshots + WAL -> repository -> recovery and instant mount")
    instant = None
    try:
        lab, port = pg_lab(steps, NAME, scale, data_size=2 << 30, archive_size=2 << 30)
        _add_target(steps, repo_dir)
        load = PgLoad(lab.run_dir, port, load_seconds)
        _cycles(steps, load)
        target = _target_second()
        recovered = _recover(steps, target, recovery_dir)
        with psycopg.connect(host=str(lab.run_dir), port=port, user="postgres", dbname="postgres") as c:
            then = ticks_committed_by(c, target)
            now = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
        _prove(recovered, target, then, now)
        instant = _instant(steps, repo_dir, instant_dir, now)
    finally:
        if not keep:
            with steps.step("clean up: the recovery, the instant mount, the lab, the repository"):
                _cleanup(instant, recovery_dir, repo_dir, instant_dir)
            if started_here:
                service.stop(paths.emulator_state())
    steps.summary()


def _add_target(steps: Steps, repo_dir: Path) -> None:
    """Add `replication.targets` to the lab's SLA file, then load it again: a bad target fails here."""
    from copydata.sla.loader import load_sla

    sla_file, url = labsla.sla_path(None, NAME), f"file://{repo_dir}"
    with steps.step(f"SLA {SLA}: add replication target '{TARGET}' ({url})"):
        _write_target(sla_file, url)
        targets = load_sla(sla_file).replication.targets
        if [t.url for t in targets] != [url]:
            raise SystemExit(f"{sla_file}: the replication target did not load: {targets}")


def _write_target(sla_file: Path, url: str) -> None:
    doc = yaml.safe_load(sla_file.read_text())
    doc["replication"] = {"targets": [{"name": TARGET, "url": url, "keep_last": 3}]}
    labsla.write(sla_file, doc, "postgres")


def _cycles(steps: Steps, load: PgLoad) -> None:
    """Under load: two cycles of snapshot, log backup and replicate; then a last log backup, replicated."""
    with steps.step(f"start a write load for {load.seconds} s (pgbench + a 100/s ticker)"):
        load.start()
        time.sleep(2)
    for i in range(2):
        backup_cycle(steps, SLA, i + 1)
        _replicate(steps, f"cycle {i + 1}")
    with steps.step("let the load finish, then a last log backup") as n:
        load.finish()
        run_dag(f"copydata__{SLA}__log_backup")
        n["text"] = f"{load.ticks} ticks committed"
    _replicate(steps, "last")


def _replicate(steps: Steps, label: str) -> None:
    with steps.step(f"{label}: DAG copydata__{SLA}__replicate") as n:
        out = returned(run_dag(f"copydata__{SLA}__replicate"), f"replicate__{NAME}__{TARGET}") or {}
        n["text"] = (f"{out.get('bytes_uploaded', 0) / (1 << 20):.1f} MiB uploaded, points written "
                     f"{out.get('written') or 'none'}, {out.get('logs_uploaded', 0)} WAL files")


def _target_second() -> dt.datetime:
    """A whole second a few seconds after the first snapshot: inside the first cycle's WAL."""
    from copydata.catalog import Catalog

    first = Catalog().snapshots(NAME)[0].consistent_at
    return dt.datetime.fromtimestamp(math.floor(first.timestamp()) + 4, dt.UTC)


def _recover(steps: Steps, target: dt.datetime, workdir: Path) -> dict:
    """The database at `target`, from the repository alone: DAG copydata__<app>__repo_restore."""
    iso = target.strftime("%Y-%m-%dT%H:%M:%SZ")
    with steps.step(f"recover {iso} from the repository: DAG copydata__{NAME}__repo_restore") as n:
        run = run_dag(f"copydata__{NAME}__repo_restore", {"target": TARGET, "point": "", "point_in_time": iso,
                                                          "destination": str(workdir), "port": RECOVERY_PORT})
        out = returned(run, "repo_restore")
        with psycopg.connect(host=out["socket_dir"], port=RECOVERY_PORT, user="postgres", dbname="postgres") as c:
            out["ticks"] = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
        with psycopg.connect(host=out["socket_dir"], port=RECOVERY_PORT, user="postgres", dbname="pgbench") as c:
            out["sums"] = pgbench_sums(c)
        n["text"] = f"point {out['point']}, {out['wal_files']} WAL files, port {RECOVERY_PORT}"
    return out


def _prove(out: dict, target: dt.datetime, then: int, now: int) -> None:
    t = out["timings"]
    print(f"\n== recovery of '{NAME}' at {target.isoformat()} from the repository (point {out['point']}, "
          f"consistent at {out['consistent_at']})")
    print(f"  ticks in the recovered server             {out['ticks']:>8}")
    print(f"  ticks the source had committed by then    {then:>8}   "
          f"{'(identical)' if then == out['ticks'] else 'MISMATCH'}")
    print(f"  ticks in the source now                   {now:>8}")
    print(f"  pgbench balances {out['sums']}: {'consistent' if len(set(out['sums'])) == 1 else 'INCONSISTENT'}")
    print(f"  timings: data image restored {t.get('restore_data_s', 0):.2f} s, WAL fetched "
          f"{t.get('fetch_s', 0):.2f} s ({out['wal_bytes'] / (1 << 20):.0f} MiB), replay {t.get('replay_s', 0):.2f} s, "
          f"total {t.get('total_s', 0):.2f} s", flush=True)
    if out["ticks"] != then or len(set(out["sums"])) != 1:
        raise SystemExit("the recovery does not match the source at the target second")


def _instant(steps: Steps, repo_dir: Path, workdir: Path, source_ticks: int):
    """The newest point, running straight from the repository (instant mount + WAL)."""
    from copydata.instant.daemon import open_repository
    from copydata.instant.postgres import instant_postgres
    from copydata.replication.restore import list_points

    url = f"file://{repo_dir}"
    points = list_points(open_repository(url), NAME)
    with steps.step(f"instant mount of the newest point {points[-1].point}") as n:
        db = instant_postgres(url, NAME, points[-1].point, workdir, port=INSTANT_PORT, database="postgres")
        try:
            ticks = db.query("SELECT count(*) FROM ticks")[0][0]
        except BaseException:
            db.stop()
            raise
        n["text"] = (f"first query after {db.timings['first_query']:.2f} s; {ticks} ticks "
                     f"(the source has {source_ticks}); {len(points)} points in the repository")
    return db


def _cleanup(instant, recovery_dir: Path, repo_dir: Path, instant_dir: Path) -> None:
    """Everything the walkthrough made, each part even when another fails."""
    from copydata.replication.recovery import discard_recovery

    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, repo_dir, ignore_errors=True)
        stack.callback(labpg.destroy, NAME, out=quiet())
        stack.callback(shutil.rmtree, instant_dir, ignore_errors=True)
        if instant is not None:
            stack.callback(instant.stop)
        stack.callback(discard_recovery, recovery_dir)
