"""The DAG factory: SLA files -> Airflow DAGs. Parsing is cheap: no array, database or catalog calls.

Per SLA: copydata__<sla>__snapshot, __log_backup, __retention; with replication targets also
copydata__<sla>__replicate (on the snapshot or log assets) and __replica_maintenance (daily).
Per application: copydata__<app>__clone, __clone_refresh, __clone_delete, __restore; with replication
targets also copydata__<app>__repo_restore (restore or recover from a target's repository).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pendulum
from airflow.sdk import DAG, AssetAny, Param

from copydata.airflow import assets
from copydata.airflow.operators.copydata import (
    CloneDeleteOperator,
    CloneOperator,
    CloneRefreshOperator,
    LogBackupOperator,
    RestoreOperator,
    RetentionOperator,
    SnapshotOperator,
)
from copydata.airflow.operators.replication import ReplicaMaintenanceOperator, ReplicateOperator
from copydata.airflow.operators.repo_restore import RepoRestoreOperator
from copydata.repo.layout import NAME_RE

START = pendulum.datetime(2026, 1, 1, tz="UTC")
CLONE_NAME = r"^[a-z0-9][a-z0-9-]{0,40}$"
_INSTANT = r"latest|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"
POINT = rf"^({_INSTANT})$"
POINT_OR_EMPTY = rf"^(|{_INSTANT})$"
POINT_HELP = "ISO 8601 UTC, e.g. 2026-11-27T10:15:00Z, or 'latest'"
REPO_POINT = rf"^({NAME_RE.pattern})?$"
DESTINATION = r"^(/|dir:/|file:///|array:\S)"


def _common(sla, kind: str, doc: str) -> dict:
    return {"start_date": START, "catchup": False, "max_active_runs": 1, "tags": ["copydata", sla.name, kind],
            "doc_md": doc, "default_args": {"retries": 2, "retry_delay": dt.timedelta(seconds=30)},
            "render_template_as_native_obj": True, "is_paused_upon_creation": True}


def _schedule(sla):
    from copydata.sla.model import airflow_schedule
    return airflow_schedule(sla)


def sla_dags(sla, sla_file: Path) -> list[DAG]:
    dags = [_snapshot_dag(sla, sla_file), _retention_dag(sla, sla_file)]
    if sla.log_backup is not None:
        dags.append(_log_dag(sla, sla_file))
    if sla.replication is not None and sla.replication.targets and sla.applications:
        dags += _replication_dags(sla, sla_file)
    for app in sla.applications:
        dags += app_dags(sla, app, sla_file)
    return dags


def _snapshot_dag(sla, sla_file: Path) -> DAG:
    with DAG(f"copydata__{sla.name}__snapshot", schedule=_schedule(sla),
             **_common(sla, "snapshot", f"Application-consistent snapshots for SLA **{sla.name}**.")) as dag:
        for app in sla.applications:
            snap = SnapshotOperator(task_id=f"snapshot__{app.name}", sla_file=str(sla_file), application=app.name,
                                    inlets=[assets.source(app.name)], outlets=[assets.snapshots(app.name)])
            if app.log_protection_group:
                snap >> LogBackupOperator(task_id=f"log_backup__{app.name}", sla_file=str(sla_file),
                                          application=app.name, outlets=[assets.logs(app.name)])
    return dag


def _log_dag(sla, sla_file: Path) -> DAG:
    with DAG(f"copydata__{sla.name}__log_backup", schedule=sla.log_backup.interval,
             **_common(sla, "log_backup", f"Log backups for SLA **{sla.name}**.")) as dag:
        for app in sla.applications:
            LogBackupOperator(task_id=f"log_backup__{app.name}", sla_file=str(sla_file), application=app.name,
                              inlets=[assets.source(app.name)], outlets=[assets.logs(app.name)])
    return dag


def _retention_dag(sla, sla_file: Path) -> DAG:
    with DAG(f"copydata__{sla.name}__retention", schedule=dt.timedelta(hours=1),
             **_common(sla, "retention", f"Tiered retention for SLA **{sla.name}**.")) as dag:
        for app in sla.applications:
            RetentionOperator(task_id=f"retention__{app.name}", sla_file=str(sla_file), application=app.name)
    return dag


def replication_schedule(sla) -> AssetAny:
    """Data-aware: a run whenever a snapshot or a log backup of any of the SLA's applications is recorded,
    so that logs reach the repository at the log-backup interval, not one snapshot late."""
    return AssetAny(*(a(app.name) for app in sla.applications for a in (assets.snapshots, assets.logs)))


def _replication_dags(sla, sla_file: Path) -> list[DAG]:
    f, targets = str(sla_file), sla.replication.targets
    queue = {"queue": sla.replication.proxy_queue} if sla.replication.proxy_queue else {}
    names = ", ".join(f"**{t.name}** ({t.url})" for t in targets)
    with DAG(f"copydata__{sla.name}__replicate", schedule=replication_schedule(sla), **_common(
            sla, "replicate", f"Replicate the snapshots and logs of SLA **{sla.name}** to {names}: incremental "
                              "forever from the array's block differences; resumable; runs on each snapshot and "
                              "each log backup (docs/replication.md).")) as rep:
        for app in sla.applications:
            previous = None
            for t in targets:
                task = ReplicateOperator(task_id=f"replicate__{app.name}__{t.name}", sla_file=f, application=app.name,
                                         target=t.name, inlets=[assets.snapshots(app.name), assets.logs(app.name)],
                                         outlets=[assets.replica(app.name, t.name)], **queue)
                if previous is not None:   # one at a time per application: they share <app>-repl-<role> volumes
                    previous >> task
                previous = task
    with DAG(f"copydata__{sla.name}__replica_maintenance", schedule="@daily", **_common(
            sla, "replica_maintenance", f"Retention (keep_last points per application), garbage collection and a "
                                        f"5 % verify sample of the replication targets of SLA **{sla.name}**.")) as mnt:
        for t in targets:
            ReplicaMaintenanceOperator(task_id=f"maintenance__{t.name}", sla_file=f, target=t.name, verify_sample=0.05)
    return [rep, mnt]


def _clone_params(app, port: bool) -> dict:
    params = {"clone_name": Param(f"{app.name}-dev", type="string", pattern=CLONE_NAME, title="Clone name"),
              "point_in_time": Param("latest", type="string", pattern=POINT, title="Point in time",
                                     description=POINT_HELP),
              "mask": Param(True, type="boolean", title="Run the SLA's masking")}
    if port:
        params["port"] = Param(55500, type="integer", minimum=1024, maximum=65535, title="Port")
    return params


def app_dags(sla, app, sla_file: Path) -> list[DAG]:
    manual = {**_common(sla, "clone", ""), "schedule": None, "max_active_runs": 4}
    f, a = str(sla_file), app.name
    inlets = [assets.snapshots(a), assets.logs(a)]
    out = []
    with DAG(f"copydata__{a}__clone", params=_clone_params(app, True), **{
            **manual, "doc_md": f"Clone **{a}** at any second of its recoverable range."}) as dag:
        CloneOperator(task_id="clone", sla_file=f, application=a, clone_name="{{ params.clone_name }}",
                      point_in_time="{{ params.point_in_time }}", port="{{ params.port }}",
                      mask="{{ params.mask }}", inlets=inlets, outlets=[assets.clones(a)])
    out.append(dag)
    with DAG(f"copydata__{a}__clone_refresh", params=_clone_params(app, False), **{
            **manual, "max_active_runs": 1, "doc_md": f"Move a clone of **{a}** to a newer point: same name, port and mounts."}) as dag:
        CloneRefreshOperator(task_id="clone_refresh", sla_file=f, application=a,
                             clone_name="{{ params.clone_name }}", point_in_time="{{ params.point_in_time }}",
                             mask="{{ params.mask }}", inlets=inlets, outlets=[assets.clones(a)])
    out.append(dag)
    with DAG(f"copydata__{a}__clone_delete", params={"clone_name": _clone_params(app, False)["clone_name"]},
             **{**manual, "max_active_runs": 1, "doc_md": f"Stop and delete a clone of **{a}**."}) as dag:
        CloneDeleteOperator(task_id="clone_delete", sla_file=f, application=a, clone_name="{{ params.clone_name }}")
    out.append(dag)
    out += _scheduled_refresh_dags(sla, app, sla_file, manual, inlets)
    restore_params = {"point_in_time": Param("latest", type="string", pattern=POINT, title="Point in time",
                                             description=POINT_HELP),
                      "confirm": Param("", type="string", title=f"Type {a} to confirm",
                                       description="Restore in place stops and overwrites the source database")}
    with DAG(f"copydata__{a}__restore", params=restore_params, **{
            **manual, "max_active_runs": 1, "doc_md": f"Restore **{a}** in place (destructive)."}) as dag:
        RestoreOperator(task_id="restore", sla_file=f, application=a, point_in_time="{{ params.point_in_time }}",
                        confirm="{{ params.confirm }}", inlets=inlets, outlets=[assets.source(a)])
    out.append(dag)
    if sla.replication is not None and sla.replication.targets:
        out.append(_repo_restore_dag(sla, app, sla_file, manual))
    return out


def _repo_restore_params(sla) -> dict:
    names = [t.name for t in sla.replication.targets]
    return {"target": Param(names[0], type="string", enum=names, title="Replication target"),
            "point": Param("", type="string", pattern=REPO_POINT, title="Point",
                           description="A point of the repository (copydata repo points); empty: the newest "
                                       "point at or before point_in_time"),
            "point_in_time": Param("", type="string", pattern=POINT_OR_EMPTY, title="Point in time",
                                   description="Empty: restore the point's volume images to destination. "
                                               f"Else recover the database to this instant: {POINT_HELP}"),
            "destination": Param(type="string", pattern=DESTINATION, title="Destination",
                                 description="A folder (/path: one <role>.img per volume; the work folder of a "
                                             "recovery), or array volumes: array:PREFIX or array:data=vol,..."),
            "port": Param(55600, type="integer", minimum=1024, maximum=65535, title="Port",
                          description="Port of the recovered database server (point_in_time only)")}


def _repo_restore_dag(sla, app, sla_file: Path, manual: dict) -> DAG:
    """Restore from object storage. No outlet: neither the images nor the recovered server are catalog
    clones (clone_delete, refresh and TTL expiry do not know them; `copydata repo discard` releases a
    recovery), so an event on the clones alias would announce a clone that the clone DAGs cannot manage.
    One run at a time: two restores to one destination would overwrite each other."""
    a = app.name
    doc = (f"Restore **{a}** from a replication target's repository: a point's volume images to a folder or "
           "array volumes, or the database recovered to an instant (docs/restore-from-object-storage.md).")
    with DAG(f"copydata__{a}__repo_restore", params=_repo_restore_params(sla), **{
            **manual, "max_active_runs": 1, "doc_md": doc}) as dag:
        RepoRestoreOperator(task_id="repo_restore", sla_file=str(sla_file), target="{{ params.target }}",
                            application=a, point="{{ params.point }}", point_in_time="{{ params.point_in_time }}",
                            destination="{{ params.destination }}", port="{{ params.port }}",
                            array_conn_id=app.array_conn_id,
                            inlets=[assets.replica(a, t.name) for t in sla.replication.targets])
    return dag


def _scheduled_refresh_dags(sla, app, sla_file: Path, manual: dict, inlets: list) -> list[DAG]:
    out = []
    for r in sla.clone_policy.scheduled_refreshes:
        if r.application != app.name:
            continue
        with DAG(f"copydata__{app.name}__clone_refresh__{r.clone_name}", **{
                **manual, "schedule": r.schedule, "max_active_runs": 1,
                "doc_md": f"Scheduled refresh of clone **{r.clone_name}** of **{app.name}** to {r.point_in_time}."
                }) as dag:
            CloneRefreshOperator(task_id="clone_refresh", sla_file=str(sla_file), application=app.name,
                                 clone_name=r.clone_name, point_in_time=r.point_in_time, mask=r.mask,
                                 inlets=inlets, outlets=[assets.clones(app.name)])
        out.append(dag)
    return out


def build_all(folder: Path) -> dict[str, DAG]:
    """DAGs of every valid SLA file in folder; broken files are reported by sla_errors()."""
    from copydata.sla.loader import load_all
    slas, _ = load_all(folder)
    dags: dict[str, DAG] = {}
    for sla in slas:
        for dag in sla_dags(sla, Path(sla.source_file) if getattr(sla, "source_file", None) else folder):
            dags[dag.dag_id] = dag
    return dags


class SlaFileError(Exception):
    """Raised at parse time so that the broken SLA files show as an import error in the Airflow UI."""


def raise_sla_errors(folder: Path) -> None:
    from copydata.sla.loader import load_all
    _, errors = load_all(folder)
    if errors:
        raise SlaFileError(f"{len(errors)} error(s) in SLA files under {folder}; their DAGs are not built, "
                           "the other SLAs are unaffected:\n" + "\n".join(str(e) for e in errors))
