"""`copydata sla validate|show|schema` (the parser lives in copydata.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .errors import DOCUMENT, SlaError
from .loader import load_files, parse_file, sla_files
from .schema import schema_text, write_schema


def run(args: argparse.Namespace) -> int:
    if args.action == "validate":
        return validate(args.paths)
    if args.action == "show":
        return show(args.path, args.json)
    return schema(args.output)


def validate(paths: list[Path]) -> int:
    """OK line per good file on stdout, each error on stderr; 1 if any error."""
    files, errors = _expand(paths)
    loaded, problems = load_files(files)
    errors += problems
    for item in loaded:
        print(f"OK {item.file}: {len(item.sla.applications)} application(s)")
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        broken = len({e.file for e in errors})
        print(f"{len(errors)} error(s) in {broken} file(s)", file=sys.stderr)
    return 1 if errors else 0


def _expand(paths: list[Path]) -> tuple[list[Path], list[SlaError]]:
    """Files as given, folders as their *.yaml and *.yml files."""
    files: list[Path] = []
    errors: list[SlaError] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
        elif found := sla_files(path):
            files.extend(found)
        else:
            errors.append(SlaError(path, 0, 0, DOCUMENT, "*.yaml or *.yml files", "no SLA file in this folder"))
    return files, errors


def show(path: Path, as_json: bool) -> int:
    """The normalised SLA (defaults filled in) as YAML, or JSON with as_json."""
    loaded, errors = parse_file(path)
    for error in errors:
        print(error, file=sys.stderr)
    if loaded is None:
        return 1
    data = loaded.sla.model_dump(mode="json")
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, width=100), end="")
    return 0


def schema(output: Path | None) -> int:
    if output is None:
        print(schema_text(), end="")
    else:
        print(f"wrote {write_schema(output)}", file=sys.stderr)
    return 0
