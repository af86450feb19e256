"""Engine by name, as an SLA application names it."""

from __future__ import annotations

from pathlib import Path

from .base import DbTarget, Engine


class UnsupportedEngine(ValueError):
    pass


def make_engine(app, db: DbTarget | None) -> Engine:
    if app.engine == "postgresql":
        from .postgres import PostgresEngine
        return PostgresEngine(db, data_directory=app.data_directory, os_user=app.os_user)
    if app.engine in ("mariadb", "mysql"):
        from .mariadb import MariaDbEngine
        archive = Path(app.mounts["archive"]) if app.mounts.get("archive") else None
        return MariaDbEngine(db, data_mount=Path(app.mounts["data"]), archive_mount=archive,
                             data_directory=app.data_directory, os_user=app.os_user, flavor=str(app.engine))
    raise UnsupportedEngine(f"application {app.name}: engine {app.engine!r} is not implemented yet "
                            "(available: postgresql, mariadb, mysql)")
