"""Point-in-time recovery of a MariaDB point from a copydata repository alone: a lab MariaDB under the
ticker + OLTP load, a snapshot and a log backup under load and a second log backup later (through
copydata.ops), replicated to a file:// repository by copydata.replication.replicate, then:

- a recovery at a past second (local image file + loop device + binary logs fetched from the repository,
  replayed by the MariaDB engine) holds exactly the ticks committed before that second, no partial OLTP
  transaction;
- `latest` recovers to the newest covered_to of the log indexes; discard_recovery, from the work folder
  alone, leaves no server, mount or loop device;
- a missing binary log fails with LogMissing naming it (the snapshot's file: before anything is restored;
  a later one: when the replay runs out of logs).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_restore_from_repo import HidingStore, mounts_under, restores_folder

from copydata import sysutil
from copydata.repo import Repository
from copydata.sysutil import free_port

from mylab import MyLoad, kill_mariadb_under, mariadb_lab
from pglab import lab_home, whole_second_after

pytestmark = pytest.mark.root
MiB = 1 << 20


@dataclass
class History:
    lab: object
    ctx: object
    snapshot: object
    log_backups: list
    repo: Repository

    @property
    def app(self) -> str:
        return self.ctx.app.name


@pytest.fixture(scope="module")
def mlab(airflow_db):
    with lab_home() as home, mariadb_lab("rm", home) as lb:
        yield lb


@pytest.fixture(scope="module")
def work(mlab) -> Iterator[Path]:
    """Recoveries go below this folder; whatever a failed test leaves there is released before the lab goes."""
    with restores_folder(mlab.home, kill_mariadb_under) as root:
        yield root


@pytest.fixture(scope="module")
def history(mlab, work: Path) -> Iterator[History]:
    """A snapshot and a log backup under load, a second log backup later; replicated to a file:// repository."""
    from copydata.airflow.app_context import build_context
    from copydata.ops.logs import log_backup
    from copydata.ops.snapshot import take_snapshot
    from copydata.replication.replicate import replicate
    from copydata.replication.target import Target
    from copydata.repo.store import PosixStore

    ctx, hook = build_context(mlab.sla_file, mlab.name, actor="pytest")
    try:
        load = MyLoad(mlab).start()
        time.sleep(1.5)
        take_snapshot(ctx, "p1")
        time.sleep(2.5)
        log_backup(ctx, "l1")
        time.sleep(2.5)
        load.finish()
        time.sleep(1.2)
        log_backup(ctx, "l2")
        snaps, lbs = ctx.catalog.snapshots(mlab.name), ctx.catalog.log_backups(mlab.name)
        assert len(snaps) == 1 and len(lbs) == 2
        folder = work / "repo"
        repo = Repository.init(PosixStore(folder), block_size=MiB)
        t = time.monotonic()
        run = replicate(ctx, Target(name="rm", url=f"file://{folder}"), repo=repo)
        assert run.written == [snaps[0].pgroup_snapshot]
        print(f"\nreplicated 1 point and {len(repo.logs(mlab.name))} binary logs in {time.monotonic() - t:.1f} s")
        yield History(mlab, ctx, snaps[0], lbs, repo)
    finally:
        hook.close()


def expected_ticks(lab, target: dt.datetime) -> set[int]:
    """The documented rule: every transaction whose commit began before the target second."""
    with contextlib.closing(lab.connect()) as c:
        cur = c.cursor()
        cur.execute("SELECT id FROM app.ticks WHERE ts < %s", (target.astimezone(dt.UTC).replace(tzinfo=None),))
        return {r[0] for r in cur.fetchall()}


