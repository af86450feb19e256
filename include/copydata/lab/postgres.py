"""`copydata lab postgres create|destroy NAME`: a PostgreSQL server on two array volumes, with its WAL
archive, protection groups, Airflow connections and SLA file. Every step is idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import airflow_conns, pgserver, sla, storage
from .common import (
    LabError,
    Steps,
    first_free_port,
    os_user_exists,
    port_free,
    require_root,
)
from .pgserver import OS_USER, PORT_BASE, PgLab
from .storage import LabVolume

GiB = 2**30


@dataclass(frozen=True)
class CreateOptions:
    name: str
    port: int | None = None
    data_size: int = 20 * GiB
    archive_size: int = 10 * GiB
    sla_dir: Path | None = None
    airflow: bool = True
    pgbench_scale: int | None = None


def lab_volumes(lab: PgLab, data_size: int = 20 * GiB, archive_size: int = 10 * GiB) -> list[LabVolume]:
    return [LabVolume("data", f"{lab.name}-data", data_size, lab.data_mount),
            LabVolume("archive", f"{lab.name}-wal", archive_size, lab.archive_mount)]


def lab_pgroups(name: str) -> dict[str, list[str]]:
    """The whole database, and the log archive alone (log backups snapshot only that one)."""
    return {name: [f"{name}-data", f"{name}-wal"], f"{name}-logs": [f"{name}-wal"]}


def choose_port(lab: PgLab, requested: int | None) -> int:
    configured = pgserver.configured_port(lab.conf)
    port = requested or configured
    if port is None:
        others = {pgserver.configured_port(c) for c in lab.root.parent.glob("*/data/pgdata/postgresql.conf")
                  if c != lab.conf}
        return first_free_port(PORT_BASE, {p for p in others if p})
    if not (port == configured and pgserver.is_running(lab)) and not port_free(port):
        raise LabError(f"port {port} is in use on 127.0.0.1: choose another with --port")
    return port


# -- create ---------------------------------------------------------------------------------
def _server_steps(steps: Steps, lab: PgLab, opts: CreateOptions) -> int:
    with steps.step("initdb") as note:
        note["text"] = "initialised" if pgserver.initdb(lab) else "PG_VERSION exists; skipped"
    with steps.step("postgresql.conf") as note:
        port = choose_port(lab, opts.port)
        changed = pgserver.write_block(lab.conf, pgserver.render_block(pgserver.settings(lab, port)))
        note["text"] = f"port {port}, settings {'written' if changed else 'unchanged'}"
    with steps.step("server") as note:
        note["text"] = pgserver.start(lab, restart=changed)
    if opts.pgbench_scale:
        with steps.step("pgbench") as note:
            note["text"] = pgserver.init_pgbench(lab, port, opts.pgbench_scale)
    return port


def create(opts: CreateOptions, out: TextIO | None = None) -> None:
    require_root()
    os_user_exists(OS_USER)
    lab = PgLab.named(opts.name)
    vols = lab_volumes(lab, opts.data_size, opts.archive_size)
    steps, endpoint, host, serials = storage.create_storage("postgres", lab, vols, lab_pgroups(lab.name), OS_USER,
                                                            lambda: pgserver.prepare_dirs(lab), out)
    port = _server_steps(steps, lab, opts)
    specs = [airflow_conns.postgres_conn(lab.name, port), airflow_conns.flasharray_conn(endpoint, host)]
    conns = airflow_conns.register_step(steps, specs, opts.airflow)
    sla_file = sla.write_step(steps, opts.sla_dir, "postgres", lab.name, "postgresql", f"copydata_pg_{lab.name}",
                              host, vols, "pgdata", OS_USER)
    storage.print_summary(
        out, lab.name,
        [f"  DSN         postgresql://postgres@127.0.0.1:{port}/postgres",
         f"  socket      psql -h {lab.run_dir} -p {port} -U postgres",
         f"  server log  {lab.logfile}"],
        host, vols, serials, lab_pgroups(lab.name), [f"  WAL archive {lab.wal_dir}"],
        sla_file, conns, specs, "the token is")


# -- destroy --------------------------------------------------------------------------------
def destroy(name: str, sla_dir: Path | None = None, airflow: bool = True, out: TextIO | None = None) -> None:
    require_root()
    lab = PgLab.named(name)

    def stop_server() -> bool:
        running = pgserver.is_running(lab)
        if running:
            pgserver.engine().stop(lab.data_mount)
        return running

    storage.destroy_lab("postgres", lab.name, lab.root, lab_volumes(lab), list(lab_pgroups(lab.name)),
                        f"copydata_pg_{lab.name}", sla.sla_path(sla_dir, lab.name), stop_server, airflow, out)
