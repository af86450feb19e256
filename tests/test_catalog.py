"""The catalog: migrations, recovery points, ranges, clones and audit, on SQLite and (as root) PostgreSQL 15."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from copydata import cli
from copydata.catalog import Catalog, Conflict, NotFound, OutOfRange, Range
from copydata.catalog import db as catalog_db
from copydata.catalog.models import Base
from copydata.catalog.ranges import merge
from copydata.catalog.ranges import points as points_of

PG_BIN = Path("/usr/lib/postgresql/15/bin")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TABLES = {"applications", "snapshots", "log_backups", "clones", "audit", "alembic_version"}


def at(hours: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, seconds=seconds)


# -- backends ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)], check=check,
                          capture_output=True, text=True, timeout=120)


def _stop_postgres(data: Path) -> None:
    _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)
    pidfile = data / "postmaster.pid"
    if pidfile.exists():  # pg_ctl could not stop it: kill the postmaster we started
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[dict]:
    """A throwaway PostgreSQL 15 cluster (Unix socket in its own temp dir, session time zone not UTC)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"{PG_BIN / 'initdb'} is missing")
    base = Path(tempfile.mkdtemp(prefix="copydata-catalog-pg-"))
    shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    try:
        _as_postgres(PG_BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale")
        options = f"-p {port} -k {base} -c listen_addresses='' -c timezone=America/New_York -c fsync=off"
        _as_postgres(PG_BIN / "pg_ctl", "-D", data, "-l", base / "server.log", "-o", options, "-w", "start")
        yield {"host": str(base), "port": port}
    finally:
        _stop_postgres(data)
        shutil.rmtree(base, ignore_errors=True)


def _pg_database(server: dict) -> str:
    import psycopg
    name = f"catalog_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=server["host"], port=server["port"], user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@/{name}?host={server['host']}&port={server['port']}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.root)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog database: a SQLite file, or a fresh database in the throwaway cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return _pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def cat(url: str) -> Iterator[Catalog]:
    with Catalog(url) as catalog:
        catalog.ensure_application("pgdemo", "gold", "postgresql", {"name": "pgdemo", "volumes": {"data": "d"}})
        yield catalog


def _snap(cat: Catalog, name: str, consistent_at: datetime, app: str = "pgdemo"):
    return cat.add_snapshot(app, f"{app}.{name}", {"data": f"{app}-data.{name}"}, "fa-1",
                            consistent_at - timedelta(seconds=2), consistent_at, {"backup_label": name})


def _logs(cat: Catalog, name: str, start: datetime, end: datetime, continuous: bool = True):
    return cat.add_log_backup("pgdemo", f"pgdemo-logs.{name}", {"archive": f"pgdemo-wal.{name}"}, start, end,
                              "0/1000000", "0/2000000", "000000010000000000000001", "000000010000000000000002",
                              continuous, {"timeline": 1})


@pytest.fixture
def history(cat: Catalog) -> dict:
    """Two snapshots and two log backups in chain 0, a break, then a snapshot and a log backup in chain 1.
    Recoverable: [00:00:00.5, 02:00] and [03:10, 04:00]."""
    h = {"s1": _snap(cat, "s1", at(seconds=0.5)), "l1": _logs(cat, "l1", at(0), at(1)),
         "s1b": _snap(cat, "s1b", at(0.5)), "l2": _logs(cat, "l2", at(1), at(2)),
         "l3": _logs(cat, "l3", at(2.5), at(3), continuous=False)}
    h["s2"] = _snap(cat, "s2", at(3 + 1 / 6))
    h["l4"] = _logs(cat, "l4", at(3), at(4))
    return h


# -- migrations and connection setup ----------------------------------------------------------------


def test_migrations_from_empty_are_idempotent_and_match_the_models(url: str) -> None:
    with Catalog(url, upgrade=False) as fresh:
        assert fresh.revision() is None
        fresh.upgrade()
        fresh.upgrade()
        assert fresh.revision() == catalog_db.head_revision() == "0001"
    with Catalog(url) as again:
        assert again.revision() == "0001"
        assert set(inspect(again.engine).get_table_names()) >= TABLES
        with again.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_concurrent_opens_of_an_empty_catalog_all_succeed(url: str) -> None:
    def open_and_write(i: int) -> str | None:
        with Catalog(url) as catalog:
            catalog.audit("opener", "open", None, str(i))
            return catalog.revision()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_and_write, range(4))) == ["0001"] * 4
    with Catalog(url) as catalog:
        assert len(catalog.audit_log()) == 4


