"""Mounts copydata's catalog views on the Airflow API server at /copydata, with a UI menu entry."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from copydata.airflow.api import app


class CopydataPlugin(AirflowPlugin):
    name = "copydata"
    fastapi_apps = [{"app": app, "url_prefix": "/copydata", "name": "copydata catalog"}]
    external_views = [{"name": "Recovery points", "href": "copydata/", "url_route": "copydata",
                       "destination": "nav", "category": "browse"}]
