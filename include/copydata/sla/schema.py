"""The JSON Schema of SLA files, generated from the models (published as docs/sla.schema.json)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from .durations import format_duration
from .model import Sla

SCHEMA_ID = "https://json-schema.org/draft/2020-12/schema"
PUBLISHED = Path(__file__).resolve().parents[3] / "docs" / "sla.schema.json"


class _Generator(GenerateJsonSchema):
    """Defaults written as in SLA files: durations as 60s, 3d rather than ISO 8601."""

    def encode_default(self, dft: Any) -> Any:
        return format_duration(dft) if isinstance(dft, timedelta) else super().encode_default(dft)


def sla_schema() -> dict[str, Any]:
    return {"$schema": SCHEMA_ID, **Sla.model_json_schema(schema_generator=_Generator)}


def schema_text() -> str:
    return json.dumps(sla_schema(), indent=2) + "\n"


def write_schema(path: str | Path = PUBLISHED) -> Path:
    path = Path(path)
    path.write_text(schema_text(), encoding="utf-8")
    return path
