"""`copydata lab postgres create|destroy` end to end: a lab on its own emulator in a temporary COPYDATA_HOME."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from copydata import cli, paths
from copydata.emulator import service
from copydata.lab import airflow_conns, pgserver, storage
from copydata.lab.common import LabError, parse_size
from copydata.lab.pgserver import PgLab

from conftest import loops_under


# -- pure helpers (no root) -------------------------------------------------------------------
def test_parse_size() -> None:
    assert parse_size("20G") == 20 * 2**30
    assert parse_size("1.5m") == 3 * 2**19
    assert parse_size("1000") == 1024  # rounded up to 512-byte sectors
    with pytest.raises(LabError):
        parse_size("big")


def test_settings_block_is_idempotent(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.conf"
    conf.write_text("shared_buffers = 128MB\n")
    lab = PgLab("x", tmp_path)
    block = pgserver.render_block(pgserver.settings(lab, 55999))
    assert pgserver.write_block(conf, block)
    assert not pgserver.write_block(conf, block)
    assert pgserver.configured_port(conf) == 55999
    assert pgserver.write_block(conf, pgserver.render_block(pgserver.settings(lab, 56000)))
    text = conf.read_text()
    assert text.count(pgserver.CONF_BEGIN) == 1 and "shared_buffers = 128MB" in text
    assert pgserver.configured_port(conf) == 56000


def test_env_lines_hide_the_token() -> None:
    endpoint = {"target": "127.0.0.1:18443", "api_token": "secret-token", "ca_file": "/ca.pem", "devices": "/dev/x"}
    line = airflow_conns.flasharray_conn(endpoint, "lab-h").env_line()
    assert "secret-token" not in line and airflow_conns.TOKEN_PLACEHOLDER in line


def test_env_lines_work_in_a_shell_for_any_lab_name() -> None:
    for name in ("plain", "with-dash"):
        line = airflow_conns.postgres_conn(name, 55432).env_line()
        var = f"AIRFLOW_CONN_COPYDATA_PG_{name.upper()}"
        script = line.replace("COMMAND", "printenv " + var) if line.startswith("env ") else f"{line}; printenv {var}"
        shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
        assert json.loads(shown) == {"conn_type": "postgres", "host": "127.0.0.1", "port": 55432,
                                     "login": "postgres", "schema": "postgres"}


# -- the lab on a real emulator (root) -------------------------------------------------------
@pytest.fixture(scope="module")
def lab_home() -> Iterator[Path]:
    """A COPYDATA_HOME the postgres user can reach; its emulator is stopped and checked at the end."""
    home = Path(tempfile.mkdtemp(prefix="copydata-lab-test-"))
    home.chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COPYDATA_HOME", str(home))
        mp.delenv("COPYDATA_SLA_DIR", raising=False)
        try:
            yield home
        finally:
            for pgdata in home.glob("lab/*/data/pgdata"):  # a failed test may leave a server running
                with contextlib.suppress(Exception):
                    pgserver.engine().stop(pgdata.parent)
            service.stop(home / "emulator")
            left = loops_under(home / "emulator")
            assert not left, f"loop devices left behind: {left}"
            if not storage.mounts_under(home):
                shutil.rmtree(home, ignore_errors=True)


def psql(lab: PgLab, port: int, sql: str, dbname: str = "postgres") -> str:
    cmd = [str(pgserver.engine().bin_dir / "psql"), "-h", str(lab.run_dir), "-p", str(port), "-U", "postgres",
           "-d", dbname, "-X", "-Atq", "-c", sql]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout:.0f} s"
        time.sleep(0.1)


def state_of(lab: PgLab, sla_file: Path) -> dict:
    """What a second create must leave untouched."""
    return {"postmaster": (lab.pgdata / "postmaster.pid").read_text(), "conf": lab.conf.read_text(),
            "conf_mtime": lab.conf.stat().st_mtime_ns, "sla_mtime": sla_file.stat().st_mtime_ns}


def array_objects(name: str) -> dict:
    endpoint = service.read_endpoint(paths.emulator_state())
    with storage.array_session(endpoint) as s:
        return {"volumes": {v: s.array.find_volume(v) for v in (f"{name}-data", f"{name}-wal")},
                "pgroups": {g: storage.pgroup_exists(s, g) for g in (name, f"{name}-logs")}}


def snapshot_both(name: str) -> None:
    endpoint = service.read_endpoint(paths.emulator_state())
    with storage.array_session(endpoint) as s:
        s.array.snapshot_pgroup(name)
        s.array.snapshot_pgroup(f"{name}-logs")


@pytest.mark.root
def test_create_use_recreate_destroy(lab_home: Path, capsys: pytest.CaptureFixture) -> None:
    name = f"t{uuid.uuid4().hex[:6]}"
    sla_dir = lab_home / "slas"
    create = ["lab", "postgres", "create", name, "--no-airflow", "--sla-dir", str(sla_dir), "--data-size", "2G",
              "--archive-size", "1G", "--pgbench-scale", "1"]
    assert cli.main(create) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    assert "new ext4" in first and "initialised" in first and "started" in first
    lab, sla_file = PgLab(name, lab_home / "lab" / name), sla_dir / f"lab-{name}.yaml"
    port = pgserver.configured_port(lab.conf)
    assert port is not None and f"127.0.0.1:{port}" in first

    # the server answers over its socket, and switching WAL lands a segment in the archive volume
    assert psql(lab, port, "SELECT 1") == "1"
    assert psql(lab, port, "SELECT count(*) FROM pgbench_accounts", "pgbench") == "100000"
    segment = psql(lab, port, "CREATE TABLE t AS SELECT 1 AS x; SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(lab.wal_dir / segment)
    assert lab.wal_dir.stat().st_mode & 0o777 == 0o700

    # a second create changes nothing
    before = state_of(lab, sla_file)
    assert cli.main(create) == 0, capsys.readouterr().err
    second = capsys.readouterr().out
    assert state_of(lab, sla_file) == before
    for fragment in ("exists", "already running", "settings unchanged", "unchanged", "left as is"):
        assert fragment in second
    for fragment in ("created", "new ext4", "initialised", "written"):
        assert fragment not in second.split("== lab")[0], second

    if importlib.util.find_spec("copydata.sla") and importlib.util.find_spec("copydata.sla.loader"):
        from copydata.sla.loader import load_sla
        sla = load_sla(sla_file)
        assert sla.applications[0].protection_group == name

    objects = array_objects(name)
    assert all(objects["volumes"].values()) and all(objects["pgroups"].values())
    snapshot_both(name)  # destroy must eradicate snapshots too

    destroy = ["lab", "postgres", "destroy", name, "--sla-dir", str(sla_dir), "--no-airflow"]
    assert cli.main(destroy) == 0, capsys.readouterr().err
    assert "destroyed" in capsys.readouterr().out
    objects = array_objects(name)
    assert not any(objects["volumes"].values()) and not any(objects["pgroups"].values())
    assert not storage.mounts_under(lab.root) and not lab.root.exists() and not sla_file.exists()

    assert cli.main(destroy) == 0
    assert "did not exist" in capsys.readouterr().out
