"""`copydata repo ...`: look into a repository and restore from it, without the array or the catalog.

    copydata repo points  URL [--conn-id ID] [--key-conn-id ID] APP [--json]
    copydata repo restore URL [--conn-id ID] [--key-conn-id ID] APP POINT --to-dir DIR [--role ROLE ...]
    copydata repo recover URL [--conn-id ID] [--key-conn-id ID] APP --workdir DIR --port PORT
                          [--at TIME | --point POINT]
    copydata repo instant URL [--conn-id ID] [--key-conn-id ID] APP --workdir DIR --port PORT
                          [--at TIME | --point POINT]
    copydata repo discard WORKDIR
    copydata repo verify  URL [--conn-id ID] [--key-conn-id ID] [--sample FRACTION_OR_COUNT]

URL is s3://bucket/prefix, wasb://container/prefix, gs://bucket/prefix or file:///path. A file:// repository
needs no Airflow; the cloud stores read the Airflow connection --conn-id (AIRFLOW_CONN_<ID> or the Airflow
metadata database), and an encrypted repository its key from --key-conn-id.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TextIO


def _repo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="s3://, wasb://, gs:// or file:// repository URL")
    p.add_argument("--conn-id", default=None, metavar="ID",
                   help="Airflow connection of the store (default: the provider's default connection)")
    p.add_argument("--key-conn-id", default=None, metavar="ID",
                   help="Airflow connection holding the key of an encrypted repository")
    p.add_argument("--workers", type=int, default=8, help="parallel transfers (default 8)")


def _database_args(p: argparse.ArgumentParser, workdir_holds: str) -> None:
    """The arguments of the commands that start a database from a point (recover, instant)."""
    _repo_args(p)
    p.add_argument("application", metavar="APP")
    p.add_argument("--workdir", required=True, metavar="DIR",
                   help=f"{workdir_holds} go here (the database's OS user must reach it)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--at", default="latest", metavar="TIME",
                   help="ISO 8601 with a zone, or latest (default: the end of the stored logs)")
    p.add_argument("--point", default=None, help="start from this point (default: the newest before TIME)")


def add_parser(sub) -> None:
    repo = sub.add_parser("repo", help="recovery points in object storage: list, restore, recover, verify "
                                       "(docs/restore-from-object-storage.md)").add_subparsers(
        dest="action", required=True)
    points = repo.add_parser("points", help="the points of an application in a repository")
    _repo_args(points)
    points.add_argument("application", metavar="APP")
    points.add_argument("--json", action="store_true", help="print JSON")

    restore = repo.add_parser("restore", help="restore a point's volume images to files in a folder")
    _repo_args(restore)
    restore.add_argument("application", metavar="APP")
    restore.add_argument("point", metavar="POINT")
    restore.add_argument("--to-dir", required=True, metavar="DIR", help="one <role>.img file per volume")
    restore.add_argument("--role", action="append", default=None, metavar="ROLE",
                         help="restore only this role (repeatable; default: every volume)")
    restore.add_argument("--json", action="store_true", help="print the report as JSON")

    recover = repo.add_parser("recover", help="start a PostgreSQL or MariaDB recovered to a point in time from the "
                                              "repository alone (local image file + loop device); needs root")
    _database_args(recover, "image, mount, fetched logs and sockets")
    recover.add_argument("--fetch-workers", type=int, default=4)
    recover.add_argument("--readahead", type=int, default=32, help="WAL files fetched ahead of the replay")

    instant = repo.add_parser("instant", help="start a PostgreSQL on an instant mount of a point (FUSE + loop "
                                              "device, blocks fetched on first read, hydrated in the background), "
                                              "replayed to TIME; needs root")
    _database_args(instant, "cache, mount, fetched WAL and sockets")

    discard = repo.add_parser("discard", help="stop a recovered or instant-mounted database and release its "
                                              "work folder (server, mount, loop device, files); needs root")
    discard.add_argument("workdir", metavar="WORKDIR")

    verify = repo.add_parser("verify", help="check manifests, log indexes and (a sample of) the chunks")
    _repo_args(verify)
    verify.add_argument("--sample", type=float, default=None,
                        help="fraction (< 1) or number (>= 1) of chunks to read back (default: all)")


def open_repository(args):
    from copydata.replication.target import Target

    target = Target(name="cli", url=args.url, conn_id=args.conn_id, key_conn_id=args.key_conn_id,
                    workers=args.workers)
    return target.open_repository()


def run(args) -> int:
    """Results go to stdout; anything else printed meanwhile (the Airflow hooks log to stdout) to stderr,
    so that `--json` output stays parseable."""
    from copydata.repo.errors import RepositoryError

    handler = {"points": _points, "restore": _restore, "recover": _recover, "instant": _instant,
               "discard": _discard, "verify": _verify}[args.action]
    out = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return handler(args, out)
    except (RepositoryError, ValueError) as err:
        print(f"copydata repo {args.action}: {err}", file=sys.stderr)
        return 1


def _points(args, out: TextIO) -> int:
    from copydata.replication.restore import list_points

    points = list_points(open_repository(args), args.application)
    if args.json:
        print(json.dumps([p.as_dict() for p in points], indent=2), file=out)
        return 0
    if not points:
        print(f"no points of {args.application}", file=out)
        return 0
    print(f"{'point':<40} {'consistent at':<32} {'volumes'}", file=out)
    for p in points:
        vols = ", ".join(f"{r} {v.size / (1 << 30):.1f} GiB" for r, v in p.volumes.items())
        print(f"{p.point:<40} {p.consistent_at.isoformat() if p.consistent_at else '?':<32} {vols}", file=out)
    return 0


def _restore(args, out: TextIO) -> int:
    from pathlib import Path

    from copydata.replication.restore import LocalFiles, restore_point

    report = restore_point(open_repository(args), args.application, args.point,
                           LocalFiles(Path(args.to_dir).resolve()), roles=args.role)
    print(json.dumps(report.as_dict(), indent=2) if args.json else "\n".join(report.lines()), file=out)
    return 0


def _recover(args, out: TextIO) -> int:
    from copydata.replication.recovery import recover_from_repo

    rec = recover_from_repo(open_repository(args), args.application, args.workdir, args.port,
                            point=args.point, point_in_time=args.at, fetch_workers=args.fetch_workers,
                            readahead=args.readahead)
    print(json.dumps(rec.summary(), indent=2), file=out)
    client = (f"psql -h {rec.run_dir} -p {rec.db.port} -U {rec.db.user}" if rec.engine_name == "postgresql"
              else f"mariadb --socket={rec.run_dir}/mysqld.sock -u {rec.db.user}")
    print(f"running: {client}\nrelease it: copydata repo discard {rec.workdir}", file=sys.stderr)
    return 0


def _instant(args, out: TextIO) -> int:
    from copydata.instant.postgres import instant_postgres
    from copydata.replication.restore import choose_point, parse_time

    target = parse_time(args.at)
    info = choose_point(open_repository(args), args.application, target, args.point)
    db = instant_postgres(args.url, args.application, info.point, args.workdir, port=args.port,
                          conn_id=args.conn_id, key_conn_id=args.key_conn_id, target_time=target)
    print(json.dumps({"application": args.application, "point": info.point,
                      "target": target.isoformat() if target else "latest", "socket_dir": db.target.host,
                      "port": db.target.port, "workdir": str(db.mount.workdir),
                      "timings": {k: round(v, 3) for k, v in db.timings.items()}}, indent=2), file=out)
    print(f"running: psql -h {db.target.host} -p {db.target.port} -U {db.target.user}\n"
          f"release it: copydata repo discard {db.mount.workdir}", file=sys.stderr)
    return 0


def _discard(args, out: TextIO) -> int:
    from copydata.instant.postgres import is_instant_workdir, release_instant
    from copydata.replication.recovery import discard_recovery

    if is_instant_workdir(args.workdir):
        release_instant(args.workdir)
    else:
        discard_recovery(args.workdir)
    print(f"released {args.workdir}", file=out)
    return 0


def _verify(args, out: TextIO) -> int:
    sample = args.sample
    if sample is not None and sample >= 1:
        sample = int(sample)
    report = open_repository(args).verify(sample=sample)
    print(f"{'OK' if report.ok else 'FAILED'}: manifests {report.manifests}, logs {report.logs}, "
          f"chunks {report.chunks_stored} stored, {report.chunks_checked} read back "
          f"({report.bytes_checked / (1 << 20):.1f} MiB), {report.unreferenced} unreferenced", file=out)
    for what, items in (("missing", report.missing), ("corrupt", report.corrupt), ("error", report.errors)):
        for item in items[:50]:
            print(f"  {what}: {item}", file=out)
        if len(items) > 50:
            print(f"  ... {len(items) - 50} more {what}", file=out)
    return 0 if report.ok else 1
