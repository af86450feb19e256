"""Replication without a lab: sizes and rates, targets, log names, replicate() over a fake array whose
volumes are plain files, retention rules, the SLA section and the DAGs' shape. No root needed."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from copydata.array.types import ArrayError, Connection, PgroupSnapshot, Volume
from copydata.replication import archive
from copydata.replication.replicate import UnknownHost, replicate, replicate_application
from copydata.replication.retention import apply_retention, maintain
from copydata.replication.target import Target
from copydata.replication.units import parse_rate, parse_size
from copydata.repo import Manifest, PosixStore, RepositoryError, VolumeEntry
from copydata.repo.images import restore_image

KiB, MiB = 1 << 10, 1 << 20
BS = 64 * KiB
T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


# -- sizes, rates, targets -----------------------------------------------------------------------------

def test_sizes_and_rates():
    assert parse_size("1M") == parse_size("1MiB") == parse_size(1 << 20) == MiB
    assert parse_size("4K") == 4096 and parse_size("50MB") == 50_000_000 and parse_size("512") == 512
    assert parse_rate("50MB/s") == 50e6 and parse_rate("40MiB/s") == 40 * MiB and parse_rate("1GB/s") == 1e9
    assert parse_rate(None) is None and parse_rate("unlimited") is None and parse_rate(0) is None
    for bad in ("fast", "-1M", "1Mi", "", True):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        parse_rate("1Gbps")          # bits or bytes? write 125MB/s


def test_target_validates_and_creates_its_repository_once(tmp_path):
    with pytest.raises(ValueError, match="target name"):
        Target("Bad_Name", "file:///x")
    with pytest.raises(Exception, match="power of two"):
        Target("t", "file:///x", block_size="3M")
    t = Target("t", f"file://{tmp_path}/repo", block_size="256K", bandwidth="10MB/s", workers=3)
    assert t.bandwidth == 10e6 and t.block_size == 256 * KiB
    assert not t.has_repository()
    with pytest.raises(RepositoryError, match="no config"):
        t.open_repository()
    repo = t.open_repository(create=True)
    assert repo.config.block_size == 256 * KiB and repo.transfer.workers == 3
    assert repo.transfer.upload_cap is not None and repo.transfer.upload_cap.rate == 10e6
    assert t.open_repository(create=True).config.id == repo.config.id   # opened, not re-created
    keyed = Target("k", f"file://{tmp_path}/enc", key_conn_id="repo_key", key_factory=lambda conn: b"\x07" * 32)
    assert keyed.open_repository(create=True).config.encrypted
    assert keyed.open_repository().config.encrypted
    spec = {"name": "s", "url": "s3://b/p", "conn_id": "aws", "block_size": 1 << 20, "workers": 4,
            "bandwidth": None, "keep_last": 3}
    built = Target.from_sla(spec, store_factory=lambda url, conn: PosixStore(tmp_path / "s3"))
    assert built.keep_last == 3 and built.store().url.endswith("/s3")


# -- log names ------------------------------------------------------------------------------------------

def test_log_file_names_and_what_a_point_needs(tmp_path):
    wal = ["000000010000000000000003", "000000010000000000000002.00000028.backup", "00000002.history",
           "000000010000000100000000.partial"]
    assert all(archive.is_log_file("postgresql", n) for n in wal)
    for n in ("000000010000000000000003.tmp", ".x.tmp", "archive_status", "README"):
        assert not archive.is_log_file("postgresql", n)
    assert archive.is_log_file("mariadb", "mariadb-bin.000004")
    assert not archive.is_log_file("mariadb", ".mariadb-bin.000004.tmp")
    assert not archive.is_log_file("mysql", "mariadb-bin.index")
    start = "000000010000000000000003"
    assert archive.precedes("postgresql", "000000010000000000000002", start)
    assert archive.precedes("postgresql", "000000010000000000000002.00000028.backup", start)
    assert not archive.precedes("postgresql", "000000020000000000000003", start)   # same number, other timeline
    assert not archive.precedes("postgresql", "00000002.history", start)           # history: always kept
    assert archive.precedes("postgresql", "0000000100000000000000FF", "000000010000000100000000")
    assert archive.precedes("mariadb", "mariadb-bin.000003", "mariadb-bin.000004")
    assert not archive.precedes("mariadb", "other-bin.000001", "mariadb-bin.000004")
    assert not archive.precedes("oracle", "a", "b")
    assert archive.log_start({"snapshot": {"start_segment": start}}) == start
    assert archive.log_start({"snapshot": {"binlog_file": "./mariadb-bin.000004"}}) == "mariadb-bin.000004"
    assert archive.log_start({"snapshot": {}}) is None
    folder = tmp_path / "wal"
    folder.mkdir()
    for n in [*wal, "000000010000000000000009.tmp"]:
        (folder / n).write_bytes(b"x")
    (folder / "archive_status").mkdir()
    assert archive.log_files("postgresql", folder) == sorted(wal)
    assert archive.archive_subdir("postgresql") == "wal" and archive.archive_subdir("mariadb") == "binlog"


# -- replicate over a fake array ------------------------------------------------------------------------

class FakeArray:
    """Volumes and snapshots are files (images) or folders (a log archive) under root. Like the array, it
    connects volumes to known hosts only and eradicates no connected volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgsnaps: dict[str, PgroupSnapshot] = {}
        self.diffs: list[tuple[str, str | None]] = []
        self.lists_mapped = True
        self.hosts = {"db-host", "backup-proxy"}
        self.connected: set[tuple[str, str]] = set()    # (host, volume)
        self.connects: list[tuple[str, str]] = []       # every connect, in order

    def path(self, name: str) -> Path:
        return self.root / name

    def add(self, name: str, source: Path) -> None:
        dst = self.path(name)
        if source.is_dir():
            shutil.copytree(source, dst)
        else:
            shutil.copyfile(source, dst)

    def volume(self, name: str) -> Volume:
        p = self.path(name)
        return Volume(name=name, serial=name, size=p.stat().st_size if p.is_file() else 0)

    def copy_volume(self, source: str, name: str, overwrite: bool = False) -> Volume:
        from copydata.array.types import ArrayError

        if not self.path(source).exists():
            raise ArrayError("copy volume", "Volume does not exist.", 400, name)
        dst = self.path(name)
        if dst.exists():
            assert overwrite
            self.eradicate_volume(name)
        self.add(name, self.path(source))
        return self.volume(name)

    def find_volume(self, name: str) -> Volume | None:
        return self.volume(name) if self.path(name).exists() else None

    def connect(self, host: str, name: str) -> None:
        assert self.path(name).exists()
        if host not in self.hosts:
            raise ArrayError(f"connect to host {host}", "Host does not exist.", 400, host)
        self.connected.add((host, name))
        self.connects.append((host, name))

    def disconnect(self, host: str, name: str) -> None:
        self.connected.discard((host, name))

    def connections(self, name: str) -> list[Connection]:
        return [Connection(h, v, 1) for h, v in sorted(self.connected) if v == name]

    def eradicate_volume(self, name: str) -> None:
        assert not self.connections(name), f"{name} is connected"
        p = self.path(name)
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    def find_pgroup_snapshot(self, name: str) -> PgroupSnapshot | None:
        return self.pgsnaps.get(name)

    def diff(self, name: str, base: str | None, block_size: int = 65536) -> list[tuple[int, int]]:
        """Blocks that differ from base; without a base the mapped blocks, here: the non-zero ones."""
        self.diffs.append((name, base))
        if base is None and not self.lists_mapped:
            raise ArrayError("volume diff", "base_name is required", 400, name)
        a = self.path(name).read_bytes()
        b = self.path(base).read_bytes() if base else bytes(len(a))
        return [(o, min(block_size, len(a) - o)) for o in range(0, len(a), block_size)
                if a[o:o + block_size] != b[o:o + block_size]]


