"""Where copydata keeps its state: $COPYDATA_HOME, else ~/.copydata."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("COPYDATA_HOME") or Path.home() / ".copydata").resolve()


def emulator_state() -> Path:
    return home() / "emulator"


def dags_folder() -> Path:
    """$AIRFLOW__CORE__DAGS_FOLDER, else the repository's dags/ beside include/."""
    env = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "dags"
