"""A PostgreSQL lab database on the emulator, under load, driven through the generated DAGs."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from copydata.lab.load import PgLoad, pgbench_sums

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Lab:
    name: str
    home: Path
    sla_dir: Path
    endpoint: dict
    port: int

    @property
    def sla_name(self) -> str:
        return f"lab-{self.name}"

    @property
    def sla_file(self) -> Path:
        return self.sla_dir / f"lab-{self.name}.yaml"

    @property
    def socket_dir(self) -> Path:
        return self.home / "lab" / self.name / "run"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname,
                               autocommit=True)


def set_connections(name: str, port: int) -> None:
    """AIRFLOW_CONN_* for the lab database and the emulator of $COPYDATA_HOME (dag.test reads them first)."""
    from copydata.demo.common import env_connections

    env_connections(f"copydata_pg_{name}", {"conn_type": "postgres", "host": "127.0.0.1", "port": port,
                                            "login": "postgres", "schema": "postgres"})


def stop_postgres_under(folder: Path) -> None:
    """Stop every PostgreSQL server whose data directory lies under folder (clones left by a failed test)."""
    for pid_file in folder.glob("**/postmaster.pid"):
        subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D",
                        str(pid_file.parent), "-m", "immediate", "stop"], capture_output=True, timeout=60)


@contextlib.contextmanager
def lab_home() -> Iterator[Path]:
    """A COPYDATA_HOME the postgres OS user can walk into (pytest's tmp folders are private to root)."""
    home = Path(tempfile.mkdtemp(prefix="copydata-test-", dir="/var/tmp"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def lab_env(home: Path) -> Iterator[Path]:
    """COPYDATA_HOME=home, its SLA folder (yielded) and a SQLite catalog in it; the previous values after."""
    saved = {k: os.environ.get(k) for k in ("COPYDATA_HOME", "COPYDATA_SLA_DIR", "COPYDATA_CATALOG_URL")}
    sla_dir = home / "slas"
    os.environ.update({"COPYDATA_HOME": str(home), "COPYDATA_SLA_DIR": str(sla_dir),
                       "COPYDATA_CATALOG_URL": f"sqlite:///{home / 'catalog.db'}"})
    try:
        yield sla_dir
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def lab(name: str, home: Path, pgbench_scale: int = 2) -> Iterator[Lab]:
    """COPYDATA_HOME=home; an emulator, a lab database with pgbench data; all torn down afterwards."""
    from copydata.emulator import service
    from copydata.lab import postgres as labpg
    from copydata.lab.pgserver import PgLab, configured_port

    with lab_env(home) as sla_dir:
        try:
            labpg.create(labpg.CreateOptions(name=name, data_size=4 << 30, archive_size=2 << 30, sla_dir=sla_dir,
                                             airflow=False, pgbench_scale=pgbench_scale))
            endpoint = service.read_endpoint(home / "emulator")
            port = configured_port(PgLab(name, home / "lab" / name).conf)
            set_connections(name, port)
            yield Lab(name, home, sla_dir, endpoint, port)
        finally:
            stop_postgres_under(home / "clones")
            with contextlib.suppress(Exception):
                labpg.destroy(name, sla_dir=sla_dir, airflow=False)
            stop_postgres_under(home / "lab")
            service.stop(home / "emulator")


class Load(PgLoad):
    def __init__(self, lab: Lab, seconds: int):
        super().__init__(lab.socket_dir, lab.port, seconds)


def committed_ticks(lab: Lab, upto: dt.datetime) -> set[int]:
    with lab.connect() as c:
        rows = c.execute("SELECT id FROM ticks WHERE pg_xact_commit_timestamp(xmin) <= %s", [upto]).fetchall()
    return {r[0] for r in rows}


def clone_ticks(socket_dir: Path, port: int) -> set[int]:
    with psycopg.connect(host=str(socket_dir), port=port, user="postgres", dbname="postgres") as c:
        return {r[0] for r in c.execute("SELECT id FROM ticks").fetchall()}


def pgbench_balanced(socket_dir: Path, port: int) -> tuple[int, int, int, int]:
    with psycopg.connect(host=str(socket_dir), port=port, user="postgres", dbname="pgbench") as c:
        return pgbench_sums(c)


def run_dag(dag_id: str, conf: dict | None = None, expect: str = "success"):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "copydata_dags.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    run = dag.test(run_conf=conf or {})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == expect, states
    return run


def whole_second_after(t: dt.datetime, plus: int = 0) -> dt.datetime:
    """The first whole second after t, plus `plus` seconds (a PITR target that is not a commit instant)."""
    return dt.datetime.fromtimestamp(math.floor(t.timestamp()) + 1 + plus, dt.UTC)
