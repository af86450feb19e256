"""Parallel uploads and downloads: a bounded thread pool, a token-bucket bandwidth cap, counters.

Resumability is not handled here: it comes from content addressing (a rerun lists chunks/ once and skips
every chunk already stored, see Repository.load_chunk_index).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TokenBucket:
    """Caps a byte rate: consume(n) blocks until n bytes fit under rate (bytes/s) with a small burst."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate / 8, 64 << 10))
        self._tokens = self.burst
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def consume(self, n: int) -> float:
        """Take n tokens (may go into debt), then sleep off the debt. Returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass
class Stats:
    """Counters of one Transfer (a run); read a consistent copy with snapshot()."""

    blocks_read: int = 0        # blocks read from a source image or log file
    bytes_read: int = 0
    zero_blocks: int = 0        # all-zero blocks (not stored)
    inherited_blocks: int = 0   # blocks taken over from the previous manifest without reading
    diff_misses: int = 0        # blocks outside the given ranges that differed from the previous point
    chunks_put: int = 0         # chunks uploaded
    bytes_put: int = 0          # encoded bytes uploaded (chunks only)
    chunks_skipped: int = 0     # chunks already in the repository (deduplicated / resumed)
    chunks_got: int = 0         # chunks downloaded
    bytes_got: int = 0
    blocks_written: int = 0     # blocks written to a restore target
    blocks_unchanged: int = 0   # delta restore: target block already right


class Transfer:
    """Thread pool + bandwidth caps + counters + progress callback, shared by a repository's operations.

    progress(stats) is called (serialized, from worker threads) after every chunk put, skipped or got; an
    exception it raises aborts the operation (uploads already running finish, queued ones are cancelled)."""

    def __init__(self, workers: int = 8, upload_rate: float | None = None, download_rate: float | None = None,
                 progress: Callable[[Stats], None] | None = None):
        self.workers = max(1, workers)
        self.upload_cap = TokenBucket(upload_rate) if upload_rate else None
        self.download_cap = TokenBucket(download_rate) if download_rate else None
        self.progress = progress
        self.stats = Stats()
        self._lock = threading.Lock()
        self._progress_lock = threading.Lock()

    def count(self, notify: bool = False, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)
        if notify and self.progress is not None:
            with self._progress_lock:
                self.progress(self.snapshot())

    def snapshot(self) -> Stats:
        with self._lock:
            return Stats(**asdict(self.stats))

    def reset(self) -> Stats:
        """Zero the counters; return what they were."""
        with self._lock:
            old, self.stats = self.stats, Stats()
            return old

    def throttle_up(self, n: int) -> None:
        if self.upload_cap is not None:
            self.upload_cap.consume(n)

    def throttle_down(self, n: int) -> None:
        if self.download_cap is not None:
            self.download_cap.consume(n)

    def map(self, fn: Callable[[T], R], items: Iterable[T], window: int | None = None) -> Iterator[R]:
        """fn over items on the pool, results in input order, at most window (default 2 x workers) in
        flight. The first exception is raised in order; queued calls are cancelled, running ones finish."""
        window = window or 2 * self.workers
        pending: deque[Future[R]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="copydata-transfer") as pool:
            try:
                for item in items:
                    pending.append(pool.submit(fn, item))
                    if len(pending) >= window:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for f in pending:
                    f.cancel()

