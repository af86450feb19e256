"""Shared by the engine benchmarks (postgres_clone.py, ...): progress lines, a COPYDATA_HOME the database's
OS user can reach, an AppContext built without Airflow, the emulator's shutdown and a plain-text table.

Run the benchmarks as scripts (`.venv/bin/python benchmarks/<engine>_clone.py`): this folder is then on
sys.path and `import _common` finds this file."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MiB = 2**20
GiB = 2**30
HOME_VARS = ("COPYDATA_HOME", "COPYDATA_SLA_DIR", "COPYDATA_CATALOG_URL")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class BenchHome:
    root: Path

    @property
    def sla_dir(self) -> Path:
        return self.root / "slas"

    @property
    def emulator(self) -> Path:
        return self.root / "emulator"

    @property
    def catalog_url(self) -> str:
        return f"sqlite:///{self.root / 'catalog.db'}"


def mounts_under(folder: Path) -> list[str]:
    root = os.path.realpath(folder)
    points = [line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == root or p.startswith(root + os.sep)]


@contextlib.contextmanager
def bench_home(path: str | None, keep: bool, prefix: str = "copydata-bench-") -> Iterator[BenchHome]:
    """COPYDATA_HOME for the run: `path`, or a fresh folder under /var/tmp (mode 0755, so the database's OS
    user can walk into it; private temp folders will not do). A folder made here is removed at the end unless
    keep, and never while something is still mounted below it. A folder given by the caller stays."""
    made = path is None
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")) if made else Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    home = BenchHome(root)
    saved = {k: os.environ.get(k) for k in HOME_VARS}
    os.environ.update({"COPYDATA_HOME": str(root), "COPYDATA_SLA_DIR": str(home.sla_dir),
                       "COPYDATA_CATALOG_URL": home.catalog_url})
    try:
        yield home
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        left = mounts_under(root)
        if left:
            log(f"NOT removing {root}: still mounted below it: {', '.join(left)}")
        elif made and not keep:
            shutil.rmtree(root, ignore_errors=True)
            log(f"removed {root}")
        else:
            log(f"kept {root}")


def stop_emulator(home: BenchHome) -> None:
    """Stop the emulator of this home; service.stop also releases its loop devices, mounts and pool."""
    from copydata.emulator import service

    try:
        stopped = service.stop(home.emulator)
        log(f"emulator {'stopped' if stopped else 'was not running'}; its devices and pool released")
    except Exception as exc:  # keep cleaning up
        log(f"emulator stop failed: {exc}")


class Timed:
    """Proxy that records how long the named methods of `inner` take: {method: [seconds, ...]}, and when each
    call began (wall clock, time.time(): comparable with file mtimes): {method: [epoch seconds, ...]}. Lets a
    benchmark break an ops call down (array snapshot, log push, server start) without touching copydata."""

    def __init__(self, inner, methods: Sequence[str]):
        self._inner, self._methods = inner, set(methods)
        self.calls: dict[str, list[float]] = {}
        self.began: dict[str, list[float]] = {}

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if name not in self._methods or not callable(attr):
            return attr

        def timed(*args, **kwargs):
            self.began.setdefault(name, []).append(time.time())
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.calls.setdefault(name, []).append(time.perf_counter() - t0)
        return timed

    def last(self, name: str) -> float | None:
        return self.calls[name][-1] if self.calls.get(name) else None

    def last_began(self, name: str) -> float | None:
        return self.began[name][-1] if self.began.get(name) else None

    def reset(self) -> None:
        self.calls.clear()
        self.began.clear()


@contextlib.contextmanager
def app_context(home: BenchHome, sla_file: Path, engine, actor: str = "benchmark") -> Iterator:
    """An AppContext for the SLA's first application, as the Airflow operators build it, without Airflow:
    the emulator's array and devices, the given engine, the home's catalog. ctx.array is a Timed proxy."""
    from copydata.array import open_array
    from copydata.catalog import Catalog
    from copydata.connector import LocalConnector
    from copydata.emulator import service
    from copydata.ops.context import AppContext
    from copydata.sla.loader import load_sla

    endpoint = service.read_endpoint(home.emulator)
    if endpoint is None:
        raise RuntimeError(f"no emulator runs for {home.emulator}")
    sla = load_sla(sla_file)
    app = sla.applications[0]
    array = Timed(open_array(endpoint["target"], endpoint["api_token"], endpoint["ca_file"]),
                  ["snapshot_pgroup", "copy_volume", "connect", "eradicate_volume"])
    catalog = Catalog(home.catalog_url)
    try:
        catalog.ensure_application(app.name, sla.name, app.engine, app.model_dump(mode="json"))
        yield AppContext(sla=sla, app=app, array=array, connector=LocalConnector(endpoint["devices"]),
                         engine=engine, catalog=catalog, actor=actor)
    finally:
        with contextlib.suppress(Exception):
            array.close()
        catalog.close()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Right-aligned columns; the first column left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def parse_sizes(text: str) -> list[float]:
    """--sizes: comma-separated positive numbers (GiB)."""
    import argparse

    try:
        sizes = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected numbers such as 1,10") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected positive numbers")
    return sizes


def log_backups_while(ctx, label: str, tag: str, interval: float, running: Callable[[], bool],
                      extra: Callable[[], str] = lambda: "") -> list[float]:
    """A log backup every `interval` seconds while running() holds (the log-backup DAG's schedule, in
    small); returns each one's seconds. `extra()` adds to each progress line."""
    from copydata.ops.logs import log_backup

    took: list[float] = []
    next_at = time.monotonic() + interval
    while running():
        if time.monotonic() >= next_at:
            t0 = time.perf_counter()
            log_backup(ctx, f"{tag}-log{len(took) + 1}")
            took.append(time.perf_counter() - t0)
            push = ctx.engine.last("push_logs") if hasattr(ctx.engine, "last") else None
            log(f"{label}: log backup {len(took)} during the load: {took[-1] * 1000:.0f} ms (push_logs "
                f"{fmt(None if push is None else push * 1000, '.0f')} ms){extra()}")
            next_at = max(next_at + interval, time.monotonic() + 1)
        time.sleep(0.05)
    return took


