"""Manual FlashArray operations, one small DAG each, driven from the trigger form or the REST API."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from copydata.airflow.operators.flasharray import (
    FlashArrayConnectHostOperator,
    FlashArrayCopyVolumeOperator,
    FlashArrayDestroyOperator,
    FlashArrayDisconnectHostOperator,
    FlashArrayPgroupSnapshotOperator,
)

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
SNAP = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$"
COMMON = {
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "schedule": None,
    "catchup": False,
    "max_active_runs": 4,
    "tags": ["copydata", "flasharray"],
    "render_template_as_native_obj": True,
}


def conn_param() -> Param:
    return Param("flasharray_default", type="string", title="FlashArray connection",
                 description="Airflow connection of type flasharray")


with DAG("copydata__array__snapshot", doc_md="Snapshot a protection group (crash-consistent across members).",
         params={"flasharray_conn_id": conn_param(),
                 "pgroup": Param("pg-demo", type="string", pattern=NAME, title="Protection group"),
                 "suffix": Param(None, type=["null", "string"], title="Suffix",
                                 description="Leave empty for an array-generated number")},
         **COMMON):
    FlashArrayPgroupSnapshotOperator(task_id="snapshot", pgroup="{{ params.pgroup }}",
                                     suffix="{{ params.suffix }}",
                                     flasharray_conn_id="{{ params.flasharray_conn_id }}")

with DAG("copydata__array__copy", doc_md="Copy a volume or snapshot to a volume, overwriting it if asked.",
         params={"flasharray_conn_id": conn_param(),
                 "source": Param("pg-demo.1.vol-demo", type="string", pattern=SNAP, title="Source",
                                 description="volume, vol.suffix or pgroup.suffix.volume"),
                 "target": Param("vol-demo-copy", type="string", pattern=NAME, title="Target volume"),
                 "overwrite": Param(False, type="boolean", title="Overwrite an existing target")},
         **COMMON):
    FlashArrayCopyVolumeOperator(task_id="copy", source="{{ params.source }}", target="{{ params.target }}",
                                 overwrite="{{ params.overwrite }}",
                                 flasharray_conn_id="{{ params.flasharray_conn_id }}")

with DAG("copydata__array__connect", doc_md="Connect a volume to a host and mount it there.",
         params={"flasharray_conn_id": conn_param(),
                 "volume": Param("vol-demo-copy", type="string", pattern=NAME, title="Volume"),
                 "host": Param(None, type=["null", "string"], title="Host",
                               description="Empty: the connection's host name (this machine)"),
                 "mountpoint": Param(None, type=["null", "string"], title="Mount point"),
                 "mkfs": Param(None, type=["null", "string"], enum=[None, "ext4", "xfs"],
                               title="Make a filesystem first (erases the volume)")},
         **COMMON):
    FlashArrayConnectHostOperator(task_id="connect", volume="{{ params.volume }}", host="{{ params.host }}",
                                  mountpoint="{{ params.mountpoint }}", mkfs="{{ params.mkfs }}",
                                  flasharray_conn_id="{{ params.flasharray_conn_id }}")

with DAG("copydata__array__disconnect", doc_md="Unmount a volume and disconnect it from a host.",
         params={"flasharray_conn_id": conn_param(),
                 "volume": Param("vol-demo-copy", type="string", pattern=NAME, title="Volume"),
                 "host": Param(None, type=["null", "string"], title="Host")},
         **COMMON):
    FlashArrayDisconnectHostOperator(task_id="disconnect", volume="{{ params.volume }}", host="{{ params.host }}",
                                     flasharray_conn_id="{{ params.flasharray_conn_id }}")

with DAG("copydata__array__destroy", doc_md="Destroy (and optionally eradicate) a volume or pgroup snapshot.",
         params={"flasharray_conn_id": conn_param(),
                 "name": Param("vol-demo-copy", type="string", pattern=SNAP, title="Volume or pgroup.suffix"),
                 "eradicate": Param(False, type="boolean", title="Eradicate (cannot be undone)")},
         **COMMON):
    FlashArrayDestroyOperator(task_id="destroy", name="{{ params.name }}", eradicate="{{ params.eradicate }}",
                              flasharray_conn_id="{{ params.flasharray_conn_id }}")
