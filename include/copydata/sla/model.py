"""The SLA file format as pydantic models (see docs/sla.md). Pure Python: no Airflow import."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)

from . import rules
from .fields import (
    AbsolutePath,
    ArrayName,
    ConnId,
    Count,
    Duration,
    Expect,
    Mounts,
    Name,
    OsUser,
    QueueName,
    RelativePath,
    Schedule,
    Text,
    Volumes,
    _error,
)


class Engine(StrEnum):
    postgresql = "postgresql"
    mariadb = "mariadb"
    mysql = "mysql"
    oracle = "oracle"
    sqlserver = "sqlserver"
    hana = "hana"
    db2 = "db2"
    ase = "ase"


ENGINE_DEFAULTS: dict[str, dict[str, str]] = {
    "postgresql": {"os_user": "postgres", "data_directory": "pgdata"},
    "mariadb": {"os_user": "mysql", "data_directory": "mysql"},
    "mysql": {"os_user": "mysql", "data_directory": "mysql"},
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SnapshotPolicy(_Model):
    """When snapshots are taken."""

    schedule: Schedule = Field(description="Cron expression (5 fields or an Airflow preset such as @hourly), "
                                           "or an interval between snapshots such as 30m or PT30M.")
    freeze_timeout: Duration = Field(timedelta(seconds=60), description="Bound on the freeze window.")

    @model_validator(mode="after")
    def _rules(self) -> SnapshotPolicy:
        rules.raise_violations(type(self).__name__, list(rules.snapshot(self)))
        return self


class LogBackupPolicy(_Model):
    """Log shipping between snapshots (WAL archive snapshots for PostgreSQL)."""

    interval: Duration = Field(description="Time between two log backups (at least 1m).")

    @model_validator(mode="after")
    def _rules(self) -> LogBackupPolicy:
        rules.raise_violations(type(self).__name__, list(rules.log_interval(self.interval)))
        return self


class Retention(_Model):
    """Which snapshots are kept."""

    point_in_time: Duration | None = Field(None, description=(
        "Any second inside this window stays recoverable (required with log_backup, and at least its "
        "interval). Without log_backup: every snapshot inside the window is kept."))
    daily: Count = Field(7, description="Then keep the newest snapshot of each of the last N days.")
    weekly: Count = Field(4, description="... of each of the last N ISO weeks.")
    monthly: Count = Field(6, description="... of each of the last N months.")

    @model_validator(mode="after")
    def _rules(self) -> Retention:
        rules.raise_violations(type(self).__name__, list(rules.retention(self)))
        return self


class ScheduledRefresh(_Model):
    """A clone that is refreshed on a schedule (e.g. a QA copy moved to 'latest' every night)."""

    application: Name = Field(description="Application of this SLA whose clone is refreshed.")
    clone_name: Name = Field(description="The clone to refresh; it must exist when the DAG runs.")
    schedule: Schedule = Field(description="Cron expression or interval of the refresh.")
    point_in_time: Text = Field("latest", description="'latest' or an ISO 8601 UTC time.")
    mask: bool = Field(True, description="Run the SLA's masking after the refresh.")


class ClonePolicy(_Model):
    """Who may clone, how clones are masked, and when they expire."""

    allowed_roles: list[Text] = Field(default_factory=list, description=(
        "Airflow users or roles (SimpleAuthManager roles) allowed to trigger clone, refresh, delete, "
        "restore and repo_restore runs; empty: everyone. Scheduled runs are always allowed."))
    masking_sql: Text | None = Field(None, description="SQL run in the clone before it is handed over.")
    masking_script: AbsolutePath | None = Field(None, description=(
        "Executable run with the clone's DSN in $CLONE_DSN before it is handed over."))
    default_ttl: Duration = Field(timedelta(days=3), description="Clone expiry.")
    scheduled_refreshes: list[ScheduledRefresh] = Field(default_factory=list, description=(
        "Clones refreshed on a schedule: one DAG copydata__<application>__clone_refresh__<clone> each."))

    @model_validator(mode="after")
    def _rules(self) -> ClonePolicy:
        rules.raise_violations(type(self).__name__, list(rules.clone_policy(self)))
        return self


class Application(_Model):
    """One database protected by the SLA."""

    name: Name = Field(description="Application name, unique across all SLA files.")
    engine: Engine = Field(description="Database engine.")
    database_conn_id: ConnId = Field(description="Airflow connection of the database.")
    array_conn_id: ConnId = Field("flasharray_default", description="Airflow connection of the array.")
    protection_group: ArrayName = Field(description="Protection group holding all volumes below.")
    log_protection_group: ArrayName | None = Field(None, description=(
        "Protection group holding only the log archive volume(s); required with log_backup."))
    host: ArrayName = Field(description="The array's host object for the database host.")
    volumes: Volumes = Field(description=(
        "Role -> array volume name (postgresql: data and archive)."))
    mounts: Mounts = Field(default_factory=dict, description=(
        "Role -> mount point on the database host (postgresql: data and archive)."))
    data_directory: RelativePath | None = Field(None, description=(
        "Engine data directory, relative to the data mount (default: pgdata for postgresql, "
        "mysql for mariadb and mysql)."))
    os_user: OsUser | None = Field(None, description=(
        "OS user that runs the server (default: postgres for postgresql, mysql for mariadb and mysql)."))

    @model_validator(mode="before")
    @classmethod
    def _engine_defaults(cls, data: Any) -> Any:
        engine = data.get("engine") if isinstance(data, dict) else None
        if not isinstance(engine, str) or engine not in ENGINE_DEFAULTS:
            return data
        return {**data, **{k: v for k, v in ENGINE_DEFAULTS[engine].items() if data.get(k) is None}}

    @model_validator(mode="after")
    def _rules(self) -> Application:
        rules.raise_violations(type(self).__name__, list(rules.application(self)))
        return self


Applications = Annotated[list[Application], Expect("a list of applications, each starting with '- name:'")]


# -- replication to object storage (docs/replication.md) ---------------------------------------------

REPO_URL_PATTERN = r"^((s3|s3a|wasb|wasbs|az|gs|gcs)://[^/\s]+(/\S*)?|file://(localhost)?/\S*)$"
REPO_URL_EXPECTED = "a repository URL: s3://bucket/prefix, wasb://container/prefix, gs://bucket/prefix or file:///path"
BLOCK_SIZE_EXPECTED = "a power of two from 4K to 4M, in bytes or with a unit (4K, 256K, 1M, 4MiB)"
BANDWIDTH_EXPECTED = "bytes per second, or a rate such as 50MB/s or 40MiB/s (decimal MB, binary MiB)"


def _block_size(value: Any) -> int:
    from copydata.replication.units import parse_size

    try:
        size = parse_size(value)
    except ValueError as exc:
        raise _error("block_size", str(exc), BLOCK_SIZE_EXPECTED) from None
    if not (4 << 10 <= size <= 4 << 20) or size & (size - 1):
        raise _error("block_size", f"{value!r} is not a power of two from 4 KiB to 4 MiB", BLOCK_SIZE_EXPECTED)
    return size


def _bandwidth(value: Any) -> int | None:
    from copydata.replication.units import parse_rate

    try:
        rate = parse_rate(value)
    except ValueError:
        raise _error("bandwidth", f"{value!r} is not a byte rate", BANDWIDTH_EXPECTED) from None
    return None if rate is None else int(rate)


_SIZE_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 4096, "maximum": 4194304},
                          {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([kKmM](i?[bB])?)?\s*$"}],
                "description": BLOCK_SIZE_EXPECTED}
_RATE_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 0},
                          {"type": "string", "pattern": r"^\s*(unlimited|\d+(\.\d+)?\s*([kKmMgGtT](i?[bB])?|[bB])?"
                                                        r"\s*(/s)?)\s*$"},
                          {"type": "null"}],
                "description": BANDWIDTH_EXPECTED}
RepoUrl = Annotated[str, Field(pattern=REPO_URL_PATTERN), Expect(REPO_URL_EXPECTED)]
BlockSize = Annotated[int, PlainValidator(_block_size), WithJsonSchema(_SIZE_SCHEMA), Expect(BLOCK_SIZE_EXPECTED)]
Bandwidth = Annotated[int | None, PlainValidator(_bandwidth), WithJsonSchema(_RATE_SCHEMA), Expect(BANDWIDTH_EXPECTED)]
Workers = Annotated[int, Field(ge=1, le=64, strict=True), Expect("a whole number from 1 to 64")]
KeepLast = Annotated[int, Field(ge=1, strict=True), Expect("a whole number, 1 or more")]


class ReplicationTarget(_Model):
    """A repository (object storage or a folder) that receives the applications' recovery points and logs."""

    name: Name = Field(description="Target name, unique in this SLA; part of task ids and asset URIs.")
    url: RepoUrl = Field(description=(
        "Repository URL: s3://bucket/prefix, wasb://container/prefix, gs://bucket/prefix or file:///path."))
    conn_id: ConnId | None = Field(None, description=(
        "Airflow connection of the store (aws, wasb or google_cloud_platform); none for file://. Default: "
        "the provider's default connection (aws_default, wasb_default, google_cloud_default)."))
    key_conn_id: ConnId | None = Field(None, description=(
        "Airflow connection holding the repository's AES-256 key (password or extra 'key': 64 hex digits or "
        "base64 of 32 bytes). None: the repository is not encrypted."))
    block_size: BlockSize = Field(1 << 20, description=(
        "Block (and chunk) size of a new repository: a power of two from 4K to 4M. Default 1M."))
    workers: Workers = Field(4, description="Parallel uploads and downloads.")
    bandwidth: Bandwidth = Field(None, description=(
        "Upload cap in bytes/s or as a rate such as 50MB/s; none: unlimited."))
    keep_last: KeepLast = Field(7, description="Points kept per application by the daily retention.")

    @model_validator(mode="after")
    def _rules(self) -> ReplicationTarget:
        rules.raise_violations(type(self).__name__, list(rules.replication_target(self)))
        return self


