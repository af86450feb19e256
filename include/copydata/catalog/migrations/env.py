"""Alembic environment of the catalog. Run through copydata.catalog.db.upgrade(), which passes an open
connection in config.attributes["connection"]; with only sqlalchemy.url set, it connects itself."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from copydata.catalog.coltypes import UTCDateTime
from copydata.catalog.db import make_engine
from copydata.catalog.models import Base

config = context.config
target_metadata = Base.metadata


def render_item(kind: str, obj: object, _autogen_context: object) -> str | bool:
    """Autogenerate writes UTCDateTime as its storage type, so revisions never import the package."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                      render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
