"""What the walkthroughs share: running a DAG with Airflow's own runner, and pointing connections at the lab."""

from __future__ import annotations

import io
import json
import os
import time

from copydata import paths
from copydata.lab.common import lab_host


def run_dag(dag_id: str, conf: dict | None = None):
    """Run one DAG with dag.test(): real operators and task instances, no scheduler needed. Returns the
    DagRun (see returned())."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(paths.dags_folder() / "copydata_dags.py"))
    if dag_id not in bag.dags:
        raise SystemExit(f"DAG {dag_id} was not built; import errors: {bag.import_errors}")
    run = bag.dags[dag_id].test(run_conf=conf or {})
    if run.state != "success":
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        raise SystemExit(f"{dag_id} ended {run.state}: {states}")
    return run


def returned(run, task_id: str):
    """What a task of a run_dag() run returned (its return_value XCom), or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id,
                                                 key="return_value", limit=1)).first()
        return None if row is None else XComModel.deserialize_value(row)


def quiet() -> io.StringIO:
    """Where the lab's step-by-step output goes while a walkthrough prints its own steps."""
    return io.StringIO()


def env_connections(db_conn_id: str, db_conn: dict) -> None:
    """dag.test reads AIRFLOW_CONN_* first: point them at the lab (the lab registers them in Airflow too)."""
    from copydata.emulator import service

    endpoint = service.read_endpoint(paths.emulator_state())
    host, fa_port = endpoint["target"].rsplit(":", 1)
    os.environ[f"AIRFLOW_CONN_{db_conn_id.upper()}"] = json.dumps(db_conn)
    os.environ["AIRFLOW_CONN_FLASHARRAY_DEFAULT"] = json.dumps(
        {"conn_type": "flasharray", "host": host, "port": int(fa_port), "password": endpoint["api_token"],
         "extra": {"ca_file": endpoint["ca_file"], "verify_tls": True, "devices_dir": endpoint["devices"],
                   "host_name": lab_host()}})


def pg_lab(steps, name: str, scale: int, data_size: int, archive_size: int):
    """Step: a lab PostgreSQL `name` on emulator volumes (pgbench at `scale`), the connections pointed at it.
    Returns (PgLab, port)."""
    from copydata.lab import postgres as labpg
    from copydata.lab.pgserver import PgLab, configured_port

    with steps.step(f"lab database '{name}' on emulator volumes (pgbench scale {scale})") as n:
        labpg.create(labpg.CreateOptions(name=name, data_size=data_size, archive_size=archive_size,
                                         pgbench_scale=scale), out=quiet())
        lab = PgLab.named(name)
        port = configured_port(lab.conf)
        env_connections(f"copydata_pg_{name}", {"conn_type": "postgres", "host": "127.0.0.1", "port": port,
                                                 "login": "postgres", "schema": "postgres"})
        n["text"] = f"127.0.0.1:{port}, SLA include/slas/lab-{name}.yaml"
    return lab, port


def backup_cycle(steps, sla: str, cycle: int, snapshot_how: str = "", log_how: str = "",
                 log_backups: int = 1) -> None:
    """Steps: DAG copydata__<sla>__snapshot, then log_backups times (3 s apart) copydata__<sla>__log_backup.
    snapshot_how, log_how: what the step does, shown after the DAG id."""
    with steps.step(f"cycle {cycle}: DAG copydata__{sla}__snapshot{f' ({snapshot_how})' if snapshot_how else ''}"):
        run_dag(f"copydata__{sla}__snapshot")
    for _ in range(log_backups):
        time.sleep(3)
        with steps.step(f"cycle {cycle}: DAG copydata__{sla}__log_backup{f' ({log_how})' if log_how else ''}"):
            run_dag(f"copydata__{sla}__log_backup")
