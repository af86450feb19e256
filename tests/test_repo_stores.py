"""The repository over every store: POSIX folder, S3 (moto), Azure Blob (Azurite), GCS (fake-gcs-server).

Each test runs once per store kind (the `store` fixture of tests/objectstores.py) with a fresh prefix.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from copydata.repo import (
    AlreadyExists,
    ChunkCorrupt,
    LockConflict,
    LockLost,
    Manifest,
    NotFound,
    PointExists,
    Repository,
    RepositoryError,
    Transfer,
    layout,
)
from copydata.repo.images import backup_image, restore_image

pytest_plugins = ["objectstores"]

MiB = 1 << 20
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def write_blocks(path: Path, size: int, blocks: dict[int, bytes], block_size: int = MiB) -> None:
    """A sparse image of size bytes with the given content at block indexes."""
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.truncate(size)
        for i, data in blocks.items():
            f.seek(i * block_size)
            f.write(data)


def text_block(i: int, size: int = MiB) -> bytes:
    return (f"block {i} of a database file; ".encode() * (size // 16))[:size]


def chunk_keys(store) -> set[str]:
    return {o.key for o in store.list(layout.CHUNKS)}


# -- the store protocol ------------------------------------------------------------------------------

def test_store_protocol(store) -> None:
    store.put("a/b/c", b"one")
    store.put("a/b/c", b"two")                       # plain put overwrites
    assert store.get("a/b/c") == b"two"
    with pytest.raises(AlreadyExists):
        store.put("a/b/c", b"three", create_only=True)
    assert store.get("a/b/c") == b"two"
    store.put("a/d", b"x" * 10, create_only=True)
    assert store.exists("a/d") and not store.exists("a/e")
    with pytest.raises(NotFound):
        store.get("a/e")
    listed = {o.key: o for o in store.list("a/")}
    assert set(listed) == {"a/b/c", "a/d"} and listed["a/d"].size == 10
    assert abs(listed["a/d"].mtime - time.time()) < 120
    assert [o.key for o in store.list("a/b")] == ["a/b/c"]
    store.delete("a/b/c")
    store.delete("a/b/c")                            # deleting a missing key is fine
    assert [o.key for o in store.list("a/")] == ["a/d"]


def test_store_for_url(store_kind: str, tmp_path: Path) -> None:
    from objectstores import BUCKET, CONN_IDS

    from copydata.airflow.storage import store_for

    scheme = {"posix": "file", "s3": "s3", "azure": "wasb", "gcs": "gs"}[store_kind]
    where = tmp_path if scheme == "file" else f"{BUCKET}/url-{os.urandom(4).hex()}"
    url = f"{scheme}://{where}/repo"
    assert store_for(url, CONN_IDS.get(store_kind)).url == url
    cid = Repository.init(store_for(url, CONN_IDS.get(store_kind))).put_chunk(b"via a URL" * 100)
    assert Repository.open(store_for(url, CONN_IDS.get(store_kind))).get_chunk(cid) == b"via a URL" * 100


# -- chunks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes"])
def test_chunk_round_trip(store, encrypted: bool) -> None:
    repo = Repository.init(store, key=KEY if encrypted else None)
    data = text_block(1, 256 << 10)
    cid = repo.put_chunk(data)
    assert (cid == hashlib.sha256(data).hexdigest()) is not encrypted   # HMAC ids in encrypted repos
    stored = store.get(layout.chunk_key(cid))
    assert stored[:2] == bytes((1, 0x03 if encrypted else 0x01))        # version 1; zstd (+ AES-GCM)
    assert len(stored) < len(data) // 10
    if encrypted:
        assert b"database" not in stored
    reopened = Repository.open(store, key=KEY if encrypted else None)
    assert reopened.get_chunk(cid) == data
    random = os.urandom(64 << 10)                                       # incompressible: stored raw
    rid = reopened.put_chunk(random)
    assert store.get(layout.chunk_key(rid))[1] & 0x01 == 0
    assert Repository.open(store, key=KEY if encrypted else None).get_chunk(rid) == random


def test_open_checks_config_and_key(store) -> None:
    with pytest.raises(RepositoryError, match="no repository"):
        Repository.open(store)
    Repository.init(store, key=KEY)
    with pytest.raises(RepositoryError, match="already holds"):
        Repository.init(store)
    with pytest.raises(RepositoryError, match="encrypted"):
        Repository.open(store)
    with pytest.raises(RepositoryError, match="opens none"):
        Repository.open(store, key=os.urandom(32).hex())
    Repository.open(store, key=bytes.fromhex(KEY))


def test_dedup_same_block_twice_is_one_chunk(counting_store, tmp_path: Path) -> None:
    repo = Repository.init(counting_store)
    img = tmp_path / "img"
    write_blocks(img, 4 * MiB, {0: text_block(7), 2: text_block(7), 3: text_block(8)})
    entry = backup_image(repo, img)
    assert entry.chunks[0] == entry.chunks[2] and entry.chunks[1] is None
    assert len(counting_store.put_keys(layout.CHUNKS)) == 2
    counting_store.reset()
    again = Repository.open(counting_store)
    again.load_chunk_index()
    assert backup_image(again, img).chunks == entry.chunks
    assert counting_store.put_keys(layout.CHUNKS) == []
    assert again.transfer.stats.chunks_skipped == 3


# -- manifests: the commit point ---------------------------------------------------------------------

def test_point_invisible_until_manifest_written(store, tmp_path: Path) -> None:
    repo = Repository.init(store, key=KEY)
    img = tmp_path / "img"
    write_blocks(img, 2 * MiB, {1: text_block(1)})
    entry = backup_image(repo, img, name="data", role="data", array_snapshot="pg1.snap1.data")
    assert chunk_keys(store) and repo.points() == []
    manifest = Manifest("pg1", "snap1", [entry], engine={"engine": "postgres", "lsn": "0/3000028"})
    repo.write_manifest(manifest)
    assert repo.points() == [("pg1", "snap1")] == repo.points("pg1")
    assert repo.points("other") == []
    read = repo.read_manifest("pg1", "snap1")
    assert read == manifest and read.volume("data").array_snapshot == "pg1.snap1.data"
    repo.write_manifest(manifest)                                  # an identical retry is a no-op
    with pytest.raises(PointExists):
        repo.write_manifest(Manifest("pg1", "snap1", [], engine={"other": True}))
    repo.forget("pg1", "snap1")
    assert repo.points() == [] and not list(store.list(layout.MANIFESTS))


# -- incremental forever -----------------------------------------------------------------------------

def test_full_then_incremental_uploads_only_changed_blocks(counting_store, tmp_path: Path) -> None:
    repo = Repository.init(counting_store)
    img, size = tmp_path / "img", 64 * MiB
    write_blocks(img, size, {i: (os.urandom(MiB) if i % 2 else text_block(i)) for i in range(0, 64, 4)})
    full = backup_image(repo, img, name="data")
    repo.write_manifest(Manifest("app", "p1", [full]))
    assert len(counting_store.put_keys(layout.CHUNKS)) == 16 and full.sha256 == sha256_file(img)
    p1_sha = full.sha256

    changes = [(5 * MiB + 100, 300), (20 * MiB - 10, 20), (40 * MiB, MiB), (8 * MiB, MiB)]
    with open(img, "r+b") as f:
        for offset, length in changes[:3]:
            f.seek(offset)
            f.write(os.urandom(length))
        f.seek(8 * MiB)
        f.write(bytes(MiB))                                       # a data block becomes zero
    counting_store.reset()
    repo = Repository.open(counting_store)
    repo.load_chunk_index()
    incr = backup_image(repo, img, ranges=changes, previous=full, name="data")
    repo.write_manifest(Manifest("app", "p2", [incr], parent="p1"))
    changed = {5, 19, 20, 40, 8}
    assert {i for i, (a, b) in enumerate(zip(full.chunks, incr.chunks, strict=True)) if a != b} <= changed
    new_ids = {incr.chunks[i] for i in changed} - {None}
    put = counting_store.put_keys(layout.CHUNKS)
    assert sorted(put) == sorted(layout.chunk_key(c) for c in new_ids) and len(put) == 4
    assert counting_store.put_bytes(layout.CHUNKS) < 4 * MiB + 4096
    assert repo.transfer.stats.blocks_read == 5 and incr.sha256 is None and incr.chunks[8] is None

    for point, expected in (("p1", p1_sha), ("p2", sha256_file(img))):
        out = tmp_path / f"restore-{point}"
        restore_image(repo, repo.read_manifest("app", point).volume("data"), out)
        assert sha256_file(out) == expected and out.stat().st_size == size


def test_full_read_catches_diff_misses(store, tmp_path: Path) -> None:
    repo = Repository.init(store)
    img = tmp_path / "img"
    write_blocks(img, 4 * MiB, {0: text_block(0), 1: text_block(1)})
    full = backup_image(repo, img)
    write_blocks(img, 4 * MiB, {1: text_block(9), 2: text_block(2)})
    incr = backup_image(repo, img, ranges=[(2 * MiB, 10)], previous=full, full_read=True)
    assert repo.transfer.stats.diff_misses == 1 and incr.sha256 == sha256_file(img)
    out = tmp_path / "out"
    restore_image(repo, incr, out)
    assert sha256_file(out) == sha256_file(img)


def test_delta_restore_writes_only_differing_blocks(counting_store, tmp_path: Path) -> None:
    repo = Repository.init(counting_store, key=KEY)
    img, out = tmp_path / "img", tmp_path / "out"
    write_blocks(img, 16 * MiB, {i: text_block(i) for i in range(0, 16, 2)})
    entry = backup_image(repo, img)
    restore_image(repo, entry, out)
    write_blocks(out, 16 * MiB, {2: text_block(99), 3: text_block(98), 6: b"x"})   # damage 3 blocks
    counting_store.reset()
    result = restore_image(repo, entry, out, only_differing=True)
    assert (result.written, result.zeroed, result.unchanged) == (2, 1, 13)
    assert len(counting_store.gets) == 2 and sha256_file(out) == sha256_file(img)


# -- damage, verify, gc ------------------------------------------------------------------------------

@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes"])
def test_flipped_byte_caught_by_verify_and_restore(store, tmp_path: Path, encrypted: bool) -> None:
    repo = Repository.init(store, key=KEY if encrypted else None)
    img = tmp_path / "img"
    write_blocks(img, 4 * MiB, {0: text_block(0), 1: os.urandom(MiB), 3: text_block(3)})
    entry = backup_image(repo, img)
    repo.write_manifest(Manifest("app", "p1", [entry]))
    assert repo.verify().ok and repo.verify(sample=0.5, seed=1).chunks_checked == 2
    victim = entry.chunks[1]
    raw = bytearray(store.get(layout.chunk_key(victim)))
    raw[len(raw) // 2] ^= 0x01
    store.put(layout.chunk_key(victim), bytes(raw))
    report = repo.verify()
    assert not report.ok and report.corrupt == [victim] and report.chunks_checked == 3
    with pytest.raises(ChunkCorrupt):
        restore_image(repo, entry, tmp_path / "out")
    store.delete(layout.chunk_key(victim))
    assert repo.verify().missing == [victim]


def test_gc_removes_exactly_unreferenced_chunks_older_than_grace(store, tmp_path: Path) -> None:
    repo = Repository.init(store)
    img = tmp_path / "img"
    write_blocks(img, 4 * MiB, {0: text_block(0), 1: text_block(1), 2: text_block(2)})
    p1 = backup_image(repo, img)
    repo.write_manifest(Manifest("app", "p1", [p1]))
    write_blocks(img, 4 * MiB, {1: text_block(11)})
    p2 = backup_image(repo, img, ranges=[(MiB, 1)], previous=p1)
    repo.write_manifest(Manifest("app", "p2", [p2]))
    log = repo.put_log("app", "000000010000000000000001", text_block(5, 512 << 10))
    orphan_old = repo.put_chunk(text_block(100))
    repo.forget("app", "p1")                                   # p1's block 1 is now unreferenced
    time.sleep(2.05)                                           # object stores keep 1-second mtimes
    orphan_young = repo.put_chunk(text_block(200))             # e.g. a running backup's upload
    report = repo.gc(grace=1.5)
    kept = set(p2.chunks) | set(log.chunks) | {orphan_young}
    assert chunk_keys(store) == {layout.chunk_key(c) for c in kept - {None}}
    assert (report.deleted_chunks, report.kept_young, report.manifests, report.logs) == (2, 1, 1, 1)
    assert orphan_old not in kept and p1.chunks[1] not in kept
    assert not [o for o in store.list(layout.MANIFESTS) if "p1" in o.key]
    out = tmp_path / "out"
    restore_image(repo, repo.read_manifest("app", "p2").volume(""), out)
    assert sha256_file(out) == sha256_file(img) and repo.verify().ok


def test_resumed_backup_reuploads_nothing(store, counting_store, tmp_path: Path) -> None:
    class Killed(Exception):
        pass

    def die_after_five(stats) -> None:
        if stats.chunks_put >= 5:
            raise Killed

    Repository.init(counting_store, block_size=256 << 10)
    img = tmp_path / "img"
    write_blocks(img, 8 * MiB, {i: text_block(i, 256 << 10) for i in range(32)}, block_size=256 << 10)
    repo = Repository.open(counting_store, transfer=Transfer(workers=4, progress=die_after_five))
    repo.load_chunk_index()
    with pytest.raises(Killed):
        backup_image(repo, img)
    first = set(counting_store.put_keys(layout.CHUNKS))
    assert 5 <= len(first) < 32 and chunk_keys(store) == first and repo.points() == []
    counting_store.reset()
    repo = Repository.open(counting_store)
    repo.load_chunk_index()
    entry = backup_image(repo, img)
    repo.write_manifest(Manifest("app", "p1", [entry]))
    second = counting_store.put_keys(layout.CHUNKS)
    assert not first & set(second) and len(second) == len(set(second)) == 32 - len(first)
    assert repo.transfer.stats.chunks_skipped == len(first)
    out = tmp_path / "out"
    restore_image(repo, entry, out)
    assert sha256_file(out) == sha256_file(img)


def test_bandwidth_cap(store, tmp_path: Path) -> None:
    rate = 4 * MiB
    repo = Repository.init(store, block_size=MiB, transfer=Transfer(workers=4, upload_rate=rate))
    img = tmp_path / "img"
    img.write_bytes(os.urandom(4 * MiB))
    start = time.monotonic()
    backup_image(repo, img)
    elapsed = time.monotonic() - start
    sent = repo.transfer.stats.bytes_put
    assert sent >= 4 * MiB and elapsed >= sent / rate * 0.8


# -- logs --------------------------------------------------------------------------------------------

def test_logs_beside_points(store, tmp_path: Path) -> None:
    repo = Repository.init(store, key=KEY, block_size=256 << 10)
    wal = tmp_path / "000000010000000000000002"
    wal.write_bytes(text_block(1, 512 << 10) + bytes(512 << 10) + os.urandom(100))
    index = repo.put_log("pg1", wal.name, wal, metadata={"timeline": 1})
    assert index.chunks[2:4] == [None, None] and index.size == wal.stat().st_size
    assert repo.put_log("pg1", wal.name, wal) == index                     # same content: no-op
    with pytest.raises(PointExists):
        repo.put_log("pg1", wal.name, b"other content")
    assert repo.logs("pg1") == [wal.name] and repo.points() == []
    assert repo.get_log("pg1", wal.name) == wal.read_bytes()
    repo.get_log("pg1", wal.name, tmp_path / "restored")
    assert (tmp_path / "restored").read_bytes() == wal.read_bytes()


# -- locks -------------------------------------------------------------------------------------------

def test_locks_shared_exclusive(store) -> None:
    repo = Repository.init(store)
    a = repo.lock("shared", purpose="backup")
    b = repo.lock("shared", purpose="restore")
    with pytest.raises(LockConflict, match="shared lock"):
        repo.lock("exclusive", purpose="gc")
    with pytest.raises(LockConflict):
        repo.gc(grace=0)                                       # no GC while a backup holds its lock
    a.release()
    b.release()
    with repo.lock("exclusive", purpose="gc") as gc_lock:
        with pytest.raises(LockConflict, match="exclusive lock"):
            repo.lock("shared", purpose="backup")
        with pytest.raises(LockConflict):
            repo.lock("exclusive", purpose="gc")
        gc_lock.check()
    assert not list(store.list(layout.LOCKS))


def test_stale_lock_is_taken_over(store) -> None:
    repo = Repository.init(store)
    dead = repo.lock("exclusive", purpose="killed gc", ttl=1, refresh=False)
    with pytest.raises(LockConflict):
        repo.lock("shared")
    time.sleep(2.05)                                           # > ttl by the store's 1-second clock
    backup = repo.lock("shared", purpose="backup")
    assert [t.id for t in backup.taken_over] == [dead.info.id]
    with pytest.raises(LockLost):
        dead.check()
    backup.check()
    backup.release()
