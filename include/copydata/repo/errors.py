"""Errors raised by the repository layer (store errors live in copydata.repo.store)."""

from __future__ import annotations


class RepositoryError(Exception):
    """The repository is missing, of another format, or used wrongly (wrong key, bad names)."""


class ChunkCorrupt(RepositoryError):
    """A stored object failed decoding: bad header, authentication tag, zstd frame or id mismatch."""


class PointExists(RepositoryError):
    """A different manifest (or log index) is already committed under this name."""


class LockConflict(RepositoryError):
    """Another holder's lock is incompatible with the one requested."""


class LockLost(RepositoryError):
    """Our lock object disappeared (someone took it over as stale): stop before committing anything."""


class VerifyError(RepositoryError):
    """A restored image does not match the manifest's digest or SHA-256."""
