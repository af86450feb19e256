"""Binary log files: names, the archive (copy, continuity) and a reader of event headers.

The reader walks the v4 event headers (timestamp, type, server id, size: 19 bytes) and decodes only the
events the engine needs: GTID events (where a transaction starts, stamped with the start time of its
committing statement) and the events that are never inside a transaction (rotate, format description,
GTID list, checkpoint). Header timestamps are seconds since the epoch: no time zone is involved.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"^(?P<base>[^/]+)\.(?P<num>\d{6,})$")
MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIII")  # timestamp, type, server_id, event_size, log_pos (then 2 bytes of flags)
HEADER_SIZE = 19
STOP, ROTATE, FORMAT_DESCRIPTION = 3, 4, 15
MYSQL_GTID, MYSQL_ANONYMOUS_GTID, MYSQL_PREVIOUS_GTIDS = 33, 34, 35
MARIADB_CHECKPOINT, MARIADB_GTID, MARIADB_GTID_LIST, MARIADB_START_ENCRYPTION = 161, 162, 163, 164
GTID_TYPES = {MARIADB_GTID, MYSQL_GTID, MYSQL_ANONYMOUS_GTID}
MARKER_TYPES = {STOP, ROTATE, FORMAT_DESCRIPTION, MYSQL_PREVIOUS_GTIDS, MARIADB_CHECKPOINT, MARIADB_GTID_LIST}
VERIFY_BYTES = 64 * 1024


class BinlogError(RuntimeError):
    pass


# -- names and the archive -----------------------------------------------------------------------
def number(name: str) -> int:
    m = NAME_RE.match(name)
    if not m:
        raise ValueError(f"not a binary log file name: {name!r}")
    return int(m.group("num"))


def basename(name: str) -> str:
    m = NAME_RE.match(name)
    if not m:
        raise ValueError(f"not a binary log file name: {name!r}")
    return m.group("base")


def sibling(name: str, num: int) -> str:
    """The name of file number `num` in the same series as `name` (same base, same width)."""
    width = len(NAME_RE.match(name).group("num"))
    return f"{basename(name)}.{num:0{width}d}"


def listing(folder: Path, base: str | None = None) -> list[str]:
    """Binary log files in a folder (not the index, not temporary copies), in number order."""
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if NAME_RE.match(p.name) and (base is None or basename(p.name) == base)]
    return sorted(names, key=number)


def gaps(names: list[str], since: str | None = None) -> tuple[str | None, str | None, list[str]]:
    """(first, last, missing) over the files from `since` on (`since` itself included)."""
    if since is not None:
        names = [n for n in names if basename(n) == basename(since) and number(n) >= number(since)]
    if not names:
        return None, None, [since] if since else []
    have = {number(n) for n in names}
    start = number(since) if since is not None else min(have)
    missing = [sibling(names[0], n) for n in range(start, max(have) + 1) if n not in have]
    return names[0], names[-1], missing


def archive_file(source: Path, folder: Path) -> bool:
    """Copy one closed binary log into the archive: never overwrite. True if copied, False if present.

    A present copy must have the same size and the same first and last 64 KiB, else BinlogError."""
    dest = folder / source.name
    if dest.exists():
        if _fingerprint(dest) != _fingerprint(source):
            raise BinlogError(f"{dest} exists and differs from {source}: refusing to overwrite an archived "
                              "binary log (another server writing the same names into this archive?)")
        return False
    tmp = folder / f".{source.name}.tmp"
    with source.open("rb") as src, tmp.open("wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.rename(tmp, dest)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _fingerprint(path: Path) -> tuple[int, str]:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(VERIFY_BYTES))
        f.seek(max(0, size - VERIFY_BYTES))
        digest.update(f.read(VERIFY_BYTES))
    return size, digest.hexdigest()


# -- events --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    file: str
    offset: int  # where the event starts: an integer --stop-position here excludes it and what follows
    when: int  # header timestamp, seconds since the epoch (UTC)
    type: int
    server_id: int
    gtid: str | None = None  # GTID events only
    gtid_list: dict[tuple[int, int], int] | None = None  # MariaDB GTID list events only: {(domain, server): seq}


def events(path: Path, start: int = 4) -> Iterator[Event]:
    """Every event of one file from offset `start` (an event boundary), with GTIDs decoded."""
    with path.open("rb") as f:
        if f.read(4) != MAGIC:
            raise BinlogError(f"{path} is not a binary log")
        offset = max(start, 4)
        f.seek(offset)
        while len(head := f.read(HEADER_SIZE)) == HEADER_SIZE:
            when, kind, server_id, size, _ = HEADER.unpack_from(head)
            if size < HEADER_SIZE:
                raise BinlogError(f"{path}: corrupt event header at offset {offset}")
            if kind == MARIADB_START_ENCRYPTION:
                raise BinlogError(f"{path} is encrypted: copydata cannot read encrypted binary logs")
            body = f.read(size - HEADER_SIZE) if kind in GTID_TYPES or kind == MARIADB_GTID_LIST else None
            if body is None:
                f.seek(offset + size)
            yield _decode(path.name, offset, when, kind, server_id, body)
            offset += size


def _decode(file: str, offset: int, when: int, kind: int, server_id: int, body: bytes | None) -> Event:
    if kind == MARIADB_GTID:
        seq, domain = struct.unpack_from("<QI", body)
        return Event(file, offset, when, kind, server_id, gtid=f"{domain}-{server_id}-{seq}")
    if kind in (MYSQL_GTID, MYSQL_ANONYMOUS_GTID):
        sid, gno = body[1:17], struct.unpack_from("<q", body, 17)[0]
        uuid = sid.hex()
        text = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}:{gno}"
        return Event(file, offset, when, kind, server_id, gtid=text if kind == MYSQL_GTID else None)
    if kind == MARIADB_GTID_LIST:
        count = struct.unpack_from("<I", body)[0] & 0x0FFFFFFF
        items = (struct.unpack_from("<IIQ", body, 4 + 16 * i) for i in range(count))
        return Event(file, offset, when, kind, server_id, gtid_list={(d, s): q for d, s, q in items})
    return Event(file, offset, when, kind, server_id)


def boundaries(folder: Path, names: Iterable[str], start: int = 4) -> Iterator[Event]:
    """The events where the log can be cut: transaction starts and events outside any transaction.

    `start` applies to the first file (the snapshot's position); later files are read from the beginning."""
    for i, name in enumerate(names):
        for ev in events(folder / name, start if i == 0 else 4):
            if ev.type in GTID_TYPES or ev.type in MARKER_TYPES:
                yield ev


# -- history ------------------------------------------------------------------------------------
def history_problems(folder: Path, names: list[str]) -> list[str]:
    """Files that do not continue the GTID history of the file before them (MariaDB), or cannot be read.

    A new file starts with a GTID list event holding the server's binlog state: it equals the state at the
    end of the previous file, unless the server was restored to an earlier point (or RESET MASTER ran)."""
    problems: list[str] = []
    end_state: dict[tuple[int, int], int] | None = None
    for prev, name in zip([None, *names], names, strict=False):
        try:
            start_state, state = _states(folder / name)
        except (BinlogError, struct.error) as exc:
            problems.append(f"{name} (unreadable: {exc})")
            end_state = None
            continue
        follows = prev is not None and number(name) == number(prev) + 1  # a gap is reported on its own
        if follows and end_state is not None and start_state is not None and start_state != end_state:
            problems.append(f"{name} (new GTID history)")
        end_state = state
    return problems


def _states(path: Path) -> tuple[dict | None, dict | None]:
    """The GTID binlog state a MariaDB file starts with and ends with (None, None for MySQL files)."""
    start_state: dict[tuple[int, int], int] | None = None
    state: dict[tuple[int, int], int] | None = None
    for ev in events(path):
        if ev.gtid_list is not None and start_state is None:
            start_state, state = dict(ev.gtid_list), dict(ev.gtid_list)
        elif ev.type == MARIADB_GTID and state is not None:
            domain, server, seq = (int(x) for x in ev.gtid.split("-"))
            state[(domain, server)] = seq
    return start_state, state