class FakeConnector:
    def __init__(self, array: FakeArray) -> None:
        self.array = array
        self.mounted: list[str] = []

    def device(self, serial: str, timeout: float = 30) -> str:
        return str(self.array.path(serial))

    def flush(self, device: str) -> None:
        pass

    def mount(self, device: str, mountpoint: str, fstype=None, options: str = "noatime") -> None:
        assert "ro" in options.split(",")
        shutil.copytree(device, mountpoint, dirs_exist_ok=True)
        self.mounted.append(mountpoint)

    def unmount(self, mountpoint: str) -> None:
        if mountpoint in self.mounted:
            self.mounted.remove(mountpoint)
            for p in Path(mountpoint).iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    def release(self, serial: str) -> None:
        pass


@dataclass
class Snap:
    id: int
    pgroup_snapshot: str
    volumes: dict[str, str]
    consistent_at: dt.datetime
    engine_meta: dict = field(default_factory=dict)


@dataclass
class LogBackup:
    id: int
    pgroup_snapshot: str
    volumes: dict[str, str]
    end_segment: str | None = None
    covered_to: dt.datetime | None = None


class FakeCatalog:
    def __init__(self) -> None:
        self.snaps: list[Snap] = []
        self.logs: list[LogBackup] = []

    def snapshots(self, app: str, states=("valid",)) -> list[Snap]:
        return list(self.snaps)

    def log_backups(self, app: str, states=("valid",)) -> list[LogBackup]:
        return list(self.logs)


