"""What goes wrong, and what copydata does then: unreachable database, an array that refuses or stalls,
a point in time outside the recoverable range, restore in place without and with confirmation."""

from __future__ import annotations

import datetime as dt
import time

import psycopg
import pytest

from pglab import lab, lab_home

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def pfx(airflow_db):
    with lab_home() as home, lab("pfx", home, pgbench_scale=1) as lb:
        with lb.connect() as c:
            c.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp())")
        yield lb


@pytest.fixture
def ctx(pfx):
    from copydata.airflow.app_context import build_context

    context, hook = build_context(pfx.sla_file, pfx.name, actor="pytest")
    yield context
    hook.close()


def server_log(pfx) -> str:
    return (pfx.socket_dir / "postgresql.log").read_text(errors="replace")


def snapshot_names(ctx) -> list[str]:
    return [s.name for s in ctx.array.pgroup_snapshots(ctx.app.protection_group)]


def test_unreachable_database_fails_before_touching_the_array(ctx):
    from copydata.engines.base import DbTarget
    from copydata.ops.snapshot import take_snapshot

    before = snapshot_names(ctx)
    ctx.engine.db = DbTarget(host="127.0.0.1", port=1, user="postgres")
    with pytest.raises(psycopg.OperationalError):
        take_snapshot(ctx, "unreachable")
    assert snapshot_names(ctx) == before
    assert ctx.catalog.snapshots(ctx.name) == [] or all(
        s.pgroup_snapshot != f"{ctx.app.protection_group}.unreachable" for s in ctx.catalog.snapshots(ctx.name))


def test_array_refusal_ends_backup_mode_and_says_why(ctx, pfx):
    from copydata.array import ArrayError
    from copydata.ops.snapshot import take_snapshot

    ctx.app = ctx.app.model_copy(update={"protection_group": "no-such-pgroup"})
    with pytest.raises(ArrayError, match="does not exist") as err:
        take_snapshot(ctx, "refused")
    assert "no-such-pgroup" in str(err.value)
    time.sleep(0.5)
    assert "aborting backup" not in server_log(pfx)  # pg_backup_stop ran in our session: not left to a disconnect
    with pfx.connect() as c:  # and the database takes writes
        c.execute("INSERT INTO orders (note) VALUES ('after refusal')")


def test_stalled_array_call_is_bounded_and_thawed(ctx, pfx):
    from copydata.ops.context import FreezeTimeout
    from copydata.ops.snapshot import take_snapshot

    real = ctx.array.snapshot_pgroup

    def stalls(pgroup, suffix=None):  # fault injection in front of the real array
        time.sleep(3)
        return real(pgroup, suffix)

    ctx.array.snapshot_pgroup = stalls
    ctx.sla = ctx.sla.model_copy(update={"snapshot": ctx.sla.snapshot.model_copy(
        update={"freeze_timeout": dt.timedelta(seconds=1)})})
    started = time.monotonic()
    with pytest.raises(FreezeTimeout, match="freeze bound of 1 s"):
        take_snapshot(ctx, "stalled")
    assert time.monotonic() - started < 6  # 1 s bound, then the late snapshot is waited for and removed
    assert "aborting backup" not in server_log(pfx)
    assert f"{ctx.app.protection_group}.stalled" not in snapshot_names(ctx)
    assert all(s.pgroup_snapshot != f"{ctx.app.protection_group}.stalled" for s in ctx.catalog.snapshots(ctx.name))


def test_point_outside_the_recoverable_range_is_rejected_with_the_range(ctx):
    from copydata.catalog.errors import OutOfRange
    from copydata.ops import clones
    from copydata.ops.logs import log_backup
    from copydata.ops.snapshot import take_snapshot

    take_snapshot(ctx, "base")
    time.sleep(1.5)  # so that the range holds a whole second
    log_backup(ctx, "base")
    too_early = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(OutOfRange) as err:
        clones.create_clone(ctx, "too-early", too_early.isoformat(), 55720, mask=False)
    text = str(err.value)
    points = ctx.catalog.points(ctx.name)
    assert points["earliest"] and points["earliest"][:19] in text and points["latest"][:19] in text, text
    with pytest.raises(clones.CloneError, match="ISO 8601"):
        clones.create_clone(ctx, "bad-time", "yesterday", 55721, mask=False)
    with pytest.raises(clones.CloneError, match="time zone"):
        clones.create_clone(ctx, "naive-time", "2026-11-27T10:00:00", 55722, mask=False)
    assert ctx.catalog.find_clone("too-early") is None


def test_restore_in_place_needs_confirmation_then_rewinds_the_source(ctx, pfx):
    from copydata.ops import clones
    from copydata.ops.logs import log_backup
    from copydata.ops.restore import restore_in_place
    from copydata.ops.snapshot import take_snapshot

    take_snapshot(ctx, "before-disaster")
    with pfx.connect() as c:
        c.execute("INSERT INTO orders (note) VALUES ('keep me')")
        kept = c.execute("SELECT count(*) FROM orders").fetchone()[0]
    time.sleep(1.2)
    target = dt.datetime.fromtimestamp(int(time.time()), dt.UTC)
    time.sleep(1.2)
    with pfx.connect() as c:
        c.execute("DROP TABLE orders")
    log_backup(ctx, "after-disaster")
    with pytest.raises(clones.CloneError, match="confirm"):
        restore_in_place(ctx, target.isoformat(), confirm="yes")
    with pfx.connect() as c:  # refused without touching anything
        assert c.execute("SELECT to_regclass('orders')").fetchone()[0] is None
    restore_in_place(ctx, target.isoformat(), confirm=pfx.name)
    with pfx.connect() as c:
        assert c.execute("SELECT count(*) FROM orders").fetchone()[0] == kept
        assert not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        c.execute("INSERT INTO orders (note) VALUES ('life goes on')")
    after = log_backup(ctx, "after-restore")  # archiving continues on the new timeline
    assert after.end_segment.startswith("00000002")


def test_a_retry_after_a_half_done_snapshot_replaces_it(ctx):
    from copydata.ops.snapshot import take_snapshot

    name = f"{ctx.app.protection_group}.half"
    real = ctx.array.array_name

    def lost(*_):  # fails after the array snapshot, before the catalog row
        raise ConnectionError("array went away after the snapshot")

    ctx.array.array_name = lost
    with pytest.raises(ConnectionError):
        take_snapshot(ctx, "half")
    first = ctx.array.find_pgroup_snapshot(name)
    assert first is not None and all(s.pgroup_snapshot != name for s in ctx.catalog.snapshots(ctx.name))
    ctx.array.array_name = real
    time.sleep(0.1)
    row = take_snapshot(ctx, "half")
    second = ctx.array.find_pgroup_snapshot(name)
    assert row.pgroup_snapshot == name and second.created > first.created
    assert take_snapshot(ctx, "half").id == row.id  # and a third try returns the recorded one


def test_clones_past_their_ttl_are_deleted_by_retention(ctx):
    from copydata.ops import clones
    from copydata.ops.logs import log_backup
    from copydata.ops.retention import expire_clones
    from copydata.ops.snapshot import take_snapshot

    take_snapshot(ctx, "ttl")
    log_backup(ctx, "ttl")
    clones.create_clone(ctx, "short-lived", "latest", 55731, mask=False)
    assert expire_clones(ctx) == []
    ctx.catalog.update_clone("short-lived", expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert expire_clones(ctx) == ["short-lived"]
    assert ctx.catalog.find_clone("short-lived") is None
    assert ctx.array.find_volume("short-lived-data") is None
