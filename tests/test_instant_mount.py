"""Instant mount: a repository point served through FUSE + loop device, PostgreSQL started on it.

The LazyDisk tests run anywhere. The others need root, /dev/fuse, libfuse3, mkfs.ext4 and PostgreSQL 15+:
a module fixture builds a real point (an ext4 image holding a PostgreSQL data directory with pgbench scale
5, snapshotted under pg_backup_start/stop + fsfreeze, backed up with backup_image, its WAL stored with
put_log) in a POSIX repository, and copies it to moto S3 for the S3 variant. Every test that mounts
asserts in its finalizer — failed or not — that no mount, loop device or daemon is left under its folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from copydata.instant import lazydisk
from copydata.instant.lazydisk import ABSENT, CLEAN, DIRTY, ZERO, CacheMismatch, LazyDisk, image_sha256
from copydata.repo import Manifest, PosixStore, Repository
from copydata.sysutil import free_port

pytest_plugins = ["objectstores"]

BS = 1 << 20
SCALE = 5
APP, POINT = "pg-instant", "pg-instant.snap-1"
WORK_ROOT = Path("/var/tmp")   # not /tmp/pytest-of-root (mode 0700): postgres must traverse the folders


# -- LazyDisk without FUSE ----------------------------------------------------------------------------

class FakeSource:
    """A volume in memory; counts fetches per block."""

    def __init__(self, blocks: list[bytes | None], bs: int = 4096, size: int | None = None) -> None:
        self.blocks, self.block_size = blocks, bs
        self.size = size if size is not None else bs * len(blocks)
        self.fetches: list[int] = []
        self.delay = 0.0

    def block_length(self, i: int) -> int:
        return min(self.block_size, self.size - i * self.block_size)

    def is_zero(self, i: int) -> bool:
        return self.blocks[i] is None

    def fetch(self, i: int) -> bytes:
        self.fetches.append(i)
        time.sleep(self.delay)
        return self.blocks[i] or bytes(self.block_length(i))

    def identity(self) -> dict:
        return {"volume": "fake", "size": self.size, "block_size": self.block_size}

    def image(self) -> bytes:
        return b"".join(b or bytes(self.block_length(i)) for i, b in enumerate(self.blocks))


def fake(n: int = 16, bs: int = 4096, short_last: int = 0) -> FakeSource:
    blocks: list[bytes | None] = [None if i % 4 == 3 else os.urandom(bs) for i in range(n)]
    size = bs * n - short_last
    if short_last and blocks[-1] is not None:
        blocks[-1] = blocks[-1][: bs - short_last]
    return FakeSource(blocks, bs, size)


def test_lazydisk_fetches_on_first_read_only(tmp_path: Path) -> None:
    src = fake(short_last=1000)
    with LazyDisk(src, tmp_path, hydrate=False, readahead=0, save_interval=0) as disk:
        assert disk.state.count(ZERO) == 4 and disk.state.count(ABSENT) == 12   # null blocks: no fetch ever
        assert disk.read(5 * 4096 + 10, 100) == src.image()[5 * 4096 + 10: 5 * 4096 + 110]
        assert src.fetches == [5]
        disk.read(5 * 4096, 4096)
        disk.read(3 * 4096, 4096)                         # a zero block
        assert src.fetches == [5]
        assert disk.read(0, disk.size + 5000) == src.image()   # a read across all blocks, clipped at the end
        assert sorted(src.fetches) == [b for b in range(16) if src.blocks[b] is not None]
        assert disk.status()["complete"]


def test_lazydisk_copy_on_write_and_restart(tmp_path: Path) -> None:
    src = fake()
    expected = bytearray(src.image())
    with LazyDisk(src, tmp_path, hydrate=False, readahead=0, save_interval=0) as disk:
        disk.write(2 * 4096 + 100, b"x" * 50)            # partial write: the block is fetched first
        expected[2 * 4096 + 100: 2 * 4096 + 150] = b"x" * 50
        assert src.fetches == [2]
        disk.write(4 * 4096, b"y" * 4096 * 2)            # two whole blocks: no fetch
        expected[4 * 4096: 6 * 4096] = b"y" * 8192
        assert src.fetches == [2] and disk.counters.full_block_writes == 2
        disk.punch(9 * 4096, 4096)                       # TRIM of a whole block: a hole, no fetch
        expected[9 * 4096: 10 * 4096] = bytes(4096)
        assert disk.state[2] == disk.state[4] == disk.state[5] == disk.state[9] == DIRTY
        disk.fsync()
    # restart: the map says what the cache holds; nothing written is fetched again
    src.fetches.clear()
    with LazyDisk(src, tmp_path, hydrate=False, readahead=0, save_interval=0) as disk:
        assert disk.read(0, disk.size) == bytes(expected)
        assert set(src.fetches).isdisjoint({2, 4, 5, 9})
    assert lazydisk.dirty_blocks(tmp_path) == [2, 4, 5, 9]
    other = fake()
    other.identity = lambda: {"volume": "other"}
    with pytest.raises(CacheMismatch):
        LazyDisk(other, tmp_path)


def test_lazydisk_background_hydration_with_cap(tmp_path: Path) -> None:
    src = fake(n=32)
    t0 = time.monotonic()
    with LazyDisk(src, tmp_path, hydrate=True, hydrate_workers=2, hydrate_rate=48 * 4096,
                  save_interval=0.05) as disk:
        assert disk.wait_hydrated(30)
        elapsed = time.monotonic() - t0
        st = disk.status()
    # 24 stored blocks of 4 KiB at 48 blocks/s (burst 12 blocks): about 0.25 s at least
    assert elapsed > 0.2, elapsed
    assert st["complete"] and st["fetched_hydrator"] == 24 and st["states"]["clean"] == 24
    assert (tmp_path / "disk.cache").read_bytes() == src.image()
    assert lazydisk.map_status(tmp_path)["complete"]


def test_lazydisk_readahead_prefetches(tmp_path: Path) -> None:
    src = fake(n=16)
    with LazyDisk(src, tmp_path, hydrate=False, readahead=3, save_interval=0) as disk:
        disk.read(0, 10)
        deadline = time.monotonic() + 5
        while disk.counters.fetched_prefetch < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert disk.state[1] == disk.state[2] == CLEAN and disk.state[3] == ZERO
        assert disk.counters.fetched_prefetch == 2 and disk.counters.fetched_foreground == 1


# -- host requirements --------------------------------------------------------------------------------

def _pg_bin() -> Path | None:
    for v in ("17", "16", "15"):
        if (Path(f"/usr/lib/postgresql/{v}/bin") / "pg_ctl").exists():
            return Path(f"/usr/lib/postgresql/{v}/bin")
    return None


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse"
    for tool in ("mkfs.ext4", "losetup", "fusermount3", "fsfreeze", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    from copydata.instant.fusefs import libfuse3_path
    if libfuse3_path() is None:
        return "libfuse3 is not installed"
    if _pg_bin() is None:
        return "no PostgreSQL server binaries"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"mfusepy: {e}"
    return None


needs_host = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def sh(*cmd: str, timeout: float = 120, user: str | None = None) -> str:
    full = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({p.returncode}): {p.stdout}{p.stderr}")
    return p.stdout


def stop_postgres(pgdata: Path) -> None:
    """Stop (immediate) a server left running on pgdata by a failed test."""
    with contextlib.suppress(Exception):
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", str(_pg_bin() / "pg_ctl"), "-D", str(pgdata),
                            "-m", "immediate", "-w", "stop"], timeout=60, capture_output=True)


# -- the point ----------------------------------------------------------------------------------------

@dataclass
class Point:
    base: Path
    image: Path            # the snapshot image that was backed up
    sha256: str
    repo_dir: Path
    meta: dict
    marker: str            # committed after the snapshot: only WAL replay brings it


def _src_cleanup(base: Path, img: Path) -> None:
    mnt = base / "src-mnt"
    stop_postgres(mnt / "pgdata")
    from copydata.instant.procs import is_mountpoint
    if is_mountpoint(mnt):
        subprocess.run(["fsfreeze", "-u", str(mnt)], capture_output=True, timeout=30)
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60)
    out = subprocess.run(["losetup", "-j", str(img)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pg_point() -> Iterator[Point]:
    if _missing():
        pytest.skip(str(_missing()))
    from copydata.engines.base import DbTarget
    from copydata.engines.postgres import PostgresEngine
    from copydata.repo.images import backup_image

    base = Path(tempfile.mkdtemp(prefix="copydata-instant-test-", dir=WORK_ROOT))
    base.chmod(0o755)
    img, mnt, arch, sock = base / "src.img", base / "src-mnt", base / "archive", base / "sock"
    try:
        sh("truncate", "-s", "512M", str(img))
        sh("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(img))
        for d in (mnt, arch, sock):
            d.mkdir(mode=0o755)
        loop = sh("losetup", "--find", "--show", str(img)).strip()
        sh("mount", "-o", "noatime", loop, str(mnt))
        (mnt / "pgdata").mkdir(mode=0o700)
        for d in (mnt / "pgdata", arch, sock):
            shutil.chown(d, "postgres", "postgres")
        bin_dir = _pg_bin()
        port = free_port()
        sh(str(bin_dir / "initdb"), "-D", str(mnt / "pgdata"), "-A", "trust", "-U", "postgres", "--no-sync",
           user="postgres")
        with open(mnt / "pgdata" / "postgresql.conf", "a") as f:
            f.write(f"port = {port}\nlisten_addresses = ''\nunix_socket_directories = '{sock}'\n"
                    f"archive_mode = on\narchive_command = 'test ! -f {arch}/%f && cp %p {arch}/%f'\n")
        sh(str(bin_dir / "pg_ctl"), "-D", str(mnt / "pgdata"), "-l", str(sock / "src-pg.log"), "-w", "start",
           user="postgres")
        pgb = [str(bin_dir / "pgbench"), "-h", str(sock), "-p", str(port), "-U", "postgres"]
        sh(*pgb, "-i", "-s", str(SCALE), "-q", "postgres", user="postgres", timeout=300)
        sh(*pgb, "-c", "2", "-t", "250", "postgres", user="postgres", timeout=300)
        engine = PostgresEngine(db=DbTarget(host=str(sock), port=port, user="postgres"))
        snap = base / "snap.img"
        with engine.quiesce("instant-test", 120) as frozen:
            sh("fsfreeze", "-f", str(mnt))         # the "array snapshot": a crash-consistent block image
            try:
                sh("cp", "--sparse=always", str(img), str(snap), timeout=300)
            finally:
                sh("fsfreeze", "-u", str(mnt))
        marker = uuid.uuid4().hex
        import psycopg
        with psycopg.connect(host=str(sock), port=port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute("CREATE TABLE instant_marker (v text)")
            c.execute("INSERT INTO instant_marker VALUES (%s)", [marker])
        engine.push_logs(120)                     # the marker's commit is archived
        sh(str(bin_dir / "pg_ctl"), "-D", str(mnt / "pgdata"), "-m", "fast", "-w", "stop", user="postgres")
        _src_cleanup(base, img)

        repo = Repository.init(PosixStore(base / "repo"))
        entry = backup_image(repo, snap, name="data", role="data", array_snapshot="pg.snap-1.data")
        for wal in sorted(arch.iterdir()):
            repo.put_log(APP, wal.name, wal)
        meta = json.loads(json.dumps(frozen.meta, default=str))
        repo.write_manifest(Manifest(APP, POINT, [entry], engine={"engine": "postgres", "snapshot": meta,
                                                                 "data_directory": "pgdata"}))
        assert entry.sha256 == image_sha256(snap)
        chunk_bytes = sum(p.stat().st_size for p in (base / "repo" / "chunks").rglob("*") if p.is_file())
        print(f"\npoint: {sum(c is not None for c in entry.chunks)} of {len(entry.chunks)} blocks stored, "
              f"{chunk_bytes / 2**20:.1f} MiB of chunks, {len(list(arch.iterdir()))} WAL files")
        yield Point(base, snap, entry.sha256, base / "repo", meta, marker)
    finally:
        _src_cleanup(base, img)
        with contextlib.suppress(Exception):
            for w in base.iterdir():
                if w.is_dir() and (w / "cache").is_dir():
                    from copydata.instant import teardown
                    teardown(w)
        from copydata.instant import leftovers
        left = [x for w in base.iterdir() if w.is_dir() for x in leftovers(w)]
        if not left:
            shutil.rmtree(base, ignore_errors=True)
        assert not left, left


@pytest.fixture
def workdir(pg_point: Point) -> Iterator[Callable[[str], Path]]:
    """New work folders under the point's base; the finalizer tears each down (failed test or not) and
    asserts that no mount, loop device or daemon is left."""
    from copydata.instant import leftovers, teardown

    made: list[Path] = []

    def make(name: str) -> Path:
        path = pg_point.base / f"{name}-{uuid.uuid4().hex[:6]}"
        made.append(path)
        return path

    yield make
    problems = []
    for w in made:
        from copydata.instant.procs import is_mountpoint
        if is_mountpoint(w / "mnt"):
            stop_postgres(w / "mnt" / "pgdata")
        try:
            teardown(w)
        except Exception as e:
            problems.append(f"teardown {w}: {e}")
        problems += leftovers(w)
        if not problems:
            shutil.rmtree(w, ignore_errors=True)
    fuse = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(pg_point.base) in line]
    assert not problems and not fuse, (problems, fuse)


def repo_snapshot(root: Path) -> dict[str, str]:
    """Every object of a POSIX repository with its SHA-256 (locks excluded: taken and released by readers)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not str(p.relative_to(root)).startswith("locks/")}


