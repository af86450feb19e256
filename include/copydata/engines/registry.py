"""Engine by name, as an SLA application names it."""

from __future__ import annotations

from .base import DbTarget, Engine


class UnsupportedEngine(ValueError):
    pass


def make_engine(app, db: DbTarget | None) -> Engine:
    if app.engine == "postgresql":
        from .postgres import PostgresEngine
        return PostgresEngine(db, data_directory=app.data_directory, os_user=app.os_user)
    raise UnsupportedEngine(f"application {app.name}: engine {app.engine!r} is not implemented yet "
                            "(available: postgresql)")
