"""Repository of recovery points in object storage (format v1, docs/repository-format.md).

Core modules only: nothing here imports Airflow. Drivers over the Airflow provider hooks (S3, Azure Blob,
GCS) live in copydata.airflow.storage and implement the same Store protocol as PosixStore.
"""

from copydata.repo.errors import (
    ChunkCorrupt,
    LockConflict,
    LockLost,
    PointExists,
    RepositoryError,
    VerifyError,
)
from copydata.repo.manifest import LogIndex, Manifest, VolumeEntry
from copydata.repo.repository import Repository
from copydata.repo.store import AlreadyExists, NotFound, ObjectInfo, PosixStore, Store, StoreError
from copydata.repo.transfer import Transfer

__all__ = [
    "AlreadyExists", "ChunkCorrupt", "LockConflict", "LockLost", "LogIndex", "Manifest", "NotFound",
    "ObjectInfo", "PointExists", "PosixStore", "Repository", "RepositoryError", "Store", "StoreError",
    "Transfer", "VerifyError", "VolumeEntry",
]
