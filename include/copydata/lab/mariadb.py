"""`copydata lab mariadb create|destroy NAME`: a MariaDB server on two array volumes (datadir with its binlogs,
and the binlog archive), protection groups, Airflow connections and SLA file. Every step is idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import airflow_conns, myserver, sla, storage
from .common import (
    LabError,
    Steps,
    first_free_port,
    os_user_exists,
    port_free,
    require_root,
)
from .myserver import BINLOG_BASENAME, DATA_SUBDIR, DB_USER, OS_USER, PORT_BASE, MyLab
from .storage import LabVolume

GiB = 2**30
ENGINE = "mariadb"


@dataclass(frozen=True)
class CreateOptions:
    name: str
    port: int | None = None
    data_size: int = 20 * GiB
    archive_size: int = 10 * GiB
    sla_dir: Path | None = None
    airflow: bool = True
    sysbench_tables: int | None = None
    sysbench_rows: int = 10000


def conn_id(name: str) -> str:
    return f"copydata_mariadb_{name}"


def lab_volumes(lab: MyLab, data_size: int = 20 * GiB, archive_size: int = 10 * GiB) -> list[LabVolume]:
    return [LabVolume("data", f"{lab.name}-data", data_size, lab.data_mount),
            LabVolume("archive", f"{lab.name}-binlog", archive_size, lab.archive_mount)]


def lab_pgroups(name: str) -> dict[str, list[str]]:
    """The whole database, and the binlog archive alone (log backups snapshot only that one)."""
    return {name: [f"{name}-data", f"{name}-binlog"], f"{name}-logs": [f"{name}-binlog"]}


def choose_port(lab: MyLab, requested: int | None) -> int:
    configured = myserver.configured_port(lab.cnf)
    port = requested or configured
    if port is None:
        others = {myserver.configured_port(c) for c in lab.root.parent.glob("*/run/my.cnf") if c != lab.cnf}
        return first_free_port(PORT_BASE, {p for p in others if p})
    if not (port == configured and myserver.is_running(lab)) and not port_free(port):
        raise LabError(f"port {port} is in use on 127.0.0.1: choose another with --port")
    return port


# -- create ---------------------------------------------------------------------------------
def _server_steps(steps: Steps, lab: MyLab, opts: CreateOptions) -> int:
    with steps.step("my.cnf") as note:
        port = choose_port(lab, opts.port)
        changed = myserver.write_cnf(lab.cnf, myserver.render_cnf(lab, port))
        note["text"] = f"port {port}, settings {'written' if changed else 'unchanged'}"
    with steps.step("mariadb-install-db") as note:
        note["text"] = "initialised" if myserver.install_db(lab) else "system tables exist; skipped"
    with steps.step("server") as note:
        note["text"] = myserver.start(lab, restart=changed)
    with steps.step("copydata user") as note:
        note["text"] = myserver.ensure_user(lab)
    if opts.sysbench_tables:
        with steps.step("sysbench") as note:
            note["text"] = myserver.init_sysbench(lab, opts.sysbench_tables, opts.sysbench_rows)
    return port


def create(opts: CreateOptions, out: TextIO | None = None) -> None:
    require_root()
    os_user_exists(OS_USER)
    lab = MyLab.named(opts.name)
    for program in ("mariadbd", "mariadb-install-db", "mariadb", "mariadb-admin"):
        myserver.binary(program)
    if opts.sysbench_tables is not None and opts.sysbench_tables < 1:
        raise LabError("--sysbench-tables must be 1 or more")
    if opts.sysbench_rows < 1:
        raise LabError("--sysbench-rows must be 1 or more")
    vols = lab_volumes(lab, opts.data_size, opts.archive_size)
    steps, endpoint, host, serials = storage.create_storage(ENGINE, lab, vols, lab_pgroups(lab.name), OS_USER,
                                                            lambda: myserver.prepare_dirs(lab), out)
    port = _server_steps(steps, lab, opts)
    specs = [airflow_conns.mariadb_conn(lab.name, port, DB_USER, myserver.read_password(lab), lab.password_file),
             airflow_conns.flasharray_conn(endpoint, host)]
    conns = airflow_conns.register_step(steps, specs, opts.airflow)
    sla_file = sla.write_step(steps, opts.sla_dir, ENGINE, lab.name, ENGINE, conn_id(lab.name), host, vols,
                              DATA_SUBDIR, OS_USER)
    storage.print_summary(
        out, lab.name,
        [f"  DSN         mysql://{DB_USER}@127.0.0.1:{port}/mysql (password in {lab.password_file})",
         f"  socket      mariadb --defaults-file={lab.cnf}   (as root; or -u {DB_USER} -p)",
         f"  server log  {lab.logfile}"],
        host, vols, serials, lab_pgroups(lab.name),
        [f"  binlogs     {lab.datadir / BINLOG_BASENAME}.* (server)",
         f"  archive     {lab.binlog_archive} (binlog archive)"],
        sla_file, conns, specs, "secrets are")


# -- destroy --------------------------------------------------------------------------------
def destroy(name: str, sla_dir: Path | None = None, airflow: bool = True, out: TextIO | None = None) -> None:
    require_root()
    lab = MyLab.named(name)
    storage.destroy_lab("mariadb", lab.name, lab.root, lab_volumes(lab), list(lab_pgroups(lab.name)),
                        conn_id(lab.name), sla.sla_path(sla_dir, lab.name), lambda: myserver.stop(lab), airflow,
                        out)
