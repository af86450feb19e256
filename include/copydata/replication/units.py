"""Byte sizes and transfer rates as written in SLA files ("1M", "50MB/s"). No imports beyond re."""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
UNLIMITED = ("", "unlimited", "none", "0")


def parse_size(value: int | float | str) -> int:
    """A byte count: 1048576, "1M", "1MiB", "4K" (binary: K/M/G/T and KiB/MiB/...), "50MB" (decimal:
    KB/MB/GB/TB, as transfer rates are usually quoted), "512B" or "512"."""
    if isinstance(value, bool):
        raise ValueError(f"size {value!r}: expected a number of bytes or a string like '1M'")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"size {value!r} must be positive")
        return int(value)
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"size {value!r}: expected a number with an optional unit (K, M, G, KiB, MB, ...)")
    number, unit, binary, byte = float(m.group(1)), m.group(2).lower(), m.group(3), m.group(4)
    if binary and not (unit and byte):
        raise ValueError(f"size {value!r}: write KiB, MiB, GiB or TiB")
    base = 1000 if (unit and byte and not binary) else 1024
    size = int(number * base ** _POWERS[unit])
    if size <= 0:
        raise ValueError(f"size {value!r} must be positive")
    return size


def parse_rate(value: int | float | str | None) -> float | None:
    """A bandwidth in bytes/s: None, 0 or "unlimited" = no cap; 52428800; "50MB/s" (decimal); "40MiB/s"."""
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise ValueError(f"bandwidth {value!r}: expected bytes per second or a string like '50MB/s'")
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in UNLIMITED:
            return None
        return float(parse_size(re.sub(r"\s*/s$", "", text)))
    if value == 0:
        return None
    return float(parse_size(value))


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
