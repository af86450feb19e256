"""Parallel, in-order prefetch of logs (WAL segments, history files) from a repository into a local folder.

A recovery from object storage must not wait on the network: while the database replays segment N, segments
N+1 … N+readahead are already downloading. `LogFetcher` submits the planned files to a thread pool strictly
in order (each file is one `Repository.get_log`, which itself fetches the file's chunks in parallel), never
more than `readahead` files beyond the newest one the database has asked for, and places each file
atomically at `<folder>/wal/<name>` (the layout of a WAL archive volume, so the engine's restore_command
reads it unchanged; `subdir` names another folder, e.g. `binlog` for MariaDB binary logs).

The hand-over to the database is a marker per planned file, `<folder>/pending/<name>`, removed once the file
is in place (or when the fetch stops). `restore_command()` returns a PostgreSQL restore_command that waits
while a marker exists, copies the file, and logs the request and its wait to `<folder>/requests.log`. An
unplanned name has no marker and fails at once, which is what PostgreSQL expects of a missing file. The log
gives both the consumer position (for the read-ahead window) and the time replay stalled on the fetch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from copydata.repo.errors import RepositoryError

if TYPE_CHECKING:
    from copydata.repo.repository import Repository

log = logging.getLogger(__name__)

WAL_SUBDIR = "wal"            # same layout as an archive volume: <folder>/wal/<segment>
PENDING_SUBDIR = "pending"
REQUESTS_LOG = "requests.log"
SCRIPT = "restore_command.sh"
POLL = 0.05


class FetchError(RepositoryError):
    """A planned log could not be fetched (missing chunk, checksum mismatch, store error)."""


@dataclass
class FetchStats:
    """What a fetch did. Times are seconds since the fetcher started."""

    planned: int = 0
    fetched: int = 0
    bytes: int = 0
    first_ready: float | None = None    # the first file was in place
    finished: float | None = None       # every planned file was in place (None: stopped before)
    busy: float = 0.0                   # sum of the per-file download times (> finished with parallelism)
    error: str | None = None
    ready_at: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def mib_per_s(self) -> float | None:
        if not self.finished:
            return None
        return self.bytes / (1 << 20) / self.finished


@dataclass
class Requests:
    """What the database asked for through the waiting restore_command (from requests.log)."""

    served: list[tuple[str, float, float]] = field(default_factory=list)   # (name, asked, got) epoch s
    refused: list[str] = field(default_factory=list)                       # names that were not there

    @property
    def stall(self) -> float:
        """Seconds the database waited for files still being fetched."""
        return sum(got - asked for _, asked, got in self.served)


class LogFetcher:
    """Fetch `names` (in that order) of `application` into `folder`; use as a context manager or call
    start() / stop(). `readahead` bounds how far the downloads run ahead of the consumer's position
    (read from requests.log; without requests nothing is bounded but the pool). Files go to
    <folder>/<subdir>/ (default wal/, the layout restore_command reads)."""

    def __init__(self, repo: Repository, application: str, names: list[str], folder: str | os.PathLike,
                 workers: int = 4, readahead: int = 32, os_user: str | None = None, subdir: str = WAL_SUBDIR) -> None:
        self.repo, self.application, self.names = repo, application, list(names)
        self.folder = Path(folder)
        self.wal_dir = self.folder / subdir
        self.pending_dir = self.folder / PENDING_SUBDIR
        self.requests_log = self.folder / REQUESTS_LOG
        self.workers, self.readahead = max(1, workers), max(1, readahead)
        self.os_user = os_user
        self.stats = FetchStats(planned=len(self.names))
        self._index = {n: i for i, n in enumerate(self.names)}
        self._done: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._position = 0          # planned files the consumer asked for so far (its newest index + 1)
        self._log_offset = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> LogFetcher:
        for d in (self.folder, self.wal_dir, self.pending_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        for name in self.names:
            if not (self.wal_dir / name).exists():
                (self.pending_dir / name).touch()
        self.requests_log.touch()
        if self.os_user:   # the database server appends to the log
            import pwd

            pw = pwd.getpwnam(self.os_user)
            os.chown(self.requests_log, pw.pw_uid, pw.pw_gid)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"logfetch-{self.application}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> FetchStats:
        """Stop scheduling, let running downloads finish, release every marker left (a waiting consumer
        then sees the file as missing)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._release_markers()
        return self.stats

    def __enter__(self) -> LogFetcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- waiting -------------------------------------------------------------------------------------

    def wait(self, name: str | None = None, timeout: float | None = None) -> None:
        """Block until `name` (None: every planned file) is in place; raise FetchError if the fetch failed
        first, TimeoutError after timeout."""
        want = set(self.names) if name is None else {name}
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not want <= self._done:
                if self.stats.error is not None:
                    raise FetchError(self.stats.error)
                if self._stop.is_set() and not self._running():
                    raise FetchError(f"log fetch of {self.application} stopped before {sorted(want - self._done)[0]}")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"logs of {self.application} not fetched within {timeout:.0f} s")
                self._cond.wait(POLL if left is None else min(POLL, left))

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def requests(self) -> Requests:
        return read_requests(self.folder)

    # -- the scheduler -------------------------------------------------------------------------------

    def _run(self) -> None:
        futures: list[Future] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="logfetch") as pool:
            try:
                for i, name in enumerate(self.names):
                    while not self._stop.is_set() and i >= self._consumer_position() + self.readahead:
                        with self._cond:
                            self._cond.wait(POLL)
                    if self._stop.is_set():
                        break
                    if (self.wal_dir / name).exists():   # fetched by an earlier run
                        self._ready(name, (self.wal_dir / name).stat().st_size, 0.0)
                        continue
                    futures.append(pool.submit(self._fetch, name))
                    futures = [f for f in futures if not f.done()]
                    while len(futures) >= 2 * self.workers and not self._stop.is_set():   # bounded queue
                        with self._cond:
                            self._cond.wait(POLL)
                        futures = [f for f in futures if not f.done()]
            finally:
                if self._stop.is_set():
                    for f in futures:
                        f.cancel()
        with self._cond:
            if len(self._done) == len(self.names) and self.stats.finished is None:
                self.stats.finished = time.monotonic() - self._t0
            self._cond.notify_all()

    def _consumer_position(self) -> int:
        """The consumer's newest requested planned file (+1), from the new lines of requests.log."""
        try:
            with open(self.requests_log, "rb") as f:
                f.seek(self._log_offset)
                chunk = f.read()
        except FileNotFoundError:
            return self._position
        end = chunk.rfind(b"\n")
        if end >= 0:
            self._log_offset += end + 1
            for line in chunk[:end].decode(errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[1] in self._index:
                    self._position = max(self._position, self._index[parts[1]] + 1)
        return self._position

    def _fetch(self, name: str) -> None:
        if self._stop.is_set() or self.stats.error is not None:
            return
        t = time.monotonic()
        try:
            self.repo.get_log(self.application, name, self.wal_dir / name)
            os.chmod(self.wal_dir / name, 0o644)   # the database server reads it, whatever the umask
        except Exception as exc:
            self._stop.set()
            self._release_markers()   # a waiting consumer fails at once rather than after max_wait
            with self._cond:
                if self.stats.error is None:
                    self.stats.error = f"log {self.application}/{name}: {exc}"
                self._cond.notify_all()
            log.error("log fetch of %s/%s failed: %s", self.application, name, exc)
            return
        self._ready(name, (self.wal_dir / name).stat().st_size, time.monotonic() - t)

    def _ready(self, name: str, size: int, seconds: float) -> None:
        (self.pending_dir / name).unlink(missing_ok=True)
        now = time.monotonic() - self._t0
        with self._cond:
            self._done.add(name)
            self.stats.fetched += 1
            self.stats.bytes += size
            self.stats.busy += seconds
            self.stats.ready_at[name] = now
            if self.stats.first_ready is None:
                self.stats.first_ready = now
            if len(self._done) == len(self.names):
                self.stats.finished = now
            self._cond.notify_all()

    def _release_markers(self) -> None:
        if self.pending_dir.exists():
            for marker in self.pending_dir.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    marker.unlink()


def read_requests(folder: str | os.PathLike) -> Requests:
    """Parse <folder>/requests.log: `W name t0` (asked), `D name t0 t1` (served), `N name t0 t1` (missing)."""
    out = Requests()
    try:
        text = (Path(folder) / REQUESTS_LOG).read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "D":
            with contextlib.suppress(ValueError):
                out.served.append((parts[1], float(parts[2]), float(parts[3])))
        elif len(parts) == 4 and parts[0] == "N":
            out.refused.append(parts[1])
    return out


def restore_command(folder: str | os.PathLike, max_wait: float = 900) -> str:
    """Write <folder>/restore_command.sh and return a PostgreSQL restore_command that runs it: wait (at
    most max_wait seconds) while <folder>/pending/%f exists, then copy <folder>/wal/%f to %p, or fail if
    it is not there. Each request is appended to requests.log."""
    folder = Path(folder)
    if any(c in str(folder) for c in "'\"\\$` \n"):
        raise ValueError(f"log folder {folder} must not contain quotes, spaces, '$' or backslashes")
    limit = max(1, int(max_wait / 0.01))
    script = folder / SCRIPT
    script.write_text(f"""#!/bin/sh
# copydata: restore_command over a log prefetch folder (copydata.replication.logfetch)
d='{folder}'
f="$1"
p="$2"
t0=$(date +%s.%N)
echo "W $f $t0" >> "$d/{REQUESTS_LOG}"
n=0
while [ -e "$d/{PENDING_SUBDIR}/$f" ] && [ "$n" -lt {limit} ]; do sleep 0.01; n=$((n + 1)); done
t1=$(date +%s.%N)
if [ -f "$d/{WAL_SUBDIR}/$f" ] && cp "$d/{WAL_SUBDIR}/$f" "$p"; then
    echo "D $f $t0 $t1" >> "$d/{REQUESTS_LOG}"
    exit 0
fi
echo "N $f $t0 $t1" >> "$d/{REQUESTS_LOG}"
exit 1
""")
    script.chmod(0o755)
    return f"/bin/sh {script} %f %p"


def fetch_all(repo: Repository, application: str, names: list[str], folder: str | os.PathLike,
              workers: int = 4, timeout: float | None = None, subdir: str = WAL_SUBDIR) -> FetchStats:
    """Fetch every name into <folder>/<subdir>/ and return the stats (FetchError on the first failure)."""
    with LogFetcher(repo, application, names, folder, workers=workers, readahead=len(names) or 1,
                    subdir=subdir) as f:
        f.wait(timeout=timeout)
    return f.stats
