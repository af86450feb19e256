"""WAL segment names and archive continuity (16 MiB segments, the PostgreSQL default)."""

from __future__ import annotations

import re
from pathlib import Path

SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
SEGMENTS_PER_ID = 0x100  # 4 GiB per xlogid / 16 MiB per segment


def parse(name: str) -> tuple[int, int]:
    """(timeline, segment number) of a WAL segment file name."""
    m = SEGMENT_RE.match(name)
    if not m:
        raise ValueError(f"not a WAL segment name: {name!r}")
    tli, log, seg = (int(x, 16) for x in m.groups())
    return tli, log * SEGMENTS_PER_ID + seg


def name(tli: int, segno: int) -> str:
    return f"{tli:08X}{segno // SEGMENTS_PER_ID:08X}{segno % SEGMENTS_PER_ID:08X}"


def segments(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if SEGMENT_RE.match(p.name)) if folder.exists() else []


def gaps(names: list[str], since: str | None = None) -> tuple[str | None, str | None, list[str]]:
    """(first, last, missing) over the archive from `since` on; any timeline may supply a segment number."""
    nums = sorted({parse(n)[1] for n in names})
    if since is not None:
        start = parse(since)[1]
        nums = [n for n in nums if n >= start]
    if not nums:
        return None, None, [since] if since else []
    have = set(nums)
    first, last = nums[0], nums[-1]
    missing = [n for n in range(first, last + 1) if n not in have]
    if since is not None and parse(since)[1] < first:
        missing = list(range(parse(since)[1], first)) + missing
    tli = max(parse(n)[0] for n in names)
    by_num = {parse(n)[1]: n for n in sorted(names)}
    return by_num[first], by_num[last], [name(tli, n) for n in missing]


def label_start_segment(labelfile: str) -> str | None:
    """The WAL segment named by a backup_label's START WAL LOCATION line (where replay must begin)."""
    for line in labelfile.splitlines():
        if line.startswith("START WAL LOCATION:") and "(file " in line:
            return line.split("(file ")[1].rstrip(")").strip()
    return None
