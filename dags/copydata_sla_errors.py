"""Airflow DAG file that fails to import, listing each broken SLA file (file, line, field, expected).

The valid SLAs keep their DAGs: they are built by copydata_dags.py.
"""

from __future__ import annotations

from copydata.airflow.app_context import sla_dir
from copydata.airflow.factory import raise_sla_errors

raise_sla_errors(sla_dir())
