"""Operators of the replication DAGs: thin shells over copydata.replication.

ReplicateOperator: one application to one target (copydata__<sla>__replicate).
ReplicaMaintenanceOperator: retention, GC and a verify sample of one target (copydata__<sla>__replica_maintenance).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from copydata.airflow.operators.copydata import CopydataOperator
from copydata.ops.context import AppContext


def find_target(sla, name: str):
    """The SLA's replication target called name (LookupError if none)."""
    targets = sla.replication.targets if sla.replication is not None else []
    for t in targets:
        if t.name == name:
            return t
    known = ", ".join(t.name for t in targets) or "none"
    raise LookupError(f"SLA {sla.name} has no replication target {name!r}; its targets: {known}")


def open_target(spec):
    """A copydata.replication.target.Target whose store and key come from Airflow connections."""
    from copydata.airflow.storage import key_from_connection, store_for
    from copydata.replication.target import Target

    return Target.from_sla(spec, store_factory=store_for, key_factory=key_from_connection)


class ReplicateOperator(CopydataOperator):
    """Replicate the application's new snapshots and logs to one target, reading them on the SLA's
    replication.proxy_host (default: the application's host); the outlet event carries
    {point: newest point in the target, bytes_uploaded, written, ...}."""

    template_fields: Sequence[str] = ("sla_file", "application", "target")

    def __init__(self, *, target: str, **kwargs):
        super().__init__(**kwargs)
        self.target = target

    def run(self, ctx: AppContext, context) -> dict[str, Any]:
        from copydata.replication.replicate import replicate

        target = open_target(find_target(ctx.sla, self.target))
        report = replicate(ctx, target, host=ctx.sla.replication.proxy_host)
        summary = report.summary()
        if report.logs is not None or any(p.logs for p in report.points):
            shipped = [p.logs for p in report.points if p.logs] + ([report.logs] if report.logs else [])
            summary["logs_uploaded"] = sum(len(s.files) for s in shipped)
            conflicts = sorted({n for s in shipped for n in s.conflicts})
            if conflicts:
                summary["log_conflicts"] = conflicts
        self.emit(context, summary)
        return summary


class ReplicaMaintenanceOperator(BaseOperator):
    """Retention (keep_last points per application of the SLA, and the logs they need), GC with a grace
    period, and verify of a random sample of chunks. Fails if verify finds a missing or corrupt chunk."""

    template_fields: Sequence[str] = ("sla_file", "target")

    def __init__(self, *, sla_file: str, target: str, verify_sample: float = 0.05, grace_seconds: float = 24 * 3600,
                 lock_wait: float = 600, **kwargs):
        super().__init__(**kwargs)
        self.sla_file, self.target = sla_file, target
        self.verify_sample, self.grace_seconds, self.lock_wait = verify_sample, grace_seconds, lock_wait

    def execute(self, context) -> dict[str, Any]:
        from copydata.replication.retention import maintain
        from copydata.sla.loader import load_sla

        sla = load_sla(Path(self.sla_file))
        try:
            spec = find_target(sla, self.target)
        except LookupError as err:
            raise AirflowFailException(str(err)) from err
        target = open_target(spec)
        store = target.store()
        if not target.has_repository(store):
            self.log.info("%s: no repository at %s yet; nothing to maintain", target.name, target.url)
            return {"target": target.name, "url": target.url, "skipped": "no repository yet"}
        repo = target.open_repository(store=store)
        report = maintain(repo, target.name, target.keep_last, apps=[a.name for a in sla.applications],
                          grace=self.grace_seconds, verify_sample=self.verify_sample, lock_wait=self.lock_wait)
        summary = report.summary()
        if not report.ok:
            v = report.verify
            raise AirflowFailException(f"verify of {target.url} failed: {len(v.missing)} missing and "
                                       f"{len(v.corrupt)} corrupt chunk(s), {len(v.errors)} bad object(s): "
                                       f"{(v.missing + v.corrupt + v.errors)[:5]}")
        return summary
