"""Load SLA files: every problem in a file becomes an SlaError at its line; one broken file never stops the
others from loading."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from .diagnose import describe, from_validation_error
from .errors import DOCUMENT, SlaError, dotted
from .model import Sla
from .positions import DuplicateKey, PositionMap, load_yaml

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedSla:
    file: Path
    sla: Sla
    positions: PositionMap


def load_sla(path: str | Path) -> Sla:
    """The SLA in one file; raises the first SlaError (all of them in its `errors`)."""
    loaded, errors = parse_file(Path(path))
    if errors:
        errors[0].errors = errors
        raise errors[0]
    assert loaded is not None
    return loaded.sla


def load_all(folder: str | Path) -> tuple[list[Sla], list[SlaError]]:
    """Every SLA in folder's *.yaml and *.yml files, and the errors of the files that did not load."""
    folder = Path(folder)
    if not folder.is_dir():
        return [], [SlaError(folder, 0, 0, DOCUMENT, "a folder of SLA files", "no such folder")]
    loaded, errors = load_files(sla_files(folder))
    return [item.sla for item in loaded], errors


def sla_files(folder: Path) -> list[Path]:
    """The SLA files in folder (not its subfolders), sorted by name; hidden files are skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith("."))


def load_files(files: Iterable[Path]) -> tuple[list[LoadedSla], list[SlaError]]:
    """Load files in order; an SLA or application name already defined by an earlier file is an error of the
    later file, which is then left out."""
    loaded: list[LoadedSla] = []
    errors: list[SlaError] = []
    for file in files:
        item, problems = parse_file(file)
        if item is not None:
            problems = _duplicates(item, loaded)
        errors.extend(problems)
        if not problems and item is not None:
            loaded.append(item)
    return loaded, errors


def parse_file(file: str | Path) -> tuple[LoadedSla | None, list[SlaError]]:
    """The SLA in file, or None and every problem found in it (sorted by position)."""
    file = Path(file)
    try:
        data, positions, duplicates = load_yaml(_read(file))
    except SlaError as exc:
        return None, [exc]
    except yaml.YAMLError as exc:
        return None, [_syntax_error(file, exc)]
    errors = [_duplicate_key(file, d) for d in duplicates]
    if data is None:
        errors.append(SlaError(file, 1, 1, DOCUMENT, describe(Sla), "the file is empty"))
    else:
        try:
            sla = Sla.model_validate(data)
        except ValidationError as exc:
            errors.extend(from_validation_error(file, exc, positions))
        else:
            if not errors:
                sla._source_file = file
                return LoadedSla(file, sla, positions), []
    return None, sorted(errors, key=lambda e: e.sort_key)


def _read(file: Path) -> str:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise SlaError(file, 0, 0, DOCUMENT, "a readable SLA file", f"cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise SlaError(file, line, column, DOCUMENT, "UTF-8 text", f"byte 0x{raw[exc.start]:02x} is not UTF-8") \
            from None


def _syntax_error(file: Path, exc: yaml.YAMLError) -> SlaError:
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        context = f"{exc.context}: " if exc.context else ""
        start = exc.context_mark
        if exc.context and start is not None and start.line != mark.line:
            context = f"{exc.context} (from line {start.line + 1}): "
        return SlaError(file, mark.line + 1, mark.column + 1, DOCUMENT, "valid YAML", f"{context}{exc.problem}")
    return SlaError(file, 0, 0, DOCUMENT, "valid YAML", str(exc).replace("\n", " "))


def _duplicate_key(file: Path, duplicate: DuplicateKey) -> SlaError:
    first = duplicate.first
    return SlaError(file, duplicate.mark.line, duplicate.mark.column, dotted(duplicate.path), "each key once",
                    f"duplicate key {duplicate.path[-1]!r} (first at line {first.line}, column {first.column})")


def _duplicates(item: LoadedSla, earlier: list[LoadedSla]) -> list[SlaError]:
    errors = []
    for other in earlier:
        if other.sla.name == item.sla.name:
            errors.append(_duplicate_name(item, other, ("name",), ("name",), "SLA"))
        others = {app.name: i for i, app in enumerate(other.sla.applications)}
        for i, app in enumerate(item.sla.applications):
            if app.name in others:
                errors.append(_duplicate_name(item, other, ("applications", i, "name"),
                                              ("applications", others[app.name], "name"), "application"))
    return errors


def _duplicate_name(item: LoadedSla, other: LoadedSla, path: tuple, other_path: tuple, what: str) -> SlaError:
    mark, first = item.positions.locate(path), other.positions.locate(other_path)
    name = item.sla.name if what == "SLA" else item.sla.applications[path[1]].name
    return SlaError(item.file, mark.line, mark.column, dotted(path), f"an {what} name unique across all SLA files",
                    f"{what} {name!r} is already defined in {other.file}:{first.line}")
