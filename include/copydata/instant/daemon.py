"""The instant-mount daemon: serves one volume of a repository point as <mount>/disk.img through FUSE.

    python -m copydata.instant.daemon --repo URL [--conn-id ID] [--key-conn-id ID | --key-file PATH]
        --app APP --point POINT [--role data | --volume NAME] --cache DIR --mount DIR
        [--read-only] [--no-hydrate] [--hydrate-rate 50MB/s] [--hydrate-workers 2] [--readahead 4]
        [--prefetch-workers 4] [--foreground] [--pidfile PATH] [--log PATH] [--reset-cache]

One process per mounted volume. Without --foreground the process checks its arguments (pidfile, mount
point), then double-forks: the daemon is re-parented to
init, has its own session, writes its PID to the pidfile (default <cache>/daemon.pid) and logs to
<cache>/daemon.log. The launching process waits until FUSE is mounted (the daemon reports through a pipe),
prints `ready PID` and exits 0, or prints the error (no such point, cache of another volume, store
unreachable, FUSE mount failed, …) and exits 1, so a caller can simply run it.

While it runs the daemon holds a **shared repository lock** (refreshed every ttl/3), so a GC cannot delete
the chunks it still has to fetch, and rewrites <cache>/status.json twice a second (hydration
progress; read it with copydata.instant.mount.hydrate_status).

Stop it with SIGTERM or SIGINT (libfuse ends its loop and unmounts; the daemon then saves the block map,
releases its lock and removes its pidfile) — but only after the file system on the loop device is
unmounted and the loop device is detached (copydata.instant.mount.teardown does it in that order).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from copydata.instant.lazydisk import (
    QUIET_SIGNALS,
    STATUS_FILE,
    CacheMismatch,
    LazyDisk,
    RepoVolume,
    quiet_signals,
    read_map,
    write_atomic,
)
from copydata.instant.procs import LOGFILE, PIDFILE, daemon_pid, is_mountpoint

log = logging.getLogger("copydata.instant.daemon")


def parse_rate(text: str) -> float | None:
    """Bytes per second: 52428800, 50M, 50MiB/s (binary units), 50MB/s (decimal); 0 or none = no cap."""
    value = text.strip().lower().removesuffix("/s")
    if value in ("", "0", "none", "unlimited"):
        return None
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1e3, "mb": 1e6, "gb": 1e9,
             "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "b": 1}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m copydata.instant.daemon",
                                 description="Serve a volume of a repository point as <mount>/disk.img (FUSE)")
    ap.add_argument("--repo", required=True, help="repository URL: file:///…, s3://bucket/prefix, wasb://, gs://")
    ap.add_argument("--conn-id", help="Airflow connection of the object store (default: the provider's)")
    key = ap.add_mutually_exclusive_group()
    key.add_argument("--key-conn-id", help="Airflow connection holding the repository's master key")
    key.add_argument("--key-file", help="file holding the master key (64 hex digits or base64)")
    ap.add_argument("--app", required=True, help="application name")
    ap.add_argument("--point", required=True, help="point name")
    vol = ap.add_mutually_exclusive_group()
    vol.add_argument("--role", default="data", help="the volume with this role (default data)")
    vol.add_argument("--volume", help="the volume with this name")
    ap.add_argument("--cache", required=True, help="cache folder (sparse image, block map, status, log, pid)")
    ap.add_argument("--mount", required=True, help="empty folder to mount FUSE on (it will hold disk.img)")
    ap.add_argument("--read-only", action="store_true", help="refuse writes (mount the FUSE file read-only)")
    ap.add_argument("--no-hydrate", action="store_true", help="fetch blocks on access only")
    ap.add_argument("--hydrate-rate", default=None, type=parse_rate,
                    help="bandwidth cap of the background hydrator, e.g. 50MB/s (default: none)")
    ap.add_argument("--hydrate-workers", type=int, default=2)
    ap.add_argument("--readahead", type=int, default=4, help="blocks to prefetch after a miss")
    ap.add_argument("--prefetch-workers", type=int, default=4)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="simulated extra latency per GET (benchmarks)")
    ap.add_argument("--lock-ttl", type=float, default=300.0)
    ap.add_argument("--reset-cache", action="store_true", help="discard a cache of another point instead of failing")
    ap.add_argument("--pidfile")
    ap.add_argument("--log")
    ap.add_argument("--foreground", action="store_true", help="do not fork (the caller supervises)")
    ap.add_argument("--debug", action="store_true", help="libfuse debug output")
    args = ap.parse_args(argv)
    args.cache = Path(args.cache).resolve()
    args.mount = Path(args.mount).resolve()
    args.pidfile = Path(args.pidfile).resolve() if args.pidfile else args.cache / PIDFILE
    args.log = Path(args.log).resolve() if args.log else args.cache / LOGFILE
    return args


def open_repository(url: str, conn_id: str | None = None, key_conn_id: str | None = None,
                    key_file: str | None = None):
    """A Repository over store_for(url, conn_id); file:// needs no Airflow (nor does --key-file)."""
    from copydata.airflow.storage import key_from_connection, store_for
    from copydata.repo import Repository

    key: bytes | str | None = None
    if key_conn_id:
        key = key_from_connection(key_conn_id)
    elif key_file:
        key = Path(key_file).read_text().strip()
    return Repository.open(store_for(url, conn_id), key=key)


