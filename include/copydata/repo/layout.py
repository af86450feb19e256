"""Object keys of a v1 repository (docs/repository-format.md, "Layout")."""

from __future__ import annotations

import re

from copydata.repo.errors import RepositoryError

CONFIG = "config"
KEYS = "keys/"
CHUNKS = "chunks/"
MANIFESTS = "manifests/"
LOGS = "logs/"
LOCKS = "locks/"
BY_HASH = "by-hash"

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}")
HEX64_RE = re.compile(r"[0-9a-f]{64}")


def check_name(kind: str, name: str) -> str:
    """Application, point and log names: 1-200 of [A-Za-z0-9._@+=-], not starting with a punctuation mark."""
    if not NAME_RE.fullmatch(name):
        raise RepositoryError(f"invalid {kind} name {name!r}: use 1-200 of A-Z a-z 0-9 . _ @ + = -, "
                              "starting with a letter or digit")
    return name


def chunk_key(cid: str) -> str:
    return f"{CHUNKS}{cid[:2]}/{cid}"


def chunk_id_of(key: str) -> str | None:
    """The id in a chunks/ key, or None for anything else found there."""
    parts = key.split("/")
    if len(parts) == 3 and HEX64_RE.fullmatch(parts[2]) and parts[1] == parts[2][:2]:
        return parts[2]
    return None


def manifest_key(application: str, point: str) -> str:
    return f"{MANIFESTS}{check_name('application', application)}/{check_name('point', point)}.json"


def manifest_copy_key(application: str, digest: str) -> str:
    return f"{MANIFESTS}{check_name('application', application)}/{BY_HASH}/{digest}.json"


def parse_manifest_key(key: str) -> tuple[str, str] | None:
    """(application, point) for a manifests/<application>/<point>.json key, else None."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != MANIFESTS or not parts[2].endswith(".json"):
        return None
    app, point = parts[1], parts[2][: -len(".json")]
    return (app, point) if NAME_RE.fullmatch(app) and NAME_RE.fullmatch(point) else None


def parse_manifest_copy_key(key: str) -> tuple[str, str] | None:
    """(application, sha256 hex) for a manifests/<application>/by-hash/<sha256>.json key, else None."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] + "/" == MANIFESTS and parts[2] == BY_HASH and parts[3].endswith(".json"):
        digest = parts[3][: -len(".json")]
        if HEX64_RE.fullmatch(digest):
            return parts[1], digest
    return None


def log_key(application: str, name: str) -> str:
    return f"{LOGS}{check_name('application', application)}/{check_name('log', name)}"


def parse_log_key(key: str) -> tuple[str, str] | None:
    parts = key.split("/")
    if len(parts) == 3 and parts[0] + "/" == LOGS and NAME_RE.fullmatch(parts[1]) and NAME_RE.fullmatch(parts[2]):
        return parts[1], parts[2]
    return None


def lock_key(lock_id: str) -> str:
    return f"{LOCKS}{lock_id}.json"


def key_file_key(key_id: str) -> str:
    return f"{KEYS}{key_id}.json"