def test_default_catalog_lives_in_copydata_home_in_wal_mode(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "nested"
    monkeypatch.setenv("COPYDATA_HOME", str(home))
    monkeypatch.delenv(catalog_db.URL_ENV, raising=False)
    with Catalog() as catalog:
        catalog.ensure_application("a", "gold", "postgresql", {})
    assert (home / "catalog.db").exists()
    with sqlite3.connect(home / "catalog.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setenv(catalog_db.URL_ENV, f"sqlite:///{tmp_path / 'other.db'}")
    with Catalog() as catalog:
        assert catalog.applications() == []
    assert (tmp_path / "other.db").exists()


WORKER = """
import sys
from datetime import UTC, datetime, timedelta
from copydata.catalog import Catalog
url, worker = sys.argv[1], int(sys.argv[2])
with Catalog(url) as c:
    c.ensure_application("app", "gold", "postgresql", {})
    for i in range(10):
        t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=10 * worker + i)
        c.add_snapshot("app", f"app.w{worker}-{i}", {}, "fa", t, t, {})
        c.audit("worker", "snapshot", "app", str(i))
"""


def test_parallel_processes_open_and_write_without_locking_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(w)], stderr=subprocess.PIPE, text=True)
             for w in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    with Catalog(url) as catalog:
        assert len(catalog.snapshots("app")) == 40
        assert len(catalog.audit_log("app", limit=1000)) == 40


# -- applications and snapshots ---------------------------------------------------------------------


def test_applications_upsert_and_not_found(cat: Catalog) -> None:
    first = cat.application("pgdemo")
    again = cat.ensure_application("pgdemo", "silver", "postgresql", {"name": "pgdemo"})
    assert (again.id, again.sla, again.config) == (first.id, "silver", {"name": "pgdemo"})
    assert [a.name for a in cat.applications()] == ["pgdemo"]
    with pytest.raises(NotFound, match="nope"):
        cat.application("nope")
    with pytest.raises(NotFound):
        cat.snapshots("nope")


def test_add_snapshot_is_idempotent(cat: Catalog) -> None:
    first = _snap(cat, "a", at(1))
    retried = cat.add_snapshot("pgdemo", "pgdemo.a", {}, "other", at(5), at(5), {})
    assert retried == first
    assert first.engine_meta == {"backup_label": "a"} and first.volumes == {"data": "pgdemo-data.a"}
    assert (first.kind, first.state, first.chain, first.retention_tags) == ("full", "valid", 0, [])
    assert [s.id for s in cat.snapshots("pgdemo")] == [first.id]
    assert cat.snapshot(first.id) == first
    with pytest.raises(NotFound):
        cat.snapshot(first.id + 100)


def test_snapshot_states_and_tags(cat: Catalog) -> None:
    snap = _snap(cat, "a", at(1))
    assert cat.set_retention_tags(snap.id, ["weekly", "daily", "daily"]).retention_tags == ["daily", "weekly"]
    assert cat.set_snapshot_state(snap.id, "expired").state == "expired"
    assert cat.snapshots("pgdemo") == []
    deleted = cat.set_snapshot_state(snap.id, "deleted")
    assert deleted.deleted_at is not None and deleted.deleted_at.tzinfo == UTC
    assert [s.state for s in cat.snapshots("pgdemo", states=None)] == ["deleted"]
    with pytest.raises(ValueError, match="unknown state"):
        cat.set_snapshot_state(snap.id, "gone")


