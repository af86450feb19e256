"""The object envelope (chunks, manifests, log indexes) and chunk ids. Format: docs/repository-format.md.

    envelope = version (1 byte, = 1) || flags (1 byte) || body
    flags    : bit 0 = body is zstd-compressed, bit 1 = body is AES-256-GCM sealed; other bits must be 0
    body     : payload                                    (not encrypted)
               nonce (12) || AES-256-GCM(payload) || tag  (encrypted; AAD = version || flags || context)
    payload  : zstd frame of the plaintext, or the plaintext itself when zstd did not make it smaller
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import zstandard

from copydata.repo import crypto
from copydata.repo.errors import ChunkCorrupt

VERSION = 1
FLAG_ZSTD = 0x01
FLAG_AES_GCM = 0x02
KNOWN_FLAGS = FLAG_ZSTD | FLAG_AES_GCM
HEADER_BYTES = 2
MAX_PLAINTEXT = 1 << 30   # refuse to inflate a zstd frame past 1 GiB


@dataclass(frozen=True)
class Codec:
    """Encodes and decodes envelopes for one repository: compression level and optional keys."""

    level: int = 3
    keys: crypto.WorkingKeys | None = None

    def chunk_id(self, plaintext: bytes) -> bytes:
        """SHA-256 of the plaintext, or HMAC-SHA-256 under the id key in an encrypted repository."""
        if self.keys is None:
            return hashlib.sha256(plaintext).digest()
        return self.keys.chunk_id(plaintext)

    def encode(self, plaintext: bytes, context: bytes) -> bytes:
        flags, payload = 0, plaintext
        if self.level > 0:
            packed = zstandard.ZstdCompressor(level=self.level).compress(plaintext)
            if len(packed) < len(plaintext):
                flags, payload = FLAG_ZSTD, packed
        if self.keys is None:
            return bytes((VERSION, flags)) + payload
        header = bytes((VERSION, flags | FLAG_AES_GCM))
        return header + crypto.seal(self.keys.data, payload, header + context)

    def decode(self, envelope: bytes, context: bytes) -> bytes:
        header, body = envelope[:HEADER_BYTES], envelope[HEADER_BYTES:]
        if len(header) < HEADER_BYTES or header[0] != VERSION:
            raise ChunkCorrupt(f"unknown envelope version {header[:1].hex() or 'none'}")
        flags = header[1]
        if flags & ~KNOWN_FLAGS:
            raise ChunkCorrupt(f"unknown envelope flags {flags:#04x}")
        if bool(flags & FLAG_AES_GCM) != (self.keys is not None):
            raise ChunkCorrupt("object encryption does not match the repository's")
        if flags & FLAG_AES_GCM:
            body = crypto.unseal(self.keys.data, body, header + context)
        if flags & FLAG_ZSTD:
            body = _decompress(body)
        return body

    def encode_chunk(self, plaintext: bytes) -> tuple[bytes, bytes]:
        """(chunk id, envelope) for one block."""
        cid = self.chunk_id(plaintext)
        return cid, self.encode(plaintext, cid)

    def decode_chunk(self, cid: bytes, envelope: bytes) -> bytes:
        """The plaintext of chunk cid; ChunkCorrupt unless it decodes and re-hashes to cid."""
        plaintext = self.decode(envelope, cid)
        if self.chunk_id(plaintext) != cid:
            raise ChunkCorrupt(f"chunk {cid.hex()}: content does not match its id")
        return plaintext


def _decompress(frame: bytes) -> bytes:
    try:
        return zstandard.ZstdDecompressor().decompress(frame, max_output_size=MAX_PLAINTEXT)
    except zstandard.ZstdError as e:
        raise ChunkCorrupt(f"zstd: {e}") from None


def manifest_context(application: str, point: str) -> bytes:
    return b"manifest\x00" + application.encode() + b"\x00" + point.encode()


def log_context(application: str, name: str) -> bytes:
    return b"log\x00" + application.encode() + b"\x00" + name.encode()