class Db:
    """An application 'db': a data image of 2 MiB and a WAL archive folder, snapshotted on a fake array."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.array = FakeArray(root / "array")
        self.array.root.mkdir()
        self.data = root / "data.img"
        self.data.write_bytes(b"".join(os.urandom(BS // 2) + bytes(BS // 2) if i % 4 else bytes(BS)
                                       for i in range(32)))
        self.wal = root / "wal-volume"
        (self.wal / "wal").mkdir(parents=True)
        self.catalog = FakeCatalog()
        self.segment = 1
        app = SimpleNamespace(name="db", host="db-host", engine="postgresql",
                              volumes={"data": "db-data", "archive": "db-wal"})
        self.ctx = SimpleNamespace(app=app, name="db", array=self.array, connector=FakeConnector(self.array),
                                   catalog=self.catalog)

    def write(self, block: int, data: bytes | None = None) -> None:
        with open(self.data, "r+b") as f:
            f.seek(block * BS)
            f.write(data or os.urandom(BS))

    def archive_segment(self) -> str:
        name = f"{1:08X}{0:08X}{self.segment:08X}"
        (self.wal / "wal" / name).write_bytes(os.urandom(3 * BS + 100))
        self.segment += 1
        return name

    def snapshot(self, n: int) -> Snap:
        name = f"db.s{n}"
        members = {"data": f"{name}.db-data", "archive": f"{name}.db-wal"}
        self.array.add(members["data"], self.data)
        self.array.add(members["archive"], self.wal)
        self.array.pgsnaps[name] = PgroupSnapshot(name, "db", f"s{n}", T0, volumes={
            "db-data": members["data"], "db-wal": members["archive"]})
        start = f"{1:08X}{0:08X}{self.segment:08X}"
        snap = Snap(n, name, {"data": members["data"]}, T0 + dt.timedelta(minutes=n), {"start_segment": start})
        self.catalog.snaps.append(snap)
        self.log_backup(f"s{n}", T0 + dt.timedelta(minutes=n, seconds=30))
        return snap

    def log_backup(self, suffix: str, covered_to: dt.datetime) -> LogBackup:
        """Archive one more segment, then snapshot the archive volume as log backup db-logs.<suffix>."""
        end = self.archive_segment()
        name = f"db-logs.{suffix}"
        self.array.add(f"{name}.db-wal", self.wal)
        backup = LogBackup(len(self.catalog.logs) + 1, name, {"archive": f"{name}.db-wal"}, end, covered_to)
        self.catalog.logs.append(backup)
        return backup


@pytest.fixture
def db(tmp_path) -> Db:
    return Db(tmp_path)


def restore_bytes(repo, app: str, point: str, role: str, tmp: Path) -> bytes:
    entry = repo.read_manifest(app, point).volume(role)
    out = tmp / f"{point}-{role}.img"
    restore_image(repo, entry, out)
    return out.read_bytes()


def test_full_then_incremental_then_full_read_when_the_base_snapshot_is_gone(db, tmp_path):
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS, workers=2, keep_last=2)
    s1 = db.snapshot(1)
    r1 = replicate(db.ctx, target)
    assert r1.written == [s1.pgroup_snapshot] and r1.latest == s1.pgroup_snapshot
    (v1,) = r1.points[0].volumes
    assert v1.mode == "full" and v1.bytes_read == 24 * BS and v1.zero_blocks == 0   # the 24 mapped blocks
    assert r1.points[0].logs.files == ["000000010000000000000001"]
    assert db.array.diffs == [(s1.volumes["data"], None)]
    db.array.diffs.clear()

    db.write(3)
    db.write(17)
    s2 = db.snapshot(2)
    r2 = replicate(db.ctx, target)
    (v2,) = r2.points[0].volumes
    assert v2.mode == "incremental" and v2.base == s1.volumes["data"]
    assert v2.changed_bytes == 2 * BS and v2.bytes_read == 2 * BS and v2.chunks_put == 2
    assert db.array.diffs == [(s2.volumes["data"], s1.volumes["data"])]
    assert r2.points[0].logs.files == ["000000010000000000000002"] and r2.points[0].parent == s1.pgroup_snapshot

    del db.array.pgsnaps[s2.pgroup_snapshot]       # the base snapshot was eradicated on the array
    db.write(5)
    s3 = db.snapshot(3)
    r3 = replicate(db.ctx, target)
    (v3,) = r3.points[0].volumes
    assert v3.mode == "full (base snapshot gone)" and v3.bytes_read == 24 * BS and v3.chunks_put == 1

    again = replicate(db.ctx, target)
    assert again.points == [] and again.skipped == [s1.pgroup_snapshot, s2.pgroup_snapshot, s3.pgroup_snapshot]
    assert again.stats["chunks_put"] == 0

    repo = target.open_repository()
    for snap in (s1, s2, s3):
        assert restore_bytes(repo, "db", snap.pgroup_snapshot, "data", tmp_path) == \
            db.array.path(snap.volumes["data"]).read_bytes()
        m = repo.read_manifest("db", snap.pgroup_snapshot)
        assert m.engine == {"engine": "postgresql", "consistent_at": snap.consistent_at.isoformat(),
                            "snapshot": snap.engine_meta, "roles": {"data": "db-data", "archive": "db-wal"}}
    for name in repo.logs("db"):
        assert repo.get_log("db", name) == (db.wal / "wal" / name).read_bytes()
    from copydata.repo.logs import read_log_index
    assert read_log_index(repo, "db", "000000010000000000000003").metadata == {
        "log_backup": "db-logs.s3", "covered_to": (T0 + dt.timedelta(minutes=3, seconds=30)).isoformat()}
    assert not [p for p in db.array.root.iterdir() if "-repl-" in p.name], "temporary volumes are discarded"


def test_points_oldest_first_with_a_limit_and_leftovers_of_a_killed_run(db, tmp_path):
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    snaps = []
    for n in range(1, 4):
        db.write(n)
        snaps.append(db.snapshot(n))
    db.array.add("db-repl-data", db.data)           # left by a killed run
    first = replicate(db.ctx, target, limit=1)
    assert first.written == [snaps[0].pgroup_snapshot] and first.pending == [s.pgroup_snapshot for s in snaps[1:]]
    assert replicate_application(db.ctx, target) == [s.pgroup_snapshot for s in snaps[1:]]
    assert not (db.array.root / "db-repl-data").exists()


def test_a_snapshot_destroyed_meanwhile_is_skipped(db, tmp_path):
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    s1, s2 = db.snapshot(1), db.snapshot(2)
    db.array.eradicate_volume(s1.volumes["data"])
    report = replicate(db.ctx, target)
    assert report.gone == [s1.pgroup_snapshot] and report.written == [s2.pgroup_snapshot]


def record_copies(db: Db, monkeypatch) -> list[str]:
    """The sources of every array volume copy from now on."""
    sources: list[str] = []
    real = db.array.copy_volume

    def copy_volume(source: str, name: str, overwrite: bool = False) -> Volume:
        sources.append(source)
        return real(source, name, overwrite)

    monkeypatch.setattr(db.array, "copy_volume", copy_volume)
    return sources


def test_a_log_backup_alone_ships_its_new_logs_without_copying_the_images(db, tmp_path, monkeypatch):
    from copydata.repo.logs import read_log_index

    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    s1 = db.snapshot(1)
    first = replicate(db.ctx, target)
    assert first.written == [s1.pgroup_snapshot]
    copies = record_copies(db, monkeypatch)
    backup = db.log_backup("l2", T0 + dt.timedelta(minutes=5))
    report = replicate(db.ctx, target)
    assert report.written == [] and report.skipped == [s1.pgroup_snapshot]
    assert report.logs.log_backup == backup.pgroup_snapshot and report.logs.files == [backup.end_segment]
    assert report.logs.present == 1                                   # the first backup's segment
    assert copies == [backup.volumes["archive"]]                        # the archive volume only: no image
    assert report.stats["bytes_read"] == (db.wal / "wal" / backup.end_segment).stat().st_size
    repo = target.open_repository()
    assert repo.get_log("db", backup.end_segment) == (db.wal / "wal" / backup.end_segment).read_bytes()
    assert read_log_index(repo, "db", backup.end_segment).metadata == {
        "log_backup": backup.pgroup_snapshot, "covered_to": backup.covered_to.isoformat()}
    again = replicate(db.ctx, target)                                  # nothing new: no copy at all
    assert again.logs is None and copies == [backup.volumes["archive"]]
    assert again.stats["chunks_put"] == again.stats["bytes_read"] == 0
    assert not [p for p in db.array.root.iterdir() if "-repl-" in p.name]


def test_logs_are_shipped_when_every_new_snapshot_is_gone(db, tmp_path):
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    s1 = db.snapshot(1)
    db.array.eradicate_volume(s1.volumes["data"])
    report = replicate(db.ctx, target)
    assert report.gone == [s1.pgroup_snapshot] and report.written == []
    assert report.logs.files == [db.catalog.logs[-1].end_segment]


def test_the_end_segment_is_uploaded_last():
    from copydata.replication.replicate import _upload_order

    backup = LogBackup(1, "db-logs.x", {}, end_segment="000000010000000000000002")
    names = ["000000010000000000000001", "000000010000000000000002", "000000010000000000000002.00000028.backup",
             "00000002.history"]
    assert _upload_order(names, backup)[-1] == "000000010000000000000002"
    assert _upload_order(names, LogBackup(2, "db-logs.y", {}))[-1] == "00000002.history"


def test_a_failing_read_commits_nothing_and_discards_the_copies(db, tmp_path, monkeypatch):
    from copydata.replication import replicate as mod

    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    db.snapshot(1)

    def broken(*a, **k):
        raise OSError("read error")

    monkeypatch.setattr(mod, "backup_image", broken)
    with pytest.raises(OSError):
        replicate(db.ctx, target)
    repo = target.open_repository()
    assert repo.points() == [] and not list(repo.store.list("locks/"))
    assert not [p for p in db.array.root.iterdir() if "-repl-" in p.name]


def test_the_copies_are_read_on_the_proxy_host_else_on_the_application_host(db, tmp_path):
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    db.snapshot(1)
    assert replicate(db.ctx, target).written
    assert db.array.connects == [("db-host", "db-repl-data"), ("db-host", "db-repl-logs")]
    db.array.connects.clear()
    db.write(3)
    db.snapshot(2)
    assert replicate(db.ctx, target, host="backup-proxy").written
    assert db.array.connects == [("backup-proxy", "db-repl-data"), ("backup-proxy", "db-repl-logs")]
    assert db.array.connected == set()


def test_an_unknown_proxy_host_is_named_by_its_sla_field(db, tmp_path):
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    db.snapshot(1)
    with pytest.raises(UnknownHost, match=r"^replication.proxy_host 'nowhere' is not a host on the array$"):
        replicate(db.ctx, target, host="nowhere")
    db.ctx.app.host = "gone-host"
    with pytest.raises(UnknownHost, match="the host 'gone-host' of application db is not a host on the array"):
        replicate(db.ctx, target)
    assert not [p for p in db.array.root.iterdir() if "-repl-" in p.name]
    assert target.open_repository().points() == []


def test_leftovers_connected_to_the_previous_proxy_host_are_discarded(db, tmp_path):
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS)
    db.snapshot(1)
    for name in ("db-repl-data", "db-repl-logs"):     # a killed run read them on the application's host
        db.array.add(name, db.data)
        db.array.connect("db-host", name)
    db.array.connects.clear()
    assert replicate(db.ctx, target, host="backup-proxy").written
    assert {h for h, _ in db.array.connects} == {"backup-proxy"} and db.array.connected == set()
    assert not [p for p in db.array.root.iterdir() if "-repl-" in p.name]


def test_the_replicate_operator_reads_on_the_sla_proxy_host(monkeypatch):
    from copydata.airflow.operators import replication as operators
    from copydata.replication import replicate as mod
    from copydata.replication.replicate import RunReport

    hosts = []

    def fake_replicate(ctx, target, host=None):
        hosts.append(host)
        return RunReport(application="db", target="t", url="file:///r")

    monkeypatch.setattr(mod, "replicate", fake_replicate)
    monkeypatch.setattr(operators, "open_target", lambda spec: spec)
    op = operators.ReplicateOperator(task_id="r", sla_file="x.yaml", application="db", target="t")
    for proxy in ("backup-proxy", None):
        spec = SimpleNamespace(name="t")
        sla = SimpleNamespace(name="s", replication=SimpleNamespace(targets=[spec], proxy_host=proxy))
        op.run(SimpleNamespace(sla=sla), {})
    assert hosts == ["backup-proxy", None]


# -- retention --------------------------------------------------------------------------------------------

def _point(repo, app: str, point: str, minute: int, start: str | None, block: bytes) -> None:
    cid = repo.put_chunk(block)
    entry = VolumeEntry(name="data", size=len(block), block_size=BS, chunks=[cid], digest="0" * 64, role="data")
    from copydata.repo.images import volume_digest
    entry.digest = volume_digest(repo, entry.chunks, entry.size, BS)
    meta = {"start_segment": start} if start else {}
    repo.write_manifest(Manifest(application=app, point=point, volumes=[entry], engine={
        "engine": "postgresql", "consistent_at": (T0 + dt.timedelta(minutes=minute)).isoformat(), "snapshot": meta}))


def test_retention_keeps_the_newest_points_and_the_logs_they_need(tmp_path):
    repo = Target("t", f"file://{tmp_path}/repo", block_size=BS).open_repository(create=True)
    segs = [f"{1:08X}{0:08X}{i:08X}" for i in range(1, 7)]
    for s in segs:
        repo.put_log("db", s, os.urandom(BS + 10))
    repo.put_log("db", "00000002.history", b"1\t0/3000000\tno recovery target\n")
    # point names do not sort by time: retention orders by consistent_at
    for name, minute, start in (("db.z-first", 1, segs[1]), ("db.a-second", 2, segs[3]), ("db.m-third", 3, segs[4])):
        _point(repo, "db", name, minute, start, os.urandom(BS))
    dry = apply_retention(repo, "db", 2, dry_run=True)
    assert dry.forgotten == ["db.z-first"] and len(repo.points("db")) == 3
    report = apply_retention(repo, "db", 2)
    assert report.kept == ["db.a-second", "db.m-third"] and report.forgotten == ["db.z-first"]
    assert report.log_start == segs[3] and report.logs_forgotten == segs[:3]
    assert repo.logs("db") == sorted(["00000002.history", *segs[3:]])
    # a point whose start is unknown keeps every log
    _point(repo, "other", "other.p1", 1, None, os.urandom(BS))
    repo.put_log("other", segs[0], os.urandom(100))
    assert apply_retention(repo, "other", 1).logs_forgotten == []
    m = maintain(repo, "t", keep_last=1, grace=0, verify_sample=None)
    assert [r.forgotten for r in m.retention] == [["db.a-second"], []]
    assert m.gc.deleted_chunks > 0 and m.verify.ok and m.ok


# -- SLA and DAGs -----------------------------------------------------------------------------------------

SLA = Path(__file__).resolve().parents[1] / "docs" / "examples" / "sla-postgres.yaml"
REPLICATION = """
replication:
  targets:
    - name: s3-main
      url: s3://bucket/copydata
      conn_id: aws_repo
      key_conn_id: repo_key
      bandwidth: 50MB/s
    - name: local
      url: file:///srv/copydata
      block_size: 4M
      keep_last: 3
