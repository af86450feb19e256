"""The lab's SLA file (format: docs/design/issue3-interfaces.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .. import paths

if TYPE_CHECKING:
    from .common import Steps
    from .storage import LabVolume

HEADER = ("# Written by `copydata lab {engine} create {name}`; removed by `copydata lab {engine} destroy {name}`.\n"
          "# Edit freely, but a new create overwrites it.\n")


def default_dir() -> Path:
    """$COPYDATA_SLA_DIR, else the repository's include/slas when copydata runs from a checkout,
    else $COPYDATA_HOME/slas."""
    if os.environ.get("COPYDATA_SLA_DIR"):
        return Path(os.environ["COPYDATA_SLA_DIR"])
    repo_slas = Path(__file__).resolve().parents[2] / "slas"  # include/copydata/lab -> include/slas
    return repo_slas if repo_slas.is_dir() else paths.home() / "slas"


def sla_path(sla_dir: Path | None, name: str) -> Path:
    return (sla_dir or default_dir()) / f"lab-{name}.yaml"


def application(name: str, engine: str, conn_id: str, host: str, volumes: dict[str, str],
                mounts: dict[str, Path], data_directory: str, os_user: str) -> dict:
    return {"name": name, "engine": engine, "database_conn_id": conn_id, "array_conn_id": "flasharray_default",
            "protection_group": name, "log_protection_group": f"{name}-logs", "host": host,
            "volumes": dict(volumes), "mounts": {role: str(p) for role, p in mounts.items()},
            "data_directory": data_directory, "os_user": os_user}


def document(name: str, app: dict) -> dict:
    return {
        "name": f"lab-{name}",
        "description": f"Lab {name} on {app['host']} (copydata lab)",
        "snapshot": {"schedule": "30m", "freeze_timeout": "60s"},
        "log_backup": {"interval": "5m"},
        "retention": {"point_in_time": "1d", "daily": 7, "weekly": 4, "monthly": 3},
        "clone_policy": {"allowed_roles": ["admin", "user"], "masking_sql": None, "default_ttl": "1d"},
        "applications": [app],
    }


def write(path: Path, doc: dict, engine: str) -> bool:
    """Write the file when its content differs. Returns True when it changed."""
    name = doc["applications"][0]["name"]
    text = HEADER.format(engine=engine, name=name) + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def write_step(steps: Steps, sla_dir: Path | None, kind: str, name: str, engine: str, conn_id: str, host: str,
               vols: list[LabVolume], data_directory: str, os_user: str) -> Path:
    """Step "SLA file": the lab's SLA file with its one application (kind: the `copydata lab` command).
    Returns its path."""
    with steps.step("SLA file") as note:
        path = sla_path(sla_dir, name)
        app = application(name, engine, conn_id, host, {v.role: v.name for v in vols},
                          {v.role: v.mount for v in vols}, data_directory, os_user)
        changed = write(path, document(name, app), kind)
        note["text"] = f"{path} {'written' if changed else 'unchanged'}"
    return path
