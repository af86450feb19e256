"""The `copydata lab` subcommand: argument parsing only; the work is in the engine modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    lab = sub.add_parser("lab", help="throw-away database labs on the array emulator")
    engines = lab.add_subparsers(dest="lab_engine", required=True)
    pg = engines.add_parser("postgres", help="a PostgreSQL 15+ lab").add_subparsers(dest="lab_action", required=True)
    create = pg.add_parser("create", help="create (or complete) a lab; running it again changes nothing")
    create.add_argument("name", help="lab name: volumes NAME-data/NAME-wal, pgroups NAME/NAME-logs")
    create.add_argument("--port", type=int, default=None, help="server port (default: first free from 55432)")
    create.add_argument("--data-size", default="20G", help="data volume size (default 20G)")
    create.add_argument("--archive-size", default="10G", help="WAL archive volume size (default 10G)")
    create.add_argument("--sla-dir", type=Path, default=None,
                        help="where to write lab-NAME.yaml (default: $COPYDATA_SLA_DIR, include/slas, "
                             "$COPYDATA_HOME/slas)")
    create.add_argument("--no-airflow", action="store_true", help="do not register Airflow connections")
    create.add_argument("--pgbench-scale", type=int, default=None, metavar="N",
                        help="create database pgbench and run pgbench -i -s N")
    destroy = pg.add_parser("destroy", help="remove a lab: server, mounts, volumes, snapshots, pgroups, files")
    destroy.add_argument("name")
    destroy.add_argument("--sla-dir", type=Path, default=None)
    destroy.add_argument("--no-airflow", action="store_true", help="leave the Airflow connection alone")
    _add_mariadb(engines)


def _add_mariadb(engines) -> None:
    my = engines.add_parser("mariadb", help="a MariaDB 10.11+ lab").add_subparsers(dest="lab_action", required=True)
    create = my.add_parser("create", help="create (or complete) a lab; running it again changes nothing")
    create.add_argument("name", help="lab name: volumes NAME-data/NAME-binlog, pgroups NAME/NAME-logs")
    create.add_argument("--port", type=int, default=None, help="server port (default: first free from 53306)")
    create.add_argument("--data-size", default="20G", help="data volume size (datadir and its binlogs; default 20G)")
    create.add_argument("--archive-size", default="10G", help="binlog archive volume size (default 10G)")
    create.add_argument("--sla-dir", type=Path, default=None,
                        help="where to write lab-NAME.yaml (default: $COPYDATA_SLA_DIR, include/slas, "
                             "$COPYDATA_HOME/slas)")
    create.add_argument("--no-airflow", action="store_true", help="do not register Airflow connections")
    create.add_argument("--sysbench-tables", type=int, default=None, metavar="N",
                        help="create database sbtest and run sysbench oltp_read_write prepare with N tables")
    create.add_argument("--sysbench-rows", type=int, default=10000, metavar="M",
                        help="rows per sysbench table (default 10000)")
    destroy = my.add_parser("destroy", help="remove a lab: server, mounts, volumes, snapshots, pgroups, files")
    destroy.add_argument("name")
    destroy.add_argument("--sla-dir", type=Path, default=None)
    destroy.add_argument("--no-airflow", action="store_true", help="leave the Airflow connection alone")


def _run_mariadb(args: argparse.Namespace) -> int:
    import subprocess

    from . import mariadb
    from .common import parse_size

    try:
        if args.lab_action == "create":
            mariadb.create(mariadb.CreateOptions(
                name=args.name, port=args.port, data_size=parse_size(args.data_size),
                archive_size=parse_size(args.archive_size), sla_dir=args.sla_dir, airflow=not args.no_airflow,
                sysbench_tables=args.sysbench_tables, sysbench_rows=args.sysbench_rows))
        else:
            mariadb.destroy(args.name, args.sla_dir, airflow=not args.no_airflow)
    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:  # LabError, ArrayError, ...
        print(f"copydata lab: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if args.lab_engine == "mariadb":
        return _run_mariadb(args)
    import psycopg

    from . import postgres
    from .common import LabError, parse_size

    try:
        if args.lab_action == "create":
            if args.pgbench_scale is not None and args.pgbench_scale < 1:
                raise LabError("--pgbench-scale must be 1 or more")
            postgres.create(postgres.CreateOptions(
                name=args.name, port=args.port, data_size=parse_size(args.data_size),
                archive_size=parse_size(args.archive_size), sla_dir=args.sla_dir, airflow=not args.no_airflow,
                pgbench_scale=args.pgbench_scale))
        else:
            postgres.destroy(args.name, args.sla_dir, airflow=not args.no_airflow)
    except (RuntimeError, TimeoutError, psycopg.Error) as exc:  # LabError, ArrayError, CommandError, ...
        print(f"copydata lab: {exc}", file=sys.stderr)
        return 1
    return 0
