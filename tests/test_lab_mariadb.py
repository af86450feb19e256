"""`copydata lab mariadb create|destroy` end to end: a lab on its own emulator in a temporary COPYDATA_HOME."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from copydata import cli, paths
from copydata.emulator import service
from copydata.lab import airflow_conns, mariadb, myserver, storage
from copydata.lab.myserver import MyLab

from conftest import loops_under


# -- pure helpers (no root) -------------------------------------------------------------------
def test_option_file(tmp_path: Path) -> None:
    lab = MyLab("x", tmp_path)
    lab.run_dir.mkdir()
    text = myserver.render_cnf(lab, 53999)
    assert myserver.write_cnf(lab.cnf, text)
    assert not myserver.write_cnf(lab.cnf, text)
    assert myserver.configured_port(lab.cnf) == 53999
    assert "\nlog_bin=mariadb-bin\n" in text and f"\ndatadir={tmp_path}/data/mysql\n" in text
    assert f"[client]\nsocket={lab.socket}\n" in text and "default-time-zone='+00:00'" in text
    assert myserver.write_cnf(lab.cnf, myserver.render_cnf(lab, 54000))
    assert myserver.configured_port(lab.cnf) == 54000


def test_native_hash() -> None:  # as the server computes it: SELECT PASSWORD('pw123')
    assert myserver.native_hash("pw123") == "*0E3F627084AC4D30F4C5CE29E94187DCD60A7F21"


def test_names_and_env_line_hides_the_password(tmp_path: Path) -> None:
    lab = MyLab("x", tmp_path)
    assert [v.name for v in mariadb.lab_volumes(lab)] == ["x-data", "x-binlog"]
    assert mariadb.lab_pgroups("x") == {"x": ["x-data", "x-binlog"], "x-logs": ["x-binlog"]}
    spec = airflow_conns.mariadb_conn("x", 53306, "copydata", "s3cret-pw", lab.password_file)
    line = spec.env_line()
    assert "s3cret-pw" not in line and "s3cret-pw" not in repr(spec) and str(lab.password_file) in line
    assert spec.conn_id == "copydata_mariadb_x" and spec.conn_type == "mysql" and spec.schema == "mysql"


# -- the lab on a real emulator (root) -------------------------------------------------------
@pytest.fixture(scope="module")
def lab_home() -> Iterator[Path]:
    """A COPYDATA_HOME the mysql user can reach; its emulator is stopped and checked at the end."""
    home = Path(tempfile.mkdtemp(prefix="copydata-mariadb-lab-test-", dir="/var/tmp"))
    home.chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COPYDATA_HOME", str(home))
        mp.delenv("COPYDATA_SLA_DIR", raising=False)
        try:
            yield home
        finally:
            for cnf in home.glob("lab/*/run/my.cnf"):  # a failed test may leave a server running
                with contextlib.suppress(Exception):
                    myserver.stop(MyLab(cnf.parents[1].name, cnf.parents[1]))
            service.stop(home / "emulator")
            left = loops_under(home / "emulator")
            assert not left, f"loop devices left behind: {left}"
            if not storage.mounts_under(home):
                shutil.rmtree(home, ignore_errors=True)


def query(args: myserver.ClientArgs, sql: str, tcp: bool = False) -> list[list[str]]:
    proc = subprocess.run(args.cli("--batch", "--skip-column-names", "-e", sql, tcp=tcp), env=args.cli_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


def state_of(lab: MyLab, sla_file: Path, args: myserver.ClientArgs) -> dict:
    """What a second create must leave untouched (the binlog position too: it writes nothing)."""
    return {"pid": lab.pidfile.read_text(), "cnf": lab.cnf.read_text(), "cnf_mtime": lab.cnf.stat().st_mtime_ns,
            "pw_mtime": lab.password_file.stat().st_mtime_ns, "sla_mtime": sla_file.stat().st_mtime_ns,
            "binlog": query(args, "SHOW MASTER STATUS")}


def array_objects(name: str) -> dict:
    endpoint = service.read_endpoint(paths.emulator_state())
    with storage.array_session(endpoint) as s:
        return {"volumes": {v: s.array.find_volume(v) for v in (f"{name}-data", f"{name}-binlog")},
                "pgroups": {g: storage.pgroup_exists(s, g) for g in (name, f"{name}-logs")}}


def snapshot_both(name: str) -> None:
    endpoint = service.read_endpoint(paths.emulator_state())
    with storage.array_session(endpoint) as s:
        s.array.snapshot_pgroup(name)
        s.array.snapshot_pgroup(f"{name}-logs")


@pytest.mark.root
def test_create_use_recreate_destroy(lab_home: Path, capsys: pytest.CaptureFixture) -> None:
    name = f"m{uuid.uuid4().hex[:6]}"
    sla_dir = lab_home / "slas"
    create = ["lab", "mariadb", "create", name, "--no-airflow", "--sla-dir", str(sla_dir), "--data-size", "2G",
              "--archive-size", "1G", "--sysbench-tables", "1", "--sysbench-rows", "100"]
    assert cli.main(create) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    assert "new ext4" in first and "initialised" in first and "started" in first
    lab, sla_file = MyLab(name, lab_home / "lab" / name), sla_dir / f"lab-{name}.yaml"
    args = myserver.client_args(name)
    assert args.port >= myserver.PORT_BASE and f"127.0.0.1:{args.port}" in first
    assert args.password and args.password not in first
    assert lab.password_file.stat().st_mode & 0o777 == 0o600
    assert lab.binlog_archive.stat().st_mode & 0o777 == 0o700 and lab.binlog_archive.owner() == "mysql"

    # copydata answers over TCP and the socket, with the privileges snapshots and log backups need
    assert query(args, "SELECT 1", tcp=True) == [["1"]]
    assert query(args, "SELECT CURRENT_USER()") == [["copydata@localhost"]]
    assert query(args, "SELECT count(*) FROM sbtest.sbtest1") == [["100"]]
    query(args, "BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT; SHOW BINARY LOGS; BACKUP STAGE END", tcp=True)

    # the binlogs live in the datadir under a relative basename; FLUSH BINARY LOGS rotates one there
    assert query(args, "SHOW VARIABLES LIKE 'log_bin_basename'") == [["log_bin_basename",
                                                                    str(lab.datadir / "mariadb-bin")]]
    before = query(args, "SHOW MASTER STATUS")[0][0]
    after = query(args, "FLUSH BINARY LOGS; SHOW MASTER STATUS")[0][0]
    assert after != before and (lab.datadir / after).is_file() and (lab.datadir / before).is_file()
    index = (lab.datadir / "mariadb-bin.index").read_text().split()
    assert index[-2:] == [f"./{before}", f"./{after}"] and all(n.startswith("./mariadb-bin.") for n in index)

    # a second create changes nothing
    before_state = state_of(lab, sla_file, args)
    assert cli.main(create) == 0, capsys.readouterr().err
    second = capsys.readouterr().out
    assert state_of(lab, sla_file, args) == before_state
    for fragment in ("exists", "already running", "settings unchanged", "skipped", "left as is", "unchanged"):
        assert fragment in second
    for fragment in ("created", "new ext4", "initialised", "written"):
        assert fragment not in second.split("== lab")[0], second

    from copydata.sla.loader import load_sla
    app = load_sla(sla_file).applications[0]
    assert (app.engine.value, app.database_conn_id, app.data_directory, app.os_user) == \
        ("mariadb", f"copydata_mariadb_{name}", "mysql", "mysql")
    assert app.volumes == {"data": f"{name}-data", "archive": f"{name}-binlog"}

    objects = array_objects(name)
    assert all(objects["volumes"].values()) and all(objects["pgroups"].values())
    snapshot_both(name)  # destroy must eradicate snapshots too
    pid = myserver.server_pid(lab)

    destroy = ["lab", "mariadb", "destroy", name, "--sla-dir", str(sla_dir), "--no-airflow"]
    assert cli.main(destroy) == 0, capsys.readouterr().err
    assert "destroyed" in capsys.readouterr().out
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    objects = array_objects(name)
    assert not any(objects["volumes"].values()) and not any(objects["pgroups"].values())
    assert not storage.mounts_under(lab.root) and not lab.root.exists() and not sla_file.exists()

    assert cli.main(destroy) == 0
    assert "did not exist" in capsys.readouterr().out
