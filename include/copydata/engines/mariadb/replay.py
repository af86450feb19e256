"""Point-in-time replay: find the cut in the archived binary logs, then pipe them into the server once.

The rule (docs/mariadb.md): for a target T, let X be T rounded up to a whole second. The clone holds the
snapshot plus, in commit order, every transaction of the archived binary logs after the snapshot's
position up to - not including - the first transaction stamped X or later (a transaction is stamped with
the start second of its committing statement; events outside transactions, e.g. the rotate written by a
log backup, also end the replay when stamped X or later). For a whole-second T: every transaction whose
commit began before T, none whose commit began at or after T.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from . import binlog
from .server import RecoveryFailed, tail


@dataclass(frozen=True)
class Plan:
    files: list[str]  # archived file names, in order
    start: int  # offset in the first file where replay begins
    stop: int | None  # offset in the last file where replay ends (excluded); None: to the end
    last_gtid: str | None  # the last transaction replayed
    transactions: int
    stop_before: str | None  # X, ISO 8601 UTC; None: replay everything


def stop_second(target: dt.datetime | None) -> int | None:
    """X: the target rounded up to a whole second, in seconds since the epoch."""
    return None if target is None else math.ceil(target.astimezone(dt.UTC).timestamp())


def chain(folder: Path, first: str) -> list[str]:
    """The archived files from `first` on; refuse a gap, since replay would skip transactions."""
    first_, _, missing = binlog.gaps(binlog.listing(folder, binlog.basename(first)), first)
    if first_ != first or missing:
        raise RecoveryFailed(f"the log archive {folder} lacks {missing or [first]}: cannot replay from {first}")
    return [n for n in binlog.listing(folder, binlog.basename(first)) if binlog.number(n) >= binlog.number(first)]


def plan(folder: Path, first: str, start: int, target: dt.datetime | None) -> Plan:
    names, x = chain(folder, first), stop_second(target)
    last_gtid, count = None, 0
    for ev in binlog.boundaries(folder, names, start):
        if x is not None and ev.when >= x:
            files = names[: names.index(ev.file) + 1]
            return Plan(files, start, ev.offset, last_gtid, count, _iso(x))
        if ev.type in binlog.GTID_TYPES:
            last_gtid, count = ev.gtid or last_gtid, count + 1
    if x is not None:
        raise RecoveryFailed(f"the archived binary logs ({names[0]}..{names[-1]}) end before {_iso(x)}: "
                             "the target is not covered by this log backup")
    return Plan(names, start, None, last_gtid, count, None)


def run(p: Plan, folder: Path, binlog_cmd: list[str], client_cmd: list[str], run_dir: Path,
        timeout: float) -> None:
    """mariadb-binlog <files> | mariadb, in one invocation and one client session (temporary tables and
    transactions spanning files survive); both exit codes are checked."""
    (run_dir / "replay.json").write_text(json.dumps(asdict(p), indent=1))
    if p.transactions == 0:
        return
    reader = [*binlog_cmd, *_positions(p), *(str(folder / n) for n in p.files)]
    errs = run_dir / "replay-binlog.err", run_dir / "replay-client.err"
    env = {**os.environ, "TZ": "UTC"}  # dates printed or parsed by mariadb-binlog are in the process zone
    with errs[0].open("wb") as e1, errs[1].open("wb") as e2:
        src = subprocess.Popen(reader, stdout=subprocess.PIPE, stderr=e1, env=env)
        dst = subprocess.Popen(client_cmd, stdin=src.stdout, stdout=subprocess.DEVNULL, stderr=e2, env=env)
        src.stdout.close()
        try:
            dst.wait(timeout)
            src.wait(10)
        except subprocess.TimeoutExpired:
            src.kill(), dst.kill(), src.wait(), dst.wait()
            raise RecoveryFailed(f"the binary log replay did not finish within {timeout:.0f} s") from None
        except BaseException:  # interrupted or killed task: never leave the pipe writing into the clone
            src.kill(), dst.kill(), src.wait(), dst.wait()
            raise
    if src.returncode != 0 or dst.returncode != 0:
        raise RecoveryFailed(f"binary log replay failed: {reader[0]} exited {src.returncode}, {client_cmd[0]} "
                             f"exited {dst.returncode}\n{tail(errs[0], 10)}\n{tail(errs[1], 10)}")


def _positions(p: Plan) -> list[str]:
    """Integer positions: --start-position applies to the first file, --stop-position to the last."""
    return ([f"--start-position={p.start}"] if p.start > 4 else []) + \
        ([f"--stop-position={p.stop}"] if p.stop is not None else [])


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()
