"""Without reflink (not root, or a folder that cannot reflink), the pool falls back to full copies
and hashed diffs: slower, but the same answers, and it says so."""

from __future__ import annotations

import logging
import os

from copydata.emulator.diff import hashed_diff
from copydata.emulator.pool import Pool

MiB = 1 << 20


def write(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_fallback_pool_copies_and_diffs_by_hashing(tmp_path, caplog):
    pool = Pool(tmp_path, tmp_path / "pool", make_xfs=False)
    with caplog.at_level(logging.WARNING):
        pool.open()
    assert not pool.reflink
    assert "FULL COPIES" in caplog.text
    pool.create("A", 8 * MiB)
    write(pool.path("A"), 0, os.urandom(4 * MiB))
    pool.clone("A", "S1")
    write(pool.path("A"), 1 * MiB, b"x" * 8192)
    write(pool.path("A"), 3 * MiB + 4096, b"y" * 100)
    assert pool.diff("A", "S1", 0, 8 * MiB, 4096) == [(1 * MiB, 8192), (3 * MiB + 4096, 4096)]
    assert pool.diff("A", "S1", 0, 8 * MiB, 65536) == [(1 * MiB, 65536), (3 * MiB, 65536)]
    with open(pool.path("S1"), "rb") as f:
        f.seek(1 * MiB)
        assert f.read(8192) != b"x" * 8192
    pool.clone("S1", "A")  # overwrite in place: same file, old contents back
    assert pool.diff("A", "S1", 0, 8 * MiB, 4096) == []


def test_hashed_diff_without_base_lists_allocated_ranges(tmp_path):
    img = tmp_path / "img"
    with open(img, "wb") as f:
        f.truncate(16 * MiB)
        f.seek(2 * MiB)
        f.write(os.urandom(MiB))
        f.flush()
        os.fsync(f.fileno())
    assert hashed_diff(str(img), None, 0, 16 * MiB, 4096) == [(2 * MiB, MiB)]
