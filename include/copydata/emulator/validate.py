"""Validation of names, snapshot suffixes and sizes."""

from __future__ import annotations

import re

from . import errors

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
SUFFIX_RE = re.compile(r"^((?=.*[a-zA-Z-])[a-zA-Z0-9]([a-zA-Z0-9-]{0,63}[a-zA-Z0-9])?|[1-9][0-9]*)$")
MAX_SIZE = 4 * 2**50


def check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise errors.invalid(
            f"Invalid {kind} name. Names are 1-63 letters, digits, '-' or '_', starting with a letter or digit.",
            str(name))


def check_suffix(suffix: str) -> None:
    if not isinstance(suffix, str) or not SUFFIX_RE.match(suffix):
        raise errors.invalid(
            "Invalid suffix. A suffix is letters, digits and '-' (no dots or underscores), or a number.",
            str(suffix))


def check_size(size: int) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % 512 or size > MAX_SIZE:
        raise errors.invalid("Invalid size. Sizes are positive multiples of 512 bytes up to 4 PiB.", str(size))
    return size
