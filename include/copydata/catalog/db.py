"""Engines, sessions and schema upgrades (Alembic, run programmatically; no alembic.ini needed)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool

from .. import paths


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic logs at INFO on every open ("Context impl SQLiteImpl"); keep task logs readable."""
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


with _quiet_alembic():  # its import logs "setup plugin ..." at INFO
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
URL_ENV = "COPYDATA_CATALOG_URL"
BUSY_TIMEOUT_S = 60
WRITE = {"copydata_write": True}  # execution option: SQLite writers start with BEGIN IMMEDIATE
_PG_LOCK_KEY = 0x636F70796461  # "copyda": advisory lock held while PostgreSQL migrations run


def default_url() -> str:
    """$COPYDATA_CATALOG_URL, else SQLite at $COPYDATA_HOME/catalog.db."""
    return os.environ.get(URL_ENV) or f"sqlite:///{paths.home() / 'catalog.db'}"


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def make_engine(url: str) -> Engine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    file = sqlite_file(url)
    if file is None:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    _sqlite_events(engine)
    return engine


def _sqlite_events(engine: Engine) -> None:
    """WAL + busy timeout, and SQLAlchemy (not sqlite3) emits BEGIN: IMMEDIATE for writers, so two
    processes never both hold a read snapshot they then fail to upgrade ("database is locked")."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("copydata_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the packaged migrations (also usable for `command.revision`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    with _quiet_alembic():
        return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with _quiet_alembic(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    with open(path.with_name(path.name + ".migrate.lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision`; idempotent, and safe when several processes open the catalog at once
    (a file lock on SQLite, a transaction-scoped advisory lock on PostgreSQL)."""
    current = current_revision(engine)
    if revision == "head" and current == head_revision():
        return
    log.info("catalog %r: migrating from revision %s to %s", engine.url, current, revision)
    with (_file_lock(sqlite_file(engine.url)), engine.execution_options(**WRITE).begin() as conn,
          _quiet_alembic()):
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        command.upgrade(alembic_config(connection=conn), revision)
