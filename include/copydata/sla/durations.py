"""Durations in SLA files: `90s`, `15m`, `2h`, `7d`, `1w`, or ISO 8601 (`PT15M`, `P7D`, `P1DT2H`)."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
EXPECTED = "a duration such as 90s, 15m, 2h, 7d, 1w or ISO 8601 PT15M, P7D, P1DT2H"
COMPACT_PATTERN = r"[0-9]+[smhdw]"
ISO_PATTERN = r"P(?!$)([0-9]+W)?([0-9]+D)?(T(?=[0-9])([0-9]+H)?([0-9]+M)?([0-9]+S)?)?"
JSON_PATTERN = rf"^({COMPACT_PATTERN}|{ISO_PATTERN})$"

_COMPACT = re.compile(r"([0-9]+)([smhdw])")
_ISO = re.compile(r"P(?!$)(?:([0-9]+)W)?(?:([0-9]+)D)?(?:T(?=[0-9])(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?")
_ISO_FIXED = ("w", "d", "h", "m", "s")


def parse_duration(text: str) -> timedelta:
    """Parse a duration; ValueError with a short reason when it is not one (or not greater than zero)."""
    text = text.strip()
    seconds = _compact_seconds(text) if text[:1].isdigit() else _iso_seconds(text)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too large") from None


def _compact_seconds(text: str) -> int:
    match = _COMPACT.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use one whole number and one unit (s, m, h, d, w)")
    return int(match[1]) * UNITS[match[2]]


def _iso_seconds(text: str) -> int:
    match = _ISO.fullmatch(text)
    if match:
        return sum(int(n) * UNITS[unit] for n, unit in zip(match.groups(), _ISO_FIXED, strict=True) if n)
    if re.fullmatch(r"P.*[YM].*", text.split("T")[0]):
        raise ValueError(f"{text!r}: years and months have no fixed length; use weeks or days")
    raise ValueError(f"{text!r} is not a duration")


def format_duration(value: timedelta) -> str:
    """The compact form with the largest unit that is exact: 90s, 15m, 2h, 7d, 2w."""
    seconds = int(value.total_seconds())
    if seconds != value.total_seconds() or seconds <= 0:
        raise ValueError(f"{value!r} is not a positive whole number of seconds")
    unit, size = next((u, s) for u, s in UNITS.items() if seconds % s == 0)
    return f"{seconds // size}{unit}"
