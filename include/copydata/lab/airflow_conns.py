"""Register the lab's Airflow connections through the Airflow ORM (create or update; idempotent).

The array's API token goes into the metadata database only: it is never printed or logged."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

FLASHARRAY_CONN_ID = "flasharray_default"
TOKEN_PLACEHOLDER = "<token from copydata emulator status --json>"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class AirflowUnavailable(RuntimeError):
    """Airflow is not installed, not configured or its metadata DB is not migrated."""


@dataclass(frozen=True)
class ConnSpec:
    conn_id: str
    conn_type: str
    host: str
    port: int
    login: str | None = None
    password: str | None = field(default=None, repr=False)  # secret: never printed
    schema: str | None = None
    extra: dict = field(default_factory=dict)
    secret_hint: str = TOKEN_PLACEHOLDER  # what env_line() shows instead of the password

    def env_line(self) -> str:
        """A shell line that defines the same connection through AIRFLOW_CONN_..., with the secret left out:
        `export NAME='json'`, or for a connection id a shell variable cannot hold (a '-' in a lab name)
        `env 'NAME=json' COMMAND`, which passes it to one command."""
        doc = {"conn_type": self.conn_type, "host": self.host, "port": self.port}
        doc.update({k: v for k, v in (("login", self.login), ("schema", self.schema)) if v})
        if self.password:
            doc["password"] = self.secret_hint
        if self.extra:
            doc["extra"] = self.extra
        name = f"AIRFLOW_CONN_{self.conn_id.upper()}"
        if name.isidentifier():
            return f"export {name}='{json.dumps(doc)}'"
        return f"env '{name}={json.dumps(doc)}' COMMAND"


def postgres_conn(name: str, port: int) -> ConnSpec:
    return ConnSpec(f"copydata_pg_{name}", "postgres", "127.0.0.1", port, login="postgres", schema="postgres")


def mariadb_conn(name: str, port: int, login: str, password: str, password_file: Path) -> ConnSpec:
    return ConnSpec(f"copydata_mariadb_{name}", "mysql", "127.0.0.1", port, login=login, password=password,
                    schema="mysql", secret_hint=f"<password in {password_file}>")


def flasharray_conn(endpoint: dict, host_name: str) -> ConnSpec:
    host, port = endpoint["target"].rsplit(":", 1)
    return ConnSpec(FLASHARRAY_CONN_ID, "flasharray", host, int(port), password=endpoint["api_token"],
                    extra={"ca_file": endpoint["ca_file"], "verify_tls": True, "devices_dir": endpoint["devices"],
                           "host_name": host_name})


def _orm():
    if not os.environ.get("AIRFLOW_HOME"):
        raise AirflowUnavailable("AIRFLOW_HOME is not set (source scripts/env.sh)")
    logging.getLogger("airflow").setLevel(logging.WARNING)  # its start-up chatter is not the lab's news
    try:
        from airflow.models import Connection
        from airflow.utils.session import create_session
    except ImportError as exc:
        raise AirflowUnavailable(f"Airflow is not importable ({exc.name or exc})") from None
    return Connection, create_session


def _db_error(exc: Exception) -> AirflowUnavailable:
    # Only the driver's own first line: SQLAlchemy's full text can carry statement parameters.
    first = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
    return AirflowUnavailable(f"the Airflow metadata DB is not ready ({first}): run `airflow db migrate`")


def _apply(conn, spec: ConnSpec) -> bool:
    changed = False
    for attr in ("conn_type", "host", "port", "login", "password", "schema"):
        if getattr(conn, attr) != getattr(spec, attr):
            setattr(conn, attr, getattr(spec, attr))
            changed = True
    if conn.extra_dejson != spec.extra:
        conn.extra = json.dumps(spec.extra) if spec.extra else None
        changed = True
    return changed


def register(specs: list[ConnSpec]) -> list[str]:
    """Create or update each connection. flasharray_default is only touched when missing or when it points
    at an emulator (a loopback host): a real array's connection is never overwritten. Returns notes."""
    from sqlalchemy.exc import SQLAlchemyError

    Connection, create_session = _orm()
    notes = []
    try:
        with create_session() as session:
            for spec in specs:
                conn = session.query(Connection).filter(Connection.conn_id == spec.conn_id).one_or_none()
                if conn is None:
                    conn = Connection(conn_id=spec.conn_id)
                    _apply(conn, spec)
                    session.add(conn)
                    notes.append(f"{spec.conn_id}: created")
                elif spec.conn_id == FLASHARRAY_CONN_ID and (conn.host or "").rsplit(":", 1)[0] not in LOOPBACK:
                    notes.append(f"{spec.conn_id}: kept (it points at {conn.host}, not at an emulator)")
                else:
                    notes.append(f"{spec.conn_id}: {'updated' if _apply(conn, spec) else 'unchanged'}")
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    return notes


def remove(conn_id: str) -> str:
    from sqlalchemy.exc import SQLAlchemyError

    Connection, create_session = _orm()
    try:
        with create_session() as session:
            gone = session.query(Connection).filter(Connection.conn_id == conn_id).delete()
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    return f"{conn_id}: {'removed' if gone else 'absent'}"


def register_step(steps, specs: list[ConnSpec], enabled: bool) -> str:
    """Step "airflow connections" of a lab's create (steps: common.Steps). Airflow being unavailable is a
    warning, not a failure. Returns the step's note."""
    with steps.step("airflow connections") as note:
        if not enabled:
            note["text"] = "skipped (--no-airflow)"
        else:
            try:
                note["text"] = "; ".join(register(specs))
            except AirflowUnavailable as exc:
                note["text"] = f"WARNING: not registered: {exc}"
                print(f"warning: Airflow connections not registered: {exc}", file=sys.stderr)
    return note["text"]


def remove_or_warn(conn_id: str) -> str:
    """remove(), with Airflow being unavailable reported as a warning. Returns a note."""
    try:
        return remove(conn_id)
    except AirflowUnavailable as exc:
        print(f"warning: Airflow connection {conn_id} not removed: {exc}", file=sys.stderr)
        return f"WARNING: not removed: {exc}"
