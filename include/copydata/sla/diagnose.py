"""Turn pydantic validation errors into SlaErrors at the right line, with plain-words messages."""

from __future__ import annotations

import difflib
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .errors import SlaError, dotted
from .fields import Expect, found
from .model import Sla
from .positions import PositionMap

CUSTOM_ERRORS = ("sla_rule", "duration", "schedule", "path")  # raised by fields.py and rules.py
_TYPE_ERRORS = ("_type", "_parsing", "model_attributes_type")
_VALUE_ERRORS = ("enum", "literal_error", "string_pattern_mismatch", "greater_than_equal", "string_too_short",
                 "too_short")


def from_validation_error(file: str | Path, exc: ValidationError, positions: PositionMap) -> list[SlaError]:
    return [_one(file, error, positions) for error in exc.errors(include_url=False)]


def _one(file: str | Path, error: ErrorDetails, positions: PositionMap) -> SlaError:
    loc, on_key = _path(error)
    mark = positions.locate(loc, key=on_key)
    return SlaError(file, mark.line, mark.column, dotted(loc), _expected(error, loc, on_key),
                    _message(error, loc, on_key))


def _path(error: ErrorDetails) -> tuple[tuple[str | int, ...], bool]:
    """The location without pydantic's '[key]' marker, and whether the error is about the key itself."""
    loc = error["loc"]
    if loc and loc[-1] == "[key]":
        return loc[:-1], True
    if error["type"] == "invalid_key":  # pydantic turns a key True into 1 in loc
        return (*loc[:-1], error["input"]), True
    return loc, error["type"] == "extra_forbidden"


def _message(error: ErrorDetails, loc: tuple[str | int, ...], on_key: bool) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}" + _did_you_mean(loc)
    if kind == "invalid_key":
        return f"key {loc[-1]!r} is {found(loc[-1])}, not a string"  # YAML reads on, yes... as booleans
    if on_key:
        return f"invalid key {value!r}"
    if kind.endswith(_TYPE_ERRORS):
        return f"wrong type: found {found(value)}"
    if kind in _VALUE_ERRORS:
        return f"invalid value {value!r}"
    return error["msg"]


def _did_you_mean(loc: tuple[str | int, ...]) -> str:
    close = difflib.get_close_matches(str(loc[-1]), _keys(loc[:-1]), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _expected(error: ErrorDetails, loc: tuple[str | int, ...], on_key: bool) -> str:
    ctx = error.get("ctx", {})
    if error["type"] in CUSTOM_ERRORS and "expected" in ctx:
        return str(ctx["expected"])
    if error["type"] == "extra_forbidden":
        return "one of the keys " + ", ".join(_keys(loc[:-1]))
    if error["type"] == "invalid_key":
        return "a string key (quote yes, no, on, off, true, false and numbers used as keys)"
    annotation = _key_annotation(loc[:-1]) if on_key else annotation_at(loc)
    return describe(annotation) if annotation is not None else str(ctx.get("expected", "a valid value"))


def _key_annotation(loc: tuple[str | int, ...]) -> Any:
    mapping = _bare(annotation_at(loc))[0]
    return typing.get_args(mapping)[0] if typing.get_origin(mapping) is dict else None


def _keys(loc: tuple[str | int, ...]) -> list[str]:
    model = _bare(annotation_at(loc))[0]
    return list(model.model_fields) if _is_model(model) else []


def annotation_at(loc: tuple[str | int, ...]) -> Any:
    """The type annotation of the value at loc in an Sla (None when loc leads nowhere)."""
    annotation: Any = Sla
    for part in loc:
        bare, _ = _bare(annotation)
        origin, args = typing.get_origin(bare), typing.get_args(bare)
        if _is_model(bare) and part in bare.model_fields:
            field = bare.model_fields[part]
            annotation = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata \
                else field.annotation
        elif origin is list and isinstance(part, int):
            annotation = args[0]
        elif origin is dict:
            annotation = args[1]
        else:
            return None
    return annotation


def _bare(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip Annotated and Optional: (the type, the Annotated metadata)."""
    metadata: list[Any] = []
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            metadata.extend(annotation.__metadata__)
            annotation = annotation.__origin__
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation, metadata
            annotation = rest[0]
        else:
            return annotation, metadata


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def describe(annotation: Any) -> str:
    """What a value of this type looks like, in words."""
    bare, metadata = _bare(annotation)
    expect = next((m.text for m in metadata if isinstance(m, Expect)), None)
    if expect:
        return expect
    if _is_model(bare):
        return f"a mapping with the keys {', '.join(bare.model_fields)}"
    if isinstance(bare, type) and issubclass(bare, Enum):
        return "one of " + ", ".join(str(m.value) for m in bare)
    names = {str: "a string", int: "a whole number", list: "a list", dict: "a mapping"}
    return names.get(typing.get_origin(bare) or bare, "a valid value")
