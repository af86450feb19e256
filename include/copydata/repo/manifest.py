"""Manifest (one per recovery point) and log index documents, format v1 (docs/repository-format.md)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from copydata.repo.errors import RepositoryError
from copydata.repo.layout import HEX64_RE, check_name

FORMAT_VERSION = 1


def utc_now() -> str:
    return datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _known(cls: type, d: dict) -> dict:
    """Fields a v1 reader knows; unknown ones are ignored (forward compatibility within v1)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _check_chunks(chunks: list[str | None], size: int, block_size: int, what: str) -> None:
    if block_size <= 0 or size < 0:
        raise RepositoryError(f"{what}: bad size {size} or block size {block_size}")
    if len(chunks) != -(-size // block_size):
        raise RepositoryError(f"{what}: {len(chunks)} chunk entries for {size} bytes in blocks of {block_size}")
    for c in chunks:
        if c is not None and not (isinstance(c, str) and HEX64_RE.fullmatch(c)):
            raise RepositoryError(f"{what}: bad chunk id {c!r}")


@dataclass
class VolumeEntry:
    """One volume of a recovery point: every block's chunk id (None = all zeros)."""

    name: str
    size: int
    block_size: int
    chunks: list[str | None]
    digest: str                      # SHA-256 over the ids of all blocks, zero blocks included (see doc)
    sha256: str | None = None        # SHA-256 of the whole image, when the backup read all of it
    role: str = ""
    array_snapshot: str = ""

    def validate(self) -> VolumeEntry:
        _check_chunks(self.chunks, self.size, self.block_size, f"volume {self.name!r}")
        for h in (self.digest, self.sha256):
            if h is not None and not HEX64_RE.fullmatch(h):
                raise RepositoryError(f"volume {self.name!r}: bad hash {h!r}")
        return self

    def block_length(self, index: int) -> int:
        return min(self.block_size, self.size - index * self.block_size)


@dataclass
class Manifest:
    """A recovery point. It exists iff manifests/<application>/<point>.json exists."""

    application: str
    point: str
    volumes: list[VolumeEntry]
    engine: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    parent: str | None = None        # informational only: restore never needs it
    version: int = FORMAT_VERSION

    def validate(self) -> Manifest:
        if self.version != FORMAT_VERSION:
            raise RepositoryError(f"manifest format version {self.version} is not supported")
        check_name("application", self.application)
        check_name("point", self.point)
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names):
            raise RepositoryError(f"point {self.point!r}: duplicate volume names")
        for v in self.volumes:
            v.validate()
        return self

    def volume(self, name: str) -> VolumeEntry:
        for v in self.volumes:
            if v.name == name:
                return v
        raise KeyError(name)

    def chunk_ids(self) -> set[str]:
        return {c for v in self.volumes for c in v.chunks if c is not None}

    def to_json(self) -> bytes:
        return json.dumps(asdict(self.validate()), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            d = json.loads(raw)
            vols = [VolumeEntry(**_known(VolumeEntry, v)) for v in d.pop("volumes")]
            return cls(volumes=vols, **_known(cls, d)).validate()
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise RepositoryError(f"malformed manifest: {e}") from None


@dataclass
class LogIndex:
    """A log file (WAL segment, binlog) stored beside the points: logs/<application>/<name>."""

    application: str
    name: str
    size: int
    sha256: str
    block_size: int
    chunks: list[str | None]
    metadata: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    version: int = FORMAT_VERSION

    def validate(self) -> LogIndex:
        if self.version != FORMAT_VERSION:
            raise RepositoryError(f"log index format version {self.version} is not supported")
        check_name("application", self.application)
        check_name("log", self.name)
        _check_chunks(self.chunks, self.size, self.block_size, f"log {self.name!r}")
        if not HEX64_RE.fullmatch(self.sha256):
            raise RepositoryError(f"log {self.name!r}: bad sha256")
        return self

    def to_json(self) -> bytes:
        return json.dumps(asdict(self.validate()), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LogIndex:
        try:
            return cls(**_known(cls, json.loads(raw))).validate()
        except (ValueError, TypeError, AttributeError) as e:
            raise RepositoryError(f"malformed log index: {e}") from None