def compare_blocks(cache: Path, image: Path, dirty: set[int]) -> int:
    """Assert that every block not written locally equals the image; returns the blocks compared."""
    n = 0
    with open(cache, "rb") as a, open(image, "rb") as b:
        i = 0
        while True:
            x, y = a.read(BS), b.read(BS)
            if not x and not y:
                return n
            if i not in dirty:
                assert x == y, f"block {i} differs from the original image"
                n += 1
            i += 1


# -- PostgreSQL on an instant mount -------------------------------------------------------------------

@needs_host
@pytest.mark.root
@pytest.mark.parametrize("kind", ["posix", "s3"])
def test_postgres_on_instant_mount(kind: str, pg_point: Point, workdir: Callable[[str], Path],
                                   request: pytest.FixtureRequest, record_property) -> None:
    from copydata.instant import hydrate_status
    from copydata.instant.postgres import instant_postgres
    from copydata.lab.load import pgbench_sums

    url, conn_id = f"file://{pg_point.repo_dir}", None
    if kind == "s3":
        request.getfixturevalue("moto_s3")
        from objectstores import CONN_IDS, make_store
        store = make_store("s3", f"instant-{uuid.uuid4().hex[:8]}")
        src = PosixStore(pg_point.repo_dir)
        for obj in src.list(""):
            if not obj.key.startswith("locks/"):
                store.put(obj.key, src.get(obj.key))
        url, conn_id = store.url, CONN_IDS["s3"]
    before = repo_snapshot(pg_point.repo_dir)
    w = workdir(f"pg-{kind}")
    db = instant_postgres(url, APP, POINT, w, port=free_port(), conn_id=conn_id, timeout=300)
    try:
        ttfq = db.timings["first_query"]
        print(f"\n[{kind}] time to first query {ttfq:.2f} s; timings {json.dumps(db.timings)}; "
              f"mount {db.mount.timings}; WAL files {len(db.wal)}")
        record_property("time_to_first_query", round(ttfq, 3))
        early = hydrate_status(db.mount.cache)
        assert db.query("SELECT count(*) FROM pgbench_accounts")[0][0] == SCALE * 100_000
        from copydata.engines.postgres.engine import connect
        with connect(db.target) as conn:
            sums = pgbench_sums(conn)
        assert len(set(sums)) == 1 and sums[0] != 0, sums
        assert db.query("SELECT v FROM instant_marker") == [(pg_point.marker,)]   # WAL after the snapshot
        assert not db.query("SELECT pg_is_in_recovery()")[0][0]
        db.query("INSERT INTO instant_marker VALUES ('written on the clone')")
        st = db.mount.wait_hydrated(300)
        print(f"[{kind}] hydrated: {st['hydrated_blocks']} blocks, fetched {st['fetched_foreground']} on "
              f"demand + {st['fetched_prefetch']} read-ahead + {st['fetched_hydrator']} in the background; "
              f"at the first query {early.get('fraction', 0):.0%} was hydrated")
    finally:
        db.stop()
    from copydata.instant.lazydisk import dirty_blocks
    dirty = set(dirty_blocks(db.mount.cache))
    compared = compare_blocks(db.mount.cache / "disk.cache", pg_point.image, dirty)
    assert dirty and compared + len(dirty) == pg_point.image.stat().st_size // BS
    print(f"[{kind}] cache equals the original image on all {compared} blocks not written by the clone "
          f"({len(dirty)} dirty)")
    assert repo_snapshot(pg_point.repo_dir) == before


