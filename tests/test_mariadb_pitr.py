"""MariaDB 10.11 end to end on emulator volumes, through the same generated DAGs as PostgreSQL, under a
write load: snapshots under BACKUP STAGE BLOCK_COMMIT, binlog log backups, clones at three past seconds
(exact transactions, no partial one), a refresh, and an array refusal that leaves nothing blocked."""

from __future__ import annotations

import contextlib
import datetime as dt
import time

import mysql.connector
import pytest

from mylab import MyLoad, mariadb_lab
from pglab import lab_home, run_dag, whole_second_after

pytestmark = pytest.mark.root
PORTS = (53611, 53612, 53613)


@pytest.fixture(scope="module")
def mit(airflow_db):
    with lab_home() as home, mariadb_lab("mit", home) as lb:
        yield lb


@pytest.fixture(scope="module")
def history(mit):
    from copydata.catalog import Catalog

    load = MyLoad(mit).start()
    time.sleep(1.5)
    run_dag(f"copydata__{mit.sla_name}__snapshot")
    time.sleep(2.5)
    run_dag(f"copydata__{mit.sla_name}__log_backup")
    time.sleep(2.5)
    run_dag(f"copydata__{mit.sla_name}__snapshot")
    time.sleep(2.5)
    load.finish()
    time.sleep(1.2)
    run_dag(f"copydata__{mit.sla_name}__log_backup")
    cat = Catalog()
    snaps = cat.snapshots(mit.name)
    assert len(snaps) == 2
    return cat, snaps


def expected_ticks(mit, target: dt.datetime) -> set[int]:
    """The documented rule: every transaction whose commit began before the target second."""
    with contextlib.closing(mit.connect()) as c:
        cur = c.cursor()
        cur.execute("SELECT id FROM app.ticks WHERE ts < %s", (target.replace(tzinfo=None),))
        return {r[0] for r in cur.fetchall()}


def clone_state(mit, name: str) -> tuple[set[int], int, int]:
    from copydata.engines.mariadb import sql
    from copydata.ops.context import clone_home

    sock = clone_home(name) / "run" / sql.SOCKET_NAME
    with contextlib.closing(mysql.connector.connect(unix_socket=str(sock), user=mit.client.user,
                                                    password=mit.client.password, autocommit=True)) as c:
        cur = c.cursor()
        cur.execute("SELECT id FROM app.ticks")
        ticks = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT (SELECT sum(bal) FROM app.acct), (SELECT count(*) FROM app.hist)")
        bal, hist = cur.fetchone()
    return ticks, int(bal or 0), int(hist)


def check(mit, name: str, target: dt.datetime) -> None:
    ticks, bal, hist = clone_state(mit, name)
    want = expected_ticks(mit, target)
    assert want, "nothing committed before the target"
    assert ticks == want, (f"{name} at {target}: {len(ticks)} ticks, expected {len(want)}; "
                           f"extra {sorted(ticks - want)[:5]}, missing {sorted(want - ticks)[:5]}")
    assert bal == 5 * hist  # no partial transaction


def test_clones_hold_exactly_the_transactions_before_three_past_seconds(mit, history):
    cat, (first, snd) = history
    targets = [whole_second_after(first.consistent_at, 1), whole_second_after(snd.consistent_at, -2),
               whole_second_after(snd.consistent_at, 1)]
    for i, target in enumerate(targets):
        name = f"mit-c{i}"
        run_dag(f"copydata__{mit.name}__clone", {"clone_name": name, "point_in_time": target.isoformat(),
                                                 "port": PORTS[i], "mask": False})
        check(mit, name, target)
    assert cat.clone("mit-c0").snapshot_id == first.id and cat.clone("mit-c2").snapshot_id == snd.id


def test_refresh_moves_a_clone_to_a_newer_point(mit, history):
    cat, (_, snd) = history
    newer = whole_second_after(snd.consistent_at, 2)
    run_dag(f"copydata__{mit.name}__clone_refresh", {"clone_name": "mit-c0", "point_in_time": newer.isoformat(),
                                                     "mask": False})
    check(mit, "mit-c0", newer)
    assert cat.clone("mit-c0").port == PORTS[0]
    for i in range(3):
        run_dag(f"copydata__{mit.name}__clone_delete", {"clone_name": f"mit-c{i}"})


def test_array_refusal_leaves_the_source_unblocked(mit, history):
    from copydata.airflow.app_context import build_context
    from copydata.array import ArrayError
    from copydata.ops.snapshot import take_snapshot

    ctx, hook = build_context(mit.sla_file, mit.name, actor="pytest")
    try:
        ctx.app = ctx.app.model_copy(update={"protection_group": "no-such-pgroup"})
        with pytest.raises(ArrayError, match="does not exist"):
            take_snapshot(ctx, "refused")
        with contextlib.closing(mit.connect()) as c:
            cur = c.cursor()
            cur.execute("SET SESSION lock_wait_timeout = 3")
            started = time.monotonic()
            cur.execute("INSERT INTO app.ticks () VALUES ()")
            assert time.monotonic() - started < 2
    finally:
        hook.close()
