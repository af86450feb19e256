"""Restore from a repository without a database or root: the WAL and binary log plans, the log prefetcher
and its waiting restore_command, destinations, restore_point to files (full and delta), the `copydata repo`
commands and RepoRestoreOperator over a file:// repository. The end-to-end runs are in
test_restore_from_repo.py and test_restore_from_repo_mariadb.py."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from copydata.replication import logfetch
from copydata.replication.recovery import engine_family, plan_binlogs, plan_wal
from copydata.replication.restore import (
    LocalFiles,
    LogMissing,
    RecoveryError,
    choose_point,
    list_points,
    parse_destination,
    parse_time,
    point_info,
    restore_point,
    volumes_by_role,
)
from copydata.repo import Manifest, Repository, RepositoryError
from copydata.repo.images import backup_image
from copydata.repo.store import PosixStore

KiB, MiB = 1 << 10, 1 << 20
APP = "pg1"


def seg(n: int, tli: int = 1) -> str:
    return f"{tli:08X}{n // 256:08X}{n % 256:08X}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image(path: Path, blocks: dict[int, bytes], size: int = 16 * 64 * KiB, bs: int = 64 * KiB) -> Path:
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.truncate(size)
        for i, data in blocks.items():
            f.seek(i * bs)
            f.write(data.ljust(bs, b"."))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(PosixStore(tmp_path / "repo"), block_size=64 * KiB)


def add_point(repo: Repository, tmp_path: Path, point: str, at: str, blocks: dict[int, bytes],
              start: str = seg(4), stop: str = seg(5)) -> Path:
    src = image(tmp_path / f"{point}.src", blocks)
    entry = backup_image(repo, src, name="pg1-data", role="data", array_snapshot=f"pg1.{point}.pg1-data")
    engine = {"engine": "postgresql", "consistent_at": at, "roles": {"data": "pg1-data"},
              "snapshot": {"start_segment": start, "stop_segment": stop, "timeline": 1,
                           "backup_label": f"START WAL LOCATION: 0/4000028 (file {start})\n"}}
    repo.write_manifest(Manifest(application=APP, point=point, volumes=[entry], engine=engine))
    return src


# -- parsing -----------------------------------------------------------------------------------------

def test_parse_time_and_destination() -> None:
    assert parse_time("latest") is None and parse_time(None) is None
    assert parse_time("2026-05-01T10:00:00Z").isoformat() == "2026-05-01T10:00:00+00:00"
    assert parse_time("2026-05-01T12:00:00+02:00").hour == 10
    with pytest.raises(ValueError, match="time zone"):
        parse_time("2026-05-01T10:00:00")
    assert parse_destination("/x/y").folder == Path("/x/y")
    assert parse_destination("file:///x/y").folder == Path("/x/y")
    assert parse_destination("dir:/x").folder == Path("/x")
    assert parse_destination({"dir": "/x"}).folder == Path("/x")
    arr = parse_destination("array:restored")
    assert arr.is_array and arr.volume_names(["data", "archive"]) == {"data": "restored-data",
                                                                       "archive": "restored-archive"}
    assert parse_destination("array:data=v1, archive=v2").volume_names(["data"]) == {"data": "v1", "archive": "v2"}
    assert parse_destination({"volumes": {"data": "v"}}).volumes == {"data": "v"}
    for bad in ("relative/path", "array:", {"x": 1}):
        with pytest.raises(ValueError):
            parse_destination(bad)


# -- the WAL plan ------------------------------------------------------------------------------------

def test_plan_takes_the_consistent_range_and_the_unbroken_run_after_it() -> None:
    meta = {"start_segment": seg(4), "stop_segment": seg(5)}
    names = [seg(n) for n in (2, 3, 4, 5, 6, 7, 9, 10)] + ["00000002.history", seg(3, 2)]
    plan = plan_wal(names, meta, APP)
    assert plan.segments == [seg(n) for n in (4, 5, 6, 7)]
    assert plan.histories == ["00000002.history"]
    assert plan.next_missing == seg(8)
    assert plan.names[0] == "00000002.history"
    with pytest.raises(LogMissing, match=seg(5)) as err:
        plan_wal([seg(4), seg(6)], meta, APP)
    assert err.value.name == seg(5)
    with pytest.raises(LogMissing, match=seg(4)):
        plan_wal([], meta, APP)
    # the start segment can come from the backup label alone; a later timeline continues the run
    label = {"backup_label": f"START WAL LOCATION: 0/4000028 (file {seg(4)})\nCHECKPOINT LOCATION: 0/4000060\n"}
    assert plan_wal([seg(4), seg(5, 2), seg(6, 2)], label, APP).segments == [seg(4), seg(5, 2), seg(6, 2)]
    with pytest.raises(RecoveryError, match="start_segment"):
        plan_wal([seg(4)], {}, APP)


def test_binlog_plan_takes_the_snapshots_file_and_the_unbroken_run_after_it(repo: Repository,
                                                                             tmp_path: Path) -> None:
    names = [f"mariadb-bin.{n:06d}" for n in (1, 2, 3, 5)] + ["other-bin.000004", seg(4)]
    plan = plan_binlogs(names, {"binlog_file": "mariadb-bin.000002", "binlog_pos": 328}, APP)
    assert plan.segments == ["mariadb-bin.000002", "mariadb-bin.000003"] and plan.histories == []
    assert plan.next_missing == "mariadb-bin.000004"
    with pytest.raises(LogMissing, match="mariadb-bin.000004") as err:
        plan_binlogs(names, {"binlog_file": "mariadb-bin.000004"}, APP)
    assert err.value.name == "mariadb-bin.000004"
    with pytest.raises(RecoveryError, match="binlog_file"):
        plan_binlogs(names, {}, APP)
    add_point(repo, tmp_path, "p1", "2026-05-01T10:00:00+00:00", {0: b"a"})
    info = point_info(repo.read_manifest(APP, "p1"))
    assert engine_family(info) == "postgresql"
    with pytest.raises(RecoveryError, match="a sqlserver point"):
        engine_family(replace(info, engine="sqlserver"))
    assert engine_family(replace(info, engine="mariadb")) == "mariadb"


# -- the prefetcher ----------------------------------------------------------------------------------

def put_logs(repo: Repository, count: int, size: int = 200 * KiB) -> list[str]:
    names = []
    for n in range(count):
        repo.put_log(APP, seg(n + 1), (f"segment {n} ".encode() * size)[:size])
        names.append(seg(n + 1))
    return names


def test_fetcher_places_every_file_in_order_and_verified(repo: Repository, tmp_path: Path) -> None:
    names = put_logs(repo, 12)
    stats = logfetch.fetch_all(repo, APP, names, tmp_path / "f", workers=3)
    assert stats.fetched == 12 and stats.finished is not None and stats.error is None
    for n in names:
        assert (tmp_path / "f" / "wal" / n).read_bytes() == repo.get_log(APP, n)
    assert not list((tmp_path / "f" / "pending").iterdir())
    assert not list((tmp_path / "f" / "wal").glob("*.copydata-tmp"))


def test_fetcher_reads_ahead_of_the_consumer_only(repo: Repository, tmp_path: Path) -> None:
    names = put_logs(repo, 20, size=64 * KiB)
    folder = tmp_path / "f"
    with logfetch.LogFetcher(repo, APP, names, folder, workers=2, readahead=4) as f:
        f.wait(names[3], timeout=10)
        time.sleep(0.3)
        assert f.stats.fetched == 4                      # nothing asked for yet: 4 ahead of position 0
        with open(folder / logfetch.REQUESTS_LOG, "a") as log:
            log.write(f"W {names[9]} 0\n")               # the consumer asks for the 10th file
        f.wait(names[13], timeout=10)
        time.sleep(0.3)
        assert f.stats.fetched == 14
        assert (folder / "pending" / names[14]).exists()
    assert not list((folder / "pending").iterdir())      # stop() releases the markers left


def test_a_failed_fetch_releases_the_markers_and_names_the_log(repo: Repository, tmp_path: Path) -> None:
    names = put_logs(repo, 6)
    index = repo.store.get(f"logs/{APP}/{names[2]}")
    repo.store.delete(f"logs/{APP}/{names[2]}")
    with logfetch.LogFetcher(repo, APP, names, tmp_path / "f", workers=1, readahead=10) as f:
        with pytest.raises(logfetch.FetchError, match=names[2]):
            f.wait(timeout=10)
        assert not list((tmp_path / "f" / "pending").iterdir())
    repo.store.put(f"logs/{APP}/{names[2]}", index)


def test_restore_command_waits_for_pending_files_and_fails_fast_on_unplanned(repo: Repository,
                                                                             tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "wal").mkdir(parents=True)
    (folder / "pending").mkdir()
    command = logfetch.restore_command(folder, max_wait=5)

    def run(name: str, dest: Path) -> subprocess.CompletedProcess:
        cmd = command.replace("%f", name).replace("%p", str(dest))
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)

    (folder / "pending" / "A").touch()
    (folder / "wal" / "B").write_bytes(b"b")

    def arrive() -> None:
        time.sleep(0.5)
        (folder / "wal" / "A").write_bytes(b"a")
        (folder / "pending" / "A").unlink()

    threading.Thread(target=arrive).start()
    t = time.monotonic()
    assert run("A", tmp_path / "outA").returncode == 0
    assert time.monotonic() - t >= 0.4 and (tmp_path / "outA").read_bytes() == b"a"
    assert run("B", tmp_path / "outB").returncode == 0
    t = time.monotonic()
    assert run("00000002.history", tmp_path / "outC").returncode == 1
    assert time.monotonic() - t < 2
    req = logfetch.read_requests(folder)
    assert [n for n, _, _ in req.served] == ["A", "B"] and req.refused == ["00000002.history"]
    assert 0.4 <= req.stall < 3
    with pytest.raises(ValueError):
        logfetch.restore_command(tmp_path / "with space")


# -- points and restores to files --------------------------------------------------------------------

def test_points_are_listed_and_chosen_by_time(repo: Repository, tmp_path: Path) -> None:
    add_point(repo, tmp_path, "p2", "2026-05-01T11:00:00+00:00", {0: b"b"})
    add_point(repo, tmp_path, "p1", "2026-05-01T10:00:00+00:00", {0: b"a"})
    assert [p.point for p in list_points(repo, APP)] == ["p1", "p2"]
    assert choose_point(repo, APP, parse_time("2026-05-01T10:30:00Z")).point == "p1"
    assert choose_point(repo, APP, parse_time("2026-05-01T11:00:00Z")).point == "p2"
    assert choose_point(repo, APP, None).point == "p2"
    with pytest.raises(RecoveryError, match="p1 .2026-05-01T10:00:00"):
        choose_point(repo, APP, parse_time("2026-05-01T09:00:00Z"))
    with pytest.raises(RecoveryError, match="after the target"):
        choose_point(repo, APP, parse_time("2026-05-01T10:30:00Z"), point="p2")
    with pytest.raises(RepositoryError, match="no point pg1/p9"):
        choose_point(repo, APP, None, point="p9")
    info = list_points(repo, APP)[0]
    assert list(volumes_by_role(info.manifest)) == ["data"] and info.as_dict()["volumes"]["data"]["size"]


def test_restore_to_files_then_delta_restore_writes_only_the_differing_blocks(repo: Repository,
                                                                              tmp_path: Path) -> None:
    src1 = add_point(repo, tmp_path, "p1", "2026-05-01T10:00:00+00:00", {0: b"a", 3: b"b", 7: b"c"})
    src2 = add_point(repo, tmp_path, "p2", "2026-05-01T11:00:00+00:00", {0: b"a", 3: b"B", 9: b"d"})
    out = LocalFiles(tmp_path / "out")
    first = restore_point(repo, APP, "p1", out).volume("data")
    assert first.created and first.written == 3 and sha256_file(out.path("data")) == sha256_file(src1)
    delta = restore_point(repo, APP, "p2", out).volume("data")
    assert not delta.created
    assert (delta.written, delta.zeroed, delta.unchanged) == (2, 1, 13)   # 3 and 9 written, 7 zeroed
    assert sha256_file(out.path("data")) == sha256_file(src2)
    with pytest.raises(RepositoryError, match="no volume of role archive"):
        restore_point(repo, APP, "p2", out, roles=["archive"])
    assert not list(repo.store.list("locks/"))


# -- the command line and the operator ---------------------------------------------------------------

def test_cli_over_a_file_repository(repo: Repository, tmp_path: Path, capsys) -> None:
    from copydata.cli import main

    src = add_point(repo, tmp_path, "p1", "2026-05-01T10:00:00+00:00", {1: b"x"})
    url = f"file://{tmp_path / 'repo'}"
    assert main(["repo", "points", url, APP]) == 0
    assert "p1" in capsys.readouterr().out
    assert main(["repo", "points", url, APP, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["consistent_at"] == "2026-05-01T10:00:00+00:00"
    assert main(["repo", "restore", url, APP, "p1", "--to-dir", str(tmp_path / "d")]) == 0
    assert sha256_file(tmp_path / "d" / "data.img") == sha256_file(src)
    capsys.readouterr()
    assert main(["repo", "verify", url, "--sample", "0.5"]) == 0
    assert capsys.readouterr().out.startswith("OK: manifests 1")
    assert main(["repo", "restore", url, APP, "nope", "--to-dir", str(tmp_path / "e")]) == 1
    assert "no point pg1/nope" in capsys.readouterr().err
    assert main(["repo", "points", f"file://{tmp_path / 'empty'}", APP]) == 1


def test_operator_restores_a_point_to_a_folder(repo: Repository, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from copydata.airflow.operators.repo_restore import RepoRestoreOperator

    src = add_point(repo, tmp_path, "p1", "2026-05-01T10:00:00+00:00", {2: b"y"})
    op = RepoRestoreOperator(task_id="restore", url=f"file://{tmp_path / 'repo'}", application=APP, point="p1",
                             destination=f"dir:{tmp_path / 'out'}")
    result = op.execute({})
    assert result["volumes"][0]["written"] == 1
    assert sha256_file(tmp_path / "out" / "data.img") == sha256_file(src)
    bad = RepoRestoreOperator(task_id="bad", url=f"file://{tmp_path / 'repo'}", application=APP, point="p9",
                              destination=str(tmp_path / "out2"))
    with pytest.raises(AirflowFailException, match="no point"):
        bad.execute({})
    assert set(RepoRestoreOperator.template_fields) >= {"url", "conn_id", "key_conn_id", "application", "point",
                                                        "point_in_time", "destination"}


# -- the repo_restore DAG: the repository named by the SLA's replication target ------------------------

def sla_file(folder: Path, url: str, allowed_roles: list[str]) -> Path:
    """The documentation example SLA, its application renamed pg1, with targets local (url) and dr."""
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "docs/examples/sla-postgres.yaml").read_text())
    doc["applications"][0]["name"] = APP
    doc["clone_policy"]["allowed_roles"] = allowed_roles
    doc["replication"] = {"targets": [{"name": "local", "url": url}, {"name": "dr", "url": "file:///nonexistent"}]}
    path = folder / "slas" / "pg1.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc))
    return path


def test_repo_restore_dag_restores_a_point_from_the_slas_target(repo: Repository, tmp_path: Path, airflow_db,
                                                                 monkeypatch) -> None:
    from pglab import run_dag

    src = add_point(repo, tmp_path, "p1", "2026-05-01T10:00:00+00:00", {0: b"a", 5: b"b", 15: b"c"})
    add_point(repo, tmp_path, "p2", "2026-05-01T11:00:00+00:00", {0: b"other"})
    path = sla_file(tmp_path, f"file://{tmp_path / 'repo'}", ["dba"])
    monkeypatch.setenv("COPYDATA_SLA_DIR", str(path.parent))
    out = tmp_path / "restored"
    run_dag(f"copydata__{APP}__repo_restore", {"target": "local", "point": "p1", "destination": f"dir:{out}"})
    assert [p.name for p in out.iterdir()] == ["data.img"]
    expected = volumes_by_role(repo.read_manifest(APP, "p1"))["data"].sha256
    assert sha256_file(out / "data.img") == expected == sha256_file(src)


def test_repo_restore_by_sla_target_refuses_a_bad_target_and_users_outside_allowed_roles(
        repo: Repository, tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from copydata.airflow.operators.repo_restore import RepoRestoreOperator

    src = add_point(repo, tmp_path, "p1", "2026-05-01T10:00:00+00:00", {2: b"y"})
    path = sla_file(tmp_path, f"file://{tmp_path / 'repo'}", ["dba"])
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,ana:dba,viewer1:viewer")

    def run(target: str, user: str | None, out: str) -> dict:
        op = RepoRestoreOperator(task_id="r", sla_file=str(path), target=target, application=APP, point="p1",
                                 destination=str(tmp_path / out))
        return op.execute({"dag_run": SimpleNamespace(triggering_user_name=user)})

    with pytest.raises(AirflowFailException, match="SLA example has no replication target 'nope'; its targets: "
                                                   "local, dr"):
        run("nope", None, "a")
    with pytest.raises(AirflowFailException, match=r"user 'viewer1' may not do this for pg1: .*\['dba'\]"):
        run("local", "viewer1", "b")
    assert not (tmp_path / "b").exists()
    assert run("local", "ana", "c")["volumes"][0]["written"] == 1
    assert sha256_file(tmp_path / "c" / "data.img") == sha256_file(src)
    with pytest.raises(ValueError, match="either url"):
        RepoRestoreOperator(task_id="both", url="file:///x", sla_file=str(path), target="local", application=APP,
                            destination="/x")


def test_manifests_and_logs_as_replication_writes_them(repo: Repository, tmp_path: Path) -> None:
    """copydata.replication.replicate names volume entries by role and tags logs with their log backup."""
    from copydata.replication.recovery import latest_covered

    src = image(tmp_path / "src", {4: b"z"})
    entry = backup_image(repo, src, name="data", role="data", array_snapshot="pg1.s1.pg1-data")
    engine = {"engine": "postgresql", "consistent_at": "2026-05-01T10:00:00+00:00",
              "roles": {"data": "pg1-data"}, "snapshot": {"start_segment": seg(4)}}
    repo.write_manifest(Manifest(application=APP, point="s1", volumes=[entry], engine=engine))
    assert list(volumes_by_role(repo.read_manifest(APP, "s1"))) == ["data"]
    for n in (4, 5):
        repo.put_log(APP, seg(n), b"w" * 1000, metadata={"log_backup": "pg1-logs.l1"})
    assert latest_covered(repo, APP, [seg(4), seg(5)]) is None          # latest = the end of the stored WAL
    repo.put_log(APP, seg(6), b"w" * 1000, metadata={"covered_to": "2026-05-01T10:05:00Z"})
    assert latest_covered(repo, APP, [seg(4), seg(5), seg(6)]).isoformat() == "2026-05-01T10:05:00+00:00"
    assert restore_point(repo, APP, "s1", LocalFiles(tmp_path / "o")).volume("data").written == 1