@needs_host
@pytest.mark.root
def test_read_only_mount_hydrates_to_the_original_image(pg_point: Point, workdir: Callable[[str], Path]) -> None:
    from copydata.instant import InstantMount, hydrate_status, materialize_image
    from copydata.instant.mount import run_deadline

    w = workdir("ro")
    m = InstantMount(f"file://{pg_point.repo_dir}", APP, POINT, w, read_only=True, hydrate_rate="200MiB/s")
    with m:
        assert (m.target / "pgdata" / "PG_VERSION").read_text().strip() == _pg_bin().parent.name
        st = m.wait_hydrated(300)
        assert st["complete"] and st["states"]["dirty"] == 0
    st = hydrate_status(m.cache)
    assert st["daemon"] is False and st["complete"]
    assert image_sha256(m.cache / "disk.cache") == pg_point.sha256      # the cache IS the original image
    plain = materialize_image(m.cache, w / "plain.img")                   # verified against the manifest
    assert image_sha256(plain) == pg_point.sha256
    # a plain image: attach it without FUSE
    loop = run_deadline(["losetup", "--find", "--show", "--read-only", str(plain)], 30).out.strip()
    (w / "plain-mnt").mkdir()
    try:
        assert run_deadline(["mount", "-o", "ro,noload", loop, str(w / "plain-mnt")], 30).rc == 0
        assert (w / "plain-mnt" / "pgdata" / "PG_VERSION").exists()
    finally:
        run_deadline(["umount", str(w / "plain-mnt")], 30)
        run_deadline(["losetup", "-d", loop], 30)


