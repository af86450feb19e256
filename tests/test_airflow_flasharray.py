"""The Airflow side against a running emulator: provider metadata, FlashArrayHook negotiation,
the DAG files, and each operator run through dag.test()."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from copydata.connector import discard_volumes

from conftest import ROOT, start_emulator

MiB = 1 << 20


def set_conn(conn_id: str, emulator: dict, **extra) -> None:
    host, port = emulator["target"].rsplit(":", 1)
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({
        "conn_type": "flasharray", "host": host, "port": int(port), "password": extra.pop("token", None)
        or emulator["api_token"], "extra": {"ca_file": emulator["ca_file"], "verify_tls": True,
                                            "devices_dir": emulator["devices"], **extra}})


@pytest.fixture
def fa_conn(emulator) -> str:
    set_conn("fa_test", emulator)
    return "fa_test"


def test_dag_files_import_without_errors_or_deprecations():
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert {"copydata__array__snapshot", "copydata__array__copy", "copydata__array__connect",
            "copydata__array__disconnect", "copydata__array__destroy"} <= set(bag.dag_ids)
    ours = [w for w in caught if "deprecat" in str(w.message).lower()
            and any(p in str(w.filename) for p in ("/dags/", "/include/copydata/", "/plugins/"))]
    assert ours == [], [f"{w.filename}:{w.lineno} {w.message}" for w in ours]


def test_provider_registers_flasharray_connection_form():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "copydata" in pm.providers
    assert pm.hooks["flasharray"].hook_class_name == "copydata.airflow.hooks.flasharray.FlashArrayHook"
    widgets = pm.connection_form_widgets
    for field in ("ca_file", "verify_tls", "api", "host_name", "devices_dir"):
        assert f"extra__flasharray__{field}" in widgets
    assert pm.field_behaviours["flasharray"]["relabeling"]["password"] == "API token"


def test_hook_negotiates_rest2_and_honours_rest1(emulator, fa_conn):
    from copydata.airflow.hooks.flasharray import FlashArrayHook

    hook = FlashArrayHook(fa_conn)
    assert hook.get_conn().api == "rest2"
    assert hook.test_connection()[0]
    hook.close()
    set_conn("fa_rest1", emulator, api="rest1")
    hook1 = FlashArrayHook("fa_rest1")
    assert hook1.get_conn().api == "rest1"
    hook1.close()
    set_conn("fa_bad", emulator, token="wrong-token")
    ok, message = FlashArrayHook("fa_bad").test_connection()
    assert not ok and "login" in message
    assert "wrong-token" not in message


def test_hook_falls_back_to_rest1_below_2_9(tmp_path):
    from copydata.airflow.hooks.flasharray import FlashArrayHook

    gen = start_emulator(tmp_path / "old-array", ["--rest2-max", "2.8"])
    old = next(gen)
    try:
        set_conn("fa_old", old)
        hook = FlashArrayHook("fa_old")
        assert hook.get_conn().api == "rest1"
        hook.close()
    finally:
        gen.close()


def run_dag(dag_id: str, conf: dict):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "copydata_array_ops.py")).get_dag(dag_id)
    run = dag.test(run_conf=conf)
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    return run


@pytest.mark.root
def test_operators_through_dag_runs(airflow_db, emulator, fa_conn, unique, tmp_path):
    from copydata.airflow.hooks.flasharray import FlashArrayHook

    hook = FlashArrayHook(fa_conn)
    client = hook.get_conn()
    vol, pg, copy, host = unique("opvol"), unique("oppg"), unique("opcopy"), unique("ophost")
    mnt = tmp_path / "mnt"
    base = {"flasharray_conn_id": fa_conn}
    client.create_volume(vol, 64 * MiB)
    client.ensure_pgroup(pg, [vol])
    try:
        run_dag("copydata__array__connect", {**base, "volume": vol, "host": host, "mountpoint": str(mnt),
                                             "mkfs": "ext4"})
        (mnt / "hello.txt").write_text("before")
        os.sync()
        run_dag("copydata__array__snapshot", {**base, "pgroup": pg, "suffix": "op1"})
        assert client.pgroup_snapshots(pg)[0].volumes == {vol: f"{pg}.op1.{vol}"}
        (mnt / "hello.txt").write_text("after")
        run_dag("copydata__array__copy", {**base, "source": f"{pg}.op1.{vol}", "target": copy})
        run_dag("copydata__array__connect", {**base, "volume": copy, "host": host,
                                             "mountpoint": str(tmp_path / "copy")})
        assert (tmp_path / "copy" / "hello.txt").read_text() == "before"
        for v in (copy, vol):
            run_dag("copydata__array__disconnect", {**base, "volume": v, "host": host})
        assert not Path(mnt / "hello.txt").exists()
        run_dag("copydata__array__destroy", {**base, "name": copy, "eradicate": True})
        assert client.find_volume(copy) is None
        run_dag("copydata__array__destroy", {**base, "name": f"{pg}.op1"})
        assert client.pgroup_snapshots(pg)[0].destroyed
    finally:
        discard_volumes(client, hook.get_connector(), host, [copy, vol])
        hook.close()
