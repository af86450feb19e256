"""LazyDisk: one volume of a repository point as a local sparse file, hydrated block by block on demand.

The cache folder of one mounted volume holds

    disk.cache    a sparse file of the volume's size: hydrated blocks, and every local write (the overlay)
    disk.map      the state of every block (see below), saved as temp file + fsync + rename
    status.json   hydration progress, rewritten about once a second by the daemon

Block states (one byte each in disk.map):

    ABSENT  not fetched yet; reading it fetches and decodes its chunk from the repository first
    CLEAN   fetched: the cache holds the repository's bytes
    DIRTY   written locally (copy-on-write): the cache holds newer bytes than the repository
    ZERO    a null block of the manifest (all zeros, never stored): a hole of the sparse file, no fetch

A partial write to an ABSENT block fetches it first (copy-on-write per block); a write that covers a whole
block skips the fetch. Nothing is ever written to the repository. A prefetch pool reads ahead after a miss,
and a background hydrator fetches every remaining block at low priority (it yields to foreground misses)
under a bandwidth cap. Once no block is ABSENT, disk.cache is a plain image of the volume (plus local writes)
that can be attached without FUSE (materialize_image).

Crash safety: the map is saved after an fsync of the cache file, from a copy of the state taken *before*
that fsync, so a block marked CLEAN or DIRTY in a saved map always has durable bytes in the cache. A block
whose state was not saved yet is simply fetched again (CLEAN) or lost like any unsynced write (DIRTY).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from copydata.repo.transfer import TokenBucket
from copydata.sysutil import fsync_dir

if TYPE_CHECKING:
    from copydata.repo.manifest import VolumeEntry
    from copydata.repo.repository import Repository

log = logging.getLogger(__name__)

ABSENT, CLEAN, DIRTY, ZERO = 0, 1, 2, 3
STATE_NAMES = {ABSENT: "absent", CLEAN: "clean", DIRTY: "dirty", ZERO: "zero"}
CACHE_FILE = "disk.cache"
MAP_FILE = "disk.map"
STATUS_FILE = "status.json"
MAP_MAGIC = b"COPYDATA-INSTANT-MAP-1\n"
STRIPES = 256
BUSY_WINDOW = 0.1    # seconds after a read or write during which the disk counts as busy
BUSY_PAUSE = 0.01    # the hydrator's pause per block while the disk is busy (~100 blocks/s at most)
QUIET_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class CacheMismatch(RuntimeError):
    """The cache folder belongs to another volume or point (its map's identity differs)."""


class BlockSource(Protocol):
    """Where a LazyDisk gets its blocks: a volume of a point (RepoVolume), or anything with this shape."""

    size: int
    block_size: int

    def block_length(self, index: int) -> int:
        """Bytes in block index (the last block may be short)."""

    def is_zero(self, index: int) -> bool:
        """True when the block is all zeros (a null entry): it is never fetched."""

    def fetch(self, index: int) -> bytes:
        """The block's plaintext, exactly block_length(index) bytes."""

    def identity(self) -> dict[str, Any]:
        """What the cache belongs to (stored in the map; a mismatch refuses to reuse the cache)."""


class RepoVolume:
    """A volume of a committed point: fetch = get + decode + verify the block's chunk."""

    def __init__(self, repo: Repository, entry: VolumeEntry, application: str = "", point: str = "",
                 latency: float = 0.0) -> None:
        self.repo, self.entry = repo, entry.validate()
        self.size, self.block_size = entry.size, entry.block_size
        self.application, self.point = application, point
        self.latency = latency   # simulated extra GET latency in seconds (benchmarks only)

    def block_length(self, index: int) -> int:
        return self.entry.block_length(index)

    def is_zero(self, index: int) -> bool:
        return self.entry.chunks[index] is None

    def fetch(self, index: int) -> bytes:
        cid = self.entry.chunks[index]
        if cid is None:
            return bytes(self.block_length(index))
        if self.latency:
            time.sleep(self.latency)
        data = self.repo.get_chunk(cid)
        if len(data) != self.block_length(index):
            from copydata.repo.errors import ChunkCorrupt

            raise ChunkCorrupt(f"chunk {cid} holds {len(data)} bytes, block {index} has {self.block_length(index)}")
        return data

    def identity(self) -> dict[str, Any]:
        return {"repository": self.repo.config.id, "application": self.application, "point": self.point,
                "volume": self.entry.name, "size": self.size, "block_size": self.block_size,
                "digest": self.entry.digest, "sha256": self.entry.sha256}


@dataclass
class Counters:
    fetched_foreground: int = 0   # blocks fetched because a read or a partial write needed them now
    fetched_prefetch: int = 0     # blocks fetched by the read-ahead pool
    fetched_hydrator: int = 0     # blocks fetched by the background hydrator
    bytes_fetched: int = 0        # plaintext bytes of all fetched blocks
    fetch_seconds: float = 0.0    # time spent in fetches (summed over threads)
    fetch_errors: int = 0
    full_block_writes: int = 0    # writes that covered a whole absent block: no fetch needed
    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    fsyncs: int = 0
    map_saves: int = 0


def quiet_signals() -> None:
    """Block SIGINT/SIGTERM/SIGHUP in the calling thread. Every helper thread of a LazyDisk calls it, so
    that libfuse's signal handler (which only sets an exit flag) lands on a FUSE thread and wakes it."""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.pthread_sigmask(signal.SIG_BLOCK, QUIET_SIGNALS)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file as temp + fsync + rename (+ fsync of the folder)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_map(path: Path) -> tuple[dict[str, Any], bytearray]:
    """(identity header, state bytes) of a saved map."""
    raw = path.read_bytes()
    if not raw.startswith(MAP_MAGIC):
        raise CacheMismatch(f"{path}: not a copydata instant-mount map")
    header, _, states = raw[len(MAP_MAGIC):].partition(b"\n")
    doc = json.loads(header)
    states = bytearray(states)
    if len(states) != doc["blocks"]:
        raise CacheMismatch(f"{path}: {len(states)} block states, the header says {doc['blocks']}")
    return doc, states


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10


def _punch(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        os.pwrite(fd, bytes(length), offset)


class LazyDisk:
    """A volume served from a local sparse cache that fills itself from a BlockSource.

    Thread-safe: read/write/fsync/punch may be called from many FUSE threads at once."""

    def __init__(self, source: BlockSource, cache_dir: str | os.PathLike, *, readahead: int = 4,
                 prefetch_workers: int = 4, hydrate: bool = True, hydrate_workers: int = 2,
                 hydrate_rate: float | None = None, save_interval: float = 5.0, reset: bool = False) -> None:
        self.source = source
        self.size, self.bs = source.size, source.block_size
        self.nblocks = -(-self.size // self.bs)
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cache_path, self.map_path = self.dir / CACHE_FILE, self.dir / MAP_FILE
        self.identity = source.identity()
        self.readahead = max(0, readahead)
        self.counters = Counters()
        self._clock = threading.Lock()          # counters and state tallies
        self._locks = [threading.Lock() for _ in range(STRIPES)]
        self._map_lock = threading.Lock()
        self._gen = 0                           # bumped on every state change
        self._saved_gen = -1
        self._stop = threading.Event()
        self._fg_active = 0                     # foreground fetches in flight: the hydrator yields to them
        self._last_fg = 0.0                     # monotonic time of the last read or write
        self._queued: set[int] = set()
        self._cursor = 0
        self._cursor_lock = threading.Lock()
        self.started = time.time()
        self.hydrated_at: float | None = None
        self.hydrate_rate = hydrate_rate
        self._bucket = TokenBucket(hydrate_rate, burst=max(self.bs, hydrate_rate / 4)) if hydrate_rate else None
        self.state = self._open(reset)
        self._tally = self._count_states()
        self._pool = ThreadPoolExecutor(max(1, prefetch_workers), thread_name_prefix="lazydisk-prefetch",
                                        initializer=quiet_signals)
        self._threads: list[threading.Thread] = []
        if hydrate:
            for i in range(max(1, hydrate_workers)):
                self._start_thread(functools.partial(self._hydrate_loop, i), f"lazydisk-hydrate-{i}")
        self.save_interval = save_interval
        if save_interval > 0:
            self._start_thread(self._saver_loop, "lazydisk-saver")

    # -- opening -------------------------------------------------------------------------------------

    def _open(self, reset: bool) -> bytearray:
        """Reuse an existing cache whose map names the same volume; otherwise start a fresh sparse file."""
        state: bytearray | None = None
        if self.map_path.exists() and self.cache_path.exists() and not reset:
            header, saved = read_map(self.map_path)
            if header.get("identity") != self.identity:
                raise CacheMismatch(f"cache {self.dir} holds {header.get('identity')}, not {self.identity}")
            state = saved
        fresh = state is None
        self.fd = os.open(self.cache_path, os.O_RDWR | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o600)
        if os.fstat(self.fd).st_size != self.size:
            if not fresh:
                os.close(self.fd)
                raise CacheMismatch(f"{self.cache_path} is not {self.size} bytes long")
            os.ftruncate(self.fd, self.size)
        if fresh:
            # a brand-new sparse file reads as zeros: null blocks are hydrated from the start
            state = bytearray(ZERO if self.source.is_zero(b) else ABSENT for b in range(self.nblocks))
            self._gen = 1
            self._write_map(bytes(state))
            self._saved_gen = self._gen
        return state

    def _count_states(self) -> dict[int, int]:
        return {s: self.state.count(s) for s in (ABSENT, CLEAN, DIRTY, ZERO)}

    def _start_thread(self, fn: Callable[[], None], name: str) -> None:
        def run() -> None:
            quiet_signals()
            fn()

        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _set(self, b: int, new: int) -> None:
        """Change block b's state (caller holds its stripe lock, or the block is not ABSENT)."""
        with self._clock:
            old = self.state[b]
            if old == new:
                return
            self.state[b] = new
            self._tally[old] -= 1
            self._tally[new] += 1
            self._gen += 1
            if self._tally[ABSENT] == 0 and self.hydrated_at is None:
                self.hydrated_at = time.time()

    def _count(self, **n: float) -> None:
        with self._clock:
            for k, v in n.items():
                setattr(self.counters, k, getattr(self.counters, k) + v)

    # -- hydration -----------------------------------------------------------------------------------

    def _fill(self, b: int, why: str) -> None:
        """Fetch block b into the cache (caller holds its stripe lock and has seen it ABSENT)."""
        t0 = time.monotonic()
        try:
            data = self.source.fetch(b)
        except Exception:
            self._count(fetch_errors=1)
            raise
        if data.count(0) != len(data):    # an all-zero block stays a hole
            os.pwrite(self.fd, data, b * self.bs)
        self._count(**{f"fetched_{why}": 1}, bytes_fetched=len(data), fetch_seconds=time.monotonic() - t0)
        self._set(b, CLEAN)

    def ensure(self, b: int, why: str = "foreground") -> None:
        """Make block b readable from the cache (fetch it unless it is there)."""
        if self.state[b] != ABSENT:
            return
        foreground = why == "foreground"
        if foreground:
            with self._clock:
                self._fg_active += 1
        try:
            with self._locks[b % STRIPES]:
                if self.state[b] == ABSENT:
                    self._fill(b, why)
        finally:
            if foreground:
                with self._clock:
                    self._fg_active -= 1

    def _ensure_range(self, first: int, last: int) -> None:
        missing = [b for b in range(first, last + 1) if self.state[b] == ABSENT]
        if not missing:
            return
        # several blocks missing (a large request across a block border): fetch them in parallel
        futures = [self._pool.submit(self.ensure, b) for b in missing[1:]]
        self.ensure(missing[0])
        for f in futures:
            f.result()
        if self.readahead:
            self._prefetch(range(last + 1, min(self.nblocks, last + 1 + self.readahead)))

    def _prefetch(self, blocks: Iterable[int]) -> None:
        for b in blocks:
            if self.state[b] != ABSENT:
                continue
            with self._clock:
                if b in self._queued:
                    continue
                self._queued.add(b)
            self._pool.submit(self._prefetch_one, b)

    def _prefetch_one(self, b: int) -> None:
        try:
            if not self._stop.is_set():
                self.ensure(b, "prefetch")
        except Exception:
            log.warning("prefetch of block %d failed (a later read retries it)", b, exc_info=True)
        finally:
            with self._clock:
                self._queued.discard(b)

    def _next_absent(self) -> int | None:
        with self._cursor_lock:
            while self._cursor < self.nblocks:
                b = self._cursor
                self._cursor += 1
                if self.state[b] == ABSENT:
                    return b
            # a block whose fetch failed earlier may still be ABSENT: one more sweep from the start
            if self._tally[ABSENT]:
                self._cursor = 0
                for b in range(self.nblocks):
                    if self.state[b] == ABSENT:
                        self._cursor = b + 1
                        return b
            return None

    def _hydrate_loop(self, worker: int) -> None:
        """Low priority: the threads run at nice 19; while the disk is busy (a read or write within
        BUSY_WINDOW) only worker 0 goes on, one block per BUSY_PAUSE; every foreground miss pauses them all."""
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        failures = 0
        while not self._stop.is_set():
            busy = False
            while not self._stop.is_set():
                busy = time.monotonic() - self._last_fg < BUSY_WINDOW
                if not self._fg_active and not (busy and worker > 0):
                    break
                time.sleep(0.002 if self._fg_active else BUSY_PAUSE)
            if busy:
                self._stop.wait(BUSY_PAUSE)
            b = self._next_absent()
            if b is None:
                return
            if self._bucket is not None:
                self._bucket.consume(self.source.block_length(b))
            try:
                self.ensure(b, "hydrator")
                failures = 0
            except Exception:
                failures += 1
                log.warning("hydration of block %d failed (%d in a row)", b, failures, exc_info=True)
                self._stop.wait(min(30.0, 0.1 * 2 ** min(failures, 8)))

    def _saver_loop(self) -> None:
        while not self._stop.wait(self.save_interval):
            try:
                self.save_map()
            except Exception:
                log.exception("saving the block map failed")

    def wait_hydrated(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tally[ABSENT]:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def hydrate_all(self, workers: int = 8) -> None:
        """Fetch every ABSENT block now, in parallel (used without FUSE to complete a cache)."""
        absent = [b for b in range(self.nblocks) if self.state[b] == ABSENT]
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="lazydisk-fill") as pool:
            for f in [pool.submit(self.ensure, b, "hydrator") for b in absent]:
                f.result()

    # -- I/O -----------------------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.size or size <= 0:
            return b""
        size = min(size, self.size - offset)
        self._last_fg = time.monotonic()
        self._ensure_range(offset // self.bs, (offset + size - 1) // self.bs)
        data = os.pread(self.fd, size, offset)
        self._count(reads=1, bytes_read=len(data))
        return data

    def write(self, offset: int, data: bytes) -> int:
        end = offset + len(data)
        if end > self.size:
            raise OSError(errno.ENOSPC, "write beyond the end of the volume")
        view = memoryview(data)
        self._last_fg = time.monotonic()
        for b in range(offset // self.bs, (end - 1) // self.bs + 1) if data else ():
            start, stop = max(offset, b * self.bs), min(end, (b + 1) * self.bs)
            seg = view[start - offset:stop - offset]
            if self.state[b] == ABSENT:
                with self._locks[b % STRIPES]:
                    if self.state[b] == ABSENT:
                        if start == b * self.bs and stop == min(self.size, (b + 1) * self.bs):
                            self._count(full_block_writes=1)   # the whole block is replaced: no fetch
                        else:
                            self._fill(b, "foreground")        # copy-on-write: hydrate, then overwrite
                    os.pwrite(self.fd, seg, start)
                    self._set(b, DIRTY)
            else:
                os.pwrite(self.fd, seg, start)
                self._set(b, DIRTY)
        self._count(writes=1, bytes_written=len(data))
        return len(data)

    def punch(self, offset: int, length: int) -> None:
        """Discard (TRIM) a range: it reads as zeros afterwards; whole blocks become holes of the cache."""
        end = min(self.size, offset + length)
        b = offset // self.bs
        while b * self.bs < end:
            start, stop = max(offset, b * self.bs), min(end, (b + 1) * self.bs)
            if start == b * self.bs and stop == min(self.size, (b + 1) * self.bs):
                with self._locks[b % STRIPES]:
                    _punch(self.fd, start, stop - start)
                    self._set(b, DIRTY)
            else:
                self.write(start, bytes(stop - start))
            b += 1

    def fsync(self) -> None:
        self._count(fsyncs=1)
        self.save_map()

    # -- the map -------------------------------------------------------------------------------------

    def save_map(self, force: bool = False) -> bool:
        """fsync the cache, then persist the block states as they were before that fsync."""
        with self._map_lock:
            with self._clock:
                gen, snapshot = self._gen, bytes(self.state)
            os.fsync(self.fd)
            if gen == self._saved_gen and not force:
                return False
            self._write_map(snapshot)
            self._saved_gen = gen
            self._count(map_saves=1)
            return True

    def _write_map(self, states: bytes) -> None:
        header = {"version": 1, "identity": self.identity, "blocks": self.nblocks, "block_size": self.bs,
                  "size": self.size, "saved": time.time()}
        write_atomic(self.map_path, MAP_MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + states)

    # -- progress ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._clock:
            tally = dict(self._tally)
            counters = asdict(self.counters)
        fetched = counters["fetched_foreground"] + counters["fetched_prefetch"] + counters["fetched_hydrator"]
        elapsed = max(time.time() - self.started, 1e-6)
        absent = tally[ABSENT]
        rate = counters["bytes_fetched"] / elapsed
        return {
            "identity": self.identity, "size": self.size, "block_size": self.bs, "blocks": self.nblocks,
            "states": {STATE_NAMES[s]: n for s, n in tally.items()},
            "hydrated_blocks": self.nblocks - absent, "absent_blocks": absent,
            "fraction": (self.nblocks - absent) / self.nblocks if self.nblocks else 1.0,
            "complete": absent == 0, "fetched_blocks": fetched, **counters,
            "fetch_rate_bytes_per_s": rate, "hydrate_rate_cap": self.hydrate_rate,
            "eta_seconds": (absent * self.bs / rate) if absent and rate > 0 else (0.0 if not absent else None),
            "started": self.started, "hydrated_at": self.hydrated_at, "updated": time.time(),
        }

    def close(self) -> None:
        """Stop the helpers, fsync, save the map, close the cache file. Idempotent."""
        if self.fd < 0:
            return
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for t in self._threads:
            t.join(timeout=20)
        self.save_map(force=True)
        if any(t.is_alive() for t in self._threads):
            # a helper is stuck in a fetch: keep the descriptor open (the process is about to exit), so
            # that its late pwrite cannot land in a file that reused the number
            log.warning("a LazyDisk helper thread is still busy; the cache file stays open")
            return
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> LazyDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the cache folder seen from another process -----------------------------------------------------

def map_status(cache_dir: str | os.PathLike) -> dict[str, Any]:
    """Hydration state from a saved map (works while no daemon runs, or as a fallback)."""
    header, states = read_map(Path(cache_dir) / MAP_FILE)
    tally = {STATE_NAMES[s]: states.count(s) for s in (ABSENT, CLEAN, DIRTY, ZERO)}
    n = header["blocks"]
    return {"identity": header["identity"], "size": header["size"], "block_size": header["block_size"],
            "blocks": n, "states": tally, "hydrated_blocks": n - tally["absent"], "absent_blocks": tally["absent"],
            "fraction": (n - tally["absent"]) / n if n else 1.0, "complete": tally["absent"] == 0,
            "saved": header.get("saved")}


def dirty_blocks(cache_dir: str | os.PathLike) -> list[int]:
    _, states = read_map(Path(cache_dir) / MAP_FILE)
    return [b for b, s in enumerate(states) if s == DIRTY]


def image_sha256(path: str | os.PathLike, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