@needs_host
@pytest.mark.root
def test_writes_go_to_the_cache_never_to_the_repository(pg_point: Point, workdir: Callable[[str], Path]) -> None:
    from copydata.instant import InstantMount
    from copydata.instant.lazydisk import dirty_blocks, map_status

    before = repo_snapshot(pg_point.repo_dir)
    w = workdir("cow")
    payload = os.urandom(3 * BS + 12345)
    m = InstantMount(f"file://{pg_point.repo_dir}", APP, POINT, w, hydrate=False)
    with m:
        (m.target / "written.bin").write_bytes(payload)
        (m.target / "pgdata" / "PG_VERSION").unlink()
        os.sync()
    st = map_status(m.cache)
    assert st["states"]["dirty"] >= 3 and not st["complete"]          # no background hydration: lazy only
    assert repo_snapshot(pg_point.repo_dir) == before                 # nothing went to the repository
    # the cache is the overlay: a new daemon on the same cache sees the writes (map + sparse file)
    dirty = set(dirty_blocks(m.cache))
    with InstantMount(f"file://{pg_point.repo_dir}", APP, POINT, w, hydrate=False, read_only=True) as again:
        assert (again.target / "written.bin").read_bytes() == payload
        assert not (again.target / "pgdata" / "PG_VERSION").exists()
        assert (again.target / "pgdata" / "postgresql.conf").exists()
    assert set(dirty_blocks(m.cache)) == dirty
    assert repo_snapshot(pg_point.repo_dir) == before


