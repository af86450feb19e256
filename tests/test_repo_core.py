"""Store-independent parts of the repository: envelope, keys, names, manifests, token bucket, layering."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from copydata.repo import (
    ChunkCorrupt,
    Manifest,
    PosixStore,
    Repository,
    RepositoryError,
    VolumeEntry,
    crypto,
    layout,
)
from copydata.repo.chunks import Codec
from copydata.repo.images import blocks_in_ranges
from copydata.repo.transfer import TokenBucket, Transfer

ROOT = Path(__file__).resolve().parents[1]


def keys() -> crypto.WorkingKeys:
    return crypto.WorkingKeys(os.urandom(32), os.urandom(32))


def test_envelope_round_trip_and_tamper_detection() -> None:
    codec = Codec(level=3, keys=keys())
    data = b"x" * 5000
    cid, env = codec.encode_chunk(data)
    assert env[:2] == b"\x01\x03" and codec.decode_chunk(cid, env) == data
    with pytest.raises(ChunkCorrupt, match="authentication"):
        codec.decode_chunk(cid, b"\x01\x02" + env[2:])          # flags are authenticated
    with pytest.raises(ChunkCorrupt, match="authentication"):
        codec.decode_chunk(bytes(32), env)                        # the id is the associated data
    with pytest.raises(ChunkCorrupt, match="version"):
        codec.decode_chunk(cid, b"\x02" + env[1:])
    with pytest.raises(ChunkCorrupt, match="flags"):
        codec.decode_chunk(cid, b"\x01\x13" + env[2:])
    with pytest.raises(ChunkCorrupt, match="encryption"):
        Codec().decode_chunk(cid, env)
    plain = Codec(level=0)
    pid, penv = plain.encode_chunk(data)
    assert penv == b"\x01\x00" + data and plain.decode_chunk(pid, penv) == data
    with pytest.raises(ChunkCorrupt, match="does not match"):
        plain.decode_chunk(pid, penv[:-1] + b"y")


def test_parse_key_forms() -> None:
    raw = os.urandom(32)
    for text in (raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
                 base64.urlsafe_b64encode(raw).decode().rstrip("="), raw):
        assert crypto.parse_key(text) == raw
    for bad in ("abc", raw.hex()[:-2], base64.b64encode(raw[:16]).decode()):
        with pytest.raises(RepositoryError):
            crypto.parse_key(bad)


def test_key_rotation(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    repo = Repository.init(PosixStore(tmp_path), key=old)
    cid = repo.put_chunk(b"payload" * 100)
    repo.add_key(new)
    assert Repository.open(PosixStore(tmp_path), key=new).get_chunk(cid) == b"payload" * 100


def test_names_and_keys() -> None:
    cid = "ab" + "0" * 62
    assert layout.chunk_key(cid) == f"chunks/ab/{cid}" and layout.chunk_id_of(f"chunks/ab/{cid}") == cid
    assert layout.chunk_id_of(f"chunks/cd/{cid}") is None
    assert layout.manifest_key("pg1", "pg1.snap-7") == "manifests/pg1/pg1.snap-7.json"
    assert layout.parse_manifest_key("manifests/pg1/pg1.snap-7.json") == ("pg1", "pg1.snap-7")
    assert layout.parse_manifest_key(f"manifests/pg1/by-hash/{cid}.json") is None
    assert layout.parse_manifest_copy_key(f"manifests/pg1/by-hash/{cid}.json") == ("pg1", cid)
    for bad in ("", "../x", "a/b", ".hidden", "x" * 201, "sp ace"):
        with pytest.raises(RepositoryError):
            layout.manifest_key("app", bad)


def test_manifest_json_is_validated_and_forward_compatible() -> None:
    vol = VolumeEntry(name="data", size=3000, block_size=1024, chunks=["a" * 64, None, "b" * 64],
                      digest="c" * 64, role="data", array_snapshot="pg.s1.data")
    m = Manifest("app", "p1", [vol], engine={"lsn": "0/1"})
    doc = json.loads(m.to_json())
    assert doc["version"] == 1 and doc["volumes"][0]["chunks"][1] is None
    doc["future_field"] = 1
    doc["volumes"][0]["future_field"] = 2
    assert Manifest.from_json(json.dumps(doc).encode()) == m
    doc["volumes"][0]["chunks"].append(None)
    with pytest.raises(RepositoryError, match="chunk entries"):
        Manifest.from_json(json.dumps(doc).encode())
    doc["version"] = 2
    with pytest.raises(RepositoryError, match="version"):
        Manifest.from_json(json.dumps(doc).encode())


def test_blocks_in_ranges() -> None:
    assert blocks_in_ranges([(0, 1), (1023, 2), (4096, 0), (5000, 10_000)], 6000, 1024) == {0, 1, 4, 5}


def test_token_bucket_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(1000, burst=100, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        bucket.consume(100)
    assert sum(slept) == pytest.approx(0.9)                       # 1000 bytes at 1000 B/s, burst 100


def test_transfer_map_keeps_order_and_stops_on_error() -> None:
    t = Transfer(workers=4)
    assert list(t.map(lambda x: x * 2, range(50))) == [x * 2 for x in range(50)]
    done = []

    def work(x: int) -> int:
        if x == 3:
            raise ValueError("boom")
        done.append(x)
        return x

    with pytest.raises(ValueError, match="boom"):
        list(t.map(work, range(1000), window=8))
    assert len(done) < 20


def test_posix_store_create_only_and_temp_files(tmp_path: Path) -> None:
    store = PosixStore(tmp_path)
    store.put("k/x", b"1", create_only=True)
    (tmp_path / "k" / ".tmp-leftover").write_bytes(b"junk")       # a write killed half-way
    assert [o.key for o in store.list("")] == ["k/x"]
    assert not [p for p in (tmp_path / "k").iterdir() if p.name.startswith(".tmp-") and p.name != ".tmp-leftover"]


def test_core_does_not_import_airflow() -> None:
    code = ("import sys, copydata.repo, copydata.repo.images, copydata.repo.maintenance; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'airflow']; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_store_for_file_url_needs_no_airflow(tmp_path: Path) -> None:
    code = ("import sys; from copydata.airflow.storage import store_for; "
            f"s = store_for('file://{tmp_path}'); assert type(s).__name__ == 'PosixStore', s; "
            "assert 'airflow.providers' not in str(list(sys.modules)), 'provider imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    from copydata.airflow.storage import store_for
    with pytest.raises(ValueError):
        store_for("ftp://host/x")


def test_restore_checks_volume_hashes(tmp_path: Path) -> None:
    from copydata.repo import VerifyError
    from copydata.repo.images import backup_image, restore_image

    repo = Repository.init(PosixStore(tmp_path / "repo"), block_size=64 << 10)
    img = tmp_path / "img"
    img.write_bytes(os.urandom(200_000) + bytes(100_000))
    entry = backup_image(repo, img)
    assert entry.sha256 is not None and entry.chunks[-1] is None and entry.size == 300_000
    restore_image(repo, entry, tmp_path / "ok")
    assert (tmp_path / "ok").read_bytes() == img.read_bytes()
    entry.sha256 = "0" * 64
    with pytest.raises(VerifyError, match="SHA-256"):
        restore_image(repo, entry, tmp_path / "bad1")
    entry.digest = "0" * 64
    with pytest.raises(VerifyError, match="digest"):
        restore_image(repo, entry, tmp_path / "bad2")


def test_delta_restore_compares_zero_blocks_without_hashing(tmp_path: Path, monkeypatch) -> None:
    """A null (zero) block of the manifest: a target block of zeros is left alone and not hashed; a
    non-zero target block is made zero. Blocks with data are still compared by id."""
    from copydata.repo import images

    bs = 64 << 10
    repo = Repository.init(PosixStore(tmp_path / "repo"), block_size=bs)
    a, d = os.urandom(bs), os.urandom(bs - 1000)             # the last block is a short one
    src = tmp_path / "src"
    src.write_bytes(a + bytes(bs) + bytes(bs) + d)
    entry = images.backup_image(repo, src)
    assert entry.chunks[1] is None and entry.chunks[2] is None and None not in (entry.chunks[0], entry.chunks[3])
    target = tmp_path / "target"
    old3 = os.urandom(len(d))
    target.write_bytes(a + bytes(bs) + b"x" * bs + old3)    # block 0 the same, 1 zero, 2 not zero, 3 other

    hashed: list[bytes] = []
    chunk_id = repo.chunk_id
    monkeypatch.setattr(repo, "chunk_id", lambda data: hashed.append(bytes(data)) or chunk_id(data))
    writes: list[int] = []
    pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: writes.append(offset) or pwrite(fd, data, offset))
    zeroed: list[int] = []
    zero = images._zero
    monkeypatch.setattr(images, "_zero", lambda fd, offset, length, is_file: zeroed.append(offset)
                        or zero(fd, offset, length, is_file))

    result = images.restore_image(repo, entry, target, only_differing=True)
    assert (result.unchanged, result.zeroed, result.written) == (2, 1, 1)
    assert sorted(hashed) == sorted([a, old3])                     # only blocks 0 and 3 were hashed
    assert zeroed == [2 * bs] and sorted(set(writes)) == [3 * bs]   # block 1 untouched, 2 made zero, 3 written
    assert target.read_bytes() == src.read_bytes()
