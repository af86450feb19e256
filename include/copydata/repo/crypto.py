"""Key handling and AES-256-GCM for the repository (via the `cryptography` package).

The master key (32 bytes, given as 64 hex digits or base64) comes from outside, e.g. an Airflow connection.
It only wraps the repository's two working keys, stored in keys/<key id>.json: the data key (AES-256-GCM
for every encrypted object) and the id key (HMAC-SHA-256 chunk ids). See docs/repository-format.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from copydata.repo.errors import ChunkCorrupt, RepositoryError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def parse_key(text: str | bytes) -> bytes:
    """A 32-byte key from 64 hex digits or base64 (standard or URL-safe, padding optional)."""
    if isinstance(text, bytes) and len(text) == KEY_BYTES:
        return text
    s = (text.decode() if isinstance(text, bytes) else text).strip()
    if len(s) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(s)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(s.replace("-", "+").replace("_", "/") + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise RepositoryError("a repository key must be 32 bytes, given as 64 hex digits or base64")
    return raw


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce (12 random bytes) || ciphertext || tag (16 bytes)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise ChunkCorrupt("encrypted object too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise ChunkCorrupt("authentication failed (wrong key or corrupted object)") from None


@dataclass(frozen=True)
class WorkingKeys:
    """The repository's keys once a key file has been unwrapped."""

    data: bytes   # AES-256-GCM
    ids: bytes    # HMAC-SHA-256 for chunk ids

    def chunk_id(self, plaintext: bytes) -> bytes:
        return hmac.new(self.ids, plaintext, hashlib.sha256).digest()


def key_file_aad(repo_id: str) -> bytes:
    return b"copydata-repo-key\x00" + repo_id.encode()


def wrap(master: bytes, keys: WorkingKeys, repo_id: str) -> bytes:
    return seal(master, keys.data + keys.ids, key_file_aad(repo_id))


def unwrap(master: bytes, wrapped: bytes, repo_id: str) -> WorkingKeys:
    raw = unseal(master, wrapped, key_file_aad(repo_id))
    if len(raw) != 2 * KEY_BYTES:
        raise RepositoryError("key file holds keys of the wrong length")
    return WorkingKeys(raw[:KEY_BYTES], raw[KEY_BYTES:])
