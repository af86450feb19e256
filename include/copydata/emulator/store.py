"""Persistent object store of the emulated array: plain dicts in one JSON file.

Names are unique case-insensitively per kind, so each table is keyed by the lowered name.
Every mutation is written atomically (temp file, fsync, rename) before the call returns.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from pathlib import Path

KINDS = ("volumes", "snapshots", "pgroups", "pgsnaps", "hosts")


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            self.data = json.loads(path.read_text())
        else:
            self.data = self._fresh()
            self.save()

    @staticmethod
    def _fresh() -> dict:
        array_id = str(uuid.uuid4())
        return {
            "format": 1,
            "array": {"id": array_id, "name": "emu-fa1", "version": "6.5.8", "revision": "copydata-emulator",
                      "created": now_ms()},
            "api_token": str(uuid.uuid4()),
            "password": secrets.token_urlsafe(12),
            "serial_counter": 0x11000,
            "suffix_counter": 0,
            **{k: {} for k in KINDS},
            "connections": [],
        }

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def table(self, kind: str) -> dict[str, dict]:
        return self.data[kind]

    def get(self, kind: str, name: str) -> dict | None:
        return self.data[kind].get(name.lower())

    def put(self, kind: str, obj: dict) -> dict:
        self.data[kind][obj["name"].lower()] = obj
        return obj

    def pop(self, kind: str, name: str) -> dict | None:
        return self.data[kind].pop(name.lower(), None)

    def next_serial(self) -> str:
        self.data["serial_counter"] += 1
        prefix = self.data["array"]["id"].replace("-", "").upper()[:16]
        return f"{prefix}{self.data['serial_counter']:08X}"

    def next_suffix(self) -> str:
        self.data["suffix_counter"] += 1
        return str(self.data["suffix_counter"])

    @property
    def connections(self) -> list[dict]:
        return self.data["connections"]
