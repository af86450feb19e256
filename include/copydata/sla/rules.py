"""Rules that involve several fields; each returns violations that the models raise together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from .durations import format_duration

if TYPE_CHECKING:
    from .model import (
        Application,
        ClonePolicy,
        Replication,
        ReplicationTarget,
        Retention,
        Sla,
        SnapshotPolicy,
    )

MIN_INTERVAL = timedelta(minutes=1)
REQUIRED_ROLES = {"postgresql": ("data", "archive")}


class Violation(NamedTuple):
    loc: tuple[str | int, ...]
    message: str
    expected: str
    input: Any = None


def raise_violations(title: str, violations: list[Violation]) -> None:
    """Raise all violations at once, each at its own location (pydantic prefixes the parents' locations)."""
    if violations:
        raise ValidationError.from_exception_data(title, [
            InitErrorDetails(type=PydanticCustomError("sla_rule", v.message, {"expected": v.expected}),
                             loc=v.loc, input=v.input) for v in violations])


def snapshot(policy: SnapshotPolicy) -> Iterator[Violation]:
    interval = policy.schedule if isinstance(policy.schedule, timedelta) else None
    if interval is None:
        return
    if interval < MIN_INTERVAL:
        yield Violation(("schedule",), f"interval {format_duration(interval)} is shorter than 1m",
                        "an interval of 1m or more", format_duration(interval))
    elif policy.freeze_timeout >= interval:
        yield Violation(("freeze_timeout",), f"freeze_timeout {format_duration(policy.freeze_timeout)} is "
                        f"not shorter than the snapshot interval {format_duration(interval)}",
                        f"a duration below {format_duration(interval)}", format_duration(policy.freeze_timeout))


def log_interval(interval: timedelta) -> Iterator[Violation]:
    if interval < MIN_INTERVAL:
        yield Violation(("interval",), f"interval {format_duration(interval)} is shorter than 1m",
                        "an interval of 1m or more", format_duration(interval))


def retention(policy: Retention) -> Iterator[Violation]:
    if policy.point_in_time is None and not (policy.daily or policy.weekly or policy.monthly):
        yield Violation((), "this retention keeps no snapshot at all",
                        "point_in_time, or daily, weekly or monthly above 0")


def clone_policy(policy: ClonePolicy) -> Iterator[Violation]:
    if policy.masking_sql is not None and policy.masking_script is not None:
        yield Violation(("masking_script",), "masking_sql and masking_script are mutually exclusive",
                        "only one of masking_sql and masking_script", policy.masking_script)


def application(app: Application) -> Iterator[Violation]:
    required = REQUIRED_ROLES.get(app.engine.value, ())
    for section in ("volumes", "mounts"):
        for role in required:
            if role not in getattr(app, section):
                yield Violation((section, role), f"required key is missing: a {app.engine.value} "
                                f"application needs {section} for the roles {' and '.join(required)}",
                                "an absolute path" if section == "mounts" else "a volume name")
    for role in app.mounts.keys() - app.volumes.keys() - set(required):  # missing required: reported above
        yield Violation(("mounts", role), f"there is no volume for the role '{role}'",
                        "roles that are listed under volumes", role)
    yield from _distinct(app.volumes, "volumes", "volume")
    yield from _distinct(app.mounts, "mounts", "mount point")


def replication_target(target: ReplicationTarget) -> Iterator[Violation]:
    if target.url.startswith("file:") and target.conn_id is not None:
        yield Violation(("conn_id",), "a file:// target needs no connection", "no conn_id (null) for file://",
                        target.conn_id)


def replication(model: Replication) -> Iterator[Violation]:
    names: dict[str, int] = {}
    urls: dict[str, int] = {}
    for i, t in enumerate(model.targets):
        if t.name in names:
            yield Violation(("targets", i, "name"), f"target {t.name!r} is already defined at targets[{names[t.name]}]",
                            "a target name unique in this SLA", t.name)
        names.setdefault(t.name, i)
        url = t.url.rstrip("/")
        if url in urls:
            yield Violation(("targets", i, "url"), f"targets[{urls[url]}] already uses {t.url}",
                            "a different repository URL for each target", t.url)
        urls.setdefault(url, i)


def _distinct(mapping: dict[str, str], section: str, what: str) -> Iterator[Violation]:
    first: dict[str, str] = {}
    for role, value in mapping.items():
        if value in first:
            yield Violation((section, role), f"{what} {value!r} is already used for the role '{first[value]}'",
                            f"a different {what} for each role", value)
        first.setdefault(value, role)


def sla(model: Sla) -> Iterator[Violation]:
    yield from _unique_applications(model)
    yield from _scheduled_refreshes(model)
    if model.log_backup is not None:
        yield from _log_backup(model, model.log_backup.interval)


def _unique_applications(model: Sla) -> Iterator[Violation]:
    names: dict[str, int] = {}
    volumes: dict[str, int] = {}
    for i, app in enumerate(model.applications):
        if app.name in names:
            yield Violation(("applications", i, "name"), f"application {app.name!r} is already defined at "
                            f"applications[{names[app.name]}]", "a name unique across all SLA files", app.name)
        names.setdefault(app.name, i)
        for role, volume in app.volumes.items():
            if volumes.get(volume, i) != i:
                yield Violation(("applications", i, "volumes", role), f"volume {volume!r} already belongs to "
                                f"applications[{volumes[volume]}]", "a volume of this application only", volume)
            volumes.setdefault(volume, i)


def _scheduled_refreshes(model: Sla) -> Iterator[Violation]:
    apps = [a.name for a in model.applications]
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(model.clone_policy.scheduled_refreshes):
        loc = ("clone_policy", "scheduled_refreshes", i)
        if r.application not in apps:
            yield Violation((*loc, "application"), f"application {r.application!r} is not in this SLA",
                            "one of " + ", ".join(apps), r.application)
        if (r.application, r.clone_name) in seen:
            yield Violation((*loc, "clone_name"), f"clone {r.clone_name!r} is already scheduled",
                            "one schedule per clone", r.clone_name)
        seen.add((r.application, r.clone_name))


def _log_backup(model: Sla, interval: timedelta) -> Iterator[Violation]:
    for i, app in enumerate(model.applications):
        loc = ("applications", i, "log_protection_group")
        if app.log_protection_group is None:
            yield Violation(loc, "required key is missing: log_backup is set",
                            "the protection group that holds only the log archive volume(s)")
        elif app.log_protection_group == app.protection_group:
            yield Violation(loc, "log_protection_group must differ from protection_group",
                            "a protection group that holds only the log archive volume(s)",
                            app.log_protection_group)
    window = model.retention.point_in_time
    expected = f"a duration of at least log_backup.interval ({format_duration(interval)})"
    if window is None:
        yield Violation(("retention", "point_in_time"), "required key is missing: log_backup is set", expected)
    elif window < interval:
        yield Violation(("retention", "point_in_time"), f"point_in_time {format_duration(window)} is shorter "
                        f"than log_backup.interval {format_duration(interval)}", expected, format_duration(window))
