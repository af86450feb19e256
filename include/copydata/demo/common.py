"""What the walkthroughs share: running a DAG with Airflow's own runner, and pointing connections at the lab."""

from __future__ import annotations

import json
import os

from copydata import paths
from copydata.lab.common import lab_host


def run_dag(dag_id: str, conf: dict | None = None) -> None:
    """Run one DAG with dag.test(): real operators and task instances, no scheduler needed."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(paths.dags_folder() / "copydata_dags.py"))
    if dag_id not in bag.dags:
        raise SystemExit(f"DAG {dag_id} was not built; import errors: {bag.import_errors}")
    run = bag.dags[dag_id].test(run_conf=conf or {})
    if run.state != "success":
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        raise SystemExit(f"{dag_id} ended {run.state}: {states}")


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
