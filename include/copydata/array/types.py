"""What copydata needs from a FlashArray, independent of the REST generation that serves it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol


class ArrayError(RuntimeError):
    """The array refused a call. `message` is the array's own text; `status` its HTTP status."""

    def __init__(self, operation: str, message: str, status: int | None = None, context: str | None = None):
        self.operation, self.message, self.status, self.context = operation, message, status, context
        where = f" ({context})" if context else ""
        super().__init__(f"{operation} failed{where}: {message}")

    @property
    def not_found(self) -> bool:
        return "does not exist" in self.message or "No such volume" in self.message

    @property
    def already_exists(self) -> bool:
        return "already exists" in self.message


@dataclass(frozen=True)
class Volume:
    name: str
    serial: str
    size: int
    source: str | None = None
    destroyed: bool = False
    created: dt.datetime | None = None


@dataclass(frozen=True)
class PgroupSnapshot:
    name: str  # pgroup.suffix
    pgroup: str
    suffix: str
    created: dt.datetime
    destroyed: bool = False
    volumes: dict[str, str] = field(default_factory=dict)  # member volume -> its snapshot name


@dataclass(frozen=True)
class Connection:
    host: str
    volume: str
    lun: int


class ArrayClient(Protocol):
    api: str  # "rest2" or "rest1"
    api_version: str

    def array_name(self) -> str: ...
    def get_volume(self, name: str) -> Volume: ...
    def find_volume(self, name: str) -> Volume | None: ...
    def create_volume(self, name: str, size: int) -> Volume: ...
    def copy_volume(self, source: str, name: str, overwrite: bool = False) -> Volume: ...
    def resize_volume(self, name: str, size: int) -> Volume: ...
    def destroy_volume(self, name: str) -> None: ...
    def recover_volume(self, name: str) -> None: ...
    def eradicate_volume(self, name: str) -> None: ...
    def ensure_pgroup(self, name: str, volumes: list[str]) -> None: ...
    def pgroup_volumes(self, name: str) -> list[str]: ...
    def snapshot_pgroup(self, pgroup: str, suffix: str | None = None) -> PgroupSnapshot: ...
    def pgroup_snapshots(self, pgroup: str) -> list[PgroupSnapshot]: ...
    def find_pgroup_snapshot(self, name: str) -> PgroupSnapshot | None: ...
    def destroy_pgroup_snapshot(self, name: str, eradicate: bool = False) -> None: ...
    def destroy_pgroup(self, name: str) -> None: ...  # destroy and eradicate, with its snapshots
    def ensure_host(self, name: str, iqns: list[str] | None = None) -> None: ...
    def connect(self, host: str, volume: str) -> Connection: ...
    def disconnect(self, host: str, volume: str) -> None: ...
    def connections(self, volume: str) -> list[Connection]: ...
    def diff(self, name: str, base: str | None, block_size: int = 65536, offset: int = 0,
             length: int | None = None) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


def from_ms(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def from_iso(text: str | None) -> dt.datetime | None:
    return None if not text else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
