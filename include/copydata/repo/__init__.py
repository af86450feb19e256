"""Repository of recovery points in object storage (format v1, docs/repository-format.md).

Core modules only: nothing here imports Airflow. Drivers over the Airflow provider hooks (S3, Azure Blob,
GCS) live in copydata.airflow.storage and implement the same Store protocol as PosixStore.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module; imported on first use, so that `copydata.repo.layout` or `.errors` (which the DAG factory
# reaches at parse time) do not load zstandard, cryptography and the whole library.
_WHERE = {
    "ChunkCorrupt": "errors", "LockConflict": "errors", "LockLost": "errors", "PointExists": "errors",
    "RepositoryError": "errors", "VerifyError": "errors",
    "LogIndex": "manifest", "Manifest": "manifest", "VolumeEntry": "manifest",
    "Repository": "repository", "Transfer": "transfer",
    "AlreadyExists": "store", "NotFound": "store", "ObjectInfo": "store", "PosixStore": "store", "Store": "store",
    "StoreError": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"copydata.repo.{_WHERE[name]}"), name)


__all__ = [
    "AlreadyExists", "ChunkCorrupt", "LockConflict", "LockLost", "LogIndex", "Manifest", "NotFound",
    "ObjectInfo", "PointExists", "PosixStore", "Repository", "RepositoryError", "Store", "StoreError",
    "Transfer", "VerifyError", "VolumeEntry",
]
