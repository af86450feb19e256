"""PostgreSQL 15 end to end on emulator volumes, through the generated DAGs, under a write load:
snapshots and log backups, clones at three past seconds, a refresh, a delete."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from pglab import (
    Load,
    clone_ticks,
    committed_ticks,
    lab,
    lab_home,
    pgbench_balanced,
    run_dag,
    whole_second_after,
)

pytestmark = pytest.mark.root
PORTS = (55611, 55612, 55613)


@pytest.fixture(scope="module")
def pit(airflow_db):
    with lab_home() as home, lab("pit", home) as lb:
        yield lb


@pytest.fixture(scope="module")
def history(pit):
    """Two snapshots and three log backups taken while pgbench and the ticker write."""
    from copydata.catalog import Catalog

    load = Load(pit, seconds=25).start()
    time.sleep(1.5)
    run_dag(f"copydata__{pit.sla_name}__snapshot")
    time.sleep(2.5)
    run_dag(f"copydata__{pit.sla_name}__log_backup")
    time.sleep(2.5)
    run_dag(f"copydata__{pit.sla_name}__snapshot")
    time.sleep(2.5)
    load.finish()
    run_dag(f"copydata__{pit.sla_name}__log_backup")
    cat = Catalog()
    snaps = cat.snapshots(pit.name)
    assert len(snaps) == 2 and len(cat.log_backups(pit.name)) >= 3
    return cat, snaps


def check_clone(pit, name: str, port: int, target: dt.datetime) -> None:
    from copydata.ops.context import clone_home

    socket_dir = clone_home(name) / "run"
    expected = committed_ticks(pit, target)
    got = clone_ticks(socket_dir, port)
    assert expected, "the ticker committed nothing before the target"
    assert got == expected, (f"clone {name} at {target}: {len(got)} ticks, expected {len(expected)}; "
                             f"extra {sorted(got - expected)[:5]}, missing {sorted(expected - got)[:5]}")
    accounts, branches, tellers, history = pgbench_balanced(socket_dir, port)
    assert accounts == branches == tellers == history


def test_clones_hold_exactly_the_commits_up_to_three_past_seconds(pit, history):
    cat, (first, second) = history
    targets = [whole_second_after(first.consistent_at, 1),       # replays from the first snapshot
               whole_second_after(second.consistent_at, -2),     # still before the second snapshot
               whole_second_after(second.consistent_at, 1)]      # replays from the second snapshot
    assert targets[1] > targets[0]
    for i, target in enumerate(targets):
        name = f"pit-c{i}"
        run_dag(f"copydata__{pit.name}__clone", {"clone_name": name, "point_in_time": target.isoformat(),
                                                 "port": PORTS[i], "mask": False})
        check_clone(pit, name, PORTS[i], target)
        clone = cat.clone(name)
        assert clone.state == "running" and clone.point_in_time == target
    assert cat.clone("pit-c0").snapshot_id == first.id
    assert cat.clone("pit-c2").snapshot_id == second.id


def test_refresh_moves_a_clone_to_a_newer_point_and_delete_removes_it(pit, history):
    cat, (_, second) = history
    newer = whole_second_after(second.consistent_at, 2)
    run_dag(f"copydata__{pit.name}__clone_refresh", {"clone_name": "pit-c0", "point_in_time": newer.isoformat(),
                                                     "mask": False})
    check_clone(pit, "pit-c0", PORTS[0], newer)
    refreshed = cat.clone("pit-c0")
    assert refreshed.port == PORTS[0] and refreshed.point_in_time == newer and refreshed.refreshed_at
    for i in range(3):
        run_dag(f"copydata__{pit.name}__clone_delete", {"clone_name": f"pit-c{i}"})
        assert cat.find_clone(f"pit-c{i}") is None


def test_points_cover_the_history(pit, history):
    cat, (first, _) = history
    points = cat.points(pit.name)
    assert points["earliest"] and points["latest"]
    assert dt.datetime.fromisoformat(points["earliest"]) >= first.consistent_at
    assert not points["gaps"]


def test_lineage_events_carry_the_recovery_points(pit, history):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    cat, snaps = history
    with create_session() as s:
        def events(name: str) -> list:
            return (s.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                    .filter(AssetModel.name == name).order_by(AssetEvent.id).all())

        snap_events = events(f"copydata__{pit.name}__snapshots")
        assert [e.extra["snapshot"] for e in snap_events] == [x.pgroup_snapshot for x in snaps]
        assert snap_events[0].extra["consistent_at"] == snaps[0].consistent_at.isoformat()
        assert len(events(f"copydata__{pit.name}__logs")) >= 3
        clone_events = events(f"copydata__{pit.name}__clone__pit-c1")
        assert clone_events and clone_events[0].extra["port"] == PORTS[1]
