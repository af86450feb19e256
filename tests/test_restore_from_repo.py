"""Restore from a copydata repository: a lab PostgreSQL under pgbench + ticker load, snapshots and log
backups through the ops layer, points written to a repository by copydata.replication.replicate (or, with
COPYDATA_TEST_RESTORE_WRITER=helper, by write_points below, straight through the repository library), then:

(a) every point restores bit-identically to local files (SHA-256 of the array snapshot, read through a
    connected copy);
(b) a delta restore onto an array volume holding the older point writes only the differing blocks;
(c) a point-in-time recovery from the repository alone (local image file + loop device + WAL fetched from
    the repository) holds exactly the ticks committed up to the target second, with balanced pgbench sums;
(d) a missing log fails with an error that names it.

Over a POSIX folder and moto S3 in full; Azurite and fake-gcs-server at smoke level.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from objectstores import SERVERS, make_store

from copydata import sysutil
from copydata.repo import Manifest, NotFound, ObjectInfo, Repository, RepositoryError, Store
from copydata.repo.images import backup_image
from copydata.sysutil import free_port

from pglab import (
    Load,
    clone_ticks,
    committed_ticks,
    lab,
    lab_home,
    pgbench_balanced,
    stop_postgres_under,
    whole_second_after,
)

pytest_plugins = ["objectstores"]
pytestmark = pytest.mark.root

MiB = 1 << 20
BULK_MIB = 256
# Who writes the points: "replicate" (copydata.replication.replicate, the real thing) or "helper" (write_points
# below: full images + every archived file, straight through the repository library).
WRITER = os.environ.get("COPYDATA_TEST_RESTORE_WRITER", "replicate")
FULL = ["posix", "s3"]
SMOKE = ["azure", "gcs"]


# -- the stand-in for replication (COPYDATA_TEST_RESTORE_WRITER=helper) -----------------------------------

@contextlib.contextmanager
def connected_copy(ctx, snapshot_volume: str, name: str) -> Iterator[str]:
    """An instant copy of an array snapshot volume, connected to the lab host: its block device."""
    from copydata.connector import discard_volumes

    vol = ctx.array.copy_volume(snapshot_volume, name, overwrite=True)
    try:
        ctx.array.connect(ctx.app.host, vol.name)
        device = ctx.connector.device(vol.serial)
        ctx.connector.flush(device)
        yield device
    finally:
        discard_volumes(ctx.array, ctx.connector, ctx.app.host, [name])


def wal_files(folder: Path) -> list[Path]:
    from copydata.engines.postgres import wal

    return sorted(p for p in folder.iterdir() if wal.SEGMENT_RE.match(p.name) or p.name.endswith(".history"))


def write_points(ctx, repo: Repository, snapshots: list, log_backups: list, scratch: Path) -> None:
    """Each catalog snapshot -> a point (full images of its member volumes, by role), and every archived
    WAL file of each log backup -> logs/<application>/<file>, with the conventions of replication."""
    app = ctx.app
    scratch.mkdir(parents=True, exist_ok=True)
    for lb in log_backups:
        with connected_copy(ctx, lb.volumes["archive"], f"{app.name}-rtmp-logs") as device:
            mnt = scratch / "logs"
            ctx.connector.mount(device, str(mnt))
            try:
                for f in wal_files(mnt / "wal"):
                    meta = {"covered_to": lb.covered_to.isoformat()} if f.name == lb.end_segment else {}
                    repo.put_log(app.name, f.name, f, metadata=meta)
            finally:
                ctx.connector.unmount(str(mnt))
    for snap in snapshots:
        volumes = []
        for role, snapshot_volume in sorted(snap.volumes.items()):
            with connected_copy(ctx, snapshot_volume, f"{app.name}-rtmp-{role}") as device:
                volumes.append(backup_image(repo, device, name=app.volumes[role], role=role,
                                            array_snapshot=snapshot_volume))
        engine = {"engine": app.engine, "consistent_at": snap.consistent_at.isoformat(),
                  "snapshot": snap.engine_meta, "roles": {r: app.volumes[r] for r in snap.volumes}}
        repo.write_manifest(Manifest(application=app.name, point=snap.pgroup_snapshot, volumes=volumes,
                                     engine=engine))


# -- fixtures ----------------------------------------------------------------------------------------

@dataclass
class History:
    lab: object
    ctx: object
    snapshots: list
    log_backups: list
    shas: dict = field(default_factory=dict)

    @property
    def app(self) -> str:
        return self.ctx.app.name

    def snapshot_sha(self, snap, role: str) -> str:
        """SHA-256 of an array snapshot volume, read through a connected copy (cached)."""
        key = (snap.pgroup_snapshot, role)
        if key not in self.shas:
            with connected_copy(self.ctx, snap.volumes[role], f"{self.app}-rtmp-sha") as device:
                self.shas[key] = sha256_path(device)
        return self.shas[key]


def sha256_path(path: str | Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while block := os.read(fd, 4 * MiB):
            h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest()


def mounts_under(folder: Path) -> list[str]:
    root = os.path.realpath(folder)
    points = [line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p == root or p.startswith(root + os.sep)), reverse=True)


def release_under(folder: Path) -> None:
    """Servers, mounts and loop devices left below folder by a failed test."""
    if not folder.exists():
        return
    stop_postgres_under(folder)
    for point in mounts_under(folder):
        sysutil.umount(point)
    for dev in sysutil.loops_backed_by(folder).values():
        sysutil.loop_detach(dev)


@pytest.fixture(scope="module")
def rlab(airflow_db):
    with lab_home() as home, lab("rr", home) as lb:
        yield lb


@contextlib.contextmanager
def restores_folder(home: Path, *stop_servers) -> Iterator[Path]:
    """<home>/restores: whatever a failed test leaves there (servers: also those stop_servers(root) stops,
    mounts, loop devices) is released at the end."""
    root = home / "restores"
    root.mkdir(mode=0o755, exist_ok=True)
    try:
        yield root
    finally:
        for stop in stop_servers:
            stop(root)
        release_under(root)
        assert not mounts_under(root) and not sysutil.loops_backed_by(root)


@pytest.fixture(scope="module")
def work(rlab) -> Iterator[Path]:
    """Recoveries and restores go below this folder; released before the lab goes."""
    with restores_folder(rlab.home) as root:
        yield root


@pytest.fixture(scope="module")
def history(rlab) -> Iterator[History]:
    """Two snapshots and four log backups through the ops layer while pgbench and the ticker write."""
    from copydata.airflow.app_context import build_context
    from copydata.ops.logs import log_backup
    from copydata.ops.snapshot import take_snapshot

    ctx, hook = build_context(rlab.sla_file, rlab.name, actor="pytest")
    try:
        load = Load(rlab, seconds=20).start()
        time.sleep(1.5)
        take_snapshot(ctx, "p1")
        log_backup(ctx, "l1")
        with rlab.connect() as c:   # WAL for the fetch to keep ahead of: ~BULK_MIB MiB in one transaction
            c.execute("CREATE TABLE bulk (id int, pad text)")
            c.execute("INSERT INTO bulk SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, %s) g",
                      [BULK_MIB * 1000])
        time.sleep(1)
        log_backup(ctx, "l2")
        time.sleep(2.5)
        take_snapshot(ctx, "p2")
        log_backup(ctx, "l3")
        time.sleep(2.5)
        load.finish()
        log_backup(ctx, "l4")
        snaps, lbs = ctx.catalog.snapshots(rlab.name), ctx.catalog.log_backups(rlab.name)
        assert len(snaps) == 2 and len(lbs) == 4
        yield History(rlab, ctx, snaps, lbs)
    finally:
        hook.close()


@pytest.fixture(scope="module", params=FULL + SMOKE)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param in SERVERS:
        request.getfixturevalue(SERVERS[request.param])
    return request.param


@dataclass
class Repo:
    kind: str
    repo: Repository
    url: str
    conn_id: str | None
    seconds: float


@pytest.fixture(scope="module")
def repo(kind: str, history: History, work: Path) -> Repo:
    """A repository of this store kind holding both points and all the logs."""
    from objectstores import BUCKET, CONN_IDS

    prefix = f"rr-{kind}-{os.urandom(4).hex()}"
    store = make_store(kind, prefix, work / "posix-stores")
    repository = Repository.init(store, block_size=MiB)
    url = {"posix": f"file://{work / 'posix-stores' / prefix}", "s3": f"s3://{BUCKET}/{prefix}",
           "azure": f"wasb://{BUCKET}/{prefix}", "gcs": f"gs://{BUCKET}/{prefix}"}[kind]
    t = time.monotonic()
    if WRITER == "replicate":
        from copydata.replication.replicate import replicate
        from copydata.replication.target import Target

        run = replicate(history.ctx, Target(name="rr", url=url, conn_id=CONN_IDS.get(kind)), repo=repository)
        assert run.written == [s.pgroup_snapshot for s in history.snapshots]
    else:
        write_points(history.ctx, repository, history.snapshots, history.log_backups, work / f"scratch-{kind}")
    seconds = time.monotonic() - t
    print(f"\n[{kind}] {WRITER}: 2 points and {len(repository.logs(history.app))} logs in {seconds:.1f} s")
    return Repo(kind, repository, url, CONN_IDS.get(kind), seconds)


def full_only(repo: Repo) -> None:
    if repo.kind not in FULL:
        pytest.skip(f"{repo.kind}: smoke level only")


@pytest.fixture
def recoveries(work: Path) -> Iterator[list]:
    """Recoveries made by a test; closed at its end, whatever happened."""
    made: list = []
    yield made
    for rec in made:
        rec.close()


# -- (a) bit-identical restores to local files -------------------------------------------------------

def test_points_restore_bit_identically_to_local_files(repo: Repo, history: History, work: Path):
    from copydata.replication.restore import LocalFiles, list_points, restore_point

    points = list_points(repo.repo, history.app)
    assert [p.point for p in points] == [s.pgroup_snapshot for s in history.snapshots]
    snaps = history.snapshots if repo.kind in FULL else history.snapshots[-1:]
    for snap in snaps:
        folder = work / f"files-{repo.kind}-{snap.id}"
        try:
            t = time.monotonic()
            report = restore_point(repo.repo, history.app, snap.pgroup_snapshot, LocalFiles(folder))
            print(f"[{repo.kind}] {snap.pgroup_snapshot}: restored in {time.monotonic() - t:.1f} s")
            assert sorted(v.role for v in report.volumes) == ["archive", "data"]
            for v in report.volumes:
                assert v.created and v.unchanged == 0
                assert sha256_path(v.target) == history.snapshot_sha(snap, v.role), v
                assert os.path.getsize(v.target) == points[history.snapshots.index(snap)].volumes[v.role].size
        finally:
            shutil.rmtree(folder, ignore_errors=True)


# -- (b) delta restore onto an array volume ----------------------------------------------------------

def test_delta_restore_onto_an_array_volume_writes_only_the_differing_blocks(repo: Repo, history: History):
    from copydata.connector import discard_volumes
    from copydata.replication.restore import ArrayVolumes, restore_point, volumes_by_role

    full_only(repo)
    ctx, (first, second) = history.ctx, history.snapshots
    old = volumes_by_role(repo.repo.read_manifest(history.app, first.pgroup_snapshot))["data"]
    new = volumes_by_role(repo.repo.read_manifest(history.app, second.pgroup_snapshot))["data"]
    differing = sum(1 for a, b in zip(old.chunks, new.chunks, strict=True) if a != b)
    zeroed = sum(1 for a, b in zip(old.chunks, new.chunks, strict=True) if a and not b)
    names = {"data": f"rr-delta-{repo.kind}-data", "archive": f"rr-delta-{repo.kind}-archive"}
    try:
        ctx.array.copy_volume(first.volumes["data"], names["data"], overwrite=True)   # holds the older point
        dest = ArrayVolumes(ctx.array, ctx.connector, ctx.app.host, {"data": names["data"]}, disconnect=True)
        t = time.monotonic()
        report = restore_point(repo.repo, history.app, second.pgroup_snapshot, dest)
        seconds = time.monotonic() - t
        v = report.volume("data")
        print(f"[{repo.kind}] delta restore: {v.written} written + {v.zeroed} zeroed of {v.blocks} blocks "
              f"({differing} differ), {v.unchanged} unchanged, {seconds:.1f} s")
        assert not v.created
        assert 0 < differing < len(new.chunks) // 2
        assert v.written + v.zeroed == differing and v.zeroed == zeroed
        assert v.unchanged == len(new.chunks) - differing
        with connected_copy(ctx, names["data"], f"rr-delta-{repo.kind}-check") as device:
            assert sha256_path(device) == history.snapshot_sha(second, "data")
        assert new.sha256 in (None, history.snapshot_sha(second, "data"))   # None: an incremental point

        again = restore_point(repo.repo, history.app, second.pgroup_snapshot, dest).volume("data")
        assert (again.written, again.zeroed, again.unchanged) == (0, 0, len(new.chunks))

        # a missing volume is created with the point's size (role archive, into a new volume)
        dest = ArrayVolumes(ctx.array, ctx.connector, ctx.app.host, {"archive": names["archive"]}, disconnect=True)
        made = restore_point(repo.repo, history.app, first.pgroup_snapshot, dest).volume("archive")
        assert made.created
        assert ctx.array.get_volume(names["archive"]).size == made.size
        with connected_copy(ctx, names["archive"], f"rr-delta-{repo.kind}-check") as device:
            assert sha256_path(device) == history.snapshot_sha(first, "archive")
    finally:
        discard_volumes(ctx.array, ctx.connector, ctx.app.host, list(names.values()))


# -- (c) point-in-time recovery from the repository alone --------------------------------------------

def check_recovery(history: History, rec, target: dt.datetime) -> None:
    expected = committed_ticks(history.lab, target)
    got = clone_ticks(rec.run_dir, rec.db.port)
    assert expected, "the ticker committed nothing before the target"
    assert got == expected, (f"recovery to {target}: {len(got)} ticks, expected {len(expected)}; "
                             f"extra {sorted(got - expected)[:5]}, missing {sorted(expected - got)[:5]}")
    accounts, branches, tellers, hist = pgbench_balanced(rec.run_dir, rec.db.port)
    assert accounts == branches == tellers == hist


def report_recovery(kind: str, label: str, rec) -> None:
    t = rec.timings
    print(f"[{kind}] {label}: point {rec.point}; data restore {t['restore_data_s']:.1f} s; WAL: "
          f"{rec.fetch.fetched}/{rec.fetch.planned} files ({rec.fetch.bytes / MiB:.0f} MiB) fetched in "
          f"{t.get('fetch_s', 0):.2f} s ({t.get('fetch_mib_s', 0):.0f} MiB/s, first file {t.get('fetch_first_s', 0):.2f} s)"
          f"; replay {t['replay_s']:.2f} s for {len(rec.requests.served)} files ({t['replay_wal_mib']:.0f} MiB), "
          f"stalled on the fetch {t['replay_stall_s']:.2f} s; total {t['total_s']:.1f} s")


def test_point_in_time_recovery_from_the_repository_alone(repo: Repo, history: History, work: Path,
                                                          recoveries: list):
    from copydata.replication.recovery import recover_from_repo

    first, second = history.snapshots
    before_second = whole_second_after(second.consistent_at, -2)   # after the bulk insert, from the first point
    assert first.consistent_at < before_second < second.consistent_at
    runs = [("from the first point", first, before_second, {}),
            ("from the second point", second, whole_second_after(second.consistent_at, 1), {}),
            # WAL fetched in lockstep with the replay: 2 files ahead, one at a time
            ("from the first point, read-ahead 2, 1 fetch worker", first, before_second,
             {"readahead": 2, "fetch_workers": 1})]
    if repo.kind not in FULL:
        runs = runs[1:2]
    for i, (label, point, target, options) in enumerate(runs):
        rec = recover_from_repo(repo.repo, history.app, work / f"pitr-{repo.kind}-{i}", free_port(),
                                point_in_time=target.isoformat().replace("+00:00", "Z"), **options)
        recoveries.append(rec)
        report_recovery(repo.kind, label, rec)
        assert rec.point == point.pgroup_snapshot
        assert rec.data_image is not None and rec.loop_device and rec.data_volume is None
        check_recovery(history, rec, target)
        if not options:
            assert rec.timings["replay_stall_s"] < 0.25 * rec.timings["replay_s"] + 0.5, rec.timings
        else:
            assert rec.fetch.fetched <= len(rec.requests.served) + 2 + 1
        rec.close()
        assert not rec.workdir.exists()


def test_latest_recovers_to_the_newest_covered_instant(repo: Repo, history: History, work: Path,
                                                       recoveries: list):
    from copydata.replication.recovery import discard_recovery, recover_from_repo

    full_only(repo)
    last = history.log_backups[-1]
    rec = recover_from_repo(repo.repo, history.app, work / f"latest-{repo.kind}", free_port(),
                            point_in_time="latest", overlap=repo.kind != "s3")
    recoveries.append(rec)
    report_recovery(repo.kind, "latest" + ("" if repo.kind != "s3" else " (fetch first)"), rec)
    assert rec.point == history.snapshots[-1].pgroup_snapshot and rec.target == last.covered_to
    check_recovery(history, rec, last.covered_to)
    discard_recovery(rec.workdir)   # as a later task would: from the work folder alone
    assert not rec.workdir.exists() and not sysutil.loops_backed_by(work / f"latest-{repo.kind}")


def test_recovery_onto_an_array_volume(repo: Repo, history: History, work: Path, recoveries: list):
    from copydata.connector import discard_volumes
    from copydata.replication.recovery import recover_from_repo
    from copydata.replication.restore import ArrayVolumes

    if repo.kind != "posix":
        pytest.skip("one store is enough for the array path")
    ctx, (first, _) = history.ctx, history.snapshots
    name = "rr-recover-data"
    target = whole_second_after(first.consistent_at, 2)
    try:
        dest = ArrayVolumes(ctx.array, ctx.connector, ctx.app.host, {"data": name})
        rec = recover_from_repo(repo.repo, history.app, work / "on-array", free_port(),
                                point_in_time=target, data_on=dest)
        recoveries.append(rec)
        report_recovery(repo.kind, "onto an array volume", rec)
        assert rec.data_volume == name and rec.loop_device is None and rec.restore.volume("data").created
        check_recovery(history, rec, target)
        rec.close()
    finally:
        discard_volumes(ctx.array, ctx.connector, ctx.app.host, [name])


# -- (d) missing logs and points ---------------------------------------------------------------------

class HidingStore:
    """A store that pretends some keys do not exist."""

    def __init__(self, inner: Store, hidden: set[str]) -> None:
        self.inner, self.hidden, self.url = inner, hidden, inner.url

    def put(self, key: str, data: bytes, create_only: bool = False) -> None:
        self.inner.put(key, data, create_only)

    def get(self, key: str) -> bytes:
        if key in self.hidden:
            raise NotFound(key)
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return key not in self.hidden and self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return (o for o in self.inner.list(prefix) if o.key not in self.hidden)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def hiding(repo: Repo, app: str, *names: str) -> Repository:
    store = HidingStore(repo.repo.store, {f"logs/{app}/{n}" for n in names})
    return Repository.open(store, transfer=repo.repo.transfer)


def test_missing_logs_fail_with_their_name(repo: Repo, history: History, work: Path):
    from copydata.engines.postgres import wal
    from copydata.replication.recovery import recover_from_repo
    from copydata.replication.restore import LogMissing, RecoveryError

    if repo.kind != "posix":
        pytest.skip("store-independent")
    first, second = history.snapshots
    # needed to make the point consistent: refused before anything is restored
    needed = second.engine_meta["start_segment"]
    with pytest.raises(LogMissing, match=needed) as err:
        recover_from_repo(hiding(repo, history.app, needed), history.app, work / "miss-1", free_port(),
                          point=second.pgroup_snapshot)
    assert err.value.name == needed and not (work / "miss-1" / "data.img").exists()

    # needed to roll the first point forward to the target: the replay runs out of WAL there
    tli, stop_no = wal.parse(first.engine_meta["stop_segment"])
    gap = wal.name(tli, stop_no + 1)
    assert wal.parse(gap)[1] < wal.parse(second.engine_meta["start_segment"])[1]
    with pytest.raises(LogMissing, match=gap) as err:
        recover_from_repo(hiding(repo, history.app, gap), history.app, work / "miss-2", free_port(),
                          point=first.pgroup_snapshot, point_in_time=whole_second_after(second.consistent_at, 1))
    assert err.value.name == gap
    assert not mounts_under(work / "miss-2") and not sysutil.loops_backed_by(work / "miss-2")

    with pytest.raises(RepositoryError, match="no point"):
        recover_from_repo(repo.repo, history.app, work / "miss-3", free_port(), point="no-such-point")
    with pytest.raises(RecoveryError, match="no point of rr is consistent at or before"):
        recover_from_repo(repo.repo, history.app, work / "miss-4", free_port(),
                          point_in_time=first.consistent_at - dt.timedelta(hours=1))


# -- the command line --------------------------------------------------------------------------------

def test_cli_points_restore_verify(repo: Repo, history: History, work: Path, capsys):
    import json

    from copydata.cli import main

    full_only(repo)
    conn = ["--conn-id", repo.conn_id] if repo.conn_id else []
    assert main(["repo", "points", repo.url, *conn, history.app, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["point"] for p in listed] == [s.pgroup_snapshot for s in history.snapshots]
    assert listed[0]["consistent_at"] == history.snapshots[0].consistent_at.isoformat()

    folder = work / f"cli-{repo.kind}"
    try:
        assert main(["repo", "restore", repo.url, *conn, history.app, history.snapshots[0].pgroup_snapshot,
                     "--to-dir", str(folder), "--role", "archive"]) == 0
        assert sha256_path(folder / "archive.img") == history.snapshot_sha(history.snapshots[0], "archive")
        assert "archive" in capsys.readouterr().out
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert main(["repo", "verify", repo.url, *conn, "--sample", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "manifests 2" in out


def test_operator_recovers_a_database(repo: Repo, history: History, work: Path):
    from copydata.airflow.operators.repo_restore import RepoRestoreOperator
    from copydata.replication.recovery import discard_recovery

    if repo.kind != "posix":
        pytest.skip("one store is enough for the operator")
    _, second = history.snapshots
    target = whole_second_after(second.consistent_at, 2)
    folder = work / "operator"
    op = RepoRestoreOperator(task_id="recover", url=repo.url, application=history.app,
                             point_in_time=target.isoformat(), destination=f"dir:{folder}", port=str(free_port()))
    try:
        result = op.execute({})
        assert result["point"] == second.pgroup_snapshot and result["target"] == target.isoformat()
        got = clone_ticks(Path(result["socket_dir"]), result["port"])
        assert got == committed_ticks(history.lab, target)
    finally:
        discard_recovery(folder)
    assert not folder.exists()
