"""copydata's REST and UI additions to the Airflow API server (mounted at /copydata by plugins/).

Read-only views of the catalog for pipelines and people: applications with their recoverable
range, clones, and the audit trail. Every route but /health uses Airflow's own authentication
(Bearer token from /auth/token, or the UI's cookie); writes go through DAG runs, so Airflow's
authorisation and audit apply to them.
"""

from __future__ import annotations

import html
import os

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

app = FastAPI(title="copydata", description=__doc__)
READ = [Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))]


def _catalog():
    from copydata.catalog import Catalog
    return Catalog(os.environ.get("COPYDATA_CATALOG_URL"))


def _clone_json(c) -> dict:
    return {"name": c.name, "application": c.application, "state": c.state, "host": c.host, "port": c.port,
            "point_in_time": c.point_in_time.isoformat() if c.point_in_time else "latest",
            "owner": c.owner, "created_at": c.created_at.isoformat(),
            "refreshed_at": c.refreshed_at.isoformat() if c.refreshed_at else None,
            "expires_at": c.expires_at.isoformat() if c.expires_at else None}


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.get("/api/applications", dependencies=READ)
def applications() -> list[dict]:
    cat = _catalog()
    return [{"name": a.name, "sla": a.sla, "engine": a.engine, "points": cat.points(a.name)}
            for a in cat.applications()]


@app.get("/api/applications/{name}/points", dependencies=READ)
def points(name: str) -> dict:
    from copydata.catalog.errors import NotFound
    try:
        return _catalog().points(name)
    except NotFound as err:
        raise HTTPException(404, str(err)) from None


@app.get("/api/clones", dependencies=READ)
def clones(application: str | None = None) -> list[dict]:
    return [_clone_json(c) for c in _catalog().clones(application)]


@app.get("/api/audit", dependencies=READ)
def audit(application: str | None = None, limit: int = 100) -> list[dict]:
    return [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "application": e.application,
             "target": e.target, "details": e.details} for e in _catalog().audit_log(application, min(limit, 1000))]


@app.get("/", response_class=HTMLResponse, dependencies=READ)
def page() -> str:
    cat = _catalog()
    rows = []
    for a in cat.applications():
        p = cat.points(a.name)
        rows.append(f"<tr><td>{html.escape(a.name)}</td><td>{html.escape(a.engine)}</td>"
                    f"<td>{p['earliest'] or '-'}</td><td>{p['latest'] or '-'}</td><td>{len(p['gaps'])}</td>"
                    f"<td>{p['snapshots']}</td><td>{p['log_backups']}</td></tr>")
    clone_rows = [f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(c.application)}</td><td>{c.state}</td>"
                  f"<td>{c.port}</td><td>{c.point_in_time.isoformat() if c.point_in_time else 'latest'}</td></tr>"
                  for c in cat.clones()]
    return (f"<html><body style='font-family:sans-serif'><h2>Recovery points</h2><table border=1 cellpadding=4>"
            f"<tr><th>application</th><th>engine</th><th>earliest</th><th>latest</th><th>gaps</th>"
            f"<th>snapshots</th><th>log backups</th></tr>{''.join(rows)}</table>"
            f"<h2>Clones</h2><table border=1 cellpadding=4><tr><th>clone</th><th>application</th><th>state</th>"
            f"<th>port</th><th>point in time</th></tr>{''.join(clone_rows)}</table></body></html>")
