"""Five-field cron expressions (minute hour day-of-month month day-of-week), checked without croniter."""

from __future__ import annotations

import re

EXPECTED = "a 5-field cron expression such as '0 * * * *' or '*/15 8-18 * * MON-FRI', or an Airflow preset"
PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name, lowest, highest, names for lowest.. upwards); "5/15" means 5-highest/15, as croniter reads it
FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
          ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS))
_ITEM = re.compile(r"(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?")


def is_cron(text: str) -> bool:
    """Whether text is meant as a cron expression (rather than an interval): a preset or several fields."""
    return text.startswith("@") or len(text.split()) > 1


def check_cron(text: str) -> str:
    """The expression with single spaces between fields; ValueError naming the bad field otherwise."""
    if text.startswith("@"):
        if text not in PRESETS:
            raise ValueError(f"unknown cron preset {text!r} (known: {', '.join(PRESETS)})")
        return text
    parts = text.split()
    if len(parts) != len(FIELDS):
        raise ValueError(f"cron expression {text!r} has {len(parts)} fields, not 5 "
                         "(minute hour day-of-month month day-of-week)")
    for part, field in zip(parts, FIELDS, strict=True):
        for item in part.split(","):
            _check_item(item, field)
    return " ".join(parts)


def _check_item(item: str, field: tuple[str, int, int, tuple[str, ...]]) -> None:
    name, low, high, names = field
    match = _ITEM.fullmatch(item)
    if not match:
        raise ValueError(f"cron {name} field: {item!r} is not '*', a value, a range a-b, a list or a step /n")
    if match["base"] != "*":
        bounds = [_value(v, field) for v in match["base"].split("-")]
        if bounds[0] > bounds[-1]:
            raise ValueError(f"cron {name} field: range {item!r} runs backwards")
    step = match["step"]
    if step is not None and not 1 <= int(step) <= high - low + 1:
        raise ValueError(f"cron {name} field: step {step} is outside 1-{high - low + 1}")


def _value(text: str, field: tuple[str, int, int, tuple[str, ...]]) -> int:
    name, low, high, names = field
    if text.upper() in names:
        return low + names.index(text.upper())
    if not text.isdigit():
        raise ValueError(f"cron {name} field: {text!r} is not a number"
                         + (f" or one of {', '.join(names)}" if names else ""))
    if not low <= int(text) <= high:
        raise ValueError(f"cron {name} field: {text} is outside {low}-{high}")
    return int(text)
