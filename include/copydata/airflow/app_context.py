"""Build an AppContext inside a task from the SLA file and the Airflow connections it names."""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import BaseHook

from copydata.airflow.hooks.flasharray import FlashArrayHook
from copydata.engines.base import DbTarget
from copydata.engines.registry import make_engine
from copydata.ops.context import AppContext

DEFAULT_PORTS = {"postgresql": 5432, "mariadb": 3306, "mysql": 3306}


def sla_dir() -> Path:
    """$COPYDATA_SLA_DIR, else include/slas beside the installed package (the repository layout)."""
    env = os.environ.get("COPYDATA_SLA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "slas"


def db_target(conn_id: str, engine: str) -> DbTarget:
    conn = BaseHook.get_connection(conn_id)
    return DbTarget(host=conn.host or "127.0.0.1", port=int(conn.port or DEFAULT_PORTS.get(engine, 0)),
                    user=conn.login or "", password=conn.password or None, database=conn.schema or None)


def find_application(sla, name: str):
    for app in sla.applications:
        if app.name == name:
            return app
    raise KeyError(f"SLA {sla.name} has no application {name!r}")


def build_context(sla_file: str | Path, application: str, actor: str = "airflow") -> tuple[AppContext, FlashArrayHook]:
    """The caller closes the returned hook (it holds the array session)."""
    from copydata.catalog import Catalog
    from copydata.sla.loader import load_sla

    sla = load_sla(Path(sla_file))
    app = find_application(sla, application)
    hook = FlashArrayHook(app.array_conn_id)
    engine = make_engine(app, db_target(app.database_conn_id, app.engine))
    ctx = AppContext(sla=sla, app=app, array=hook.get_conn(), connector=hook.get_connector(), engine=engine,
                     catalog=Catalog(os.environ.get("COPYDATA_CATALOG_URL")), actor=actor)
    ctx.catalog.ensure_application(app.name, sla.name, app.engine, app.model_dump(mode="json"))
    return ctx, hook