"""


def test_sla_replication_section(tmp_path):
    from copydata.sla.loader import load_sla
    from copydata.sla.model import Sla

    path = tmp_path / "a.yaml"
    path.write_text(SLA.read_text() + REPLICATION)
    sla = load_sla(path)
    s3, local = sla.replication.targets
    assert (s3.block_size, s3.workers, s3.bandwidth, s3.keep_last, s3.key_conn_id) == (MiB, 4, 50_000_000, 7, "repo_key")
    assert (local.block_size, local.conn_id, local.bandwidth, local.keep_last) == (4 * MiB, None, None, 3)
    t = Target.from_sla(local)
    assert (t.name, t.url, t.block_size, t.keep_last) == ("local", "file:///srv/copydata", 4 * MiB, 3)
    assert Sla.model_validate({**sla.model_dump(mode="json"), "replication": None}).replication is None
    bad = REPLICATION.replace("s3://bucket/copydata", "ftp://x").replace("name: local", "name: s3-main") \
                     .replace("block_size: 4M", "block_size: 3M")
    path.write_text(SLA.read_text() + bad)
    with pytest.raises(Exception) as err:
        load_sla(path)
    text = "\n".join(str(e) for e in err.value.errors)
    assert "replication.targets[0].url" in text and "replication.targets[1].block_size" in text


def test_sla_rejects_duplicate_targets_and_a_connection_for_file_urls(tmp_path):
    from copydata.sla.loader import load_sla

    path = tmp_path / "a.yaml"
    path.write_text(SLA.read_text() + textwrap.dedent("""
        replication:
          targets:
            - {name: a, url: "file:///srv/r", conn_id: x}
        """))
    with pytest.raises(Exception, match="file:// target needs no connection"):
        load_sla(path)
    path.write_text(SLA.read_text() + textwrap.dedent("""
        replication:
          targets:
            - {name: a, url: "file:///srv/r"}
            - {name: a, url: "file:///srv/r/"}
        """))
    with pytest.raises(Exception) as err:
        load_sla(path)
    text = "\n".join(str(e) for e in err.value.errors)
    assert "targets[1].name: target 'a' is already defined" in text and "already uses file:///srv/r" in text


def test_dags_of_an_sla_with_replication(tmp_path, monkeypatch):
    import warnings

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetAny

    from conftest import ROOT

    second = textwrap.dedent("""
          - name: pgtwo
            engine: postgresql
            database_conn_id: copydata_pg_two
            protection_group: pgtwo
            log_protection_group: pgtwo-logs
            host: lab-host
            volumes: {data: pgtwo-data, archive: pgtwo-wal}
            mounts: {data: /srv/two/data, archive: /srv/two/archive}
        """)
    (tmp_path / "a.yaml").write_text(SLA.read_text() + textwrap.indent(second, "  ") + REPLICATION)
    monkeypatch.setenv("COPYDATA_SLA_DIR", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    rep = bag.dags["copydata__example__replicate"]
    condition = rep.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert [a.uri for a in condition.objects] == ["copydata://pgdemo/snapshots", "copydata://pgdemo/logs",
                                                  "copydata://pgtwo/snapshots", "copydata://pgtwo/logs"]
    assert sorted(rep.task_ids) == sorted(f"replicate__{a}__{t}" for a in ("pgdemo", "pgtwo")
                                          for t in ("s3-main", "local"))
    local = rep.get_task("replicate__pgdemo__local")
    assert local.upstream_task_ids == {"replicate__pgdemo__s3-main"}     # one at a time per application
    assert [o.uri for o in local.outlets] == ["copydata://pgdemo/replicas/local"]
    mnt = bag.dags["copydata__example__replica_maintenance"]
    assert "0 0 * * *" in repr(mnt.timetable)
    assert sorted(mnt.task_ids) == ["maintenance__local", "maintenance__s3-main"]
    assert mnt.get_task("maintenance__local").verify_sample == 0.05


def test_the_core_imports_no_airflow():
    import subprocess
    import sys

    code = ("import sys, copydata.replication.replicate, copydata.replication.retention, "
            "copydata.replication.target, copydata.sla.model; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_full_reads_every_block_when_the_array_lists_no_mapped_blocks(db, tmp_path):
    db.array.lists_mapped = False
    target = Target("t", f"file://{tmp_path}/repo", block_size=BS, workers=2)
    s1 = db.snapshot(1)
    (v1,) = replicate(db.ctx, target).points[0].volumes
    assert v1.mode == "full" and v1.bytes_read == 32 * BS and v1.zero_blocks == 8
    assert restore_bytes(target.open_repository(), "db", s1.pgroup_snapshot, "data", tmp_path) == db.data.read_bytes()