def test_snapshot_for_picks_the_newest_at_or_before(cat: Catalog, history: dict) -> None:
    assert cat.snapshot_for("pgdemo", at(0.25)) == history["s1"]
    assert cat.snapshot_for("pgdemo", at(0.5)) == history["s1b"]
    assert cat.snapshot_for("pgdemo", at(1.5)) == history["s1b"]
    assert cat.snapshot_for("pgdemo", at(2)) == history["s1b"]
    assert cat.snapshot_for("pgdemo", at(3.5)) == history["s2"]
    assert cat.snapshot_for("pgdemo") == history["s2"]


@pytest.mark.parametrize("target", [at(seconds=0.25), at(2, seconds=1), at(3.1), at(4, seconds=1)])
def test_snapshot_for_out_of_range_lists_the_ranges(cat: Catalog, history: dict, target: datetime) -> None:
    with pytest.raises(OutOfRange) as err:
        cat.snapshot_for("pgdemo", target)
    assert isinstance(err.value, ValueError)
    assert err.value.target == target
    assert err.value.ranges == [Range(at(seconds=0.5), at(2)), Range(at(3 + 1 / 6), at(4))]
    assert "2026-01-01T02:00:00Z" in str(err.value)


def test_snapshot_without_logs_recovers_only_to_itself(cat: Catalog) -> None:
    snap = _snap(cat, "a", at(1))
    assert cat.recoverable_ranges("pgdemo") == [Range(at(1), at(1))]
    assert cat.snapshot_for("pgdemo", at(1)) == snap
    assert cat.log_backup_for("pgdemo", snap, at(1)) is None
    with pytest.raises(OutOfRange):
        cat.snapshot_for("pgdemo", at(1, seconds=1))
    empty = cat.ensure_application("empty", "gold", "postgresql", {})
    with pytest.raises(OutOfRange, match="none"):
        cat.snapshot_for(empty.name)


# -- log backups and ranges -------------------------------------------------------------------------


def test_log_backups_chain_and_idempotence(cat: Catalog, history: dict) -> None:
    assert [history[k].chain for k in ("l1", "l2", "l3", "l4")] == [0, 0, 1, 1]
    assert [history[k].chain for k in ("s1", "s1b", "s2")] == [0, 0, 1]
    assert _logs(cat, "l2", at(7), at(8), continuous=False) == history["l2"]
    assert [lb.id for lb in cat.log_backups("pgdemo")] == [history[k].id for k in ("l1", "l2", "l3", "l4")]
    assert cat.log_backup(history["l3"].id) == history["l3"]
    with pytest.raises(ValueError, match="after covered_to"):
        _logs(cat, "bad", at(2), at(1))


def test_log_backup_for(cat: Catalog, history: dict) -> None:
    s1, s2 = history["s1"], history["s2"]
    assert cat.log_backup_for("pgdemo", s1, at(0.5)) == history["l1"]
    assert cat.log_backup_for("pgdemo", s1, at(1)) == history["l1"]
    assert cat.log_backup_for("pgdemo", s1, at(1, seconds=1)) == history["l2"]
    assert cat.log_backup_for("pgdemo", s1) == history["l2"]
    assert cat.log_backup_for("pgdemo", s2, s2.consistent_at) == history["l4"]
    assert cat.log_backup_for("pgdemo", s2) == history["l4"]
    for target in (at(2.5), at(0)):
        with pytest.raises(OutOfRange):
            cat.log_backup_for("pgdemo", s1, target)


def test_recoverable_ranges_with_a_chain_break_have_a_gap(cat: Catalog, history: dict) -> None:
    assert cat.recoverable_ranges("pgdemo") == [Range(at(seconds=0.5), at(2)), Range(at(3 + 1 / 6), at(4))]
    info = cat.points("pgdemo")
    assert info == {
        "application": "pgdemo",
        "earliest": "2026-01-01T00:00:01Z",  # 00:00:00.5 rounded up
        "latest": "2026-01-01T04:00:00Z",
        "ranges": [["2026-01-01T00:00:01Z", "2026-01-01T02:00:00Z"],
                   ["2026-01-01T03:10:00Z", "2026-01-01T04:00:00Z"]],
        "gaps": [["2026-01-01T02:00:00Z", "2026-01-01T03:10:00Z"]],
        "snapshots": 3,
        "log_backups": 4,
    }
    cat.set_log_backup_state(history["l4"].id, "expired")
    cat.set_snapshot_state(history["s1"].id, "expired")
    assert cat.recoverable_ranges("pgdemo") == [Range(at(0.5), at(2)), Range(at(3 + 1 / 6), at(3 + 1 / 6))]


