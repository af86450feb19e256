"""Operators for the SLA DAGs: each is a thin shell over copydata.ops, with templated fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from copydata.airflow import assets
from copydata.airflow.app_context import build_context
from copydata.ops import clones, logs, restore, retention, snapshot
from copydata.ops.context import AppContext, suffix_from


def _actor(context) -> str:
    run = context.get("dag_run")
    return getattr(run, "triggering_user_name", None) or "airflow"


def user_roles(user: str) -> set[str]:
    """The user's name and, under SimpleAuthManager, its role ([core] simple_auth_manager_users)."""
    from airflow.configuration import conf

    roles = {user}
    for entry in (conf.get("core", "simple_auth_manager_users", fallback="") or "").split(","):
        name, _, role = entry.strip().partition(":")
        if name == user and role:
            roles.add(role.split(":")[0])
    return roles


def check_allowed(sla, application: str, context) -> None:
    """clone_policy.allowed_roles: who may clone, refresh, delete or restore. Schedules always may."""
    allowed = set(sla.clone_policy.allowed_roles or [])
    run = context.get("dag_run")
    user = getattr(run, "triggering_user_name", None)
    # dag.test() runs in-process for whoever holds the code; the SDK names its user "dag_test".
    in_process = user == "dag_test"
    if not allowed or not user or in_process:
        return
    if not user_roles(user) & allowed:
        raise AirflowFailException(f"user {user!r} may not do this for {application}: the SLA's "
                                   f"clone_policy.allowed_roles is {sorted(allowed)}")


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


class CopydataOperator(BaseOperator):
    """Loads the SLA, opens the array and the catalog, runs one operation, closes the array session."""

    template_fields: Sequence[str] = ("sla_file", "application")
    permanent_errors: tuple[type[BaseException], ...] = (clones.CloneError, ValueError, LookupError)
    guarded = False  # True: only users allowed by the SLA's clone_policy may run it

    def __init__(self, *, sla_file: str, application: str, **kwargs):
        super().__init__(**kwargs)
        self.sla_file, self.application = sla_file, application

    def execute(self, context) -> Any:
        ctx, hook = build_context(self.sla_file, self.application, _actor(context))
        try:
            if self.guarded:
                check_allowed(ctx.sla, ctx.name, context)
            return self.run(ctx, context)
        except self.permanent_errors as err:  # bad input: retrying cannot help
            raise AirflowFailException(str(err)) from err
        finally:
            hook.close()

    def run(self, ctx: AppContext, context) -> Any:
        raise NotImplementedError

    def emit(self, context, extra: dict) -> None:
        for outlet in self.outlets or []:
            if not hasattr(outlet, "uri"):
                continue
            context["outlet_events"][outlet].extra = extra


class SnapshotOperator(CopydataOperator):
    def run(self, ctx: AppContext, context) -> dict:
        row = snapshot.take_snapshot(ctx, suffix_from(context["run_id"]))
        point = {"application": ctx.name, "snapshot": row.pgroup_snapshot, "consistent_at": _iso(row.consistent_at),
                 "freeze_window_s": row.engine_meta.get("freeze_window_s")}
        self.emit(context, point)
        return point


class LogBackupOperator(CopydataOperator):
    def run(self, ctx: AppContext, context) -> dict:
        row = logs.log_backup(ctx, suffix_from(context["run_id"]))
        point = {"application": ctx.name, "log_backup": row.pgroup_snapshot, "covered_to": _iso(row.covered_to),
                 "end_segment": row.end_segment, "chain": row.chain}
        self.emit(context, point)
        return point


class RetentionOperator(CopydataOperator):
    def run(self, ctx: AppContext, context) -> dict:
        expired_clones = retention.expire_clones(ctx)
        p = retention.apply_retention(ctx)
        return {"expired_clones": expired_clones, "kept": len(p.keep), "expired": [s.pgroup_snapshot for s in p.expire],
                "kept_logs": len(p.keep_logs), "expired_logs": [lb.pgroup_snapshot for lb in p.expire_logs]}


class _CloneOperator(CopydataOperator):
    guarded = True
    def clone_result(self, ctx: AppContext, context, row) -> dict:
        snap = ctx.catalog.snapshot(row.snapshot_id)
        logs = ctx.catalog.log_backup(row.log_backup_id) if row.log_backup_id else None
        result = {"application": ctx.name, "clone": row.name, "port": row.port, "host": row.host,
                  "point_in_time": _iso(row.point_in_time) or "latest", "state": row.state,
                  "snapshot": snap.pgroup_snapshot, "snapshot_consistent_at": _iso(snap.consistent_at),
                  "logs_cover_to": _iso(logs.covered_to) if logs else None,
                  "socket_dir": str(clones.clone_home(row.name) / "run")}
        context["outlet_events"][assets.clones(ctx.name)].add(assets.clone(ctx.name, row.name), extra=result)
        return result


class CloneOperator(_CloneOperator):
    template_fields: Sequence[str] = ("sla_file", "application", "clone_name", "point_in_time", "port", "mask")

    def __init__(self, *, clone_name: str, point_in_time: str = "latest", port: int | str = 0,
                 mask: bool | str = True, **kwargs):
        super().__init__(**kwargs)
        self.clone_name, self.point_in_time, self.port, self.mask = clone_name, point_in_time, port, mask

    def run(self, ctx: AppContext, context) -> dict:
        row = clones.create_clone(ctx, self.clone_name, self.point_in_time, int(self.port),
                                  mask=_bool(self.mask), owner=_actor(context))
        return self.clone_result(ctx, context, row)


class CloneRefreshOperator(_CloneOperator):
    template_fields: Sequence[str] = ("sla_file", "application", "clone_name", "point_in_time", "mask")

    def __init__(self, *, clone_name: str, point_in_time: str = "latest", mask: bool | str = True, **kwargs):
        super().__init__(**kwargs)
        self.clone_name, self.point_in_time, self.mask = clone_name, point_in_time, mask

    def run(self, ctx: AppContext, context) -> dict:
        row = clones.refresh_clone(ctx, self.clone_name, self.point_in_time, mask=_bool(self.mask),
                                   actor=_actor(context))
        return self.clone_result(ctx, context, row)


class CloneDeleteOperator(CopydataOperator):
    guarded = True
    template_fields: Sequence[str] = ("sla_file", "application", "clone_name")

    def __init__(self, *, clone_name: str, **kwargs):
        super().__init__(**kwargs)
        self.clone_name = clone_name

    def run(self, ctx: AppContext, context) -> dict:
        clones.delete_clone(ctx, self.clone_name, actor=_actor(context))
        return {"application": ctx.name, "clone": self.clone_name, "state": "deleted"}


class RestoreOperator(CopydataOperator):
    guarded = True
    template_fields: Sequence[str] = ("sla_file", "application", "point_in_time", "confirm")

    def __init__(self, *, point_in_time: str, confirm: str = "", **kwargs):
        super().__init__(**kwargs)
        self.point_in_time, self.confirm = point_in_time, confirm

    def run(self, ctx: AppContext, context) -> dict:
        result = restore.restore_in_place(ctx, self.point_in_time, self.confirm or "", actor=_actor(context))
        self.emit(context, result)
        return result


def _bool(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")
