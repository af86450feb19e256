"""The MariaDB story: the same SLA contract and DAGs as PostgreSQL, with BACKUP STAGE snapshots and
binlog log backups, and a clone at a past second that holds exactly the transactions before it."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time

import mysql.connector

from copydata import paths
from copydata.demo.common import backup_cycle, env_connections, quiet, run_dag
from copydata.lab import mariadb as labmy
from copydata.lab import myserver
from copydata.lab.load import MariaLoad
from copydata.progress import Steps

NAME, CLONE, CLONE_PORT = "mdemo", "mdemo-dev", 53690


def _count(conn, sql: str, *args) -> int:
    cur = conn.cursor()
    cur.execute(sql, args)
    return int(cur.fetchone()[0] or 0)


def run(keep: bool = False) -> None:
    from copydata.catalog import Catalog
    from copydata.emulator import service

    started_here = service.read_endpoint(paths.emulator_state()) is None
    steps = Steps("MariaDB walkthrough: SLA -> BACKUP STAGE snapshots + binlogs -> clone at a past second")
    sla = f"lab-{NAME}"
    try:
        with steps.step(f"lab database '{NAME}' (MariaDB 10.11) on emulator volumes") as n:
            labmy.create(labmy.CreateOptions(name=NAME, data_size=8 << 30, archive_size=4 << 30), out=quiet())
            client = myserver.client_args(NAME)
            env_connections(f"copydata_mariadb_{NAME}", {"conn_type": "mysql", "host": "127.0.0.1",
                                                         "port": client.port, "login": client.user,
                                                         "password": client.password, "schema": "mysql"})
            n["text"] = f"127.0.0.1:{client.port}, SLA include/slas/{sla}.yaml"
        load = MariaLoad(client)
        with steps.step("start a write load (a 100/s ticker + OLTP transactions)"):
            load.start()
            time.sleep(2)
        for i in range(2):
            backup_cycle(steps, sla, i + 1, snapshot_how="BACKUP STAGE BLOCK_COMMIT",
                         log_how="FLUSH BINARY LOGS, archive")
        with steps.step("stop the load, then a last log backup"):
            load.finish()
            time.sleep(1.2)
            run_dag(f"copydata__{sla}__log_backup")
        cat = Catalog()
        first = cat.snapshots(NAME)[0].consistent_at
        target = dt.datetime.fromtimestamp(math.floor(first.timestamp()) + 3, dt.UTC)
        with steps.step(f"clone at {target.isoformat()} through DAG copydata__{NAME}__clone") as n:
            started = time.perf_counter()
            run_dag(f"copydata__{NAME}__clone", {"clone_name": CLONE, "point_in_time": target.isoformat(),
                                                "port": CLONE_PORT, "mask": False})
            n["text"] = f"ready {time.perf_counter() - started:.1f} s after the trigger"
        _summary(cat, client, target)
    finally:
        if not keep:
            with steps.step("clean up: delete the clone, destroy the lab"):
                with contextlib.suppress(SystemExit):
                    run_dag(f"copydata__{NAME}__clone_delete", {"clone_name": CLONE})
                labmy.destroy(NAME, out=quiet())
            if started_here:
                service.stop(paths.emulator_state())
    steps.summary()


def _summary(cat, client, target: dt.datetime) -> None:
    from copydata.engines.mariadb import sql

    sock = paths.home() / "clones" / CLONE / "run" / sql.SOCKET_NAME
    with contextlib.closing(mysql.connector.connect(**client.unix())) as src, \
            contextlib.closing(mysql.connector.connect(unix_socket=str(sock), user=client.user,
                                                       password=client.password)) as cl:
        then = _count(src, "SELECT count(*) FROM app.ticks WHERE ts < %s", target.replace(tzinfo=None))
        now = _count(src, "SELECT count(*) FROM app.ticks")
        got = _count(cl, "SELECT count(*) FROM app.ticks")
        bal, hist = _count(cl, "SELECT sum(bal) FROM app.acct"), _count(cl, "SELECT count(*) FROM app.hist")
    points = cat.points(NAME)
    windows = [s.engine_meta.get("freeze_window_s") or 0 for s in cat.snapshots(NAME)]
    print(f"\n== recovery points of '{NAME}': {points['earliest']} .. {points['latest']}, "
          f"{points['snapshots']} snapshots, {points['log_backups']} log backups")
    print("  BLOCK_COMMIT windows: " + ", ".join(f"{w * 1000:.0f} ms" for w in windows))
    print(f"== clone '{CLONE}' at {target.isoformat()}: {got} ticks; the source had {then} before that second "
          f"({'identical' if got == then else 'MISMATCH'}), {now} now; "
          f"sum(bal) = 5 x count(hist): {'yes' if bal == 5 * hist else 'NO'}", flush=True)
    if got != then or bal != 5 * hist:
        raise SystemExit("the clone does not match the source at the target second")