def test_ranges_merge_and_round_to_whole_seconds() -> None:
    end = datetime(2026, 1, 1, 0, 0, 9, 900000, tzinfo=UTC)
    touching = [Range(at(seconds=5), at(seconds=10)), Range(at(seconds=10), at(seconds=20)),
                Range(at(seconds=0.2), end), Range(at(seconds=30.4), at(seconds=30.6))]
    info = points_of("x", [Range(at(seconds=0.2), at(seconds=20))] + touching[3:], 2, 0)
    assert info["ranges"] == [["2026-01-01T00:00:01Z", "2026-01-01T00:00:20Z"]]  # 30.4..30.6 holds no second
    assert merge(touching) == [Range(at(seconds=0.2), at(seconds=20)), touching[3]]


# -- CLI --------------------------------------------------------------------------------------------


def test_points_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    with Catalog(url) as catalog:
        catalog.ensure_application("pgdemo", "gold", "postgresql", {})
        _snap(catalog, "s1", at(seconds=0.5))
        _logs(catalog, "l1", at(0), at(1))
        _logs(catalog, "l2", at(2), at(3), continuous=False)
        _snap(catalog, "s2", at(2.5))
    assert cli.main(["points", "pgdemo", "--json", "--catalog", url]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "application": "pgdemo", "earliest": "2026-01-01T00:00:01Z", "latest": "2026-01-01T03:00:00Z",
        "ranges": [["2026-01-01T00:00:01Z", "2026-01-01T01:00:00Z"],
                   ["2026-01-01T02:30:00Z", "2026-01-01T03:00:00Z"]],
        "gaps": [["2026-01-01T01:00:00Z", "2026-01-01T02:30:00Z"]], "snapshots": 2, "log_backups": 2}
    assert cli.main(["points", "pgdemo", "--catalog", url]) == 0
    text = capsys.readouterr().out
    assert "recoverable from 2026-01-01T00:00:01Z to 2026-01-01T03:00:00Z" in text
    assert "gap: nothing recoverable after 2026-01-01T01:00:00Z until 2026-01-01T02:30:00Z" in text
    assert "2 snapshot(s), 2 log backup(s)" in text
    assert cli.main(["points", "nope", "--catalog", url]) == 1
    assert "unknown application 'nope'" in capsys.readouterr().err


def test_catalog_upgrade_cli(tmp_path: Path, capsys: pytest.CaptureFixture,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog_db.URL_ENV, f"sqlite:///{tmp_path / 'env.db'}")
    assert cli.main(["catalog", "upgrade"]) == 0
    assert "none -> 0001" in capsys.readouterr().out
    assert cli.main(["catalog", "upgrade"]) == 0
    assert "at revision 0001 already" in capsys.readouterr().out
    assert cli.main(["points", "pgdemo", "--json"]) == 1


# -- clones and audit -------------------------------------------------------------------------------


