"""The SLA DAG factory: DAG ids, schedules, trigger forms, lineage, and a broken SLA file isolated."""

from __future__ import annotations

import datetime as dt
import shutil
import warnings

import pytest

from conftest import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "sla-postgres.yaml"


def bag_for(sla_dir, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("COPYDATA_SLA_DIR", str(sla_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    ours = [w for w in caught if "deprecat" in str(w.message).lower() and "/work/" in str(w.filename)]
    assert not ours, [f"{w.filename}:{w.lineno} {w.message}" for w in ours]
    return bag


def test_every_kind_of_dag_is_built_with_its_schedule_and_form(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "example.yaml")
    bag = bag_for(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    from copydata.sla.loader import load_sla
    sla = load_sla(tmp_path / "example.yaml")
    app = sla.applications[0].name
    for kind in ("snapshot", "log_backup", "retention"):
        assert f"copydata__{sla.name}__{kind}" in bag.dags
    for kind in ("clone", "clone_refresh", "clone_delete", "restore"):
        assert f"copydata__{app}__{kind}" in bag.dags
    assert f"copydata__{app}__repo_restore" not in bag.dags      # no replication targets
    log_dag = bag.dags[f"copydata__{sla.name}__log_backup"]
    assert log_dag.timetable.delta == sla.log_backup.interval == dt.timedelta(minutes=5)
    clone = bag.dags[f"copydata__{app}__clone"]
    assert set(clone.params) == {"clone_name", "point_in_time", "port", "mask"}
    assert clone.params["point_in_time"] == "latest"
    assert bag.dags[f"copydata__{app}__restore"].params["confirm"] == ""
    snap_task = bag.dags[f"copydata__{sla.name}__snapshot"].get_task(f"snapshot__{app}")
    assert [o.uri for o in snap_task.outlets] == [f"copydata://{app}/snapshots"]


def test_trigger_form_rejects_a_bad_point_in_time(tmp_path, monkeypatch):
    from airflow.sdk.definitions.param import ParamsDict

    shutil.copy(EXAMPLE, tmp_path / "example.yaml")
    bag = bag_for(tmp_path, monkeypatch)
    dag = next(d for i, d in bag.dags.items() if i.endswith("__clone"))
    params = ParamsDict(dag.params)
    with pytest.raises(Exception, match="point_in_time"):
        params.update({"point_in_time": "yesterday"})
    params.update({"point_in_time": "2026-11-27T10:15:00Z"})


def test_a_broken_sla_file_is_an_import_error_and_the_others_still_build(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "good.yaml")
    (tmp_path / "broken.yaml").write_text("name: broken\nsnapshot:\n  schedule: every now and then\n"
                                          "applications: []\n")
    bag = bag_for(tmp_path, monkeypatch)
    errors = {k: v for k, v in bag.import_errors.items() if k.endswith("copydata_sla_errors.py")}
    assert len(errors) == 1, bag.import_errors
    message = next(iter(errors.values()))
    assert "broken.yaml:3:" in message and "snapshot.schedule" in message
    assert not any(k.endswith("copydata_dags.py") for k in bag.import_errors)
    assert any(i.endswith("__clone") for i in bag.dags)


def test_scheduled_refresh_gets_its_own_scheduled_dag(tmp_path, monkeypatch):
    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text())
    app = doc["applications"][0]["name"]
    doc["clone_policy"]["scheduled_refreshes"] = [{"application": app, "clone_name": "qa", "schedule": "0 2 * * *"}]
    (tmp_path / "example.yaml").write_text(yaml.safe_dump(doc))
    bag = bag_for(tmp_path, monkeypatch)
    dag = bag.dags[f"copydata__{app}__clone_refresh__qa"]
    assert "0 2 * * *" in str(dag.timetable.summary if hasattr(dag.timetable, "summary") else dag.timetable)
    task = dag.get_task("clone_refresh")
    assert task.clone_name == "qa" and task.point_in_time == "latest"


def sla_with_replication(folder, apps: tuple[str, ...] = ("pgdemo", "pgtwo"), **replication):
    """The example SLA with the given applications and two targets (local first), and the other
    replication keys given."""
    import yaml

    doc = yaml.safe_load(EXAMPLE.read_text())
    first = doc["applications"][0]
    doc["applications"] = []
    for name in apps:
        app = {**first, "name": name, "database_conn_id": f"copydata_pg_{name}", "protection_group": name,
               "log_protection_group": f"{name}-logs", "volumes": {"data": f"{name}-data", "archive": f"{name}-wal"},
               "mounts": {"data": f"/srv/{name}/data", "archive": f"/srv/{name}/archive"}}
        doc["applications"].append(app)
    doc["replication"] = {"targets": [{"name": "local", "url": f"file://{folder}/repo"},
                                      {"name": "s3-main", "url": "s3://bucket/copydata", "conn_id": "aws_repo"}],
                         **replication}
    path = folder / "example.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_repo_restore_dag_per_application_with_its_form(tmp_path, monkeypatch):
    from airflow.sdk.definitions.param import ParamsDict

    path = sla_with_replication(tmp_path)
    bag = bag_for(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    for app in ("pgdemo", "pgtwo"):
        dag = bag.dags[f"copydata__{app}__repo_restore"]
        assert type(dag.timetable).__name__ == "NullTimetable" and dag.max_active_runs == 1
        assert set(dag.params) == {"target", "point", "point_in_time", "destination", "port"}
        assert dag.params.get_param("target").schema["enum"] == ["local", "s3-main"]
        assert (dag.params["target"], dag.params["point"], dag.params["point_in_time"]) == ("local", "", "")
        task = dag.get_task("repo_restore")
        assert (task.sla_file, task.application, task.url) == (str(path), app, None)
        assert [i.uri for i in task.inlets] == [f"copydata://{app}/replicas/local", f"copydata://{app}/replicas/s3-main"]
        assert task.outlets == []
    params = ParamsDict(bag.dags["copydata__pgdemo__repo_restore"].params)
    good = {"destination": "/srv/restore", "point": "pgdemo.cd-scheduled-2026-11-27T10-00-00", "port": 55433}
    for point_in_time in ("", "latest", "2026-11-27T10:15:00.5+01:00"):
        params.update({**good, "point_in_time": point_in_time})
        assert params.validate()["point_in_time"] == point_in_time
    for key, bad in (("target", "nope"), ("point_in_time", "yesterday"), ("point_in_time", "2026-11-27T10:15:00"),
                     ("destination", "relative/path"), ("destination", "array:"), ("point", "-x"), ("port", 80)):
        with pytest.raises(Exception, match=key):
            ParamsDict(bag.dags["copydata__pgdemo__repo_restore"].params).update({**good, key: bad})


def test_replicate_runs_on_a_snapshot_or_a_log_backup(tmp_path, monkeypatch):
    from airflow.sdk import AssetAny

    sla_with_replication(tmp_path, apps=("pgdemo",))
    bag = bag_for(tmp_path, monkeypatch)
    condition = bag.dags["copydata__example__replicate"].timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert [a.uri for a in condition.objects] == ["copydata://pgdemo/snapshots", "copydata://pgdemo/logs"]


@pytest.mark.parametrize("proxy_queue", ["backup-proxy", None])
def test_replicate_tasks_run_on_the_proxy_queue_when_given(tmp_path, monkeypatch, proxy_queue):
    from airflow.configuration import conf

    sla_with_replication(tmp_path, apps=("pgdemo",), proxy_host="backup-proxy", proxy_queue=proxy_queue)
    bag = bag_for(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    default = conf.get("operators", "default_queue")
    assert {t.queue for t in bag.dags["copydata__example__replicate"].tasks} == {proxy_queue or default}
    assert {t.queue for t in bag.dags["copydata__example__replica_maintenance"].tasks} == {default}
    assert {t.queue for t in bag.dags["copydata__example__snapshot"].tasks} == {default}


def test_allowed_roles_resolve_users_through_simple_auth_manager(monkeypatch):
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from copydata.airflow.operators.copydata import check_allowed, user_roles

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,qa1:user,viewer1:viewer")
    assert user_roles("qa1") == {"qa1", "user"}
    sla = SimpleNamespace(clone_policy=SimpleNamespace(allowed_roles=["user"]))
    check_allowed(sla, "shop", {"dag_run": SimpleNamespace(triggering_user_name="qa1")})
    check_allowed(sla, "shop", {"dag_run": SimpleNamespace(triggering_user_name=None)})  # a schedule
    with pytest.raises(AirflowFailException, match="may not do this for shop: .*allowed_roles"):
        check_allowed(sla, "shop", {"dag_run": SimpleNamespace(triggering_user_name="viewer1")})
