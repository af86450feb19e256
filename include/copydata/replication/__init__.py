"""Replication of recovery points (FlashArray snapshots + logs) to a copydata repository in object storage.

Core modules: nothing here imports Airflow at import time. Entry points:

- copydata.replication.target.Target: one target (store URL, connections, block size, workers, bandwidth,
  keep_last) and how to open its repository;
- copydata.replication.replicate.replicate_application(ctx, target): replicate an application's new
  catalog snapshots (incremental forever) and its logs;
- copydata.replication.retention.apply_retention / maintain: keep_last points per application, the logs
  they need, GC and verify.

The Airflow operators are in copydata.airflow.operators.replication.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Target", "parse_rate", "parse_size"]


def __getattr__(name: str) -> Any:   # lazy: the SLA model imports .units without the repository library
    if name == "Target":
        from copydata.replication.target import Target
        return Target
    if name in ("parse_rate", "parse_size"):
        from copydata.replication import units
        return getattr(units, name)
    raise AttributeError(name)
