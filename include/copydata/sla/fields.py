"""The value types of SLA fields: constrained strings, durations and schedules.

Each carries an `Expect` marker: the plain-words description that error messages show as "expected ...".
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from . import cron, durations


@dataclass(frozen=True)
class Expect:
    """What a valid value looks like, in words (shown in errors as "expected <text>")."""

    text: str


NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,40}$"
_ARRAY_NAME = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
ARRAY_NAME_PATTERN = rf"^({_ARRAY_NAME}::)?{_ARRAY_NAME}$"
VOLUME_NAME_PATTERN = rf"^({_ARRAY_NAME}::)?({_ARRAY_NAME}/)?{_ARRAY_NAME}$"
CONN_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,250}$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.-]{1,256}$"
ROLE_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN),
                 Expect(f"a name matching {NAME_PATTERN} (lowercase letters, digits and '-', 1-41 characters)")]
ArrayName = Annotated[str, Field(pattern=ARRAY_NAME_PATTERN),
                      Expect("a FlashArray name: letters, digits and '-', 1-63 characters, "
                             "optionally prefixed by 'pod::'")]
VolumeName = Annotated[str, Field(pattern=VOLUME_NAME_PATTERN),
                       Expect("a FlashArray volume name: letters, digits and '-', 1-63 characters, "
                              "optionally 'pod::' and/or 'vgroup/' in front")]
ConnId = Annotated[str, Field(pattern=CONN_ID_PATTERN),
                   Expect("an Airflow connection id: letters, digits, '_', '.' and '-'")]
QueueName = Annotated[str, Field(pattern=QUEUE_PATTERN),
                      Expect("an Airflow queue name: letters, digits, '_', '.' and '-', 1-256 characters")]
Role = Annotated[str, Field(pattern=ROLE_PATTERN),
                 Expect(f"a role name matching {ROLE_PATTERN}, such as data or archive")]
OsUser = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$"), Expect("a Unix user name such as postgres")]
Count = Annotated[int, Field(ge=0, strict=True), Expect("a whole number, 0 or more")]
Text = Annotated[str, Field(min_length=1), Expect("a non-empty string")]


def _error(kind: str, message: str, expected: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message, {"expected": expected})


def found(value: Any) -> str:
    """What a YAML value is, in words: "a list", "a number", "nothing (null)"..."""
    kinds = ((type(None), "nothing (null)"), (bool, "a boolean"), (int | float, "a number"), (str, "a string"),
             (list, "a list"), (dict, "a mapping"))
    return next((words for kind, words in kinds if isinstance(value, kind)), type(value).__name__)


def _string(value: Any, kind: str, expected: str) -> str:
    if not isinstance(value, str):
        raise _error(kind, f"wrong type: found {found(value)}", expected)
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        if value <= timedelta(0) or value % timedelta(seconds=1):
            raise _error("duration", f"{value!r} is not a positive whole number of seconds", durations.EXPECTED)
        return value
    try:
        return durations.parse_duration(_string(value, "duration", durations.EXPECTED))
    except ValueError as exc:
        raise _error("duration", str(exc), durations.EXPECTED) from None


def _duration_json(value: timedelta) -> str:
    return durations.format_duration(value)


SCHEDULE_EXPECTED = "a cron expression such as '0 * * * *', or an interval such as 30m or PT30M"


def _schedule(value: Any) -> str | timedelta:
    if isinstance(value, timedelta):
        return _duration(value)
    text = _string(value, "schedule", SCHEDULE_EXPECTED).strip()
    if cron.is_cron(text):
        try:
            return cron.check_cron(text)
        except ValueError as exc:
            raise _error("schedule", str(exc), cron.EXPECTED) from None
    try:
        return durations.parse_duration(text)
    except ValueError as exc:
        raise _error("schedule", str(exc), SCHEDULE_EXPECTED) from None


def _schedule_json(value: str | timedelta) -> str:
    return value if isinstance(value, str) else durations.format_duration(value)


def _path(value: Any, absolute: bool) -> str:
    expected = "an absolute path" if absolute else "a relative path"
    text = _string(value, "path", expected)
    if not text or "\0" in text or text.startswith("/") != absolute:
        raise _error("path", f"{text!r} is not {expected}", expected)
    if ".." in text.split("/"):
        raise _error("path", f"{text!r} contains '..'", f"{expected} without '..'")
    return posixpath.normpath(text)


_DURATION_SCHEMA = {"type": "string", "pattern": durations.JSON_PATTERN,
                    "description": f"{durations.EXPECTED}"}
Duration = Annotated[timedelta, PlainValidator(_duration),
                     PlainSerializer(_duration_json, return_type=str, when_used="json"),
                     WithJsonSchema(_DURATION_SCHEMA), Expect(durations.EXPECTED)]
Schedule = Annotated[str | timedelta, PlainValidator(_schedule),
                     PlainSerializer(_schedule_json, return_type=str, when_used="json"),
                     WithJsonSchema({"anyOf": [
                         {"type": "string", "pattern": r"^(@[a-z]+|\S+(\s+\S+){4})$", "description": cron.EXPECTED},
                         _DURATION_SCHEMA]}),
                     Expect(SCHEDULE_EXPECTED)]
AbsolutePath = Annotated[str, PlainValidator(lambda v: _path(v, True)),
                         WithJsonSchema({"type": "string", "pattern": "^/"}), Expect("an absolute path")]
RelativePath = Annotated[str, PlainValidator(lambda v: _path(v, False)),
                         WithJsonSchema({"type": "string", "pattern": "^[^/]"}), Expect("a relative path")]
Volumes = Annotated[dict[Role, VolumeName], Field(min_length=1),
                    Expect("a mapping of role to volume name with at least one role, such as data: pgdemo-data")]
Mounts = Annotated[dict[Role, AbsolutePath],
                   Expect("a mapping of role to mount point, such as data: /var/lib/pgdemo/data")]
