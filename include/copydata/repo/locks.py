"""Repository locks: locks/<id>.json objects, shared (backup, restore, verify) or exclusive (gc).

Acquire = write our lock object, list locks/, then judge every other lock by the store's clock: a lock is
stale when the mtime of our freshly written object exceeds its mtime by more than its ttl; stale locks are
deleted (taken over). Any live incompatible lock makes us delete ours again and fail (or retry until wait
runs out). A holder rewrites its object every ttl/3, and stops (LockLost) when it finds it gone.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

from copydata.repo import layout
from copydata.repo.errors import LockConflict, LockLost, RepositoryError
from copydata.repo.manifest import utc_now
from copydata.repo.store import NotFound, ObjectInfo, Store

log = logging.getLogger(__name__)

SHARED = "shared"
EXCLUSIVE = "exclusive"
DEFAULT_TTL = 300.0


@dataclass
class LockInfo:
    id: str
    kind: str
    ttl: float
    purpose: str = ""
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    user: str = field(default_factory=lambda: _user())
    created: str = field(default_factory=utc_now)
    version: int = 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, lock_id: str, raw: bytes) -> LockInfo:
        """Parse a lock object; anything unreadable counts as an exclusive lock with the default ttl."""
        try:
            d = json.loads(raw)
            kind = d["kind"] if d.get("kind") in (SHARED, EXCLUSIVE) else EXCLUSIVE
            return cls(id=lock_id, kind=kind, ttl=float(d.get("ttl", DEFAULT_TTL)),
                       purpose=str(d.get("purpose", "")), host=str(d.get("host", "?")),
                       pid=int(d.get("pid", 0)), user=str(d.get("user", "?")), created=str(d.get("created", "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls(id=lock_id, kind=EXCLUSIVE, ttl=DEFAULT_TTL, purpose="(unreadable)")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def compatible(a: str, b: str) -> bool:
    return a == SHARED and b == SHARED


class Lock:
    """A repository lock. Use as a context manager, or acquire() / release()."""

    def __init__(self, store: Store, kind: str, purpose: str = "", ttl: float = DEFAULT_TTL,
                 refresh: bool = True) -> None:
        if kind not in (SHARED, EXCLUSIVE):
            raise ValueError(f"lock kind must be {SHARED!r} or {EXCLUSIVE!r}")
        self.store = store
        self.info = LockInfo(id=uuid.uuid4().hex, kind=kind, ttl=float(ttl), purpose=purpose)
        self.key = layout.lock_key(self.info.id)
        self.store_time: float | None = None   # our object's mtime at acquire: "now" by the store's clock
        self.taken_over: list[LockInfo] = []
        self._refresh = refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False
        self.held = False

    def acquire(self, wait: float = 0.0) -> Lock:
        deadline = time.monotonic() + wait
        while True:
            conflicts = self._try_once()
            if not conflicts:
                break
            if time.monotonic() >= deadline:
                who = ", ".join(f"{c.kind} lock {c.id} by {c.user}@{c.host} pid {c.pid} ({c.purpose})"
                                for c in conflicts)
                raise LockConflict(f"cannot take a {self.info.kind} lock on {self.store.url}: {who}")
            time.sleep(min(max(deadline - time.monotonic(), 0), 0.2 + random.random() * 0.8))
        self.held = True
        if self._refresh:
            self._thread = threading.Thread(target=self._refresh_loop, name=f"lock-{self.info.id[:8]}",
                                            daemon=True)
            self._thread.start()
        return self

    def _try_once(self) -> list[LockInfo]:
        self.store.put(self.key, self.info.to_json(), create_only=True)
        objects = [o for o in self.store.list(layout.LOCKS) if o.key.endswith(".json")]
        mine = next((o for o in objects if o.key == self.key), None)
        self.store_time = mine.mtime if mine else max((o.mtime for o in objects), default=time.time())
        conflicts = []
        for obj in objects:
            if obj.key == self.key:
                continue
            other = self._read(obj)
            if other is None:
                continue
            if self.store_time - obj.mtime > other.ttl:
                log.warning("removing stale %s lock %s (%s@%s pid %s, %s)", other.kind, other.id,
                            other.user, other.host, other.pid, other.purpose)
                self.store.delete(obj.key)
                self.taken_over.append(other)
            elif not compatible(self.info.kind, other.kind):
                conflicts.append(other)
        if conflicts:
            self.store.delete(self.key)
        return conflicts

    def _read(self, obj: ObjectInfo) -> LockInfo | None:
        lock_id = obj.key[len(layout.LOCKS):-len(".json")]
        try:
            return LockInfo.from_json(lock_id, self.store.get(obj.key))
        except NotFound:   # released meanwhile
            return None

    def _refresh_loop(self) -> None:
        interval = max(self.info.ttl / 3, 0.05)
        while not self._stop.wait(interval):
            try:
                if not self.store.exists(self.key):
                    self._lost = True
                    log.error("lock %s was removed by someone else", self.info.id)
                    return
                self.store.put(self.key, self.info.to_json())
            except Exception:   # a transient store error: try again at the next interval
                log.exception("refreshing lock %s failed", self.info.id)

    def check(self) -> None:
        """Raise LockLost unless we still hold the lock (call before committing anything)."""
        if not self.held:
            raise RepositoryError("lock is not held")
        if self._lost or not self.store.exists(self.key):
            self._lost = True
            raise LockLost(f"{self.info.kind} lock {self.info.id} on {self.store.url} was taken over")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.held:
            self.store.delete(self.key)
            self.held = False

    def __enter__(self) -> Lock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