def clone_target(ctx, label: str, hist) -> dt.datetime:
    """The point-in-time clone's target: the whole second 3 s before the load ended (after the snapshot)."""
    target = (hist.load.ended - dt.timedelta(seconds=3)).replace(microsecond=0)
    if target < hist.snapshot.consistent_at:
        raise RuntimeError(f"target {target} is before the snapshot ({hist.snapshot.consistent_at}): raise "
                           "--load-seconds")
    log(f"{label}: recoverable {ctx.catalog.points(ctx.name)['ranges']}; load ended "
        f"{hist.load.ended.isoformat(timespec='milliseconds')}; clone target {target.isoformat()}")
    return target


def clone_pair(ctx, label: str, target: dt.datetime, measure: Callable[[str, object], object],
               report: Callable[[str, object], None], stop_under: Callable[[Path], None],
               clones_root: Path) -> dict[str, object]:
    """Clone at `target` ("pit") and at "latest", one after the other: measure(clone_name, point) makes
    and times each (returns a run with a delete_s field), report(label, run) logs it, then the clone is
    deleted and the deletion timed. A clone left by a failure is deleted, or its server stopped."""
    from copydata.ops.clones import delete_clone

    runs: dict[str, object] = {}
    made: list[str] = []
    try:
        for attr, point in (("pit", target), ("latest", "latest")):
            clone = f"{label}-{attr}"
            made.append(clone)
            run = runs[attr] = measure(clone, point)
            report(label, run)
            t1 = time.perf_counter()
            delete_clone(ctx, clone, actor="benchmark")
            run.delete_s = time.perf_counter() - t1
            made.remove(clone)
            log(f"{label}: clone {clone} deleted in {run.delete_s:.2f} s")
    finally:
        for clone in made:
            try:
                delete_clone(ctx, clone, actor="benchmark")
            except Exception as exc:
                log(f"{label}: delete of clone {clone} failed: {exc}")
                stop_under(clones_root / clone)
    return runs
