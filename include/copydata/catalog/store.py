"""Store: the engine, short sessions and row lookups shared by the Catalog's methods."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Self, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import db
from .coltypes import as_utc
from .errors import NotFound
from .models import ApplicationRow

T = TypeVar("T")


def check_state(state: str, allowed: Iterable[str]) -> str:
    if state not in allowed:
        raise ValueError(f"unknown state {state!r}; expected one of {', '.join(allowed)}")
    return state


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class Store:
    """Engine, sessions and lookups; opening one upgrades the schema to head unless upgrade=False.
    url None: $COPYDATA_CATALOG_URL, else SQLite at $COPYDATA_HOME/catalog.db."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True) -> None:
        self.url = url or db.default_url()
        self.engine = db.make_engine(self.url)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self.engine.execution_options(**db.WRITE), expire_on_commit=False)
        if upgrade:
            self.upgrade()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url!r})"

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self) -> None:
        """Run the migrations to head (idempotent; safe with concurrent openers)."""
        db.upgrade(self.engine)

    def revision(self) -> str | None:
        return db.current_revision(self.engine)

    # -- sessions and lookups -------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writer() as session, session.begin():
            yield session

    def _write_retrying(self, work: Callable[[Session], T]) -> T:
        """Run an idempotent get-or-create; a concurrent insert of the same key makes it run again."""
        try:
            with self._write() as session:
                return work(session)
        except IntegrityError:
            with self._write() as session:
                return work(session)

    @staticmethod
    def _app_row(session: Session, name: str) -> ApplicationRow:
        row = session.scalar(select(ApplicationRow).where(ApplicationRow.name == name))
        if row is None:
            raise NotFound(f"no application {name!r} in the catalog")
        return row

    @staticmethod
    def _get(session: Session, model: type[T], ident: int) -> T:
        row = session.get(model, ident)
        if row is None:
            raise NotFound(f"no {model.__tablename__} row with id {ident}")  # type: ignore[attr-defined]
        return row

