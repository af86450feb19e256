"""Block differences between two images, as FlashArray reports them.

The reflink path compares FIEMAP extent maps and reads no data: a logical range
is unchanged when both files map it to the same physical blocks. The fallback
path (no reflink) hashes both files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from .blocks import Extent, fiemap

Range = tuple[int, int]  # (offset, length)
_HASH_CHUNK = 1 << 20


def _keyed(extents: Iterable[Extent], start: int, end: int) -> list[tuple[int, int, int]]:
    """(begin, end, physical - logical) for data extents clipped to [start, end)."""
    out = []
    for e in extents:
        if not e.holds_data:
            continue
        b, f = max(e.logical, start), min(e.end, end)
        if b < f:
            out.append((b, f, e.physical - e.logical))
    return out


def _key_at(intervals: list[tuple[int, int, int]], idx: int, pos: int) -> tuple[int, int | None, int]:
    """Advance idx past intervals ending at or before pos; return (idx, key at pos, next edge)."""
    while idx < len(intervals) and intervals[idx][1] <= pos:
        idx += 1
    if idx == len(intervals):
        return idx, None, 2**63
    b, f, key = intervals[idx]
    if b <= pos:
        return idx, key, f
    return idx, None, b


def mapping_diff(a: Iterable[Extent], b: Iterable[Extent], start: int, end: int) -> list[Range]:
    """Byte ranges in [start, end) where the two extent maps differ."""
    ia, ib = _keyed(a, start, end), _keyed(b, start, end)
    out: list[Range] = []
    pa = pb = 0
    pos = start
    while pos < end:
        pa, ka, na = _key_at(ia, pa, pos)
        pb, kb, nb = _key_at(ib, pb, pos)
        nxt = min(na, nb, end)
        if ka != kb:
            out.append((pos, nxt - pos))
        pos = nxt
    return out


def allocated(extents: Iterable[Extent], start: int, end: int) -> list[Range]:
    return [(b, f - b) for b, f, _ in _keyed(extents, start, end)]


def align(ranges: Iterable[Range], block_size: int, start: int, end: int) -> list[Range]:
    """Round ranges outward to block_size and merge touching ones."""
    out: list[list[int]] = []
    for off, length in ranges:
        b = max(start, off - (off - start) % block_size)
        f = min(end, off + length)
        f = min(end, f + (-(f - start)) % block_size)
        if out and b <= out[-1][1]:
            out[-1][1] = max(out[-1][1], f)
        else:
            out.append([b, f])
    return [(b, f - b) for b, f in out]


def extent_diff(path: str, base: str | None, start: int, length: int, block_size: int) -> list[Range]:
    end = start + length
    with open(path, "rb") as fa:
        mine = list(fiemap(fa.fileno(), start, length))
    if base is None:
        return align(allocated(mine, start, end), block_size, start, end)
    with open(base, "rb") as fb:
        theirs = list(fiemap(fb.fileno(), start, length))
    return align(mapping_diff(mine, theirs, start, end), block_size, start, end)


def _read(f, off: int, n: int) -> bytes:
    f.seek(off)
    data = f.read(n)
    return data + b"\0" * (n - len(data))


def hashed_diff(path: str, base: str | None, start: int, length: int, block_size: int) -> list[Range]:
    """Fallback without reflink: read both images and compare block hashes."""
    if base is None:
        return extent_diff(path, None, start, length, block_size)
    end = start + length
    step = max(block_size, _HASH_CHUNK - _HASH_CHUNK % block_size)
    ranges: list[Range] = []
    with open(path, "rb") as fa, open(base, "rb") as fb:
        for off in range(start, end, step):
            n = min(step, end - off)
            da, db = _read(fa, off, n), _read(fb, off, n)
            if hashlib.blake2b(da).digest() == hashlib.blake2b(db).digest():
                continue
            for i in range(0, n, block_size):
                if da[i : i + block_size] != db[i : i + block_size]:
                    ranges.append((off + i, min(block_size, n - i)))
    return align(ranges, block_size, start, end)


def file_size(path: str) -> int:
    return os.stat(path).st_size
