"""`copydata points` and `copydata catalog upgrade` (parsers in copydata.cli, which imports this lazily)."""

from __future__ import annotations

import argparse
import json
import sys

from .catalog import Catalog
from .errors import NotFound


def format_points(info: dict) -> str:
    counts = f"{info['snapshots']} snapshot(s), {info['log_backups']} log backup(s)"
    if info["earliest"] is None:
        return f"{info['application']}: no recoverable point in time ({counts})"
    lines = [f"{info['application']}: recoverable from {info['earliest']} to {info['latest']}"]
    lines += [f"  gap: nothing recoverable after {a} until {b}" for a, b in info["gaps"]]
    lines.append(f"  {counts}")
    return "\n".join(lines)


def points(args: argparse.Namespace) -> int:
    with Catalog(args.catalog) as catalog:
        try:
            info = catalog.points(args.application)
        except NotFound:
            print(f"unknown application {args.application!r} (not in the catalog {catalog.engine.url!r})",
                  file=sys.stderr)
            return 1
    print(json.dumps(info) if args.json else format_points(info))
    return 0


def upgrade(args: argparse.Namespace) -> int:
    with Catalog(args.catalog, upgrade=False) as catalog:
        before = catalog.revision()
        catalog.upgrade()
        after = catalog.revision()
    print(f"catalog {catalog.engine.url!r}: revision {before or 'none'} -> {after}" if before != after
          else f"catalog {catalog.engine.url!r}: at revision {after} already")
    return 0


def run(args: argparse.Namespace) -> int:
    return points(args) if args.command == "points" else upgrade(args)