def select_volume(manifest, role: str | None, name: str | None):
    if name:
        try:
            return manifest.volume(name)
        except KeyError:
            raise SystemExit(f"point {manifest.point} has no volume {name!r}") from None
    found = [v for v in manifest.volumes if v.role == role]
    if len(found) != 1:
        raise SystemExit(f"point {manifest.point} has {len(found)} volumes with role {role!r} "
                         f"({[v.name for v in manifest.volumes]}): use --volume")
    return found[0]


def check(args: argparse.Namespace) -> None:
    """The local checks, before forking (the repository is opened once, in the daemon)."""
    if daemon_pid(args.pidfile):
        raise SystemExit(f"a daemon already serves this cache (pid file {args.pidfile})")
    if not args.mount.is_dir():
        raise SystemExit(f"mount point {args.mount} is not a folder")
    if is_mountpoint(args.mount):
        raise SystemExit(f"{args.mount} is already a mount point")


def load_volume(args: argparse.Namespace) -> tuple[Any, Any]:
    """(repository, volume entry) of the point; refuses a cache folder of another volume."""
    repo = open_repository(args.repo, args.conn_id, args.key_conn_id, args.key_file)
    manifest = repo.read_manifest(args.app, args.point)
    entry = select_volume(manifest, None if args.volume else args.role, args.volume)
    map_path = args.cache / "disk.map"
    if map_path.exists() and not args.reset_cache:
        header, _ = read_map(map_path)
        want = RepoVolume(repo, entry, args.app, args.point).identity()
        if header.get("identity") != want:
            raise CacheMismatch(f"cache {args.cache} holds another volume ({header.get('identity')}); "
                                "use another folder or --reset-cache")
    return repo, entry


# -- daemonizing -------------------------------------------------------------------------------------

def daemonize(args: argparse.Namespace) -> int | None:
    """Double fork. Returns None in the daemon (grandchild) and the ready-pipe's write end in a global;
    in the launching process it waits for the report and exits."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid > 0:   # the launcher
        os.close(wfd)
        os.waitpid(pid, 0)
        report = b""
        with os.fdopen(rfd, "rb") as r:
            while chunk := r.read(4096):
                report += chunk
        text = report.decode(errors="replace").strip()
        if text.startswith("ready"):
            print(text, flush=True)
            os._exit(0)
        print(text or f"the daemon exited before mounting; see {args.log}", file=sys.stderr, flush=True)
        os._exit(1)
    os.close(rfd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)   # the first child: the daemon is now an orphan of a finished session leader
    os.chdir("/")
    os.umask(0o022)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    return wfd


class Reporter:
    """Tells the launcher (through the ready pipe) that FUSE is up, or why it is not; once."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, text: str) -> None:
        with self.lock:
            if self.fd is None:
                return
            with contextlib.suppress(OSError):
                os.write(self.fd, text.encode() + b"\n")
                os.close(self.fd)
            self.fd = None


