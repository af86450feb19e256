"""Where copydata keeps its state: $COPYDATA_HOME, else ~/.copydata."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("COPYDATA_HOME") or Path.home() / ".copydata").resolve()


def emulator_state() -> Path:
    return home() / "emulator"