def check_recovery(history: History, rec, target: dt.datetime) -> None:
    from copydata.engines.mariadb import sql

    with contextlib.closing(sql.connect(rec.db)) as c:
        cur = c.cursor()
        cur.execute("SELECT id FROM app.ticks")
        got = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT (SELECT sum(bal) FROM app.acct), (SELECT count(*) FROM app.hist)")
        bal, hist = cur.fetchone()
    want = expected_ticks(history.lab, target)
    assert want, "the ticker committed nothing before the target"
    assert got == want, (f"recovery to {target}: {len(got)} ticks, expected {len(want)}; "
                         f"extra {sorted(got - want)[:5]}, missing {sorted(want - got)[:5]}")
    assert int(bal or 0) == 5 * int(hist)   # no partial transaction


def report(label: str, rec) -> None:
    t = rec.timings
    print(f"{label}: point {rec.point} to {rec.target}; data restore {t['restore_data_s']:.1f} s; "
          f"{rec.fetch.fetched}/{rec.fetch.planned} binary logs ({rec.fetch.bytes / MiB:.1f} MiB); "
          f"replay {t['replay_s']:.1f} s; total {t['total_s']:.1f} s")


@pytest.fixture
def recoveries() -> Iterator[list]:
    made: list = []
    yield made
    for rec in made:
        rec.close()


def test_recovery_at_a_past_second_holds_exactly_the_ticks_before_it(history: History, work: Path,
                                                                     recoveries: list):
    from copydata.replication.recovery import recover_from_repo

    target = whole_second_after(history.snapshot.consistent_at, 1)
    assert target < history.log_backups[0].covered_to
    rec = recover_from_repo(history.repo, history.app, work / "pitr", free_port(),
                            point_in_time=target.isoformat().replace("+00:00", "Z"))
    recoveries.append(rec)
    report("past second", rec)
    assert rec.point == history.snapshot.pgroup_snapshot and rec.target == target
    assert rec.data_image is not None and rec.loop_device and rec.data_volume is None
    assert rec.summary()["engine"] == "mariadb" and rec.fetch.fetched >= 2
    check_recovery(history, rec, target)
    rec.close()
    assert not rec.workdir.exists() and not sysutil.loops_backed_by(work / "pitr")


def test_latest_then_discard_leaves_no_server_mount_or_loop_device(history: History, work: Path,
                                                                   recoveries: list):
    from copydata.engines.mariadb import server
    from copydata.replication.recovery import discard_recovery, recover_from_repo

    last = history.log_backups[-1]
    rec = recover_from_repo(history.repo, history.app, work / "latest", free_port(), point_in_time="latest")
    recoveries.append(rec)
    report("latest", rec)
    assert rec.target == last.covered_to
    check_recovery(history, rec, last.covered_to)
    pids = server.pids_on(rec.data_mount / "mysql")
    assert pids
    discard_recovery(rec.workdir)   # as a later task would: from the work folder alone
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not rec.workdir.exists()
    assert str(rec.workdir) not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(rec.workdir) not in Path("/proc/mounts").read_text()


def test_missing_binary_logs_fail_with_their_name(history: History, work: Path):
    from copydata.replication.recovery import recover_from_repo
    from copydata.replication.restore import LogMissing

    def hiding(*names: str) -> Repository:
        store = HidingStore(history.repo.store, {f"logs/{history.app}/{n}" for n in names})
        return Repository.open(store, transfer=history.repo.transfer)

    first = history.snapshot.engine_meta["binlog_file"]
    with pytest.raises(LogMissing, match=first) as err:
        recover_from_repo(hiding(first), history.app, work / "miss-1", free_port())
    assert err.value.name == first and not (work / "miss-1" / "data.img").exists()

    last = history.log_backups[-1]   # its last file holds the logs from the first backup to the second
    with pytest.raises(LogMissing, match=last.end_segment) as err:
        recover_from_repo(hiding(last.end_segment), history.app, work / "miss-2", free_port(),
                          point_in_time=last.covered_to)
    assert err.value.name == last.end_segment
    assert not mounts_under(work / "miss-2") and not sysutil.loops_backed_by(work / "miss-2")
