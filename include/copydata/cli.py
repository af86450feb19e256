"""The `copydata` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import paths
from .lab import cli as lab_cli
from .replication import repo_cli


def _emulator_parser(sub) -> None:
    emu = sub.add_parser("emulator", help="the embedded FlashArray emulator").add_subparsers(dest="action",
                                                                                           required=True)
    serve = emu.add_parser("serve", help="serve the emulator (foreground unless --detach)")
    serve.add_argument("--state", type=Path, default=None, help="state folder (default: $COPYDATA_HOME/emulator)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=18443, help="0 picks a free port")
    serve.add_argument("--json", action="store_true", help="print the endpoint as JSON")
    serve.add_argument("--detach", action="store_true", help="run in the background and return once it answers")
    serve.add_argument("--no-rest1", action="store_true", help="behave like an array without REST 1.x")
    serve.add_argument("--rest2-max", default="2.36", help="highest REST 2 version to offer ('none' for none)")
    stop = emu.add_parser("stop", help="stop the emulator and release its devices, mounts and pool")
    stop.add_argument("--state", type=Path, default=None)
    status = emu.add_parser("status", help="print the running emulator's endpoint")
    status.add_argument("--state", type=Path, default=None)
    status.add_argument("--json", action="store_true")


def _sla_parser(sub) -> None:
    sla = sub.add_parser("sla", help="check and show SLA files (docs/sla.md)").add_subparsers(dest="action",
                                                                                            required=True)
    validate = sla.add_parser("validate", help="check SLA files; exit 1 on any error")
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a file, or a folder of SLA files")
    show = sla.add_parser("show", help="print one SLA, normalised (defaults filled in)")
    show.add_argument("path", type=Path, metavar="PATH")
    show.add_argument("--json", action="store_true", help="JSON rather than YAML")
    schema = sla.add_parser("schema", help="print the JSON Schema of SLA files")
    schema.add_argument("--output", type=Path, default=None, metavar="PATH", help="write it to PATH instead")


def _print_endpoint(info: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info), flush=True)
        return
    print(f"FlashArray emulator at {info['url']} (pid {info['pid']})")
    print(f"  API token : {info['api_token']}")
    print(f"  CA file   : {info['ca_file']}")
    print(f"  state     : {info['state']}")
    print(f"  devices   : {info['devices']}")
    print(f"  reflink   : {'yes' if info['reflink'] else 'NO (full copies, hashed diffs)'}", flush=True)


def _emulator(args) -> int:
    from .emulator import service
    state = (args.state or paths.emulator_state()).resolve()
    if args.action == "stop":
        stopped = service.stop(state)
        print("emulator stopped" if stopped else "no emulator was running; cleaned up", file=sys.stderr)
        return 0
    if args.action == "status":
        info = service.read_endpoint(state)
        if not info:
            print(f"no emulator runs for {state}", file=sys.stderr)
            return 1
        _print_endpoint(info, args.json)
        return 0
    extra = ["--rest2-max", args.rest2_max] + (["--no-rest1"] if args.no_rest1 else [])
    rest2_max = None if args.rest2_max.lower() == "none" else args.rest2_max
    if args.detach:
        _print_endpoint(service.start_detached(state, args.host, args.port, extra), args.json)
        return 0
    service.serve(state, args.host, args.port, rest1=not args.no_rest1, rest2_max=rest2_max,
                  ready=lambda info: _print_endpoint(info, args.json))
    return 0


def _catalog_parsers(sub) -> None:
    help_url = "catalog URL (default: $COPYDATA_CATALOG_URL, else $COPYDATA_HOME/catalog.db)"
    points = sub.add_parser("points", help="recoverable points in time of an application")
    points.add_argument("application")
    points.add_argument("--json", action="store_true", help="print JSON")
    points.add_argument("--catalog", default=None, metavar="URL", help=help_url)
    cat = sub.add_parser("catalog", help="the catalog database").add_subparsers(dest="action", required=True)
    cat.add_parser("upgrade", help="create or migrate the catalog schema").add_argument(
        "--catalog", default=None, metavar="URL", help=help_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="copydata", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _emulator_parser(sub)
    lab_cli.add_parser(sub)
    _sla_parser(sub)
    _catalog_parsers(sub)
    repo_cli.add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "emulator":
        return _emulator(args)
    if args.command == "sla":
        from .sla.cli import run as sla_run
        return sla_run(args)
    if args.command in ("points", "catalog"):
        from .catalog import commands
        return commands.run(args)
    if args.command == "lab":
        return lab_cli.run(args)
    if args.command == "repo":
        return repo_cli.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
