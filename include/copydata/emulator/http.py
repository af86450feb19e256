"""Request and response types shared by the REST 1 and REST 2 front ends."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import errors


@dataclass
class Request:
    method: str
    version: str
    path: str  # after /api/<version>/, no leading slash
    query: dict[str, str]
    body: object
    headers: dict[str, str]  # lower-cased names

    def q(self, key: str, default: str | None = None) -> str | None:
        return self.query.get(key, default)

    def qlist(self, key: str) -> list[str] | None:
        raw = self.query.get(key)
        if raw is None or raw == "":
            return None
        return [x for x in raw.split(",") if x]

    def qbool(self, key: str) -> bool | None:
        raw = self.query.get(key)
        if raw is None:
            return None
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise errors.invalid(f"Invalid value for {key}: expected true or false.", raw)

    def qint(self, key: str, default: int | None = None) -> int | None:
        raw = self.query.get(key)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise errors.invalid(f"Invalid value for {key}: expected an integer.", raw) from None

    def json(self) -> dict:
        if self.body in (None, ""):
            return {}
        if not isinstance(self.body, dict):
            raise errors.invalid("Request body must be a JSON object.")
        return self.body


@dataclass
class Response:
    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()
