"""SLA files: the YAML that says how copydata protects databases (docs/sla.md). No Airflow import here."""

from __future__ import annotations

from .errors import SlaError
from .loader import LoadedSla, load_all, load_files, load_sla, parse_file, sla_files
from .model import (
                    Application,
                    ClonePolicy,
                    Engine,
                    LogBackupPolicy,
                    Retention,
                    Sla,
                    SnapshotPolicy,
                    airflow_schedule,
)

__all__ = [
    "Application", "ClonePolicy", "Engine", "LoadedSla", "LogBackupPolicy", "Retention", "Sla", "SlaError",
    "SnapshotPolicy", "airflow_schedule", "load_all", "load_files", "load_sla", "parse_file", "sla_files",
]
