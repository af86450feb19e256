"""The emulated FlashArray: one state model behind both REST APIs.

Objects are plain dicts (see store.py). Volumes and snapshots are images in the
pool, named by serial; connections attach them to this machine through the fabric.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

from .hosts import HostsMixin
from .pgroups import PgroupsMixin
from .pool import Pool
from .san import LocalFabric
from .store import Store, now_ms
from .volumes import VolumesMixin

log = logging.getLogger(__name__)

DEFAULT_ERADICATION_DELAY_MS = 24 * 3600 * 1000


class Array(VolumesMixin, PgroupsMixin, HostsMixin):
    def __init__(self, state_dir: Path, pool_folder: Path | None = None,
                 eradication_delay_ms: int = DEFAULT_ERADICATION_DELAY_MS, rest1: bool = True):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self.store = Store(state_dir / "state.json")
        self.pool = Pool(state_dir, pool_folder)
        self.fabric: LocalFabric | None = None
        self.eradication_delay_ms = eradication_delay_ms
        self.rest1 = rest1

    def open(self) -> None:
        self.pool.open()
        self.fabric = LocalFabric(self.state_dir, self.pool.folder)
        for vol_name in {c["volume"] for c in self.store.connections}:
            vol = self.store.get("volumes", vol_name)
            if vol:
                self.fabric.attach(vol["serial"], self.pool.path(vol["serial"]))

    def close(self) -> None:
        if self.fabric:
            self.fabric.release_all()
        self.pool.close()

    # -- shared helpers --------------------------------------------------------------------
    @property
    def info(self) -> dict:
        return self.store.data["array"]

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def expire(self) -> None:
        """Eradicate objects whose eradication delay has run out."""
        cutoff = now_ms() - self.eradication_delay_ms
        for kind, fn in (("pgsnaps", self._eradicate_pgsnap), ("snapshots", self._eradicate_snapshot),
                         ("volumes", self._eradicate_volume), ("pgroups", self._eradicate_pgroup)):
            for obj in list(self.store.table(kind).values()):
                if obj.get("destroyed") and obj["destroyed_at"] <= cutoff:
                    log.info("eradication delay over: eradicating %s %s", kind, obj["name"])
                    fn(obj)

    def time_remaining_ms(self, obj: dict) -> int | None:
        if not obj.get("destroyed"):
            return None
        return max(0, obj["destroyed_at"] + self.eradication_delay_ms - now_ms())

    @staticmethod
    def mark_destroyed(obj: dict, value: bool) -> None:
        obj["destroyed"] = value
        obj["destroyed_at"] = now_ms() if value else None

    def commit(self) -> None:
        self.store.save()