def test_clone_lifecycle_and_dependents(cat: Catalog, history: dict) -> None:
    s1, l1 = history["s1"], history["l1"]
    created = cat.add_clone("pgdemo", "qa1", s1.id, "alice", log_backup_id=l1.id, point_in_time=at(0.5),
                            expires_at=at(72), mounts={"data": "/mnt/qa1"})
    assert (created.state, created.application, created.point_in_time) == ("creating", "pgdemo", at(0.5))
    assert cat.add_clone("pgdemo", "qa1", s1.id, "alice", point_in_time=at(0.5)) == created  # a retried task
    with pytest.raises(Conflict):
        cat.add_clone("pgdemo", "qa1", history["s2"].id, "bob")
    running = cat.update_clone("qa1", state="running", host="lab-host", port=55433)
    assert (running.state, running.host, running.port, running.mounts) == ("running", "lab-host", 55433,
                                                                           {"data": "/mnt/qa1"})
    with pytest.raises(TypeError):
        cat.update_clone("qa1", name="other")
    with pytest.raises(ValueError):
        cat.update_clone("qa1", state="deleted")
    assert cat.dependents(s1.id) == ["qa1"] and cat.log_backup_dependents(l1.id) == ["qa1"]
    assert cat.dependents(history["s2"].id) == []
    assert [c.name for c in cat.clones("pgdemo")] == [c.name for c in cat.clones()] == ["qa1"]

    gone = cat.delete_clone("qa1")
    assert gone.state == "deleted" and gone.deleted_at is not None
    with pytest.raises(NotFound):
        cat.clone("qa1")
    with pytest.raises(NotFound):
        cat.delete_clone("qa1")
    assert cat.dependents(s1.id) == [] and cat.clones("pgdemo") == []

    reborn = cat.add_clone("pgdemo", "qa1", history["s2"].id, "bob")  # the name is free again
    assert cat.clone("qa1") == reborn and reborn.id != created.id
    assert [c.state for c in cat.clones(states=None)] == ["deleted", "creating"]
    refreshed = cat.update_clone("qa1", state="refreshing", snapshot_id=s1.id,
                                 refreshed_at=datetime(2026, 1, 2, 1, tzinfo=timezone(timedelta(hours=1))))
    assert refreshed.refreshed_at == datetime(2026, 1, 2, tzinfo=UTC) and refreshed.snapshot_id == s1.id


def test_find_and_upsert_clone(cat: Catalog, history: dict) -> None:
    assert cat.find_clone("dev") is None
    first = cat.upsert_clone("dev", "pgdemo", snapshot_id=history["s1"].id, owner="alice", port=55500)
    assert cat.find_clone("dev") == first and first.state == "creating"
    again = cat.upsert_clone("dev", "pgdemo", snapshot_id=history["s2"].id, owner="alice", state="failed")
    assert (again.id, again.snapshot_id, again.state, again.port) == (first.id, history["s2"].id, "failed", 55500)


def test_clone_of_another_applications_snapshot_is_refused(cat: Catalog) -> None:
    cat.ensure_application("other", "gold", "postgresql", {})
    theirs = _snap(cat, "x", at(1), app="other")
    with pytest.raises(Conflict, match="does not belong"):
        cat.add_clone("pgdemo", "c", theirs.id, "alice")


def test_audit_log(cat: Catalog) -> None:
    for i in range(5):
        cat.audit("alice", "clone", "pgdemo", f"qa{i}", {"i": i})
    entry = cat.audit("scheduler", "snapshot", "other", "other.1")
    assert (entry.actor, entry.details, entry.at.tzinfo) == ("scheduler", {}, UTC)
    log = cat.audit_log("pgdemo", limit=3)
    assert [e.target for e in log] == ["qa4", "qa3", "qa2"]
    assert log[0].details == {"i": 4}
    assert len(cat.audit_log()) == 6 and cat.audit_log()[0] == entry


# -- time zones -------------------------------------------------------------------------------------


def test_datetimes_round_trip_as_aware_utc(cat: Catalog, url: str) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=plus_two)
    snap = cat.add_snapshot("pgdemo", "pgdemo.tz", {}, "fa-1", local, local, {})
    loaded = cat.snapshot(snap.id)
    for value in (loaded.started_at, loaded.consistent_at, loaded.created_at):
        assert value.tzinfo == UTC
    assert loaded.consistent_at == local and loaded.consistent_at.hour == 8
    assert cat.snapshot_for("pgdemo", datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)) == loaded
    with pytest.raises(ValueError, match="naive"):
        cat.add_snapshot("pgdemo", "pgdemo.naive", {}, "fa-1", datetime(2026, 1, 1), datetime(2026, 1, 1), {})
    with pytest.raises(ValueError, match="naive"):
        cat.snapshot_for("pgdemo", datetime(2026, 3, 1))
    if url.startswith("sqlite"):
        stored = sqlite3.connect(url.removeprefix("sqlite:///")).execute(
            "SELECT consistent_at FROM snapshots WHERE id = ?", (snap.id,)).fetchone()[0]
        assert stored == "2026-03-01 08:00:00.123456"