# -- serving -----------------------------------------------------------------------------------------

def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from copydata.instant import fusefs

    write_atomic(args.pidfile, f"{os.getpid()}\n".encode())
    t0 = time.monotonic()
    # helper threads (lock refresh, prefetch, hydration, status) inherit a mask without the stop signals,
    # so libfuse's handlers run on a FUSE thread and end its loop at once
    signal.pthread_sigmask(signal.SIG_BLOCK, QUIET_SIGNALS)
    lock = disk = None
    stop_status = threading.Event()
    try:
        repo, entry = load_volume(args)
        log.info("daemon %d: %s %s/%s volume %s (%d bytes) -> %s/%s, cache %s (manifest read in %.3f s)",
                 os.getpid(), args.repo, args.app, args.point, entry.name, entry.size, args.mount,
                 fusefs.IMAGE_NAME, args.cache, time.monotonic() - t0)
        lock = repo.lock("shared", purpose=f"instant mount {args.app}/{args.point}/{entry.name} pid {os.getpid()}",
                         ttl=args.lock_ttl, wait=60)
        source = RepoVolume(repo, entry, args.app, args.point, latency=args.latency_ms / 1000)
        disk = LazyDisk(source, args.cache, readahead=args.readahead, prefetch_workers=args.prefetch_workers,
                        hydrate=not args.no_hydrate, hydrate_workers=args.hydrate_workers,
                        hydrate_rate=args.hydrate_rate, reset=args.reset_cache)
        status_thread = threading.Thread(target=_status_loop, args=(args, disk, lock, stop_status),
                                         name="instant-status", daemon=True)
        status_thread.start()

        def on_init() -> None:
            log.info("FUSE mounted %.3f s after the daemon started", time.monotonic() - t0)
            reporter.send(f"ready {os.getpid()}")

        signal.pthread_sigmask(signal.SIG_UNBLOCK, QUIET_SIGNALS)
        fusefs.serve(disk, args.mount, read_only=args.read_only, on_init=on_init, debug=args.debug)
        log.info("FUSE loop ended")
        return 0
    except BaseException as e:
        log.exception("instant-mount daemon failed")
        reporter.send(f"error: {type(e).__name__}: {e}")
        return 1
    finally:
        quiet_signals()
        stop_status.set()
        if disk is not None:
            disk.close()
            _write_status(args, disk, lock, state="stopped")
            log.info("stopped: %s", json.dumps({k: v for k, v in disk.status().items() if k != "identity"}))
        if lock is not None:
            with contextlib.suppress(Exception):
                lock.release()
        with contextlib.suppress(FileNotFoundError):
            if args.pidfile.read_text().strip() == str(os.getpid()):
                args.pidfile.unlink()
        reporter.send("error: the daemon stopped before FUSE was mounted")


def _write_status(args: argparse.Namespace, disk: LazyDisk, lock: Any, state: str) -> None:
    doc = {**disk.status(), "state": state, "pid": os.getpid(), "mount": str(args.mount),
           "lock": getattr(getattr(lock, "info", None), "id", None),
           "lock_lost": bool(getattr(lock, "_lost", False))}
    write_atomic(args.cache / STATUS_FILE, json.dumps(doc, indent=1, sort_keys=True).encode())


def _status_loop(args: argparse.Namespace, disk: LazyDisk, lock: Any, stop: threading.Event) -> None:
    reported = False
    while not stop.wait(0.5):
        try:
            _write_status(args, disk, lock, state="serving")
            if disk.hydrated_at is not None and not reported:
                reported = True
                st = disk.status()
                log.info("hydration complete: %d blocks, %d MiB fetched in %.1f s", st["blocks"],
                         st["bytes_fetched"] >> 20, disk.hydrated_at - disk.started)
        except Exception:
            log.exception("writing status failed")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mfusepy").setLevel(logging.WARNING)
    args.cache.mkdir(parents=True, exist_ok=True)
    check(args)
    wfd = None if args.foreground else daemonize(args)
    return run(args, Reporter(wfd))


if __name__ == "__main__":
    sys.exit(main())
