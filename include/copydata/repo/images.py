"""Block images (volume snapshots as files or block devices) to and from a repository.

backup_image reads only the blocks touched by the given ranges (e.g. a FlashArray volume diff) and
inherits every other block's chunk id from the previous point's volume entry: incremental forever, while
each manifest still names every block. restore_image writes a volume back, optionally only the blocks
that differ from what the target already holds (delta restore), and checks the digests at the end.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from copydata.repo.errors import ChunkCorrupt, RepositoryError, VerifyError
from copydata.repo.manifest import VolumeEntry
from copydata.repo.repository import check_block_size

if TYPE_CHECKING:
    from copydata.repo.repository import Repository

Range = tuple[int, int]   # (offset, length) in bytes


def nblocks(size: int, block_size: int) -> int:
    return -(-size // block_size)


def device_size(fd: int) -> int:
    """Size of an open regular file or block device."""
    return os.lseek(fd, 0, os.SEEK_END)


def volume_digest(repo: Repository, chunks: list[str | None], size: int, block_size: int) -> str:
    """SHA-256 over the 32-byte ids of all blocks in order; a zero block counts with the id that an
    all-zero block of its length would have."""
    h = hashlib.sha256()
    for i, cid in enumerate(chunks):
        h.update(bytes.fromhex(cid or repo.zero_id(min(block_size, size - i * block_size))))
    return h.hexdigest()


# -- backup ------------------------------------------------------------------------------------------

def blocks_in_ranges(ranges: Iterable[Range], size: int, block_size: int) -> set[int]:
    """Indexes of the blocks that the byte ranges touch (clipped to size)."""
    touched: set[int] = set()
    for offset, length in ranges:
        start, end = max(0, offset), min(size, offset + length)
        if start < end:
            touched.update(range(start // block_size, (end - 1) // block_size + 1))
    return touched


def _plan(ranges: Iterable[Range] | None, previous: VolumeEntry | None, size: int,
          bs: int) -> tuple[list[str | None], set[int] | None]:
    """(ids inherited from previous, blocks to read; None = all). Without previous, blocks outside the
    ranges are zero. When the size changed, the old and the new last block are always read."""
    n = nblocks(size, bs)
    if ranges is None:
        return [None] * n, None
    if previous is None:
        return [None] * n, blocks_in_ranges(ranges, size, bs)
    if previous.block_size != bs:
        raise RepositoryError(f"previous point has block size {previous.block_size}, not {bs}")
    inherited = (list(previous.chunks) + [None] * n)[:n]
    wanted = blocks_in_ranges(ranges, size, bs)
    if previous.size != size:
        wanted |= {i for i in (nblocks(previous.size, bs) - 1, n - 1) if 0 <= i < n}
    return inherited, wanted


def _read(repo: Repository, fd: int, size: int, bs: int, indexes: Iterable[int],
          hasher: hashlib._Hash | None) -> Iterator[tuple[int, bytes]]:
    for i in indexes:
        length = min(bs, size - i * bs)
        data = os.pread(fd, length, i * bs)
        if len(data) != length:
            raise OSError(f"short read at block {i}: {len(data)} of {length} bytes")
        if hasher is not None:
            hasher.update(data)
        repo.transfer.count(blocks_read=1, bytes_read=length)
        yield i, data


def backup_image(repo: Repository, source: str | os.PathLike, ranges: list[Range] | None = None,
                 previous: VolumeEntry | None = None, block_size: int | None = None, *, name: str = "",
                 role: str = "", array_snapshot: str = "", full_read: bool = False) -> VolumeEntry:
    """Store a volume image and return its manifest entry (not yet committed: write the manifest after).

    ranges None reads everything; otherwise only the blocks the ranges touch, the rest is inherited from
    previous (or zero without one). full_read reads every block anyway: blocks outside the ranges are
    compared with the inherited ids (a mismatch is stored and counted as a diff miss) and the entry gets
    the whole-image SHA-256, which it otherwise only gets when ranges is None."""
    bs = check_block_size(block_size or (previous.block_size if previous else repo.config.block_size))
    fd = os.open(source, os.O_RDONLY)
    try:
        size = device_size(fd)
        inherited, wanted = _plan(ranges, previous, size, bs)
        chunks = list(inherited)
        hasher = hashlib.sha256() if wanted is None or full_read else None
        indexes = range(len(chunks)) if hasher is not None else sorted(wanted)
        repo.transfer.count(inherited_blocks=len(chunks) - len(indexes))

        def store(item: tuple[int, bytes]) -> tuple[int, str | None]:
            return item[0], _store_block(repo, item[0], item[1], inherited[item[0]], wanted)

        for i, cid in repo.transfer.map(store, _read(repo, fd, size, bs, indexes, hasher)):
            chunks[i] = cid
    finally:
        os.close(fd)
    return VolumeEntry(name=name, size=size, block_size=bs, chunks=chunks,
                       digest=volume_digest(repo, chunks, size, bs),
                       sha256=hasher.hexdigest() if hasher else None, role=role,
                       array_snapshot=array_snapshot).validate()


def _store_block(repo: Repository, i: int, data: bytes, inherited: str | None,
                 wanted: set[int] | None) -> str | None:
    outside = wanted is not None and i not in wanted     # only with full_read
    if data == bytes(len(data)):
        repo.transfer.count(zero_blocks=1, diff_misses=int(outside and inherited is not None))
        return None
    if outside:
        cid = repo.chunk_id(data)
        if cid == inherited:
            repo.transfer.count(inherited_blocks=1)
            return cid
        repo.transfer.count(diff_misses=1)
    return repo.put_chunk(data)


# -- restore -----------------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    written: int = 0      # blocks written from the repository
    unchanged: int = 0    # blocks the target already held (delta restore)
    zeroed: int = 0       # zero blocks punched or written as zeros
    bytes_written: int = 0


def restore_image(repo: Repository, entry: VolumeEntry, target: str | os.PathLike,
                  only_differing: bool = False) -> RestoreResult:
    """Write a volume to target (a file, created or resized to the volume's size, or a block device at
    least that large). only_differing reads each target block first and writes only the blocks whose id
    differs. Raises VerifyError unless the result matches the entry's digest (and SHA-256, if recorded)."""
    entry.validate()
    fd, fresh, is_file = _open_target(target, entry.size)
    result = RestoreResult()
    digest = hashlib.sha256()
    whole = hashlib.sha256() if entry.sha256 else None
    try:
        work = _BlockRestore(repo, entry, fd, fresh, is_file, only_differing)
        for status, data, cid in repo.transfer.map(work, range(len(entry.chunks))):
            setattr(result, status, getattr(result, status) + 1)
            result.bytes_written += len(data) if status == "written" else 0
            digest.update(bytes.fromhex(cid))
            if whole is not None:
                whole.update(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if digest.hexdigest() != entry.digest:
        raise VerifyError(f"volume {entry.name!r}: restored blocks do not match the manifest's digest")
    if whole is not None and whole.hexdigest() != entry.sha256:
        raise VerifyError(f"volume {entry.name!r}: SHA-256 of the restored image differs from the backup's")
    return result


def _open_target(target: str | os.PathLike, size: int) -> tuple[int, bool, bool]:
    """(fd, fresh: known to read as zeros, is a regular file)."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            fresh = st.st_size == 0
            if st.st_size != size:
                os.ftruncate(fd, size)
            return fd, fresh, True
        if device_size(fd) < size:
            raise RepositoryError(f"{target} is smaller than the volume ({size} bytes)")
        return fd, False, False
    except BaseException:
        os.close(fd)
        raise


class _BlockRestore:
    """Restores one block; called on the transfer pool. Returns (status, plaintext, id)."""

    def __init__(self, repo: Repository, entry: VolumeEntry, fd: int, fresh: bool, is_file: bool,
                 only_differing: bool) -> None:
        self.repo, self.entry, self.fd = repo, entry, fd
        self.fresh, self.is_file, self.only_differing = fresh, is_file, only_differing
        self.zeros = bytes(entry.block_size)   # compared against, never written

    def __call__(self, i: int) -> tuple[str, bytes, str]:
        e = self.entry
        offset, length, cid = i * e.block_size, e.block_length(i), e.chunks[i]
        expected = cid or self.repo.zero_id(length)
        if self.only_differing and not self.fresh:
            current = os.pread(self.fd, length, offset)
            # a zero block (null): compare bytes, no hash (only all-zero bytes have the zero block's id)
            same = current == self.zeros[:length] if cid is None else self.repo.chunk_id(current) == expected
            if same:
                self.repo.transfer.count(blocks_unchanged=1)
                return "unchanged", current, expected
        if cid is None:
            if not self.fresh:
                _zero(self.fd, offset, length, self.is_file)
            return "zeroed", bytes(length), expected
        data = self.repo.get_chunk(cid)
        if len(data) != length:
            raise ChunkCorrupt(f"chunk {cid} holds {len(data)} bytes, block {i} of {e.name!r} has {length}")
        os.pwrite(self.fd, data, offset)
        self.repo.transfer.count(blocks_written=1)
        return "written", data, expected


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _zero(fd: int, offset: int, length: int, is_file: bool) -> None:
    """Make a range read as zeros: punch a hole in a file where the filesystem can, else write zeros."""
    if is_file and _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    os.pwrite(fd, bytes(length), offset)