@needs_host
@pytest.mark.root
def test_teardown_unhangs_a_stopped_daemon(pg_point: Point, workdir: Callable[[str], Path]) -> None:
    """A daemon that stops answering (SIGSTOP) hangs umount in state D; the teardown's deadline SIGKILLs it
    (the universal un-hang) and still detaches everything."""
    from copydata.instant import InstantMount, leftovers, teardown

    w = workdir("hang")
    m = InstantMount(f"file://{pg_point.repo_dir}", APP, POINT, w, hydrate=False).start()
    try:
        (m.target / "unsynced.bin").write_bytes(os.urandom(8 * BS))   # dirty pages: umount must write
        os.kill(m.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        report = teardown(w, umount_timeout=3, loop_timeout=5, daemon_timeout=5)
        assert report.killed, report
        assert time.monotonic() - t0 < 60
        assert leftovers(w) == []
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(m.pid, signal.SIGKILL)


@needs_host
@pytest.mark.root
def test_start_errors_are_reported_and_leave_nothing(pg_point: Point, workdir: Callable[[str], Path]) -> None:
    from copydata.instant import InstantMount, InstantMountError, leftovers

    w = workdir("err")
    with pytest.raises(InstantMountError, match="no point pg-instant/nope"):
        InstantMount(f"file://{pg_point.repo_dir}", APP, "nope", w).start()
    assert leftovers(w) == []
    w2 = workdir("err2")
    with InstantMount(f"file://{pg_point.repo_dir}", APP, POINT, w2, read_only=True, hydrate=False):
        pass
    (pg_point.repo_dir / "manifests" / APP / "other.json").write_bytes(
        (pg_point.repo_dir / "manifests" / APP / f"{POINT}.json").read_bytes())
    try:   # a cache folder belongs to one volume of one point: another point is refused
        with pytest.raises(InstantMountError, match="another volume|names"):
            InstantMount(f"file://{pg_point.repo_dir}", APP, "other", w2).start()
    finally:
        (pg_point.repo_dir / "manifests" / APP / "other.json").unlink()
    assert leftovers(w2) == []


@needs_host
@pytest.mark.root
def test_cli_instant_then_discard(pg_point: Point, workdir: Callable[[str], Path], capsys) -> None:
    """`copydata repo instant` leaves a server running on the mount; `copydata repo discard` releases it all."""
    import psycopg

    from copydata import cli
    from copydata.instant import leftovers

    w = workdir("cli")
    assert cli.main(["repo", "instant", f"file://{pg_point.repo_dir}", APP, "--workdir", str(w),
                     "--port", str(free_port())]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["point"] == POINT and shown["timings"]["first_query"] > 0
    with psycopg.connect(host=shown["socket_dir"], port=shown["port"], user="postgres", dbname="postgres") as c:
        assert c.execute("SELECT v FROM instant_marker").fetchone() == (pg_point.marker,)
    assert cli.main(["repo", "discard", str(w)]) == 0
    assert not w.exists() and not leftovers(w)
    assert cli.main(["repo", "discard", str(w)]) == 0    # idempotent
