"""The SLA DAG factory: one set of DAGs per SLA file in include/slas (or $COPYDATA_SLA_DIR).

A broken SLA file is left out here and reported by copydata_sla_errors.py, so it shows as an
import error in the Airflow UI while every other SLA keeps its DAGs.
"""

from __future__ import annotations

from copydata.airflow.app_context import sla_dir
from copydata.airflow.factory import build_all

globals().update(build_all(sla_dir()))
