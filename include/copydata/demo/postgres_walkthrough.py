"""The PostgreSQL story: a lab database under load, the SLA DAGs run through Airflow for a few cycles,
a clone at a chosen past second, and the proof that it holds exactly what the source held then."""

from __future__ import annotations

import datetime as dt
import math
import time

import psycopg

from copydata import paths
from copydata.demo.common import backup_cycle, pg_lab, quiet, run_dag
from copydata.lab import postgres as labpg
from copydata.lab.load import PgLoad, pgbench_sums, ticks_committed_by
from copydata.progress import Steps

NAME, CLONE, CLONE_PORT = "demo", "demo-dev", 55690


def run(scale: int = 10, load_seconds: int = 30, keep: bool = False) -> None:
    from copydata.catalog import Catalog
    from copydata.emulator import service

    started_here = service.read_endpoint(paths.emulator_state()) is None
    steps = Steps("PostgreSQL walkthrough: SLA -> snapshots + WAL -> clone at a past second")
    sla = f"lab-{NAME}"
    try:
        lab, port = pg_lab(steps, NAME, scale, data_size=8 << 30, archive_size=4 << 30)
        load = PgLoad(lab.run_dir, port, load_seconds)
        with steps.step(f"start a write load for {load_seconds} s (pgbench + a 100/s ticker)"):
            load.start()
            time.sleep(2)
        for i in range(2):
            backup_cycle(steps, sla, i + 1, snapshot_how="backup mode, pgroup snapshot, WAL", log_backups=2)
        with steps.step("let the load finish, then a last log backup") as n:
            load.finish()
            run_dag(f"copydata__{sla}__log_backup")
            n["text"] = f"{load.ticks} ticks committed"
        cat = Catalog()
        points = cat.points(NAME)
        first = cat.snapshots(NAME)[0].consistent_at
        target = dt.datetime.fromtimestamp(math.floor(first.timestamp()) + 4, dt.UTC)
        with steps.step(f"clone at {target.isoformat()} through DAG copydata__{NAME}__clone") as n:
            started = time.perf_counter()
            run_dag(f"copydata__{NAME}__clone", {"clone_name": CLONE, "point_in_time": target.isoformat(),
                                             "port": CLONE_PORT, "mask": False})
            clone_sock = paths.home() / "clones" / CLONE / "run"
            with psycopg.connect(host=str(clone_sock), port=CLONE_PORT, user="postgres", dbname="postgres") as c:
                clone_ticks = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
            n["text"] = f"first query answered {time.perf_counter() - started:.1f} s after the trigger"
        with psycopg.connect(host=str(lab.run_dir), port=port, user="postgres", dbname="postgres") as c:
            source_ticks_then = ticks_committed_by(c, target)
            source_ticks_now = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
        with psycopg.connect(host=str(clone_sock), port=CLONE_PORT, user="postgres", dbname="pgbench") as c:
            sums = pgbench_sums(c)
        windows = [s.engine_meta.get("freeze_window_s") or 0 for s in cat.snapshots(NAME)]
        _summary(points, target, clone_ticks, source_ticks_then, source_ticks_now, sums, windows)
        if clone_ticks != source_ticks_then or len(set(sums)) != 1:
            raise SystemExit("the clone does not match the source at the target second")
    finally:
        if not keep:
            with steps.step("clean up: delete the clone, destroy the lab"):
                _cleanup()
            if started_here:
                service.stop(paths.emulator_state())
    steps.summary()


def _summary(points: dict, target, clone_ticks: int, then: int, now: int, sums, windows: list[float]) -> None:
    print("\n== recovery points of 'demo' (copydata points demo)")
    print(f"  earliest {points['earliest']}   latest {points['latest']}   gaps {len(points['gaps'])}   "
          f"snapshots {points['snapshots']}   log backups {points['log_backups']}")
    print("  freeze windows (pg_backup_start .. pg_backup_stop): "
          + ", ".join(f"{w * 1000:.0f} ms" for w in windows))
    print(f"\n== clone '{CLONE}' at {target.isoformat()}")
    print(f"  ticks in the clone                        {clone_ticks:>8}")
    print(f"  ticks the source had committed by then    {then:>8}   {'(identical)' if then == clone_ticks else 'MISMATCH'}")
    print(f"  ticks in the source now                   {now:>8}")
    print(f"  pgbench balances (accounts, branches, tellers, history) {sums}: "
          f"{'consistent' if len(set(sums)) == 1 else 'INCONSISTENT'}", flush=True)


def _cleanup() -> None:
    try:
        run_dag(f"copydata__{NAME}__clone_delete", {"clone_name": CLONE})
    finally:
        labpg.destroy(NAME, out=quiet())