class Replication(_Model):
    """Replication of every application's snapshots and logs to one or more repositories."""

    targets: list[ReplicationTarget] = Field(min_length=1, description=(
        "Repositories; each gets every application of the SLA (DAG copydata__<sla>__replicate)."))
    proxy_host: ArrayName | None = Field(None, description=(
        "The array's host object that the temporary copies of the snapshot volumes are connected to and read "
        "on (the proxy host). Default: each application's host."))
    proxy_queue: QueueName | None = Field(None, description=(
        "Airflow queue of the replicate tasks, e.g. the queue of an Edge worker on the proxy host. "
        "Default: none (the executor's default queue)."))

    @model_validator(mode="after")
    def _rules(self) -> Replication:
        rules.raise_violations(type(self).__name__, list(rules.replication(self)))
        return self


class Sla(_Model):
    """A copydata SLA: snapshot schedule, log backups, retention and clone policy for its applications."""

    name: Name = Field(description="SLA name; DAG ids are copydata__<name>__snapshot, ...")
    description: str = Field("", description="Free text.")
    snapshot: SnapshotPolicy
    log_backup: LogBackupPolicy | None = Field(None, description="No log shipping when absent.")
    retention: Retention = Field(default_factory=Retention)
    clone_policy: ClonePolicy = Field(default_factory=ClonePolicy)
    applications: Applications = Field(default_factory=list)
    replication: Replication | None = Field(None, description=(
        "Replication to object storage (docs/replication.md); none when absent."))
    _source_file: Path | None = PrivateAttr(None)  # set by the loader

    @model_validator(mode="after")
    def _rules(self) -> Sla:
        rules.raise_violations(type(self).__name__, list(rules.sla(self)))
        return self

    @property
    def source_file(self) -> Path | None:
        """The file this SLA was loaded from (None when built in Python)."""
        return self._source_file

    @property
    def schedule_kind(self) -> Literal["cron", "interval"]:
        return "interval" if isinstance(self.snapshot.schedule, timedelta) else "cron"

    @property
    def schedule_interval(self) -> timedelta | None:
        schedule = self.snapshot.schedule
        return schedule if isinstance(schedule, timedelta) else None

    def application(self, name: str) -> Application:
        """The application called name (KeyError if none)."""
        for app in self.applications:
            if app.name == name:
                return app
        raise KeyError(f"SLA {self.name!r} has no application {name!r}")


def airflow_schedule(sla: Sla, dag: Literal["snapshot", "log_backup"] = "snapshot") -> str | timedelta | None:
    """The `schedule` argument for the SLA's DAG: a cron string or a timedelta (None: no log backup DAG)."""
    if dag == "log_backup":
        return sla.log_backup.interval if sla.log_backup else None
    return sla.snapshot.schedule
