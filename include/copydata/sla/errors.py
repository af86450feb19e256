"""SlaError: one problem in one SLA file, with its position."""

from __future__ import annotations

from pathlib import Path

DOCUMENT = "<document>"  # the field of problems with the whole file (syntax, empty, not a mapping)


class SlaError(Exception):
    """`<file>:<line>:<col>: <field>: <message> (expected <expected>)`; line and column are 1-based (0: the
    file as a whole). `errors` lists every problem found in the file, this one first."""

    def __init__(self, file: str | Path, line: int, column: int, field: str, expected: str, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.column = column
        self.field = field
        self.expected = expected
        self.message = message
        self.errors: list[SlaError] = [self]
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message} (expected {self.expected})"

    def __repr__(self) -> str:
        return f"SlaError({str(self)!r})"

    def __reduce__(self) -> tuple:
        return type(self), (self.file, self.line, self.column, self.field, self.expected, self.message)

    @property
    def sort_key(self) -> tuple[int, int]:
        return self.line, self.column


def dotted(path: tuple[str | int, ...]) -> str:
    """('applications', 0, 'volumes', 'archive') -> 'applications[0].volumes.archive'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) and not isinstance(part, bool) else f".{part}" if text else str(part)
    return text or DOCUMENT
